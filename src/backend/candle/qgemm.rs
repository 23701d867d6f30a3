//! recbench's int8 GEMM for candle's int8 layers on the CPU, where candle's Q8_0 kernels give
//! no speed-up over f32 (one float scale per 32 values, so every 32 multiply-adds of integers
//! come with float work).
//!
//! - Weights: int8, one scale per output channel (symmetric, ±127), packed at load in panels
//!   of [`NR`] output columns, 4 inner values per column side by side (the operand layout of
//!   `vpdpbusd`).
//! - Activations: uint8, one scale and zero point per row (asymmetric over the row's minimum
//!   and maximum, 0 exact), quantized once per layer input in one pass.
//! - Products: summed in i32, with no float work until the end of the inner loop: on CPUs with
//!   AMX (and Linux's leave to use it) by `tdpbusd` on 16 × 16 tiles (16,384 multiply-adds
//!   of a u8 and an i8 per instruction), [`AMX_ROWS`] rows × one panel per pass, where the
//!   inner size is whole 64-byte tile rows; else with AVX-512 VNNI by `vpdpbusd` (64 per
//!   instruction) on [`MR`] × [`NR`] register tiles; elsewhere by a portable loop over the
//!   same integers (the same results, far slower; the choice at load times it against
//!   candle's Q8_0 and keeps the faster).
//! - Output: `y = s_row · s_col · (Σ a·w − zp_row · Σ w) + b`, then GELU where asked, written
//!   while the tile is in registers' reach.
//!
//! Rows are split into tasks of 8 tiles of rows × one panel, run by rayon.

use candle_core::{bail, Device, Result, Tensor};
use rayon::prelude::*;

use super::fused::{gelu, widest, with_f32, SendPtr};

/// Output columns per packed panel: four vectors of 16 i32 lanes.
pub(super) const NR: usize = 64;
/// Rows per register tile (4 × `MR` accumulators, 4 weight vectors and a broadcast in 32
/// registers).
pub(super) const MR: usize = 6;
/// Rows per AMX pass: two 16-row tiles.
pub(super) const AMX_ROWS: usize = 32;

/// An int8 weight `[out, in]` packed for [`linear`], with its bias.
pub struct QWeight {
    /// Inner size (the layer's input width).
    k: usize,
    /// Output size.
    n: usize,
    /// `[panel][k4 / 4][NR][4]`: panel p holds output columns p·NR.., each group of 4 inner
    /// values of a column contiguous; columns past `n` and inner values past `k` are 0.
    packed: Vec<i8>,
    /// Per output column (padded to whole panels with 0): the weight's scale.
    scale: Vec<f32>,
    /// Per output column: Σ of its int8 values over the inner size (for the zero points).
    colsum: Vec<i32>,
    /// Per output column: the bias.
    bias: Vec<f32>,
}

/// `k` rounded up to a whole number of 4-value groups.
fn k4(k: usize) -> usize {
    k.next_multiple_of(4)
}

impl QWeight {
    /// Quantizes `w` (`[out, in]`, f32 on the CPU) per output channel and packs it; `b` is
    /// `[out]`.
    pub fn new(w: &Tensor, b: &Tensor) -> Result<QWeight> {
        let (n, k) = w.dims2()?;
        if b.dims1()? != n {
            bail!("int8 weight {:?} with bias {:?}", w.dims(), b.dims());
        }
        let w = w.to_device(&Device::Cpu)?.contiguous()?;
        let b = b.to_device(&Device::Cpu)?.contiguous()?;
        let panels = n.div_ceil(NR);
        let kp = k4(k);
        let mut packed = vec![0i8; panels * NR * kp];
        let mut scale = vec![0f32; panels * NR];
        let mut colsum = vec![0i32; panels * NR];
        let mut bias = vec![0f32; panels * NR];
        with_f32(&w, |w| {
            for (c, row) in w.chunks_exact(k).enumerate() {
                let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                let s = if max > 0.0 { max / 127.0 } else { 1.0 };
                scale[c] = s;
                let (p, lane) = (c / NR, c % NR);
                for (i, &v) in row.iter().enumerate() {
                    let q = (v / s).round().clamp(-127.0, 127.0) as i8;
                    colsum[c] += q as i32;
                    packed[(p * kp + i / 4 * 4) * NR + lane * 4 + i % 4] = q;
                }
            }
            Ok(())
        })?;
        with_f32(&b, |b| {
            bias[..n].copy_from_slice(b);
            Ok(())
        })?;
        Ok(QWeight {
            k,
            n,
            packed,
            scale,
            colsum,
            bias,
        })
    }

    /// The `[out, in]` weight as its int8 values times their scales (what [`linear`] computes
    /// with), for tests.
    #[cfg(test)]
    pub fn dequantized(&self) -> Vec<f32> {
        let kp = k4(self.k);
        let mut w = vec![0f32; self.n * self.k];
        for c in 0..self.n {
            let (p, lane) = (c / NR, c % NR);
            for i in 0..self.k {
                let q = self.packed[(p * kp + i / 4 * 4) * NR + lane * 4 + i % 4];
                w[c * self.k + i] = q as f32 * self.scale[c];
            }
        }
        w
    }
}

/// A layer input quantized per row: `[rows][k4]` u8, and each row's scale and zero point.
struct QRows {
    data: Vec<u8>,
    scale: Vec<f32>,
    zero: Vec<i32>,
}

/// Rounds a float in [0, 2²²) to the nearest integer (ties to even) and returns its bits'
/// integer: adding 1.5·2²³ leaves the integer in the mantissa. No `round` call and no
/// saturating conversion, so the loop vectorises.
#[inline(always)]
fn round_to_u32(v: f32) -> u32 {
    const ROUND: f32 = 12_582_912.0;
    (v + ROUND).to_bits().wrapping_sub(ROUND.to_bits())
}

/// Quantizes each row of `x` (`rows × k`) to u8 over [min(row, 0), max(row, 0)]: scale
/// (max − min) / 255 and zero point round(−min / scale), so 0 is exact. Inner values past `k`
/// (to a multiple of 4) are 0, which the weights' zeros cancel; so are the rows past `rows` up
/// to `padded_rows` (the AMX kernel loads [`AMX_ROWS`] rows a pass, two 16-row tiles).
fn quantize_rows(x: &[f32], rows: usize, k: usize, padded_rows: usize) -> QRows {
    let kp = k4(k);
    let mut data = vec![0u8; rows.max(padded_rows) * kp];
    let mut scale = vec![0f32; rows];
    let mut zero = vec![0i32; rows];
    data.par_chunks_mut(kp)
        .zip(x.par_chunks(k))
        .zip(scale.par_iter_mut().zip(zero.par_iter_mut()))
        .for_each(|((q, x), (s, z))| {
            widest(
                #[inline(always)]
                || {
                    const LANES: usize = 16;
                    let (mut lo, mut hi) = ([0f32; LANES], [0f32; LANES]);
                    let chunks = x.chunks_exact(LANES);
                    let rest = chunks.remainder();
                    for c in chunks {
                        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(c) {
                            *l = if v < *l { v } else { *l };
                            *h = if v > *h { v } else { *h };
                        }
                    }
                    let min = lo.iter().chain(rest).fold(0f32, |m, &v| m.min(v));
                    let max = hi.iter().chain(rest).fold(0f32, |m, &v| m.max(v));
                    let step = if max > min { (max - min) / 255.0 } else { 1.0 };
                    let inv = 1.0 / step;
                    let zp = round_to_u32(-min * inv).min(255);
                    let zf = zp as f32;
                    for (q, &v) in q.iter_mut().zip(x) {
                        *q = round_to_u32((v * inv + zf).clamp(0.0, 255.0)) as u8;
                    }
                    *s = step;
                    *z = zp as i32;
                },
            )
        });
    QRows { data, scale, zero }
}

/// Which inner loop [`linear`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `tdpbusd` on AMX tiles (the epilogue on AVX-512).
    Amx,
    /// `vpdpbusd` on AVX-512 VNNI.
    Vnni512,
    /// Plain Rust over the same integers.
    Portable,
}

impl Kernel {
    /// The fastest this CPU runs: AMX's tile product does 16,384 multiply-adds an instruction
    /// against VNNI's 64, and VNNI's four times an f32 FMA's.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
        {
            return if amx::available() {
                Kernel::Amx
            } else {
                Kernel::Vnni512
            };
        }
        Kernel::Portable
    }

    /// What [`linear`] runs for an inner size of `k`: AMX loads whole 64-byte tile rows, so
    /// another inner size runs on VNNI.
    pub fn for_inner(k: usize) -> Kernel {
        match Kernel::best() {
            Kernel::Amx if !k4(k).is_multiple_of(64) => Kernel::Vnni512,
            b => b,
        }
    }

    /// Whether `linear_on` can run this kernel here, at inner size `k`.
    fn runs_here(self, k: usize) -> bool {
        match self {
            Kernel::Portable => true,
            Kernel::Vnni512 => Kernel::best() != Kernel::Portable,
            Kernel::Amx => Kernel::for_inner(k) == Kernel::Amx,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Amx => "AMX int8 tiles",
            Kernel::Vnni512 => "AVX-512 VNNI",
            Kernel::Portable => "portable",
        }
    }
}

/// `x · wᵀ + b` (then GELU when `gelu_after`) on int8: `x` is `[rows, in]` f32 on the CPU; the
/// result `[rows, out]` f32. Runs [`Kernel::for_inner`].
pub fn linear(x: &Tensor, w: &QWeight, gelu_after: bool) -> Result<Tensor> {
    linear_on(Kernel::for_inner(w.k), x, w, gelu_after)
}

/// As [`linear`] on the given kernel (which must run on this CPU at this inner size).
pub fn linear_on(kernel: Kernel, x: &Tensor, w: &QWeight, gelu_after: bool) -> Result<Tensor> {
    let (rows, k) = x.dims2()?;
    if k != w.k {
        bail!(
            "int8 linear: input {:?} against weight {}→{}",
            x.dims(),
            w.k,
            w.n
        );
    }
    if !kernel.runs_here(k) {
        bail!(
            "int8 linear: {} does not run on this CPU at inner size {k}",
            kernel.name()
        );
    }
    let tile_rows = if kernel == Kernel::Amx { AMX_ROWS } else { MR };
    let q = with_f32(x, |x| {
        Ok(quantize_rows(x, rows, k, rows.next_multiple_of(tile_rows)))
    })?;
    let q = &q;
    // SAFETY: `tile` stores rows r0..r0 + m, columns of `panel` (all of them, up to `w.n`), as
    // `drive` asks; the kernel runs on this CPU at this size (checked above), and the AMX
    // kernel's whole tiles of rows are within the padded rows.
    unsafe {
        drive(rows, w.n, gelu_after, tile_rows, |r0, m, panel, dst| {
            tile(kernel, q, w, r0, m, panel, dst)
        })
    }
}

/// The `[rows, n]` f32 output of a GEMM whose `tile(r0, m, panel, dst)` stores rows
/// `r0..r0 + m` (m ≤ `tile_rows`) and the columns of `panel` ([`NR`] of them, or up to `n`)
/// into `dst` (row-major, `n` wide; room for all rows, not initialised), for every row and
/// panel: tasks of 8 tiles of rows × one panel on rayon, then GELU on each tile just stored
/// when `gelu_after`. Shared by the int8 and bf16 GEMMs.
///
/// # Safety
/// Each call of `tile` stores every value of its rows and panel's columns (up to `n`), and
/// nothing outside them.
pub(super) unsafe fn drive(
    rows: usize,
    n: usize,
    gelu_after: bool,
    tile_rows: usize,
    tile: impl Fn(usize, usize, usize, SendPtr) + Sync,
) -> Result<Tensor> {
    let task_rows = 8 * tile_rows;
    // Written in full by the tasks below: no zeroing pass over an output of up to tens of MB.
    let mut out: Vec<f32> = Vec::with_capacity(rows * n);
    let panels = n.div_ceil(NR);
    let chunks = rows.div_ceil(task_rows);
    let dst = SendPtr(out.as_mut_ptr());
    // Consecutive tasks share their rows: a thread's run of tasks keeps one chunk of the
    // activations in cache while it walks the panels.
    (0..chunks * panels).into_par_iter().for_each(|t| {
        let (chunk, panel) = (t / panels, t % panels);
        let end = ((chunk + 1) * task_rows).min(rows);
        let mut r0 = chunk * task_rows;
        while r0 < end {
            let m = tile_rows.min(end - r0);
            // This task alone writes rows r0..r0 + m, columns of `panel`.
            tile(r0, m, panel, dst);
            if gelu_after {
                let (c0, cols) = (panel * NR, NR.min(n - panel * NR));
                for r in r0..r0 + m {
                    // SAFETY: these values were stored by `tile` just now, by this task alone.
                    let y = unsafe { std::slice::from_raw_parts_mut(dst.at(r * n + c0), cols) };
                    widest(
                        #[inline(always)]
                        || {
                            for v in y {
                                *v = gelu(*v);
                            }
                        },
                    );
                }
            }
            r0 += m;
        }
    });
    // SAFETY: the tasks stored every row of every panel, columns up to `n`: all rows·n values.
    unsafe { out.set_len(rows * n) };
    Tensor::from_vec(out, (rows, n), &Device::Cpu)
}

/// The columns of `panel` for rows `r0..r0 + m` (m ≤ [`MR`], or [`AMX_ROWS`] on AMX): Σ over
/// the inner size of activation × weight, dequantized with the bias (`y = s_row · s_col ·
/// (Σ a·w − zp_row · Σ w) + b`), stored into the `[rows, w.n]` output at `dst`.
///
/// # Safety
/// `dst` has room for at least (r0 + m) rows of `w.n` floats (initialised or not), no other
/// thread touches this part, and `kernel` runs on this CPU (at this inner size); on AMX, `q`
/// holds [`AMX_ROWS`] rows from `r0`.
unsafe fn tile(
    kernel: Kernel,
    q: &QRows,
    w: &QWeight,
    r0: usize,
    m: usize,
    panel: usize,
    dst: SendPtr,
) {
    let kp = k4(w.k);
    let a_rows = if kernel == Kernel::Amx { AMX_ROWS } else { m };
    let a = &q.data[r0 * kp..(r0 + a_rows) * kp];
    let (c0, cols) = (panel * NR, NR.min(w.n - panel * NR));
    let out = Out {
        dst: dst.at(r0 * w.n + c0),
        ld: w.n,
        cols,
        row_scale: &q.scale[r0..r0 + m],
        row_zero: &q.zero[r0..r0 + m],
        col_scale: &w.scale[c0..c0 + NR],
        col_sum: &w.colsum[c0..c0 + NR],
        bias: &w.bias[c0..c0 + NR],
    };
    let wp = &w.packed[panel * kp * NR..(panel + 1) * kp * NR];
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract; `a` holds AMX_ROWS rows of kp bytes, kp a multiple
        // of 64, and `wp` kp/4 groups of NR·4 bytes.
        Kernel::Amx => amx::tile(a, wp, kp, m, &out),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract; the slices hold m rows of kp bytes and kp/4 groups
        // of NR·4 bytes.
        Kernel::Vnni512 => match m {
            6 => vnni::tile::<6>(a, wp, kp, &out),
            5 => vnni::tile::<5>(a, wp, kp, &out),
            4 => vnni::tile::<4>(a, wp, kp, &out),
            3 => vnni::tile::<3>(a, wp, kp, &out),
            2 => vnni::tile::<2>(a, wp, kp, &out),
            _ => vnni::tile::<1>(a, wp, kp, &out),
        },
        _ => {
            let mut acc = [[0i32; NR]; MR];
            for (g, wg) in wp.chunks_exact(NR * 4).enumerate() {
                for (r, acc) in acc.iter_mut().take(m).enumerate() {
                    let av = &a[r * kp + g * 4..r * kp + g * 4 + 4];
                    for (c, wc) in acc.iter_mut().zip(wg.chunks_exact(4)) {
                        *c += av
                            .iter()
                            .zip(wc)
                            .map(|(&x, &y)| x as i32 * y as i32)
                            .sum::<i32>();
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate().take(m) {
                let (sa, za) = (out.row_scale[r], out.row_zero[r]);
                for (c, &a) in acc.iter().enumerate().take(cols) {
                    let v = (a - za * out.col_sum[c]) as f32;
                    // SAFETY: the caller's contract; c < cols.
                    *out.dst.add(r * out.ld + c) = v.mul_add(sa * out.col_scale[c], out.bias[c]);
                }
            }
        }
    }
}

/// Where a tile's results go and what dequantizes them: row r, column c of the tile is
/// `dst[r·ld + c]` (c < `cols`); `row_*` per tile row, `col_*` and `bias` per panel column
/// (all [`NR`] of them, zeros past the weight's last).
struct Out<'a> {
    dst: *mut f32,
    ld: usize,
    cols: usize,
    row_scale: &'a [f32],
    row_zero: &'a [i32],
    col_scale: &'a [f32],
    col_sum: &'a [i32],
    bias: &'a [f32],
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{Out, NR};
    use std::arch::x86_64::*;

    /// `M` rows × the panel's `NR` columns: `Σ_i a[r·kp + i] · w[i / 4 · 4·NR + c·4 + i % 4]`,
    /// 4 inner values per `vpdpbusd`, in 4·`M` registers; then dequantized, with the bias, into
    /// `out` (a fused multiply-add: the portable kernel's `mul_add` gives the same bits).
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI; `a` holds `M` rows of `kp` bytes, `w` `kp/4` groups
    /// of `NR·4` bytes, and `out` as [`Out`] says, with room for `M` rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile<const M: usize>(a: &[u8], w: &[i8], kp: usize, out: &Out) {
        debug_assert!(a.len() >= M * kp && w.len() >= kp * NR && out.row_scale.len() >= M);
        let mut v = [[_mm512_setzero_si512(); 4]; M];
        let (a, w) = (a.as_ptr(), w.as_ptr());
        for g in 0..kp / 4 {
            let wg = w.add(g * NR * 4);
            let w0 = _mm512_loadu_si512(wg as *const _);
            let w1 = _mm512_loadu_si512(wg.add(64) as *const _);
            let w2 = _mm512_loadu_si512(wg.add(128) as *const _);
            let w3 = _mm512_loadu_si512(wg.add(192) as *const _);
            for (r, v) in v.iter_mut().enumerate() {
                let x = _mm512_set1_epi32((a.add(r * kp + g * 4) as *const i32).read_unaligned());
                v[0] = _mm512_dpbusd_epi32(v[0], x, w0);
                v[1] = _mm512_dpbusd_epi32(v[1], x, w1);
                v[2] = _mm512_dpbusd_epi32(v[2], x, w2);
                v[3] = _mm512_dpbusd_epi32(v[3], x, w3);
            }
        }
        for (r, v) in v.iter().enumerate() {
            store_row(v, r, out);
        }
    }

    /// Row `r` of a tile, its panel's sums in `v`, dequantized with the bias into `out`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `out` has room for row `r`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn store_row(v: &[__m512i; 4], r: usize, out: &Out) {
        let sa = _mm512_set1_ps(out.row_scale[r]);
        let za = _mm512_set1_epi32(out.row_zero[r]);
        for (j, v) in v.iter().enumerate() {
            let c0 = 16 * j;
            if c0 >= out.cols {
                break;
            }
            let left = out.cols - c0;
            let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
            let sum = _mm512_loadu_si512(out.col_sum.as_ptr().add(c0) as *const _);
            let acc = _mm512_sub_epi32(*v, _mm512_mullo_epi32(za, sum));
            let scale = _mm512_mul_ps(sa, _mm512_loadu_ps(out.col_scale.as_ptr().add(c0)));
            let bias = _mm512_loadu_ps(out.bias.as_ptr().add(c0));
            let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), scale, bias);
            _mm512_mask_storeu_ps(out.dst.add(r * out.ld + c0), mask, y);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod amx {
    use super::{Out, AMX_ROWS, NR};
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::cell::Cell;
    use std::sync::OnceLock;

    /// Whether the CPU has AMX-TILE and AMX-INT8 (CPUID leaf 7: EDX bits 24 and 25) and Linux
    /// lets this process use the tile data (`arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)`,
    /// asked once; without it the first tile load faults).
    pub(super) fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            // SAFETY: CPUID leaf 7 exists on every x86-64 CPU with AVX-512 (checked first).
            // (`__cpuid_count` is safe from Rust 1.94 on, unsafe in the 1.89 of `rust-version`.)
            #[allow(unused_unsafe)]
            let edx = unsafe { __cpuid_count(7, 0) }.edx;
            if edx >> 24 & 1 == 0 || edx >> 25 & 1 == 0 {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a system call with two integer arguments.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            rc == 0
        })
    }

    /// The tile configuration (`ldtilecfg`'s 64-byte operand): palette 1, tiles 0–7 each 16
    /// rows of 64 bytes.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    thread_local! {
        /// Whether this thread has loaded [`Config`] (it stays until `tilerelease`, which
        /// nothing here calls; the kernel saves it with the thread's state). The tiles run on
        /// rayon's threads only, where no other AMX code (oneDNN's, in libtorch, runs on
        /// OpenMP's) loads another configuration.
        static CONFIGURED: Cell<bool> = const { Cell::new(false) };
    }

    /// Rows 0..`m` (m ≤ [`AMX_ROWS`]) × the panel's `NR` columns: the same sums as the VNNI
    /// kernel's, 64 inner values a step: tiles 4 and 5 hold 16 rows of activations each,
    /// 6 and 7 the 16 groups of 4 inner values of 16 columns each, 0–3 the 2 × 2 sums; per
    /// half panel, stored to a buffer, then dequantized as [`super::vnni::store_row`] does
    /// (the same bits).
    ///
    /// # Safety
    /// [`available`] and AVX-512 F/BW/VNNI; `kp` is a multiple of 64; `a` holds [`AMX_ROWS`]
    /// rows of `kp` bytes, `w` `kp/4` groups of `NR·4` bytes; `out` as [`Out`] says, with room
    /// for `m` rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile(a: &[u8], w: &[i8], kp: usize, m: usize, out: &Out) {
        debug_assert!(kp.is_multiple_of(64) && a.len() >= AMX_ROWS * kp && w.len() >= kp * NR);
        if !CONFIGURED.get() {
            let mut c = Config {
                palette: 1,
                start_row: 0,
                reserved: [0; 14],
                colsb: [0; 16],
                rows: [0; 16],
            };
            c.colsb[..8].fill(64);
            c.rows[..8].fill(16);
            asm!("ldtilecfg [{}]", in(reg) &c as *const Config, options(nostack, readonly));
            CONFIGURED.set(true);
        }
        // 32 rows × NR sums, a row every NR·4 bytes; every one is stored by the 2 halves × 4
        // tiles below before it is read, so no zeroing pass on this hot path.
        let mut acc = std::mem::MaybeUninit::<[i32; AMX_ROWS * NR]>::uninit();
        let acc = acc.as_mut_ptr() as *mut i32;
        let (a, w) = (a.as_ptr(), w.as_ptr());
        for half in 0..2 {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for k0 in (0..kp).step_by(64) {
                let b0 = w.add(k0 / 4 * NR * 4 + half * 32 * 4);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tdpbusd tmm1, tmm4, tmm7",
                    "tdpbusd tmm2, tmm5, tmm6",
                    "tdpbusd tmm3, tmm5, tmm7",
                    a0 = in(reg) a.add(k0),
                    a1 = in(reg) a.add(16 * kp + k0),
                    b0 = in(reg) b0,
                    b1 = in(reg) b0.add(16 * 4),
                    sa = in(reg) kp,
                    sb = in(reg) NR * 4,
                    options(nostack, readonly)
                );
            }
            let c = acc.add(half * 32);
            asm!(
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                "tilestored [{c2} + {s}*1], tmm2",
                "tilestored [{c3} + {s}*1], tmm3",
                c0 = in(reg) c,
                c1 = in(reg) c.add(16),
                c2 = in(reg) c.add(16 * NR),
                c3 = in(reg) c.add(16 * NR + 16),
                s = in(reg) NR * 4,
                options(nostack)
            );
        }
        for r in 0..m {
            let row = acc.add(r * NR);
            let v = [0, 1, 2, 3].map(|j| _mm512_loadu_si512(row.add(16 * j) as *const _));
            super::vnni::store_row(&v, r, out);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `rows × cols` values uniform in ±`spread`/2, from `seed`.
    pub(in crate::backend::candle) fn random(
        rows: usize,
        cols: usize,
        seed: u64,
        spread: f32,
    ) -> Vec<f32> {
        let mut rng = crate::util::rand::SplitMix64::new(seed);
        (0..rows * cols)
            .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * spread)
            .collect()
    }

    pub(in crate::backend::candle) fn tensor(v: &[f32], rows: usize, cols: usize) -> Tensor {
        Tensor::from_slice(v, (rows, cols), &Device::Cpu).unwrap()
    }

    /// Shapes with a ragged last tile of rows (for VNNI's 6 and AMX's 32), an inner size not a
    /// multiple of 4 and an output not a whole panel, plus one of MiniLM's.
    const SHAPES: [(usize, usize, usize); 4] =
        [(13, 37, 70), (7, 384, 64), (50, 384, 1536), (70, 1536, 200)];

    /// Both kernels give exactly what the integers give, and the same bits as each other: each
    /// output against the same sum computed here, one multiply at a time in i64, from the
    /// quantized rows and the packed weight.
    #[test]
    fn kernels_sum_the_integers_exactly() {
        let mut kernels = vec![Kernel::Portable];
        match Kernel::best() {
            Kernel::Portable => {
                eprintln!("skipped for the VNNI and AMX kernels: this CPU has no AVX-512 VNNI")
            }
            Kernel::Vnni512 => {
                kernels.push(Kernel::Vnni512);
                eprintln!("skipped for the AMX kernel: this CPU (or Linux) gives no AMX");
            }
            Kernel::Amx => kernels.extend([Kernel::Vnni512, Kernel::Amx]),
        }
        for (rows, k, n) in SHAPES {
            let (x, wv) = (random(rows, k, 1, 4.0), random(n, k, 2, 0.2));
            let b = random(1, n, 3, 1.0);
            let w = QWeight::new(
                &tensor(&wv, n, k),
                &Tensor::from_slice(&b, n, &Device::Cpu).unwrap(),
            )
            .unwrap();
            let q = quantize_rows(&x, rows, k, rows);
            let wd = w.dequantized();
            let kp = k4(k);
            let mut first: Option<Vec<Vec<f32>>> = None;
            // AMX needs whole 64-byte tile rows: the first shape's inner size runs on VNNI.
            for &kernel in kernels.iter().filter(|kernel| kernel.runs_here(k)) {
                let y = linear_on(kernel, &tensor(&x, rows, k), &w, false)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                // The kernels dequantize alike (one fused multiply-add): the same bits.
                if let Some(f) = &first {
                    assert!(
                        f == &y,
                        "{kernel:?} {rows}x{k}x{n}: not the portable kernel's bits"
                    );
                }
                first.get_or_insert_with(|| y.clone());
                for (r, y) in y.iter().enumerate() {
                    for c in 0..n {
                        let mut dot = 0i64;
                        for i in 0..k {
                            let wq = (wd[c * k + i] / w.scale[c]).round() as i64;
                            dot += (q.data[r * kp + i] as i64 - q.zero[r] as i64) * wq;
                        }
                        let want = dot as f64 * q.scale[r] as f64 * w.scale[c] as f64 + b[c] as f64;
                        let got = y[c] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{kernel:?} {rows}x{k}x{n} [{r}][{c}]: {got} against {want}"
                        );
                    }
                }
            }
        }
    }

    /// The int8 product stays within its quantization noise of the f32 product: the root mean
    /// square of the error below 1% of the outputs' (about 0.6% from the rounding of these
    /// inputs). A wrong scale, of the weights or the activations, or a zero point off by one
    /// step moves it past that.
    #[test]
    fn int8_product_is_near_the_f32_product() {
        for (rows, k, n) in SHAPES {
            let (x, wv) = (random(rows, k, 4, 4.0), random(n, k, 5, 0.2));
            let zeros = Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
            let w = QWeight::new(&tensor(&wv, n, k), &zeros).unwrap();
            let want = tensor(&x, rows, k)
                .matmul(&tensor(&wv, n, k).t().unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let got = linear(&tensor(&x, rows, k), &w, false)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let rms = |v: &mut dyn Iterator<Item = f32>| {
                let (s, n) = v.fold((0f64, 0usize), |(s, n), e| (s + (e * e) as f64, n + 1));
                (s / n as f64).sqrt()
            };
            let out = rms(&mut want.iter().copied());
            let err = rms(&mut want.iter().zip(&got).map(|(a, b)| a - b));
            assert!(
                err < 0.01 * out,
                "{rows}x{k}x{n}: error {err:.5} (rms) against outputs {out:.4} (rms)"
            );
        }
    }

    /// GELU after the product is GELU of the product.
    #[test]
    fn gelu_is_applied_after_the_bias() {
        let (rows, k, n) = (9, 40, 20);
        let (x, wv) = (random(rows, k, 6, 4.0), random(n, k, 7, 0.2));
        let b = Tensor::from_slice(&random(1, n, 8, 1.0), n, &Device::Cpu).unwrap();
        let w = QWeight::new(&tensor(&wv, n, k), &b).unwrap();
        let x = tensor(&x, rows, k);
        let plain = linear(&x, &w, false).unwrap().gelu_erf().unwrap();
        let fused = linear(&x, &w, true).unwrap();
        let diff = (plain - fused)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "GELU differs by {diff}");
    }

    /// A row of zeros (padding tokens' inputs can be) and a constant row quantize without a
    /// division by zero and give the bias and the exact product.
    #[test]
    fn flat_rows_quantize_exactly() {
        let (k, n) = (8, 3);
        let mut x = vec![0f32; 2 * k];
        x[k..].fill(0.5);
        let wv = random(n, k, 9, 0.2);
        let b = Tensor::from_slice(&[1f32, 2.0, 3.0], n, &Device::Cpu).unwrap();
        let w = QWeight::new(&tensor(&wv, n, k), &b).unwrap();
        let y = linear(&tensor(&x, 2, k), &w, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(y[0], vec![1.0, 2.0, 3.0]);
        let wd = w.dequantized();
        for c in 0..n {
            let want = 0.5 * wd[c * k..(c + 1) * k].iter().sum::<f32>() + [1.0, 2.0, 3.0][c];
            assert!(
                (y[1][c] - want).abs() < 1e-5,
                "column {c}: {} against {want}",
                y[1][c]
            );
        }
    }
}
