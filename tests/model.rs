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

/// The three int8 layouts compute the same embeddings to int8 rounding, and the notes and the
/// cache tag say which ran: candle's Q8_0 blocks; its VNNI tiles, the inner size padded with
/// zeros to whole 256-value superblocks (MiniLM's 384 becomes 512, 1536 stays; tiles quantize
/// the activations in 256-value blocks, blocks in 32-value ones); recbench's int8 GEMM (weights
/// per output channel, activations per row). Forced each way, so it holds on a host where any
/// would lose the race.
#[test]
fn candle_int8_layouts_agree_on_minilm() {
    common::isolate();
    use recbench::backend::candle::{CandleBert, Int8Layout};
    use recbench::backend::Encoder;
    let (files, b) = minilm_three_sentences();
    let o = opts(Precision::Int8);
    let load = |l| CandleBert::load_forced(&files, o, Some(true), Some(l)).unwrap();
    let (mut blocks, mut tiles, mut gemm) = (
        load(Int8Layout::Blocks),
        load(Int8Layout::Tiles),
        load(Int8Layout::Gemm),
    );
    assert_eq!(blocks.cache_tag().as_deref(), Some("fused"));
    // The 1536-wide input is whole superblocks: candle's blocks as they are, the default.
    assert_eq!(
        tiles.cache_tag().as_deref(),
        Some("fused-tiles:384x384+384x1152+384x1536")
    );
    assert_eq!(gemm.cache_tag().as_deref(), Some("fused-gemm"));
    let note = tiles.kernels().unwrap();
    assert!(
        note.contains(
            "384→1536 on candle's Q8_0 tiles, inner size padded to 512 (forced by RECBENCH_CANDLE_INT8)"
        ) && note.contains("1536→384 on candle's Q8_0 (forced by RECBENCH_CANDLE_INT8)"),
        "{note}"
    );
    let note = blocks.kernels().unwrap();
    assert!(
        note.contains("384→1536 on candle's Q8_0 blocks (forced by"),
        "{note}"
    );
    let note = gemm.kernels().unwrap();
    assert!(
        note.contains("384→1536 on recbench's int8 GEMM, ")
            && note.contains("1536→384 on recbench's int8 GEMM, ")
            && note.contains("(forced by RECBENCH_CANDLE_INT8)"),
        "{note}"
    );
    let a = blocks.encode(&b).unwrap();
    for (name, other) in [("tiles", &mut tiles), ("gemm", &mut gemm)] {
        let t = other.encode(&b).unwrap();
        for i in 0..3 {
            let c = cosine(a.row(i), t.row(i));
            eprintln!("row {i}: cosine of {name} against blocks {c}");
            assert!(c > 0.995, "{name} row {i}: cosine {c}");
        }
    }
}

/// candle bf16 on the CPU: without a shape to measure on, every layer runs on recbench's bf16
/// GEMM (bf16 operands, f32 sums, f32 activations between layers), within the bf16 parity bar
/// of fp32 (cosine ≥ 0.999) on MiniLM, and the notes and the cache tag say so.
#[test]
fn candle_bf16_runs_on_the_bf16_gemm_on_minilm() {
    common::isolate();
    use recbench::backend::candle::CandleBert;
    use recbench::backend::Encoder;
    let (files, b) = minilm_three_sentences();
    let mut fp32 = CandleBert::load(&files, opts(Precision::Fp32)).unwrap();
    let mut bf16 = CandleBert::load(&files, opts(Precision::Bf16)).unwrap();
    let note = bf16.kernels().unwrap();
    assert!(
        note.contains("bf16 products: 384→1152 on recbench's bf16 GEMM, ")
            && note.contains("1536→384 on recbench's bf16 GEMM, ")
            && note.contains("(no shape to measure on)"),
        "{note}"
    );
    assert_eq!(bf16.cache_tag().as_deref(), Some("bf16gemm"));
    let (a, h) = (fp32.encode(&b).unwrap(), bf16.encode(&b).unwrap());
    for i in 0..3 {
        let c = cosine(a.row(i), h.row(i));
        eprintln!("row {i}: cosine of bf16 against fp32 {c}");
        assert!(c >= 0.999, "row {i}: cosine {c}");
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
        // int8 without a shape to measure on runs recbench's GEMM where the CPU has AVX-512
        // VNNI (`unmeasured_layout`), and the tag says so.
        let lowp = recbench::backend::candle::cache_tag(precision);
        let want = lowp
            .as_ref()
            .map_or("fused".to_string(), |t| format!("fused-{t}"));
        assert_eq!(fused.cache_tag(), Some(want));
        assert_eq!(ops.cache_tag(), lowp);
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
    // An int8 run's notes also compare its int8 product with the f32 one on the same shape.
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
    assert!(
        note.contains("int8 here: the ") && note.contains(" ms in f32"),
        "{note}"
    );
    // Each int8 and bf16 layer shape's race is in the notes, every candidate timed.
    assert!(
        note.contains("(blocks ") && note.contains(" ms at 38 rows, chosen by measurement)"),
        "{note}"
    );
    let bf16 = CandleBert::load_with(
        &files,
        recbench::backend::EncoderOptions {
            precision: Precision::Bf16,
            ..o
        },
        None,
    )
    .unwrap();
    let note = bf16.kernels().unwrap();
    assert!(
        note.contains("(f32 ")
            && note.contains(" ms, gemm ")
            && note.contains(" ms at 38 rows, chosen by measurement)"),
        "{note}"
    );
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
