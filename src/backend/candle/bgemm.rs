//! recbench's bf16 GEMM for candle's bf16 layers on the CPU, where candle 0.11.1 has no bf16
//! kernel (its CPU matmul widens bf16 to f32, multiplies and narrows back: slower than f32).
//!
//! - Weights: bf16 (rounded to nearest even), packed at load in panels of [`NR`] output
//!   columns, 2 inner values per column side by side (the operand layout of `vdpbf16ps`).
//! - Activations: f32 between layers; each layer input rounded to bf16 once per call.
//! - Products: summed in f32, on CPUs with AVX-512 BF16 by `vdpbf16ps` (32 multiply-adds per
//!   instruction against an f32 FMA's 16) on [`MR`] × [`NR`] register tiles; elsewhere by a
//!   portable loop over the same bf16 values (far slower; the choice at load times the layer
//!   against f32 and keeps the faster).
//! - Output: the sum plus the bias, then GELU where asked, through the int8 GEMM's driver
//!   (`qgemm::drive`).

use candle_core::{bail, Device, Result, Tensor};
use rayon::prelude::*;

use super::fused::{widest, with_f32, SendPtr};
use super::qgemm::{drive, MR, NR};

/// A bf16 weight `[out, in]` packed for [`linear`], with its bias.
pub struct BWeight {
    k: usize,
    n: usize,
    /// `[panel][k2 / 2][NR][2]` bf16 bits: panel p holds output columns p·NR.., each pair of
    /// inner values of a column contiguous; columns past `n` and inner values past `k` are 0.
    packed: Vec<u16>,
    /// Per output column (padded to whole panels with 0).
    bias: Vec<f32>,
}

/// `k` rounded up to a whole number of pairs.
fn k2(k: usize) -> usize {
    k.next_multiple_of(2)
}

/// `v` rounded to the nearest bf16 (ties to even), as its bits. Finite inputs only (a
/// layer's weights and activations).
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    let b = v.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

impl BWeight {
    /// Rounds `w` (`[out, in]`, f32 on the CPU) to bf16 and packs it; `b` is `[out]`.
    pub fn new(w: &Tensor, b: &Tensor) -> Result<BWeight> {
        let (n, k) = w.dims2()?;
        if b.dims1()? != n {
            bail!("bf16 weight {:?} with bias {:?}", w.dims(), b.dims());
        }
        let w = w.to_device(&Device::Cpu)?.contiguous()?;
        let b = b.to_device(&Device::Cpu)?.contiguous()?;
        let panels = n.div_ceil(NR);
        let kp = k2(k);
        let mut packed = vec![0u16; panels * NR * kp];
        let mut bias = vec![0f32; panels * NR];
        with_f32(&w, |w| {
            for (c, row) in w.chunks_exact(k).enumerate() {
                let (p, lane) = (c / NR, c % NR);
                for (i, &v) in row.iter().enumerate() {
                    packed[(p * kp + i / 2 * 2) * NR + lane * 2 + i % 2] = to_bf16(v);
                }
            }
            Ok(())
        })?;
        with_f32(&b, |b| {
            bias[..n].copy_from_slice(b);
            Ok(())
        })?;
        Ok(BWeight { k, n, packed, bias })
    }

    /// The `[out, in]` weight as the f32 values of its bf16s, for tests.
    #[cfg(test)]
    pub fn widened(&self) -> Vec<f32> {
        let kp = k2(self.k);
        let mut w = vec![0f32; self.n * self.k];
        for c in 0..self.n {
            let (p, lane) = (c / NR, c % NR);
            for i in 0..self.k {
                w[c * self.k + i] =
                    from_bf16(self.packed[(p * kp + i / 2 * 2) * NR + lane * 2 + i % 2]);
            }
        }
        w
    }
}

/// Which inner loop [`linear`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `vdpbf16ps` on AVX-512 BF16.
    Bf16x512,
    /// Plain Rust over the same bf16 values.
    Portable,
}

impl Kernel {
    /// The fastest this CPU runs.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") {
            return Kernel::Bf16x512;
        }
        Kernel::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Bf16x512 => "AVX-512 BF16",
            Kernel::Portable => "portable",
        }
    }
}

/// `x · wᵀ + b` (then GELU when `gelu_after`) with bf16 operands and f32 sums: `x` is
/// `[rows, in]` f32 on the CPU; the result `[rows, out]` f32. Runs [`Kernel::best`].
pub fn linear(x: &Tensor, w: &BWeight, gelu_after: bool) -> Result<Tensor> {
    linear_on(Kernel::best(), x, w, gelu_after)
}

/// As [`linear`] on the given kernel (which must run on this CPU).
pub fn linear_on(kernel: Kernel, x: &Tensor, w: &BWeight, gelu_after: bool) -> Result<Tensor> {
    let (rows, k) = x.dims2()?;
    if k != w.k {
        bail!(
            "bf16 linear: input {:?} against weight {}→{}",
            x.dims(),
            w.k,
            w.n
        );
    }
    if kernel == Kernel::Bf16x512 && Kernel::best() != Kernel::Bf16x512 {
        bail!("bf16 linear: this CPU has no AVX-512 BF16");
    }
    let kp = k2(k);
    let a = with_f32(x, |x| {
        let mut a = vec![0u16; rows * kp];
        a.par_chunks_mut(kp)
            .zip(x.par_chunks(k))
            .for_each(|(a, x)| {
                widest(
                    #[inline(always)]
                    || {
                        for (a, &v) in a.iter_mut().zip(x) {
                            *a = to_bf16(v);
                        }
                    },
                )
            });
        Ok(a)
    })?;
    let a = &a;
    // SAFETY: `tile` stores rows r0..r0 + m, columns of `panel` (all of them, up to `w.n`), as
    // `drive` asks; the kernel runs on this CPU (checked above).
    unsafe {
        drive(rows, w.n, gelu_after, MR, |r0, m, panel, dst| {
            tile(kernel, a, w, r0, m, panel, dst)
        })
    }
}

/// Rows `r0..r0 + m` (m ≤ [`MR`]) × the columns of `panel`: Σ over the inner size of
/// activation × weight in f32, plus the bias, stored into the `[rows, w.n]` output at `dst`.
///
/// # Safety
/// `dst` has room for at least (r0 + m) rows of `w.n` floats, no other thread touches this
/// part, and `kernel` runs on this CPU.
unsafe fn tile(
    kernel: Kernel,
    a: &[u16],
    w: &BWeight,
    r0: usize,
    m: usize,
    panel: usize,
    dst: SendPtr,
) {
    let kp = k2(w.k);
    let a = &a[r0 * kp..(r0 + m) * kp];
    let (c0, cols) = (panel * NR, NR.min(w.n - panel * NR));
    let wp = &w.packed[panel * kp * NR..(panel + 1) * kp * NR];
    let bias = &w.bias[c0..c0 + NR];
    let out = dst.at(r0 * w.n + c0);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract; the slices hold m rows of kp values and kp/2 groups
        // of NR·2 values.
        Kernel::Bf16x512 => match m {
            6 => avx512::tile::<6>(a, wp, kp, bias, out, w.n, cols),
            5 => avx512::tile::<5>(a, wp, kp, bias, out, w.n, cols),
            4 => avx512::tile::<4>(a, wp, kp, bias, out, w.n, cols),
            3 => avx512::tile::<3>(a, wp, kp, bias, out, w.n, cols),
            2 => avx512::tile::<2>(a, wp, kp, bias, out, w.n, cols),
            _ => avx512::tile::<1>(a, wp, kp, bias, out, w.n, cols),
        },
        _ => {
            let mut acc = [[0f32; NR]; MR];
            for (g, wg) in wp.chunks_exact(NR * 2).enumerate() {
                for (r, acc) in acc.iter_mut().take(m).enumerate() {
                    let (x0, x1) = (
                        from_bf16(a[r * kp + 2 * g]),
                        from_bf16(a[r * kp + 2 * g + 1]),
                    );
                    for (c, wc) in acc.iter_mut().zip(wg.chunks_exact(2)) {
                        *c += x0 * from_bf16(wc[0]) + x1 * from_bf16(wc[1]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(m) {
                for c in 0..cols {
                    // SAFETY: the caller's contract; c < cols.
                    *out.add(r * w.n + c) = acc[c] + bias[c];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::NR;
    use std::arch::x86_64::*;

    /// `M` rows × the panel's `NR` columns: Σ over pairs of inner values of
    /// `a[r·kp + 2g..] · w[g·2·NR + c·2..]`, one `vdpbf16ps` per pair and 16 columns, in 4·`M`
    /// f32 registers; plus `bias`, stored at `out` (row stride `ld`, `cols` columns).
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BF16; `a` holds `M` rows of `kp` values, `w` `kp/2` groups of
    /// `NR·2`, `bias` `NR`; `out` has room for `M` rows of `cols` at stride `ld`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile<const M: usize>(
        a: &[u16],
        w: &[u16],
        kp: usize,
        bias: &[f32],
        out: *mut f32,
        ld: usize,
        cols: usize,
    ) {
        debug_assert!(a.len() >= M * kp && w.len() >= kp * NR && bias.len() >= NR);
        let mut v = [[_mm512_setzero_ps(); 4]; M];
        let (a, w) = (a.as_ptr(), w.as_ptr());
        for g in 0..kp / 2 {
            let wg = w.add(g * NR * 2);
            let w0: __m512bh = std::mem::transmute(_mm512_loadu_si512(wg as *const _));
            let w1: __m512bh = std::mem::transmute(_mm512_loadu_si512(wg.add(32) as *const _));
            let w2: __m512bh = std::mem::transmute(_mm512_loadu_si512(wg.add(64) as *const _));
            let w3: __m512bh = std::mem::transmute(_mm512_loadu_si512(wg.add(96) as *const _));
            for (r, v) in v.iter_mut().enumerate() {
                let pair = (a.add(r * kp + g * 2) as *const i32).read_unaligned();
                let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                v[0] = _mm512_dpbf16_ps(v[0], x, w0);
                v[1] = _mm512_dpbf16_ps(v[1], x, w1);
                v[2] = _mm512_dpbf16_ps(v[2], x, w2);
                v[3] = _mm512_dpbf16_ps(v[3], x, w3);
            }
        }
        for (r, v) in v.iter().enumerate() {
            for (j, v) in v.iter().enumerate() {
                let c0 = 16 * j;
                if c0 >= cols {
                    break;
                }
                let left = cols - c0;
                let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
                let y = _mm512_add_ps(*v, _mm512_loadu_ps(bias.as_ptr().add(c0)));
                _mm512_mask_storeu_ps(out.add(r * ld + c0), mask, y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::qgemm::tests::{random, tensor};
    use super::*;

    /// Rounding to bf16 goes to the nearest, ties to even.
    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and the next bf16 (1 + 2^-7): ties to even, 1.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // Just above halfway rounds up.
        assert_eq!(to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        // 1 + 3·2^-8 is halfway between 0x3f81 and 0x3f82: ties to even, 0x3f82.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    /// Each kernel gives the sum of the bf16 products to f32 rounding: against the same sum in
    /// f64 from the rounded inputs, with a ragged last tile of rows, an odd inner size and an
    /// output not a whole panel, and one of MiniLM's shapes; and within bf16's rounding of the
    /// f32 product (root mean square of the error below 1% of the outputs').
    #[test]
    fn kernels_sum_the_bf16_products() {
        let kernels: Vec<Kernel> = if Kernel::best() == Kernel::Portable {
            eprintln!("skipped for the AVX-512 BF16 kernel: this CPU has no AVX-512 BF16");
            vec![Kernel::Portable]
        } else {
            vec![Kernel::Portable, Kernel::Bf16x512]
        };
        for (rows, k, n) in [(13, 37, 70), (50, 384, 1536)] {
            let (x, wv, b) = (
                random(rows, k, 1, 4.0),
                random(n, k, 2, 0.2),
                random(1, n, 3, 1.0),
            );
            let w = BWeight::new(
                &tensor(&wv, n, k),
                &Tensor::from_slice(&b, n, &Device::Cpu).unwrap(),
            )
            .unwrap();
            let wd = w.widened();
            let xr: Vec<f32> = x.iter().map(|&v| from_bf16(to_bf16(v))).collect();
            let exact = tensor(&x, rows, k)
                .matmul(&tensor(&wv, n, k).t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for &kernel in &kernels {
                let y = linear_on(kernel, &tensor(&x, rows, k), &w, false)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let (mut err2, mut out2) = (0f64, 0f64);
                for (r, y) in y.iter().enumerate() {
                    for c in 0..n {
                        let dot: f64 = (0..k)
                            .map(|i| xr[r * k + i] as f64 * wd[c * k + i] as f64)
                            .sum();
                        let want = dot + b[c] as f64;
                        let got = y[c] as f64;
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{kernel:?} {rows}x{k}x{n} [{r}][{c}]: {got} against {want}"
                        );
                        let e = exact[r][c] as f64 + b[c] as f64;
                        err2 += (got - e).powi(2);
                        out2 += e * e;
                    }
                }
                assert!(
                    err2.sqrt() < 0.01 * out2.sqrt(),
                    "{kernel:?} {rows}x{k}x{n}: error {} against outputs {}",
                    err2.sqrt(),
                    out2.sqrt()
                );
            }
        }
    }
}
