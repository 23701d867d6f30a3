//! The onnx backend end to end: the exported graph run through ONNX Runtime against the candle
//! fp32 reference, in every flavour and precision, plus the runtime-loading errors. Only in
//! builds with `--features onnx` (and the runtime fetched by scripts/fetch-onnxruntime.sh).
#![cfg(feature = "onnx")]

mod common;

use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use recbench::backend::onnx::{probe_library, OnnxBert, RuntimeError};
use recbench::backend::{self, BackendKind, Device, Embeddings, Precision};
use recbench::harness::parity::{self, PROBES};
use recbench::model::onnx::{export, Flavour};
use recbench::model::{ModelFiles, Preset, Tokenizer};
use recbench::recommender::TEXT_MAX_TOKENS;

use common::{cosine, opts};

fn candle_probes(files: &ModelFiles, tok: &Tokenizer) -> Embeddings {
    let mut enc = backend::open(BackendKind::Candle, files, opts(Precision::Fp32)).unwrap();
    parity::encode_probes(enc.as_mut(), tok).unwrap()
}

/// The parity bar of `precision`: fp32 within 1e-4 (max abs), fp16 at cosine ≥ 0.999, int8 at
/// cosine ≥ 0.99.
fn assert_within_tolerance(
    e: &Embeddings,
    reference: &Embeddings,
    precision: Precision,
    what: &str,
) {
    let max_abs = common::max_abs_diff(&e.data, &reference.data);
    let min_cos = (0..e.rows)
        .map(|i| cosine(e.row(i), reference.row(i)))
        .fold(f64::INFINITY, f64::min);
    match precision {
        Precision::Fp32 => assert!(max_abs <= 1e-4, "{what}: max abs diff {max_abs}"),
        Precision::Fp16 => assert!(min_cos >= 0.999, "{what}: min cosine {min_cos}"),
        _ => assert!(min_cos >= 0.99, "{what}: min cosine {min_cos}"),
    }
}

/// Tiny with half its heads pruned (attention width 64 against a hidden size of 128), every
/// flavour and precision, against candle fp32 on the same pruned weights: the exported graph's
/// splits, reshapes and the contrib Attention ops take the narrower width.
#[test]
fn tiny_with_pruned_heads_round_trips_in_every_flavour_and_precision() {
    common::isolate();
    let files = common::narrow_attention_tiny();
    assert_eq!(files.config.attention_width(), 64);
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let reference = candle_probes(&files, &tok);
    let batch = tok.batch(&PROBES, TEXT_MAX_TOKENS).unwrap();
    for flavour in Flavour::ALL {
        for precision in [Precision::Fp32, Precision::Fp16, Precision::Int8] {
            let what = format!("{flavour} {precision}");
            let path = export::export_cached(&files, flavour, precision).unwrap();
            let mut enc = OnnxBert::load_file(
                &path,
                files.config.hidden_size,
                2,
                GraphOptimizationLevel::All,
                Device::Cpu,
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
            let e = recbench::backend::Encoder::encode(&mut enc, &batch).unwrap();
            assert_within_tolerance(&e, &reference, precision, &what);
        }
    }
}

/// Tiny, every flavour and precision, at ORT's basic and full optimisation levels.
#[test]
fn tiny_round_trips_through_onnx_runtime_in_every_flavour_and_precision() {
    common::isolate();
    let files = ModelFiles::resolve(Preset::Tiny, recbench::model::weights::DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let reference = candle_probes(&files, &tok);
    let batch = tok.batch(&PROBES, TEXT_MAX_TOKENS).unwrap();
    for flavour in Flavour::ALL {
        for precision in [Precision::Fp32, Precision::Fp16, Precision::Int8] {
            let path = export::export_cached(&files, flavour, precision).unwrap();
            for level in [GraphOptimizationLevel::Level1, GraphOptimizationLevel::All] {
                let what = format!("{flavour} {precision} {level:?}");
                let mut enc =
                    OnnxBert::load_file(&path, files.config.hidden_size, 2, level, Device::Cpu)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                let e = recbench::backend::Encoder::encode(&mut enc, &batch).unwrap();
                assert_eq!((e.rows, e.dim), (PROBES.len(), files.config.hidden_size));
                assert!(e.all_finite(), "{what}");
                assert_within_tolerance(&e, &reference, precision, &what);
                // Unit length: pooling and normalisation are inside the graph.
                for i in 0..e.rows {
                    let n: f32 = e.row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
                    assert!((n - 1.0).abs() < 1e-3, "{what}: row {i} has norm {n}");
                }
            }
        }
    }
}

/// `recbench parity`'s own check, for onnx on tiny in the default flavour: fp32, fp16 and int8
/// pass; bf16 is reported with the reason instead of being checked.
#[test]
fn parity_passes_for_tiny_and_bf16_is_refused_with_the_reason() {
    common::isolate();
    let text = r#"
name = "onnx-parity-tiny"
[model]
presets = ["tiny"]
[workload]
mode = "two-tower"
batch = 1
seq_len = 128
precision = ["fp32", "fp16", "int8", "bf16"]
[matrix]
backends = ["onnx"]
devices = ["cpu"]
"#;
    let sc = recbench::scenario::Scenario::parse(Path::new("inline.toml"), text).unwrap();
    let rows =
        parity::check_scenario(&sc, &[], recbench::harness::progress::Display::Quiet).unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        if r.precision == Precision::Bf16 {
            let e = r.error.expect("bf16 is refused");
            assert!(e.contains("no bf16") && e.contains("MatMul"), "{e}");
        } else {
            let p = r
                .parity
                .unwrap_or_else(|| panic!("{:?}: {:?}", r.precision, r.error));
            assert!(p.passed, "{:?}: {p:?}", r.precision);
        }
    }
}

#[test]
fn unsupported_combinations_say_why() {
    common::isolate();
    let e = BackendKind::Onnx
        .supports(Device::Cpu, Precision::Bf16)
        .unwrap_err();
    assert!(e.contains("bf16"), "{e}");
    let e = BackendKind::Onnx
        .supports(Device::Cuda(0), Precision::Fp32)
        .unwrap_err();
    assert!(e.contains("cuda") || e.contains("CUDA"), "{e}");
    assert!(BackendKind::Onnx
        .supports(Device::Cpu, Precision::Fp32)
        .is_ok());
}

#[test]
fn runtime_version_is_the_loaded_library() {
    common::isolate();
    let v = BackendKind::Onnx.runtime_version();
    assert!(v.starts_with("onnxruntime 1."), "{v}");
}

#[test]
fn library_errors_are_distinct() {
    common::isolate();
    match probe_library(Path::new("/nonexistent/libonnxruntime.so")) {
        Err(RuntimeError::CannotOpen { reason, .. }) => assert!(!reason.is_empty()),
        other => panic!("expected CannotOpen, got {other:?}"),
    }
    // A real shared library that is not ONNX Runtime.
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    if let Some(libc) = libc {
        assert!(matches!(
            probe_library(Path::new(libc)),
            Err(RuntimeError::MissingSymbol { .. })
        ));
    }
    let v = probe_library(&recbench::backend::onnx::library_path()).unwrap();
    assert!(v.starts_with("1."), "{v}");
}

/// With no flavour or level forced, the backend times the plain and the fused graph at the
/// optimisation levels `all` and `extended` on the run's shape, keeps the fastest, says so with
/// the timings, and reuses the decision on the next load.
#[test]
fn the_graph_flavour_is_chosen_by_measurement_and_remembered() {
    common::isolate();
    let files = ModelFiles::resolve(Preset::Tiny, recbench::model::weights::DEFAULT_SEED).unwrap();
    let mut o = opts(Precision::Fp32);
    // A shape no other test of this binary loads ONNX at; the binary's kernel cache starts
    // empty (common::isolate), so the first load measures.
    o.shape_hint = Some((3, 17));
    let first = backend::open(BackendKind::Onnx, &files, o).unwrap();
    let note = first.kernels().unwrap();
    assert!(note.contains("chosen by measurement"), "{note}");
    for c in ["plain/all", "plain/extended", "fused/all", "fused/extended"] {
        assert!(note.contains(&format!("{c} ")), "{c} timed: {note}");
    }
    // The level the session runs is the chosen one.
    let chosen = note.split("(flavour/level: ").nth(1).unwrap();
    let level = chosen.split(' ').next().unwrap().split('/').nth(1).unwrap();
    assert!(
        note.contains(&format!("at optimisation level {level} ")),
        "{note}"
    );
    let tag = first.cache_tag().unwrap();
    assert!(tag == "plain" || tag == "fused", "{tag}");
    assert!(
        note.contains(&format!("-{tag}-fp32-")),
        "the file is the chosen flavour: {note}"
    );
    let second = backend::open(BackendKind::Onnx, &files, o).unwrap();
    assert!(second
        .kernels()
        .unwrap()
        .contains("measured earlier on this host"));
    assert_eq!(second.cache_tag(), first.cache_tag());
}

/// The three forms of an int8 graph (`RECBENCH_ONNX_INT8_FORM`) quantize a layer's input rows
/// with the same arithmetic and rescale the product alike, so tiny's embeddings agree to float
/// rounding in every flavour, and stay within the int8 bar of candle fp32.
#[test]
fn every_int8_form_gives_the_same_embeddings() {
    common::isolate();
    let files = ModelFiles::resolve(Preset::Tiny, recbench::model::weights::DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let reference = candle_probes(&files, &tok);
    let batch = tok.batch(&PROBES, TEXT_MAX_TOKENS).unwrap();
    let bytes = std::fs::read(&files.weights).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for flavour in Flavour::ALL {
        let embed = |int8: export::Int8Scheme| {
            let m = export::export_form(
                &files.config,
                &bytes,
                &files.weights,
                flavour,
                Precision::Int8,
                int8,
            )
            .unwrap();
            let path = dir.path().join(format!("{flavour}-{int8}.onnx"));
            std::fs::write(&path, prost::Message::encode_to_vec(&m)).unwrap();
            let mut enc = OnnxBert::load_file(
                &path,
                files.config.hidden_size,
                2,
                GraphOptimizationLevel::All,
                Device::Cpu,
            )
            .unwrap();
            recbench::backend::Encoder::encode(&mut enc, &batch).unwrap()
        };
        let per_row = export::Int8Scheme::per_row;
        let ql = embed(per_row(export::Int8Form::QuantizeLinear));
        for form in [export::Int8Form::Divide, export::Int8Form::ToFloat] {
            let other = embed(per_row(form));
            let diff = common::max_abs_diff(&ql.data, &other.data);
            assert!(diff <= 1e-5, "{flavour}: {form} differs by {diff}");
        }
        assert_within_tolerance(&ql, &reference, Precision::Int8, &format!("{flavour}"));
        // The default: the QKV projections per tensor. Other numbers: within the int8 bar of
        // candle, and near the per-row form (on tiny 2e-4 apart; with the QKV weight's scales
        // doubled, 2.4e-2 apart, while still within the int8 bar).
        let default = export::Int8Scheme {
            form: export::Int8Form::ToFloat,
            per_tensor: export::PerTensor::DEFAULT,
        };
        let d = embed(default);
        let label = format!("{flavour} {default}");
        assert_within_tolerance(&d, &reference, Precision::Int8, &label);
        let diff = common::max_abs_diff(&ql.data, &d.data);
        assert!(diff <= 1e-3, "{label}: {diff} from every layer per row");
    }
}
