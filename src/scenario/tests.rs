//! Unit tests of scenario reading, validation and expansion.
use std::collections::BTreeSet;

use super::*;

const GOOD: &str = r#"
name = "t"
[model]
presets = ["tiny", "minilm-l6"]
[workload]
mode = ["two-tower", "cross-encoder"]
batch = [1, 8]
seq_len = 64
precision = ["fp32", "int8"]
[matrix]
backends = ["candle", "onnx"]
threads = 2
[measure]
load = ["offline", "single-stream"]
[recommender]
candidates = 16
"#;

const HOST: Host = Host {
    auto_threads: 4,
    memory_bytes: None,
};

fn parse(text: &str) -> Result<Scenario> {
    Scenario::parse(Path::new("s.toml"), text)
}

#[test]
fn a_batch_above_the_hosts_memory_is_valid_input_and_a_skipped_run() {
    let text = GOOD.replace("batch = [1, 8]", "batch = [1, 4096]");
    let s = parse(&text).expect("the same verdict on every machine");
    let small = Host {
        auto_threads: 2,
        memory_bytes: Some(1 << 30),
    };
    let runs = s.expand(&small);
    let big = runs
        .iter()
        .find(|r| r.spec.batch == 4096 && r.spec.mode == Mode::CrossEncoder)
        .unwrap();
    let why = big.skip.as_deref().unwrap();
    assert!(why.contains("GiB of activations") && why.contains("this machine has 1.0 GiB"));
    let fits = runs
        .iter()
        .find(|r| r.spec.batch == 1 && r.spec.backend == BackendKind::Candle)
        .unwrap();
    assert_eq!(fits.skip, None);
    assert!(s.expand(&HOST).iter().all(|r| !r
        .skip
        .as_deref()
        .unwrap_or("")
        .contains("activations")));
}

#[test]
fn expands_the_full_matrix_with_reasons_for_skips() {
    let s = parse(GOOD).unwrap();
    let runs = s.expand(&HOST);
    assert_eq!(runs.len(), 2 * 2 * 2 * 2 * 2 * 2);
    let ss_b8 = runs
        .iter()
        .find(|r| {
            r.spec.load == Load::SingleStream
                && r.spec.batch == 8
                && r.spec.backend == BackendKind::Candle
        })
        .unwrap();
    assert!(ss_b8
        .skip
        .as_deref()
        .unwrap()
        .contains("one request at a time"));
    if !cfg!(feature = "onnx") {
        let onnx = runs
            .iter()
            .find(|r| r.spec.backend == BackendKind::Onnx)
            .unwrap();
        assert!(onnx
            .skip
            .as_deref()
            .unwrap()
            .contains("rebuild with --features onnx"));
    }
    let ids: BTreeSet<_> = runs.iter().map(|r| r.spec.id.clone()).collect();
    assert_eq!(ids.len(), runs.len(), "ids are unique");
    let cross = runs
        .iter()
        .find(|r| r.spec.mode == Mode::CrossEncoder)
        .unwrap();
    assert_eq!(cross.spec.candidates, 16);
    assert_eq!(cross.spec.threads, 2);
}

fn err(text: &str) -> String {
    let e = parse(text).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    e.to_string()
}

#[test]
fn bad_values_name_line_and_field() {
    let t = GOOD.replace("batch = [1, 8]", "batch = [1, 0]");
    assert_eq!(
        err(&t),
        "s.toml:7: field `workload.batch`: 0 is out of range; allowed: 1 to 4096"
    );
    let t = GOOD.replace("seq_len = 64", "seq_len = 1024");
    assert!(err(&t).starts_with("s.toml:8: field `workload.seq_len`: 1024 is out of range"));
    let t = GOOD.replace("\"onnx\"]", "\"tensorrt\"]");
    assert_eq!(
        err(&t),
        "s.toml:11: field `matrix.backends`: unknown value \"tensorrt\"; allowed: candle, onnx, torch"
    );
    let t = GOOD.replace("\"minilm-l6\"", "\"gpt\"");
    assert!(
        err(&t).contains("s.toml:4: field `model.presets`: unknown value \"gpt\"; allowed: tiny")
    );
    let t = GOOD.replace("threads = 2", "threads = \"many\"");
    assert!(err(&t).starts_with("s.toml:12: field `matrix.threads`: expected \"auto\""));
    let t = GOOD.replace("batch = [1, 8]", "batch = []");
    assert!(err(&t).contains("field `workload.batch`: the list is empty"));
    let t = GOOD.replace("batch = [1, 8]", "batch = [8, 8]");
    assert!(err(&t).contains("8 is listed twice"));
    let t = GOOD.replace("name = \"t\"", "name = \"../escape\"");
    assert!(err(&t).starts_with("s.toml:2: field `name`"));
}

#[test]
fn structural_errors_name_line_and_field() {
    let t = GOOD.replace("seq_len = 64", "seq_len = 64\nbatchsize = 3");
    let e = err(&t);
    assert!(
        e.starts_with("s.toml:9: field `workload.batchsize`: unknown field `batchsize`"),
        "{e}"
    );
    let t = GOOD.replace("presets = [\"tiny\", \"minilm-l6\"]", "seed = 1");
    let e = err(&t);
    assert!(
        e.contains("field `model.presets`") && e.contains("missing field `presets`"),
        "{e}"
    );
    let e = err("name = \"x\"\n[model\n");
    assert!(e.starts_with("s.toml:2:"), "{e}");
}

#[test]
fn prune_recipes_expand_and_bad_ones_name_line_and_field() {
    let t = GOOD.replace(
        "presets = [\"tiny\", \"minilm-l6\"]",
        "presets = [\"tiny\", \"minilm-l6\"]\nprune = [\"full\", \"drop-heads-50\"]",
    );
    let s = parse(&t).unwrap();
    let runs = s.expand(&HOST);
    assert_eq!(runs.len(), 2 * 2 * 2 * 2 * 2 * 2 * 2);
    let pruned: Vec<_> = runs.iter().filter(|r| !r.spec.prune.is_full()).collect();
    assert_eq!(pruned.len(), runs.len() / 2);
    assert!(pruned
        .iter()
        .all(|r| r.spec.id.ends_with("/pdrop-heads-50")));
    // Full-model runs keep the ids they had before pruning existed.
    assert!(runs
        .iter()
        .any(|r| r.spec.id == "candle/cpu/fp32/tiny/two-tower/offline/b1/s64/t2"));

    let bad = |recipes: &str| {
        GOOD.replace(
            "presets = [\"tiny\", \"minilm-l6\"]",
            &format!("presets = [\"tiny\", \"minilm-l6\"]\nprune = {recipes}"),
        )
    };
    let e = err(&bad("[\"full\", \"half\"]"));
    assert!(
        e.starts_with("s.toml:5: field `model.prune`: unknown recipe \"half\": unknown step"),
        "{e}"
    );
    assert!(e.contains("allowed: \"full\""), "{e}");
    // tiny has 2 layers, MiniLM 6: keeping 4 is too many for tiny.
    let e = err(&bad("\"keep-layers-4\""));
    assert_eq!(
        e,
        "s.toml:5: field `model.prune`: \"keep-layers-4\" on model tiny: keep-layers-4 \
         keeps more layers than the model has (2)"
    );
    let e = err(&bad(
        "[\"drop-ffn-50+keep-layers-1\", \"keep-layers-1+drop-ffn-50\"]",
    ));
    assert!(e.contains("is listed twice"), "{e}");
}

#[test]
fn max_below_min_is_rejected() {
    let t = GOOD.replace("[measure]", "[measure]\nmin_s = 10\nmax_s = 5");
    assert!(err(&t).contains("field `measure.max_s`: 5 is below measure.min_s = 10"));
}

const RETRIEVAL: &str = r#"
name = "r"
[model]
presets = ["minilm-l6"]
[workload]
mode = "two-tower"
batch = 1
seq_len = 64
precision = "fp32"
[matrix]
backends = ["candle"]
threads = 2
[recommender]
scoring = "host"
catalog_items = [100000, 1000000]
item_precision = ["fp32", "int8"]
index = ["exact", "hnsw:m=16,ef=64", "ivf:nlist=1024,nprobe=16"]
"#;

#[test]
fn a_retrieval_sweep_expands_every_catalog_size_precision_and_index_and_names_them_in_ids() {
    let s = parse(RETRIEVAL).unwrap();
    let runs = s.expand(&HOST);
    assert_eq!(runs.len(), 2 * 2 * 3);
    let ids: BTreeSet<&str> = runs.iter().map(|r| r.spec.id.as_str()).collect();
    assert_eq!(ids.len(), runs.len(), "ids collide: {ids:?}");
    let first = &runs[0].spec;
    assert_eq!(first.catalog_items, 100_000);
    assert_eq!(first.retrieval, Some(crate::spec::Retrieval::EXACT_FP32));
    assert!(
        first.id.ends_with("/host-scoring/n100000/fp32/exact"),
        "{}",
        first.id
    );
    let last = &runs[runs.len() - 1].spec;
    assert_eq!(last.catalog_items, 1_000_000);
    assert_eq!(
        last.retrieval.map(|r| (r.item_precision, r.index)),
        Some((
            Precision::Int8,
            Index::Ivf {
                nlist: 1024,
                nprobe: 16
            }
        ))
    );
    // HNSW runs only in a build with USearch; without it they are skipped and say how.
    for r in &runs {
        let hnsw = matches!(r.spec.retrieval.unwrap().index, Index::Hnsw { .. });
        assert_eq!(
            r.skip.is_some(),
            hnsw && !cfg!(feature = "ann"),
            "{:?}",
            r.skip
        );
    }
    // A results file keeps the levers and reads back the same.
    let json = serde_json::to_string(first).unwrap();
    assert_eq!(serde_json::from_str::<RunSpec>(&json).unwrap(), *first);
    // A catalog that cannot fit beside the activations is skipped at planning.
    let small = Host {
        auto_threads: 2,
        memory_bytes: Some(3 << 30),
    };
    let big = s.expand(&small);
    let why = big[big.len() - 1].skip.as_deref().unwrap();
    assert!(why.contains("its catalog of 1000000 items"), "{why}");
    assert_eq!(big[0].skip, None, "100,000 items fit in 3 GiB");
}

#[test]
fn a_scenario_without_retrieval_levers_keeps_its_ids_and_one_catalog_size() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.catalog_items, vec![100_000]);
    assert!(s.retrievals.is_none());
    assert!(s
        .expand(&HOST)
        .iter()
        .all(|r| r.spec.retrieval.is_none() && !r.spec.id.contains("/n100000")));
}

#[test]
fn bad_retrieval_levers_name_line_and_field() {
    for (from, to, field, why) in [
        (
            "index = [\"exact\", ",
            "index = [\"flat\", ",
            "recommender.index",
            "unknown index",
        ),
        (
            "\"ivf:nlist=1024,nprobe=16\"",
            "\"ivf:nlist=8,nprobe=16\"",
            "recommender.index",
            "more than nlist",
        ),
        (
            "item_precision = [\"fp32\", \"int8\"]",
            "item_precision = [\"fp8\"]",
            "recommender.item_precision",
            "unknown value",
        ),
        (
            "scoring = \"host\"",
            "scoring = \"device\"",
            "recommender.item_precision",
            "set recommender.scoring = \"host\"",
        ),
        (
            "catalog_items = [100000, 1000000]",
            "catalog_items = [100000, 100000]",
            "recommender.catalog_items",
            "listed twice",
        ),
    ] {
        assert!(RETRIEVAL.contains(from), "{from}");
        let e = parse(&RETRIEVAL.replace(from, to)).unwrap_err().to_string();
        assert!(
            e.contains(&format!("field `{field}`")) && e.contains(why),
            "{to}: {e}"
        );
        assert!(e.starts_with("s.toml:"), "{e}");
    }
}
