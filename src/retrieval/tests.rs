use super::*;
use crate::util::rand::SplitMix64;

/// 200 unit centres in 64 dimensions, a clustered catalog of `n` around them and `q` queries
/// near random centres (as a user's embedding sits near items like it).
fn setup(n: usize, q: usize) -> (ItemIndex, Embeddings) {
    let dim = 64;
    let mut r = SplitMix64::new(11);
    let unit = |r: &mut SplitMix64| {
        let mut v: Vec<f32> = (0..dim).map(|_| r.next_normal() as f32).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let centres = ItemIndex {
        dim,
        data: (0..200).flat_map(|_| unit(&mut r)).collect(),
    };
    let catalog = catalog::clustered(&centres, n, 5, 2);
    let queries = catalog::clustered(&centres, q, 99, 1);
    let users = Embeddings {
        rows: q,
        dim,
        data: queries.data,
    };
    (catalog, users)
}

fn recall(catalog: &ItemIndex, users: &Embeddings, setting: Retrieval, threads: usize) -> f64 {
    let exact = Retriever::build(
        catalog.clone(),
        Retrieval {
            item_precision: Precision::Fp32,
            index: Index::Exact,
        },
        1,
        1,
        None,
    )
    .unwrap()
    .search(users, 10)
    .unwrap();
    let r = Retriever::build(catalog.clone(), setting, 1, threads, None).unwrap();
    let got = r.search(users, 10).unwrap();
    assert_eq!(got.len(), users.rows);
    assert!(got.iter().all(|g| g.len() == 10));
    recall_at_k(&got, &exact, 10)
}

#[test]
fn recall_counts_the_exact_top_k_that_came_back() {
    let e = vec![
        vec![(1, 0.9), (2, 0.8), (4, 0.7)],
        vec![(5, 0.5), (6, 0.4), (7, 0.3)],
    ];
    let g = vec![
        vec![(2, 0.8), (1, 0.9), (3, 0.75)],
        vec![(5, 0.5), (6, 0.4), (7, 0.3)],
    ];
    // (2/3 + 3/3) / 2; order within the top-k does not matter, scores are not compared.
    assert!((recall_at_k(&g, &e, 3) - 5.0 / 6.0).abs() < 1e-12);
    assert_eq!(recall_at_k(&g, &e, 1), 0.5);
    assert!(recall_at_k(&[], &[], 3).is_nan());
}

#[test]
fn every_precision_of_the_full_scan_finds_the_fp32_top_10_up_to_its_rounding() {
    let (catalog, users) = setup(20_000, 64);
    for (p, floor) in [
        (Precision::Fp32, 1.0),
        (Precision::Fp16, 0.97),
        (Precision::Bf16, 0.8),
        (Precision::Int8, 0.8),
    ] {
        for threads in [1, 3] {
            let setting = Retrieval {
                item_precision: p,
                index: Index::Exact,
            };
            let got = recall(&catalog, &users, setting, threads);
            assert!(
                got >= floor,
                "{p} with {threads} thread(s): recall@10 {got}"
            );
        }
    }
}

#[test]
fn ivf_probing_every_cell_is_the_full_scan_and_fewer_cells_lose_recall_gradually() {
    let (catalog, users) = setup(20_000, 64);
    let ivf = |nprobe, threads| {
        let setting = Retrieval {
            item_precision: Precision::Fp32,
            index: Index::Ivf { nlist: 64, nprobe },
        };
        recall(&catalog, &users, setting, threads)
    };
    // Its own dot products against the GEMM's: a near-tie at the 10th place may round the
    // other way, nothing more.
    assert!(ivf(64, 2) >= 0.99);
    assert!(ivf(64, 1) >= 0.99);
    let few = ivf(4, 2);
    assert!(few > 0.5 && few < 1.0, "nprobe 4 of 64: recall@10 {few}");
}

#[cfg(feature = "ann")]
#[test]
fn hnsw_finds_nearly_all_of_the_exact_top_10() {
    let (catalog, users) = setup(20_000, 64);
    let setting = Retrieval {
        item_precision: Precision::Fp32,
        index: Index::Hnsw {
            m: 16,
            ef: 128,
            build_threads: 2,
        },
    };
    let got = recall(&catalog, &users, setting, 2);
    assert!(got >= 0.95, "recall@10 {got}");
}

/// Every distance kernel the race may choose, set on one fp32 graph: each finds nearly all of
/// the exact top 10 and returns the items' dot products with the query (USearch's distance is
/// `1 − dot`; a kernel that got the sign or the dot wrong ranks the farthest items first).
#[cfg(feature = "ann")]
#[test]
fn every_hnsw_distance_kernel_finds_the_exact_top_10_and_returns_the_dot() {
    let (catalog, users) = setup(20_000, 64);
    let exact = Retriever::build(catalog.clone(), Retrieval::EXACT_FP32, 1, 1, None)
        .unwrap()
        .search(&users, 10)
        .unwrap();
    let graph = hnsw::Graph {
        m: 16,
        precision: Precision::Fp32,
        build_threads: 1,
    };
    let mut h = hnsw::Hnsw::build(&catalog, graph, 128, 2).unwrap();
    let raced = hnsw::choose_metric(&catalog, Precision::Fp32).raced_ms;
    let kernels = kernels::dot_f32_kernels();
    assert_eq!(raced.len(), 1 + kernels.len(), "{raced:?}");
    assert!(
        raced.iter().all(|(_, ms)| ms.is_finite() && *ms > 0.0),
        "{raced:?}"
    );
    let metrics = std::iter::once(hnsw::Metric::NumKong)
        .chain(kernels.into_iter().map(hnsw::Metric::Recbench));
    for metric in metrics {
        h.use_metric(metric).unwrap();
        let got = h.search(&users, 10, 2).unwrap();
        let r = recall_at_k(&got, &exact, 10);
        assert!(r >= 0.95, "{metric:?}: recall@10 {r}");
        for (u, row) in got.iter().enumerate() {
            for &(item, score) in row {
                let dot: f32 = (users.row(u).iter())
                    .zip(&catalog.data[item * catalog.dim..(item + 1) * catalog.dim])
                    .map(|(a, b)| a * b)
                    .sum();
                assert!(
                    (score - dot).abs() < 1e-4,
                    "{metric:?}: {score} against {dot}"
                );
            }
        }
    }
}

/// A catalog smaller than the race's query rows is raced on what it has.
#[cfg(feature = "ann")]
#[test]
fn the_kernel_race_runs_on_a_catalog_of_two_items() {
    let (catalog, _) = setup(2, 1);
    let choice = hnsw::choose_metric(&catalog, Precision::Fp32);
    assert_eq!(choice.raced_ms.len(), 1 + kernels::dot_f32_kernels().len());
}

#[test]
fn hnsw_without_the_feature_says_how_to_get_it() {
    let r = supports(Index::Hnsw {
        m: 16,
        ef: 64,
        build_threads: 1,
    });
    assert_eq!(r.is_ok(), cfg!(feature = "ann"), "{r:?}");
    assert!(supports(Index::Exact).is_ok());
}
