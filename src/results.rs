//! The results file: versioned schema, atomic write after every run, load.
//!
//! One file per sweep and machine: `results/<scenario>/<utc>-<host>.json`. Units live in field
//! names (`_ms`, `_bytes`, `_watts`, `_usd`); a figure that was not measured is `null`, never 0.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::RunSpec;
pub use crate::telemetry::power::Power;
use crate::telemetry::Inventory;
use crate::util::files::{read_text, write_atomic};

/// Version of this schema. Readers refuse files from a newer version.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultsFile {
    pub schema_version: u32,
    pub scenario: ScenarioEcho,
    pub environment: Environment,
    /// When the sweep started (UTC, RFC 3339).
    pub started_utc: String,
    /// When this file was last written.
    pub updated_utc: String,
    pub runs: Vec<RunResult>,
}

/// The scenario as run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioEcho {
    pub name: String,
    pub path: String,
    /// The scenario file, verbatim.
    pub text: String,
    /// Whether `--quick` shrank the durations.
    pub quick: bool,
    /// The validated `[cost]` settings. Files written before this field existed get them from
    /// `text` when read (see [`ResultsFile::from_text`]).
    #[serde(default)]
    pub cost: Option<CostSettings>,
}

/// A scenario's `[cost]` settings, as validated when it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostSettings {
    /// The catalog id this host is priced as, or `auto` (matched by CPU or GPU model).
    pub hardware: String,
}

impl CostSettings {
    /// The settings of a scenario text that was validated when it ran (results files written
    /// before the settings were recorded): `[cost] hardware`, else `auto`.
    fn from_validated_text(text: &str) -> CostSettings {
        let hardware = toml::from_str::<toml::Value>(text)
            .ok()
            .and_then(|v| Some(v.get("cost")?.get("hardware")?.as_str()?.to_string()))
            .unwrap_or_else(|| "auto".into());
        CostSettings { hardware }
    }
}

/// Where the sweep ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Environment {
    pub inventory: Inventory,
    pub recbench_version: String,
    pub git_commit: String,
    /// Backend runtimes compiled into this build, with versions.
    pub backends: Vec<BackendVersion>,
    /// Measured fp32 GEMM throughput per thread count: the ceiling that efficiency is relative to.
    pub gemm_ceiling: Vec<GemmCeiling>,
    /// Power of the readable sensors with nothing running, measured before the sweep; `null`
    /// when no sensor is readable (an estimate of idle would not be a measurement).
    pub idle_power: Option<Power>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendVersion {
    pub backend: String,
    pub runtime_version: String,
}

/// Best observed fp32 GEMM rate at a thread count: the best of every kernel this build carries
/// (`kernels`) on square products. Files written before `kernels` existed measured the `gemm`
/// crate alone at 1024.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GemmCeiling {
    pub threads: usize,
    /// The size of the best product.
    pub size: usize,
    pub gflops: f64,
    #[serde(default)]
    pub kernels: Vec<GemmRate>,
}

/// One kernel's best rate on one square size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmRate {
    pub kernel: String,
    pub size: usize,
    pub gflops: f64,
}

/// Outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured, outputs finite and within parity tolerance.
    Ok,
    /// Not run; `reason` says why.
    Skipped,
    /// The worker crashed, timed out or errored; `reason` has the cause.
    Failed,
    /// Ran, but outputs were NaN/inf or outside parity tolerance: its speed is not a result.
    Invalid,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Invalid => "invalid",
        }
    }
}

/// One point of the sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub spec: RunSpec,
    pub status: Status,
    pub reason: Option<String>,
    pub started_utc: String,
    /// Wall time of the whole worker (load, parity, warm-up, measurement).
    pub wall_s: Option<f64>,
    /// What the timed region covers.
    pub timed_region: Option<String>,
    /// Per-iteration latency: one iteration is one forward pass of `batch` requests (offline) or
    /// one request (single-stream).
    pub latency: Option<Latency>,
    pub throughput: Option<Throughput>,
    pub compute: Option<Compute>,
    pub memory: Memory,
    pub power: Power,
    pub parity: Option<Parity>,
    /// Recommendation quality against the full (unpruned) model in fp32; absent from files
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// Two-tower runs: the catalog search's recall against an exact fp32 scan, its build and
    /// size, and each iteration's time split between encoder and search (files from before
    /// the field: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<RetrievalResult>,
    /// From the worker process's start to steady latency, part by part (files from before the
    /// field: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStart>,
    /// Server load: the latency–throughput curve and the SLA operating point. The run's
    /// latency, throughput and power are those of a confirmation probe at the operating point.
    pub server: Option<ServerResult>,
    /// Filled by the cost model when a price applies.
    pub cost: Option<serde_json::Value>,
    /// Notes a reader should see (short sample, max_s reached, ...).
    pub notes: Vec<String>,
    /// Latency samples in ms in time order (thinned evenly to at most 10,000).
    pub samples_ms: Vec<f64>,
    /// A run merged from interleaved rounds (`run --interleave … --rounds N`): each worker
    /// process's own samples and figures, in the order they ran, so `compare` can resample
    /// processes as well as iterations. Empty for a run of one process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<Round>,
}

/// How long a new replica of the run's configuration takes from its process's start to
/// serving at steady latency, in the parts a serving process goes through. Not counted: what
/// only a benchmark does (the parity check, drawing the synthetic catalog, the recall queries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    /// Process start (exec) to the worker's first step: loading the binary and its libraries
    /// (libtorch, ONNX Runtime). `None` where the OS does not say when a process started.
    pub exec_s: Option<f64>,
    /// Resolving the model's files and loading the tokenizer.
    pub model_files_s: f64,
    /// Opening the backend: the runtime, the weights on the device (a GPU's context included),
    /// graph building and kernel choices.
    pub open_s: f64,
    /// Two-tower: building or loading the catalog search, or placing the items on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_s: Option<f64>,
    /// The first request after all that.
    pub first_request_ms: f64,
    /// From the first request's start until an iteration is within [`STEADY_WITHIN`] of the
    /// measured p50 (the first request's time when it already is). `None`: no iteration of the
    /// warm-up got there; the total then counts the whole warm-up.
    pub to_steady_s: Option<f64>,
    /// The parts summed: process start to steady serving.
    pub total_s: f64,
}

/// How near the measured p50 an iteration must be for the run to count as warm (10%).
pub const STEADY_WITHIN: f64 = 0.10;

/// How a two-tower run searched its catalog, how well and in how much of its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalResult {
    pub catalog_items: usize,
    /// recall@k against an exact fp32 scan of the same catalog for the same queries (the
    /// encoder's embeddings of `queries` requests of the run's token stream).
    pub recall_at_k: f64,
    pub k: usize,
    pub queries: usize,
    /// Seconds to build the search (quantize, train, link); none when the backend's device
    /// holds the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_s: Option<f64>,
    /// Bytes the search reads (items at their precision and the index); none on a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Milliseconds per timed batch of the encoder forward and of the search after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_ms: Option<Split>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_ms: Option<Split>,
}

/// The median and 99th percentile of one part of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
}

/// One worker process of a run merged from rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// Its latency samples in ms, in time order (thinned evenly to at most 10,000 / rounds).
    pub samples_ms: Vec<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub requests_per_s: Option<f64>,
    /// Its peak resident memory (files from before the field: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub sequences_per_s: f64,
    pub tokens_per_s: f64,
    pub requests_per_s: f64,
    /// Measured window the rates are computed over.
    pub measured_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compute {
    /// Encoder FLOPs per sequence (2 per multiply-add; projections, attention products, FFN).
    pub flops_per_sequence: f64,
    pub achieved_gflops: f64,
    /// fp32 GEMM ceiling of this machine at this thread count, when measured.
    pub gemm_ceiling_gflops: Option<f64>,
    /// achieved / ceiling.
    pub efficiency: Option<f64>,
}

impl Compute {
    /// Achieved GFLOP/s of a run against the ceiling: at most 1 by construction. A run faster
    /// than the measured ceiling (possible when a backend's kernel beats every GEMM measured on
    /// the large square products) counts as 1, and the second value says so for the notes.
    pub fn efficiency(achieved: f64, ceiling: Option<f64>) -> (Option<f64>, Option<String>) {
        match ceiling.filter(|c| *c > 0.0 && c.is_finite()) {
            None => (None, None),
            Some(c) if achieved > c => (
                Some(1.0),
                Some(format!(
                    "achieved {achieved:.1} GFLOP/s is above the measured GEMM ceiling \
                     ({c:.1} GFLOP/s): efficiency is shown as 100%"
                )),
            ),
            Some(c) => (Some(achieved / c), None),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Peak resident set of the worker during the measurement window (or the whole process
    /// when the peak mark could not be reset; see `rss_scope`).
    pub peak_rss_bytes: Option<u64>,
    /// `measurement` or `process`.
    pub rss_scope: Option<String>,
    /// Peak device memory reported by the backend's allocator, where the backend exposes one.
    pub device_peak_bytes: Option<u64>,
    /// GPU memory held by the worker process at the end of the window (NVML per-process).
    pub device_used_bytes: Option<u64>,
}

/// Agreement of this run's embeddings with the candle fp32 reference on the probe set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parity {
    pub reference: String,
    pub probes: usize,
    pub max_abs_diff: f64,
    pub min_cosine: f64,
    pub mean_cosine: f64,
    /// Mean overlap of the top-10 demo-catalog items, over the probe queries.
    pub top10_overlap: f64,
    pub tolerance: String,
    pub passed: bool,
}

/// What a configuration costs in recommendation quality: the run's embeddings of the parity
/// probes and the demo catalog against those of the full model in fp32 (candle on the CPU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// The model compared with, e.g. `minilm-l6 (full) fp32 on candle`.
    pub reference: String,
    /// Mean overlap of the top-10 catalog items each probe retrieves.
    pub top10_overlap: f64,
    /// Mean cosine of the pooled probe embeddings.
    pub mean_cosine: f64,
    /// Spearman rank correlation of the catalog's scores, per probe, averaged.
    pub score_rank_correlation: f64,
}

impl RunResult {
    /// A run that did not execute.
    pub fn not_run(spec: RunSpec, status: Status, reason: String) -> RunResult {
        RunResult {
            spec,
            status,
            reason: Some(reason),
            started_utc: now_utc(),
            wall_s: None,
            timed_region: None,
            latency: None,
            throughput: None,
            compute: None,
            memory: Memory::default(),
            power: Power::default(),
            parity: None,
            quality: None,
            retrieval: None,
            cold_start: None,
            server: None,
            cost: None,
            notes: vec![],
            samples_ms: vec![],
            rounds: vec![],
        }
    }

    /// The per-process sample sets of the run: its rounds when it was merged from several,
    /// else its samples as one.
    pub fn round_samples(&self) -> Vec<&[f64]> {
        let rounds: Vec<&[f64]> = self
            .rounds
            .iter()
            .map(|r| r.samples_ms.as_slice())
            .filter(|s| !s.is_empty())
            .collect();
        if rounds.len() >= 2 {
            rounds
        } else {
            vec![self.samples_ms.as_slice()]
        }
    }
}

impl ResultsFile {
    /// Writes the file atomically (temp file + rename).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        self.updated_utc = now_utc();
        let json = serde_json::to_vec_pretty(self).expect("results serialise");
        write_atomic(path, &json)
    }

    /// Reads a results file, refusing newer schema versions.
    pub fn load(path: &Path) -> Result<ResultsFile> {
        Self::from_text(path, &read_text(path)?)
    }

    /// Parses results text; `path` is used in messages.
    pub fn from_text(path: &Path, text: &str) -> Result<ResultsFile> {
        let text = text.to_string();
        let probe: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| json_error(path, &text, &e, None))?;
        let line = Some(
            text.find("\"schema_version\"")
                .map_or(1, |o| crate::error::line_of(&text, o)),
        );
        match probe.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if v as u32 == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(Error::input(
                    path,
                    line,
                    "schema_version",
                    format!(
                    "version {v} is not supported; this recbench reads version {SCHEMA_VERSION}"
                ),
                ))
            }
            None => {
                return Err(Error::input(
                    path,
                    line,
                    "schema_version",
                    "missing: not a recbench results file",
                ))
            }
        }
        let mut de = serde_json::Deserializer::from_str(&text);
        let mut file: ResultsFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            json_error(path, &text, e.inner(), Some(at))
        })?;
        check(path, &text, &file)?;
        if file.scenario.cost.is_none() {
            file.scenario.cost = Some(CostSettings::from_validated_text(&file.scenario.text));
        }
        Ok(file)
    }
}

/// A JSON error at its line and column, naming the JSON path of the value (`at`, from the
/// typed read) or, for a syntax error, the key on that line.
fn json_error(path: &Path, text: &str, e: &serde_json::Error, at: Option<String>) -> Error {
    let msg = e.to_string();
    let mut msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let field = at
        .filter(|p| !p.is_empty() && p != ".")
        .or_else(|| {
            msg.split('`')
                .nth(1)
                .filter(|_| msg.contains("field"))
                .map(str::to_string)
        })
        .or_else(|| crate::error::json_key_on_line(text, e.line()))
        .unwrap_or_default();
    if let Some(i) = msg.find("expected struct ") {
        msg = format!("{}expected an object", &msg[..i]);
    }
    if e.is_syntax() || e.is_eof() {
        msg = format!("not valid JSON: {msg}");
    }
    Error::input_at(path, e.line(), e.column(), field, msg)
}

/// The checks a typed read cannot make: figures that are finite and in range, rates that are
/// positive, run ids that are unique, timed runs that kept their samples. Each failure names
/// the JSON path of the value and, where it can be found, its line.
fn check(path: &Path, text: &str, f: &ResultsFile) -> Result<()> {
    let mut ids = std::collections::BTreeMap::new();
    for (i, r) in f.runs.iter().enumerate() {
        // Which run of this id this is (a duplicate id is the second).
        let nth = f.runs[..i]
            .iter()
            .filter(|x| x.spec.id == r.spec.id)
            .count();
        let bad = |field: &str, msg: String| {
            let key = field.rsplit('.').next().unwrap_or(field);
            let line = run_line(text, &r.spec.id, nth, key);
            Error::input(path, line, format!("runs[{i}].{field}"), msg)
        };
        if let Some(first) = ids.insert(r.spec.id.as_str(), i) {
            return Err(bad(
                "spec.id",
                format!(
                    "{:?} is also the id of runs[{first}]; run ids are unique",
                    r.spec.id
                ),
            ));
        }
        if let Some(l) = &r.latency {
            let figures = [
                ("p50_ms", l.p50_ms),
                ("p90_ms", l.p90_ms),
                ("p95_ms", l.p95_ms),
                ("p99_ms", l.p99_ms),
                ("p999_ms", l.p999_ms),
                ("mean_ms", l.mean_ms),
                ("std_ms", l.std_ms),
                ("min_ms", l.min_ms),
                ("max_ms", l.max_ms),
            ];
            for (k, v) in figures {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(bad(
                        &format!("latency.{k}"),
                        format!("{v} is not a latency; a finite number of milliseconds >= 0"),
                    ));
                }
            }
            if !(l.min_ms <= l.p50_ms && l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms) {
                return Err(bad(
                    "latency.p99_ms",
                    format!(
                        "min {} <= p50 {} <= p99 {} <= max {} does not hold",
                        l.min_ms, l.p50_ms, l.p99_ms, l.max_ms
                    ),
                ));
            }
        }
        if r.status == Status::Ok {
            if let Some(t) = &r.throughput {
                for (k, v) in [
                    ("requests_per_s", t.requests_per_s),
                    ("sequences_per_s", t.sequences_per_s),
                    ("measured_s", t.measured_s),
                ] {
                    if !(v.is_finite() && v > 0.0) {
                        return Err(bad(
                            &format!("throughput.{k}"),
                            format!("{v} in an ok run; a finite number > 0"),
                        ));
                    }
                }
            }
            if r.latency.is_some() && r.samples_ms.is_empty() {
                return Err(bad(
                    "samples_ms",
                    "empty in an ok timed run; the samples are what compare and the cost \
                     intervals are computed from"
                        .into(),
                ));
            }
        }
        if let Some(p) = &r.parity {
            for (k, v, lo, hi) in [
                ("parity.min_cosine", p.min_cosine, -1.0, 1.0 + 1e-6),
                ("parity.mean_cosine", p.mean_cosine, -1.0, 1.0 + 1e-6),
                ("parity.top10_overlap", p.top10_overlap, 0.0, 1.0),
                ("parity.max_abs_diff", p.max_abs_diff, 0.0, f64::MAX),
            ] {
                if !(v.is_finite() && (lo..=hi).contains(&v)) {
                    return Err(bad(
                        k,
                        format!("{v} is out of range; allowed: {lo} to {hi}"),
                    ));
                }
            }
        }
        if let Some(q) = &r.quality {
            for (k, v, lo, hi) in [
                ("quality.top10_overlap", q.top10_overlap, 0.0, 1.0),
                ("quality.mean_cosine", q.mean_cosine, -1.0, 1.0 + 1e-6),
                (
                    "quality.score_rank_correlation",
                    q.score_rank_correlation,
                    -1.0 - 1e-6,
                    1.0 + 1e-6,
                ),
            ] {
                if !(v.is_finite() && (lo..=hi).contains(&v)) {
                    return Err(bad(
                        k,
                        format!("{v} is out of range; allowed: {lo} to {hi}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The line of `"key"` in the `nth` run whose id is `id` (the first occurrence of the key from
/// the run's start), for messages; `None` when it cannot be found.
fn run_line(text: &str, id: &str, nth: usize, key: &str) -> Option<usize> {
    let id_json = serde_json::to_string(id).ok()?;
    let pattern = format!("\"id\": {id_json}");
    let at = text.match_indices(&pattern).nth(nth)?.0;
    let run_start = text[..at].rfind("\"spec\"").unwrap_or(at);
    let off = text[run_start..]
        .find(&format!("\"{key}\""))
        .map_or(at, |o| run_start + o);
    Some(crate::error::line_of(text, off))
}

/// Current UTC time, RFC 3339 with seconds.
pub fn now_utc() -> String {
    let (y, mo, d, h, mi, s) = utc_parts();
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Compact UTC stamp for file names, e.g. `20261127T235012Z`.
pub fn stamp_utc() -> String {
    let (y, mo, d, h, mi, s) = utc_parts();
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

fn utc_parts() -> (i64, u32, u32, u32, u32, u32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Creates a new, unique results path `<dir>/<scenario>/<utc>-<host>.json`, claiming it with an
/// exclusive create so two sweeps started in the same second never share a file.
pub fn claim_path(dir: &Path, scenario: &str, host: &str) -> Result<PathBuf> {
    let folder = dir.join(scenario);
    std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
    let stamp = stamp_utc();
    for n in 0.. {
        let name = if n == 0 {
            format!("{stamp}-{host}.json")
        } else {
            format!("{stamp}-{host}-{n}.json")
        };
        let path = folder.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    unreachable!()
}

/// The newest results file of `scenario` from `host` in `dir`, for `--resume`.
pub fn latest(dir: &Path, scenario: &str, host: &str) -> Option<PathBuf> {
    let folder = dir.join(scenario);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".json") && !name.starts_with('.') && name.contains(&format!("-{host}"))
        })
        .collect();
    files.sort();
    files.pop()
}

/// Latency distribution of the measured iterations, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub mean_ms: f64,
    pub std_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub count: usize,
    /// Coefficient of variation (std / mean).
    pub cv: f64,
    /// Samples more than 3.5 modified Z-scores (median absolute deviation) from the median.
    pub outliers: usize,
    /// True when cv > 0.10: the machine was noisy or the run too short; rerun on a quiet host
    /// or raise `measure.min_s`.
    pub unstable: bool,
}

/// One probed rate: a point of the latency–throughput curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub offered_qps: f64,
    pub achieved_qps: f64,
    pub completed: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// 95% moving-block bootstrap interval of `p99_ms` over the probe's requests
    /// (`stats::quantile_interval`; absent in files written before it was recorded, and for
    /// probes of fewer than 20 requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_interval_ms: Option<(f64, f64)>,
    pub mean_ms: f64,
    /// Mean time from scheduled arrival to the start of the batch that served the request.
    pub mean_queue_delay_ms: f64,
    pub mean_batch: f64,
    /// p99 of the dispatcher's lateness: batch start minus the moment it should have started.
    pub scheduling_lag_p99_us: f64,
    /// p99 ≤ SLA and achieved within 2% of offered.
    pub meets_sla: bool,
    /// Why the probe stopped before its planned duration, if it did.
    pub early_stop: Option<String>,
    /// Where the requests' time went (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_times: Option<RequestTimes>,
}

/// Where the requests of one probe spent their time, each part as a mean and p99 over the
/// requests. A request's latency is the sum of the three and the dispatcher's lag (the
/// moment between closing a batch and calling the service, microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestTimes {
    /// From its arrival until an instance was free to form a batch (zero when one was).
    pub queued: Spread,
    /// From then until its batch closed: full, or its oldest request at the queue delay.
    pub batch_wait: Spread,
    /// Its batch's service call: encoder, scoring, results back.
    pub compute: Spread,
}

/// Mean and p99 of one part of the requests' time, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean_ms: f64,
    pub p99_ms: f64,
}

/// The result of an operating-point search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerResult {
    pub max_batch: usize,
    pub max_queue_delay_ms: f64,
    pub instances: usize,
    pub sla_p99_ms: f64,
    /// The highest probed rate that met the SLA; `None` when even the lowest did not.
    pub operating_point: Option<CurvePoint>,
    /// Every probed point of the search, in the order probed.
    pub curve: Vec<CurvePoint>,
    /// A second probe at the operating point; the run's latency, throughput and power are
    /// this probe's.
    pub confirmation: Option<CurvePoint>,
}

impl ServerResult {
    /// The search's bracket around the operating point: the lowest probed rate above it that
    /// missed the SLA (`None` without an operating point, or when no rate above it was probed).
    pub fn fail_above(&self) -> Option<f64> {
        let op = self.operating_point.as_ref()?;
        self.curve
            .iter()
            .filter(|c| !c.meets_sla && c.offered_qps > op.offered_qps)
            .map(|c| c.offered_qps)
            .min_by(f64::total_cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efficiency_never_exceeds_one() {
        assert_eq!(Compute::efficiency(50.0, Some(100.0)), (Some(0.5), None));
        let (e, note) = Compute::efficiency(150.0, Some(100.0));
        assert_eq!(e, Some(1.0));
        assert!(note.unwrap().contains("above the measured GEMM ceiling"));
        assert_eq!(Compute::efficiency(1.0, None), (None, None));
        assert_eq!(Compute::efficiency(1.0, Some(f64::NAN)), (None, None));
    }

    /// Files written before the schema recorded the `[cost]` settings (and before the latency
    /// and server records moved into this module) still read, with the same figures.
    #[test]
    fn reference_files_written_before_the_change_still_read() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference");
        for name in [
            "quick/20261128T040112Z-vm.json",
            "server-20261128/20261128T040254Z-vm.json",
        ] {
            let path = root.join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("\"cost\": {\n      \"hardware\""),
                "an old file"
            );
            let f = ResultsFile::from_text(&path, &text).unwrap();
            assert_eq!(
                f.scenario.cost,
                Some(CostSettings {
                    hardware: "auto".into()
                })
            );
            let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
            for (run, raw) in f.runs.iter().zip(raw["runs"].as_array().unwrap()) {
                if let Some(l) = &run.latency {
                    assert_eq!(l.p99_ms, raw["latency"]["p99_ms"].as_f64().unwrap());
                }
                if let Some(s) = &run.server {
                    let op = raw["server"]["operating_point"]["offered_qps"].as_f64();
                    assert_eq!(s.operating_point.as_ref().map(|p| p.offered_qps), op);
                }
            }
        }
        let with = "[cost]\nhardware = \"aws-m7i-large\"\n";
        assert_eq!(
            CostSettings::from_validated_text(with).hardware,
            "aws-m7i-large"
        );
    }

    #[test]
    fn utc_is_well_formed() {
        let t = now_utc();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
        assert_eq!(stamp_utc().len(), 16);
    }

    #[test]
    fn claimed_paths_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let a = claim_path(dir.path(), "s", "h").unwrap();
        let b = claim_path(dir.path(), "s", "h").unwrap();
        assert_ne!(a, b);
        assert_eq!(latest(dir.path(), "s", "h").unwrap(), std::cmp::max(a, b));
    }

    #[test]
    fn future_schema_is_refused_with_exit_code_2() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, r#"{"schema_version": 99}"#).unwrap();
        let e = ResultsFile::load(&p).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("version 99 is not supported"), "{e}");
        std::fs::write(&p, "{\n\"schema_version\": 1,\n").unwrap();
        let e = ResultsFile::load(&p).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{}:3:", p.display())),
            "{e}"
        );
    }
}
