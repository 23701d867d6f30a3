//! Inference backends behind one trait, each with the same face.
//!
//! Every backend turns a [`TokenBatch`] into pooled, L2-normalised embeddings; the model spec,
//! the inputs, the pooling definition and the parity checks are shared, only the tensor calls
//! differ. Each backend module has the same face: `COMPILED`, `supports(device, precision)`
//! (or why not), `runtime_version()`, `describe()`, `cache_tag(precision)` (what of its own
//! environment knobs changes its outputs) and `load(files, opts)`. A backend compiled out of this
//! build gets the same face from `disabled.rs`, answering "not enabled in this build; rebuild
//! with --features X". [`BackendKind`] dispatches to the faces, one match per function.
//!
//! To add a backend: write `src/backend/<name>.rs` with the face above (and an [`Encoder`]), add
//! a variant to `spec::BackendKind`, a feature in Cargo.toml, the two `mod` lines below, and one
//! arm per function in the `impl BackendKind` block of this file.

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

/// The variables among `names` that are set in this process, as `NAME=value`: the settings a
/// user (or a benchmark script) gave that a decision by measurement must keep apart or obey.
pub(crate) fn set_in_env(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect()
}

/// Milliseconds of each candidate kernel on one input: the best of 3 interleaved calls each
/// (A B C A B C …), after one warm-up call each (a bounded cost at load). What every choice by
/// measurement times with.
///
/// A candidate whose first timed call took more than [`HOPELESS_FACTOR`] times the fastest
/// first timed call, and more than [`HOPELESS_MS`], is not called again: that time stands. The
/// warm-up call is never judged: it carries one-time costs (oneDNN builds its kernels on a
/// first call: 34 ms against 0.6 ms for every later one on the EPYC VM). The two calls saved
/// can be seconds (torch's weight-only int8 at 4,096 rows: 1 s a call against 6 ms for
/// `_int_mm` on the same VM).
#[cfg_attr(not(any(feature = "onnx", feature = "torch")), allow(dead_code))]
pub(crate) fn race_all<E>(
    candidates: &mut [Box<dyn FnMut() -> std::result::Result<(), E> + '_>],
) -> std::result::Result<Vec<f64>, E> {
    for c in candidates.iter_mut() {
        c()?;
    }
    let mut best = vec![f64::INFINITY; candidates.len()];
    let mut hopeless = vec![false; candidates.len()];
    for round in 0..3 {
        for ((c, b), h) in candidates.iter_mut().zip(best.iter_mut()).zip(&hopeless) {
            if *h {
                continue;
            }
            let t = std::time::Instant::now();
            c()?;
            *b = b.min(t.elapsed().as_secs_f64() * 1e3);
        }
        if round == 0 {
            let fastest = best.iter().copied().fold(f64::INFINITY, f64::min);
            for (h, &b) in hopeless.iter_mut().zip(&best) {
                *h = b > HOPELESS_FACTOR * fastest && b > HOPELESS_MS;
            }
        }
    }
    Ok(best)
}

/// See [`race_all`].
const HOPELESS_FACTOR: f64 = 10.0;
const HOPELESS_MS: f64 = 20.0;

/// [`race_all`] of two candidates.
#[cfg_attr(not(any(feature = "onnx", feature = "torch")), allow(dead_code))]
pub(crate) fn race<E>(
    a: impl FnMut() -> std::result::Result<(), E>,
    b: impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<(f64, f64), E> {
    let t = race_all(&mut [Box::new(a), Box::new(b)])?;
    Ok((t[0], t[1]))
}

/// Kernel choices measured on this host, remembered in `<cache>/kernels/<file>.json` so a
/// later run on the same host (CPU model and flags), build (commit), runtime and shape reuses them.
#[cfg_attr(not(any(feature = "onnx", feature = "torch")), allow(dead_code))]
pub(crate) mod choices {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    fn path(file: &str) -> PathBuf {
        crate::model::cache_dir()
            .join("kernels")
            .join(format!("{file}.json"))
    }

    fn read(path: &Path) -> BTreeMap<String, String> {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The runtimes' own caps on the vector ISA they use (ATen's kernels, oneDNN, MKL, FBGEMM):
    /// set, they change every kernel's speed as a different CPU would.
    pub const ISA_CAPS: [&str; 4] = [
        "ATEN_CPU_CAPABILITY",
        "ONEDNN_MAX_CPU_ISA",
        "MKL_ENABLE_INSTRUCTIONS",
        "FBGEMM_ENABLE_INSTRUCTIONS",
    ];

    /// The [`ISA_CAPS`] set in this process, as `NAME=value`.
    pub fn isa_caps() -> Vec<String> {
        super::set_in_env(&ISA_CAPS)
    }

    /// This host and build as kernel choices depend on them: a short hash of the CPU model,
    /// signature and flags, of the [`isa_caps`] set, and of the commit this binary was built
    /// from (a later commit may change a candidate kernel, or what runs around it, so it
    /// measures afresh). Read once per process.
    pub fn host() -> String {
        use sha2::{Digest, Sha256};
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        HOST.get_or_init(|| {
            let caps: String = isa_caps().iter().map(|c| format!("\n{c}")).collect();
            let h = Sha256::digest(format!(
                "{}{caps}\nrecbench {}",
                crate::telemetry::inventory::cpu_identity(),
                env!("RECBENCH_GIT_COMMIT")
            ));
            crate::model::weights::hex(&h[..6])
        })
        .clone()
    }

    /// A decision by measurement: the choice, the text remembered for it (the choice and the
    /// timings behind it) and whether it was read back from the cache.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Decided<T> {
        pub value: T,
        pub how: String,
        pub remembered: bool,
    }

    impl<T> Decided<T> {
        /// Where the decision came from, as the run's notes say it.
        pub fn provenance(&self) -> &'static str {
            if self.remembered {
                "measured earlier on this host"
            } else {
                "chosen by measurement"
            }
        }

        /// `how` and where it came from: "plain/all (…), chosen by measurement".
        pub fn told(&self) -> String {
            format!("{}, {}", self.how, self.provenance())
        }
    }

    /// The decision remembered under `key` in `<cache>/kernels/<file>.json` when `parse` can
    /// read it, else the one `measure` makes (the choice and the text to remember), remembered
    /// there for the next run. A remembered text `parse` cannot read (written when other
    /// candidates were raced) counts as none. When `measure` fails, nothing is remembered.
    ///
    /// Every choice by measurement goes through here: candle's kernels and int8 layout, the ONNX
    /// graph, torch's linear kernels, the OpenMP spin and the workers' huge pages.
    pub fn recall_or_measure<T, E>(
        file: &str,
        key: &str,
        parse: impl FnOnce(&str) -> Option<T>,
        measure: impl FnOnce() -> Result<(T, String), E>,
    ) -> Result<Decided<T>, E> {
        recall_or_measure_at(&path(file), key, parse, measure)
    }

    fn recall_or_measure_at<T, E>(
        path: &Path,
        key: &str,
        parse: impl FnOnce(&str) -> Option<T>,
        measure: impl FnOnce() -> Result<(T, String), E>,
    ) -> Result<Decided<T>, E> {
        if let Some(how) = read(path).remove(key) {
            if let Some(value) = parse(&how) {
                return Ok(Decided {
                    value,
                    how,
                    remembered: true,
                });
            }
        }
        let (value, how) = measure()?;
        // Best effort: a cache that cannot be written only costs a measurement next time.
        let mut all = read(path);
        all.insert(key.into(), how.clone());
        if let Ok(json) = serde_json::to_vec_pretty(&all) {
            let _ = crate::error::write_atomic(path, &json);
        }
        Ok(Decided {
            value,
            how,
            remembered: false,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::{recall_or_measure_at, Decided};

        /// The first call measures and remembers; the next reads it back without measuring; a
        /// remembered text the caller cannot read is measured afresh; a failed measurement
        /// leaves the cache as it was.
        #[test]
        fn a_decision_is_measured_once_then_read_back() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("kernels").join("k.json");
            let parse = |v: &str| v.split_whitespace().next()?.parse::<u32>().ok();
            let first =
                recall_or_measure_at::<_, ()>(&path, "a", parse, || Ok((7, "7 (7 ms)".into())));
            assert_eq!(
                first,
                Ok(Decided {
                    value: 7,
                    how: "7 (7 ms)".into(),
                    remembered: false
                })
            );
            assert_eq!(first.unwrap().told(), "7 (7 ms), chosen by measurement");
            let again = recall_or_measure_at::<_, ()>(&path, "a", parse, || {
                panic!("a remembered decision is not measured again")
            })
            .unwrap();
            assert_eq!((again.value, again.remembered), (7, true));
            assert_eq!(again.told(), "7 (7 ms), measured earlier on this host");

            // A failed measurement remembers nothing; an unreadable text is measured again and
            // replaced.
            let failed = recall_or_measure_at(&path, "b", parse, || Err("no probe"));
            assert_eq!(failed, Err("no probe"));
            let unreadable = |_: &str| None::<u32>;
            let fresh =
                recall_or_measure_at::<_, ()>(&path, "a", unreadable, || Ok((9, "9".into())));
            assert!(!fresh.unwrap().remembered);
            let json = std::fs::read_to_string(&path).unwrap();
            assert!(
                json.contains(r#""a": "9""#) && !json.contains(r#""b""#),
                "{json}"
            );
        }
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

#[cfg(test)]
mod tests {
    /// Races a candidate that sleeps `first_ms` on its first call and `later_ms` on every later
    /// one against a no-op. Returns how often each was called and each one's time.
    fn race_sleeper(first_ms: u64, later_ms: u64) -> ((u32, u32), (f64, f64)) {
        let (mut na, mut nb) = (0, 0);
        let times = super::race::<()>(
            || {
                na += 1;
                let ms = if na == 1 { first_ms } else { later_ms };
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            },
            || {
                nb += 1;
                Ok(())
            },
        )
        .unwrap();
        ((na, nb), times)
    }

    /// `race` returns each candidate's own best time, in the order given: a candidate that
    /// sleeps 5 ms a call is never reported below 5 ms, and the other is the faster (the best
    /// of 3 calls of a no-op).
    #[test]
    fn race_times_each_candidate_in_order() {
        let (calls, (slow, fast)) = race_sleeper(5, 5);
        assert_eq!(calls, (4, 4), "one warm-up and three timed calls each");
        assert!(slow >= 5.0 && fast < slow, "{slow} {fast}");
    }

    /// A candidate whose first timed call took over 10× the fastest one's and over 20 ms is
    /// called no more: that time is its time, and the others are timed as before.
    #[test]
    fn a_hopeless_candidate_is_called_twice() {
        let (calls, (slow, fast)) = race_sleeper(30, 30);
        assert_eq!(calls, (2, 4), "warm-up and one timed call");
        assert!(slow >= 30.0 && fast < 1.0, "{slow} {fast}");
    }

    /// A slow first call (a one-time cost, like a JIT) does not make a candidate hopeless: it
    /// is timed like the others, and its later calls count.
    #[test]
    fn a_slow_first_call_is_not_judged() {
        let (calls, (jit, other)) = race_sleeper(30, 0);
        assert_eq!(calls, (4, 4));
        assert!(jit < 1.0 && other < 1.0, "{jit} {other}");
    }
}
