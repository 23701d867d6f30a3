//! Numerical checks of the candle backend against independent references.

use recbench::backend::{self, BackendKind, Device, EncoderOptions, Precision};
use recbench::model::reference::{self, RefWeights};
use recbench::model::{ModelFiles, Preset, Tokenizer};

fn opts(precision: Precision) -> EncoderOptions {
    EncoderOptions {
        device: Device::Cpu,
        precision,
        threads: 2,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    d / (n(a) * n(b))
}

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
    let files = ModelFiles::resolve(Preset::Tiny, recbench::model::weights::DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let batch = tok
        .batch(
            &[
                "a short one",
                "a somewhat longer sentence about films and books, with padding for the other",
            ],
            64,
        )
        .unwrap();
    let mut enc = backend::open(BackendKind::Candle, &files, opts(Precision::Fp32)).unwrap();
    let got = enc.encode(&batch).unwrap();
    let want = reference::forward(
        &files.config,
        &RefWeights::load(&files.weights).unwrap(),
        &batch,
    );
    let mut max = 0.0f64;
    for (i, row) in want.iter().enumerate() {
        for (a, b) in got.row(i).iter().zip(row) {
            max = max.max((*a as f64 - b).abs());
        }
    }
    assert!(max <= 1e-5, "max abs diff {max}");
}
