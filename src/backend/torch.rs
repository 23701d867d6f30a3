//! The libtorch backend: the same BERT forward as the candle backend, written with tch ops on
//! PyTorch 2.11.0's libtorch (no TorchScript, no Python).
//!
//! Weights come from the shared safetensors file, names as in Hugging Face's `BertModel`
//! without prefix. Q, K and V are fused into one `[3h, h]` projection (one GEMM per layer);
//! attention runs through `scaled_dot_product_attention` with a boolean padding mask (so no
//! fill value can overflow in half precision); GELU is the exact erf form; the encoder is
//! post-LayerNorm; pooling is the masked mean of the last hidden states, L2-normalised, in f32.
//! Everything runs with gradient tracking off (tch exposes no `InferenceMode` guard). On CPU the
//! fp32 linear layers run on libtorch's oneDNN by default (see [`LinearKernel`]).
//!
//! Precisions: fp32; bf16 and fp16 hold weights and activations in the half type and let
//! libtorch's kernels accumulate in f32 (pooling is done in f32); int8 quantizes the linear
//! layers' weights once, symmetric per output channel, and runs the fastest on this host of
//! `_int_mm` (activations quantized per row on every call, int8 × int8 → int32, rescaled in
//! f32), the same in blocks of rows, FBGEMM's GEMM on per-row activations, and
//! `_weight_int8pack_mm` (weight-only, f32 activations). PyTorch's own dynamic int8
//! linear (`quantized::linear_dynamic` on FBGEMM, what `quantize_dynamic` runs on x86; called
//! through src/backend/torch_quant.cpp) runs when forced: it misses the int8 parity bar on
//! MiniLM (see [`INT8_KERNELS`]).

use std::sync::{Once, OnceLock};

use tch::{Kind, TchError, Tensor};

use super::{Device, Embeddings, Encoder, EncoderOptions, Precision};
use crate::error::{Error, Result};
use crate::model::bert::{BertTensors, Dense, Norm};
use crate::model::{BertConfig, ModelFiles, TokenBatch};

fn err(e: TchError) -> Error {
    Error::backend("torch", e)
}

/// Selects the kernel of the fp32 linear layers on CPU: `auto` (default), `aten`, `onednn` or
/// `onednn_packed` (see [`LinearKernel`]).
pub const LINEAR_ENV: &str = "RECBENCH_TORCH_LINEAR";

pub const COMPILED: bool = true;

pub fn describe() -> String {
    format!(
        "libtorch via tch; fp32 linear layers on aten/MKL, oneDNN or oneDNN on a prepacked \
         weight, the fastest per shape by measurement at load \
         ({LINEAR_ENV}=aten|onednn|onednn_packed forces one); int8 weights per channel \
         on _int_mm (whole or in row blocks), FBGEMM on per-row activations or \
         _weight_int8pack_mm, the fastest by measurement ({INT8_ENV}=int_mm|int_mm_blocked|\
         fbgemm_rows|weight_only forces one; =fbgemm runs PyTorch's quantize_dynamic kernel); \
         intra-op threads per run, 1 inter-op"
    )
}

/// The fp32 linear kernel setting (a loaded encoder knows its exact choice, see
/// `Encoder::cache_tag`): oneDNN and aten never share computed embeddings.
pub fn cache_tag(precision: Precision) -> Option<String> {
    (precision == Precision::Fp32).then(|| {
        std::env::var(LINEAR_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "auto".into())
    })
}

pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<Box<dyn Encoder>> {
    Ok(Box::new(TorchBert::load(files, opts)?))
}

/// libtorch's `mm` on CPU (MKL's sgemm in the x86 wheel) with `threads` intra-op threads.
pub fn gemm_gflops(n: usize, threads: usize, budget: std::time::Duration) -> Option<f64> {
    set_threads(threads).ok()?;
    let _guard = tch::no_grad_guard();
    let n64 = n as i64;
    let a = Tensor::f_rand([n64, n64], (Kind::Float, tch::Device::Cpu)).ok()?;
    let b = Tensor::f_rand([n64, n64], (Kind::Float, tch::Device::Cpu)).ok()?;
    let mut ok = true;
    let best = super::best_gflops(n, budget, || {
        ok &= a.f_mm(&b).is_ok();
    });
    ok.then_some(best)
}

/// A stand-in for `layers` BERT encoder layers on `[sequences × seq, hidden]` fp32 activations
/// with random weights: per layer the fused QKV projection, scaled dot-product attention per
/// head, the output projection, the FFN pair with GELU, the residual adds and two LayerNorms, as
/// many libtorch parallel regions as the model runs. What the OpenMP spin probe
/// (`harness::openmp`) times; returns one forward pass as a closure.
pub fn probe_forward(
    cfg: &crate::model::BertConfig,
    sequences: usize,
    seq: usize,
    threads: usize,
) -> Result<impl FnMut() -> Result<()>> {
    set_threads(threads)?;
    let (h, i, heads) = (
        cfg.hidden_size as i64,
        cfg.intermediate_size as i64,
        cfg.num_heads as i64,
    );
    let (b, s) = (sequences as i64, seq as i64);
    let opts = (Kind::Float, tch::Device::Cpu);
    let w = |o: i64, n: i64| Tensor::f_randn([o, n], opts).and_then(|t| t.f_mul_scalar(0.05));
    let (wqkv, wo, wi, wd) = (w(3 * h, h), w(h, h), w(i, h), w(h, i));
    let (wqkv, wo, wi, wd) = (
        wqkv.map_err(err)?,
        wo.map_err(err)?,
        wi.map_err(err)?,
        wd.map_err(err)?,
    );
    let x0 = Tensor::f_randn([b * s, h], opts).map_err(err)?;
    let ones = Tensor::f_ones([h], opts).map_err(err)?;
    let zeros = Tensor::f_zeros([h], opts).map_err(err)?;
    let layers = cfg.num_layers;
    let layer = move |x: &Tensor| -> Result<Tensor, TchError> {
        let ln =
            |t: &Tensor| t.f_layer_norm([h].as_slice(), Some(&ones), Some(&zeros), 1e-12, false);
        let qkv = x
            .f_linear::<Tensor>(&wqkv, None)?
            .f_view([b, s, 3, heads, h / heads])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (q, k, v) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
        let ctx = Tensor::f_scaled_dot_product_attention::<Tensor>(
            &q, &k, &v, None, 0.0, false, None, false,
        )?
        .f_permute([0, 2, 1, 3])?
        .f_reshape([b * s, h])?;
        let a = ln(&ctx.f_linear::<Tensor>(&wo, None)?.f_add(x)?)?;
        let f = a.f_linear::<Tensor>(&wi, None)?.f_gelu("none")?;
        ln(&f.f_linear::<Tensor>(&wd, None)?.f_add(&a)?)
    };
    Ok(move || {
        let _guard = tch::no_grad_guard();
        let mut x = x0.shallow_clone();
        for _ in 0..layers {
            x = layer(&x).map_err(err)?;
        }
        drop(x);
        Ok(())
    })
}

/// The OpenMP spin this process runs with (`GOMP_SPINCOUNT`, `OMP_WAIT_POLICY`): kernel timings
/// depend on it (a futex wake-up per parallel region without a spin), so decisions are kept
/// apart per setting.
fn openmp_setting() -> String {
    let v = |k: &str| std::env::var(k).unwrap_or_else(|_| "unset".into());
    format!(
        "GOMP_SPINCOUNT {}, OMP_WAIT_POLICY {}",
        v("GOMP_SPINCOUNT"),
        v("OMP_WAIT_POLICY")
    )
}

/// The version of the libtorch this process has loaded, read from the `version.py` of the
/// PyTorch installation it was loaded from (`torch/lib/libtorch_cpu.so` → `torch/version.py`),
/// else the version tch 0.24 is built for. Computed once per process.
pub fn runtime_version() -> String {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(find_runtime_version).clone()
}

fn find_runtime_version() -> String {
    let tch = format!(
        "tch {} (PyTorch 2.11.0 libtorch)",
        env!("RECBENCH_TCH_VERSION")
    );
    loaded_libtorch_version()
        .map(|v| format!("libtorch {v} (tch {})", env!("RECBENCH_TCH_VERSION")))
        .unwrap_or(tch)
}

/// The path of the `libtorch_cpu.so` this process has loaded.
fn loaded_libtorch() -> Option<std::path::PathBuf> {
    // Make sure libtorch is loaded and initialised (it is a dynamic dependency, so it is).
    let _ = tch::get_num_threads();
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(std::path::PathBuf::from)
}

/// Loads libtorch's CUDA half (`libtorch_cuda.so`, beside the `libtorch_cpu.so` in use) once
/// per process. The binary does not link it: linked, it would need cuDNN, NCCL and the rest of
/// the CUDA libraries just to start, on every host. Loaded, its kernels register with libtorch
/// and `tch::Cuda` sees the GPUs. Its dependencies resolve through its own rpath (the
/// `nvidia/*` folders of a PyTorch installation) or LD_LIBRARY_PATH.
fn load_cuda_library() -> std::result::Result<(), String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let lib = loaded_libtorch()
                .and_then(|p| Some(p.parent()?.join("libtorch_cuda.so")))
                .ok_or("cannot tell where this process loaded libtorch from")?;
            crate::telemetry::cuda::open_global(&lib).map_err(|why| {
                format!(
                    "torch on CUDA needs {} (PyTorch's CUDA build, with its CUDA libraries): {why}",
                    lib.display()
                )
            })
        })
        .clone()
}

fn loaded_libtorch_version() -> Option<String> {
    let lib = loaded_libtorch()?;
    let version_py = lib.parent()?.parent()?.join("version.py");
    let text = std::fs::read_to_string(version_py).ok()?;
    let line = text.lines().find(|l| l.starts_with("__version__"))?;
    Some(line.split(['\'', '"']).nth(1)?.to_string())
}

/// Sets libtorch's intra-op thread count, and one inter-op thread. Inter-op threads can only be
/// set once per process, before any parallel work; intra-op threads may change between encoders
/// (`recbench parity` opens several in one process).
fn set_threads(threads: usize) -> Result<()> {
    static INTEROP: Once = Once::new();
    INTEROP.call_once(|| tch::set_num_interop_threads(1));
    tch::set_num_threads(threads.max(1) as i32);
    let got = tch::get_num_threads();
    if got != threads.max(1) as i32 {
        return Err(Error::backend(
            "torch",
            format!("asked libtorch for {threads} intra-op threads, it uses {got}"),
        ));
    }
    Ok(())
}

/// Which (device, precision) pairs this backend runs, or why not.
pub fn supports(device: Device, precision: Precision) -> std::result::Result<(), String> {
    super::cuda_ready("torch", device)?;
    match device {
        Device::Cpu => Ok(()),
        Device::Cuda(_) if precision == Precision::Int8 => Err(
            "torch int8 on CUDA is not built: recbench's torch int8 paths (_int_mm with per-row \
             activation scales, _weight_int8pack_mm) are set up and checked on the CPU only"
                .into(),
        ),
        Device::Cuda(_) => load_cuda_library(),
    }
}

/// The int8 kernels, in the order of [`Linear::new`]'s choice index: `_int_mm` on the whole
/// input, weight-only, and `_int_mm` in blocks of [`INT8_BLOCK_ROWS`] rows (quantize, product
/// and rescale per block, so the int32 product stays in cache instead of a round trip through
/// memory as large as the output), and `fbgemm_rows`: FBGEMM's int8 GEMM (the one
/// `quantize_dynamic` runs, weight prepacked once) on activations quantized per row like
/// `_int_mm`'s (8-bit where FBGEMM has VNNI, 7-bit on AVX2 alone, whose 16-bit pair sums would
/// saturate), the row scale and bias applied per 64-row block (src/backend/torch_quant.cpp).
/// `auto` races those four: `fbgemm` (PyTorch's
/// `quantize_dynamic` path, activations quantized per tensor to 7 bits) misses recbench's int8
/// parity bar on MiniLM (min cosine 0.972, top-10 overlap 0.84 against cosine ≥ 0.99 and
/// overlap ≥ 0.9; 0.9899/0.85 with 8-bit activations), so it runs only when forced, as the
/// PyTorch users' reference.
const INT8_KERNELS: &[&str] = &[
    "int_mm",
    "weight_only",
    "int_mm_blocked",
    "fbgemm_rows",
    "fbgemm",
];
const INT8_RACED: usize = 4;

/// Rows per block of `int_mm_blocked`: a 256 × 1,536 int32 product is 1.5 MiB.
const INT8_BLOCK_ROWS: i64 = 256;

/// The fp32 kernels, likewise.
const FP32_KERNELS: &[&str] = &["aten", "onednn", "onednn_packed"];

/// `RECBENCH_TORCH_INT8`: `auto` (or unset) chooses by measurement; a name of
/// [`INT8_KERNELS`] forces one.
fn int8_forced() -> Result<Option<usize>> {
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
const ONEDNN_MIN_MACS: i64 = 1 << 24;

/// Rows the `auto` choice is timed at when the caller gives no hint (parity, recommend).
const DEFAULT_ROWS: usize = 1024;

/// Selects the int8 linear kernel: `auto` (default) or a name of [`INT8_KERNELS`] (see
/// [`Linear`]).
pub const INT8_ENV: &str = "RECBENCH_TORCH_INT8";

/// One of several kernels per layer shape: forced by an environment variable, or (`auto`) the
/// fastest timed on the shape at the run's row count, remembered per host in the cache. A
/// decision is an index into `names`.
struct KernelChoice {
    /// What is chosen ("fp32 linear layers"), the variable that forces it, the kernels' names.
    what: &'static str,
    env: &'static str,
    names: &'static [&'static str],
    /// `Some(index)` when forced.
    forced: Option<usize>,
    /// How many of `names` (from the first) `auto` races.
    raced: usize,
    rows: i64,
    threads: usize,
    /// The model the layers belong to ([`ModelFiles::identity`]): its layers' timings decide
    /// for it alone.
    model: String,
    /// (in, out) → index, with how it was decided.
    decided: Vec<((i64, i64), usize, String)>,
}

impl KernelChoice {
    /// The cache key of one decision: host (CPU model and flags), libtorch, threads, kernels,
    /// shape.
    fn key(&self, inner: i64, out: i64) -> String {
        format!(
            "cpu {}, {}, {}, {} threads, {}, {}, {}x{inner}x{out}",
            super::choices::host(),
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
    fn pick(
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
        let decided = super::choices::recall_or_measure(
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
    fn uses(&self, k: Option<usize>) -> bool {
        k.is_some_and(|k| self.forced == Some(k) || self.decided.iter().any(|d| d.1 == k))
    }

    /// The note for the run and the cache tag of its outputs: the kernel name when one runs
    /// everywhere, else `auto-` and one letter per shape (a: the first kernel, b: the second, …).
    fn describe(&self) -> (String, Option<String>) {
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
fn time_all(
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
    let mut times = super::race_all(&mut runs)?.into_iter();
    Ok(candidates
        .iter()
        .map(|c| match c {
            Ok(_) => (times.next().unwrap_or(f64::INFINITY), None),
            Err(e) => (f64::INFINITY, Some(e.to_string())),
        })
        .collect())
}

enum Linear {
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
    /// FBGEMM's int8 GEMM on a prepacked weight (per output channel), activations quantized
    /// per row (8-bit with VNNI, else 7-bit), row scale and bias applied per block of rows.
    Int8FbgemmRows(quant::RowsPacked),
    /// PyTorch's dynamic int8 linear (`quantized::linear_dynamic`, FBGEMM on x86: what
    /// `quantize_dynamic` runs): weight per output channel, prepacked with the bias;
    /// activations quantized per tensor on every call, to 7 bits as PyTorch does on x86.
    Int8Fbgemm(quant::Packed),
}

impl Linear {
    /// The layer at `precision` with kernel `choice`: an index into [`FP32_KERNELS`] (aten,
    /// oneDNN, oneDNN on a weight packed for `rows` rows) or [`INT8_KERNELS`] (`_int_mm`,
    /// weight-only, blocked `_int_mm`, FBGEMM on per-row activations, PyTorch's FBGEMM linear).
    fn new(
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
            Precision::Int8 if choice == 3 => {
                let (q, scale) = quantize_rows(&w.f_to_kind(Kind::Float)?)?;
                Linear::Int8FbgemmRows(quant::RowsPacked::new(
                    &q,
                    &scale.f_reshape([-1])?,
                    &b.f_to_kind(Kind::Float)?,
                )?)
            }
            Precision::Int8 if choice == 4 => {
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

    /// `x` is `[rows, in]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
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
            Linear::Int8FbgemmRows(packed) => packed.forward(x),
            Linear::Int8Fbgemm(packed) => packed.forward(&x.f_contiguous()?),
        }
    }
}

/// Symmetric per-output-channel int8 weights: returns (`[in, out]` int8, `[1, out]` f32 scale).
/// The rows of `[out, in]` weights are the output channels.
fn quantize_weight(w: &Tensor) -> Result<(Tensor, Tensor), TchError> {
    let (q, scale) = quantize_rows(&w.f_to_kind(Kind::Float)?)?;
    Ok((
        q.f_transpose(0, 1)?.f_contiguous()?,
        scale.f_reshape([1, -1])?,
    ))
}

/// Symmetric per-row int8 activations: returns (`[rows, in]` int8, `[rows, 1]` f32 scale).
fn quantize_rows(x: &Tensor) -> Result<(Tensor, Tensor), TchError> {
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

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let h = self.w.size()[0];
        x.f_layer_norm(
            [h].as_slice(),
            Some(&self.w),
            Some(&self.b),
            self.eps,
            false,
        )
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    ln1: LayerNorm,
    inter: Linear,
    out: Linear,
    ln2: LayerNorm,
}

/// BERT encoder with masked-mean pooling on libtorch.
pub struct TorchBert {
    cfg: BertConfig,
    device: tch::Device,
    word: Tensor,
    pos: Tensor,
    typ: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    kernels: String,
    /// Which kernels computed the outputs, for cache keys of computed embeddings.
    tag: Option<String>,
    /// The catalog's item embeddings on the device, `[items, hidden]` in the scoring kind
    /// (`Encoder::load_items`).
    items: Option<Tensor>,
    /// The activations' kind (f32 for fp32 and int8).
    kind: Kind,
    threads: usize,
}

impl TorchBert {
    /// Loads the safetensors weights of `files` at the requested precision.
    pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<TorchBert> {
        TorchBert::load_with(files, opts, LinearKernel::from_env()?)
    }

    /// As `load`, with the fp32 linear kernel given rather than read from the environment.
    pub fn load_with(
        files: &ModelFiles,
        opts: EncoderOptions,
        linear_kernel: LinearKernel,
    ) -> Result<TorchBert> {
        supports(opts.device, opts.precision).map_err(|m| Error::backend("torch", m))?;
        let device = match opts.device {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => {
                let n = tch::Cuda::device_count();
                if (i as i64) >= n {
                    return Err(Error::backend(
                        "torch",
                        format!("libtorch sees {n} CUDA device(s), not cuda:{i}"),
                    ));
                }
                tch::Device::Cuda(i)
            }
        };
        set_threads(opts.threads)?;
        let kind = match opts.precision {
            Precision::Fp32 | Precision::Int8 => Kind::Float,
            Precision::Fp16 => Kind::Half,
            Precision::Bf16 => Kind::BFloat16,
        };
        let _guard = tch::no_grad_guard();
        let tensors: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&files.weights)
                .map_err(|e| {
                    Error::Model(format!(
                        "{}: cannot load weights: {e}",
                        files.weights.display()
                    ))
                })?
                .into_iter()
                .collect();
        let cfg = files.config.clone();
        let get = |name: &str| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| {
                Error::Model(format!(
                    "{}: missing tensor {name}",
                    files.weights.display()
                ))
            })?;
            t.f_to_kind(Kind::Float)
                .and_then(|t| t.f_to(device))
                .map_err(err)
        };
        let t = BertTensors::read(&cfg, |name, _| get(name))?;
        // LayerNorm parameters in the compute dtype (libtorch's CPU kernels accumulate in f32).
        let ln = |n: &Norm<Tensor>| -> Result<LayerNorm> {
            Ok(LayerNorm {
                w: n.weight.f_to_kind(kind).map_err(err)?,
                b: n.bias.f_to_kind(kind).map_err(err)?,
                eps: cfg.layer_norm_eps,
            })
        };
        let cpu = device == tch::Device::Cpu;
        let rows = opts
            .shape_hint
            .map_or(DEFAULT_ROWS, |(seqs, tokens)| seqs * tokens) as i64;
        let mut chooser = match opts.precision {
            Precision::Int8 => KernelChoice {
                what: "int8 linear layers",
                env: INT8_ENV,
                names: INT8_KERNELS,
                forced: int8_forced()?,
                raced: INT8_RACED,
                rows,
                threads: opts.threads,
                model: files.identity(),
                decided: Vec::new(),
            },
            _ => KernelChoice {
                what: "fp32 linear layers (oneDNN from 2^24 multiply-adds per call)",
                env: LINEAR_ENV,
                names: FP32_KERNELS,
                forced: match linear_kernel {
                    LinearKernel::Auto => None,
                    LinearKernel::Aten => Some(0),
                    LinearKernel::OneDnn => Some(1),
                    LinearKernel::OneDnnPacked => Some(2),
                },
                raced: FP32_KERNELS.len(),
                rows,
                threads: opts.threads,
                model: files.identity(),
                decided: Vec::new(),
            },
        };
        let chosen = cpu && matches!(opts.precision, Precision::Fp32 | Precision::Int8);
        let mut linear = |d: &Dense<Tensor>| -> Result<Linear> {
            let (w, b) = (&d.weight, &d.bias);
            let make = |k| Linear::new(w, b, opts.precision, kind, k, rows).map_err(err);
            if !chosen {
                return make(0);
            }
            let (out, inner) = w.size2().map_err(err)?;
            let floor = (opts.precision == Precision::Fp32 && rows * inner * out < ONEDNN_MIN_MACS)
                .then_some("below the oneDNN size floor");
            let n = chooser.raced;
            let k = chooser.pick((inner, out), floor, || {
                let all: Vec<_> = (0..n)
                    .map(|k| Linear::new(w, b, opts.precision, kind, k, rows))
                    .collect();
                time_all(&all, inner, rows)
            })?;
            make(k)
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in &t.layers {
            // One [3a, h] projection instead of three: one GEMM per layer for Q, K and V.
            let qkv = l.fused_qkv(|[q, k, v]| Tensor::f_cat(&[q, k, v], 0).map_err(err))?;
            layers.push(Layer {
                qkv: linear(&qkv)?,
                attn_out: linear(&l.attn_out)?,
                ln1: ln(&l.attn_norm)?,
                inter: linear(&l.intermediate)?,
                out: linear(&l.output)?,
                ln2: ln(&l.out_norm)?,
            });
        }
        let (kernels, tag) = if chosen {
            let (mut note, tag) = chooser.describe();
            let rows = INT8_KERNELS.iter().position(|k| *k == "fbgemm_rows");
            if chooser.names == INT8_KERNELS && chooser.uses(rows) {
                if let Some(bits) = quant::rows_bits() {
                    note.push_str(&format!(
                        "; fbgemm_rows quantizes activations per row to {bits} bits on this CPU \
                         (8 with VNNI, 7 with AVX2 alone)"
                    ));
                }
            }
            (note, tag)
        } else {
            (
                format!("{} linear layers: aten linear", opts.precision.name()),
                None,
            )
        };
        let e = &t.embeddings;
        let emb = |x: &Tensor| x.f_to_kind(kind).map_err(err);
        Ok(TorchBert {
            word: emb(&e.word)?,
            pos: emb(&e.position)?,
            typ: emb(&e.token_type)?,
            emb_ln: ln(&e.norm)?,
            layers,
            cfg,
            device,
            kernels,
            tag,
            items: None,
            kind,
            threads: opts.threads,
        })
    }

    /// Pooled, L2-normalised embeddings `[batch, hidden]` in f32.
    fn forward(&self, batch: &TokenBatch) -> Result<Tensor, TchError> {
        let (b, s) = (batch.batch as i64, batch.seq_len as i64);
        let (h, nh, hd, a) = (
            self.cfg.hidden_size as i64,
            self.cfg.num_heads as i64,
            self.cfg.head_dim() as i64,
            self.cfg.attention_width() as i64,
        );
        let to_i64 = |v: &[u32]| -> Result<Tensor, TchError> {
            let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            Tensor::f_from_slice(&v)?.f_to(self.device)
        };
        let ids = to_i64(&batch.input_ids)?;
        let types = to_i64(&batch.type_ids)?;
        let mask = to_i64(&batch.attention_mask)?.f_reshape([b, s])?;
        // Boolean mask, true where a key may be attended to, broadcast over heads and queries.
        let attend = mask.f_gt(0)?.f_reshape([b, 1, 1, s])?;

        let pos = self.pos.f_narrow(0, 0, s)?;
        let x = self
            .word
            .f_index_select(0, &ids)?
            .f_add(&self.typ.f_index_select(0, &types)?)?
            .f_reshape([b, s, h])?
            .f_add(&pos)?
            .f_reshape([b * s, h])?;
        let mut x = self.emb_ln.forward(&x)?;
        for layer in &self.layers {
            // [b*s, 3a] → [3, b, nh, s, hd] (a = nh·hd, the hidden size unless heads were pruned); q, k, v are strided views, which SDPA accepts.
            let qkv = layer
                .qkv
                .forward(&x)?
                .f_reshape([b, s, 3, nh, hd])?
                .f_permute([2, 0, 3, 1, 4])?;
            let (q, k, v) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
            let ctx = Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                Some(&attend),
                0.0,
                false,
                None,
                false,
            )?
            .f_transpose(1, 2)?
            .f_reshape([b * s, a])?;
            let x1 = layer
                .ln1
                .forward(&layer.attn_out.forward(&ctx)?.f_add(&x)?)?;
            let inter = layer.inter.forward(&x1)?.f_gelu("none")?;
            x = layer.ln2.forward(&layer.out.forward(&inter)?.f_add(&x1)?)?;
        }
        // Masked mean over tokens, then L2 normalisation, in f32.
        let x = x.f_to_kind(Kind::Float)?.f_reshape([b, s, h])?;
        let m = mask.f_to_kind(Kind::Float)?.f_unsqueeze(2)?;
        let summed = x
            .f_mul(&m)?
            .f_sum_dim_intlist([1].as_slice(), false, Kind::Float)?;
        let counts = m
            .f_sum_dim_intlist([1].as_slice(), false, Kind::Float)?
            .f_clamp_min(1.0)?;
        let mean = summed.f_div(&counts)?;
        let norm = mean
            .f_square()?
            .f_sum_dim_intlist([1].as_slice(), true, Kind::Float)?
            .f_sqrt()?
            .f_clamp_min(1e-12)?;
        mean.f_div(&norm)
    }
}

impl TorchBert {
    /// The scoring kind on this device: the activations' on CUDA (f16 or bf16 for
    /// half-precision runs), f32 on the CPU (libtorch's CPU half-precision products are slow
    /// without AVX512-FP16).
    fn scoring_kind(&self) -> Kind {
        if self.device == tch::Device::Cpu {
            Kind::Float
        } else {
            self.kind
        }
    }

    fn synchronize(&self) {
        if let tch::Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// `mm` against the loaded items and `topk` where they are; only `[rows, k]` ids and
    /// scores are copied back.
    fn rank(&self, users: &Tensor, k: usize) -> Result<Vec<Vec<(usize, f32)>>, TchError> {
        let items = self
            .items
            .as_ref()
            .ok_or_else(|| TchError::Kind("encode_and_rank before load_items".into()))?;
        let n = items.size()[0];
        let scores = users.f_to_kind(items.kind())?.f_mm(&items.f_tr()?)?;
        let (top, ids) = scores.f_topk((k as i64).min(n), -1, true, true)?;
        let rows = users.size()[0] as usize;
        let top = Vec::<f32>::try_from(
            &top.f_to_kind(Kind::Float)?
                .f_to(tch::Device::Cpu)?
                .f_view([-1])?,
        )?;
        let ids = Vec::<i64>::try_from(&ids.f_to(tch::Device::Cpu)?.f_view([-1])?)?;
        Ok(super::Ranked::rows_of(&ids, &top, rows, k))
    }
}

impl Encoder for TorchBert {
    fn load_items(&mut self, items: super::ItemsRef<'_>) -> Result<Option<String>> {
        let _guard = tch::no_grad_guard();
        let kind = self.scoring_kind();
        let t = Tensor::f_from_slice(items.data)
            .and_then(|t| t.f_view([items.len() as i64, items.dim as i64]))
            .and_then(|t| t.f_to_kind(kind))
            .and_then(|t| t.f_to(self.device))
            .map_err(err)?;
        self.items = Some(t);
        let (name, at) = match self.device {
            tch::Device::Cpu => ("f32", format!("the CPU ({} threads)", self.threads)),
            _ => (
                match kind {
                    Kind::Half => "f16",
                    Kind::BFloat16 => "bf16",
                    _ => "f32",
                },
                "the GPU".to_string(),
            ),
        };
        Ok(Some(format!(
            "{} item embeddings in {name} on {at}: torch mm + topk",
            items.len()
        )))
    }

    fn encode_and_rank(&mut self, batch: &TokenBatch, k: usize) -> Result<super::Ranked> {
        let _guard = tch::no_grad_guard();
        let t = std::time::Instant::now();
        let users = self.forward(batch).map_err(err)?;
        self.synchronize();
        let encode_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        let top = self.rank(&users, k).map_err(err)?;
        Ok(super::Ranked {
            top,
            encode_ms,
            score_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings> {
        let _guard = tch::no_grad_guard();
        let out = self
            .forward(batch)
            .and_then(|t| t.f_to(tch::Device::Cpu)?.f_contiguous()?.f_view([-1]))
            .map_err(err)?;
        let data = Vec::<f32>::try_from(&out).map_err(err)?;
        Ok(Embeddings {
            rows: batch.batch,
            dim: self.cfg.hidden_size,
            data,
        })
    }

    fn kernels(&self) -> Option<String> {
        Some(self.kernels.clone())
    }

    fn cache_tag(&self) -> Option<String> {
        self.tag.clone()
    }
}

/// PyTorch's dynamic int8 linear operators, through src/backend/torch_quant.cpp (tch has no
/// binding for them).
mod quant {
    use std::ffi::{c_char, c_void, CStr};

    use tch::{TchError, Tensor};
    use torch_sys::C_tensor;

    extern "C" {
        fn recbench_linear_prepack(
            qweight: *const C_tensor,
            bias: *const C_tensor,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        fn recbench_linear_dynamic(
            input: *const C_tensor,
            packed: *mut c_void,
            reduce_range: bool,
            err: *mut *mut c_char,
        ) -> *mut C_tensor;
        fn recbench_linear_free(packed: *mut c_void);
        fn recbench_quantize_rows(
            x: *const C_tensor,
            q: *mut *mut C_tensor,
            s: *mut *mut C_tensor,
            err: *mut *mut c_char,
        ) -> i32;
        fn recbench_rows_support() -> i32;
        fn recbench_rows_prepack(
            wq: *const C_tensor,
            ws: *const C_tensor,
            b: *const C_tensor,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        fn recbench_rows_linear(
            x: *const C_tensor,
            handle: *mut c_void,
            err: *mut *mut c_char,
        ) -> *mut C_tensor;
        fn recbench_rows_free(handle: *mut c_void);
        fn recbench_onednn_pack(
            w: *const C_tensor,
            rows: i64,
            err: *mut *mut c_char,
        ) -> *mut C_tensor;
        fn recbench_onednn_linear(
            x: *const C_tensor,
            packed: *const C_tensor,
            b: *const C_tensor,
            err: *mut *mut c_char,
        ) -> *mut C_tensor;
        fn recbench_int8_epilogue(
            acc: *const C_tensor,
            xs: *const C_tensor,
            ws: *const C_tensor,
            b: *const C_tensor,
            out: *const C_tensor,
            err: *mut *mut c_char,
        ) -> *mut C_tensor;
    }

    /// Symmetric per-row int8 of f32 `x` `[rows, k]` in one pass: (`[rows, k]` int8, `[rows, 1]`
    /// f32 scale), the arithmetic of `super::quantize_rows`.
    pub fn quantize_rows(x: &Tensor) -> Result<(Tensor, Tensor), TchError> {
        let (mut q, mut s, mut err) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        // SAFETY: `x` is live; on success the shim sets `q` and `s` to new tensors we own.
        let rc = unsafe { recbench_quantize_rows(x.as_ptr(), &mut q, &mut s, &mut err) };
        if rc != 0 {
            return Err(take_error(err));
        }
        // SAFETY: both are new at::Tensor* handed over to the Tensors.
        Ok(unsafe { (Tensor::from_ptr(q), Tensor::from_ptr(s)) })
    }

    /// `acc · xs · ws + b` in f32 for the int32 product `acc` `[rows, n]`, in one pass: into
    /// `out` (a contiguous f32 `[rows, n]`, returned) when given, else a new tensor.
    pub fn epilogue(
        acc: &Tensor,
        xs: &Tensor,
        ws: &Tensor,
        b: &Tensor,
        out: Option<&Tensor>,
    ) -> Result<Tensor, TchError> {
        let mut err = std::ptr::null_mut();
        let out_ptr = out.map_or(std::ptr::null(), |o| o.as_ptr());
        // SAFETY: all tensors are live for the call; `out`, when given, is written in place.
        let y = unsafe {
            recbench_int8_epilogue(
                acc.as_ptr(),
                xs.as_ptr(),
                ws.as_ptr(),
                b.as_ptr(),
                out_ptr,
                &mut err,
            )
        };
        // SAFETY: the shim returns a new at::Tensor* (or null with `err`).
        unsafe { owned(y, err) }
    }

    /// The f32 weight `[out, in]` reordered once into oneDNN's blocked layout for products of
    /// `rows` rows (any row count runs; that one runs fastest).
    pub fn onednn_pack(w: &Tensor, rows: i64) -> Result<Tensor, TchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: `w` is live for the call; the shim returns a new at::Tensor* or null.
        unsafe { owned(recbench_onednn_pack(w.as_ptr(), rows, &mut err), err) }
    }

    /// `x · Wᵀ + b` for f32 `x` `[rows, in]` on a weight from [`onednn_pack`].
    pub fn onednn_linear(x: &Tensor, packed: &Tensor, b: &Tensor) -> Result<Tensor, TchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: all tensors are live for the call; the shim returns a new tensor or null.
        unsafe {
            owned(
                recbench_onednn_linear(x.as_ptr(), packed.as_ptr(), b.as_ptr(), &mut err),
                err,
            )
        }
    }

    /// The tensor a shim call returned, now owned, or (null) the error it reported.
    ///
    /// # Safety
    /// `t` is null or a new `at::Tensor*` no one else owns; `err` as for [`take_error`].
    unsafe fn owned(t: *mut C_tensor, err: *mut c_char) -> Result<Tensor, TchError> {
        if t.is_null() {
            Err(take_error(err))
        } else {
            // SAFETY: per this function's contract.
            Ok(unsafe { Tensor::from_ptr(t) })
        }
    }

    /// The handle a shim's prepack returned, or (null) the error it reported.
    fn handle(p: *mut c_void, err: *mut c_char) -> Result<*mut c_void, TchError> {
        if p.is_null() {
            Err(take_error(err))
        } else {
            Ok(p)
        }
    }

    /// The C++ exception message the shim copied into `err`, as tch's error.
    fn take_error(err: *mut c_char) -> TchError {
        if err.is_null() {
            return TchError::Torch("quantized linear failed without a message".into());
        }
        // SAFETY: the shim set `err` to a NUL-terminated copy made with strdup, ours to free.
        let msg = unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { libc::free(err.cast()) };
        TchError::Torch(msg)
    }

    /// A prepacked int8 weight with its bias, freed on drop.
    pub struct Packed(*mut c_void);

    // SAFETY: the packed parameters are never mutated after packing (linear_dynamic only reads
    // them), and the handle is owned by exactly one `Packed`.
    unsafe impl Send for Packed {}

    impl Packed {
        /// `qweight`: qint8 `[out, in]`; `bias`: f32 `[out]`.
        pub fn new(qweight: &Tensor, bias: &Tensor) -> Result<Packed, TchError> {
            let mut err = std::ptr::null_mut();
            // SAFETY: both pointers are live tensors for the duration of the call.
            let p = unsafe { recbench_linear_prepack(qweight.as_ptr(), bias.as_ptr(), &mut err) };
            handle(p, err).map(Packed)
        }

        /// `x`: f32 `[rows, in]`, contiguous; returns f32 `[rows, out]`.
        pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
            let mut err = std::ptr::null_mut();
            // SAFETY: `x` is live; `self.0` came from recbench_linear_prepack and is not freed.
            let t = unsafe { recbench_linear_dynamic(x.as_ptr(), self.0, true, &mut err) };
            // SAFETY: the shim returns a new at::Tensor* (or null with `err`).
            unsafe { owned(t, err) }
        }
    }

    impl Drop for Packed {
        fn drop(&mut self) {
            // SAFETY: the handle came from recbench_linear_prepack and is freed once.
            unsafe { recbench_linear_free(self.0) }
        }
    }

    /// Bits of the activations FBGEMM's per-row path quantizes to on this CPU (8 with VNNI, 7
    /// with AVX2 alone), or `None` where FBGEMM does not run.
    pub fn rows_bits() -> Option<u32> {
        // SAFETY: a query without arguments.
        match unsafe { recbench_rows_support() } {
            0 => None,
            b => Some(b as u32),
        }
    }

    /// An int8 weight prepacked for FBGEMM, run on activations quantized per row (see
    /// torch_quant.cpp), freed on drop.
    pub struct RowsPacked(*mut c_void);

    // SAFETY: the packed weight is only read after packing; one owner per handle.
    unsafe impl Send for RowsPacked {}

    impl RowsPacked {
        /// `wq`: int8 `[out, in]`, symmetric, with the f32 scale of each output `ws` `[out]`;
        /// `bias`: f32 `[out]`.
        pub fn new(wq: &Tensor, ws: &Tensor, bias: &Tensor) -> Result<RowsPacked, TchError> {
            let mut err = std::ptr::null_mut();
            // SAFETY: the three tensors are live for the call; the shim copies what it keeps.
            let p =
                unsafe { recbench_rows_prepack(wq.as_ptr(), ws.as_ptr(), bias.as_ptr(), &mut err) };
            handle(p, err).map(RowsPacked)
        }

        /// `x`: f32 `[rows, in]`; returns f32 `[rows, out]`.
        pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
            let mut err = std::ptr::null_mut();
            // SAFETY: `x` is live; `self.0` came from recbench_rows_prepack and is not freed.
            let t = unsafe { recbench_rows_linear(x.as_ptr(), self.0, &mut err) };
            // SAFETY: the shim returns a new at::Tensor* (or null with `err`).
            unsafe { owned(t, err) }
        }
    }

    impl Drop for RowsPacked {
        fn drop(&mut self) {
            // SAFETY: the handle came from recbench_rows_prepack and is freed once.
            unsafe { recbench_rows_free(self.0) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass quantize and epilogue of torch_quant.cpp compute exactly what the ATen
    /// chains they replace compute (same rounding: half to even; same multiplication order),
    /// including rows of zeros and values on the rounding boundary.
    #[test]
    fn one_pass_quantize_and_epilogue_equal_the_aten_chains() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(11);
        let opts = (Kind::Float, tch::Device::Cpu);
        let x = Tensor::randn([37, 300], opts) * 3.0;
        // A zero row, and a row of k / 254 with maximum 1, which lands on k / 2 after scaling.
        let _ = x.get(3).fill_(0.0);
        let halves = Tensor::arange(300, opts).remainder(255.0) * (1.0 / 254.0);
        x.get(5).copy_(&halves);
        let (q1, s1) = quant::quantize_rows(&x).unwrap();
        let (q2, s2) = quantize_rows(&x).unwrap();
        assert_eq!(q1.kind(), Kind::Int8);
        assert!(q1.equal(&q2), "quantized values differ");
        assert!(s1.equal(&s2), "scales differ");
        let w = Tensor::randn([64, 300], opts);
        let (w_t, ws) = quantize_weight(&w).unwrap();
        let b = Tensor::randn([64], opts);
        let acc = q1.internal_int_mm(&w_t);
        let chain = acc.to_kind(Kind::Float) * &s1 * &ws + &b;
        assert!(quant::epilogue(&acc, &s1, &ws, &b, None)
            .unwrap()
            .equal(&chain));
        // Into a row block of a larger output: those rows only.
        let y = Tensor::zeros([50, 64], opts);
        let block = y.narrow(0, 10, 37);
        let _ = quant::epilogue(&acc, &s1, &ws, &b, Some(&block)).unwrap();
        assert!(y.narrow(0, 10, 37).equal(&chain));
        assert_eq!(
            f64::try_from(y.narrow(0, 0, 10).abs().sum(Kind::Double)).unwrap(),
            0.0
        );
    }

    /// Blocks of rows change nothing but the memory traffic: activations are quantized per
    /// row, so the blocked kernel's output equals the whole-input kernel's exactly, across a
    /// partial last block.
    #[test]
    fn blocked_int_mm_equals_int_mm() {
        let _guard = tch::no_grad_guard();
        tch::manual_seed(5);
        let opts = (Kind::Float, tch::Device::Cpu);
        let w = Tensor::randn([48, 32], opts);
        let b = Tensor::randn([48], opts);
        let x = Tensor::randn([2 * INT8_BLOCK_ROWS + 77, 32], opts);
        let whole = Linear::new(&w, &b, Precision::Int8, Kind::Float, 0, 64).unwrap();
        let blocked = Linear::new(&w, &b, Precision::Int8, Kind::Float, 2, 64).unwrap();
        assert!(matches!(blocked, Linear::Int8 { block: Some(_), .. }));
        assert!(whole
            .forward(&x)
            .unwrap()
            .equal(&blocked.forward(&x).unwrap()));
    }

    /// FBGEMM on per-row activations computes what `_int_mm` does (with 8-bit activations the
    /// same integer products; only the order of the float rescaling differs) over several row
    /// blocks, the last one partial; with 7-bit activations it stays close to the fp32 layer.
    #[test]
    fn fbgemm_rows_matches_int_mm_across_row_blocks() {
        let Some(bits) = quant::rows_bits() else {
            eprintln!("skipped: FBGEMM does not run on this CPU");
            return;
        };
        let _guard = tch::no_grad_guard();
        tch::manual_seed(5);
        let opts = (Kind::Float, tch::Device::Cpu);
        let w = Tensor::randn([200, 384], opts) * 0.05;
        let b = Tensor::randn([200], opts);
        let x = Tensor::randn([150, 384], opts) * 2.0;
        let run = |k: usize| {
            Linear::new(&w, &b, Precision::Int8, Kind::Float, k, 64)
                .unwrap()
                .forward(&x)
                .unwrap()
        };
        let rows = INT8_KERNELS
            .iter()
            .position(|k| *k == "fbgemm_rows")
            .unwrap();
        let (got, int_mm) = (run(rows), run(0));
        let scale = f64::try_from(int_mm.abs().max()).unwrap();
        let diff = max_abs(&(&got - &int_mm));
        if bits == 8 {
            assert!(diff <= 1e-5 * scale, "max diff {diff} of {scale}");
        } else {
            let exact = x.linear(&w, Some(&b));
            let err = max_abs(&(&got - &exact));
            assert!(err <= 0.05 * scale, "7-bit: max diff {err} of {scale}");
        }
    }

    /// A C++ exception in the shim comes back as an error with its message, for a helper that
    /// returns a status and for one that returns a tensor.
    #[test]
    fn shim_errors_reach_rust_as_errors() {
        let ints = Tensor::zeros([4, 8], (Kind::Int, tch::Device::Cpu));
        let e = quant::quantize_rows(&ints).unwrap_err().to_string();
        assert!(e.contains("expected f32"), "{e}");
        let f = Tensor::zeros([4, 8], (Kind::Float, tch::Device::Cpu));
        let e = quant::epilogue(&f, &f, &f, &f, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected int32"), "{e}");
    }

    fn max_abs(t: &Tensor) -> f64 {
        f64::try_from(t.abs().max()).unwrap()
    }

    /// A random 64 → 96 layer's weight and bias, from `seed`.
    fn random_layer(seed: i64) -> (Tensor, Tensor) {
        tch::manual_seed(seed);
        let opts = (Kind::Float, tch::Device::Cpu);
        (
            Tensor::randn([96, 64], opts) * 0.1,
            Tensor::randn([96], opts),
        )
    }

    /// The fp32 kernels compute the same layer to float rounding, oneDNN on a prepacked weight
    /// included, at the row count it was packed for and at others (a server batch may be
    /// smaller than the run's largest).
    #[test]
    fn fp32_kernels_agree_at_any_row_count() {
        let _guard = tch::no_grad_guard();
        let (w, b) = random_layer(3);
        let opts = (Kind::Float, tch::Device::Cpu);
        let packed = Linear::new(&w, &b, Precision::Fp32, Kind::Float, 2, 256).unwrap();
        assert!(matches!(packed, Linear::DensePacked { .. }));
        for rows in [256, 37, 1] {
            let x = Tensor::randn([rows, 64], opts);
            let exact = x.linear(&w, Some(&b));
            for (k, name) in FP32_KERNELS.iter().enumerate() {
                let y = match k {
                    2 => packed.forward(&x),
                    _ => Linear::new(&w, &b, Precision::Fp32, Kind::Float, k, 256)
                        .unwrap()
                        .forward(&x),
                }
                .unwrap();
                assert_eq!(y.size(), exact.size());
                let diff = max_abs(&(&y - &exact));
                assert!(diff <= 1e-5, "{name} at {rows} rows: {diff}");
            }
        }
    }

    /// Each int8 kernel computes the fp32 layer up to int8 rounding: close to it (cosine of the
    /// outputs), not equal to it (it really is quantized), with the bias applied.
    #[test]
    fn every_int8_kernel_approximates_the_fp32_layer() {
        let _guard = tch::no_grad_guard();
        let (w, b) = random_layer(7);
        let x = Tensor::randn([40, 64], (Kind::Float, tch::Device::Cpu));
        let exact = Linear::new(&w, &b, Precision::Fp32, Kind::Float, 0, 64)
            .unwrap()
            .forward(&x)
            .unwrap();
        for (k, name) in INT8_KERNELS.iter().enumerate() {
            let y = Linear::new(&w, &b, Precision::Int8, Kind::Float, k, 64)
                .unwrap()
                .forward(&x)
                .unwrap();
            assert_eq!(y.size(), exact.size(), "{name}");
            let cos =
                f64::try_from((&y * &exact).sum(Kind::Double) / (y.norm() * exact.norm())).unwrap();
            let max_diff = max_abs(&(&y - &exact));
            assert!(cos > 0.999, "{name}: cosine {cos}");
            assert!(
                max_diff > 1e-6 && max_diff < 0.2,
                "{name}: max diff {max_diff}"
            );
        }
    }
}
