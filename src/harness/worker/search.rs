//! A two-tower run's catalog search outside the timed loop: the query set its recall is
//! measured on, the exact fp32 top-k of those queries, the recall of the run's own search
//! (recbench's retrieval on the host, or the backend's on its device), and the check that a
//! device's ranking is float64 host scoring's before a run is timed.

use super::inputs;
use crate::backend::{self, Embeddings, Encoder, Ranked};
use crate::error::Result;
use crate::model::{TokenBatch, Tokenizer};
use crate::recommender::{self, top_k_rows, ItemIndex};
use crate::spec::{Mode, RunSpec};

/// Requests whose top-k the recall is measured on.
pub const QUERIES: usize = 100;

/// Rows of the exact scan at a time (its score matrix: rows × catalog floats).
const EXACT_ROWS: usize = 8;

/// The query requests: the first [`QUERIES`] requests of the run's token stream (the timed
/// batch is their first rows).
pub fn query_batch(
    spec: &RunSpec,
    tok: &Tokenizer,
    items: &[recommender::Item],
) -> Result<TokenBatch> {
    let stream = inputs::token_stream(tok, items)?;
    inputs::bench_batch(tok, &stream, Mode::TwoTower, QUERIES, 1, spec.seq_len)
}

/// The chunks of `batch` the run encodes at a time (its own batch size).
fn chunks(batch: &TokenBatch, per: usize) -> impl Iterator<Item = TokenBatch> + '_ {
    let per = per.max(1);
    (0..batch.batch)
        .step_by(per)
        .map(move |s| batch.rows(s, per.min(batch.batch - s)))
}

/// The encoder's embeddings of every row of `batch`, `per` rows a forward.
pub fn encode(enc: &mut dyn Encoder, batch: &TokenBatch, per: usize) -> Result<Embeddings> {
    let mut out = Embeddings {
        rows: 0,
        dim: 0,
        data: vec![],
    };
    for part in chunks(batch, per) {
        let e = enc.encode(&part)?;
        out.rows += e.rows;
        out.dim = e.dim;
        out.data.extend(e.data);
    }
    Ok(out)
}

/// The exact top-`k` of each query over the fp32 `catalog` (the `gemm` crate, a few rows at a
/// time).
pub fn exact_top(
    catalog: &ItemIndex,
    queries: &Embeddings,
    k: usize,
    threads: usize,
) -> Vec<Vec<(usize, f32)>> {
    let n = catalog.len();
    let mut out = Vec::with_capacity(queries.rows);
    for s in (0..queries.rows).step_by(EXACT_ROWS) {
        let rows = EXACT_ROWS.min(queries.rows - s);
        let part = Embeddings {
            rows,
            dim: queries.dim,
            data: queries.data[s * queries.dim..(s + rows) * queries.dim].to_vec(),
        };
        out.extend(top_k_rows(&catalog.scores(&part, threads), n, k, threads));
    }
    out
}

/// The device's own top-`k` of each query, `per` rows a forward (the backend holds the
/// catalog: `load_items` has run).
pub fn on_device(
    enc: &mut dyn Encoder,
    batch: &TokenBatch,
    per: usize,
    k: usize,
) -> Result<Vec<Vec<(usize, f32)>>> {
    let mut out = Vec::new();
    for part in chunks(batch, per) {
        out.extend(enc.encode_and_rank(&part, k)?.top);
    }
    Ok(out)
}

/// Score tolerance of device scoring against float64 on the same embeddings: the scoring
/// precision's rounding of unit vectors' dot products (f16 on a GPU's fp16 run, bf16 on its
/// bf16 run, f32 elsewhere).
pub(super) fn ranking_tolerance(spec: &RunSpec) -> f64 {
    match (spec.device, spec.precision) {
        (backend::Device::Cuda(_), backend::Precision::Fp16) => 4e-3,
        (backend::Device::Cuda(_), backend::Precision::Bf16) => 3e-2,
        _ => 1e-4,
    }
}

/// Whether `a` and `b` are within `tol` of each other (false when either is NaN).
fn within(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Whether `ranked` is the top-`k` of `users` · `index`ᵀ computed in float64, ties aside: at
/// every rank its score is within `tol` of the float64 score at that rank, and each id it
/// returns has a float64 score within `tol` of the score it reported (so a near-tie may come in
/// either order, but a wrong item, a missing one or a wrong score fails).
pub fn check_ranking(
    users: &Embeddings,
    index: &ItemIndex,
    ranked: &Ranked,
    k: usize,
    tol: f64,
) -> std::result::Result<(), String> {
    if ranked.top.len() != users.rows {
        return Err(format!(
            "{} rows ranked for {} users",
            ranked.top.len(),
            users.rows
        ));
    }
    let n = index.len();
    for (r, got) in ranked.top.iter().enumerate() {
        let u = users.row(r);
        let exact: Vec<f64> = (0..n)
            .map(|j| {
                let item = &index.data[j * index.dim..(j + 1) * index.dim];
                u.iter().zip(item).map(|(a, b)| *a as f64 * *b as f64).sum()
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|a, b| exact[*b].total_cmp(&exact[*a]));
        if got.len() != k.min(n) {
            return Err(format!("row {r}: {} ids for top-{k}", got.len()));
        }
        for (rank, &(id, score)) in got.iter().enumerate() {
            let want = exact[order[rank]];
            if !within(score as f64, want, tol) {
                return Err(format!(
                    "row {r}, rank {rank}: score {score} where float64 has {want:.6}"
                ));
            }
            let Some(&own) = exact.get(id) else {
                return Err(format!("row {r}, rank {rank}: id {id} of {n} items"));
            };
            if !within(score as f64, own, tol) {
                return Err(format!(
                    "row {r}, rank {rank}: id {id} has float64 score {own:.6}, not the {score} reported"
                ));
            }
        }
        let mut ids: Vec<usize> = got.iter().map(|x| x.0).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != got.len() {
            return Err(format!("row {r}: an id appears twice"));
        }
    }
    Ok(())
}
