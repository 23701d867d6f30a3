//! Fused f32 CPU kernels for the candle backend, where candle has no fused op: a linear layer
//! with its bias (and GELU) applied in the GEMM's own pass, attention per (sequence, head) with
//! no head-split copies, and the residual add folded into LayerNorm. They use the GEMM candle's
//! own ops use (the `gemm` crate), candle-nn's LayerNorm formula and GELU as candle defines it
//! (with a vectorisable erf within 5e-7 of libm's), with rayon, so their outputs match candle's
//! ops to float rounding (tests/model.rs); which of the two paths runs is chosen by measurement
//! at load (see `CandleBert::load`).
//!
//! Inputs are contiguous f32 tensors on the CPU; anything else is an error, never a silent
//! copy.

use candle_core::{bail, CpuStorage, Device, Result, Storage, Tensor};
use rayon::prelude::*;

/// The f32 data of a contiguous CPU tensor.
pub(super) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        bail!("fused kernels take f32 CPU tensors, got {:?}", t.dtype())
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("fused kernels take contiguous tensors")
    };
    f(&data[start..end])
}

/// A raw pointer handed to rayon tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: every task writes a region no other task touches (see `attention`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not its field).
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// GELU with erf, as candle's `gelu_erf` defines it, through [`erf`].
#[inline]
pub(super) fn gelu(v: f32) -> f32 {
    (erf(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v
}

/// erf as a rational function of x² on [-4, 4] (outside, erf is ±1 to f32 precision): the
/// coefficients of Eigen's float erf. No branch and no libm call, so the GELU loop vectorises.
/// On the 2-vCPU AMD EPYC (AVX-512) VM, 2 threads, one MiniLM FFN activation (128 × 1,536) took
/// 0.81 ms through candle's `gelu_erf` (libm's `erff` per value) against 0.19 ms for
/// [`bias`] with GELU (`cargo bench --bench hot_paths -- GELU`). Within 5e-7 relative of
/// `erff` over [-6.7, 6.7] (checked by the unit test below).
#[inline]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    // Plain multiply-adds: `mul_add` without the FMA target feature is a libm call per value.
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_600_1e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329_2e-3;
    let q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

/// e^x for the softmax: Cephes' `expf` (e^x = 2^n · e^r with |r| ≤ ln2/2, e^r by a degree-6
/// polynomial) without a branch or a libm call, so the softmax loop vectorises where libm's
/// `expf` runs one value at a time. Within 2 ulp of `expf` (the unit test below); 0 below
/// -87.3, where f32 would go subnormal (masked keys: their weight is 0 either way).
#[inline]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: n · LN2_HI is exact for the n that occur.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Rounding to nearest by the 1.5·2^23 trick: `round` is a libm call on the x86-64 baseline.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.3);
    // t = ROUND + n exactly, so n is also the difference of their bit patterns: integer
    // arithmetic that vectorises, where `n as i32` (a saturating conversion) does not.
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let r = xc - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.3 {
        0.0
    } else {
        y * scale
    }
}

/// Runs `f` compiled for the widest vector instructions this CPU has: AVX-512 (x86-64-v4),
/// AVX2 with FMA (v3), or the x86-64 baseline the crate is built for (SSE2, 4 floats at a time),
/// detected once per process. Only the loops inside `f` change width: Rust never fuses a
/// multiply and an add, nor reorders a sum, so every version computes the same bits.
#[inline(always)]
pub(super) fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<u8> = OnceLock::new();
        let level = *LEVEL.get_or_init(|| {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
            {
                4
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                3
            } else {
                1
            }
        });
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
        unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v3<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: each version runs only where the CPU has its instructions (detected above).
        match level {
            4 => return unsafe { v4(f) },
            3 => return unsafe { v3(f) },
            _ => {}
        }
    }
    f()
}

fn parallelism(threads: usize) -> gemm::Parallelism {
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// `x · w_t + b`, then GELU when `gelu`: `x` is `[rows, in]`, `w_t` `[in, out]`, `b` `[out]`.
/// The output starts as the bias rows and the GEMM accumulates into it, so the bias costs no
/// pass of its own.
pub fn linear(
    x: &Tensor,
    w_t: &Tensor,
    b: &Tensor,
    gelu_after: bool,
    threads: usize,
) -> Result<Tensor> {
    let (rows, inner) = x.dims2()?;
    let (inner_w, out_n) = w_t.dims2()?;
    if inner != inner_w || b.dims1()? != out_n {
        bail!(
            "linear: x {:?}, w_t {:?}, b {:?}",
            x.dims(),
            w_t.dims(),
            b.dims()
        );
    }
    let mut out = Vec::with_capacity(rows * out_n);
    with_f32(b, |b| {
        for _ in 0..rows {
            out.extend_from_slice(b);
        }
        Ok(())
    })?;
    with_f32(x, |x| {
        with_f32(w_t, |w| {
            // SAFETY: out is rows×out_n, x rows×inner, w inner×out_n, all row-major as the
            // strides say.
            unsafe {
                gemm::gemm(
                    rows,
                    out_n,
                    inner,
                    out.as_mut_ptr(),
                    1,
                    out_n as isize,
                    true,
                    x.as_ptr(),
                    1,
                    inner as isize,
                    w.as_ptr(),
                    1,
                    out_n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism(threads),
                );
            }
            Ok(())
        })
    })?;
    if gelu_after {
        out.par_chunks_mut(out_n).for_each(|row| {
            widest(
                #[inline(always)]
                || {
                    for v in row {
                        *v = gelu(*v);
                    }
                },
            )
        });
    }
    Tensor::from_vec(out, (rows, out_n), &Device::Cpu)
}

/// `y + b`, then GELU when `gelu`, in one pass: for layers whose product is not ours (candle's
/// quantized matmul). `y` is `[rows, out]`, `b` `[out]`.
pub fn bias(y: &Tensor, b: &Tensor, gelu_after: bool) -> Result<Tensor> {
    let (rows, out_n) = y.dims2()?;
    let mut out = vec![0f32; rows * out_n];
    with_f32(y, |y| {
        with_f32(b, |b| {
            out.par_chunks_mut(out_n)
                .zip(y.par_chunks(out_n))
                .for_each(|(o, y)| {
                    widest(
                        #[inline(always)]
                        || {
                            for ((o, y), b) in o.iter_mut().zip(y).zip(b) {
                                let v = y + b;
                                *o = if gelu_after { gelu(v) } else { v };
                            }
                        },
                    )
                });
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (rows, out_n), &Device::Cpu)
}

/// Multi-head self-attention from the fused projection `qkv` `[batch·seq, 3·heads·head_dim]`
/// (Q, K, V side by side, heads contiguous within each): per (sequence, head), scores =
/// Q·Kᵀ·`scale` + `mask_bias` (`[batch, seq]`, added to every query row), softmax, · V, written
/// straight into the head's columns of the `[batch·seq, heads·head_dim]` output. One rayon task
/// per (sequence, head), each with single-threaded GEMMs on strided views: no head-split or
/// head-merge copies.
pub fn attention(
    qkv: &Tensor,
    mask_bias: &Tensor,
    (batch, seq): (usize, usize),
    (heads, head_dim): (usize, usize),
    scale: f32,
) -> Result<Tensor> {
    let width = heads * head_dim;
    if qkv.dims() != [batch * seq, 3 * width] || mask_bias.dims() != [batch, seq] {
        bail!(
            "attention: qkv {:?}, mask {:?}",
            qkv.dims(),
            mask_bias.dims()
        );
    }
    let mut out = vec![0f32; batch * seq * width];
    let dst = SendPtr(out.as_mut_ptr());
    with_f32(qkv, |qkv| {
        with_f32(mask_bias, |mask| {
            (0..batch * heads).into_par_iter().for_each_init(
                || vec![0f32; seq * seq],
                |scores, task| {
                    let (b, h) = (task / heads, task % heads);
                    let row0 = b * seq * 3 * width;
                    let q = qkv[row0 + h * head_dim..].as_ptr();
                    let k = qkv[row0 + width + h * head_dim..].as_ptr();
                    let v = qkv[row0 + 2 * width + h * head_dim..].as_ptr();
                    let ld = (3 * width) as isize;
                    // SAFETY: q, k and v are seq×head_dim views with row stride 3·width
                    // inside `qkv`; scores is seq×seq; the output block (rows b·seq.., columns
                    // h·head_dim..) belongs to this task alone.
                    unsafe {
                        // scores = scale · Q Kᵀ (Kᵀ as K with its strides swapped).
                        gemm::gemm(
                            seq,
                            seq,
                            head_dim,
                            scores.as_mut_ptr(),
                            1,
                            seq as isize,
                            false,
                            q,
                            1,
                            ld,
                            k,
                            ld,
                            1,
                            0.0,
                            scale,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                    let m = &mask[b * seq..(b + 1) * seq];
                    widest(
                        #[inline(always)]
                        || softmax_rows(scores, m, seq),
                    );
                    let o = dst.at(b * seq * width + h * head_dim);
                    unsafe {
                        // out[b, :, h] = P · V.
                        gemm::gemm(
                            seq,
                            head_dim,
                            seq,
                            o,
                            1,
                            width as isize,
                            false,
                            scores.as_ptr(),
                            1,
                            seq as isize,
                            v,
                            1,
                            ld,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                },
            );
            Ok(())
        })
    })?;
    Tensor::from_vec(out, (batch * seq, width), &Device::Cpu)
}

/// Partial results a row reduction keeps side by side: the compiler never reorders a float
/// reduction itself, so a single accumulator would run one value at a time.
const LANES: usize = 16;

/// Σ f(x[i]), in [`LANES`] interleaved partial sums added at the end: the same order in every
/// instruction-set version of [`widest`].
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    rest.iter().fold(acc.iter().sum::<f32>(), |s, &v| s + f(v))
}

/// max x[i] (NEG_INFINITY for none), likewise in lanes; exact in any order.
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Each `seq`-long row of `scores`: add the mask bias `m`, then softmax, each step a loop that
/// vectorises.
#[inline(always)]
fn softmax_rows(scores: &mut [f32], m: &[f32], seq: usize) {
    for row in scores.chunks_mut(seq) {
        for (s, m) in row.iter_mut().zip(m) {
            *s += m;
        }
        let max = lane_max(row);
        for s in row.iter_mut() {
            *s = exp(*s - max);
        }
        let sum = lane_sum(row, |v| v);
        for s in row.iter_mut() {
            *s /= sum;
        }
    }
}

/// LayerNorm(`x` + `residual`) over the last axis with scale `w` and shift `b`, in one pass per
/// row (candle-nn's formula: mean and mean square in f32).
pub fn add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let (rows, n) = x.dims2()?;
    if residual.dims() != x.dims() || w.dims1()? != n || b.dims1()? != n {
        bail!(
            "add_layer_norm: x {:?}, residual {:?}",
            x.dims(),
            residual.dims()
        );
    }
    let mut out = vec![0f32; rows * n];
    with_f32(x, |x| {
        with_f32(residual, |r| {
            with_f32(w, |w| {
                with_f32(b, |b| {
                    out.par_chunks_mut(n)
                        .zip(x.par_chunks(n).zip(r.par_chunks(n)))
                        .for_each(|(o, (x, r))| {
                            widest(
                                #[inline(always)]
                                || add_norm_row(o, x, r, w, b, eps),
                            )
                        });
                    Ok(())
                })
            })
        })
    })?;
    Tensor::from_vec(out, (rows, n), &Device::Cpu)
}

/// One row of [`add_layer_norm`].
#[inline(always)]
fn add_norm_row(o: &mut [f32], x: &[f32], r: &[f32], w: &[f32], b: &[f32], eps: f32) {
    let n = o.len();
    // Sequential sums, as candle-nn's LayerNorm adds: lane sums (as in the softmax) would save
    // about 1% of a MiniLM forward and move the int8 path's activations across rounding steps.
    let (mut sum, mut sum2) = (0f32, 0f32);
    for ((o, x), r) in o.iter_mut().zip(x).zip(r) {
        let v = x + r;
        *o = v;
        sum += v;
        sum2 += v * v;
    }
    let mean = sum / n as f32;
    let var = sum2 / n as f32 - mean * mean;
    let inv_std = (var + eps).sqrt().recip();
    for ((o, w), b) in o.iter_mut().zip(w).zip(b) {
        *o = (*o - mean) * inv_std * w + b;
    }
}

#[cfg(test)]
mod tests {
    /// The softmax's exp against libm's `expf` over the range a softmax feeds it (scores minus
    /// their row maximum, so ≤ 0) and beyond: within 2 ulp (relative 2.4e-7), 0 far below.
    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        for i in -87_000..=20_000 {
            let x = i as f32 / 1_000.0;
            let (got, want) = (super::exp(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 2.4e-7, "worst relative error {worst:e}");
        assert_eq!(super::exp(0.0), 1.0);
        assert_eq!(super::exp(-100.0), 0.0);
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
    }

    /// The lane reductions over lengths around and across a lane boundary: the max exactly,
    /// the sum to float rounding, f applied to every value once.
    #[test]
    fn lane_reductions_cover_every_value() {
        for n in [0, 1, 15, 16, 17, 33, 384] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(super::lane_max(&x), max, "n {n}");
            let (sum, sum2): (f64, f64) = x
                .iter()
                .map(|&v| (v as f64, (v * v) as f64))
                .fold((0.0, 0.0), |(a, b), (v, w)| (a + v, b + w));
            assert!(
                (super::lane_sum(&x, |v| v) as f64 - sum).abs() <= 1e-4,
                "n {n}"
            );
            assert!((super::lane_sum(&x, |v| v * v) as f64 - sum2).abs() <= 1e-3 * (1.0 + sum2));
        }
    }

    /// The rational erf against libm's `erff` (what candle's own GELU uses) on a dense grid:
    /// within 5e-7 relative (about 4 ulp) everywhere, ±1 far out, odd.
    #[test]
    fn erf_matches_libm() {
        let mut worst = 0f32;
        for i in -20_000..=20_000 {
            let x = i as f32 / 3_000.0;
            let (got, want) = (super::erf(x), candle_core::cpu::erf::erf_f32(x));
            if want != 0.0 {
                worst = worst.max(((got - want) / want).abs());
            }
            assert_eq!(super::erf(-x), -got);
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert!((super::erf(9.0) - 1.0).abs() <= 2e-7);
        assert!((super::erf(-30.0) + 1.0).abs() <= 2e-7);
    }
}
