//! The worker: one run, in its own process.
//!
//! Loads the model on the run's backend, checks parity against the reference, builds the inputs,
//! warms up, then measures until both `min_s` and `min_queries` are met (or `max_s` is reached).
//! The parent reads the [`RunResult`] it writes; a crash here costs only this run.

use std::hint::black_box;
use std::time::Instant;

use super::{inputs, parity, server};
use crate::backend::{self, Embeddings, Encoder, EncoderOptions};
use crate::error::{Error, Result};
use crate::model::{ModelFiles, TokenBatch, Tokenizer};
use crate::recommender::{self, ItemIndex};
use crate::results::{Compute, Memory, RetrievalResult, RunResult, Split, Status, Throughput};
use crate::retrieval::{self, Retriever};
use crate::spec::{Load, Mode, RunSpec, Scoring};
use crate::stats::{thin, Latency};
use crate::telemetry::memory;

mod cold;
mod faults;
mod search;
pub(crate) mod sub_batch;
pub(crate) use faults::inject_drift;
use faults::{fault, inject_crash, injected_delay, log_start};
pub use search::check_ranking;
use search::ranking_tolerance;

/// Most latency samples kept in the results file.
pub const MAX_SAMPLES: usize = 10_000;

/// Runs `spec` and returns its result; errors become a `failed` result with the cause.
pub fn run(spec: &RunSpec, gemm_ceiling_gflops: Option<f64>) -> RunResult {
    let start = Instant::now();
    let mut r = RunResult::not_run(spec.clone(), Status::Failed, String::new());
    r.reason = None;
    if let Err(e) = measure(spec, gemm_ceiling_gflops, &mut r) {
        r.status = Status::Failed;
        r.reason = Some(e.to_string());
    }
    r.wall_s = Some(start.elapsed().as_secs_f64());
    r
}

/// One model instance serving batches of the server load.
struct EncService<'a> {
    enc: Box<dyn Encoder>,
    /// `spec.batch` requests; a batch of n serves its first n requests.
    batch: &'a TokenBatch,
    spec: &'a RunSpec,
    scorer: &'a Scorer<'a>,
    finite: bool,
}

impl server::Service for EncService<'_> {
    fn serve(&mut self, n: usize) -> Result<()> {
        let rows = n * self.spec.candidates;
        let part;
        let batch = if rows == self.batch.batch {
            self.batch
        } else {
            part = self.batch.rows(0, rows);
            &part
        };
        self.finite &= self.scorer.step(&mut self.enc, batch)?;
        Ok(())
    }
}

/// What one timed iteration does after the forward pass.
struct Scorer<'a> {
    spec: &'a RunSpec,
    /// The catalog in fp32 while the device holds it (two-tower, device scoring).
    index: ItemIndex,
    /// Items in the catalog (two-tower).
    catalog_len: usize,
    /// The host's search of the catalog (two-tower, host scoring).
    retriever: Option<Retriever>,
    head: Vec<f32>,
    /// Whether the backend scores on its device (`load_items`), else the host does.
    on_device: bool,
    /// Milliseconds each `rank` took (the host-side share of an iteration), or on the device the
    /// scoring after each forward, for the run's notes.
    ms: std::sync::Mutex<Vec<f64>>,
    /// On the device: milliseconds of each encoder forward, timed apart from the scoring.
    encode_ms: std::sync::Mutex<Vec<f64>>,
    /// Test-only (`fault-injection`): a non-finite first score after every step.
    inject_nan: bool,
    /// Test-only (`fault-injection`): time added to every step (the `slow` fault).
    inject_delay: std::time::Duration,
}

impl Scorer<'_> {
    /// One forward and its ranking: on the device when the backend scores there, else encode,
    /// then score and rank on the host. Returns whether the outputs were finite.
    fn step(&self, enc: &mut Box<dyn Encoder>, batch: &TokenBatch) -> Result<bool> {
        if !self.inject_delay.is_zero() {
            std::thread::sleep(self.inject_delay);
        }
        if self.on_device {
            let k = self.spec.top_k.min(self.catalog_len);
            let mut ranked = enc.encode_and_rank(batch, k)?;
            if self.inject_nan {
                ranked.top[0][0].1 = f32::NAN;
            }
            push(&self.ms, ranked.score_ms);
            push(&self.encode_ms, ranked.encode_ms);
            let finite = ranked.all_finite();
            black_box(ranked);
            return Ok(finite);
        }
        let t = Instant::now();
        let mut emb = enc.encode(batch)?;
        push(&self.encode_ms, t.elapsed().as_secs_f64() * 1e3);
        if self.inject_nan {
            emb.data[0] = f32::NAN;
        }
        let finite = emb.all_finite();
        black_box(self.rank(&emb)?);
        Ok(finite)
    }

    /// Scores and ranks the requests of one forward pass; returns a checksum so the work cannot
    /// be optimised away.
    fn rank(&self, emb: &Embeddings) -> Result<usize> {
        let t = Instant::now();
        let acc = self.rank_untimed(emb)?;
        push(&self.ms, t.elapsed().as_secs_f64() * 1e3);
        Ok(acc)
    }

    /// The scoring times recorded so far, and on the device the encoder's, emptied.
    fn take_ms(&self) -> (Vec<f64>, Vec<f64>) {
        let take = |m: &std::sync::Mutex<Vec<f64>>| {
            std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
        };
        (take(&self.ms), take(&self.encode_ms))
    }

    fn rank_untimed(&self, emb: &Embeddings) -> Result<usize> {
        let k = self.spec.top_k;
        let mut acc = 0;
        match (self.spec.mode, &self.retriever) {
            (Mode::TwoTower, Some(search)) => {
                for best in search.search(emb, k)? {
                    acc += best.first().map_or(0, |b| b.0);
                }
            }
            (Mode::TwoTower, None) => {
                return Err(Error::Measure(
                    "a two-tower run without its catalog search".into(),
                ))
            }
            (Mode::CrossEncoder, _) => {
                let c = self.spec.candidates;
                for req in 0..emb.rows / c {
                    let scores: Vec<f32> = (0..c)
                        .map(|j| {
                            emb.row(req * c + j)
                                .iter()
                                .zip(&self.head)
                                .map(|(a, b)| a * b)
                                .sum()
                        })
                        .collect();
                    acc += recommender::top_k(&scores, k)[0].0;
                }
            }
        }
        Ok(acc)
    }
}

/// The median and 99th percentile of one part of the iterations, if it was timed.
fn split(ms: &[f64]) -> Option<Split> {
    let mut v = ms.to_vec();
    (!v.is_empty()).then(|| Split {
        p50_ms: crate::stats::percentile_in_place(&mut v, 0.50),
        p99_ms: crate::stats::percentile_in_place(&mut v, 0.99),
        samples: ms.len(),
    })
}

/// Appends `ms` to a list of timings shared by the service threads (a panicked thread's
/// lock is taken over: the list stays usable).
fn push(m: &std::sync::Mutex<Vec<f64>>, ms: f64) {
    m.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
}

/// One timed iteration: encode, check the outputs are finite, score and rank. Returns whether
/// the outputs were finite.
type Step<'a> = dyn Fn(&mut Box<dyn Encoder>, &TokenBatch) -> Result<bool> + 'a;

/// What a measurement loop hands back: latency samples in time order (per iteration offline and
/// single-stream, per request under server load), the window they span, the requests served.
struct Measured {
    samples_ms: Vec<f64>,
    window_s: f64,
    requests: f64,
}

fn measure(spec: &RunSpec, ceiling: Option<f64>, r: &mut RunResult) -> Result<()> {
    log_start(spec);
    let mut cold = cold::Clock::start();
    let files = ModelFiles::resolve_pruned(spec.model, spec.seed, &spec.prune)?;
    let tok = Tokenizer::load(&files.tokenizer)?;
    let items = recommender::bundled_items();
    let opts = encoder_options(spec);
    cold.lap(cold::Part::ModelFiles);
    let mut enc = backend::open(spec.backend, &files, opts)?;
    cold.lap(cold::Part::Open);
    if let Some(k) = enc.kernels() {
        r.notes.push(format!("kernels: {k}"));
    }
    let caps = crate::tuning::choices::isa_caps();
    if !caps.is_empty() {
        r.notes.push(format!(
            "isa cap: {} (set in the environment: the runtimes that read it were held to that \
             vector ISA, whatever this CPU has)",
            caps.join(" ")
        ));
    }
    // Parity first: a run that computes the wrong thing is not timed.
    let Some(item_index) = check_parity(spec, &files, &tok, &items, enc.as_mut(), r)? else {
        return Ok(());
    };

    let (batch, requests) = timed_batch(spec, &tok, &items)?;
    inject_crash(spec);
    let two_tower = spec.mode == Mode::TwoTower;
    let on_device = two_tower && spec.scoring == Scoring::Device;
    let k = spec.top_k.min(spec.catalog_items);
    // The catalog around the demo items' embeddings, the query set and its exact top-k.
    let (catalog, queries) = if two_tower {
        let catalog =
            retrieval::catalog::clustered(&item_index, spec.catalog_items, spec.seed, spec.threads);
        let query_batch = search::query_batch(spec, &tok, &items)?;
        let emb = search::encode(enc.as_mut(), &query_batch, spec.batch)?;
        let exact = search::exact_top(&catalog, &emb, k, spec.threads);
        (catalog, Some((query_batch, emb, exact)))
    } else {
        (
            ItemIndex {
                dim: item_index.dim,
                data: vec![],
            },
            None,
        )
    };
    let catalog_len = catalog.len();
    let mut scorer = Scorer {
        spec,
        index: ItemIndex {
            dim: catalog.dim,
            data: vec![],
        },
        catalog_len,
        retriever: None,
        head: recommender::cross_encoder_head(files.config.hidden_size, files.seed),
        on_device: false,
        ms: Default::default(),
        encode_ms: Default::default(),
        inject_nan: fault(spec).as_deref() == Some("nan"),
        inject_delay: injected_delay(spec),
    };
    cold.skip();
    if two_tower && !on_device {
        let setting = spec.retrieval.unwrap_or(retrieval::EXACT_FP32);
        let key = retrieval::catalog::key(&item_index, spec.catalog_items, spec.seed);
        let dir = crate::model::cache_dir().join("indexes");
        let keep = Some((dir.as_path(), key.as_str()));
        let built = Retriever::build(catalog, setting, spec.seed, spec.threads, keep)?;
        r.notes
            .push(format!("catalog search: {}", built.describe()));
        scorer.retriever = Some(built);
        cold.lap(cold::Part::Index);
    } else {
        scorer.index = catalog;
    }
    if on_device {
        let how = enc.load_items(scorer.index.items())?.ok_or_else(|| {
            Error::backend(
                spec.backend.name(),
                "does not score on its device; set [recommender] scoring = \"host\"",
            )
        })?;
        cold.lap(cold::Part::Index);
        // The device's ranking of the timed batch's first rows against float64 host scoring
        // of the same embeddings: a run that ranks wrongly is not timed.
        let rows = batch.batch.min(4);
        let probe = batch.rows(0, rows);
        let emb = enc.encode(&probe)?;
        let tol = ranking_tolerance(spec);
        let ranked = enc.encode_and_rank(&probe, k)?;
        if let Err(why) = check_ranking(&emb, &scorer.index, &ranked, k, tol) {
            r.status = Status::Invalid;
            r.reason = Some(format!(
                "device scoring disagrees with float64 host scoring: {why}"
            ));
            return Ok(());
        }
        r.notes.push(format!(
            "scoring on the device: {how}; its top-{k} of {rows} rows matched float64 host \
             scoring of the same embeddings (scores within {tol:.0e}, ties aside)"
        ));
        scorer.on_device = true;
    }
    // recall@k of the run's own search on the query set.
    let recall = match &queries {
        Some((query_batch, emb, exact)) => {
            let got = match &scorer.retriever {
                Some(search) => search.search(emb, k)?,
                None => search::on_device(enc.as_mut(), query_batch, spec.batch, k)?,
            };
            Some(retrieval::recall_at_k(&got, exact, k))
        }
        None => None,
    };
    r.timed_region = Some(timed_region(spec, requests));

    let rss_scope = if memory::reset_peak_rss() {
        "measurement"
    } else {
        "process"
    };
    let scorer = scorer;
    let step = |enc: &mut Box<dyn Encoder>, batch: &TokenBatch| scorer.step(enc, batch);

    // On the CPU, a batch may be encoded as a few smaller ones where that is faster here.
    let sub = sub_batch::for_run(spec, &files.identity(), &mut enc, &batch, &mut r.notes)?;
    let mut enc = sub_batch::wrap(enc, sub);

    cold.skip();
    let Some(warm_ms) = warm_up(spec, &step, &mut enc, &batch)? else {
        return invalid_nan(r);
    };
    scorer.take_ms();
    // Per-op times, where the backend keeps them, of the timed window alone.
    let _ = enc.op_times();
    let measured = if spec.load == Load::Server {
        let mut services = vec![EncService {
            enc,
            batch: &batch,
            spec,
            scorer: &scorer,
            finite: true,
        }];
        for _ in 1..spec.instances {
            let mut e = sub_batch::wrap(backend::open(spec.backend, &files, opts)?, sub);
            if scorer.on_device {
                e.load_items(scorer.index.items())?;
            }
            step(&mut e, &batch)?;
            services.push(EncService {
                enc: e,
                batch: &batch,
                spec,
                scorer: &scorer,
                finite: true,
            });
        }
        let t_full = crate::stats::median(&warm_ms) / 1e3;
        if let Some(note) = warm_every_batch_size(spec, &mut services)? {
            r.notes.push(note);
        }
        scorer.take_ms();
        measure_server(spec, &mut services, t_full, r)?
    } else {
        let m = measure_offline(spec, &step, &mut enc, &batch, requests, r)?;
        r.notes.extend(enc.op_times());
        m
    };
    let Some(m) = measured else {
        // The loop recorded why the run has no timed figures (NaN, or no operating point).
        return Ok(());
    };
    record(spec, &files, ceiling, &m, r);
    r.cold_start = r
        .latency
        .as_ref()
        .and_then(|l| cold.finish(&warm_ms, l.p50_ms));
    let (score_ms, encode_ms) = scorer.take_ms();
    r.retrieval = recall.map(|recall_at_k| RetrievalResult {
        catalog_items: catalog_len,
        recall_at_k,
        k,
        queries: search::QUERIES,
        build_s: scorer.retriever.as_ref().map(|s| s.build_s),
        bytes: scorer.retriever.as_ref().map(|s| s.bytes),
        encode_ms: split(&encode_ms),
        search_ms: split(&score_ms),
    });
    r.notes.extend(scoring_note(
        spec,
        scorer.on_device,
        &score_ms,
        &encode_ms,
        &m,
    ));
    r.memory = Memory {
        peak_rss_bytes: memory::peak_rss_bytes(),
        rss_scope: Some(rss_scope.into()),
        device_peak_bytes: None,
        device_used_bytes: device_used_bytes(),
    };
    r.status = Status::Ok;
    Ok(())
}

/// On a GPU, every batch size the server can form (1 to `batch`) served once by every
/// instance before the probes, as a serving system warms up: CUDA loads a kernel on its first
/// use and libtorch picks cuBLAS and attention kernels per shape, so a run warmed at `batch`
/// alone would pay each other size's first batch inside a probe. On the H200 this warm-up
/// alone did not remove torch's slow requests under server load (BERT-base fp16: one of 45–100
/// ms per low-rate probe where a batch takes 5 ms); those came with a fresh service thread per
/// probe (see `server::probe`). The CPU has no such first-use cost and is not warmed this way
/// (it would cost a second per size there).
fn warm_every_batch_size(spec: &RunSpec, services: &mut [EncService]) -> Result<Option<String>> {
    if spec.device == backend::Device::Cpu {
        return Ok(None);
    }
    let t = Instant::now();
    for s in services.iter_mut() {
        for n in 1..=spec.batch {
            server::Service::serve(s, n)?;
        }
    }
    Ok(Some(format!(
        "server warm-up: every batch size from 1 to {} served once by each of {} instance(s) \
         before the probes ({:.1} s; a device's first batch of each shape loads and picks its \
         kernels)",
        spec.batch,
        services.len(),
        t.elapsed().as_secs_f64()
    )))
}

/// How the worker opens the run's encoder.
fn encoder_options(spec: &RunSpec) -> EncoderOptions {
    EncoderOptions {
        device: spec.device,
        precision: spec.precision,
        threads: spec.threads,
        shape_hint: Some((spec.sequences_per_batch(), spec.seq_len)),
    }
}

/// The batch every timed iteration encodes, and the requests it serves.
fn timed_batch(
    spec: &RunSpec,
    tok: &Tokenizer,
    items: &[recommender::Item],
) -> Result<(TokenBatch, usize)> {
    let stream = inputs::token_stream(tok, items)?;
    let requests = match spec.load {
        Load::SingleStream => 1,
        _ => spec.batch,
    };
    let batch = inputs::bench_batch(
        tok,
        &stream,
        spec.mode,
        requests,
        spec.candidates,
        spec.seq_len,
    )?;
    Ok((batch, requests))
}

/// Forward passes a probe process runs untimed, and times, at the least.
const PROBE_FORWARDS: usize = 3;

/// The longest a probe process warms up, whatever the run's `warmup_s`.
const PROBE_WARMUP_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// A probe process (`recbench __hugepage-probe`, see `hugepages.rs`): the run's encoder, opened
/// as the worker opens it, on the run's timed batch; untimed forwards as the worker warms up
/// (the run's `warmup_s`, at most [`PROBE_WARMUP_MAX`], at least [`PROBE_FORWARDS`] forwards),
/// then the median milliseconds of the forwards over `budget` (at least [`PROBE_FORWARDS`], at
/// most 200).
///
/// The warm-up matters: a process's first forwards fault in its buffers, and with huge pages
/// each fault clears 2 MiB. On the Zen 5 VM (MiniLM, batch 32, ONNX Runtime) the first two
/// took 406–479 ms with huge pages against 312–365 without, then alike
/// (`docs/benchmarks/hugepages-vm-first-forwards-20261201T1503Z.md`); timed from the second
/// forward, a probe of 300 ms measured that start and not the worker's steady state.
pub fn probe_forward_ms(spec: &RunSpec, budget: std::time::Duration) -> Result<f64> {
    probe_forward_then_ms(spec, budget, |_| {})
}

/// [`probe_forward_ms`], with `then` called on each forward's embeddings inside the timing.
pub fn probe_forward_then_ms(
    spec: &RunSpec,
    budget: std::time::Duration,
    mut then: impl FnMut(&Embeddings),
) -> Result<f64> {
    // As in the worker it stands in for.
    let _ = crate::tuning::malloc::keep_freed_memory();
    let files = ModelFiles::resolve_pruned(spec.model, spec.seed, &spec.prune)?;
    let tok = Tokenizer::load(&files.tokenizer)?;
    let (batch, _) = timed_batch(spec, &tok, &recommender::bundled_items())?;
    let mut enc = backend::open(spec.backend, &files, encoder_options(spec))?;
    let warm_up = std::time::Duration::from_secs_f64(spec.warmup_s.max(0.0)).min(PROBE_WARMUP_MAX);
    probe_median_ms(
        || enc.encode(&batch).map(|e| then(black_box(&e))),
        warm_up,
        budget,
    )
}

/// What [`probe_forward_ms`] times `forward` with: untimed calls for `warm_up` (at least
/// [`PROBE_FORWARDS`]), then the median milliseconds of the calls over `budget` (at least
/// [`PROBE_FORWARDS`], at most 200).
fn probe_median_ms(
    mut forward: impl FnMut() -> Result<()>,
    warm_up: std::time::Duration,
    budget: std::time::Duration,
) -> Result<f64> {
    let start = Instant::now();
    let mut warm = 0;
    while warm < PROBE_FORWARDS || start.elapsed() < warm_up {
        forward()?;
        warm += 1;
    }
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < PROBE_FORWARDS || (start.elapsed() < budget && times.len() < 200) {
        let t = Instant::now();
        forward()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(crate::stats::median(&times))
}

/// Compares the run's probe and catalog embeddings with the reference and records the verdict.
/// Returns the run's item embeddings when parity passed, `None` (the run `invalid`) when not.
fn check_parity(
    spec: &RunSpec,
    files: &ModelFiles,
    tok: &Tokenizer,
    items: &[recommender::Item],
    enc: &mut dyn Encoder,
    r: &mut RunResult,
) -> Result<Option<ItemIndex>> {
    let reference = parity::reference(files, tok)?;
    let mut probes = parity::encode_probes(enc, tok)?;
    inject_drift(&spec.id, &mut probes);
    let key = parity::item_key_of(files, spec.backend, spec.precision, enc);
    let item_index = recommender::item_index(enc, tok, items, &key)?;
    let par = parity::compare(spec.precision, &probes, &item_index, &reference);
    // Quality against the full model in fp32: the same reference as parity unless pruned.
    let full_ref;
    let full = if spec.prune.is_full() {
        &reference
    } else {
        full_ref = parity::reference(&ModelFiles::resolve(spec.model, spec.seed)?, tok)?;
        &full_ref
    };
    let what = format!("{} (full) fp32 on candle", spec.model);
    r.quality = Some(parity::quality(&probes, &item_index, full, what));
    let passed = par.passed;
    if !passed {
        r.status = Status::Invalid;
        r.reason = Some(format!(
            "parity failed ({}): max abs diff {:.3e}, min cosine {:.6}, top-10 overlap {:.2}",
            par.tolerance, par.max_abs_diff, par.min_cosine, par.top10_overlap
        ));
    }
    r.parity = Some(par);
    Ok(passed.then_some(item_index))
}

/// How much of an iteration the scoring took. On the host it runs on the CPU (the `gemm` crate
/// and a one-pass top-k, `threads` threads) whatever device ran the encoder, so on a GPU run it
/// can be most of the time; on the device it is timed apart from the encoder (the device
/// synchronised between them), and the note gives both.
fn scoring_note(
    spec: &RunSpec,
    on_device: bool,
    scoring_ms: &[f64],
    encode_ms: &[f64],
    m: &Measured,
) -> Option<String> {
    if scoring_ms.is_empty() {
        return None;
    }
    let score = crate::stats::median(scoring_ms);
    let what = match spec.mode {
        Mode::TwoTower => format!(
            "dot products with {} item embeddings + top-{}",
            spec.catalog_items, spec.top_k
        ),
        Mode::CrossEncoder => format!("relevance head + top-{}", spec.top_k),
    };
    // Under server load batches vary in size: set against the median request latency.
    let of = match spec.load {
        Load::Server => "request latency",
        _ => "iteration",
    };
    let whole = crate::stats::median(&m.samples_ms);
    let share = format!(
        " of a {whole:.2} ms median {of} ({:.0}%)",
        100.0 * score / whole.max(f64::MIN_POSITIVE)
    );
    let place = if on_device {
        format!("on the run's device ({})", spec.device)
    } else {
        format!("on the host CPU ({} thread(s))", spec.threads)
    };
    let encoder = if encode_ms.is_empty() {
        String::new()
    } else {
        format!(
            "; the encoder forward before it a median {:.2} ms",
            crate::stats::median(encode_ms)
        )
    };
    Some(format!(
        "scoring: {what} {place} took a median {score:.2} ms per batch{share}{encoder}, \
         measured inside the timed region over {} batches",
        scoring_ms.len()
    ))
}

/// What the timed region of a run covers, in words.
fn timed_region(spec: &RunSpec, requests: usize) -> String {
    match spec.mode {
        Mode::TwoTower => format!(
            "encoder forward of {requests} sequence(s) of {} tokens + {} {} item embeddings + top-{} ({})",
            spec.seq_len,
            match spec.retrieval {
                Some(r) if r != crate::retrieval::EXACT_FP32 => format!("a search ({r}) of"),
                _ => "dot-product scoring against".to_string(),
            },
            spec.catalog_items,
            spec.top_k,
            match spec.scoring {
                Scoring::Device => "on the run's device; the top-k ids and scores copied to the host",
                Scoring::Host => "on the host CPU, after the embeddings are copied there",
            }
        ),
        Mode::CrossEncoder => format!(
            "encoder forward of {requests} request(s) × {} (user, item) pairs of {} tokens + relevance head + top-{}",
            spec.candidates, spec.seq_len, spec.top_k
        ),
    }
}

/// At least one iteration, then until `warmup_s`. Returns the iteration times, or `None` when
/// an output was not finite.
fn warm_up(
    spec: &RunSpec,
    step: &Step,
    enc: &mut Box<dyn Encoder>,
    batch: &TokenBatch,
) -> Result<Option<Vec<f64>>> {
    let t = Instant::now();
    let mut warm_ms = Vec::new();
    loop {
        let t0 = Instant::now();
        if !step(enc, batch)? {
            return Ok(None);
        }
        warm_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if t.elapsed().as_secs_f64() >= spec.warmup_s {
            return Ok(Some(warm_ms));
        }
    }
}

/// Offline and single-stream load: back-to-back iterations until both `min_s` and
/// `min_queries` are met, or `max_s`; power sampled over the window.
fn measure_offline(
    spec: &RunSpec,
    step: &Step,
    enc: &mut Box<dyn Encoder>,
    batch: &TokenBatch,
    requests: usize,
    r: &mut RunResult,
) -> Result<Option<Measured>> {
    let mut samples = Vec::new();
    let power = crate::telemetry::start_power();
    let window = Instant::now();
    loop {
        let t0 = Instant::now();
        let finite = step(enc, batch)?;
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
        if !finite {
            invalid_nan(r)?;
            return Ok(None);
        }
        let el = window.elapsed().as_secs_f64();
        if (el >= spec.min_s && samples.len() >= spec.min_queries) || el >= spec.max_s {
            break;
        }
    }
    let window_s = window.elapsed().as_secs_f64();
    r.power = power.stop(crate::telemetry::cpu_tdp());
    if samples.len() < spec.min_queries {
        r.notes.push(format!(
            "stopped at max_s = {} s with {} of the {} iterations asked for; percentiles beyond p{} are interpolated from few samples",
            spec.max_s,
            samples.len(),
            spec.min_queries,
            ((1.0 - 1.0 / samples.len() as f64) * 100.0).floor()
        ));
    }
    let requests = samples.len() as f64 * requests as f64;
    Ok(Some(Measured {
        samples_ms: samples,
        window_s,
        requests,
    }))
}

/// Server load: the operating-point search from half the warm-up's capacity, then a
/// confirmation probe at the operating point whose latencies, throughput and power are the
/// run's; power sampled over the confirmation probe alone.
fn measure_server(
    spec: &RunSpec,
    services: &mut [EncService],
    warm_iteration_s: f64,
    r: &mut RunResult,
) -> Result<Option<Measured>> {
    let initial = 0.5 * spec.instances as f64 * spec.batch as f64 / warm_iteration_s.max(1e-6);
    let base = server::ProbeConfig {
        rate_qps: initial,
        max_batch: spec.batch,
        max_queue_delay: std::time::Duration::from_secs_f64(spec.max_queue_delay_ms / 1e3),
        sla_p99_ms: spec.sla_p99_ms,
        min_s: spec.min_s,
        min_queries: spec.min_queries,
        max_s: spec.max_s,
        seed: spec.seed,
    };
    let (mut search, _) =
        server::find_operating_point(&base, services, initial, crate::spec::SERVER_PROBES)?;
    if services.iter().any(|s| !s.finite) {
        invalid_nan(r)?;
        return Ok(None);
    }
    if search.operating_point.is_none() {
        r.server = Some(search);
        r.status = Status::Ok;
        r.notes.push(format!(
            "no probed rate kept p99 within the {} ms SLA: no operating point",
            spec.sla_p99_ms
        ));
        return Ok(None);
    }
    let (confirm, power, notes) = server::confirm(&mut search, spec.sla_p99_ms, |rate| {
        let power = crate::telemetry::start_power();
        let confirm = server::probe(
            &server::ProbeConfig {
                rate_qps: rate,
                ..base.clone()
            },
            services,
        )?;
        Ok((confirm, power.stop(crate::telemetry::cpu_tdp())))
    })?;
    r.notes.extend(notes);
    if services.iter().any(|s| !s.finite) {
        invalid_nan(r)?;
        return Ok(None);
    }
    r.power = power;
    if let Some(t) = &confirm.point.request_times {
        r.notes.push(format!(
            "request times at the operating point ({:.0} requests/s, the confirmation probe; \
             mean / p99): queued for a free instance {:.2} / {:.2} ms, waiting for the batch to \
             close {:.2} / {:.2} ms, in the batch's compute {:.2} / {:.2} ms (mean batch {:.1})",
            confirm.point.offered_qps,
            t.queued.mean_ms,
            t.queued.p99_ms,
            t.batch_wait.mean_ms,
            t.batch_wait.p99_ms,
            t.compute.mean_ms,
            t.compute.p99_ms,
            confirm.point.mean_batch
        ));
    }
    let window_s = confirm.point.completed as f64 / confirm.point.achieved_qps.max(1e-9);
    let requests = confirm.point.completed as f64;
    search.confirmation = Some(confirm.point);
    r.server = Some(search);
    Ok(Some(Measured {
        samples_ms: confirm.latencies_ms,
        window_s,
        requests,
    }))
}

/// The run's figures from what its loop measured: throughput, compute and efficiency, latency
/// statistics (flagged unstable above 10% CV, except under server load), and the thinned
/// samples.
fn record(
    spec: &RunSpec,
    files: &ModelFiles,
    ceiling: Option<f64>,
    m: &Measured,
    r: &mut RunResult,
) {
    let sequences = m.requests * spec.candidates as f64;
    let tp = Throughput {
        sequences_per_s: sequences / m.window_s,
        tokens_per_s: sequences * spec.seq_len as f64 / m.window_s,
        requests_per_s: m.requests / m.window_s,
        measured_s: m.window_s,
    };
    let flops = files.config.flops_per_sequence(spec.seq_len);
    let achieved = flops * tp.sequences_per_s / 1e9;
    let (efficiency, note) = Compute::efficiency(achieved, ceiling);
    r.notes.extend(note);
    r.compute = Some(Compute {
        flops_per_sequence: flops,
        achieved_gflops: achieved,
        gemm_ceiling_gflops: ceiling,
        efficiency,
    });
    r.latency = Latency::from_samples(&m.samples_ms);
    if let Some(l) = r.latency.as_mut() {
        // Under server load the spread of latencies is queueing, not noise: stability there is
        // judged by the capacity bracket and the confirmation probe (report/notes.rs).
        if spec.load == crate::spec::Load::Server {
            l.unstable = false;
        }
        if l.unstable {
            r.notes.push(format!(
                "unstable: coefficient of variation {:.1}% > 10%; run on a quiet machine or raise measure.min_s",
                l.cv * 100.0
            ));
        }
    }
    r.throughput = Some(tp);
    r.samples_ms = thin(&m.samples_ms, MAX_SAMPLES);
}

#[cfg(feature = "nvml")]
fn device_used_bytes() -> Option<u64> {
    crate::telemetry::nvml::process_memory_bytes(std::process::id())
}

#[cfg(not(feature = "nvml"))]
fn device_used_bytes() -> Option<u64> {
    None
}

fn invalid_nan(r: &mut RunResult) -> Result<()> {
    r.status = Status::Invalid;
    r.reason = Some("outputs contain NaN or inf during the timed loop".into());
    Ok(())
}

/// Entry point of the hidden `__worker` subcommand: read the spec, run, write the result.
/// The run spec the parent wrote for a worker or a probe process.
pub fn read_spec(spec_path: &std::path::Path) -> Result<RunSpec> {
    let text = crate::util::files::read_text(spec_path)?;
    serde_json::from_str(&text)
        .map_err(|e| Error::input(spec_path, Some(e.line()), "", e.to_string()))
}

pub fn main(
    spec_path: &std::path::Path,
    out_path: &std::path::Path,
    ceiling: Option<f64>,
) -> Result<()> {
    let spec = read_spec(spec_path)?;
    let malloc = crate::tuning::malloc::keep_freed_memory();
    let mut result = run(&spec, ceiling);
    result.notes.extend(malloc);
    let json = serde_json::to_vec(&result).expect("result serialises");
    crate::util::files::write_atomic(out_path, &json)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A probe times the steady state, not the start: forwards that fault their buffers in
    /// (here the first three, 100 ms each against nothing) run untimed even when the run asks
    /// for no warm-up.
    #[test]
    fn a_probe_times_after_its_warm_up() {
        let mut calls = 0;
        let forward = || {
            calls += 1;
            if calls <= 3 {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        };
        let ms = super::probe_median_ms(forward, Duration::ZERO, Duration::ZERO).unwrap();
        assert!(ms < 50.0, "{ms} ms: the slow first forwards were timed");
        assert_eq!(calls, 6, "three untimed forwards, three timed");
    }
}
