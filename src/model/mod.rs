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
pub mod tensor_file;
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
    places_from(
        std::env::var_os("RECBENCH_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`cache_places`] for these values of `RECBENCH_CACHE`, `XDG_CACHE_HOME` and `HOME` (an
/// empty value counts as unset).
fn places_from(
    recbench_cache: Option<std::ffi::OsString>,
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Vec<PathBuf> {
    let set = |v: Option<std::ffi::OsString>| v.filter(|p| !p.is_empty()).map(PathBuf::from);
    if let Some(p) = set(recbench_cache) {
        return vec![p];
    }
    let mut places = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache")];
    match (set(xdg_cache_home), set(home)) {
        (Some(x), _) => places.push(x.join("recbench")),
        (None, Some(h)) => places.push(h.join(".cache/recbench")),
        (None, None) => {}
    }
    places
}

/// Root of recbench's cache, the same from any working directory: the first of
/// [`cache_places`] that exists, else the last (created on first use).
///
/// The set-up script puts the MiniLM package there; synthetic weights, reference embeddings and
/// item embeddings are written there on first use.
pub fn cache_dir() -> PathBuf {
    first_existing(&cache_places())
}

/// The first of `places` that is a folder, else the last.
fn first_existing(places: &[PathBuf]) -> PathBuf {
    places
        .iter()
        .find(|p| p.is_dir())
        .or(places.last())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup order the README promises: `$RECBENCH_CACHE` alone when set; else the
    /// repository's `.cache`, then `$XDG_CACHE_HOME/recbench`, else `~/.cache/recbench`; empty
    /// variables count as unset; the first place that exists wins, else the last is created.
    #[test]
    fn the_cache_is_looked_up_in_the_promised_order() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache");
        assert_eq!(
            places_from(os("/c"), os("/x"), os("/h")),
            vec![PathBuf::from("/c")]
        );
        assert_eq!(
            places_from(os(""), os("/x"), os("/h")),
            vec![repo.clone(), PathBuf::from("/x/recbench")]
        );
        assert_eq!(
            places_from(None, os(""), os("/h")),
            vec![repo.clone(), PathBuf::from("/h/.cache/recbench")]
        );
        assert_eq!(places_from(None, None, None), vec![repo]);

        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        assert_eq!(first_existing(&[a.clone(), b.clone()]), b, "none exists");
        std::fs::create_dir(&b).unwrap();
        assert_eq!(first_existing(&[a.clone(), b.clone()]), b);
        std::fs::create_dir(&a).unwrap();
        assert_eq!(first_existing(&[a.clone(), b]), a, "the first that exists");
    }
}
