//! One point of a sweep, fully resolved: what a worker runs and a results file records.

use serde::{Deserialize, Serialize};

use super::{BackendKind, Device, Load, Mode, Precision, Preset, Recipe, Retrieval, Scoring};

/// Serde's default for a field that counts from one.
fn one() -> usize {
    1
}

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
    /// The retrieval levers of a scenario that sweeps them (`[recommender] item_precision`,
    /// `index` or a list of `catalog_items`); absent elsewhere: an exact fp32 search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<Retrieval>,
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

    /// Sets `id` from the fields (scenario expansion calls it once every field is set).
    pub fn make_id(&mut self) {
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
        // A retrieval sweep names the catalog size and the levers (ids outside one unchanged).
        if let Some(r) = self.retrieval.filter(|_| self.mode == Mode::TwoTower) {
            id.push_str(&format!(
                "/n{}/{}/{}",
                self.catalog_items, r.item_precision, r.index
            ));
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
