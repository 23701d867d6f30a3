//! HNSW through USearch (the `usearch` crate, Unum's single-header C++ engine, compiled from
//! the crate's own sources): inner-product metric, the item precision as USearch's scalar
//! kind, `m` links per node, `ef_construction` 128 (FAISS's `IndexHNSWFlat` uses 40, USearch
//! 128), the run's `ef` at search.
//!
//! Items are inserted by one thread, in catalog order, unless the index names `build_threads`.
//! One thread builds the same graph every time (given the same distance kernel). USearch's
//! concurrent insertion does not, and on
//! the anchor's 100,000 clustered items (`scripts/bench/ann_anchor.sh`, Zen 4, 2 threads) its
//! graphs lost up to 0.15% of recall@10 that no `ef` recovered (0.9985–1.0 over four builds,
//! against 1.0 for every one-thread build); a serial prefix of 2,000 items did not help. The
//! one-thread build takes about 1.8× as long, once per graph: graphs are kept
//! ([`Hnsw::build_or_load`]). Searches run on the run's threads either way.
//!
//! Distances: USearch's own fp32 inner product is NumKong's, which sums the products in fp64
//! (8 lanes a step); recbench's kernels sum them in fp32, as FAISS does. Which of them an fp32
//! graph measures with is raced on the catalog's own rows each time a graph
//! is built or loaded ([`Metric`]), and the run's notes say which won and by how much.

use crate::error::{Error, Result};
use crate::recommender::ItemIndex;
use crate::spec::Precision;

use super::kernels;

/// Candidates kept while building.
pub const EF_CONSTRUCTION: usize = 128;

/// The fp32 inner-product kernel a graph measures distances with.
#[derive(Clone, Copy, Debug)]
pub enum Metric {
    /// USearch's own (NumKong's, fp64 sums); the only one for items stored below fp32.
    NumKong,
    /// One of recbench's `kernels::dot_f32_kernels` (fp32 sums), set as USearch's custom metric.
    Recbench(kernels::DotF32),
}

/// The kernel chosen and the race behind it: each candidate's milliseconds for [`RACE_DOTS`]
/// dot products of catalog rows (empty when nothing was raced).
#[derive(Clone, Debug)]
pub struct MetricChoice {
    pub metric: Metric,
    pub raced_ms: Vec<(String, f64)>,
}

/// Dot products each kernel computes per timed call of the race, as a graph search computes
/// them: one of a few queries (in cache) against an item drawn at random from the whole
/// catalog (a read from memory), the same draws for every kernel.
pub const RACE_DOTS: usize = 16_384;
const RACE_QUERIES: usize = 16;

/// Races NumKong's fp32 dot product against each of recbench's on `catalog`'s rows (the best
/// of 3 interleaved calls each, `tuning::race_all`) and returns the fastest. Items below fp32
/// keep USearch's kernel for their scalar kind, unraced.
pub fn choose_metric(catalog: &ItemIndex, p: Precision) -> MetricChoice {
    let rows = catalog.len();
    if p != Precision::Fp32 || rows < 2 {
        return MetricChoice {
            metric: Metric::NumKong,
            raced_ms: vec![],
        };
    }
    let dim = catalog.dim;
    let row = |i: usize| &catalog.data[i * dim..(i + 1) * dim];
    let mut draw = crate::util::rand::SplitMix64::new(0x5eed);
    let items: Vec<usize> = (0..RACE_DOTS)
        .map(|_| (draw.next_u64() % rows as u64) as usize)
        .collect();
    let queries = RACE_QUERIES.min(rows);
    let pair = |k: usize| (row(k % queries), row(items[k]));
    let ours = kernels::dot_f32_kernels();
    let mut candidates: Vec<Box<dyn FnMut() -> std::result::Result<(), ()> + '_>> =
        vec![Box::new(|| {
            let mut s = 0.0f64;
            for k in 0..RACE_DOTS {
                let (a, b) = pair(k);
                s += <f32 as numkong::Dot>::dot(a, b).unwrap_or(0.0);
            }
            std::hint::black_box(s);
            Ok(())
        })];
    for &(_, f) in &ours {
        candidates.push(Box::new(move || {
            let mut s = 0.0f32;
            for k in 0..RACE_DOTS {
                let (a, b) = pair(k);
                s += f(a, b);
            }
            std::hint::black_box(s);
            Ok(())
        }));
    }
    let ms = crate::tuning::race_all(&mut candidates).unwrap_or_default();
    drop(candidates);
    let metrics: Vec<Metric> = std::iter::once(Metric::NumKong)
        .chain(ours.iter().map(|&k| Metric::Recbench(k)))
        .collect();
    let best = (0..ms.len())
        .min_by(|&i, &j| ms[i].total_cmp(&ms[j]))
        .unwrap_or(0);
    MetricChoice {
        metric: metrics[best],
        raced_ms: metrics
            .iter()
            .zip(&ms)
            .map(|(m, t)| (m.name(), *t))
            .collect(),
    }
}

impl Metric {
    fn name(&self) -> String {
        match self {
            Metric::NumKong => "NumKong's".into(),
            Metric::Recbench((name, _)) => format!("recbench's {name}"),
        }
    }
}

/// Makes `index` (fp32 items, `dim` wide) measure with `metric`: one of recbench's kernels as
/// USearch's custom metric (`1 − dot`, USearch's inner-product distance), or USearch's own.
fn set_metric(index: &mut usearch::Index, dim: usize, metric: Metric) -> Result<()> {
    match metric {
        Metric::NumKong => index.change_metric_kind(usearch::MetricKind::IP),
        Metric::Recbench((_, dot)) => <f32 as usearch::VectorType>::change_metric(
            index,
            Box::new(move |a, b| {
                // SAFETY: USearch calls the metric of an fp32 index with two vectors of its
                // `dimensions` (a stored item and a stored item or the query), each `dim` f32s.
                let (a, b) = unsafe {
                    (
                        std::slice::from_raw_parts(a, dim),
                        std::slice::from_raw_parts(b, dim),
                    )
                };
                1.0 - dot(a, b)
            }),
        ),
    }
    .map_err(|e| err("metric", e))
}

pub struct Hnsw {
    index: usearch::Index,
    /// The distance kernel it measures with, and the race that chose it.
    pub metric: MetricChoice,
    /// Where the graph came from, when an earlier run built it: the file and its build time.
    pub loaded: Option<(std::path::PathBuf, f64)>,
}

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Measure(format!("usearch {what}: {e}"))
}

/// What a graph is built from, besides the items: it names the graph a run keeps.
#[derive(Clone, Copy, Debug)]
pub struct Graph {
    /// Links per node.
    pub m: usize,
    /// The items' scalar kind in the graph.
    pub precision: Precision,
    /// Threads inserting items at once.
    pub build_threads: usize,
}

impl Hnsw {
    /// `catalog`'s graph, searching with `ef` from `search_threads` threads.
    pub fn build(
        catalog: &ItemIndex,
        graph: Graph,
        ef: usize,
        search_threads: usize,
    ) -> Result<Hnsw> {
        let Graph {
            m,
            precision: p,
            build_threads,
        } = graph;
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
        let mut index = usearch::Index::new(&opts).map_err(|e| err("index", e))?;
        let metric = choose_metric(catalog, p);
        set_metric(&mut index, catalog.dim, metric.metric)?;
        let threads = build_threads.max(1);
        index
            .reserve_capacity_and_threads(catalog.len(), threads.max(search_threads))
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
            metric,
            loaded: None,
        })
    }

    /// The graph of `catalog` kept under `dir` by an earlier run with the same catalog
    /// (`catalog_key`) and `graph`, with its search set to `ef`; else built, timed and kept
    /// there. Returns it and the seconds its build took (whichever run built it). A graph that
    /// cannot be kept is only noted: the run goes on with the one it built.
    pub fn build_or_load(
        catalog: &ItemIndex,
        graph: Graph,
        ef: usize,
        search_threads: usize,
        dir: &std::path::Path,
        catalog_key: &str,
    ) -> Result<(Hnsw, f64)> {
        let Graph {
            m,
            precision: p,
            build_threads,
        } = graph;
        let path = dir.join(format!(
            "hnsw-{catalog_key}-m{m}-efc{EF_CONSTRUCTION}-{p}-b{build_threads}.usearch"
        ));
        let meta = path.with_extension("build-s");
        let kept = std::fs::read_to_string(&meta)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok());
        if let (Some(build_s), true) = (kept, path.exists()) {
            let mut h = Hnsw::build(
                &ItemIndex {
                    dim: catalog.dim,
                    data: vec![],
                },
                graph,
                ef,
                1,
            )?;
            let loaded = path
                .to_str()
                .ok_or_else(|| err("load", "a cache path that is not UTF-8"))
                .and_then(|s| h.index.load(s).map_err(|e| err("load", e)));
            if loaded.is_ok() && h.index.size() == catalog.len() {
                // Loading sets USearch's own metric back: race and set it as a build does.
                // The searches need one context per thread, as a build reserves.
                h.index
                    .reserve_capacity_and_threads(catalog.len(), search_threads.max(1))
                    .map_err(|e| err("reserve", e))?;
                h.metric = choose_metric(catalog, p);
                set_metric(&mut h.index, catalog.dim, h.metric.metric)?;
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
        let h = Hnsw::build(catalog, graph, ef, search_threads)?;
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

    /// Measures distances with `metric` from now on (the graph stays as it was built).
    #[cfg(test)]
    pub fn use_metric(&mut self, metric: Metric) -> Result<()> {
        let dim = self.index.dimensions();
        set_metric(&mut self.index, dim, metric)?;
        self.metric = MetricChoice {
            metric,
            raced_ms: vec![],
        };
        Ok(())
    }

    /// Candidates kept while searching, from now on.
    pub fn set_ef(&self, ef: usize) {
        self.index.change_expansion_search(ef);
    }

    /// Bytes USearch reports for the index (graph and vectors).
    pub fn bytes(&self) -> u64 {
        self.index.memory_usage() as u64
    }

    /// The distance kernel it measures with, and why, for the run's notes.
    pub fn kernel(&self) -> String {
        let which = match self.metric.metric {
            Metric::NumKong => format!(
                "USearch's own {} kernel",
                self.index.hardware_acceleration()
            ),
            m => format!("{} kernel", m.name()),
        };
        if self.metric.raced_ms.is_empty() {
            return format!("distances by {which}");
        }
        let times: Vec<String> = (self.metric.raced_ms.iter())
            .map(|(name, ms)| format!("{name} {ms:.2} ms"))
            .collect();
        format!(
            "distances by {which}, chosen by measurement: {RACE_DOTS} dot products took {}",
            times.join(", ")
        )
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
