//! libtorch's linear kernels: fp32 on ATen, oneDNN or oneDNN on a prepacked weight, int8 on
//! `_int_mm`, in row blocks, FBGEMM on per-row activations or weight-only, and the race that
//! picks the fastest per shape.

use tch::{Kind, TchError, Tensor};

use super::*;
use crate::backend::Precision;
use crate::error::{Error, Result};

/// The int8 kernels, in the order of [`Linear::new`]'s choice index: `_int_mm` on the whole
/// input, weight-only, and `_int_mm` in blocks of [`INT8_BLOCK_ROWS`] rows (quantize, product
/// and rescale per block, so the int32 product stays in cache instead of a round trip through
/// memory as large as the output), and `fbgemm_rows`: FBGEMM's int8 GEMM (the one
/// `quantize_dynamic` runs, weight prepacked once) on activations quantized per row like
/// `_int_mm`'s (8-bit where FBGEMM has VNNI, 7-bit on AVX2 alone, whose 16-bit pair sums would
/// saturate), the row scale and bias applied per 64-row block (src/backend/torch_quant.cpp),
/// and `onednn_rows`: oneDNN's int8 linear (`onednn::qlinear_pointwise`, what PyTorch's
/// Inductor runs for x86 int8; AMX tiles where the CPU has them), the weight prepacked once for
/// the run's row count, on activations quantized per row to u8 with a zero point (a one-sided
/// row, such as GELU's outputs, keeps all 256 levels where the symmetric int8 of the others
/// uses half).
/// `auto` races those five: `fbgemm` (PyTorch's
/// `quantize_dynamic` path, activations quantized per tensor to 7 bits) misses recbench's int8
/// parity bar on MiniLM (min cosine 0.972, top-10 overlap 0.84 against cosine ≥ 0.99 and
/// overlap ≥ 0.9; 0.9899/0.85 with 8-bit activations), so it runs only when forced, as the
/// PyTorch users' reference.
pub(super) const INT8_KERNELS: &[&str] = &[
    "int_mm",
    "weight_only",
    "int_mm_blocked",
    "fbgemm_rows",
    "onednn_rows",
    "fbgemm",
];
pub(super) const INT8_RACED: usize = 5;

/// Rows per block of `int_mm_blocked`: a 256 × 1,536 int32 product is 1.5 MiB.
pub(super) const INT8_BLOCK_ROWS: i64 = 256;

/// The fp32 kernels, likewise.
pub(super) const FP32_KERNELS: &[&str] = &["aten", "onednn", "onednn_packed"];

/// `RECBENCH_TORCH_INT8`: `auto` (or unset) chooses by measurement; a name of
/// [`INT8_KERNELS`] forces one.
pub(super) fn int8_forced() -> Result<Option<usize>> {
    match std::env::var(INT8_ENV).ok().as_deref() {
        None | Some("") | Some("auto") => Ok(None),
        Some(name) => INT8_KERNELS
            .iter()
            .position(|k| *k == name)
            .map(Some)
            .ok_or_else(|| {
                Error::backend(
                    "torch",
                    format!(
                        "{INT8_ENV}={name:?}: expected `auto`, `{}`",
                        INT8_KERNELS.join("`, `")
                    ),
                )
            }),
    }
}

/// Which library runs the fp32 linear layers on CPU, from `RECBENCH_TORCH_LINEAR`.
///
/// `auto` (the default) times all three per layer shape at load and keeps the fastest; `onednn`
/// calls `mkldnn_linear` for GEMMs of at least `ONEDNN_MIN_MACS` multiply-adds and `linear`
/// below; `aten` always calls `linear`, which libtorch's x86 wheel
/// sends to MKL's sgemm (which repacks the weight on every call); `onednn_packed` reorders the
/// weight once into oneDNN's blocked layout for the run's row count and calls
/// `mkldnn::_linear_pointwise` on the dense input (what PyTorch's Inductor runs after freezing;
/// no layout conversion per call; `auto` races all three only from `ONEDNN_MIN_MACS` up, below
/// it aten runs). Both libraries ship inside the same
/// libtorch. MKL picks its kernels by CPU vendor, oneDNN by instruction set; on the AMD EPYC
/// (AVX-512) VM of docs/benchmarks/torch.md, oneDNN ran MiniLM's linear layers about twice as
/// fast; on an AVX2-only EPYC, slower than MKL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearKernel {
    /// The fastest per layer shape, timed at load on the run's own row count on this host
    /// (cached per host, build, libtorch version, threads and shape).
    Auto,
    OneDnn,
    OneDnnPacked,
    Aten,
}

impl LinearKernel {
    pub fn from_env() -> Result<LinearKernel> {
        LinearKernel::parse(std::env::var(LINEAR_ENV).ok().as_deref())
    }

    /// A value of `RECBENCH_TORCH_LINEAR` (unset or empty: the default).
    pub fn parse(value: Option<&str>) -> Result<LinearKernel> {
        match value {
            None | Some("") | Some("auto") => Ok(LinearKernel::Auto),
            Some("onednn") => Ok(LinearKernel::OneDnn),
            Some("onednn_packed") => Ok(LinearKernel::OneDnnPacked),
            Some("aten") => Ok(LinearKernel::Aten),
            Some(other) => Err(Error::backend(
                "torch",
                format!(
                    "{LINEAR_ENV}={other:?}: expected `auto`, `onednn`, `onednn_packed` or `aten`"
                ),
            )),
        }
    }
}

/// The smallest GEMM (rows × in × out multiply-adds) sent to oneDNN. Each oneDNN call costs a
/// fixed ~50–60 µs (primitive set-up and two layout conversions); below this size aten is faster.
/// Crossover measured on the VM of docs/benchmarks/torch.md (Python, same libtorch, 2 threads):
/// 128→128 at 512 rows, 512→128 at 256, 384→384 at 64–128, 1536→384 at 16–64.
pub(super) const ONEDNN_MIN_MACS: i64 = 1 << 24;

/// Rows the `auto` choice is timed at when the caller gives no hint (parity, recommend).
pub(super) const DEFAULT_ROWS: usize = 1024;

/// Selects the int8 linear kernel: `auto` (default) or a name of [`INT8_KERNELS`] (see
/// [`Linear`]).
pub const INT8_ENV: &str = "RECBENCH_TORCH_INT8";

/// One of several kernels per layer shape: forced by an environment variable, or (`auto`) the
/// fastest timed on the shape at the run's row count, remembered per host in the cache. A
/// decision is an index into `names`.
pub(super) struct KernelChoice {
    /// What is chosen ("fp32 linear layers"), the variable that forces it, the kernels' names.
    pub(super) what: &'static str,
    pub(super) env: &'static str,
    pub(super) names: &'static [&'static str],
    /// `Some(index)` when forced.
    pub(super) forced: Option<usize>,
    /// How many of `names` (from the first) `auto` races.
    pub(super) raced: usize,
    pub(super) rows: i64,
    pub(super) threads: usize,
    /// The model the layers belong to ([`ModelFiles::identity`]): its layers' timings decide
    /// for it alone.
    pub(super) model: String,
    /// (in, out) → index, with how it was decided.
    pub(super) decided: Vec<((i64, i64), usize, String)>,
}

impl KernelChoice {
    /// The cache key of one decision: host (CPU model and flags), libtorch, threads, kernels,
    /// shape.
    pub(super) fn key(&self, inner: i64, out: i64) -> String {
        format!(
            "cpu {}, {}, {}, {} threads, {}, {}, {}x{inner}x{out}",
            crate::tuning::choices::host(),
            runtime_version(),
            self.model,
            self.threads,
            openmp_setting(),
            self.names[..self.raced].join(" or "),
            self.rows
        )
    }

    /// Which kernel the layer of shape `inner`→`out` runs. `floor`: only the first can help at
    /// this size; `time` gives each kernel's milliseconds (infinite for one that cannot run
    /// here, with its reason).
    pub(super) fn pick(
        &mut self,
        (inner, out): (i64, i64),
        floor: Option<&str>,
        time: impl FnOnce() -> std::result::Result<Vec<(f64, Option<String>)>, TchError>,
    ) -> Result<usize> {
        if let Some(f) = self.forced {
            return Ok(f);
        }
        if let Some((_, k, _)) = self.decided.iter().find(|(s, _, _)| *s == (inner, out)) {
            return Ok(*k);
        }
        if let Some(why) = floor {
            self.decided.push(((inner, out), 0, why.into()));
            return Ok(0);
        }
        let key = self.key(inner, out);
        let raced = &self.names[..self.raced];
        let decided = crate::tuning::choices::recall_or_measure(
            "torch-linear",
            &key,
            |v| raced.iter().position(|n| v.starts_with(&format!("{n} ("))),
            || {
                let times = time().map_err(err)?;
                let k = (0..times.len())
                    .min_by(|&a, &b| times[a].0.total_cmp(&times[b].0))
                    .unwrap_or(0);
                let each: Vec<String> = self
                    .names
                    .iter()
                    .zip(&times)
                    .map(|(n, (ms, why))| match why {
                        Some(why) => format!("{n} cannot run: {why}"),
                        None => format!("{n} {ms:.2} ms"),
                    })
                    .collect();
                let how = format!(
                    "{} ({} at {} rows)",
                    self.names[k],
                    each.join(", "),
                    self.rows
                );
                Ok::<_, Error>((k, how))
            },
        )?;
        // The run's note says once that the shapes were chosen by measurement.
        let how = if decided.remembered {
            decided.told()
        } else {
            decided.how
        };
        let k = decided.value;
        self.decided.push(((inner, out), k, how));
        Ok(k)
    }

    /// Whether kernel `k` runs any layer (forced or chosen).
    pub(super) fn uses(&self, k: Option<usize>) -> bool {
        k.is_some_and(|k| self.forced == Some(k) || self.decided.iter().any(|d| d.1 == k))
    }

    /// The note for the run and the cache tag of its outputs: the kernel name when one runs
    /// everywhere, else `auto-` and one letter per shape (a: the first kernel, b: the second, …).
    pub(super) fn describe(&self) -> (String, Option<String>) {
        if let Some(f) = self.forced {
            let name = self.names[f];
            return (
                format!("{}: {name} ({}={name})", self.what, self.env),
                Some(name.into()),
            );
        }
        let per: Vec<String> = self
            .decided
            .iter()
            .map(|((i, o), _, how)| format!("{i}→{o}: {how}"))
            .collect();
        let tag: String = self
            .decided
            .iter()
            .map(|(_, k, _)| (b'a' + *k as u8) as char)
            .collect();
        (
            format!(
                "{} chosen by measurement per shape ({}=auto): {}",
                self.what,
                self.env,
                per.join("; ")
            ),
            Some(if tag.chars().all(|c| c == 'a') {
                self.names[0].into()
            } else {
                format!("auto-{tag}")
            }),
        )
    }
}

/// Milliseconds of each candidate linear layer on one `[rows, in]` f32 input (see
/// `super::race_all`); a candidate that could not be built is infinitely slow, with its reason.
pub(super) fn time_all(
    candidates: &[std::result::Result<Linear, TchError>],
    inner: i64,
    rows: i64,
) -> std::result::Result<Vec<(f64, Option<String>)>, TchError> {
    let x = Tensor::f_rand([rows, inner], (Kind::Float, tch::Device::Cpu))?;
    let ready: Vec<&Linear> = candidates.iter().filter_map(|c| c.as_ref().ok()).collect();
    let mut runs: Vec<Box<dyn FnMut() -> std::result::Result<(), TchError> + '_>> = ready
        .iter()
        .map(|l| {
            let x = &x;
            Box::new(move || l.forward(x).map(drop)) as Box<dyn FnMut() -> _>
        })
        .collect();
    let mut times = crate::tuning::race_all(&mut runs)?.into_iter();
    Ok(candidates
        .iter()
        .map(|c| match c {
            Ok(_) => (times.next().unwrap_or(f64::INFINITY), None),
            Err(e) => (f64::INFINITY, Some(e.to_string())),
        })
        .collect())
}

pub(super) enum Linear {
    /// `weight` `[out, in]` and bias in the compute dtype. With `onednn`, fp32 GEMMs of at least
    /// `ONEDNN_MIN_MACS` run through `mkldnn_linear` (activations converted to a oneDNN tensor
    /// and back, a copy small beside the GEMM), smaller ones through aten's `linear`.
    Dense { w: Tensor, b: Tensor, onednn: bool },
    /// f32 weight reordered once into oneDNN's blocked layout for the run's row count
    /// (`quant::onednn_pack`), and the f32 bias: `mkldnn::_linear_pointwise` per call.
    DensePacked { w: Tensor, b: Tensor },
    /// int8 weight transposed to `[in, out]` (contiguous, as `_int_mm` wants it), the f32 scale
    /// of each output channel `[1, out]`, and the f32 bias; activations are quantized per row
    /// on every call (dynamic int8 × int8 → int32); with `block`, that many rows at a time.
    Int8 {
        w_t: Tensor,
        scale: Tensor,
        b: Tensor,
        block: Option<i64>,
    },
    /// int8 weight `[out, in]` with its f32 scale per output channel `[out]` and the f32 bias;
    /// f32 activations (`_weight_int8pack_mm`, weight-only int8: no activation rounding).
    Int8WeightOnly { w: Tensor, scale: Tensor, b: Tensor },
    /// FBGEMM's int8 GEMM (activations symmetric, 8-bit with VNNI, else 7-bit; row scale and
    /// bias per block of rows) or oneDNN's (activations u8 with a zero point) on a prepacked
    /// weight (per output channel), activations quantized per row.
    Int8Rows(quant::RowsPacked),
    /// PyTorch's dynamic int8 linear (`quantized::linear_dynamic`, FBGEMM on x86: what
    /// `quantize_dynamic` runs): weight per output channel, prepacked with the bias;
    /// activations quantized per tensor on every call, to 7 bits as PyTorch does on x86.
    Int8Fbgemm(quant::Packed),
}

impl Linear {
    /// The layer at `precision` with kernel `choice`: an index into [`FP32_KERNELS`] (aten,
    /// oneDNN, oneDNN on a weight packed for `rows` rows) or [`INT8_KERNELS`] (`_int_mm`,
    /// weight-only, blocked `_int_mm`, FBGEMM or oneDNN on per-row activations, PyTorch's FBGEMM
    /// linear).
    pub(super) fn new(
        w: &Tensor,
        b: &Tensor,
        precision: Precision,
        kind: Kind,
        choice: usize,
        rows: i64,
    ) -> Result<Linear, TchError> {
        Ok(match precision {
            Precision::Fp32 if choice == 2 => Linear::DensePacked {
                w: quant::onednn_pack(&w.f_to_kind(Kind::Float)?, rows)?,
                b: b.f_to_kind(Kind::Float)?.f_contiguous()?,
            },
            Precision::Int8 if choice == 3 || choice == 4 => {
                let (q, scale) = quantize_rows(&w.f_to_kind(Kind::Float)?)?;
                let (scale, b) = (scale.f_reshape([-1])?, b.f_to_kind(Kind::Float)?);
                Linear::Int8Rows(if choice == 3 {
                    quant::RowsPacked::fbgemm(&q, &scale, &b)?
                } else {
                    quant::RowsPacked::onednn(&q, &scale, &b, rows)?
                })
            }
            Precision::Int8 if choice == 5 => {
                let w = w.f_to_kind(Kind::Float)?;
                let (_, scale) = quantize_rows(&w)?;
                let scale = scale.f_reshape([-1])?.f_to_kind(Kind::Double)?;
                let zero = scale.f_zeros_like()?.f_to_kind(Kind::Int64)?;
                let q = w.f_quantize_per_channel(&scale, &zero, 0, Kind::QInt8)?;
                Linear::Int8Fbgemm(quant::Packed::new(&q, &b.f_to_kind(Kind::Float)?)?)
            }
            Precision::Int8 if choice == 1 => {
                let (q, scale) = quantize_rows(&w.f_to_kind(Kind::Float)?)?;
                Linear::Int8WeightOnly {
                    w: q.f_contiguous()?,
                    scale: scale.f_reshape([-1])?.f_contiguous()?,
                    b: b.f_to_kind(Kind::Float)?,
                }
            }
            Precision::Int8 => {
                let (w_t, scale) = quantize_weight(w)?;
                Linear::Int8 {
                    w_t,
                    scale,
                    b: b.f_to_kind(Kind::Float)?,
                    block: (choice == 2).then_some(INT8_BLOCK_ROWS),
                }
            }
            _ => Linear::Dense {
                w: w.f_to_kind(kind)?.f_contiguous()?,
                b: b.f_to_kind(kind)?.f_contiguous()?,
                onednn: choice == 1 && precision == Precision::Fp32,
            },
        })
    }

    /// oneDNN's per-row int8 layer, the one [`quant::RowsPacked::fused`] runs.
    pub(super) fn onednn_rows(&self) -> Option<&quant::RowsPacked> {
        match self {
            Linear::Int8Rows(p) if p.is_onednn() => Some(p),
            _ => None,
        }
    }

    /// `x` is `[rows, in]`.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Linear::Dense { w, b, onednn } => {
                let (rows, (out, inner)) = (x.size()[0], w.size2()?);
                if *onednn && rows * inner * out >= ONEDNN_MIN_MACS {
                    x.f_contiguous()?
                        .f_to_mkldnn(None)?
                        .f_mkldnn_linear(w, Some(b))?
                        .f_to_dense(None, false)
                } else {
                    x.f_linear(w, Some(b))
                }
            }
            Linear::Int8 {
                w_t,
                scale,
                b,
                block,
            } => {
                // One parallel pass each side of the int8 GEMM (torch_quant.cpp): the ATen chain
                // they replace made twelve, each a libtorch parallel region and a temporary.
                let rows = x.size()[0];
                let step = block.unwrap_or(rows).max(1);
                if step >= rows {
                    let (xq, xs) = quant::quantize_rows(x)?;
                    return quant::epilogue(&xq.f_internal_int_mm(w_t)?, &xs, scale, b, None);
                }
                let y = Tensor::f_empty([rows, w_t.size()[1]], (Kind::Float, x.device()))?;
                let mut start = 0;
                while start < rows {
                    let n = step.min(rows - start);
                    let (xq, xs) = quant::quantize_rows(&x.f_narrow(0, start, n)?)?;
                    let out = y.f_narrow(0, start, n)?;
                    let _ =
                        quant::epilogue(&xq.f_internal_int_mm(w_t)?, &xs, scale, b, Some(&out))?;
                    start += n;
                }
                Ok(y)
            }
            Linear::DensePacked { w, b } => quant::onednn_linear(x, w, b),
            Linear::Int8WeightOnly { w, scale, b } => x
                .f_contiguous()?
                .f_internal_weight_int8pack_mm(w, scale)?
                .f_add(b),
            Linear::Int8Rows(packed) => packed.forward(x),
            Linear::Int8Fbgemm(packed) => packed.forward(&x.f_contiguous()?),
        }
    }
}

/// Symmetric per-output-channel int8 weights: returns (`[in, out]` int8, `[1, out]` f32 scale).
/// The rows of `[out, in]` weights are the output channels.
pub(super) fn quantize_weight(w: &Tensor) -> Result<(Tensor, Tensor), TchError> {
    let (q, scale) = quantize_rows(&w.f_to_kind(Kind::Float)?)?;
    Ok((
        q.f_transpose(0, 1)?.f_contiguous()?,
        scale.f_reshape([1, -1])?,
    ))
}

/// Symmetric per-row int8 activations: returns (`[rows, in]` int8, `[rows, 1]` f32 scale).
pub(super) fn quantize_rows(x: &Tensor) -> Result<(Tensor, Tensor), TchError> {
    let scale = x
        .f_abs()?
        .f_amax([1].as_slice(), true)?
        .f_clamp_min(1e-12)?
        .f_div_scalar(127.0)?;
    let q = x
        .f_div(&scale)?
        .f_round()?
        .f_clamp(-127.0, 127.0)?
        .f_to_kind(Kind::Int8)?;
    Ok((q, scale))
}
