//! The recommender's other half: searching the catalog for a two-tower request's top-k.
//!
//! A catalog shaped like a real one ([`catalog`]), stored at a retrieval precision ([`items`]),
//! searched by a full scan or an approximate index ([`ivf`]; HNSW through USearch with the
//! `ann` feature), and the recall of that search against an exact fp32 scan of the same
//! catalog for the same queries. The exact fp32 scan is `ItemIndex::scores` (the `gemm` crate)
//! and the one-pass top-k; every other setting is timed, built and measured here.

pub mod catalog;
#[cfg(feature = "ann")]
mod hnsw;
mod items;
mod ivf;
mod kernels;

use std::time::Instant;

use crate::backend::Embeddings;
use crate::error::{Error, Result};
use crate::recommender::{top_k_rows, ItemIndex};
use crate::spec::{Index, Precision, Retrieval};

/// Every item scored in fp32 (`Retrieval::EXACT_FP32`).
pub const EXACT_FP32: Retrieval = Retrieval::EXACT_FP32;

/// A built search of one catalog.
pub struct Retriever {
    how: How,
    setting: Retrieval,
    /// Seconds the build took (quantizing, training, linking).
    pub build_s: f64,
    /// Bytes of what the search reads: the stored items and the index around them.
    pub bytes: u64,
    threads: usize,
}

enum How {
    /// The catalog in fp32, scored with the GEMM.
    ExactF32(ItemIndex),
    /// The catalog at a lower precision, every item scored.
    Exact {
        dim: usize,
        items: items::Items,
    },
    Ivf(ivf::Ivf),
    #[cfg(feature = "ann")]
    Hnsw(hnsw::Hnsw),
}

/// Whether this build can search with `index` (HNSW needs the `ann` feature).
pub fn supports(index: Index) -> std::result::Result<(), String> {
    index.available()
}

impl Retriever {
    /// Builds `setting`'s search of `catalog` (fp32, unit rows) with `threads` threads. With
    /// `keep` (a folder and the catalog's [`catalog::key`]) an HNSW graph is kept there and
    /// loaded by later runs of the same catalog, `m` and precision (its build takes minutes at
    /// 10^6 items); its recorded build time is then the run's that built it.
    pub fn build(
        catalog: ItemIndex,
        setting: Retrieval,
        seed: u64,
        threads: usize,
        keep: Option<(&std::path::Path, &str)>,
    ) -> Result<Self> {
        supports(setting.index).map_err(Error::Measure)?;
        #[cfg(not(feature = "ann"))]
        let _ = keep;
        let t = Instant::now();
        let dim = catalog.dim;
        // The build's seconds, unless the graph was kept by the run that built it.
        let (how, kept_s) = match (setting.index, setting.item_precision) {
            (Index::Exact, Precision::Fp32) => (How::ExactF32(catalog), None),
            (Index::Exact, p) => (
                How::Exact {
                    dim,
                    items: items::Items::store(&catalog.data, dim, p),
                },
                None,
            ),
            (Index::Ivf { nlist, nprobe }, p) => (
                How::Ivf(ivf::Ivf::build(&catalog, nlist, nprobe, p, seed, threads)),
                None,
            ),
            #[cfg(feature = "ann")]
            (
                Index::Hnsw {
                    m,
                    ef,
                    build_threads,
                },
                p,
            ) => {
                let graph = hnsw::Graph {
                    m,
                    precision: p,
                    build_threads,
                };
                match keep {
                    Some((dir, key)) => {
                        let (h, s) =
                            hnsw::Hnsw::build_or_load(&catalog, graph, ef, threads, dir, key)?;
                        (How::Hnsw(h), Some(s))
                    }
                    None => (
                        How::Hnsw(hnsw::Hnsw::build(&catalog, graph, ef, threads)?),
                        None,
                    ),
                }
            }
            #[cfg(not(feature = "ann"))]
            (Index::Hnsw { .. }, _) => unreachable!("refused by `supports` above"),
        };
        let build_s = kept_s.unwrap_or(t.elapsed().as_secs_f64());
        let bytes = match &how {
            How::ExactF32(c) => c.data.len() as u64 * 4,
            How::Exact { items, .. } => items.bytes(),
            How::Ivf(i) => i.bytes(),
            #[cfg(feature = "ann")]
            How::Hnsw(h) => h.bytes(),
        };
        Ok(Retriever {
            how,
            setting,
            build_s,
            bytes,
            threads,
        })
    }

    /// Top-`k` (catalog row, score) of each row of `users`, best first.
    pub fn search(&self, users: &Embeddings, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
        Ok(match &self.how {
            How::ExactF32(c) => {
                top_k_rows(&c.scores(users, self.threads), c.len(), k, self.threads)
            }
            How::Exact { dim, items } => {
                let n = items_len(items, *dim);
                let scores = score_all(items, *dim, n, users, self.threads);
                top_k_rows(&scores, n, k, self.threads)
            }
            How::Ivf(i) => i.search(users, k, self.threads),
            #[cfg(feature = "ann")]
            How::Hnsw(h) => h.search(users, k, self.threads)?,
        })
    }

    /// An HNSW search's `ef` changed on the built graph (the ANN anchor sweeps it); false for
    /// every other search, which has no `ef`.
    pub fn set_ef(&mut self, ef: usize) -> bool {
        match &mut self.how {
            #[cfg(feature = "ann")]
            How::Hnsw(h) => {
                h.set_ef(ef);
                if let Index::Hnsw { ef: old, .. } = &mut self.setting.index {
                    *old = ef;
                }
                true
            }
            _ => {
                let _ = ef;
                false
            }
        }
    }

    /// What was built, for the run's notes.
    pub fn describe(&self) -> String {
        let what = match &self.how {
            How::ExactF32(_) => "full scan, fp32 GEMM (the `gemm` crate)".to_string(),
            How::Exact { .. } => format!(
                "full scan, {} items scored by recbench's {} kernels",
                self.setting.item_precision,
                kernels::isa()
            ),
            How::Ivf(i) => {
                let (max, mean) = i.cell_sizes();
                format!(
                    "IVF-Flat: spherical k-means cells (mean {mean:.0} items, largest {max}), {} \
                     items scanned by recbench's {} kernels",
                    self.setting.item_precision,
                    kernels::isa()
                )
            }
            #[cfg(feature = "ann")]
            How::Hnsw(h) => format!(
                "HNSW by USearch ({}), ef_construction {}{}",
                h.kernel(),
                hnsw::EF_CONSTRUCTION,
                match &h.loaded {
                    Some((path, _)) => format!(
                        "; the graph loaded from {} (the build time is that of the run that \
                         built it)",
                        path.display()
                    ),
                    None => String::new(),
                }
            ),
        };
        format!(
            "{} ({what}); built in {:.2} s, {:.1} MiB",
            self.setting,
            self.build_s,
            self.bytes as f64 / (1u64 << 20) as f64
        )
    }
}

fn items_len(items: &items::Items, dim: usize) -> usize {
    match items {
        items::Items::F32(v) => v.len() / dim.max(1),
        items::Items::F16(v) => v.len() / dim.max(1),
        items::Items::Bf16(v) => v.len() / dim.max(1),
        items::Items::I8 { scale, .. } => scale.len(),
    }
}

/// `[users, n]` scores of every item at its precision, items split across `threads` (each item
/// read once for all the users).
fn score_all(
    items: &items::Items,
    dim: usize,
    n: usize,
    users: &Embeddings,
    threads: usize,
) -> Vec<f32> {
    let m = users.rows;
    let queries: Vec<items::Query> = (0..m).map(|u| items.query(users.row(u))).collect();
    let threads = threads.clamp(1, n.max(1));
    let per = n.div_ceil(threads).max(1);
    // Each thread fills its items' columns in a block of its own, then they are interleaved.
    let blocks: Vec<Vec<f32>> = std::thread::scope(|s| {
        let queries = &queries;
        let work = move |j0: usize| {
            let j1 = (j0 + per).min(n);
            let mut out = vec![0.0f32; m * (j1 - j0)];
            for j in j0..j1 {
                for (u, q) in queries.iter().enumerate() {
                    out[u * (j1 - j0) + (j - j0)] = items.score(dim, q, j);
                }
            }
            out
        };
        let hs: Vec<_> = (per..n)
            .step_by(per)
            .map(|j0| s.spawn(move || work(j0)))
            .collect();
        let mut blocks = vec![work(0)];
        blocks.extend(hs.into_iter().map(|h| h.join().expect("scoring thread")));
        blocks
    });
    let mut scores = vec![0.0f32; m * n];
    for (b, block) in blocks.iter().enumerate() {
        let (j0, w) = (b * per, block.len() / m.max(1));
        for u in 0..m {
            scores[u * n + j0..u * n + j0 + w].copy_from_slice(&block[u * w..(u + 1) * w]);
        }
    }
    scores
}

/// recall@k: the share of each exact top-`k` that the search returned, averaged over the
/// queries (ids compared as sets; a query whose exact top-k is empty is left out).
pub fn recall_at_k(got: &[Vec<(usize, f32)>], exact: &[Vec<(usize, f32)>], k: usize) -> f64 {
    let mut sum = 0.0;
    let mut counted = 0;
    for (g, e) in got.iter().zip(exact) {
        let want: Vec<usize> = e.iter().take(k).map(|x| x.0).collect();
        if want.is_empty() {
            continue;
        }
        let hit = g.iter().take(k).filter(|x| want.contains(&x.0)).count();
        sum += hit as f64 / want.len() as f64;
        counted += 1;
    }
    if counted == 0 {
        f64::NAN
    } else {
        sum / counted as f64
    }
}

#[cfg(test)]
mod tests;
