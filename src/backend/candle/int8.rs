//! candle's int8 layers: recbench's int8 GEMM (weights per output channel, activations per
//! row, `qgemm.rs`), candle's Q8_0 block dot products, or candle's VNNI tiles (inner size padded
//! to whole 256-value superblocks), the fastest per shape by measurement.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device as CDevice, Module, Tensor, D};

use super::*;
use crate::error::{Error, Result};

/// Forces how the int8 layers run on the CPU: `gemm` (recbench's int8 GEMM, `qgemm.rs`),
/// `blocks` (candle's Q8_0 block dot products) or `tiles` (the inner size padded with zeros to
/// a multiple of [`TILE_K`], where candle's int8 kernel on VNNI tiles applies); unset or `auto`
/// measures.
pub const INT8_ENV: &str = "RECBENCH_CANDLE_INT8";

/// How one int8 layer runs on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Layout {
    /// candle's Q8_0 on its 32-value block dot products (or its own choice of kernel where the
    /// inner size is a whole number of superblocks).
    Blocks,
    /// candle's Q8_0 with the inner size padded to whole superblocks (its VNNI tiles on x86).
    Tiles,
    /// recbench's int8 GEMM: int8 weights per output channel, u8 activations per row.
    Gemm,
}

impl Int8Layout {
    pub fn name(self) -> &'static str {
        match self {
            Int8Layout::Blocks => "blocks",
            Int8Layout::Tiles => "tiles",
            Int8Layout::Gemm => "gemm",
        }
    }

    const ALL: [Int8Layout; 3] = [Int8Layout::Blocks, Int8Layout::Tiles, Int8Layout::Gemm];

    fn parse(s: &str) -> Option<Int8Layout> {
        Self::ALL.into_iter().find(|l| l.name() == s)
    }
}

/// `RECBENCH_CANDLE_INT8`: the layout it forces, `None` to measure; an error names it when it
/// is none of these (a sweep checks it before its first run).
pub fn int8_forced() -> Result<Option<Int8Layout>> {
    match std::env::var(INT8_ENV).ok().as_deref() {
        None | Some("") | Some("auto") => Ok(None),
        Some(v) => Int8Layout::parse(v).map(Some).ok_or_else(|| {
            Error::input(
                "<environment>",
                None,
                INT8_ENV,
                format!("unknown int8 layout {v:?}; allowed: auto, blocks, tiles, gemm"),
            )
        }),
    }
}

/// candle's x86 int8 kernel on repacked weights takes inner sizes in whole superblocks of this
/// many values (`repack_x86::select`).
pub(super) const TILE_K: usize = 256;

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

/// How int8 layers run when nothing forces a layout and there is no shape to measure on (the
/// `parity` command's loads, tests): recbench's GEMM where the CPU has AVX-512 VNNI (where every
/// MiniLM shape's race has chosen it on the Zen 4 VM and on the AMX VM), else candle's blocks.
pub fn unmeasured_layout() -> Int8Layout {
    if super::qgemm::Kernel::best() != super::qgemm::Kernel::Portable {
        Int8Layout::Gemm
    } else {
        Int8Layout::Blocks
    }
}

/// How each int8 layer shape `(in, out)` runs.
pub(super) type Int8Layouts = std::collections::BTreeMap<(usize, usize), Int8Layout>;

/// For an int8 run on the CPU: how each layer shape (in, out) runs, and the note saying how.
/// Each shape is `forced`, else [`unmeasured_layout`] without a shape hint, else
/// timed every way that applies on the run's row count (best of 3 interleaved calls, on
/// random weights of the layer's shape: candle's blocks, its tiles where the inner size is not
/// whole superblocks, recbench's GEMM) and the fastest kept, remembered per host, candle
/// version, model (`model`, its [`ModelFiles::identity`]), threads, shape and rows.
pub(super) fn choose_int8_layout(
    shapes: &[(usize, usize)],
    opts: EncoderOptions,
    forced: Option<Int8Layout>,
    model: &str,
) -> Result<(Int8Layouts, String)> {
    let threads = opts.threads.max(1);
    let mut layouts = Int8Layouts::new();
    let mut how = Vec::new();
    for &(k, n) in shapes {
        if layouts.contains_key(&(k, n)) {
            continue;
        }
        let whole = tile_pad(k) == 0;
        let (layout, why) = if let Some(l) = forced {
            // Tiles on an inner size of whole superblocks is candle's blocks as they are.
            let l = if whole && l == Int8Layout::Tiles {
                Int8Layout::Blocks
            } else {
                l
            };
            (l, format!("forced by {INT8_ENV}"))
        } else if let Some((b, s)) = opts.shape_hint {
            let rows = b * s;
            let key = format!(
                "cpu {}, candle {}, {model}, {threads} threads, int8 {k}->{n} at {rows} rows, blocks, tiles or gemm",
                crate::tuning::choices::host(),
                runtime_version(),
            );
            // Remembered as "gemm: blocks 2.52 ms, tiles 0.34 ms, gemm 0.21 ms at 128 rows".
            crate::tuning::choices::recall_or_race(
                "candle-int8",
                &key,
                &format!("at {rows} rows"),
                Int8Layout::name,
                Int8Layout::parse,
                || race_int8_layouts(rows, k, n).map_err(err),
            )?
        } else {
            let l = unmeasured_layout();
            let why = match l {
                Int8Layout::Gemm => {
                    "no shape to measure on: recbench's GEMM where the CPU has AVX-512 VNNI"
                }
                _ => "no shape to measure on",
            };
            (l, why.to_string())
        };
        layouts.insert((k, n), layout);
        how.push(match layout {
            Int8Layout::Blocks if whole => format!("{k}→{n} on candle's Q8_0 ({why})"),
            Int8Layout::Blocks => format!("{k}→{n} on candle's Q8_0 blocks ({why})"),
            Int8Layout::Tiles => format!(
                "{k}→{n} on candle's Q8_0 tiles, inner size padded to {} ({why})",
                k + tile_pad(k)
            ),
            Int8Layout::Gemm => format!(
                "{k}→{n} on recbench's int8 GEMM, {} ({why})",
                super::qgemm::Kernel::for_inner(k).name()
            ),
        });
    }
    Ok((layouts, how.join(", ")))
}

/// For an int8 or bf16 run on the CPU (any other: nothing to choose): how each layer shape
/// runs (`choose_int8_layout`, `bf16::choose_bf16_layers`), the note saying so, and the part of
/// the cache tag those choices make.
#[allow(clippy::type_complexity)]
pub(super) fn choose_lowp_layers(
    shapes: &[(usize, usize)],
    opts: EncoderOptions,
    int8_layout: Option<Int8Layout>,
    model: &str,
) -> Result<(
    Int8Layouts,
    bf16::Bf16Layers,
    Option<String>,
    Option<String>,
)> {
    Ok(match opts.precision {
        Precision::Int8 => {
            let (layouts, how) = choose_int8_layout(shapes, opts, int8_layout, model)?;
            let tag = layout_tag(
                layouts
                    .iter()
                    .map(|(&s, l)| (s, (*l != Int8Layout::Blocks).then_some(l.name()))),
            );
            let note = format!("int8 products: {how} ({INT8_ENV})");
            (layouts, bf16::Bf16Layers::new(), Some(note), tag)
        }
        Precision::Bf16 => {
            let (on, how) = bf16::choose_bf16_layers(shapes, opts, bf16_forced()?, model)?;
            let tag = layout_tag(
                on.iter()
                    .map(|(&s, &g)| (s, Some(if g { "bf16gemm" } else { "f32" }))),
            );
            let note = format!("bf16 products: {how} ({BF16_ENV})");
            (Int8Layouts::new(), on, Some(note), tag)
        }
        _ => (Int8Layouts::new(), bf16::Bf16Layers::new(), None, None),
    })
}

/// The cache tag of per-shape layer choices (`None` for the default one, whose outputs the
/// reference load computes): the one name where every shape took the same non-default choice,
/// else each non-default name with its shapes (`tiles:384x1152+384x384`), joined by `-`.
fn layout_tag(
    choices: impl Iterator<Item = ((usize, usize), Option<&'static str>)>,
) -> Option<String> {
    let mut by: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let mut all = 0;
    for ((k, n), name) in choices {
        all += 1;
        if let Some(name) = name {
            by.entry(name).or_default().push(format!("{k}x{n}"));
        }
    }
    match by.len() {
        0 => None,
        1 if by.values().next().is_some_and(|s| s.len() == all) => {
            by.keys().next().map(|n| n.to_string())
        }
        _ => Some(
            by.iter()
                .map(|(name, shapes)| format!("{name}:{}", shapes.join("+")))
                .collect::<Vec<_>>()
                .join("-"),
        ),
    }
}

/// A `[rows, k] × [k, n]` int8 product every way that applies: candle's Q8_0 blocks, the same
/// padded to whole superblocks (the padding of the input timed with it; not where `k` is whole
/// superblocks already), and recbench's GEMM (the quantization of the input timed with it):
/// best milliseconds of each over 3 interleaved calls.
pub(super) fn race_int8_layouts(
    rows: usize,
    k: usize,
    n: usize,
) -> candle_core::Result<Vec<(Int8Layout, f64)>> {
    let x = Tensor::randn(0f32, 1.0, (rows, k), &CDevice::Cpu)?;
    let w = Tensor::randn(0f32, 0.05, (n, k), &CDevice::Cpu)?;
    let bias = Tensor::zeros(n, candle_core::DType::F32, &CDevice::Cpu)?;
    let pad = tile_pad(k);
    let (blocks, tiles) = (q8_0(&w, 0)?, q8_0(&w, pad)?);
    let gemm = super::qgemm::QWeight::new(&w, &bias)?;
    let mut layouts = vec![Int8Layout::Blocks];
    let mut runs: Vec<Box<dyn FnMut() -> candle_core::Result<()> + '_>> =
        vec![Box::new(|| blocks.forward(&x).map(drop))];
    if pad > 0 {
        layouts.push(Int8Layout::Tiles);
        runs.push(Box::new(|| tiles.forward(&padded(&x, pad)?).map(drop)));
    }
    layouts.push(Int8Layout::Gemm);
    runs.push(Box::new(|| {
        super::qgemm::linear(&x, &gemm, false).map(drop)
    }));
    let times = crate::tuning::race_all(&mut runs)?;
    Ok(layouts.into_iter().zip(times).collect())
}

impl CandleBert {
    /// For the notes of an int8 run: the first layer's FFN product (hidden → intermediate) at
    /// `rows` rows in int8 (as the layer runs) against the same product in f32 on the fused
    /// GEMM, best of 3 interleaved calls, and why int8 loses where it does.
    pub(super) fn int8_against_f32(&self, rows: usize) -> candle_core::Result<String> {
        let Some(layer) = self.layers.first() else {
            return Ok(String::new());
        };
        let (h, i) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let x = Tensor::randn(0f32, 1.0, (rows, h), &self.device)?;
        let w_t = Tensor::randn(0f32, 0.05, (h, i), &self.device)?;
        let bias = Tensor::zeros(i, DType::F32, &self.device)?;
        let (q8, f32) = crate::tuning::race(
            || layer.inter.forward(&x).map(drop),
            || fused::linear(&x, &w_t, &bias, false, self.threads).map(drop),
        )?;
        let layout = layer.inter.layout().unwrap_or(Int8Layout::Blocks);
        let why = match layout {
            _ if q8 <= f32 => String::new(),
            Int8Layout::Gemm if qgemm::Kernel::best() == qgemm::Kernel::Portable => {
                " (int8 is slower than fp32 on this host: it has no AVX-512 VNNI, so recbench's \
                 int8 GEMM runs its portable loop)"
                    .to_string()
            }
            Int8Layout::Gemm => " (int8 is slower than fp32 on this host at this size even on \
                                  recbench's VNNI GEMM: the activations are quantized on every \
                                  call, and the f32 GEMM runs near the vector units' peak)"
                .to_string(),
            Int8Layout::Blocks if tile_pad(h) == 0 => {
                " (int8 is slower than fp32 on this host at this size; for an inner size \
                 in whole superblocks candle picks its kernel itself, by the host's ISA)"
                    .to_string()
            }
            Int8Layout::Blocks => " (int8 is slower than fp32 on this host: on blocks, candle's \
                                   CPU quantized matmul takes one dot product of 32-value blocks \
                                   per output, with AVX2 byte multiplies and no tiling across \
                                   rows, while the f32 GEMM is register-tiled and uses the host's \
                                   widest vectors)"
                .to_string(),
            Int8Layout::Tiles => format!(
                " (int8 is slower than fp32 on this host at this size even on candle's int8 \
                 tiles: the inner size is padded from {h} to {}, and the activations are \
                 quantized on every call)",
                h + tile_pad(h)
            ),
        };
        Ok(format!(
            "; int8 here: the {rows}×{h}→{i} product takes {q8:.2} ms on {} against \
             {f32:.2} ms in f32{why}",
            match layout {
                Int8Layout::Gemm => "recbench's int8 GEMM",
                _ => "candle's Q8_0",
            }
        ))
    }
}
