//! Scenario files: schema, validation and expansion into runs.
//!
//! A scenario is a TOML file describing a sweep. Parsing is two-step: serde checks structure
//! (unknown keys, missing tables) and keeps the byte span of every value; validation then checks
//! each value and reports `file:line: field `table.key`: what is wrong; what is allowed`.
//! Expansion turns the matrix into [`RunSpec`]s; combinations this build or this design cannot
//! run become skipped runs that carry the reason, never silently dropped.

use std::path::{Path, PathBuf};

use crate::error::{line_of, Result};
use crate::model::weights::DEFAULT_SEED;
use crate::model::{Preset, Recipe};
use crate::util::files::read_text;

mod read;
pub use crate::spec::{
    BackendKind, Device, Index, Load, Mode, Precision, Retrieval, RunSpec, Scoring, SERVER_PROBES,
};
use read::{syntax, Ctx, Measure};

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
    /// `[recommender] catalog_items`: one size or several.
    pub catalog_items: Vec<usize>,
    pub scoring: Scoring,
    /// The retrieval levers of a scenario that sweeps them: every `item_precision` × `index`
    /// (`None`: the scenario names none, and its runs search exactly in fp32 as before).
    pub retrievals: Option<Vec<Retrieval>>,
    /// `[cost] hardware`: the catalog id this host is priced as, or `auto`.
    pub cost_hardware: String,
    /// Its line in the file, for messages.
    pub cost_hardware_line: Option<usize>,
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
        let read::Recommender {
            candidates,
            top_k,
            catalog_items,
            scoring,
            retrievals,
        } = c.recommender(raw.recommender.as_ref(), &modes)?;
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
            retrievals,
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

    /// Every point of the matrix in a fixed order (the last axis fastest), with `auto` threads
    /// resolved and the runs that `host` or this build cannot run marked skipped with the
    /// reason.
    pub fn expand(&self, host: &Host) -> Vec<PlannedRun> {
        let exact = [None];
        let retrievals: Vec<Option<Retrieval>> = match &self.retrievals {
            Some(r) => r.iter().copied().map(Some).collect(),
            None => exact.to_vec(),
        };
        let axes = [
            self.presets.len(),
            self.prunes.len(),
            self.modes.len(),
            self.loads.len(),
            self.backends.len(),
            self.devices.len(),
            self.precisions.len(),
            self.batch.len(),
            self.seq_len.len(),
            self.threads.len(),
            self.catalog_items.len(),
            retrievals.len(),
        ];
        cartesian(&axes)
            .map(|i| {
                let point = Point {
                    model: self.presets[i[0]],
                    prune: &self.prunes[i[1]],
                    mode: self.modes[i[2]],
                    load: self.loads[i[3]],
                    backend: self.backends[i[4]],
                    device: self.devices[i[5]],
                    precision: self.precisions[i[6]],
                    batch: self.batch[i[7]],
                    seq_len: self.seq_len[i[8]],
                    threads: self.threads[i[9]].unwrap_or(host.auto_threads),
                    catalog_items: self.catalog_items[i[10]],
                    retrieval: retrievals[i[11]],
                };
                let spec = self.spec(point);
                let skip = skip_reason(&spec, host);
                PlannedRun { spec, skip }
            })
            .collect()
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
            catalog_items: p.catalog_items,
            scoring: self.scoring,
            retrieval: p.retrieval.filter(|_| p.mode == Mode::TwoTower),
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
    catalog_items: usize,
    retrieval: Option<Retrieval>,
}

/// Every index tuple of axes of these lengths, the last axis fastest (none when an axis is
/// empty).
fn cartesian<const N: usize>(lens: &[usize; N]) -> impl Iterator<Item = [usize; N]> + '_ {
    let total: usize = lens.iter().product();
    (0..total).map(move |mut flat| {
        let mut i = [0; N];
        for a in (0..N).rev() {
            i[a] = flat % lens[a];
            flat /= lens[a];
        }
        i
    })
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

/// Rough memory of a two-tower run's catalog: the fp32 embeddings the worker generates, and for a
/// retrieval sweep the copy its search keeps (at most as large again, with an index's graph
/// or lists: a third more).
pub fn catalog_bytes(spec: &RunSpec, dim: usize) -> f64 {
    if spec.mode != Mode::TwoTower {
        return 0.0;
    }
    let fp32 = spec.catalog_items as f64 * dim as f64 * 4.0;
    match spec.retrieval {
        Some(_) => fp32 * (1.0 + 1.34),
        None => fp32,
    }
}

/// Why a point cannot run in this build or on `host`, if it cannot.
fn skip_reason(spec: &RunSpec, host: &Host) -> Option<String> {
    if let Err(reason) = spec.backend.supports(spec.device, spec.precision) {
        return Some(reason);
    }
    // A forward pass that cannot fit in this machine's memory is skipped in a second rather
    // than failing after minutes of loading, or taking the machine down.
    if let Some(r) = spec.retrieval {
        if let Err(reason) = r.index.available() {
            return Some(reason);
        }
    }
    let seqs = spec.sequences_per_batch();
    let config = spec.model.config();
    let need = activation_bytes(&config, seqs, spec.seq_len);
    let catalog = catalog_bytes(spec, config.hidden_size);
    let gib = |b: f64| b / (1u64 << 30) as f64;
    if let Some(total) = host.memory_bytes.filter(|t| need + catalog > *t as f64) {
        return Some(format!(
            "{seqs} sequences of {} tokens per forward pass need about {:.1} GiB of activations \
             for model {}{}; this machine has {:.1} GiB. Lower batch, candidates, seq_len or \
             catalog_items",
            spec.seq_len,
            gib(need),
            spec.model,
            if catalog > 0.0 {
                format!(
                    " and its catalog of {} items about {:.1} GiB",
                    spec.catalog_items,
                    gib(catalog)
                )
            } else {
                String::new()
            },
            gib(total as f64)
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
mod tests;
