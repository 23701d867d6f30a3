//! Scenario files: schema, validation and expansion into runs.
//!
//! A scenario is a TOML file describing a sweep. Parsing is two-step: serde checks structure
//! (unknown keys, missing tables) and keeps the byte span of every value; validation then checks
//! each value and reports `file:line: field `table.key`: what is wrong; what is allowed`.
//! Expansion turns the matrix into [`RunSpec`]s; combinations this build or this design cannot
//! run become skipped runs that carry the reason, never silently dropped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Spanned, Value};

use crate::error::{field_at, line_of, read_text, Error, Result};
use crate::model::weights::DEFAULT_SEED;
use crate::model::{Preset, Recipe};
pub use crate::spec::{BackendKind, Device, Load, Mode, Precision, Scoring};

/// Most probes of one operating-point search (server load).
pub const SERVER_PROBES: usize = 12;

/// One point of the sweep matrix, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Stable identifier of the point, used by `--resume` and `compare` to match runs.
    pub id: String,
    pub backend: BackendKind,
    pub device: Device,
    pub precision: Precision,
    pub model: Preset,
    /// Pruning recipe applied to the model (`full`: none). Absent from files written before
    /// pruning existed, which ran the full model.
    #[serde(default, skip_serializing_if = "Recipe::is_full")]
    pub prune: Recipe,
    pub seed: u64,
    pub mode: Mode,
    pub load: Load,
    /// Requests per forward pass.
    pub batch: usize,
    /// Tokens per sequence (every benchmark sequence is exactly this long).
    pub seq_len: usize,
    pub threads: usize,
    /// Sequences per request in cross-encoder mode (1 in two-tower mode).
    pub candidates: usize,
    pub top_k: usize,
    /// Item embeddings scored per request in two-tower mode.
    pub catalog_items: usize,
    /// Where two-tower scoring runs (results files from before the field: on the host).
    #[serde(default = "Scoring::before_the_field")]
    pub scoring: Scoring,
    pub warmup_s: f64,
    pub min_s: f64,
    pub min_queries: usize,
    pub max_s: f64,
    pub sla_p99_ms: f64,
    /// Server load: longest a request waits for its batch to fill.
    #[serde(default)]
    pub max_queue_delay_ms: f64,
    /// Server load: model instances serving the queue concurrently.
    #[serde(default = "one")]
    pub instances: usize,
    /// Wall-clock limit of the worker process, after which it is killed and the run `failed`.
    pub timeout_s: f64,
}

impl RunSpec {
    /// The longest the run's measurement can take, in seconds: warm-up plus `max_s` (offline,
    /// single-stream), or plus `max_s` for each probe of the operating-point search and the
    /// confirmation probe (server). Loading the model and the parity check come on top.
    pub fn worst_case_s(&self) -> f64 {
        let probes = match self.load {
            Load::Server => SERVER_PROBES as f64 + 1.0,
            _ => 1.0,
        };
        self.warmup_s + probes * self.max_s
    }

    /// Sequences encoded per forward pass.
    pub fn sequences_per_batch(&self) -> usize {
        self.batch * self.candidates
    }

    fn make_id(&mut self) {
        let mut id = format!(
            "{}/{}/{}/{}/{}/{}/b{}/s{}/t{}",
            self.backend,
            self.device,
            self.precision,
            self.model,
            self.mode.name(),
            self.load.name(),
            self.batch,
            self.seq_len,
            self.threads
        );
        if self.mode == Mode::CrossEncoder {
            id.push_str(&format!("/c{}", self.candidates));
        }
        // Only pruned runs carry the recipe, so the ids of full-model runs (and the baselines
        // that `compare` matches them against) stay as they were.
        if !self.prune.is_full() {
            id.push_str(&format!("/p{}", self.prune));
        }
        // Host scoring is the exception since device scoring came (ids of device runs stay in
        // the older form; a run of a file from before says `scoring: host` in its spec).
        if self.mode == Mode::TwoTower && self.scoring == Scoring::Host {
            id.push_str("/host-scoring");
        }
        if self.load == Load::Server {
            id.push_str(&format!(
                "/d{}/i{}",
                self.max_queue_delay_ms, self.instances
            ));
        }
        self.id = id;
    }
}

fn one() -> usize {
    1
}

/// What of the host that plans a sweep decides which runs it can run: validation never looks
/// at the host, so a scenario gets the same verdict on every machine.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Threads of an `auto` thread count (the physical cores).
    pub auto_threads: usize,
    /// Memory, when known: a forward pass that cannot fit is skipped with the reason.
    pub memory_bytes: Option<u64>,
}

/// A run of the sweep, or a combination that will not run and why.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub spec: RunSpec,
    pub skip: Option<String>,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub path: PathBuf,
    /// The file as written, recorded verbatim in results.
    pub text: String,
    pub name: String,
    pub description: String,
    pub presets: Vec<Preset>,
    /// `[model] prune`: the pruning recipes, each applied to every preset (default `full`).
    pub prunes: Vec<Recipe>,
    pub seed: u64,
    pub modes: Vec<Mode>,
    pub batch: Vec<usize>,
    pub seq_len: Vec<usize>,
    pub precisions: Vec<Precision>,
    pub backends: Vec<BackendKind>,
    pub devices: Vec<Device>,
    /// Thread counts; `None` means "auto" (physical cores).
    pub threads: Vec<Option<usize>>,
    pub warmup_s: f64,
    pub min_s: f64,
    pub min_queries: usize,
    pub max_s: f64,
    pub timeout_s: Option<f64>,
    pub loads: Vec<Load>,
    pub sla_p99_ms: f64,
    pub max_queue_delay_ms: f64,
    pub instances: usize,
    pub candidates: usize,
    pub top_k: usize,
    pub catalog_items: usize,
    pub scoring: Scoring,
    /// `[cost] hardware`: the catalog id this host is priced as, or `auto`.
    pub cost_hardware: String,
    /// Its line in the file, for messages.
    pub cost_hardware_line: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Spanned<Value>,
    description: Option<Spanned<Value>>,
    model: RawModel,
    workload: RawWorkload,
    matrix: RawMatrix,
    measure: Option<RawMeasure>,
    recommender: Option<RawRecommender>,
    cost: Option<RawCost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    presets: Spanned<Value>,
    seed: Option<Spanned<Value>>,
    prune: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    mode: Spanned<Value>,
    batch: Spanned<Value>,
    seq_len: Spanned<Value>,
    precision: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    backends: Spanned<Value>,
    devices: Option<Spanned<Value>>,
    threads: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasure {
    warmup_s: Option<Spanned<Value>>,
    min_s: Option<Spanned<Value>>,
    min_queries: Option<Spanned<Value>>,
    max_s: Option<Spanned<Value>>,
    timeout_s: Option<Spanned<Value>>,
    load: Option<Spanned<Value>>,
    sla_p99_ms: Option<Spanned<Value>>,
    max_queue_delay_ms: Option<Spanned<Value>>,
    instances: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecommender {
    candidates: Option<Spanned<Value>>,
    top_k: Option<Spanned<Value>>,
    catalog_items: Option<Spanned<Value>>,
    scoring: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCost {
    hardware: Option<Spanned<Value>>,
}

/// Reads values out of the raw tree with errors that name file, line and field.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, v: &Spanned<Value>, field: &str, msg: impl Into<String>) -> Error {
        Error::input(
            self.path,
            Some(line_of(self.text, v.span().start)),
            field,
            msg,
        )
    }

    fn describe(v: &Value) -> String {
        match v {
            Value::String(s) => format!("string {s:?}"),
            Value::Integer(i) => format!("integer {i}"),
            Value::Float(f) => format!("float {f}"),
            Value::Boolean(b) => format!("boolean {b}"),
            Value::Datetime(d) => format!("date {d}"),
            Value::Array(_) => "a list".into(),
            Value::Table(_) => "a table".into(),
        }
    }

    /// A scalar or a list of scalars, as a non-empty list without duplicates.
    fn list<'v>(&self, v: &'v Spanned<Value>, field: &str, what: &str) -> Result<Vec<&'v Value>> {
        let items: Vec<&Value> = match v.get_ref() {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        if items.is_empty() {
            return Err(self.err(
                v,
                field,
                format!("the list is empty; give at least one {what}"),
            ));
        }
        Ok(items)
    }

    fn strings(&self, v: &Spanned<Value>, field: &str, allowed: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for item in self.list(v, field, "value")? {
            match item {
                Value::String(s) => {
                    if out.contains(s) {
                        return Err(self.err(v, field, format!("{s:?} is listed twice")));
                    }
                    out.push(s.clone())
                }
                other => {
                    return Err(self.err(
                        v,
                        field,
                        format!(
                            "expected a string or a list of strings ({allowed}), found {}",
                            Self::describe(other)
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn parse_each<T>(
        &self,
        v: &Spanned<Value>,
        field: &str,
        allowed: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.strings(v, field, allowed)?
            .into_iter()
            .map(|s| {
                parse(&s).ok_or_else(|| {
                    self.err(v, field, format!("unknown value {s:?}; allowed: {allowed}"))
                })
            })
            .collect()
    }

    fn ints(&self, v: &Spanned<Value>, field: &str, min: i64, max: i64) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for item in self.list(v, field, "number")? {
            let n = self.int_value(v, item, field, min, max)?;
            if out.contains(&n) {
                return Err(self.err(v, field, format!("{n} is listed twice")));
            }
            out.push(n);
        }
        Ok(out)
    }

    fn int_value(
        &self,
        v: &Spanned<Value>,
        item: &Value,
        field: &str,
        min: i64,
        max: i64,
    ) -> Result<usize> {
        match item {
            Value::Integer(n) if (min..=max).contains(n) => Ok(*n as usize),
            Value::Integer(n) => Err(self.err(
                v,
                field,
                format!("{n} is out of range; allowed: {min} to {max}"),
            )),
            other => Err(self.err(
                v,
                field,
                format!(
                    "expected a whole number from {min} to {max}, found {}",
                    Self::describe(other)
                ),
            )),
        }
    }

    fn int(
        &self,
        v: Option<&Spanned<Value>>,
        field: &str,
        min: i64,
        max: i64,
        default: usize,
    ) -> Result<usize> {
        match v {
            None => Ok(default),
            Some(v) => self.int_value(v, v.get_ref(), field, min, max),
        }
    }

    fn float(
        &self,
        v: Option<&Spanned<Value>>,
        field: &str,
        min: f64,
        max: f64,
        default: f64,
    ) -> Result<f64> {
        let Some(v) = v else { return Ok(default) };
        let x = match v.get_ref() {
            Value::Integer(n) => *n as f64,
            Value::Float(f) => *f,
            other => {
                return Err(self.err(
                    v,
                    field,
                    format!(
                        "expected a number of seconds or milliseconds, found {}",
                        Self::describe(other)
                    ),
                ))
            }
        };
        if !x.is_finite() || x < min || x > max {
            return Err(self.err(
                v,
                field,
                format!("{x} is out of range; allowed: {min} to {max}"),
            ));
        }
        Ok(x)
    }

    fn string(&self, v: Option<&Spanned<Value>>, field: &str, default: &str) -> Result<String> {
        match v {
            None => Ok(default.to_string()),
            Some(v) => match v.get_ref() {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.err(
                    v,
                    field,
                    format!("expected a string, found {}", Self::describe(other)),
                )),
            },
        }
    }
}

impl Ctx<'_> {
    /// The scenario's name (it names the results folder) and description.
    fn naming(&self, raw: &Raw) -> Result<(String, String)> {
        let c = self;
        let name = c.string(Some(&raw.name), "name", "")?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            || name.starts_with('.')
        {
            return Err(c.err(
                &raw.name,
                "name",
                format!("{name:?} is not allowed; use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.' (it names the results folder)"),
            ));
        }
        let description = c.string(raw.description.as_ref(), "description", "")?;
        Ok((name, description))
    }

    /// `[model]` and `[workload]`: the model presets and the request shapes.
    #[allow(clippy::type_complexity)]
    fn workload(
        &self,
        raw: &Raw,
    ) -> Result<(
        Vec<Preset>,
        Vec<Recipe>,
        u64,
        Vec<Mode>,
        Vec<usize>,
        Vec<usize>,
        Vec<Precision>,
    )> {
        let c = self;
        let presets = c.parse_each(
            &raw.model.presets,
            "model.presets",
            &Preset::allowed(),
            Preset::parse,
        )?;
        let prunes = match &raw.model.prune {
            None => vec![Recipe::default()],
            Some(v) => {
                let mut out: Vec<Recipe> = Vec::new();
                for name in c.strings(v, "model.prune", crate::model::prune::ALLOWED)? {
                    let r = Recipe::parse(&name)
                        .map_err(|why| c.err(v, "model.prune", format!("unknown recipe {why}")))?;
                    for p in &presets {
                        r.apply(&p.config()).map_err(|why| {
                            c.err(v, "model.prune", format!("{name:?} on model {p}: {why}"))
                        })?;
                    }
                    if out.contains(&r) {
                        return Err(c.err(
                            v,
                            "model.prune",
                            format!("{name:?} is listed twice (as {r})"),
                        ));
                    }
                    out.push(r);
                }
                out
            }
        };
        let seed = c.int(
            raw.model.seed.as_ref(),
            "model.seed",
            0,
            i64::MAX,
            DEFAULT_SEED as usize,
        )? as u64;

        let w = &raw.workload;
        let modes = c.parse_each(&w.mode, "workload.mode", &Mode::allowed(), Mode::parse)?;
        let batch = c.ints(&w.batch, "workload.batch", 1, 4096)?;
        let seq_len = c.ints(&w.seq_len, "workload.seq_len", 8, 512)?;
        let precisions = match &w.precision {
            Some(v) => c.parse_each(
                v,
                "workload.precision",
                &Precision::allowed(),
                Precision::parse,
            )?,
            None => vec![Precision::Fp32],
        };

        Ok((presets, prunes, seed, modes, batch, seq_len, precisions))
    }

    /// `[matrix]`: backends, devices and thread counts.
    #[allow(clippy::type_complexity)]
    fn matrix(&self, m: &RawMatrix) -> Result<(Vec<BackendKind>, Vec<Device>, Vec<Option<usize>>)> {
        let c = self;
        let backends = c.parse_each(
            &m.backends,
            "matrix.backends",
            &BackendKind::allowed(),
            BackendKind::parse,
        )?;
        let devices = match &m.devices {
            Some(v) => c.parse_each(v, "matrix.devices", Device::ALLOWED, Device::parse)?,
            None => vec![Device::Cpu],
        };
        let threads = match &m.threads {
            None => vec![None],
            Some(v) => {
                let mut out = Vec::new();
                for item in c.list(v, "matrix.threads", "thread count")? {
                    match item {
                        Value::String(s) if s == "auto" => out.push(None),
                        Value::Integer(_) => {
                            out.push(Some(c.int_value(v, item, "matrix.threads", 1, 1024)?))
                        }
                        other => {
                            return Err(c.err(
                                v,
                                "matrix.threads",
                                format!(
                                    "expected \"auto\" or a thread count from 1 to 1024, found {}",
                                    Ctx::describe(other)
                                ),
                            ))
                        }
                    }
                }
                let unique: BTreeSet<_> = out.iter().collect();
                if unique.len() != out.len() {
                    return Err(c.err(v, "matrix.threads", "a thread count is listed twice"));
                }
                out
            }
        };

        Ok((backends, devices, threads))
    }

    /// `[measure]`: durations, loads and the server settings.
    fn measure(&self, meas: Option<&RawMeasure>) -> Result<Measure> {
        let c = self;
        let get = |f: fn(&RawMeasure) -> &Option<Spanned<Value>>| meas.and_then(|m| f(m).as_ref());
        let warmup_s = c.float(get(|m| &m.warmup_s), "measure.warmup_s", 0.0, 3600.0, 2.0)?;
        let min_s = c.float(get(|m| &m.min_s), "measure.min_s", 0.001, 86_400.0, 10.0)?;
        let min_queries = c.int(
            get(|m| &m.min_queries),
            "measure.min_queries",
            1,
            100_000_000,
            200,
        )?;
        let max_s = c.float(
            get(|m| &m.max_s),
            "measure.max_s",
            0.001,
            86_400.0,
            60.0_f64.max(min_s),
        )?;
        if max_s < min_s {
            let v = get(|m| &m.max_s).expect("max_s below min_s means it was given");
            return Err(c.err(
                v,
                "measure.max_s",
                format!("{max_s} is below measure.min_s = {min_s}; max_s must be at least min_s"),
            ));
        }
        let timeout_s = match get(|m| &m.timeout_s) {
            None => None,
            Some(v) => Some(c.float(Some(v), "measure.timeout_s", 1.0, 7.0 * 86_400.0, 0.0)?),
        };
        let loads = match get(|m| &m.load) {
            None => vec![Load::Offline],
            Some(v) => c.parse_each(v, "measure.load", &Load::allowed(), Load::parse)?,
        };
        let sla_p99_ms = c.float(
            get(|m| &m.sla_p99_ms),
            "measure.sla_p99_ms",
            0.001,
            3_600_000.0,
            50.0,
        )?;

        let max_queue_delay_ms = c.float(
            get(|m| &m.max_queue_delay_ms),
            "measure.max_queue_delay_ms",
            0.0,
            60_000.0,
            2.0,
        )?;
        let instances = c.int(get(|m| &m.instances), "measure.instances", 1, 64, 1)?;
        Ok(Measure {
            warmup_s,
            min_s,
            min_queries,
            max_s,
            timeout_s,
            loads,
            sla_p99_ms,
            max_queue_delay_ms,
            instances,
        })
    }

    /// `[recommender]`: candidates, top-k and catalog size, and how they bound each other.
    fn recommender(
        &self,
        rec: Option<&RawRecommender>,
        modes: &[Mode],
    ) -> Result<(usize, usize, usize, Scoring)> {
        let c = self;
        let candidates = c.int(
            rec.and_then(|r| r.candidates.as_ref()),
            "recommender.candidates",
            1,
            10_000,
            100,
        )?;
        let top_k = c.int(
            rec.and_then(|r| r.top_k.as_ref()),
            "recommender.top_k",
            1,
            10_000,
            10,
        )?;
        let catalog_items = c.int(
            rec.and_then(|r| r.catalog_items.as_ref()),
            "recommender.catalog_items",
            1,
            10_000_000,
            100_000,
        )?;
        if let Some(v) = rec.and_then(|r| r.top_k.as_ref()) {
            if modes.contains(&Mode::CrossEncoder) && top_k > candidates {
                return Err(c.err(v, "recommender.top_k", format!("{top_k} is more than recommender.candidates = {candidates}; a cross-encoder request can return at most its candidates")));
            }
            if top_k > catalog_items {
                return Err(c.err(
                    v,
                    "recommender.top_k",
                    format!("{top_k} is more than recommender.catalog_items = {catalog_items}"),
                ));
            }
        }

        let scoring_v = rec.and_then(|r| r.scoring.as_ref());
        let scoring_s = c.string(scoring_v, "recommender.scoring", "device")?;
        let scoring = Scoring::parse(&scoring_s).ok_or_else(|| {
            c.err(
                scoring_v.expect("a default parses"),
                "recommender.scoring",
                format!("unknown value {scoring_s:?}; allowed: device, host"),
            )
        })?;
        Ok((candidates, top_k, catalog_items, scoring))
    }
}

/// The validated `[measure]` table.
struct Measure {
    warmup_s: f64,
    min_s: f64,
    min_queries: usize,
    max_s: f64,
    timeout_s: Option<f64>,
    loads: Vec<Load>,
    sla_p99_ms: f64,
    max_queue_delay_ms: f64,
    instances: usize,
}

/// Step 1, syntax and types: serde checks the structure (unknown keys, missing tables) and keeps
/// the span of every value; its messages are reworded to name the field.
fn syntax(path: &Path, text: &str) -> Result<Raw> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        let mut msg = e.message().trim().to_string();
        let mut field = offset.map(|o| field_at(text, o)).unwrap_or_default();
        // "missing field `x`" points at the table (or the whole file); name the missing key.
        if let Some(name) = msg
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let table = offset
                .and_then(|o| text[o..].lines().next())
                .map(str::trim)
                .filter(|l| l.starts_with('[') && l.ends_with(']'))
                .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            field = match table {
                Some(t) => format!("{t}.{name}"),
                None if field.contains('.') => {
                    format!("{}.{name}", field.rsplit_once('.').unwrap().0)
                }
                None => name.to_string(),
            };
        }
        // serde's wording names internal types; say what the file should hold instead.
        if let Some(i) = msg.find("expected struct Raw") {
            msg = format!("{}expected a table", &msg[..i]);
        }
        if msg.contains("as i128") {
            msg = "this number is too large for any field".into();
        }
        Error::input(path, offset.map(|o| line_of(text, o)), field, msg)
    })
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text = read_text(path)?;
        Self::parse(path, &text)
    }

    /// Validates scenario text; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario> {
        let raw = syntax(path, text)?;
        // Step 2, values and ranges, table by table; step 3, the rules across fields (within
        // each step: max_s ≥ min_s, top_k ≤ candidates and catalog_items). Expansion is `expand`.
        let c = Ctx { path, text };
        let (name, description) = c.naming(&raw)?;
        let (presets, prunes, seed, modes, batch, seq_len, precisions) = c.workload(&raw)?;
        let (backends, devices, threads) = c.matrix(&raw.matrix)?;
        let Measure {
            warmup_s,
            min_s,
            min_queries,
            max_s,
            timeout_s,
            loads,
            sla_p99_ms,
            max_queue_delay_ms,
            instances,
        } = c.measure(raw.measure.as_ref())?;
        let (candidates, top_k, catalog_items, scoring) =
            c.recommender(raw.recommender.as_ref(), &modes)?;
        let hardware = raw.cost.as_ref().and_then(|x| x.hardware.as_ref());
        let cost_hardware = c.string(hardware, "cost.hardware", "auto")?;
        if let Some(v) = hardware {
            let id_chars = |ch: char| ch.is_ascii_alphanumeric() || "-_.".contains(ch);
            if cost_hardware.is_empty()
                || cost_hardware.starts_with('.')
                || !cost_hardware.chars().all(id_chars)
            {
                return Err(c.err(
                    v,
                    "cost.hardware",
                    format!(
                        "{cost_hardware:?} is not a catalog id; use \"auto\" or an id of \
                         letters, digits, '-', '_' or '.'"
                    ),
                ));
            }
        }
        let cost_hardware_line = hardware.map(|v| line_of(text, v.span().start));

        Ok(Scenario {
            path: path.to_path_buf(),
            text: text.to_string(),
            name,
            description,
            presets,
            prunes,
            seed,
            modes,
            batch,
            seq_len,
            precisions,
            backends,
            devices,
            threads,
            warmup_s,
            min_s,
            min_queries,
            max_s,
            timeout_s,
            loads,
            sla_p99_ms,
            max_queue_delay_ms,
            instances,
            candidates,
            top_k,
            catalog_items,
            scoring,
            cost_hardware,
            cost_hardware_line,
        })
    }

    /// Shrinks durations for CI smoke runs (`--quick`).
    pub fn quick(&mut self) {
        self.warmup_s = self.warmup_s.min(0.5);
        self.min_s = self.min_s.min(1.0);
        self.min_queries = self.min_queries.min(10);
        self.max_s = self.max_s.min(5.0).max(self.min_s);
    }

    /// Every point of the matrix in a fixed order, with `auto` threads resolved and the runs
    /// that `host` or this build cannot run marked skipped with the reason.
    pub fn expand(&self, host: &Host) -> Vec<PlannedRun> {
        let mut out = Vec::new();
        for (model, prune) in self
            .presets
            .iter()
            .flat_map(|&m| self.prunes.iter().map(move |p| (m, p)))
        {
            for &mode in &self.modes {
                for &load in &self.loads {
                    for &backend in &self.backends {
                        for &device in &self.devices {
                            for &precision in &self.precisions {
                                for &batch in &self.batch {
                                    for &seq_len in &self.seq_len {
                                        for &threads in &self.threads {
                                            let point = Point {
                                                model,
                                                prune,
                                                mode,
                                                load,
                                                backend,
                                                device,
                                                precision,
                                                batch,
                                                seq_len,
                                                threads: threads.unwrap_or(host.auto_threads),
                                            };
                                            let spec = self.spec(point);
                                            let skip = skip_reason(&spec, host);
                                            out.push(PlannedRun { spec, skip });
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn spec(&self, p: Point<'_>) -> RunSpec {
        let per_run_s = if p.load == Load::Server {
            // The search, a confirmation probe, and slack.
            (SERVER_PROBES as f64 + 3.0) * self.max_s
        } else {
            2.0 * self.max_s
        };
        let mut spec = RunSpec {
            id: String::new(),
            backend: p.backend,
            device: p.device,
            precision: p.precision,
            model: p.model,
            prune: p.prune.clone(),
            seed: self.seed,
            mode: p.mode,
            load: p.load,
            batch: p.batch,
            seq_len: p.seq_len,
            threads: p.threads,
            candidates: match p.mode {
                Mode::TwoTower => 1,
                Mode::CrossEncoder => self.candidates,
            },
            top_k: self.top_k,
            catalog_items: self.catalog_items,
            scoring: self.scoring,
            warmup_s: self.warmup_s,
            min_s: self.min_s,
            min_queries: self.min_queries,
            max_s: self.max_s,
            sla_p99_ms: self.sla_p99_ms,
            max_queue_delay_ms: self.max_queue_delay_ms,
            instances: self.instances,
            timeout_s: self.timeout_s.unwrap_or(self.warmup_s + per_run_s + 600.0),
        };
        spec.make_id();
        spec
    }
}

/// One combination of the matrix axes.
#[derive(Clone, Copy)]
struct Point<'a> {
    model: Preset,
    prune: &'a Recipe,
    mode: Mode,
    load: Load,
    backend: BackendKind,
    device: Device,
    precision: Precision,
    batch: usize,
    seq_len: usize,
    threads: usize,
}

/// Rough peak activation memory of one forward pass of `seqs` sequences of `s` tokens, in
/// bytes: the attention scores and probabilities (f32) of one layer plus its hidden states.
pub fn activation_bytes(c: &crate::model::BertConfig, seqs: usize, s: usize) -> f64 {
    let (h, i, nh) = (
        c.hidden_size as f64,
        c.intermediate_size as f64,
        c.num_heads as f64,
    );
    let s = s as f64;
    seqs as f64 * (2.0 * nh * s * s + s * (6.0 * h + 2.0 * i)) * 4.0
}

/// Why a point cannot run in this build or on `host`, if it cannot.
fn skip_reason(spec: &RunSpec, host: &Host) -> Option<String> {
    if let Err(reason) = spec.backend.supports(spec.device, spec.precision) {
        return Some(reason);
    }
    // A forward pass that cannot fit in this machine's memory is skipped in a second rather
    // than failing after minutes of loading, or taking the machine down.
    let seqs = spec.sequences_per_batch();
    let need = activation_bytes(&spec.model.config(), seqs, spec.seq_len);
    if let Some(total) = host.memory_bytes.filter(|t| need > *t as f64) {
        return Some(format!(
            "{seqs} sequences of {} tokens per forward pass need about {:.1} GiB of activations \
             for model {}; this machine has {:.1} GiB. Lower batch, candidates or seq_len",
            spec.seq_len,
            need / (1u64 << 30) as f64,
            spec.model,
            total as f64 / (1u64 << 30) as f64
        ));
    }
    if spec.load == Load::SingleStream && spec.batch != 1 {
        return Some(format!(
            "single-stream load issues one request at a time; batch {} does not apply (use batch = 1)",
            spec.batch
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
[model]
presets = ["tiny", "minilm-l6"]
[workload]
mode = ["two-tower", "cross-encoder"]
batch = [1, 8]
seq_len = 64
precision = ["fp32", "int8"]
[matrix]
backends = ["candle", "onnx"]
threads = 2
[measure]
load = ["offline", "single-stream"]
[recommender]
candidates = 16
"#;

    const HOST: Host = Host {
        auto_threads: 4,
        memory_bytes: None,
    };

    fn parse(text: &str) -> Result<Scenario> {
        Scenario::parse(Path::new("s.toml"), text)
    }

    #[test]
    fn a_batch_above_the_hosts_memory_is_valid_input_and_a_skipped_run() {
        let text = GOOD.replace("batch = [1, 8]", "batch = [1, 4096]");
        let s = parse(&text).expect("the same verdict on every machine");
        let small = Host {
            auto_threads: 2,
            memory_bytes: Some(1 << 30),
        };
        let runs = s.expand(&small);
        let big = runs
            .iter()
            .find(|r| r.spec.batch == 4096 && r.spec.mode == Mode::CrossEncoder)
            .unwrap();
        let why = big.skip.as_deref().unwrap();
        assert!(why.contains("GiB of activations") && why.contains("this machine has 1.0 GiB"));
        let fits = runs
            .iter()
            .find(|r| r.spec.batch == 1 && r.spec.backend == BackendKind::Candle)
            .unwrap();
        assert_eq!(fits.skip, None);
        assert!(s.expand(&HOST).iter().all(|r| !r
            .skip
            .as_deref()
            .unwrap_or("")
            .contains("activations")));
    }

    #[test]
    fn expands_the_full_matrix_with_reasons_for_skips() {
        let s = parse(GOOD).unwrap();
        let runs = s.expand(&HOST);
        assert_eq!(runs.len(), 2 * 2 * 2 * 2 * 2 * 2);
        let ss_b8 = runs
            .iter()
            .find(|r| {
                r.spec.load == Load::SingleStream
                    && r.spec.batch == 8
                    && r.spec.backend == BackendKind::Candle
            })
            .unwrap();
        assert!(ss_b8
            .skip
            .as_deref()
            .unwrap()
            .contains("one request at a time"));
        if !cfg!(feature = "onnx") {
            let onnx = runs
                .iter()
                .find(|r| r.spec.backend == BackendKind::Onnx)
                .unwrap();
            assert!(onnx
                .skip
                .as_deref()
                .unwrap()
                .contains("rebuild with --features onnx"));
        }
        let ids: BTreeSet<_> = runs.iter().map(|r| r.spec.id.clone()).collect();
        assert_eq!(ids.len(), runs.len(), "ids are unique");
        let cross = runs
            .iter()
            .find(|r| r.spec.mode == Mode::CrossEncoder)
            .unwrap();
        assert_eq!(cross.spec.candidates, 16);
        assert_eq!(cross.spec.threads, 2);
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        e.to_string()
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let t = GOOD.replace("batch = [1, 8]", "batch = [1, 0]");
        assert_eq!(
            err(&t),
            "s.toml:7: field `workload.batch`: 0 is out of range; allowed: 1 to 4096"
        );
        let t = GOOD.replace("seq_len = 64", "seq_len = 1024");
        assert!(err(&t).starts_with("s.toml:8: field `workload.seq_len`: 1024 is out of range"));
        let t = GOOD.replace("\"onnx\"]", "\"tensorrt\"]");
        assert_eq!(
            err(&t),
            "s.toml:11: field `matrix.backends`: unknown value \"tensorrt\"; allowed: candle, onnx, torch"
        );
        let t = GOOD.replace("\"minilm-l6\"", "\"gpt\"");
        assert!(err(&t)
            .contains("s.toml:4: field `model.presets`: unknown value \"gpt\"; allowed: tiny"));
        let t = GOOD.replace("threads = 2", "threads = \"many\"");
        assert!(err(&t).starts_with("s.toml:12: field `matrix.threads`: expected \"auto\""));
        let t = GOOD.replace("batch = [1, 8]", "batch = []");
        assert!(err(&t).contains("field `workload.batch`: the list is empty"));
        let t = GOOD.replace("batch = [1, 8]", "batch = [8, 8]");
        assert!(err(&t).contains("8 is listed twice"));
        let t = GOOD.replace("name = \"t\"", "name = \"../escape\"");
        assert!(err(&t).starts_with("s.toml:2: field `name`"));
    }

    #[test]
    fn structural_errors_name_line_and_field() {
        let t = GOOD.replace("seq_len = 64", "seq_len = 64\nbatchsize = 3");
        let e = err(&t);
        assert!(
            e.starts_with("s.toml:9: field `workload.batchsize`: unknown field `batchsize`"),
            "{e}"
        );
        let t = GOOD.replace("presets = [\"tiny\", \"minilm-l6\"]", "seed = 1");
        let e = err(&t);
        assert!(
            e.contains("field `model.presets`") && e.contains("missing field `presets`"),
            "{e}"
        );
        let e = err("name = \"x\"\n[model\n");
        assert!(e.starts_with("s.toml:2:"), "{e}");
    }

    #[test]
    fn prune_recipes_expand_and_bad_ones_name_line_and_field() {
        let t = GOOD.replace(
            "presets = [\"tiny\", \"minilm-l6\"]",
            "presets = [\"tiny\", \"minilm-l6\"]\nprune = [\"full\", \"drop-heads-50\"]",
        );
        let s = parse(&t).unwrap();
        let runs = s.expand(&HOST);
        assert_eq!(runs.len(), 2 * 2 * 2 * 2 * 2 * 2 * 2);
        let pruned: Vec<_> = runs.iter().filter(|r| !r.spec.prune.is_full()).collect();
        assert_eq!(pruned.len(), runs.len() / 2);
        assert!(pruned
            .iter()
            .all(|r| r.spec.id.ends_with("/pdrop-heads-50")));
        // Full-model runs keep the ids they had before pruning existed.
        assert!(runs
            .iter()
            .any(|r| r.spec.id == "candle/cpu/fp32/tiny/two-tower/offline/b1/s64/t2"));

        let bad = |recipes: &str| {
            GOOD.replace(
                "presets = [\"tiny\", \"minilm-l6\"]",
                &format!("presets = [\"tiny\", \"minilm-l6\"]\nprune = {recipes}"),
            )
        };
        let e = err(&bad("[\"full\", \"half\"]"));
        assert!(
            e.starts_with("s.toml:5: field `model.prune`: unknown recipe \"half\": unknown step"),
            "{e}"
        );
        assert!(e.contains("allowed: \"full\""), "{e}");
        // tiny has 2 layers, MiniLM 6: keeping 4 is too many for tiny.
        let e = err(&bad("\"keep-layers-4\""));
        assert_eq!(
            e,
            "s.toml:5: field `model.prune`: \"keep-layers-4\" on model tiny: keep-layers-4 \
             keeps more layers than the model has (2)"
        );
        let e = err(&bad(
            "[\"drop-ffn-50+keep-layers-1\", \"keep-layers-1+drop-ffn-50\"]",
        ));
        assert!(e.contains("is listed twice"), "{e}");
    }

    #[test]
    fn max_below_min_is_rejected() {
        let t = GOOD.replace("[measure]", "[measure]\nmin_s = 10\nmax_s = 5");
        assert!(err(&t).contains("field `measure.max_s`: 5 is below measure.min_s = 10"));
    }
}
