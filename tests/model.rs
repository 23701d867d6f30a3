//! Numerical checks of the candle backend against independent references.

mod common;

use common::{cosine, opts};
use recbench::backend::{self, BackendKind, Precision};
use recbench::model::{ModelFiles, Preset, Tokenizer};

/// The published similarity of two sentences under all-MiniLM-L6-v2 (sentence-transformers).
#[test]
fn minilm_gives_the_known_cosine() {
    let files = ModelFiles::resolve(Preset::MiniLmL6, 0).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let mut enc = backend::open(BackendKind::Candle, &files, opts(Precision::Fp32)).unwrap();
    let b = tok
        .batch(
            &["A man is eating food.", "A man is eating a piece of bread."],
            256,
        )
        .unwrap();
    let e = enc.encode(&b).unwrap();
    let c = cosine(e.row(0), e.row(1));
    assert!((c - 0.7553).abs() <= 0.001, "cosine {c}");
}

/// candle fp32 against a float64 forward written with plain loops, on padded inputs.
#[test]
fn tiny_matches_the_float64_reference() {
    let max = common::tiny_max_diff_vs_f64_reference(BackendKind::Candle);
    assert!(max <= 1e-5, "max abs diff {max}");
}

/// candle with head pruning (attention narrower than the hidden size) against the float64
/// forward of the same pruned weights.
#[test]
fn tiny_with_pruned_heads_matches_the_float64_reference() {
    let files = ModelFiles::resolve_pruned(
        Preset::Tiny,
        recbench::model::weights::DEFAULT_SEED,
        &recbench::model::Recipe::parse(common::NARROW_ATTENTION).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (files.config.attention_width(), files.config.hidden_size),
        (64, 128)
    );
    let max = common::tiny_max_diff_vs_f64_reference_pruned(
        BackendKind::Candle,
        common::NARROW_ATTENTION,
    );
    assert!(max <= 1e-5, "max abs diff {max}");
}
