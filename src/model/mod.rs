//! The BERT model every backend runs: configuration presets, weights (real all-MiniLM-L6-v2 or
//! seeded synthetic), the tokenizer, the shared token-batch input and a float64 reference
//! forward used to check the backends, and the ONNX export of the same model.

pub mod bert;
pub mod config;
pub mod inputs;
pub mod onnx;
pub mod reference;
pub mod weights;

pub use config::{BertConfig, Preset};
pub use inputs::{TokenBatch, Tokenizer};
pub use weights::ModelFiles;

use std::path::PathBuf;

/// Root of recbench's cache: `$RECBENCH_CACHE`, else `.cache` in the current directory.
///
/// The setup script puts the MiniLM package here; synthetic weights, reference embeddings and
/// item embeddings are written here on first use.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("RECBENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache"))
}
