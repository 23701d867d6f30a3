//! candle's int8 layers: Q8_0 weights on block dot products or on VNNI tiles (inner size padded
//! to whole 256-value superblocks), the faster per shape by measurement.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device as CDevice, Module, Tensor, D};

use super::*;
use crate::error::{Error, Result};

/// Forces how the int8 layers whose inner size is not a multiple of [`TILE_K`] run on the CPU:
/// `blocks` (candle's Q8_0 block dot products) or `tiles` (the inner size padded with zeros to
/// a multiple of [`TILE_K`], where candle's int8 kernel on VNNI tiles applies); unset or `auto`
/// measures.
pub const INT8_ENV: &str = "RECBENCH_CANDLE_INT8";

/// candle's x86 int8 kernel on repacked weights takes inner sizes in whole superblocks of this
/// many values (`repack_x86::select`).
pub(super) const TILE_K: usize = 256;

/// `RECBENCH_CANDLE_INT8`: `Some(true)` tiles, `Some(false)` blocks, `None` measure; an error
/// names it when it is none of these (a sweep checks it before its first run).
pub fn int8_forced() -> Result<Option<bool>> {
    forced_either(INT8_ENV, "int8 layout", ["blocks", "tiles"])
}

/// Zero columns that bring inner size `k` to a whole number of [`TILE_K`] superblocks.
pub(super) fn tile_pad(k: usize) -> usize {
    k.next_multiple_of(TILE_K) - k
}

/// `x` (`[rows, in]`) with `pad` zero columns appended.
pub(super) fn padded(x: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    if pad == 0 {
        Ok(x.clone())
    } else {
        x.pad_with_zeros(D::Minus1, 0, pad)
    }
}

/// The Q8_0 weight of `w` (`[out, in]`), with `pad` zero columns appended first.
pub(super) fn q8_0(w: &Tensor, pad: usize) -> candle_core::Result<QMatMul> {
    let w = padded(w, pad)?;
    QMatMul::from_qtensor(if w.device().is_cpu() {
        QTensor::quantize(&w, GgmlDType::Q8_0)?
    } else {
        // candle quantizes on the CPU, into blocks that live on the device.
        QTensor::quantize_onto(&w.to_device(&CDevice::Cpu)?, GgmlDType::Q8_0, w.device())?
    })
}

/// The zero columns each int8 layer shape `(in, out)` gets.
pub(super) type Int8Pads = std::collections::BTreeMap<(usize, usize), usize>;

/// For an int8 run on the CPU: the zero columns each layer shape (in, out) gets, and the note
/// saying how. Shapes whose inner size is a whole number of superblocks get none (candle picks
/// tiles or blocks for them itself, by the host's ISA). The others are `forced` (tiles or not),
/// else left as they are without a shape hint, else timed both ways on the run's
/// row count (best of 3 interleaved calls, on random weights of the layer's shape) and the
/// faster kept, remembered per host, candle version, model (`model`, its
/// [`ModelFiles::identity`]), threads, shape and rows.
pub(super) fn choose_int8_layout(
    shapes: &[(usize, usize)],
    opts: EncoderOptions,
    forced: Option<bool>,
    model: &str,
) -> Result<(Int8Pads, String)> {
    let threads = opts.threads.max(1);
    let mut pads = Int8Pads::new();
    let mut how = Vec::new();
    for &(k, n) in shapes {
        if pads.contains_key(&(k, n)) {
            continue;
        }
        let full = tile_pad(k);
        // (tiles?, what the note says in brackets)
        let (tiles, why) = if full == 0 {
            (false, "whole superblocks: candle's own choice".to_string())
        } else if let Some(t) = forced {
            (t, format!("forced by {INT8_ENV}"))
        } else if let Some((b, s)) = opts.shape_hint {
            let rows = b * s;
            let key = format!(
                "cpu {}, candle {}, {model}, {threads} threads, int8 {k}->{n} at {rows} rows, blocks or tiles",
                crate::tuning::choices::host(),
                runtime_version(),
            );
            // Remembered as "tiles: blocks 2.52 ms, tiles 0.34 ms at 128 rows".
            let decided = crate::tuning::choices::recall_or_measure(
                "candle-int8",
                &key,
                |v| v.split_once(": ").map(|(d, _)| d == "tiles"),
                || {
                    let (blocks_ms, tiles_ms) = race_int8_layouts(rows, k, n).map_err(err)?;
                    let tiles = tiles_ms < blocks_ms;
                    let decision = if tiles { "tiles" } else { "blocks" };
                    Ok::<_, Error>((
                        tiles,
                        format!(
                            "{decision}: blocks {blocks_ms:.2} ms, tiles {tiles_ms:.2} ms at {rows} rows"
                        ),
                    ))
                },
            )?;
            let timings = decided.how.split_once(": ").map_or("", |(_, t)| t);
            (
                decided.value,
                format!("{timings}, {}", decided.provenance()),
            )
        } else {
            (false, "no shape to measure on".to_string())
        };
        let pad = if tiles { full } else { 0 };
        pads.insert((k, n), pad);
        how.push(match (pad, full) {
            (_, 0) => format!("{k}→{n} ({why})"),
            (0, _) => format!("{k}→{n} on blocks ({why})"),
            (p, _) => format!("{k}→{n} on tiles, inner size padded to {} ({why})", k + p),
        });
    }
    Ok((pads, how.join(", ")))
}

/// A `[rows, k] × [k, n]` int8 product on candle's Q8_0 block dot products against the same
/// padded to whole superblocks (the padding of the input timed with it): best milliseconds of
/// each over 3 interleaved calls.
pub(super) fn race_int8_layouts(
    rows: usize,
    k: usize,
    n: usize,
) -> candle_core::Result<(f64, f64)> {
    let x = Tensor::randn(0f32, 1.0, (rows, k), &CDevice::Cpu)?;
    let w = Tensor::randn(0f32, 0.05, (n, k), &CDevice::Cpu)?;
    let pad = tile_pad(k);
    let (blocks, tiles) = (q8_0(&w, 0)?, q8_0(&w, pad)?);
    crate::tuning::race(
        || blocks.forward(&x).map(drop),
        || tiles.forward(&padded(&x, pad)?).map(drop),
    )
}
