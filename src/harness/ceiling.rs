//! The machine's fp32 GEMM ceiling: the best rate of every GEMM this binary carries (the `gemm`
//! crate candle uses, ONNX Runtime's MLAS through a one-MatMul graph, libtorch's `mm`) on
//! square products of 1024 and 2048, each recorded. Achieved model GFLOP/s divided by the best
//! is the efficiency a report quotes: how much of what the fastest kernel on this machine does
//! on a large product the backend gets on the whole model.

use std::time::Duration;

use crate::results::{GemmCeiling, GemmRate};
use crate::spec::BackendKind;

/// The square sizes measured.
pub const SIZES: [usize; 2] = [1024, 2048];

/// Time each kernel gets per size (at least 3 products).
const BUDGET: Duration = Duration::from_millis(500);

/// Every compiled backend's GEMM at every size of [`SIZES`] on `threads` threads; the ceiling
/// is the best of them.
pub fn measure(threads: usize) -> GemmCeiling {
    let mut kernels = Vec::new();
    for n in SIZES {
        for b in BackendKind::ALL.into_iter().filter(|b| b.compiled()) {
            if let Some(gflops) = b.gemm_gflops(n, threads, BUDGET) {
                kernels.push(GemmRate {
                    kernel: kernel_name(b).into(),
                    size: n,
                    gflops,
                });
            }
        }
    }
    let best = kernels
        .iter()
        .max_by(|a, b| a.gflops.total_cmp(&b.gflops))
        .cloned();
    GemmCeiling {
        threads,
        size: best.as_ref().map_or(SIZES[0], |b| b.size),
        gflops: best.map_or(f64::NAN, |b| b.gflops),
        kernels,
    }
}

/// What each backend's GEMM is.
pub fn kernel_name(b: BackendKind) -> &'static str {
    match b {
        BackendKind::Candle => "gemm crate (candle)",
        BackendKind::Onnx => "ONNX Runtime MatMul (MLAS)",
        BackendKind::Torch => "libtorch mm",
    }
}
