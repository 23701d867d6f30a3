//! Inference backends behind one trait, each with the same face.
//!
//! Every backend turns a [`TokenBatch`] into pooled, L2-normalised embeddings; the model spec,
//! the inputs, the pooling definition and the parity checks are shared, only the tensor calls
//! differ. Each backend module has the same face: `COMPILED`, `supports(device, precision)`
//! (or why not), `runtime_version()`, `describe()`, `gemm_gflops(n, threads, budget)`,
//! `cache_tag(precision)` (what of its own environment knobs changes its outputs) and
//! `load(files, opts)`. A backend compiled out of this
//! build gets the same face from `disabled.rs`, answering "not enabled in this build; rebuild
//! with --features X". [`BackendKind`] dispatches to the faces, one match per function.
//!
//! To add a backend: write `src/backend/<name>.rs` with the face above (and an [`Encoder`]), add
//! a variant to `spec::BackendKind`, a feature in Cargo.toml, the two `mod` lines below, one arm
//! in `dispatch!` and in `compiled()`, its `RECBENCH_<NAME>_VERSION` line in `build.rs`, and its
//! GEMM's name in `harness/ceiling.rs` (docs/architecture.md lists the same).

#[cfg(feature = "candle")]
pub mod candle;
#[cfg(not(feature = "candle"))]
pub mod candle {
    crate::backend::disabled::face!("candle", env!("RECBENCH_CANDLE_VERSION"));
}
mod disabled;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(not(feature = "onnx"))]
pub mod onnx {
    crate::backend::disabled::face!("onnx", env!("RECBENCH_ORT_VERSION"));
}
#[cfg(feature = "torch")]
pub mod torch;
#[cfg(not(feature = "torch"))]
pub mod torch {
    crate::backend::disabled::face!("torch", env!("RECBENCH_TCH_VERSION"));
}

use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{ModelFiles, TokenBatch};
pub use crate::spec::{BackendKind, Device, Precision};

/// Pooled embeddings, row-major `[rows, dim]`.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Whether every value is finite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
}

/// The top-k of one forward's requests, ranked where the encoder ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Per row of the batch: (item index, score) best first, `k` of them.
    pub top: Vec<Vec<(usize, f32)>>,
    /// Milliseconds of the encoder forward, device synchronised at its end.
    pub encode_ms: f64,
    /// Milliseconds of the scoring and top-k after it, up to the ids and scores on the host.
    pub score_ms: f64,
}

impl Ranked {
    /// Each row's first `k` (id, score) from a device's row-major `[rows, width]` top-k output
    /// (`width` ≥ `k`, best first), as `top` holds them.
    pub(crate) fn rows_of(
        ids: &[i64],
        scores: &[f32],
        rows: usize,
        k: usize,
    ) -> Vec<Vec<(usize, f32)>> {
        let width = scores.len() / rows.max(1);
        let k = k.min(width);
        (0..rows)
            .map(|r| {
                (r * width..r * width + k)
                    .map(|j| (ids[j] as usize, scores[j]))
                    .collect()
            })
            .collect()
    }

    /// Whether every returned score is finite. A non-finite embedding makes every score of its
    /// row non-finite, so this stands in for the embeddings' own check.
    pub fn all_finite(&self) -> bool {
        self.top.iter().flatten().all(|(_, s)| s.is_finite())
    }
}

/// Item embeddings a backend holds on its device for scoring there ([`Encoder::load_items`]).
#[derive(Debug, Clone, Copy)]
pub struct ItemsRef<'a> {
    /// Row-major `[items, dim]`, f32, unit-normalised.
    pub data: &'a [f32],
    pub dim: usize,
}

impl ItemsRef<'_> {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded model on one device at one precision.
pub trait Encoder: Send {
    /// Encodes a batch. Returns only when the results are on the host, so any device work is
    /// complete: callers may read the clock right after.
    fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings>;

    /// Places the catalog's item embeddings on this encoder's device, in its scoring precision,
    /// for [`Encoder::encode_and_rank`]. Returns how it scores there ("fp16 on cuda:0: mm +
    /// topk"), or `None` when the backend cannot score on its device (callers then score on
    /// the host).
    fn load_items(&mut self, _items: ItemsRef<'_>) -> Result<Option<String>> {
        Ok(None)
    }

    /// Encodes a batch and ranks the loaded items for each of its rows on the device: only the
    /// top-`k` ids and scores come back to the host. Returns only when they are there.
    fn encode_and_rank(&mut self, _batch: &TokenBatch, _k: usize) -> Result<Ranked> {
        Err(Error::backend(
            "encoder",
            "this backend does not score on its device (load_items said so)",
        ))
    }

    /// Which kernels run the model where a backend has a choice, recorded with every run.
    fn kernels(&self) -> Option<String> {
        None
    }

    /// The time per op of the forwards since the last call, where the backend keeps it (torch
    /// on the CPU with `RECBENCH_TORCH_OPS=1`); each call starts a new count.
    fn op_times(&mut self) -> Option<String> {
        None
    }

    /// What of this encoder's kernel choices changes its outputs, for cache keys of computed
    /// embeddings, when the backend's setting alone does not say (a choice made at load).
    fn cache_tag(&self) -> Option<String> {
        None
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct EncoderOptions {
    pub device: Device,
    pub precision: Precision,
    /// Intra-op threads; the worker also sets the runtime's environment before loading.
    pub threads: usize,
    /// Sequences and tokens per sequence of the forward passes the encoder will mostly run,
    /// when known: backends that choose kernels by measurement time the candidates at this
    /// shape.
    pub shape_hint: Option<(usize, usize)>,
}

/// One arm per backend: `$f` called on that backend's face module.
macro_rules! dispatch {
    ($kind:expr, $f:ident ( $($arg:expr),* )) => {
        match $kind {
            BackendKind::Candle => candle::$f($($arg),*),
            BackendKind::Onnx => onnx::$f($($arg),*),
            BackendKind::Torch => torch::$f($($arg),*),
        }
    };
}

impl BackendKind {
    /// Whether this build includes the backend.
    pub fn compiled(self) -> bool {
        match self {
            BackendKind::Candle => candle::COMPILED,
            BackendKind::Onnx => onnx::COMPILED,
            BackendKind::Torch => torch::COMPILED,
        }
    }

    /// Whether a (device, precision) pair runs on this backend in this build, or why not.
    /// Planning asks it for every run, so unsupported combinations become `skipped` runs.
    pub fn supports(self, device: Device, precision: Precision) -> std::result::Result<(), String> {
        dispatch!(self, supports(device, precision))
    }

    /// Version of the runtime library this build uses (for onnx: the library actually loaded).
    pub fn runtime_version(self) -> String {
        dispatch!(self, runtime_version())
    }

    /// One line on how the backend runs the model (or how to enable it).
    pub fn describe(self) -> String {
        dispatch!(self, describe())
    }

    /// Best GFLOP/s of this backend's fp32 GEMM on an `n`×`n`×`n` product with `threads`
    /// threads over about `budget` (at least 3 products); `None` when compiled out or the
    /// runtime cannot be loaded. The GEMM ceiling is the best of these.
    pub fn gemm_gflops(self, n: usize, threads: usize, budget: Duration) -> Option<f64> {
        dispatch!(self, gemm_gflops(n, threads, budget))
    }

    /// What of the backend's own settings (graph flavour, kernel choice) changes its outputs at
    /// `precision`, for cache keys of computed embeddings; `None` when nothing does.
    pub fn cache_tag(self, precision: Precision) -> Option<String> {
        dispatch!(self, cache_tag(precision))
    }
}

/// The best rate of `product` (one `n`×`n`×`n` f32 matrix product per call) over about
/// `budget`, at least 3 calls, in GFLOP/s: what every backend's `gemm_gflops` measures with.
pub(crate) fn best_gflops(n: usize, budget: Duration, mut product: impl FnMut()) -> f64 {
    let flops = 2.0 * (n as f64).powi(3);
    let start = std::time::Instant::now();
    let mut best = 0.0f64;
    let mut reps = 0;
    while (reps < 3 || start.elapsed() < budget) && reps < 1000 {
        let t = std::time::Instant::now();
        product();
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
        reps += 1;
    }
    best
}

/// Checks the backends' own environment settings (`RECBENCH_CANDLE_INT8`,
/// `RECBENCH_CANDLE_BF16`): a bad value stops a sweep before its first run instead of failing
/// every run.
pub fn check_env() -> Result<()> {
    #[cfg(feature = "candle")]
    {
        candle::int8_forced()?;
        candle::bf16_forced()?;
    }
    Ok(())
}

/// A stand-in forward pass of `cfg`'s layers on `[sequences × seq]` tokens with random weights,
/// run by `kind`'s runtime: what a probe of the host's threading (the OpenMP spin probe,
/// `harness::openmp`) times in place of a real model. torch offers one; the others say so.
#[allow(unused_variables)]
pub fn probe_forward<'a>(
    kind: BackendKind,
    cfg: &'a crate::model::BertConfig,
    sequences: usize,
    seq: usize,
    threads: usize,
) -> Result<Box<dyn FnMut() -> Result<()> + 'a>> {
    match kind {
        #[cfg(feature = "torch")]
        BackendKind::Torch => Ok(Box::new(torch::probe_forward(
            cfg, sequences, seq, threads,
        )?)),
        _ => Err(Error::backend(
            kind.name(),
            "offers no stand-in forward pass in this build",
        )),
    }
}

/// Whether backend `name` can reach `device` here: for a CUDA device, the build has the `cuda`
/// feature, the host has an NVIDIA driver that initialises, and the device index exists. Each
/// backend then adds what its own runtime needs.
pub(crate) fn cuda_ready(name: &str, device: Device) -> std::result::Result<(), String> {
    let Device::Cuda(i) = device else {
        return Ok(());
    };
    if !cfg!(feature = "cuda") {
        return Err(format!(
            "{name} on CUDA is not enabled in this build; rebuild with scripts/build-gpu.sh \
             (feature `cuda`) (this host: {})",
            crate::telemetry::cuda::status()
        ));
    }
    match crate::telemetry::cuda::devices() {
        Err(why) => Err(format!("{name} on CUDA: {why}")),
        Ok(n) if i >= n => Err(format!(
            "{name} on cuda:{i}: the NVIDIA driver sees {n} CUDA device(s) (cuda:0 to cuda:{})",
            n - 1
        )),
        Ok(_) => Ok(()),
    }
}

/// Loads `files` on the backend `kind`, after asking it whether it supports the run.
pub fn open(
    kind: BackendKind,
    files: &ModelFiles,
    opts: EncoderOptions,
) -> Result<Box<dyn Encoder>> {
    kind.supports(opts.device, opts.precision)
        .map_err(|m| Error::backend(kind.name(), m))?;
    dispatch!(kind, load(files, opts))
}

/// One line of `recbench backends`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    pub backend: BackendKind,
    pub compiled: bool,
    pub runtime_version: String,
    pub devices: Vec<String>,
    pub precisions: Vec<Precision>,
    pub note: String,
    /// Whether this backend can run on CUDA here, or what it needs.
    pub cuda: String,
}

/// What this build can run.
pub fn inventory() -> Vec<BackendInfo> {
    BackendKind::ALL
        .into_iter()
        .map(|b| {
            let compiled = b.compiled();
            BackendInfo {
                backend: b,
                compiled,
                runtime_version: b.runtime_version(),
                devices: if compiled {
                    let cuda = b.supports(Device::Cuda(0), Precision::Fp32).is_ok();
                    let n = crate::telemetry::cuda::devices().unwrap_or(0);
                    std::iter::once("cpu".to_string())
                        .chain((0..n).filter(|_| cuda).map(|i| format!("cuda:{i}")))
                        .collect()
                } else {
                    vec![]
                },
                precisions: Precision::ALL
                    .into_iter()
                    .filter(|p| b.supports(Device::Cpu, *p).is_ok())
                    .collect(),
                note: b.describe(),
                cuda: match b.supports(Device::Cuda(0), Precision::Fp32) {
                    Ok(()) => "runs on CUDA here".into(),
                    Err(why) => why,
                },
            }
        })
        .collect()
}
