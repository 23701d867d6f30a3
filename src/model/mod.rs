//! The BERT model every backend runs: configuration presets, weights (real all-MiniLM-L6-v2 or
//! seeded synthetic), pruning recipes and the pruned weights they write, the tokenizer, the
//! shared token-batch input and a float64 reference forward used to check the backends, and
//! the ONNX export of the same model.

pub mod bert;
pub mod config;
pub mod inputs;
pub mod onnx;
pub mod prune;
pub mod reference;
pub mod weights;

pub use config::{BertConfig, Preset};
pub use inputs::{TokenBatch, Tokenizer};
pub use prune::Recipe;
pub use weights::ModelFiles;

use std::path::PathBuf;

/// The places recbench looks for its cache, in order: `$RECBENCH_CACHE`; the `.cache` of the
/// repository this binary was built in; the platform cache folder (`$XDG_CACHE_HOME/recbench`,
/// else `~/.cache/recbench`).
pub fn cache_places() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("RECBENCH_CACHE").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut places = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache")];
    match std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        Some(x) => places.push(PathBuf::from(x).join("recbench")),
        None => {
            if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
                places.push(PathBuf::from(home).join(".cache/recbench"));
            }
        }
    }
    places
}

/// Root of recbench's cache, the same from any working directory: the first of
/// [`cache_places`] that exists, else the last (created on first use).
///
/// The set-up script puts the MiniLM package there; synthetic weights, reference embeddings and
/// item embeddings are written there on first use.
pub fn cache_dir() -> PathBuf {
    let places = cache_places();
    places
        .iter()
        .find(|p| p.is_dir())
        .or(places.last())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(".cache"))
}
