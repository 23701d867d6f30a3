//! HNSW through USearch (the `usearch` crate, Unum's single-header C++ engine, compiled from
//! the crate's own sources): inner-product metric, the item precision as USearch's scalar
//! kind, `m` links per node, `ef_construction` 128 (FAISS's `IndexHNSWFlat` uses 40, USearch
//! 128), the run's `ef` at search. Items are added from `threads` threads at once, as USearch
//! supports once the index has reserved them.

use crate::error::{Error, Result};
use crate::recommender::ItemIndex;
use crate::spec::Precision;

/// Candidates kept while building.
pub const EF_CONSTRUCTION: usize = 128;

pub struct Hnsw {
    index: usearch::Index,
    /// Where the graph came from, when an earlier run built it: the file and its build time.
    pub loaded: Option<(std::path::PathBuf, f64)>,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Measure(format!("usearch {what}: {e}"))
}

impl Hnsw {
    pub fn build(
        catalog: &ItemIndex,
        m: usize,
        ef: usize,
        p: Precision,
        threads: usize,
    ) -> Result<Hnsw> {
        let quantization = match p {
            Precision::Fp32 => usearch::ScalarKind::F32,
            Precision::Fp16 => usearch::ScalarKind::F16,
            Precision::Bf16 => usearch::ScalarKind::BF16,
            Precision::Int8 => usearch::ScalarKind::I8,
        };
        let opts = usearch::IndexOptions {
            dimensions: catalog.dim,
            metric: usearch::MetricKind::IP,
            quantization,
            connectivity: m,
            expansion_add: EF_CONSTRUCTION,
            expansion_search: ef,
            multi: false,
        };
        let index = usearch::Index::new(&opts).map_err(|e| err("index", e))?;
        let threads = threads.max(1);
        index
            .reserve_capacity_and_threads(catalog.len(), threads)
            .map_err(|e| err("reserve", e))?;
        let (n, dim) = (catalog.len(), catalog.dim);
        let per = n.div_ceil(threads).max(1);
        let failed = std::sync::Mutex::new(None);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (index, failed) = (&index, &failed);
                s.spawn(move || {
                    for i in t * per..((t + 1) * per).min(n) {
                        if let Err(e) = index.add(i as u64, &catalog.data[i * dim..(i + 1) * dim]) {
                            *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(err("add", e));
        }
        Ok(Hnsw {
            index,
            loaded: None,
        })
    }

    /// The graph of `catalog` kept under `dir` by an earlier run with the same catalog
    /// (`catalog_key`), `m` and precision, with its search set to `ef`; else built, timed and
    /// kept there. Returns it and the seconds its build took (whichever run built it). A graph
    /// that cannot be kept is only noted: the run goes on with the one it built.
    #[allow(clippy::too_many_arguments)]
    pub fn build_or_load(
        catalog: &ItemIndex,
        m: usize,
        ef: usize,
        p: Precision,
        threads: usize,
        dir: &std::path::Path,
        catalog_key: &str,
    ) -> Result<(Hnsw, f64)> {
        let path = dir.join(format!(
            "hnsw-{catalog_key}-m{m}-efc{EF_CONSTRUCTION}-{p}.usearch"
        ));
        let meta = path.with_extension("build-s");
        let kept = std::fs::read_to_string(&meta)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok());
        if let (Some(build_s), true) = (kept, path.exists()) {
            let h = Hnsw::build(
                &ItemIndex {
                    dim: catalog.dim,
                    data: vec![],
                },
                m,
                ef,
                p,
                1,
            )?;
            let loaded = path
                .to_str()
                .ok_or_else(|| err("load", "a cache path that is not UTF-8"))
                .and_then(|s| h.index.load(s).map_err(|e| err("load", e)));
            if loaded.is_ok() && h.index.size() == catalog.len() {
                h.index.change_expansion_search(ef);
                return Ok((
                    Hnsw {
                        loaded: Some((path, build_s)),
                        ..h
                    },
                    build_s,
                ));
            }
        }
        let t = std::time::Instant::now();
        let h = Hnsw::build(catalog, m, ef, p, threads)?;
        let build_s = t.elapsed().as_secs_f64();
        let _ = std::fs::create_dir_all(dir);
        let tmp = path.with_extension("partial");
        if let Some(s) = tmp.to_str() {
            if h.index.save(s).is_ok() && std::fs::rename(&tmp, &path).is_ok() {
                let _ = std::fs::write(&meta, format!("{build_s}\n"));
            }
        }
        Ok((h, build_s))
    }

    /// Candidates kept while searching, from now on.
    pub fn set_ef(&self, ef: usize) {
        self.index.change_expansion_search(ef);
    }

    /// Bytes USearch reports for the index (graph and vectors).
    pub fn bytes(&self) -> u64 {
        self.index.memory_usage() as u64
    }

    /// The SIMD kernels USearch picked on this CPU.
    pub fn isa(&self) -> String {
        self.index.hardware_acceleration()
    }

    /// Top-`k` of each row, rows split across `threads`. USearch's inner-product distance is
    /// `1 − dot`; the score returned is the dot.
    pub fn search(
        &self,
        users: &crate::backend::Embeddings,
        k: usize,
        threads: usize,
    ) -> Result<Vec<Vec<(usize, f32)>>> {
        let one = |u: usize| -> Result<Vec<(usize, f32)>> {
            let m = self
                .index
                .search(users.row(u), k)
                .map_err(|e| err("search", e))?;
            Ok(m.keys
                .iter()
                .zip(&m.distances)
                .map(|(id, d)| (*id as usize, 1.0 - d))
                .collect())
        };
        let rows = users.rows;
        let threads = threads.clamp(1, rows.max(1));
        if threads == 1 {
            return (0..rows).map(one).collect();
        }
        let per = rows.div_ceil(threads);
        std::thread::scope(|s| {
            let hs: Vec<_> = (1..threads)
                .map(|t| {
                    let one = &one;
                    s.spawn(move || (t * per..((t + 1) * per).min(rows)).map(one).collect())
                })
                .collect();
            let mut out: Vec<Vec<(usize, f32)>> =
                (0..per.min(rows)).map(one).collect::<Result<_>>()?;
            for h in hs {
                let part: Result<Vec<_>> = h.join().expect("search thread");
                out.extend(part?);
            }
            Ok(out)
        })
    }
}
