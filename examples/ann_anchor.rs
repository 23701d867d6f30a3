//! recbench's side of the ANN anchor (`scripts/bench/ann_anchor.sh`), on vectors FAISS's side
//! reads from the same files.
//!
//! `export` writes a catalog shaped as recbench's retrieval runs shape it (the demo items'
//! MiniLM fp32 embeddings from candle as cluster centres, `src/retrieval/catalog.rs`), queries
//! drawn around the same centres with another seed, and each query's exact top-10 (fp32 GEMM):
//! `catalog.f32`, `queries.f32`, `exact.u32` (little-endian, row-major) and `meta.json`.
//!
//! `bench` builds recbench's HNSW (USearch, inner product, fp32 items, `m`, ef_construction
//! 128) with `build_threads` threads (1 unless given, as recbench's runs build it), then for each `ef` searches all queries with `threads` threads
//! for at least `min_s` seconds (at least 3 passes) and prints one JSON line: build seconds,
//! queries per second (the median pass) and recall@10.
//!
//! ```text
//! cargo run --release --features ann --example ann_anchor -- export 100000 1000 DIR
//! cargo run --release --features ann --example ann_anchor -- bench DIR 16 16,32,64,128 2 2 [1]
//! ```

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use recbench::backend::Embeddings;
use recbench::recommender::ItemIndex;
use recbench::retrieval::{catalog, recall_at_k, Retriever};
use recbench::spec::{Index, Precision, Retrieval};

fn write_f32(path: &Path, v: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

fn read_f32(path: &Path) -> anyhow::Result<Vec<f32>> {
    let b = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn export(items: usize, queries: usize, dir: &Path) -> anyhow::Result<()> {
    use recbench::model::{ModelFiles, Preset, Tokenizer};
    let files = ModelFiles::resolve(Preset::MiniLmL6, recbench::model::weights::DEFAULT_SEED)?;
    let tok = Tokenizer::load(&files.tokenizer)?;
    let centres = recbench::harness::parity::reference(&files, &tok)?.items;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cat = catalog::clustered(&centres, items, 1, threads);
    let q = catalog::clustered(&centres, queries, 2, threads);
    let users = Embeddings {
        rows: queries,
        dim: q.dim,
        data: q.data.clone(),
    };
    let exact = Retriever::build(
        cat.clone(),
        recbench::retrieval::EXACT_FP32,
        1,
        threads,
        None,
    )?
    .search(&users, 10)?;
    std::fs::create_dir_all(dir)?;
    write_f32(&dir.join("catalog.f32"), &cat.data)?;
    write_f32(&dir.join("queries.f32"), &q.data)?;
    let ids: Vec<u8> = exact
        .iter()
        .flat_map(|r| r.iter().flat_map(|(id, _)| (*id as u32).to_le_bytes()))
        .collect();
    std::fs::write(dir.join("exact.u32"), ids)?;
    let meta = serde_json::json!({
        "items": items, "queries": queries, "dim": cat.dim, "k": 10,
        "centres": centres.len(), "spread": catalog::SPREAD,
    });
    std::fs::write(dir.join("meta.json"), meta.to_string())?;
    println!("{meta}");
    Ok(())
}

fn bench(
    dir: &Path,
    m: usize,
    efs: &[usize],
    threads: usize,
    min_s: f64,
    build_threads: usize,
) -> anyhow::Result<()> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json"))?)?;
    let dim = meta["dim"].as_u64().context("meta.json: dim")? as usize;
    let k = meta["k"].as_u64().context("meta.json: k")? as usize;
    let cat = ItemIndex {
        dim,
        data: read_f32(&dir.join("catalog.f32"))?,
    };
    let q = read_f32(&dir.join("queries.f32"))?;
    let users = Embeddings {
        rows: q.len() / dim,
        dim,
        data: q,
    };
    let ids = std::fs::read(dir.join("exact.u32"))?;
    let exact: Vec<Vec<(usize, f32)>> = ids
        .chunks_exact(4 * k)
        .map(|r| {
            r.chunks_exact(4)
                .map(|c| (u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize, 0.0))
                .collect()
        })
        .collect();
    let setting = Retrieval {
        item_precision: Precision::Fp32,
        index: Index::Hnsw {
            m,
            ef: efs[0],
            build_threads,
        },
    };
    let mut search = Retriever::build(cat, setting, 1, threads, None)?;
    for &ef in efs {
        search.set_ef(ef);
        let got = search.search(&users, k)?;
        let recall = recall_at_k(&got, &exact, k);
        let mut passes = Vec::new();
        let start = Instant::now();
        while passes.len() < 3 || start.elapsed().as_secs_f64() < min_s {
            let t = Instant::now();
            std::hint::black_box(search.search(&users, k)?);
            passes.push(t.elapsed().as_secs_f64());
        }
        passes.sort_by(f64::total_cmp);
        let median = passes[passes.len() / 2];
        println!(
            "{}",
            serde_json::json!({
                "side": "recbench (USearch HNSW)", "m": m, "ef_construction": 128, "ef": ef,
                "threads": threads, "build_threads": build_threads, "build_s": search.build_s, "bytes": search.bytes,
                "qps": users.rows as f64 / median, "recall_at_10": recall, "passes": passes.len(),
                "search": search.describe(),
            })
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: ann_anchor export ITEMS QUERIES DIR | bench DIR M EF,EF,… THREADS MIN_S [BUILD_THREADS]";
    match a.first().map(String::as_str) {
        Some("export") if a.len() == 4 => export(a[1].parse()?, a[2].parse()?, Path::new(&a[3])),
        Some("bench") if a.len() == 6 || a.len() == 7 => {
            let efs: Vec<usize> = a[3]
                .split(',')
                .map(|x| x.parse())
                .collect::<Result<_, _>>()?;
            bench(
                Path::new(&a[1]),
                a[2].parse()?,
                &efs,
                a[4].parse()?,
                a[5].parse()?,
                a.get(6).map_or(Ok(1), |t| t.parse())?,
            )
        }
        _ => anyhow::bail!(usage),
    }
}
