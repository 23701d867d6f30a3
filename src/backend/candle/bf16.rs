//! candle's bf16 layers on the CPU: recbench's bf16 GEMM (`bgemm.rs`, f32 sums) or the f32
//! GEMM, the faster per shape by measurement. Activations stay f32 between layers either way.

use candle_core::{Device as CDevice, Tensor};

use super::*;
use crate::error::{Error, Result};

/// Forces how the bf16 layers run on the CPU: `gemm` (recbench's bf16 GEMM) or `f32` (the f32
/// GEMM, weights and activations unrounded); unset or `auto` measures.
pub const BF16_ENV: &str = "RECBENCH_CANDLE_BF16";

/// `RECBENCH_CANDLE_BF16`: `Some(true)` the bf16 GEMM, `Some(false)` f32, `None` measure.
pub fn bf16_forced() -> Result<Option<bool>> {
    forced_either(BF16_ENV, "bf16 layout", ["f32", "gemm"])
}

/// Whether each bf16 layer shape `(in, out)` runs on the bf16 GEMM (else in f32).
pub(super) type Bf16Layers = std::collections::BTreeMap<(usize, usize), bool>;

/// For a bf16 run on the CPU: which layer shapes run on the bf16 GEMM, and the note saying how.
/// Each shape is `forced`, else on the bf16 GEMM without a shape hint, else timed both ways on
/// the run's row count (best of 3 interleaved calls, on random weights of the layer's shape,
/// the rounding of the input to bf16 timed with it) and the faster kept, remembered per host,
/// candle version, model, threads, shape and rows.
pub(super) fn choose_bf16_layers(
    shapes: &[(usize, usize)],
    opts: EncoderOptions,
    forced: Option<bool>,
    model: &str,
) -> Result<(Bf16Layers, String)> {
    let threads = opts.threads.max(1);
    let kernel = bgemm::Kernel::best().name();
    let mut on = Bf16Layers::new();
    let mut how = Vec::new();
    for &(k, n) in shapes {
        if on.contains_key(&(k, n)) {
            continue;
        }
        let (gemm, why) = if let Some(g) = forced {
            (g, format!("forced by {BF16_ENV}"))
        } else if let Some((b, s)) = opts.shape_hint {
            let rows = b * s;
            let key = format!(
                "cpu {}, candle {}, {model}, {threads} threads, bf16 {k}->{n} at {rows} rows, gemm or f32",
                crate::tuning::choices::host(),
                runtime_version(),
            );
            // Remembered as "gemm: f32 2.52 ms, gemm 1.34 ms at 128 rows".
            crate::tuning::choices::recall_or_race(
                "candle-bf16",
                &key,
                &format!("at {rows} rows"),
                |gemm| if gemm { "gemm" } else { "f32" },
                |d| Some(d == "gemm"),
                || {
                    let x = Tensor::randn(0f32, 1.0, (rows, k), &CDevice::Cpu).map_err(err)?;
                    let w = Tensor::randn(0f32, 0.05, (n, k), &CDevice::Cpu).map_err(err)?;
                    let bias = Tensor::zeros(n, DType::F32, &CDevice::Cpu).map_err(err)?;
                    let w_t = w.t().and_then(|t| t.contiguous()).map_err(err)?;
                    let packed = bgemm::BWeight::new(&w, &bias).map_err(err)?;
                    let (f32_ms, gemm_ms) = crate::tuning::race(
                        || fused::linear(&x, &w_t, &bias, false, threads).map(drop),
                        || bgemm::linear(&x, &packed, false).map(drop),
                    )
                    .map_err(err)?;
                    Ok::<_, Error>(vec![(false, f32_ms), (true, gemm_ms)])
                },
            )?
        } else {
            (true, "no shape to measure on".to_string())
        };
        on.insert((k, n), gemm);
        how.push(if gemm {
            format!("{k}→{n} on recbench's bf16 GEMM, {kernel} ({why})")
        } else {
            format!("{k}→{n} in f32 ({why})")
        });
    }
    Ok((on, how.join(", ")))
}
