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
