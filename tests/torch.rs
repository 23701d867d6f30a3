//! Numerical checks of the libtorch backend: the forward against the float64 reference, parity
//! against candle fp32 at every precision, and the precision handling.
#![cfg(feature = "torch")]

mod common;

use common::opts;
use recbench::backend::{self, BackendKind, Device, Precision};
use recbench::harness::parity;
use recbench::model::weights::DEFAULT_SEED;
use recbench::model::{ModelFiles, Preset, Tokenizer};
use recbench::recommender;

/// torch fp32 against a float64 forward written with plain loops, on padded inputs.
#[test]
fn tiny_matches_the_float64_reference() {
    common::isolate();
    let max = common::tiny_max_diff_vs_f64_reference(BackendKind::Torch);
    assert!(max <= 1e-5, "max abs diff {max}");
}

/// torch with head pruning (attention narrower than the hidden size) against the float64
/// forward of the same pruned weights.
#[test]
fn tiny_with_pruned_heads_matches_the_float64_reference() {
    common::isolate();
    let max =
        common::tiny_max_diff_vs_f64_reference_pruned(BackendKind::Torch, common::NARROW_ATTENTION);
    assert!(max <= 1e-5, "max abs diff {max}");
}

/// The parity check `recbench parity` and every run make, for one model and precision.
fn parity_of(preset: Preset, precision: Precision) -> recbench::results::Parity {
    let files = ModelFiles::resolve(preset, DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let reference = parity::reference(&files, &tok).unwrap();
    let mut enc = backend::open(BackendKind::Torch, &files, opts(precision)).unwrap();
    let probes = parity::encode_probes(enc.as_mut(), &tok).unwrap();
    let key = parity::item_key_of(&files, BackendKind::Torch, precision, enc.as_ref());
    let items = recommender::bundled_items();
    let ix = recommender::item_index(enc.as_mut(), &tok, &items, &key).unwrap();
    parity::compare(precision, &probes, &ix, &reference)
}

#[test]
fn fp32_matches_candle_on_tiny_and_minilm() {
    common::isolate();
    for preset in [Preset::Tiny, Preset::MiniLmL6] {
        let p = parity_of(preset, Precision::Fp32);
        assert!(p.passed, "{preset}: {p:?}");
        assert!(p.max_abs_diff <= 1e-4, "{preset}: {p:?}");
    }
}

#[test]
fn int8_meets_the_int8_bar_on_minilm() {
    common::isolate();
    let p = parity_of(Preset::MiniLmL6, Precision::Int8);
    assert!(
        p.passed && p.min_cosine >= 0.99 && p.top10_overlap >= 0.9,
        "{p:?}"
    );
    // Quantised, so not bit-equal to fp32: this really ran the int8 path.
    assert!(p.max_abs_diff > 1e-4, "{p:?}");
}

#[test]
fn bf16_meets_the_half_precision_bar_on_tiny() {
    common::isolate();
    let p = parity_of(Preset::Tiny, Precision::Bf16);
    assert!(p.passed && p.min_cosine >= 0.999, "{p:?}");
    assert!(p.max_abs_diff > 1e-5, "{p:?}");
}

#[test]
fn runtime_version_names_libtorch() {
    common::isolate();
    let v = BackendKind::Torch.runtime_version();
    assert!(v.contains("2.11.0"), "{v}");
    let info = backend::inventory()
        .into_iter()
        .find(|b| b.backend == BackendKind::Torch)
        .unwrap();
    assert!(info.compiled);
    assert!(info.precisions.contains(&Precision::Fp32));
    assert!(info.precisions.contains(&Precision::Int8));
}

#[test]
fn fp16_meets_the_half_precision_bar_on_tiny() {
    common::isolate();
    let p = parity_of(Preset::Tiny, Precision::Fp16);
    assert!(p.passed && p.min_cosine >= 0.999, "{p:?}");
    assert!(p.max_abs_diff > 1e-6, "{p:?}");
}

/// libtorch's CUDA library is not linked: CUDA runs are skipped with the reason, not failed.
#[test]
fn cuda_is_refused_with_the_reason() {
    common::isolate();
    let why = BackendKind::Torch
        .supports(Device::Cuda(0), Precision::Fp32)
        .unwrap_err();
    assert!(why.contains("CUDA"), "{why}");
    assert!(BackendKind::Torch
        .supports(Device::Cpu, Precision::Int8)
        .is_ok());
}

/// The two fp32 linear kernels (oneDNN, the default, and aten's MKL path) compute the same
/// forward, and each encoder says which one it used.
#[test]
fn onednn_and_aten_linear_kernels_agree() {
    common::isolate();
    use recbench::backend::torch::{LinearKernel, TorchBert};
    use recbench::backend::Encoder;
    let files = ModelFiles::resolve(Preset::Tiny, DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    // 64 sequences × 64 tokens: 4,096 rows, so every linear layer of tiny is above the size
    // from which the oneDNN kernel takes over.
    let texts: Vec<String> = (0..64)
        .map(|i| {
            format!("item {i}: films about space and a cookbook of quick dinners. ")
                .repeat(1 + i % 8)
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = tok.batch(&refs, 64).unwrap();
    assert!(batch.batch * batch.seq_len >= 4096, "{}", batch.seq_len);
    let run = |kernel| {
        let mut enc = TorchBert::load_with(&files, opts(Precision::Fp32), kernel).unwrap();
        (enc.encode(&batch).unwrap(), enc.kernels().unwrap())
    };
    let (a, ka) = run(LinearKernel::OneDnn);
    let (b, kb) = run(LinearKernel::Aten);
    assert!(ka.contains("oneDNN"), "{ka}");
    assert!(kb.contains("aten"), "{kb}");
    let max = common::max_abs_diff(&a.data, &b.data);
    assert!(max <= 1e-5, "max abs diff {max}");
    // Whether the two libraries' bits differ depends on the host's kernels (accumulation order
    // per ISA), so it is reported, not asserted.
    eprintln!("oneDNN vs aten: max abs diff {max:e}");
    assert_eq!(LinearKernel::parse(None).unwrap(), LinearKernel::Auto);
    assert_eq!(
        LinearKernel::parse(Some("onednn")).unwrap(),
        LinearKernel::OneDnn
    );
    assert_eq!(
        LinearKernel::parse(Some("aten")).unwrap(),
        LinearKernel::Aten
    );
    assert_eq!(
        LinearKernel::parse(Some("onednn_packed")).unwrap(),
        LinearKernel::OneDnnPacked
    );
    let e = LinearKernel::parse(Some("blas")).unwrap_err();
    assert!(e.to_string().contains("RECBENCH_TORCH_LINEAR"), "{e}");
}

/// `auto` times aten, oneDNN and oneDNN on a prepacked weight per layer shape at load on the
/// run's row count, keeps the fastest, says so in the run's notes with the timings, and remembers the choice per host: a
/// second load reads it from the cache instead of timing again.
#[test]
fn the_fp32_linear_kernel_is_chosen_by_measurement_and_remembered() {
    common::isolate();
    use recbench::backend::torch::{LinearKernel, TorchBert};
    use recbench::backend::Encoder;
    let files = ModelFiles::resolve(Preset::Tiny, DEFAULT_SEED).unwrap();
    let mut o = opts(Precision::Fp32);
    // An odd row count no other test of this binary uses; the binary's kernel cache starts
    // empty (common::isolate), so the first load measures.
    o.shape_hint = Some((1, 4099));
    let first = TorchBert::load_with(&files, o, LinearKernel::Auto).unwrap();
    let note = first.kernels().unwrap();
    assert!(note.contains("chosen by measurement"), "{note}");
    assert!(
        note.contains("(aten ")
            && note.contains(" ms, onednn ")
            && note.contains(" ms, onednn_packed "),
        "{note}"
    );
    assert!(!note.contains("measured earlier"), "{note}");
    let tag = first.cache_tag().unwrap();
    assert!(tag == "aten" || tag.starts_with("auto-"), "{tag}");
    let second = TorchBert::load_with(&files, o, LinearKernel::Auto).unwrap();
    let note2 = second.kernels().unwrap();
    assert!(note2.contains("measured earlier on this host"), "{note2}");
    assert_eq!(second.cache_tag(), first.cache_tag(), "the same choice");
    // A forced kernel is not measured.
    let forced = TorchBert::load_with(&files, o, LinearKernel::Aten).unwrap();
    assert_eq!(forced.cache_tag().as_deref(), Some("aten"));
    assert!(forced.kernels().unwrap().contains("=aten"));
}

/// int8 has two kernels too — `_int_mm` (int8 activations, fast with VNNI) and
/// `_weight_int8pack_mm` (weight-only, f32 activations) — chosen the same way, noted, and
/// both meet the int8 parity bar (checked per kernel through `recbench parity` in the README's
/// figures; here the chosen one).
#[test]
fn the_int8_kernel_is_chosen_by_measurement() {
    common::isolate();
    let files = ModelFiles::resolve(Preset::Tiny, DEFAULT_SEED).unwrap();
    let mut o = opts(Precision::Int8);
    o.shape_hint = Some((1, 2048));
    let enc = backend::open(BackendKind::Torch, &files, o).unwrap();
    let note = enc.kernels().unwrap();
    assert!(
        note.starts_with("int8 linear layers chosen by measurement"),
        "{note}"
    );
    assert!(note.contains(" ms, weight_only "), "{note}");
    let tag = enc.cache_tag().unwrap();
    assert!(
        ["int_mm", "weight_only", "int_mm_blocked"].contains(&tag.as_str())
            || tag.starts_with("auto-"),
        "{tag}"
    );
    let p = parity_of(Preset::Tiny, Precision::Int8);
    assert!(p.passed, "{p:?}");
}

/// A torch run's worker gets the OpenMP spin chosen by measurement: the run's notes name every
/// candidate's time and the chosen one is the fastest of them; the next run of the same shape
/// reads it back from the cache; a user's `OMP_WAIT_POLICY` is kept and nothing is measured.
#[test]
fn the_openmp_spin_is_chosen_by_measurement_and_a_users_policy_is_kept() {
    common::isolate();
    use recbench::harness::openmp::CANDIDATES;
    let dir = tempfile::tempdir().unwrap();
    // A batch no other test of this binary runs; the binary's kernel cache starts empty
    // (common::isolate), so the first run measures.
    let batch = 7;
    let scenario = dir.path().join("omp.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"omp\"\n[model]\npresets = \"tiny\"\n[workload]\nmode = \"two-tower\"\n\
             batch = {batch}\nseq_len = 16\n[matrix]\nbackends = \"torch\"\nthreads = 2\n\
             [measure]\nwarmup_s = 0.05\nmin_s = 0.2\nmin_queries = 3\nmax_s = 1\n\
             [recommender]\ncatalog_items = 500\n"
        ),
    )
    .unwrap();
    let note = |policy: Option<&str>, out: &str| -> String {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_recbench"));
        c.args(["run", "--quiet", "--out"])
            .arg(dir.path().join(out))
            .arg(&scenario)
            .env_remove("OMP_WAIT_POLICY")
            .env_remove("GOMP_SPINCOUNT");
        if let Some(p) = policy {
            c.env("OMP_WAIT_POLICY", p);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let file = std::fs::read_dir(dir.path().join(out).join("omp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let run = &v["runs"][0];
        assert_eq!(run["status"], "ok", "{run}");
        common::assert_cold_start(run);
        run["notes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str())
            .find(|n| n.starts_with("openmp: "))
            .unwrap_or_else(|| panic!("no openmp note in {}", run["notes"]))
            .to_string()
    };
    let first = note(None, "a");
    let chosen: u64 = first
        .strip_prefix("openmp: GOMP_SPINCOUNT=")
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!(first.contains("chosen by measurement"), "{first}");
    let times: Vec<f64> = CANDIDATES
        .iter()
        .map(|c| {
            let at = first
                .find(&format!("{c}: "))
                .unwrap_or_else(|| panic!("{c} in {first}"));
            first[at + c.to_string().len() + 2..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let fastest = CANDIDATES[times
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0];
    assert_eq!(chosen, fastest, "{first}");
    let second = note(None, "b");
    assert!(second.contains("measured earlier on this host"), "{second}");
    assert!(
        second.starts_with(&format!("openmp: GOMP_SPINCOUNT={chosen} ")),
        "{second}"
    );
    assert!(first.contains("fp32 stand-in forward"), "{first}");
    let user = note(Some("PASSIVE"), "c");
    assert_eq!(
        user,
        "openmp: OMP_WAIT_POLICY=PASSIVE set by the user, kept (not measured)"
    );
    // An int8 run times its own encoder (recbench's int8 passes are OpenMP regions the fp32
    // stand-in does not have), and is decided apart from the fp32 runs of its shape.
    let text = std::fs::read_to_string(&scenario).unwrap();
    std::fs::write(
        &scenario,
        text.replace("seq_len = 16\n", "seq_len = 16\nprecision = \"int8\"\n"),
    )
    .unwrap();
    let int8 = note(None, "d");
    assert!(int8.contains("chosen by measurement"), "{int8}");
    assert!(
        int8.contains("per int8 encoder forward + scoring"),
        "{int8}"
    );
}
