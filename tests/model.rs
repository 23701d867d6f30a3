//! Numerical checks of the candle backend against independent references.

mod common;

use common::{cosine, opts};
use recbench::backend::{self, BackendKind, Precision};
use recbench::model::{ModelFiles, Preset, Tokenizer};

/// The published similarity of two sentences under all-MiniLM-L6-v2 (sentence-transformers).
#[test]
fn minilm_gives_the_known_cosine() {
    common::isolate();
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
    common::isolate();
    let max = common::tiny_max_diff_vs_f64_reference(BackendKind::Candle);
    assert!(max <= 1e-5, "max abs diff {max}");
}

/// MiniLM, and three sentences of different lengths padded to 48 tokens (the mask matters).
fn minilm_three_sentences() -> (ModelFiles, recbench::model::TokenBatch) {
    let files = ModelFiles::resolve(Preset::MiniLmL6, 0).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let b = tok
        .batch(
            &[
                "A man is eating food.",
                "Science fiction novels about first contact with an alien civilisation, told \
                 from the point of view of the linguists who have to make sense of it.",
                "Jazz.",
            ],
            48,
        )
        .unwrap();
    (files, b)
}

/// int8 layers whose inner size is padded with zeros to whole 256-value superblocks (where
/// candle's int8 kernel on VNNI tiles applies; MiniLM's 384 becomes 512, 1536 stays) compute
/// what candle's Q8_0 block dot products compute, to int8 rounding (tiles quantize the
/// activations in 256-value blocks, blocks in 32-value ones); the notes and the cache tag say
/// which ran. Forced both ways, so it holds on a host where either would lose the race.
#[test]
fn candle_int8_tiles_match_blocks_on_minilm() {
    common::isolate();
    use recbench::backend::candle::CandleBert;
    use recbench::backend::Encoder;
    let (files, b) = minilm_three_sentences();
    let o = opts(Precision::Int8);
    let mut blocks = CandleBert::load_forced(&files, o, Some(true), Some(false)).unwrap();
    let mut tiles = CandleBert::load_forced(&files, o, Some(true), Some(true)).unwrap();
    assert_eq!(blocks.cache_tag().as_deref(), Some("fused"));
    assert_eq!(tiles.cache_tag().as_deref(), Some("fused-tiles"));
    let note = tiles.kernels().unwrap();
    assert!(
        note.contains(
            "384→1536 on tiles, inner size padded to 512 (forced by RECBENCH_CANDLE_INT8)"
        ) && note.contains("1536→384 (whole superblocks: candle's own choice)"),
        "{note}"
    );
    let note = blocks.kernels().unwrap();
    assert!(note.contains("384→1536 on blocks (forced by"), "{note}");
    let (a, t) = (blocks.encode(&b).unwrap(), tiles.encode(&b).unwrap());
    for i in 0..3 {
        let c = cosine(a.row(i), t.row(i));
        eprintln!("row {i}: cosine of tiles against blocks {c}");
        assert!(c > 0.995, "row {i}: cosine {c}");
    }
}

/// The fused CPU kernels compute what candle's own ops compute: on MiniLM with padded inputs of
/// different lengths (the attention mask matters), fp32 and int8 embeddings agree to float
/// rounding, and the encoder says which kernels ran.
#[test]
fn fused_kernels_match_candles_ops_on_minilm() {
    common::isolate();
    use recbench::backend::candle::CandleBert;
    use recbench::backend::Encoder;
    let (files, b) = minilm_three_sentences();
    for precision in [Precision::Fp32, Precision::Int8] {
        let o = opts(precision);
        let mut ops = CandleBert::load_with(&files, o, Some(false)).unwrap();
        let mut fused = CandleBert::load_with(&files, o, Some(true)).unwrap();
        assert_eq!(fused.cache_tag().as_deref(), Some("fused"));
        assert_eq!(ops.cache_tag(), None);
        assert!(fused
            .kernels()
            .unwrap()
            .starts_with("layers on fused (forced"));
        let (a, f) = (ops.encode(&b).unwrap(), fused.encode(&b).unwrap());
        let max = common::max_abs_diff(&a.data, &f.data);
        // int8 quantizes the activations on every call, so a one-ulp difference in an input
        // can move a value by one rounding step: its bar is that step's size, not float
        // rounding.
        let (max_bar, cos_bar) = match precision {
            Precision::Int8 => (5e-3, 0.9999),
            _ => (2e-5, 0.999_999),
        };
        assert!(max < max_bar, "{precision}: max abs diff {max}");
        for i in 0..3 {
            let c = cosine(a.row(i), f.row(i));
            assert!(c > cos_bar, "{precision} row {i}: cosine {c}");
        }
    }
}

/// With a shape to measure on, candle times its ops against the fused kernels, keeps the
/// faster, notes both timings, and reads the decision back on the next load.
#[test]
fn candle_kernels_are_chosen_by_measurement_and_remembered() {
    common::isolate();
    use recbench::backend::candle::CandleBert;
    use recbench::backend::Encoder;
    let files = ModelFiles::resolve(Preset::Tiny, recbench::model::weights::DEFAULT_SEED).unwrap();
    let mut o = opts(Precision::Fp32);
    // A shape no other test of this binary loads candle at; the binary's kernel cache starts
    // empty (common::isolate), so the first load measures.
    o.shape_hint = Some((2, 19));
    let first = CandleBert::load_with(&files, o, None).unwrap();
    let note = first.kernels().unwrap();
    assert!(note.contains("chosen by measurement"), "{note}");
    assert!(!note.contains("measured earlier"), "{note}");
    assert!(
        note.contains("(ops ") && note.contains(" ms, fused "),
        "{note}"
    );
    let fused = note.starts_with("layers on fused");
    assert_eq!(first.cache_tag().is_some(), fused, "{note}");
    let second = CandleBert::load_with(&files, o, None).unwrap();
    assert!(second
        .kernels()
        .unwrap()
        .contains("measured earlier on this host"));
    assert_eq!(second.cache_tag(), first.cache_tag());
    // An int8 run's notes also compare its Q8_0 product with the f32 one on the same shape.
    let int8 = CandleBert::load_with(
        &files,
        recbench::backend::EncoderOptions {
            precision: Precision::Int8,
            ..o
        },
        None,
    )
    .unwrap();
    let note = int8.kernels().unwrap();
    assert!(note.contains(" ms in Q8_0 against "), "{note}");
    // Without a shape (the reference) nothing is measured: candle's own ops.
    o.shape_hint = None;
    let reference = CandleBert::load_with(&files, o, None).unwrap();
    assert_eq!(reference.cache_tag(), None);
}

/// candle with head pruning (attention narrower than the hidden size) against the float64
/// forward of the same pruned weights.
#[test]
fn tiny_with_pruned_heads_matches_the_float64_reference() {
    common::isolate();
    let files = common::narrow_attention_tiny();
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

/// The fused kernels with pruned heads (attention narrower than the hidden size) compute what
/// candle's ops compute on the same pruned weights (which the test above checks against the
/// float64 forward).
#[test]
fn fused_kernels_match_candles_ops_with_pruned_heads() {
    common::isolate();
    use recbench::backend::candle::CandleBert;
    use recbench::backend::Encoder;
    let files = common::narrow_attention_tiny();
    assert!(files.config.attention_width() < files.config.hidden_size);
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let b = tok
        .batch(
            &[
                "a short one",
                "a longer sentence about films, books and music",
            ],
            32,
        )
        .unwrap();
    let o = opts(Precision::Fp32);
    let a = CandleBert::load_with(&files, o, Some(false))
        .unwrap()
        .encode(&b)
        .unwrap();
    let f = CandleBert::load_with(&files, o, Some(true))
        .unwrap()
        .encode(&b)
        .unwrap();
    let max = common::max_abs_diff(&a.data, &f.data);
    assert!(max < 2e-5, "max abs diff {max}");
}
