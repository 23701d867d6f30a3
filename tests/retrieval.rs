//! The retrieval levers run end to end: every two-tower run of a retrieval sweep records its
//! search, recall@10 against an exact fp32 scan, and its time split between encoder and search.

mod common;

#[test]
fn a_retrieval_sweep_records_recall_and_the_encoder_search_split_of_every_run() {
    common::isolate();
    let v = common::run_fixture("retrieval-ci");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2 * 2 * 4);
    let recall = |items: u64, precision: &str, index: &str| -> f64 {
        let r = runs
            .iter()
            .find(|r| {
                r["spec"]["catalog_items"] == items
                    && r["spec"]["retrieval"]["item_precision"] == precision
                    && r["spec"]["retrieval"]["index"] == index
            })
            .unwrap_or_else(|| panic!("no run of {items} {precision} {index}"));
        r["retrieval"]["recall_at_k"].as_f64().unwrap()
    };
    let mut ran = 0;
    for r in runs {
        let index = r["spec"]["retrieval"]["index"].as_str().unwrap();
        if index.starts_with("hnsw") && !cfg!(feature = "ann") {
            assert_eq!(r["status"], "skipped");
            assert!(r["reason"].as_str().unwrap().contains("--features ann"));
            continue;
        }
        assert_eq!(r["status"], "ok", "{}", r["reason"]);
        ran += 1;
        let x = &r["retrieval"];
        assert_eq!(x["catalog_items"], r["spec"]["catalog_items"]);
        assert_eq!(x["k"], 10);
        assert_eq!(x["queries"], 100);
        let rec = x["recall_at_k"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&rec), "recall {rec}");
        for part in ["encode_ms", "search_ms"] {
            let p50 = x[part]["p50_ms"].as_f64().unwrap();
            let p99 = x[part]["p99_ms"].as_f64().unwrap();
            assert!(p50 > 0.0 && p99 >= p50, "{part}: {}", x[part]);
        }
        assert!(x["bytes"].as_u64().unwrap() > 0);
        assert!(r["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("catalog search: ")));
    }
    assert!(ran >= 12);
    for items in [5000, 20000] {
        // The exact fp32 scan is its own reference, and IVF probing every cell is a full scan
        // (its own dot products: a near-tie at the 10th place may round the other way).
        assert_eq!(recall(items, "fp32", "exact"), 1.0);
        assert!(recall(items, "fp32", "ivf:nlist=64,nprobe=64") >= 0.99);
        // int8 items and 4 of 64 cells lose some of the top-10, not most of it.
        let int8 = recall(items, "int8", "exact");
        assert!((0.7..1.0).contains(&int8), "int8 exact recall {int8}");
        let few = recall(items, "fp32", "ivf:nlist=64,nprobe=4");
        assert!((0.3..1.0).contains(&few), "nprobe 4 recall {few}");
    }
}
