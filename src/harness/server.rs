//! Server load: Poisson arrivals, dynamic batching, and the search for the SLA operating point.
//!
//! Arrivals are a seeded Poisson process. For a probe of `duration` at rate λ the generator
//! draws N = round(λ·duration) arrival times uniformly in [0, duration) and sorts them: that is
//! exactly a Poisson process conditioned on N arrivals, so the offered rate is λ to within one
//! request. Latency is counted from each request's *scheduled* arrival to the completion of the
//! batch that served it, so a slow server cannot hide its queue (no coordinated omission).
//!
//! Each of `instances` service threads takes, whenever it is free, the requests that have
//! arrived, up to `max_batch`; if fewer than `max_batch` are waiting it waits for more until the
//! oldest has waited `max_queue_delay`. The operating point is the highest offered rate whose
//! p99 is within the SLA and whose achieved rate is within 2% of the offered one, found by
//! bracketing (doubling or halving) and then bisection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::results::{CurvePoint, Latency, RequestTimes, ServerResult, Spread};
use crate::stats::percentile;
use crate::util::rand::SplitMix64;

/// Serves one batch of `n` requests; returns when the results are ready.
pub trait Service: Send {
    fn serve(&mut self, n: usize) -> Result<()>;
}

/// How to probe one rate.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub rate_qps: f64,
    pub max_batch: usize,
    pub max_queue_delay: Duration,
    pub sla_p99_ms: f64,
    /// Probe length: max(min_s, min_queries / rate), at most max_s.
    pub min_s: f64,
    pub min_queries: usize,
    pub max_s: f64,
    pub seed: u64,
}

impl ProbeConfig {
    pub fn duration_s(&self) -> f64 {
        self.min_s
            .max(self.min_queries as f64 / self.rate_qps)
            .min(self.max_s)
    }
}

/// A probe's raw outcome (latencies kept for the run's statistics).
pub struct Probe {
    pub point: CurvePoint,
    pub latencies_ms: Vec<f64>,
}

struct Dispatch {
    /// Index of the first request not yet taken by an instance.
    next: usize,
}

/// What the instances of one probe share: the schedule, the dispatch point, and the early-stop
/// state.
struct Shared {
    arrivals: Vec<Instant>,
    dispatch: Mutex<Dispatch>,
    stop: AtomicBool,
    early: Mutex<Option<String>>,
    sla: Duration,
    /// Requests over the SLA so far; once they are clearly more than 1% the p99 cannot pass.
    over: AtomicUsize,
    done: AtomicUsize,
}

/// What one instance served.
struct Served {
    latency_ms: Vec<f64>,
    queue_ms: Vec<f64>,
    /// Per request: waiting for a free instance, for its batch to close, in its batch's call.
    queued_ms: Vec<f64>,
    batch_wait_ms: Vec<f64>,
    compute_ms: Vec<f64>,
    lag_us: Vec<f64>,
    batches: usize,
    last_done: Option<Instant>,
}

/// The seeded arrival schedule of a probe: `round(rate × duration)` instants, uniform over the
/// probe and sorted (a Poisson process conditioned on its count), from `t0`.
fn schedule(cfg: &ProbeConfig, t0: Instant) -> Vec<Instant> {
    let duration = cfg.duration_s();
    let n = ((cfg.rate_qps * duration).round() as usize).max(1);
    let mut rng = SplitMix64::new(cfg.seed ^ (cfg.rate_qps.to_bits()));
    let mut offsets: Vec<f64> = (0..n).map(|_| rng.next_f64() * duration).collect();
    offsets.sort_by(f64::total_cmp);
    offsets
        .iter()
        .map(|s| t0 + Duration::from_secs_f64(*s))
        .collect()
}

/// Runs one probe at `cfg.rate_qps` against `services` (one per instance).
pub fn probe<S: Service>(cfg: &ProbeConfig, services: &mut [S]) -> Result<Probe> {
    let lead = Duration::from_millis(5);
    let t0 = Instant::now() + lead;
    let shared = Shared {
        arrivals: schedule(cfg, t0),
        dispatch: Mutex::new(Dispatch { next: 0 }),
        stop: AtomicBool::new(false),
        early: Mutex::new(None),
        sla: Duration::from_secs_f64(cfg.sla_p99_ms / 1e3),
        over: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
    };
    // The first instance serves on this thread, the one that loaded and warmed it, as a
    // serving system keeps its workers: libtorch keeps per-thread CUDA state (its cuBLAS handle
    // and the kernel choices made through it), so a fresh thread per probe paid first-use costs
    // again on every batch size. On the H200, torch BERT-base fp16 served from a fresh thread
    // per probe had one request of 45–100 ms in every low-rate probe and 30–40 ms batches of
    // 50 under load, against 5 ms for 64 offline; candle, whose handle lives with its device,
    // did not. Further instances still get a thread per probe.
    let results: Vec<Result<Served>> = std::thread::scope(|scope| {
        let (first, rest) = services.split_first_mut().expect("at least one service");
        let handles: Vec<_> = rest
            .iter_mut()
            .map(|svc| {
                let shared = &shared;
                scope.spawn(move || serve(cfg, shared, svc))
            })
            .collect();
        let mut out = vec![serve(cfg, &shared, first)];
        out.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("service thread panicked")),
        );
        out
    });
    summarise(cfg, t0, shared.early.into_inner().unwrap(), results)
}

/// One instance's loop: take the requests that have arrived (waiting for the first, then for
/// more until the batch is full or the oldest has waited `max_queue_delay`), serve them, record
/// each request's latency from its scheduled arrival, and stop the probe early when the SLA is
/// clearly missed.
fn serve<S: Service>(cfg: &ProbeConfig, sh: &Shared, svc: &mut S) -> Result<Served> {
    set_timer_slack();
    let arrivals = &sh.arrivals;
    let mut out = Served {
        latency_ms: vec![],
        queue_ms: vec![],
        queued_ms: vec![],
        batch_wait_ms: vec![],
        compute_ms: vec![],
        lag_us: vec![],
        batches: 0,
        last_done: None,
    };
    let mut free_at = Instant::now();
    loop {
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
        // Decide the next batch under the lock.
        let mut d = sh.dispatch.lock().unwrap();
        // This instance is free and forms its next batch from here.
        let forming = Instant::now();
        let first = d.next;
        if first >= arrivals.len() {
            break;
        }
        let last_possible = (first + cfg.max_batch).min(arrivals.len()) - 1;
        let deadline = (arrivals[first] + cfg.max_queue_delay).min(arrivals[last_possible]);
        wait_until(deadline);
        let now = Instant::now();
        let mut end = first;
        while end < arrivals.len() && end - first < cfg.max_batch && arrivals[end] <= now {
            end += 1;
        }
        d.next = end;
        let backlog = arrivals[end..].partition_point(|a| *a <= now);
        drop(d);
        let intended = deadline.max(free_at);
        let start = Instant::now();
        out.lag_us
            .push(start.saturating_duration_since(intended).as_secs_f64() * 1e6);
        svc.serve(end - first)?;
        let fin = Instant::now();
        free_at = fin;
        out.batches += 1;
        out.last_done = Some(fin);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        for a in &arrivals[first..end] {
            let lat = fin - *a;
            if lat > sh.sla {
                sh.over.fetch_add(1, Ordering::Relaxed);
            }
            out.latency_ms.push(ms(lat));
            out.queue_ms.push(ms(start.saturating_duration_since(*a)));
            out.queued_ms
                .push(ms(forming.saturating_duration_since(*a)));
            out.batch_wait_ms
                .push(ms(now.saturating_duration_since((*a).max(forming))));
            out.compute_ms.push(ms(fin - start));
        }
        let completed = sh.done.fetch_add(end - first, Ordering::Relaxed) + end - first;
        if let Some(r) = early_stop(cfg, completed, sh.over.load(Ordering::Relaxed), backlog) {
            sh.early.lock().unwrap().get_or_insert(r);
            sh.stop.store(true, Ordering::Relaxed);
        }
    }
    Ok(out)
}

/// Why a probe should stop before its planned duration: more than 3% of at least 200 requests
/// over the SLA (p99 needs at most 1%), or a backlog that alone takes longer than 10× the SLA
/// to arrive at this rate.
fn early_stop(cfg: &ProbeConfig, completed: usize, over: usize, backlog: usize) -> Option<String> {
    if completed >= 200 && over * 100 > completed * 3 {
        Some(format!("{over} of {completed} requests over the SLA"))
    } else if backlog as f64 > (cfg.rate_qps * cfg.sla_p99_ms / 1e3 * 10.0).max(50.0) {
        Some(format!(
            "backlog of {backlog} requests: the server cannot keep up"
        ))
    } else {
        None
    }
}

/// The probe's point of the curve from what every instance served. The achieved rate is over
/// the planned duration, or until the last completion when that is later (or the probe stopped
/// early).
fn summarise(
    cfg: &ProbeConfig,
    t0: Instant,
    early_stop: Option<String>,
    results: Vec<Result<Served>>,
) -> Result<Probe> {
    let mut lat = Vec::new();
    let mut queue = Vec::new();
    let (mut queued, mut batch_wait, mut compute) = (Vec::new(), Vec::new(), Vec::new());
    let mut lag = Vec::new();
    let mut batches = 0;
    let mut last = t0;
    for r in results {
        let s = r?;
        lat.extend(s.latency_ms);
        queue.extend(s.queue_ms);
        queued.extend(s.queued_ms);
        batch_wait.extend(s.batch_wait_ms);
        compute.extend(s.compute_ms);
        lag.extend(s.lag_us);
        batches += s.batches;
        if let Some(l) = s.last_done {
            last = last.max(l);
        }
    }
    let completed = lat.len();
    let span = if early_stop.is_some() {
        (last - t0).as_secs_f64()
    } else {
        (last - t0).as_secs_f64().max(cfg.duration_s())
    };
    let achieved = completed as f64 / span.max(1e-9);
    let l = Latency::from_samples(&lat);
    lag.sort_by(f64::total_cmp);
    let p99 = l.as_ref().map_or(f64::INFINITY, |l| l.p99_ms);
    let meets = early_stop.is_none() && p99 <= cfg.sla_p99_ms && achieved >= 0.98 * cfg.rate_qps;
    Ok(Probe {
        point: CurvePoint {
            offered_qps: cfg.rate_qps,
            achieved_qps: achieved,
            completed,
            p50_ms: l.as_ref().map_or(f64::NAN, |l| l.p50_ms),
            p90_ms: l.as_ref().map_or(f64::NAN, |l| l.p90_ms),
            p99_ms: p99,
            p99_interval_ms: crate::stats::quantile_interval(&lat, 0.99, cfg.rate_qps.to_bits()),
            mean_ms: l.as_ref().map_or(f64::NAN, |l| l.mean_ms),
            mean_queue_delay_ms: queue.iter().sum::<f64>() / queue.len().max(1) as f64,
            mean_batch: completed as f64 / batches.max(1) as f64,
            scheduling_lag_p99_us: percentile(&lag, 0.99),
            meets_sla: meets,
            early_stop,
            request_times: (completed > 0).then(|| RequestTimes {
                queued: spread(queued),
                batch_wait: spread(batch_wait),
                compute: spread(compute),
            }),
        },
        latencies_ms: lat,
    })
}

/// Mean and p99 of one part of the requests' times, ms (NaN for none).
fn spread(mut ms: Vec<f64>) -> Spread {
    ms.sort_by(f64::total_cmp);
    Spread {
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        p99_ms: percentile(&ms, 0.99),
    }
}

/// Most extra confirmation probes below an operating point whose confirmation failed.
pub const MAX_RECONFIRMATIONS: usize = 4;

/// Confirms the operating point of `search` with a second probe (`probe_at(rate)`, which may
/// also measure power, `T`). The operating point counts only when that probe meets the SLA
/// too; when it does not, the search goes on below the rate (the next lower rate that passed
/// the search, else 15% lower), at most [`MAX_RECONFIRMATIONS`] times, until a rate passes its
/// own confirmation. Failed confirmations join the curve; the operating point becomes the
/// confirmed rate. Returns the last confirmation, its `T` and notes for the reader.
pub fn confirm<T>(
    search: &mut ServerResult,
    sla_p99_ms: f64,
    mut probe_at: impl FnMut(f64) -> Result<(Probe, T)>,
) -> Result<(Probe, T, Vec<String>)> {
    let first = search
        .operating_point
        .clone()
        .expect("confirm is called with an operating point");
    let mut notes = Vec::new();
    let mut rate = first.offered_qps;
    let mut tries = 0;
    let (probe, extra) = loop {
        let (probe, extra) = probe_at(rate)?;
        if probe.point.meets_sla || tries == MAX_RECONFIRMATIONS {
            break (probe, extra);
        }
        notes.push(format!(
            "the confirmation probe at {rate:.1} QPS gave p99 {:.2} ms against the \
             {sla_p99_ms} ms SLA; the search went on below that rate",
            probe.point.p99_ms
        ));
        search.curve.push(probe.point.clone());
        rate = search
            .curve
            .iter()
            .filter(|c| c.meets_sla && c.offered_qps < rate)
            .map(|c| c.offered_qps)
            .fold(0.85 * rate, f64::max)
            .min(0.999 * rate);
        tries += 1;
    };
    if probe.point.meets_sla {
        if rate < first.offered_qps {
            search.operating_point = search
                .curve
                .iter()
                .find(|c| c.offered_qps == rate && c.meets_sla)
                .cloned()
                .or_else(|| Some(probe.point.clone()));
        }
    } else {
        notes.push(format!(
            "the confirmation probe at {rate:.1} QPS gave p99 {:.2} ms (search: {:.2} ms): the \
             operating point is marginal; no rate passed its confirmation",
            probe.point.p99_ms, first.p99_ms
        ));
    }
    Ok((probe, extra, notes))
}

/// Asks the kernel for 1 µs timer slack on this thread (the default is 50 µs), so sleeps end
/// when asked; best effort.
fn set_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

/// Sleeps until `t`, spinning for the last 200 µs so wake-ups are punctual.
fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > Duration::from_micros(300) {
            std::thread::sleep(left - Duration::from_micros(200));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Finds the operating point, starting from `initial_qps` (e.g. half the offline capacity).
/// Returns the search and the latencies of the operating-point probe.
pub fn find_operating_point<S: Service>(
    base: &ProbeConfig,
    services: &mut [S],
    initial_qps: f64,
    max_probes: usize,
) -> Result<(ServerResult, Vec<f64>)> {
    let mut curve = Vec::new();
    let mut best: Option<(CurvePoint, Vec<f64>)> = None;
    let mut run = |rate: f64,
                   curve: &mut Vec<CurvePoint>,
                   best: &mut Option<(CurvePoint, Vec<f64>)>|
     -> Result<bool> {
        let cfg = ProbeConfig {
            rate_qps: rate,
            ..base.clone()
        };
        let p = probe(&cfg, services)?;
        let ok = p.point.meets_sla;
        if ok && best.as_ref().is_none_or(|(b, _)| b.offered_qps < rate) {
            *best = Some((p.point.clone(), p.latencies_ms));
        }
        curve.push(p.point);
        Ok(ok)
    };
    let mut rate = initial_qps.max(0.1);
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    // Bracket.
    while curve.len() < max_probes {
        if run(rate, &mut curve, &mut best)? {
            lo = Some(rate);
            if hi.is_some() {
                break;
            }
            rate *= 2.0;
        } else {
            hi = Some(rate);
            if lo.is_some() {
                break;
            }
            rate /= 2.0;
            if rate < 0.05 {
                break;
            }
        }
    }
    // Bisect until the bracket is within 5% or the probes are used up.
    if let (Some(mut l), Some(mut h)) = (lo, hi) {
        while curve.len() < max_probes && (h - l) / l > 0.05 {
            let mid = (l + h) / 2.0;
            if run(mid, &mut curve, &mut best)? {
                l = mid;
            } else {
                h = mid;
            }
        }
    }
    let (op, lat) = match best {
        Some((p, l)) => (Some(p), l),
        None => (None, vec![]),
    };
    Ok((
        ServerResult {
            max_batch: base.max_batch,
            max_queue_delay_ms: base.max_queue_delay.as_secs_f64() * 1e3,
            instances: services.len(),
            sla_p99_ms: base.sla_p99_ms,
            operating_point: op,
            curve,
            confirmation: None,
        },
        lat,
    ))
}
