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
//! f32), the same in blocks of rows, FBGEMM's or oneDNN's GEMM on per-row activations, and
//! `_weight_int8pack_mm` (weight-only, f32 activations). PyTorch's own dynamic int8
//! linear (`quantized::linear_dynamic` on FBGEMM, what `quantize_dynamic` runs on x86; called
//! through src/backend/torch_quant.cpp) runs when forced: it misses the int8 parity bar on
//! MiniLM (see [`INT8_KERNELS`]).

use std::sync::{Once, OnceLock};

use tch::{Kind, TchError, Tensor};

use super::{Device, Encoder, EncoderOptions, Precision};
use crate::error::{Error, Result};
use crate::model::ModelFiles;

mod ffi;
mod kernels;
mod model;

use ffi as quant;
use kernels::*;
pub use kernels::{LinearKernel, INT8_ENV};
pub use model::TorchBert;

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
         on _int_mm (whole or in row blocks), FBGEMM or oneDNN on per-row activations or \
         _weight_int8pack_mm, the fastest by measurement ({INT8_ENV}=int_mm|int_mm_blocked|\
         fbgemm_rows|onednn_rows|weight_only forces one; =fbgemm runs PyTorch's \
         quantize_dynamic kernel); \
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

#[cfg(test)]
mod tests;
