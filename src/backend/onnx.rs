//! The ONNX Runtime backend: the BERT exported by `model::onnx::export`, run with `ort`.
//!
//! The runtime library is loaded at run time (ort's `load-dynamic`): from `ORT_DYLIB_PATH` when
//! set, else from `<cache>/onnxruntime/libonnxruntime.so`, which `scripts/fetch-onnxruntime.sh`
//! extracts from the PyPI `onnxruntime` wheel. Loading fails with distinct errors for a library
//! that cannot be opened, one that lacks the ONNX Runtime entry point, and one that is too old.
//!
//! Sessions use the run's intra-op thread count, one inter-op thread, the CPU execution provider
//! registered with `error_on_failure` (never a silent fallback) and the graph optimisation level
//! of `RECBENCH_ONNX_OPT` (`disable`, `basic`, `extended`, `all`; default `all`). The graph
//! flavour comes from `RECBENCH_ONNX_FLAVOUR` (see `model::onnx`).

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::{Device, Embeddings, Encoder, EncoderOptions, Precision};
use crate::error::{Error, Result};
use crate::model::onnx::{export, Flavour};
use crate::model::{cache_dir, ModelFiles, TokenBatch};

/// Environment variable selecting ONNX Runtime's graph optimisation level.
pub const OPT_ENV: &str = "RECBENCH_ONNX_OPT";

fn err(e: impl std::fmt::Display) -> Error {
    Error::backend("onnx", e)
}

/// Why the ONNX Runtime library could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "cannot open the ONNX Runtime library {path}: {reason}; run scripts/fetch-onnxruntime.sh \
         (part of scripts/fetch.sh) or set ORT_DYLIB_PATH to a libonnxruntime.so"
    )]
    CannotOpen { path: PathBuf, reason: String },
    #[error("{path} is not an ONNX Runtime library: it does not export OrtGetApiBase")]
    MissingSymbol { path: PathBuf },
    #[error(
        "ONNX Runtime {found} at {path} is too old: ort {ort} needs 1.{need}.0 or newer; \
         run scripts/fetch-onnxruntime.sh"
    )]
    TooOld {
        path: PathBuf,
        found: String,
        need: u32,
        ort: &'static str,
    },
    #[error("ONNX Runtime at {path} could not be initialised: {reason}")]
    Init { path: PathBuf, reason: String },
}

/// The runtime library's path, made absolute: `ORT_DYLIB_PATH`, else the one the fetch script
/// extracted.
pub fn library_path() -> PathBuf {
    let path = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cache_dir().join("onnxruntime").join("libonnxruntime.so"),
    };
    std::path::absolute(&path).unwrap_or(path)
}

#[repr(C)]
struct OrtApiBase {
    get_api: unsafe extern "C" fn(u32) -> *const std::ffi::c_void,
    get_version_string: unsafe extern "C" fn() -> *const c_char,
}

/// Opens the library and reads its version string (before ort touches it, so each failure gets
/// its own error).
pub fn probe_library(path: &Path) -> std::result::Result<String, RuntimeError> {
    use std::os::unix::ffi::OsStrExt;
    let cannot = |reason: String| RuntimeError::CannotOpen {
        path: path.to_path_buf(),
        reason,
    };
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|e| cannot(e.to_string()))?;
    // SAFETY: dlopen/dlsym with valid C strings; the handle is deliberately never closed (ort
    // opens the same library and keeps it for the life of the process).
    unsafe {
        let handle = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            let e = libc::dlerror();
            let reason = if e.is_null() {
                "dlopen failed".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            };
            return Err(cannot(reason));
        }
        let sym = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        if sym.is_null() {
            return Err(RuntimeError::MissingSymbol {
                path: path.to_path_buf(),
            });
        }
        let get_base: unsafe extern "C" fn() -> *const OrtApiBase = std::mem::transmute(sym);
        let base = get_base();
        if base.is_null() {
            return Err(RuntimeError::MissingSymbol {
                path: path.to_path_buf(),
            });
        }
        let v = ((*base).get_version_string)();
        Ok(CStr::from_ptr(v).to_string_lossy().into_owned())
    }
}

/// Loads the runtime once per process; returns its version (e.g. `1.31.1`).
pub fn runtime() -> std::result::Result<&'static str, RuntimeError> {
    loaded().map(|(v, _)| v.as_str())
}

/// The loaded runtime: its version and the process's ONNX Runtime environment.
fn loaded() -> std::result::Result<&'static (String, ort::environment::Environment), RuntimeError> {
    static LOADED: OnceLock<
        std::result::Result<(String, ort::environment::Environment), RuntimeError>,
    > = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = library_path();
            let version = probe_library(&path)?;
            let minor = version
                .split('.')
                .nth(1)
                .and_then(|m| m.parse::<u32>().ok())
                .unwrap_or(0);
            if minor < ort::MINOR_VERSION {
                return Err(RuntimeError::TooOld {
                    path,
                    found: version,
                    need: ort::MINOR_VERSION,
                    ort: env!("RECBENCH_ORT_VERSION"),
                });
            }
            let init = |reason: String| RuntimeError::Init {
                path: path.clone(),
                reason,
            };
            let env = ort::init_from(&path).map_err(|e| init(e.to_string()))?;
            let env = env
                .with_name("recbench")
                .build()
                .map_err(|e| init(e.to_string()))?;
            Ok((version, env))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// What `recbench backends` and the results environment show for this backend.
pub fn runtime_version() -> String {
    match runtime() {
        Ok(v) => format!(
            "onnxruntime {v} (ort {}; graph {}, optimisation {})",
            env!("RECBENCH_ORT_VERSION"),
            Flavour::forced_from_env().map_or_else(
                |e| e.to_string(),
                |f| f.map_or("chosen by measurement".into(), |f| f.to_string())
            ),
            std::env::var(OPT_ENV)
                .ok()
                .filter(|s| !s.is_empty() && s != "auto")
                .unwrap_or_else(|| "chosen by measurement".into())
        ),
        Err(e) => format!(
            "ort {}; runtime not loaded: {e}",
            env!("RECBENCH_ORT_VERSION")
        ),
    }
}

pub const COMPILED: bool = true;

pub fn describe() -> String {
    format!(
        "graph flavour (plain or fused) and optimisation level (all or extended) the fastest \
         by measurement at load ({}=plain|fused and {OPT_ENV}=… force them); int8 = dynamic \
         quantization, per-channel weight scales",
        crate::model::onnx::FLAVOUR_ENV
    )
}

/// The graph flavour setting (a loaded encoder knows the flavour it runs, see
/// `Encoder::cache_tag`): plain and fused graphs never share computed embeddings.
pub fn cache_tag(precision: Precision) -> Option<String> {
    let flavour = match Flavour::forced_from_env() {
        Ok(Some(f)) => f.to_string(),
        _ => "auto".into(),
    };
    Some(with_form(flavour, Some(precision)))
}

/// `tag`, with the int8 graph's scheme after it for an int8 graph (the forms' float results
/// differ in the last bits, per-tensor layers by more, so their embeddings are cached apart).
fn with_form(tag: String, precision: Option<Precision>) -> String {
    match (
        precision,
        crate::model::onnx::export::Int8Scheme::from_env(),
    ) {
        (Some(Precision::Int8), Ok(scheme)) => format!("{tag}-{scheme}"),
        _ => tag,
    }
}

pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<Box<dyn Encoder>> {
    Ok(Box::new(OnnxBert::load(files, opts)?))
}

/// ONNX Runtime's MatMul (MLAS on CPU) through a one-node graph, with `threads` intra-op
/// threads.
pub fn gemm_gflops(n: usize, threads: usize, budget: std::time::Duration) -> Option<f64> {
    use crate::model::onnx::proto::{
        dtype, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto,
        TensorTypeProto, TypeProto, ValueInfoProto,
    };
    let (_, env) = loaded().ok()?;
    let square = |name: &str| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: dtype::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            dim_value: Some(n as i64),
                            dim_param: None,
                        };
                        2
                    ],
                }),
            }),
        }),
    };
    let model = ModelProto {
        ir_version: 8,
        producer_name: "recbench".into(),
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["a".into(), "b".into()],
                output: vec!["c".into()],
                name: "mm".into(),
                op_type: "MatMul".into(),
                ..Default::default()
            }],
            name: "gemm".into(),
            input: vec![square("a"), square("b")],
            output: vec![square("c")],
            ..Default::default()
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: crate::model::onnx::export::OPSET,
        }],
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&model);
    let mut session = Session::builder(env)
        .ok()?
        .with_log_level(ort::logging::LogLevel::Error)
        .ok()?
        .with_intra_threads(threads.max(1))
        .ok()?
        .with_inter_threads(1)
        .ok()?
        .commit_from_memory(&bytes)
        .ok()?;
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 5) % 11) as f32 * 0.1).collect();
    let shape = [n, n];
    let mut ok = true;
    let best = super::best_gflops(n, budget, || {
        let run = (|| -> std::result::Result<(), ort::Error> {
            let out = session.run(ort::inputs![
                "a" => TensorRef::from_array_view((shape, &a[..]))?,
                "b" => TensorRef::from_array_view((shape, &b[..]))?,
            ])?;
            std::hint::black_box(out["c"].try_extract_tensor::<f32>()?);
            Ok(())
        })();
        ok &= run.is_ok();
    });
    ok.then_some(best)
}

/// Whether the backend can run `(device, precision)`, or why not.
pub fn supports(device: Device, precision: Precision) -> std::result::Result<(), String> {
    super::cuda_ready("onnx", device)?;
    if device != Device::Cpu {
        runtime().map_err(|e| e.to_string())?;
        if precision != Precision::Fp32 {
            return Err(format!(
                "onnx on CUDA runs fp32 only here (the {precision} graphs are built and \
                 checked for the CPU execution provider)"
            ));
        }
        return cuda_provider().map(drop);
    }
    if precision == Precision::Bf16 {
        // Measured with onnxruntime 1.31.1: a bf16 MatMul or Add graph fails at session creation
        // with "Could not find an implementation for MatMul(13)" (resp. Add(14)).
        return Err(
            "onnx has no bf16: ONNX Runtime's CPU execution provider has no bf16 kernel \
                    for MatMul(13) or Add(14) (session creation fails)"
                .into(),
        );
    }
    runtime().map(|_| ()).map_err(|e| e.to_string())
}

/// ONNX Runtime's CUDA execution provider library, beside the runtime library in use (the
/// `onnxruntime-gpu` wheel has both), or why it is not there.
fn cuda_provider() -> std::result::Result<PathBuf, String> {
    let provider = library_path()
        .parent()
        .unwrap_or(Path::new("."))
        .join("libonnxruntime_providers_cuda.so");
    if provider.is_file() {
        return Ok(provider);
    }
    Err(format!(
        "onnx on CUDA needs ONNX Runtime's CUDA provider library, {} is missing (point \
         ORT_DYLIB_PATH at the libonnxruntime.so of an onnxruntime-gpu installation of the same \
         version, {})",
        provider.display(),
        runtime().unwrap_or("unknown")
    ))
}

/// The graph optimisation levels raced when `RECBENCH_ONNX_OPT` is unset or `auto`: ONNX
/// Runtime's default (all) and extended (the transformer fusions without the layout passes).
const LEVELS: [GraphOptimizationLevel; 2] =
    [GraphOptimizationLevel::All, GraphOptimizationLevel::Level2];

/// The graph optimisation level `RECBENCH_ONNX_OPT` forces; `None` (unset or `auto`): chosen by
/// measurement among [`LEVELS`].
pub fn opt_level() -> Result<Option<GraphOptimizationLevel>> {
    match std::env::var(OPT_ENV).ok().as_deref() {
        None | Some("") | Some("auto") => Ok(None),
        Some("all") => Ok(Some(GraphOptimizationLevel::All)),
        Some("disable") => Ok(Some(GraphOptimizationLevel::Disable)),
        Some("basic") => Ok(Some(GraphOptimizationLevel::Level1)),
        Some("extended") => Ok(Some(GraphOptimizationLevel::Level2)),
        Some(s) => Err(Error::input(
            "<environment>",
            None,
            OPT_ENV,
            format!(
                "unknown optimisation level {s:?}; allowed: auto, disable, basic, extended, all"
            ),
        )),
    }
}

/// A level's name as `RECBENCH_ONNX_OPT` spells it.
fn level_name(level: GraphOptimizationLevel) -> &'static str {
    match level {
        GraphOptimizationLevel::Disable => "disable",
        GraphOptimizationLevel::Level1 => "basic",
        GraphOptimizationLevel::Level2 => "extended",
        _ => "all",
    }
}

/// ONNX Runtime's session option that makes the intra-op workers stop spinning at the end of
/// each `Run` (they spin for a while by default, waiting for the next parallel section).
const FORCE_SPINNING_STOP: &str = "session.force_spinning_stop";

/// How a session's intra-op workers wait between forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spin {
    /// ONNX Runtime's default: they spin a while after each forward. What runs are measured with.
    Default,
    /// They stop at the end of each forward: for sessions raced side by side, so that one's
    /// spinning workers do not slow the next.
    StopAfterRun,
}

impl Spin {
    /// The value of [`FORCE_SPINNING_STOP`].
    fn force_stop(self) -> &'static str {
        match self {
            Spin::Default => "0",
            Spin::StopAfterRun => "1",
        }
    }
}

/// BERT on an ONNX Runtime session.
pub struct OnnxBert {
    session: Session,
    hidden: usize,
    /// The `.onnx` file the session runs.
    pub model_path: PathBuf,
    level: GraphOptimizationLevel,
    flavour: Option<Flavour>,
    /// How the flavour was chosen, for the run's notes.
    chosen: String,
    threads: usize,
    device: Device,
    /// The precision the graph was exported at (`None` for a file opened as given).
    precision: Option<Precision>,
    /// The scoring graph (`export::scoring_model`) on the same provider
    /// (`Encoder::load_items`).
    scoring: Option<Session>,
}

impl OnnxBert {
    /// Exports (or finds in the cache) the model and opens a session. The graph flavour (plain
    /// or fused) and the optimisation level are those `RECBENCH_ONNX_FLAVOUR` and
    /// `RECBENCH_ONNX_OPT` force, else every combination left open is timed on the run's shape
    /// on this host (best of 3 interleaved forwards after a warm-up each, remembered per host,
    /// runtime, threads, precision and shape) and the fastest kept, opened afresh with the
    /// runtime's defaults (the raced sessions stop their workers spinning after each forward).
    pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<OnnxBert> {
        supports(opts.device, opts.precision).map_err(err)?;
        let hidden = files.config.hidden_size;
        let open_with = |f: Flavour, level: GraphOptimizationLevel, spin: Spin| {
            let path = export::export_cached(files, f, opts.precision)?;
            let mut b =
                Self::load_file_with(&path, hidden, opts.threads, level, opts.device, spin)?;
            b.flavour = Some(f);
            b.precision = Some(opts.precision);
            Ok::<_, Error>(b)
        };
        let open = |f: Flavour, level: GraphOptimizationLevel| open_with(f, level, Spin::Default);
        let flavours = match Flavour::forced_from_env()? {
            Some(f) => vec![f],
            None => vec![Flavour::Plain, Flavour::Fused],
        };
        let levels = match opt_level()? {
            Some(l) => vec![l],
            None => LEVELS.to_vec(),
        };
        let candidates: Vec<(Flavour, GraphOptimizationLevel)> = flavours
            .iter()
            .flat_map(|&f| levels.iter().map(move |&l| (f, l)))
            .collect();
        let name = |(f, l): (Flavour, GraphOptimizationLevel)| format!("{f}/{}", level_name(l));
        if let [only] = candidates[..] {
            let mut b = open(only.0, only.1)?;
            b.chosen = format!(
                "{}, forced by {}/{OPT_ENV}",
                name(only),
                crate::model::onnx::FLAVOUR_ENV
            );
            return Ok(b);
        }
        let shape = opts.shape_hint.unwrap_or((8, 128));
        let rows = shape.0 * shape.1;
        let names: Vec<String> = candidates.iter().map(|&c| name(c)).collect();
        let key = format!(
            "{} {}, {}, {}, {} threads, {}, {}, {}x{}",
            opts.device,
            crate::tuning::choices::host(),
            runtime_version(),
            files.identity(),
            opts.threads,
            opts.precision,
            names.join(" or "),
            shape.0,
            shape.1
        );
        let decided = crate::tuning::choices::recall_or_measure(
            "onnx-flavour",
            &key,
            |v| {
                candidates
                    .iter()
                    .position(|&c| v.starts_with(&format!("{} ", name(c))))
            },
            || {
                // Every session has its own intra-op thread pool, whose workers spin for a
                // while after each forward (ONNX Runtime's default): in an interleaved race
                // they would take a core from the next candidate. Measured on the 2-vCPU EPYC
                // VM at 1 × 128 tokens: 30–50 ms per forward in such a race against 17 ms in
                // the run that followed. So the raced sessions stop spinning at the end of
                // each forward, and the one kept is opened again with the runtime's defaults.
                let mut sessions = candidates
                    .iter()
                    .map(|&(f, l)| open_with(f, l, Spin::StopAfterRun))
                    .collect::<Result<Vec<_>>>()?;
                let batch = TokenBatch {
                    batch: shape.0,
                    seq_len: shape.1,
                    input_ids: (0..rows as u32).map(|i| 1000 + i % 5000).collect(),
                    type_ids: vec![0; rows],
                    attention_mask: vec![1; rows],
                };
                let batch = &batch;
                let mut runs: Vec<Box<dyn FnMut() -> Result<()> + '_>> = sessions
                    .iter_mut()
                    .map(|s| Box::new(move || s.encode(batch).map(drop)) as Box<dyn FnMut() -> _>)
                    .collect();
                let times = crate::tuning::race_all(&mut runs)?;
                let best = (0..times.len())
                    .min_by(|&a, &b| times[a].total_cmp(&times[b]))
                    .expect("at least two candidates");
                let each: Vec<String> = names
                    .iter()
                    .zip(&times)
                    .map(|(n, t)| format!("{n} {t:.2} ms"))
                    .collect();
                let how = format!(
                    "{} ({} per forward of {} × {} tokens)",
                    names[best],
                    each.join(", "),
                    shape.0,
                    shape.1
                );
                Ok::<_, Error>((best, how))
            },
        )?;
        let (f, l) = candidates[decided.value];
        let mut keep = open(f, l)?;
        keep.chosen = decided.told();
        Ok(keep)
    }

    /// Opens a session on an exported file, on `device`, with ONNX Runtime's defaults for its
    /// thread pool. A CUDA device registers ONNX Runtime's CUDA execution provider so that
    /// failing to register it is an error (no silent CPU run).
    pub fn load_file(
        path: &Path,
        hidden: usize,
        threads: usize,
        level: GraphOptimizationLevel,
        device: Device,
    ) -> Result<OnnxBert> {
        Self::load_file_with(path, hidden, threads, level, device, Spin::Default)
    }

    /// [`OnnxBert::load_file`] with the workers waiting as `spin` says.
    pub fn load_file_with(
        path: &Path,
        hidden: usize,
        threads: usize,
        level: GraphOptimizationLevel,
        device: Device,
        spin: Spin,
    ) -> Result<OnnxBert> {
        let session = Self::session(threads, level, device, spin)?
            .commit_from_file(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        Ok(OnnxBert {
            session,
            hidden,
            model_path: path.to_path_buf(),
            level,
            flavour: None,
            chosen: "given file".into(),
            threads,
            device,
            precision: None,
            scoring: None,
        })
    }

    /// A session builder on `device`'s execution provider (registered with
    /// `error_on_failure`: no silent fall back to the CPU), with `threads` intra-op threads.
    fn session(
        threads: usize,
        level: GraphOptimizationLevel,
        device: Device,
        spin: Spin,
    ) -> Result<ort::session::builder::SessionBuilder> {
        let (_, env) = loaded().map_err(err)?;
        let provider = match device {
            Device::Cpu => ort::ep::CPU::default().build().error_on_failure(),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => {
                cuda_provider().map_err(err)?;
                ort::ep::CUDA::default()
                    .with_device_id(i as i32)
                    .build()
                    .error_on_failure()
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => return Err(err(supports(device, Precision::Fp32).unwrap_err())),
        };
        Session::builder(env)
            .map_err(err)?
            .with_log_level(ort::logging::LogLevel::Error)
            .map_err(err)?
            .with_optimization_level(level)
            .map_err(err)?
            .with_intra_threads(threads.max(1))
            .map_err(err)?
            .with_inter_threads(1)
            .map_err(err)?
            .with_config_entry(FORCE_SPINNING_STOP, spin.force_stop())
            .map_err(err)?
            .with_execution_providers([provider])
            .map_err(err)
    }
}

impl Encoder for OnnxBert {
    fn load_items(&mut self, items: super::ItemsRef<'_>) -> Result<Option<String>> {
        // f16 items on CUDA for half-precision graphs; f32 otherwise (the CPU provider's f16
        // MatMul is not faster).
        let half =
            matches!(self.device, Device::Cuda(_)) && self.precision == Some(Precision::Fp16);
        let model = crate::model::onnx::export::scoring_model(items.data, items.dim, half);
        let bytes = prost::Message::encode_to_vec(&model);
        // Its workers stop at the end of each run, so they do not spin into the next encoder
        // forward on the same cores (the encoder's own workers still spin into the scoring: a
        // shared thread pool would remove that too).
        let session = Self::session(self.threads, self.level, self.device, Spin::StopAfterRun)?
            .commit_from_memory(&bytes)
            .map_err(|e| err(format!("the scoring graph: {e}")))?;
        self.scoring = Some(session);
        Ok(Some(format!(
            "{} item embeddings in {} on {}: a second ONNX Runtime session (MatMul + TopK) on \
             the same provider; the user embeddings pass through the host between the two",
            items.len(),
            if half { "f16" } else { "f32" },
            match self.device {
                Device::Cpu => "the CPU".to_string(),
                d => d.to_string(),
            }
        )))
    }

    fn encode_and_rank(&mut self, batch: &TokenBatch, k: usize) -> Result<super::Ranked> {
        let t = std::time::Instant::now();
        let users = self.encode(batch)?;
        let encode_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        let scoring = self
            .scoring
            .as_mut()
            .ok_or_else(|| err("encode_and_rank before load_items"))?;
        let kk = [k as i64];
        let outputs = scoring
            .run(ort::inputs![
                "user" => TensorRef::from_array_view(([users.rows, users.dim], &users.data[..])).map_err(err)?,
                "k" => TensorRef::from_array_view(([1usize], &kk[..])).map_err(err)?,
            ])
            .map_err(err)?;
        let (_, scores) = outputs["scores"].try_extract_tensor::<f32>().map_err(err)?;
        let (_, ids) = outputs["ids"].try_extract_tensor::<i64>().map_err(err)?;
        let top = super::Ranked::rows_of(ids, scores, users.rows, k);
        Ok(super::Ranked {
            top,
            encode_ms,
            score_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings> {
        let shape = [batch.batch, batch.seq_len];
        let wide = |v: &[u32]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
        let (ids, mask, types) = (
            wide(&batch.input_ids),
            wide(&batch.attention_mask),
            wide(&batch.type_ids),
        );
        let outputs = self
            .session
            .run(ort::inputs![
                "input_ids" => TensorRef::from_array_view((shape, &ids[..])).map_err(err)?,
                "attention_mask" => TensorRef::from_array_view((shape, &mask[..])).map_err(err)?,
                "token_type_ids" => TensorRef::from_array_view((shape, &types[..])).map_err(err)?,
            ])
            .map_err(err)?;
        let (_, data) = outputs["embedding"]
            .try_extract_tensor::<f32>()
            .map_err(err)?;
        if data.len() != batch.batch * self.hidden {
            return Err(err(format!(
                "output has {} values, expected {} × {}",
                data.len(),
                batch.batch,
                self.hidden
            )));
        }
        Ok(Embeddings {
            rows: batch.batch,
            dim: self.hidden,
            data: data.to_vec(),
        })
    }

    fn kernels(&self) -> Option<String> {
        let file = self.model_path.file_name().unwrap_or_default();
        Some(format!(
            "graph {} at optimisation level {} (flavour/level: {})",
            file.to_string_lossy(),
            level_name(self.level),
            self.chosen,
        ))
    }

    fn cache_tag(&self) -> Option<String> {
        self.flavour
            .map(|f| with_form(f.to_string(), self.precision))
    }
}
