//! Scoring on the device (`[recommender] scoring = "device"`): every compiled backend, on the
//! CPU, ranks a catalog for a batch of users exactly as the host's scoring of the same
//! embeddings does (the same ids in the same order, the same scores within float rounding), and
//! as float64 scoring does by the worker's own check. A backend compiled out of this build is
//! named as skipped.

mod common;

use recbench::backend::{self, BackendKind, Precision};
use recbench::harness::worker::check_ranking;
use recbench::model::weights::DEFAULT_SEED;
use recbench::model::{ModelFiles, Preset, Tokenizer};
use recbench::recommender::{self, bundled_items, top_k_rows, TEXT_MAX_TOKENS};

#[test]
fn device_scoring_ranks_like_host_scoring_on_every_backend() {
    common::isolate();
    let files = ModelFiles::resolve(Preset::Tiny, DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let items = bundled_items();
    let texts: Vec<String> = items[..400].iter().map(|i| i.text()).collect();
    let users: Vec<&str> = [
        "a quiet film about a lighthouse keeper",
        "sci-fi novels with first contact",
        "noise cancelling headphones for travel",
        "cooperative board games for two",
        "a podcast on the history of maps",
    ]
    .to_vec();
    let batch = tok.batch(&users, TEXT_MAX_TOKENS).unwrap();
    let k = 10;
    let mut ran = 0;
    for kind in [BackendKind::Candle, BackendKind::Onnx, BackendKind::Torch] {
        if !kind.compiled() {
            eprintln!("skipped: {kind} is not compiled into this build");
            continue;
        }
        let mut enc = backend::open(kind, &files, common::opts(Precision::Fp32)).unwrap();
        let index = recommender::encode_texts(enc.as_mut(), &tok, &texts, 32).unwrap();
        let how = enc
            .load_items(index.items())
            .unwrap()
            .unwrap_or_else(|| panic!("{kind} does not score on its device"));
        let ranked = enc.encode_and_rank(&batch, k).unwrap();
        let emb = enc.encode(&batch).unwrap();
        let host = top_k_rows(&index.scores(&emb, 2), index.len(), k, 2);
        assert_eq!(ranked.top.len(), users.len(), "{kind}");
        for (r, (dev, host)) in ranked.top.iter().zip(&host).enumerate() {
            let ids = |v: &[(usize, f32)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(ids(dev), ids(host), "{kind} ({how}), user {r}");
            for ((_, a), (_, b)) in dev.iter().zip(host) {
                assert!((a - b).abs() <= 1e-5, "{kind}, user {r}: {a} vs {b}");
            }
        }
        check_ranking(&emb, &index, &ranked, k, 1e-4)
            .unwrap_or_else(|e| panic!("{kind} against float64: {e}"));
        assert!(
            ranked.encode_ms > 0.0 && ranked.score_ms > 0.0,
            "{kind}: {ranked:?}"
        );
        ran += 1;
    }
    assert!(ran >= 1, "candle is always compiled");
}

#[test]
fn the_float64_check_catches_a_wrong_ranking() {
    common::isolate();
    use recbench::backend::{Embeddings, Ranked};
    let users = Embeddings {
        rows: 1,
        dim: 2,
        data: vec![1.0, 0.0],
    };
    let index = recommender::ItemIndex {
        dim: 2,
        data: vec![0.9, 0.1, 0.5, 0.5, 0.1, 0.9, -1.0, 0.0],
    };
    let right = Ranked {
        top: vec![vec![(0, 0.9), (1, 0.5)]],
        encode_ms: 1.0,
        score_ms: 1.0,
    };
    assert_eq!(check_ranking(&users, &index, &right, 2, 1e-4), Ok(()));
    for wrong in [
        vec![(1, 0.5), (0, 0.9)],  // out of order
        vec![(0, 0.9), (2, 0.5)],  // an id whose score is not the one reported
        vec![(0, 0.9), (1, 0.45)], // a score off by more than the tolerance
        vec![(0, 0.9), (0, 0.9)],  // an id twice
        vec![(0, 0.9)],            // too few
    ] {
        let r = Ranked {
            top: vec![wrong.clone()],
            ..right.clone()
        };
        assert!(
            check_ranking(&users, &index, &r, 2, 1e-4).is_err(),
            "{wrong:?} passed"
        );
    }
}
