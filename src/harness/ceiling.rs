//! The machine's fp32 GEMM ceiling: the best rate of a large square matrix product with the
//! `gemm` crate (the kernel candle uses on CPU). Achieved model GFLOP/s divided by this is the
//! efficiency a report quotes: how much of what the cores can do the backend actually gets.

use std::time::{Duration, Instant};

/// Best GFLOP/s of an `n`×`n`×`n` f32 product on `threads` threads over about `budget`.
pub fn gemm_gflops(n: usize, threads: usize, budget: Duration) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 5) % 11) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let flops = 2.0 * (n as f64).powi(3);
    let mut best = 0.0f64;
    let start = Instant::now();
    let mut reps = 0;
    while reps < 3 || start.elapsed() < budget {
        let t = Instant::now();
        // SAFETY: a, b and c are n×n row-major buffers matching the strides given.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            );
        }
        let dt = t.elapsed().as_secs_f64();
        best = best.max(flops / dt / 1e9);
        reps += 1;
        if reps > 1000 {
            break;
        }
    }
    std::hint::black_box(&c);
    best
}
