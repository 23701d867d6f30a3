//! Dot products of an fp32 query with an item embedding stored at the item precision (fp32,
//! fp16, bf16; int8 against an int8 query), chosen at run time: AVX2 with FMA and F16C where
//! the CPU has them, a portable loop elsewhere. Rounding: the products are summed in fp32 (int8
//! in i32), so fp16 and bf16 items lose only their storage rounding.

use half::{bf16, f16};

/// Whether this CPU runs the AVX2 kernels (checked once; the std macro caches it).
#[inline]
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which kernels [`dot_f32`] and its siblings run on this CPU, for the run's notes.
pub fn isa() -> &'static str {
    if avx2() {
        "avx2+fma+f16c"
    } else {
        "portable"
    }
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
        return unsafe { x86::dot_f32(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// An fp32 dot-product kernel and its name. (The race among them is the HNSW metric's, so
/// the default build, without `ann`, only tests them.)
#[cfg_attr(not(feature = "ann"), allow(dead_code))]
pub type DotF32 = (&'static str, fn(&[f32], &[f32]) -> f32);

/// Every fp32 dot-product kernel this CPU runs, for a caller that chooses among them by
/// measurement (the HNSW metric): AVX-512F (16 lanes) where the CPU has it and the compiler
/// is Rust 1.89 or newer (its AVX-512 intrinsics; the crate builds on 1.85), [`dot_f32`]'s
/// AVX2 (8 lanes) where the CPU has that, and always the portable loop.
#[cfg_attr(not(feature = "ann"), allow(dead_code))]
pub fn dot_f32_kernels() -> Vec<DotF32> {
    let mut out: Vec<DotF32> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(k) = x86::avx512_kernel() {
            out.push(k);
        }
        if avx2() {
            out.push(("avx2+fma", dot_f32));
        }
    }
    out.push(("portable", |a, b| a.iter().zip(b).map(|(x, y)| x * y).sum()));
    out
}

pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `dot_f32`.
        return unsafe { x86::dot_f16(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

pub fn dot_bf16(a: &[f32], b: &[bf16]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `dot_f32`.
        return unsafe { x86::dot_bf16(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: as in `dot_f32`.
        return unsafe { x86::dot_i8(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| *x as i32 * *y as i32).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::{bf16, f16};

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Four accumulators over 32 values a step (FMA latency hidden), then the tail.
    macro_rules! dot_lanes {
        ($a:ident, $b:ident, $load:expr, $scalar:expr) => {{
            let n = $a.len();
            let (pa, pb) = ($a.as_ptr(), $b.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_ps(pa.add(i + 8 * j));
                    *acc = _mm256_fmadd_ps(x, $load(pb.add(i + 8 * j)), *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), $load(pb.add(i)), acc[0]);
                i += 8;
            }
            let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut s = hsum(sum);
            while i < n {
                s += *pa.add(i) * $scalar(&*pb.add(i));
                i += 1;
            }
            s
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        dot_lanes!(a, b, |p: *const f32| _mm256_loadu_ps(p), |x: &f32| *x)
    }

    /// The AVX-512F kernel, where this CPU has AVX-512F.
    #[rustversion::since(1.89)]
    #[cfg_attr(not(feature = "ann"), allow(dead_code))]
    pub fn avx512_kernel() -> Option<super::DotF32> {
        // SAFETY: listed only where the CPU has AVX-512F (checked here).
        std::arch::is_x86_feature_detected!("avx512f")
            .then_some(("avx512f", |a, b| unsafe { dot_f32_avx512(a, b) }))
    }

    /// Compilers before 1.89 have no AVX-512 intrinsics.
    #[rustversion::before(1.89)]
    #[cfg_attr(not(feature = "ann"), allow(dead_code))]
    pub fn avx512_kernel() -> Option<super::DotF32> {
        None
    }

    /// Four 16-lane accumulators over 64 values a step, then 16 a step, then one masked load.
    #[rustversion::since(1.89)]
    #[allow(clippy::incompatible_msrv)] // compiled only by Rust 1.89 or newer (above)
    #[cfg_attr(not(feature = "ann"), allow(dead_code))]
    #[target_feature(enable = "avx512f")]
    unsafe fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_loadu_ps(pa.add(i + 16 * j));
                *acc = _mm512_fmadd_ps(x, _mm512_loadu_ps(pb.add(i + 16 * j)), *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i)),
                _mm512_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 16;
        }
        if i < n {
            let m = ((1u32 << (n - i)) - 1) as __mmask16;
            let x = _mm512_maskz_loadu_ps(m, pa.add(i));
            acc[1] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, pb.add(i)), acc[1]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        dot_lanes!(
            a,
            b,
            |p: *const f16| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
            |x: &f16| x.to_f32()
        )
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_bf16(a: &[f32], b: &[bf16]) -> f32 {
        dot_lanes!(
            a,
            b,
            |p: *const bf16| _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
                16
            )),
            |x: &bf16| x.to_f32()
        )
    }

    /// i8 × i8 summed in i32: sixteen values a step widened to i16, multiplied and added in
    /// pairs (`vpmaddwd`), which cannot overflow for embeddings of any realistic width.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        let mut i = 0;
        while i + 32 <= n {
            let x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i) as *const __m128i));
            let y0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i) as *const __m128i));
            let x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i + 16) as *const __m128i));
            let y1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i + 16) as *const __m128i));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(x0, y0));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(x1, y1));
            i += 32;
        }
        let acc = _mm256_add_epi32(acc0, acc1);
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256(acc, 1),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        let mut sum = _mm_cvtsi128_si32(s);
        while i < n {
            sum += *pa.add(i) as i32 * *pb.add(i) as i32;
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd lengths exercise the 32-wide steps, the 8-wide steps and the scalar tail.
    #[test]
    fn every_kernel_matches_a_float64_dot_product_at_every_length() {
        let mut r = crate::util::rand::SplitMix64::new(7);
        for n in [1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 384] {
            let a: Vec<f32> = (0..n).map(|_| r.next_normal() as f32).collect();
            let b: Vec<f32> = (0..n).map(|_| r.next_normal() as f32).collect();
            let exact = |b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(x, y)| *x as f64 * *y as f64)
                    .sum::<f64>()
            };
            let tol = 1e-4 * (n as f64).sqrt();
            assert!(
                (dot_f32(&a, &b) as f64 - exact(&b)).abs() < tol,
                "f32 n={n}"
            );
            for (name, f) in dot_f32_kernels() {
                let got = f(&a, &b) as f64;
                assert!((got - exact(&b)).abs() < tol, "{name} n={n}: {got}");
            }
            let h: Vec<f16> = b.iter().map(|x| f16::from_f32(*x)).collect();
            let hb: Vec<f32> = h.iter().map(|x| x.to_f32()).collect();
            assert!(
                (dot_f16(&a, &h) as f64 - exact(&hb)).abs() < tol,
                "f16 n={n}"
            );
            let g: Vec<bf16> = b.iter().map(|x| bf16::from_f32(*x)).collect();
            let gb: Vec<f32> = g.iter().map(|x| x.to_f32()).collect();
            assert!(
                (dot_bf16(&a, &g) as f64 - exact(&gb)).abs() < tol,
                "bf16 n={n}"
            );
            let qa: Vec<i8> = (0..n).map(|i| (i * 37 % 255 - 127) as i8).collect();
            let qb: Vec<i8> = (0..n).map(|i| (i * 91 % 255 - 127) as i8).collect();
            let want: i32 = qa.iter().zip(&qb).map(|(x, y)| *x as i32 * *y as i32).sum();
            assert_eq!(dot_i8(&qa, &qb), want, "i8 n={n}");
        }
    }
}
