//! Sub-batches on the CPU: a batch encoded as a few smaller ones where that is faster on this
//! host, by measurement. A CPU forward's activations grow with the batch; past the caches, the
//! passes between the GEMMs (quantizing, epilogues, LayerNorm, GELU) run from memory. On the
//! 2-vCPU AMX VM of docs/benchmarks/README.md, torch int8 took 20% longer per sequence at batch
//! 32 than at batch 8, and fp32 5% longer. The batch size is still the run's: a request waits
//! for its whole batch, and the latencies are of whole batches.

use std::time::Instant;

use crate::backend::{Device, Embeddings, Encoder, ItemsRef, Ranked};
use crate::error::{Error, Result};
use crate::model::TokenBatch;
use crate::spec::RunSpec;
use crate::tuning::choices;

/// `RECBENCH_SUB_BATCH`: `auto` (or unset) chooses by measurement on CPU runs; `off` never
/// splits; a number `n` splits batches into sub-batches of at most `n` sequences.
pub const ENV: &str = "RECBENCH_SUB_BATCH";

/// An encoder that encodes batches of more than `seqs` sequences `seqs` at a time (the last
/// sub-batch takes the rest), and hands on the results as one batch's.
pub struct SubBatched {
    pub inner: Box<dyn Encoder>,
    pub seqs: usize,
}

/// The sub-batches of `batch` at `seqs` sequences each: (first sequence, sequences).
fn parts(batch: &TokenBatch, seqs: usize) -> impl Iterator<Item = (usize, usize)> {
    let (total, step) = (batch.batch, seqs.max(1));
    (0..total)
        .step_by(step)
        .map(move |s| (s, step.min(total - s)))
}

impl Encoder for SubBatched {
    fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings> {
        if batch.batch <= self.seqs {
            return self.inner.encode(batch);
        }
        let mut out = Embeddings {
            rows: 0,
            dim: 0,
            data: Vec::new(),
        };
        for (start, n) in parts(batch, self.seqs) {
            let e = self.inner.encode(&batch.rows(start, n))?;
            out.rows += e.rows;
            out.dim = e.dim;
            out.data.extend_from_slice(&e.data);
        }
        Ok(out)
    }

    fn load_items(&mut self, items: ItemsRef<'_>) -> Result<Option<String>> {
        self.inner.load_items(items)
    }

    fn encode_and_rank(&mut self, batch: &TokenBatch, k: usize) -> Result<Ranked> {
        if batch.batch <= self.seqs {
            return self.inner.encode_and_rank(batch, k);
        }
        let mut out = Ranked {
            top: Vec::with_capacity(batch.batch),
            encode_ms: 0.0,
            score_ms: 0.0,
        };
        for (start, n) in parts(batch, self.seqs) {
            let r = self.inner.encode_and_rank(&batch.rows(start, n), k)?;
            out.top.extend(r.top);
            out.encode_ms += r.encode_ms;
            out.score_ms += r.score_ms;
        }
        Ok(out)
    }

    fn kernels(&self) -> Option<String> {
        self.inner.kernels()
    }

    fn op_times(&mut self) -> Option<String> {
        self.inner.op_times()
    }

    fn cache_tag(&self) -> Option<String> {
        self.inner.cache_tag()
    }
}

/// `RECBENCH_SUB_BATCH` read: `None` for `auto`, `Some(None)` for `off`, `Some(Some(n))` for a
/// size; an error names it when it is none of those (the sweep checks it before its first run).
pub fn setting() -> Result<Option<Option<usize>>> {
    match std::env::var(ENV).ok().as_deref() {
        None | Some("") | Some("auto") => Ok(None),
        Some("off") => Ok(Some(None)),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(Some(Some(n))),
            _ => Err(Error::input(
                "<environment>",
                None,
                ENV,
                format!("{v:?}: expected auto, off or a number of sequences ≥ 1"),
            )),
        },
    }
}

/// The sizes raced for a batch of `batch`: the whole batch, a half and a quarter.
pub fn candidates(batch: usize) -> Vec<usize> {
    let mut c = vec![batch];
    for d in [2, 4] {
        let s = batch / d;
        if s >= 1 && !c.contains(&s) {
            c.push(s);
        }
    }
    c
}

/// Milliseconds of encoding `batch` in sub-batches of `seqs` each, once.
fn time_once(enc: &mut Box<dyn Encoder>, batch: &TokenBatch, seqs: usize) -> Result<f64> {
    let t = Instant::now();
    for (start, n) in parts(batch, seqs) {
        std::hint::black_box(enc.encode(&batch.rows(start, n))?);
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// How much faster a split must be than the whole batch to be kept. Two equal sides differed
/// by up to 4% in single rounds on the AMX VM (`scripts/bench/env_ab.sh` at batch 8, where both
/// sides kept whole batches), and with a 2% margin the race kept splits at batch 8 that whole
/// runs then found 6% slower.
pub const MARGIN: f64 = 0.05;

/// Rounds of the race, after one untimed pass.
const ROUNDS: usize = 5;

/// Times `batch` encoded whole and in each smaller [`candidates`] size, side by side: one
/// untimed pass over them all, then [`ROUNDS`] rounds, each in a rotated order (so none is always
/// first after the parity check's encodes), the median per size. The fastest is kept, the
/// whole batch unless a split is more than [`MARGIN`] faster; with "<kept>: <n> at a time <ms>
/// ms, …" to remember.
fn race(enc: &mut Box<dyn Encoder>, batch: &TokenBatch) -> Result<(usize, String)> {
    let sizes = candidates(batch.batch);
    let mut ms = vec![Vec::with_capacity(ROUNDS); sizes.len()];
    for &seqs in &sizes {
        time_once(enc, batch, seqs)?;
    }
    for round in 0..ROUNDS {
        for i in 0..sizes.len() {
            let c = (i + round) % sizes.len();
            ms[c].push(time_once(enc, batch, sizes[c])?);
        }
    }
    let timed: Vec<(usize, f64)> = sizes
        .iter()
        .zip(&ms)
        .map(|(&s, t)| (s, crate::stats::median(t)))
        .collect();
    let mut best = timed[0];
    for &(s, t) in &timed[1..] {
        if t < best.1 && t < timed[0].1 * (1.0 - MARGIN) {
            best = (s, t);
        }
    }
    let times: Vec<String> = timed
        .iter()
        .map(|(s, t)| format!("{s} at a time {t:.2} ms"))
        .collect();
    Ok((best.0, format!("{}: {}", best.0, times.join(", "))))
}

/// The sub-batch size for this run on the CPU (the whole batch where that was fastest), and the
/// note that says how it was chosen; `None` when nothing is split (a batch of one, or `off`).
/// `key` names what the timing depends on besides the host and build (backend, precision,
/// model, shape, threads, the encoder's kernel choices).
pub fn decide(
    enc: &mut Box<dyn Encoder>,
    batch: &TokenBatch,
    key: &str,
) -> Result<Option<(usize, String)>> {
    let whole = batch.batch;
    match setting()? {
        Some(None) => return Ok(None),
        Some(Some(n)) if n >= whole => return Ok(None),
        Some(Some(n)) => {
            return Ok(Some((
                n,
                format!("sub-batches: {whole} sequences encoded {n} at a time ({ENV}={n})"),
            )))
        }
        None if whole < 2 => return Ok(None),
        None => {}
    }
    let key = format!("{key}/{}", choices::host());
    let decided = choices::recall_or_measure(
        "sub_batch",
        &key,
        |v| v.split_once(": ")?.0.parse::<usize>().ok(),
        || race(enc, batch),
    )?;
    let timings = decided.how.split_once(": ").map_or("", |(_, t)| t);
    let note = format!(
        "sub-batches: {whole} sequences encoded {} at a time ({timings} per batch of {whole}), {}",
        decided.value,
        decided.provenance()
    );
    Ok(Some((decided.value, note)))
}

/// For a run of `spec` on model `model` (its identity): on the CPU, the decision on `batch`
/// with `enc`, its note pushed onto `notes`; returns the sub-batch size to [`wrap`] the run's
/// encoders with, when smaller than the batch.
pub fn for_run(
    spec: &RunSpec,
    model: &str,
    enc: &mut Box<dyn Encoder>,
    batch: &TokenBatch,
    notes: &mut Vec<String>,
) -> Result<Option<usize>> {
    if spec.device != Device::Cpu {
        return Ok(None);
    }
    let key = format!(
        "{}/{}/{model}/{}x{}/{}t/{}",
        spec.backend.name(),
        spec.precision.name(),
        batch.batch,
        batch.seq_len,
        spec.threads,
        enc.cache_tag().unwrap_or_default()
    );
    Ok(decide(enc, batch, &key)?.and_then(|(seqs, note)| {
        notes.push(note);
        (seqs < batch.batch).then_some(seqs)
    }))
}

/// `enc`, encoding `seqs` sequences at a time when given.
pub fn wrap(enc: Box<dyn Encoder>, seqs: Option<usize>) -> Box<dyn Encoder> {
    match seqs {
        Some(seqs) => Box::new(SubBatched { inner: enc, seqs }),
        None => enc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes each sequence as (its first token id, the size of the call it came in), after
    /// sleeping `ms_per_call` + `ms_per_seq2` × n² ms for a call of n sequences (the second a
    /// cost that grows faster than the batch, as a CPU forward's past its caches).
    struct Fake {
        ms_per_call: f64,
        ms_per_seq2: f64,
    }

    impl Encoder for Fake {
        fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings> {
            let n = batch.batch as f64;
            std::thread::sleep(std::time::Duration::from_secs_f64(
                (self.ms_per_call + self.ms_per_seq2 * n * n) / 1e3,
            ));
            let data = (0..batch.batch)
                .flat_map(|i| [batch.input_ids[i * batch.seq_len] as f32, n as f32])
                .collect();
            Ok(Embeddings {
                rows: batch.batch,
                dim: 2,
                data,
            })
        }
    }

    fn batch(n: usize) -> TokenBatch {
        TokenBatch::from_sequences(
            (0..n as u32)
                .map(|i| (vec![100 + i, 7], vec![0, 0]))
                .collect(),
        )
    }

    /// A batch of 8 encoded 3 at a time: calls of 3, 3 and 2, and each sequence's embedding in
    /// its place, as the whole batch's would be.
    #[test]
    fn sub_batches_cover_the_batch_in_order() {
        let mut enc = SubBatched {
            inner: Box::new(Fake {
                ms_per_call: 0.0,
                ms_per_seq2: 0.0,
            }),
            seqs: 3,
        };
        let b = batch(8);
        let e = enc.encode(&b).unwrap();
        assert_eq!((e.rows, e.dim), (8, 2));
        let firsts: Vec<f32> = (0..8).map(|i| e.row(i)[0]).collect();
        assert_eq!(firsts, (100..108).map(|i| i as f32).collect::<Vec<_>>());
        let sizes: Vec<f32> = (0..8).map(|i| e.row(i)[1]).collect();
        assert_eq!(sizes, [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.0]);
        // A batch no larger than a sub-batch goes through whole.
        let e = enc.encode(&batch(2)).unwrap();
        assert_eq!(e.row(1), [101.0, 2.0]);
    }

    #[test]
    fn candidates_are_the_batch_a_half_and_a_quarter() {
        assert_eq!(candidates(32), [32, 16, 8]);
        assert_eq!(candidates(8), [8, 4, 2]);
        assert_eq!(candidates(2), [2, 1]);
        assert_eq!(candidates(1), [1]);
    }

    /// Where a call's cost grows with the square of its size, the race keeps the smallest
    /// size (a quarter: 4 calls of 2 cost 16 units where the whole costs 64), and its text
    /// names every size raced; where a call costs the same whatever its size, the batch stays
    /// whole.
    #[test]
    fn the_race_keeps_the_fastest_size() {
        let mut enc: Box<dyn Encoder> = Box::new(Fake {
            ms_per_call: 0.0,
            ms_per_seq2: 0.5,
        });
        let (best, how) = race(&mut enc, &batch(8)).unwrap();
        assert_eq!(best, 2, "{how}");
        assert!(how.starts_with("2: 8 at a time "), "{how}");
        assert!(
            how.contains("4 at a time") && how.contains("2 at a time"),
            "{how}"
        );
    }
}
