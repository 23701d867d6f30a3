//! The server load generator with mock services of known service time.
//!
//! Each scenario is measured by one helper and checked twice:
//! - in the suite, with loose sanity bounds that only a broken generator misses (wrong request
//!   count, a rate off by a large factor, a queueing delay 0.6–1.6× the theory at the measured
//!   service time, an operating point above capacity), so a busy shared CI machine cannot fail
//!   them;
//! - in `#[ignore]`d accuracy tests with the tight bounds the README quotes (on-rate within 2%,
//!   scheduling lag p99 under 200 µs, Pollaczek–Khinchine within 15%), run on a quiet machine
//!   with `cargo test --test server -- --ignored`.
//!
//! The tests in this file run one at a time (a lock), because each measures timing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use recbench::harness::server::{find_operating_point, probe, ProbeConfig, Service};
use recbench::results::{CurvePoint, ServerResult};

static SERIAL: Mutex<()> = Mutex::new(());

/// A service whose batch of n takes `fixed + per_item × n`, timed precisely.
struct Fixed {
    fixed: Duration,
    per_item: Duration,
}

impl Service for Fixed {
    fn serve(&mut self, n: usize) -> recbench::Result<()> {
        let until = Instant::now() + self.fixed + self.per_item * n as u32;
        while Instant::now() + Duration::from_micros(300) < until {
            std::thread::sleep(Duration::from_micros(100));
        }
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

fn config(rate: f64, max_batch: usize, sla_ms: f64, min_s: f64) -> ProbeConfig {
    ProbeConfig {
        rate_qps: rate,
        max_batch,
        max_queue_delay: Duration::ZERO,
        sla_p99_ms: sla_ms,
        min_s,
        min_queries: 1,
        max_s: min_s,
        seed: 7,
    }
}

/// A no-op service offered 1,000 QPS for `seconds`.
fn noop_at_1000_qps(seconds: f64) -> CurvePoint {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut svc = [Fixed {
        fixed: Duration::ZERO,
        per_item: Duration::ZERO,
    }];
    let p = probe(&config(1000.0, 1, 50.0, seconds), &mut svc)
        .unwrap()
        .point;
    eprintln!(
        "no-op at 1000 QPS for {seconds} s: achieved {:.1} QPS, scheduling lag p99 {:.1} µs",
        p.achieved_qps, p.scheduling_lag_p99_us
    );
    // The arrivals are scheduled in advance: every one of them is served, whatever the timing.
    assert_eq!(p.completed, (1000.0 * seconds) as usize);
    p
}

#[test]
fn noop_service_serves_every_scheduled_request_near_the_offered_rate() {
    let p = noop_at_1000_qps(3.0);
    let err = (p.achieved_qps - 1000.0).abs() / 1000.0;
    assert!(err <= 0.25, "achieved {} qps", p.achieved_qps);
    assert!(
        p.scheduling_lag_p99_us < 100_000.0,
        "scheduling lag p99 {} µs",
        p.scheduling_lag_p99_us
    );
    assert_eq!(p.early_stop, None);
}

#[test]
#[ignore = "timing accuracy, needs a quiet machine: cargo test --test server -- --ignored"]
fn accuracy_noop_service_at_1000_qps_is_on_rate_and_punctual() {
    let p = noop_at_1000_qps(10.0);
    let err = (p.achieved_qps - 1000.0).abs() / 1000.0;
    assert!(err <= 0.02, "achieved {} qps", p.achieved_qps);
    assert!(
        p.scheduling_lag_p99_us < 200.0,
        "scheduling lag p99 {} µs",
        p.scheduling_lag_p99_us
    );
    assert!(p.meets_sla, "{p:?}");
}

/// An M/D/1 queue at ρ ≈ 0.6 (10 ms service, 60 QPS) for `seconds`; returns the measured and the
/// Pollaczek–Khinchine mean queueing delay, then the operating-point search for a 50 ms p99
/// (capacity 100 QPS), with probes of `probe_s`.
///
/// The theory is taken at the service time and arrival rate the probe measured, not the
/// nominal ones: on a busy machine a 10 ms service that wakes late runs 12 ms, which moves ρ
/// from 0.6 to 0.72 and the theory's delay from 7.5 to 15.4 ms.
fn md1(seconds: f64, probe_s: f64) -> (f64, f64, ServerResult) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut svc = [Fixed {
        fixed: Duration::from_millis(10),
        per_item: Duration::ZERO,
    }];
    let p = probe(&config(60.0, 1, 1000.0, seconds), &mut svc)
        .unwrap()
        .point;
    let s = p.request_times.as_ref().unwrap().compute.mean_ms / 1e3;
    assert!(
        s >= 0.010,
        "the service never runs faster than 10 ms: {s} s"
    );
    let rho = p.achieved_qps * s;
    assert!(rho < 1.0, "the service kept up: ρ = {rho}");
    let expect_ms = rho * s / (2.0 * (1.0 - rho)) * 1e3;
    eprintln!(
        "M/D/1: service {:.3} ms, {:.2} QPS (ρ = {rho:.3}): measured mean queueing delay {:.3} ms, \
         theory {expect_ms:.3} ms ({:.1}% off)",
        s * 1e3,
        p.achieved_qps,
        p.mean_queue_delay_ms,
        (p.mean_queue_delay_ms - expect_ms).abs() / expect_ms * 100.0
    );
    let (r, lat) =
        find_operating_point(&config(40.0, 1, 50.0, probe_s), &mut svc, 40.0, 12).unwrap();
    if let Some(op) = &r.operating_point {
        eprintln!(
            "operating point {:.1} QPS, p99 {:.1} ms after {} probes",
            op.offered_qps,
            op.p99_ms,
            r.curve.len()
        );
        assert!(
            !lat.is_empty(),
            "the operating point's latencies are returned"
        );
    }
    (p.mean_queue_delay_ms, expect_ms, r)
}

/// What holds for any operating-point search of the 10 ms service, however busy the machine.
fn assert_operating_point_below_capacity(r: &ServerResult) {
    let op = r
        .operating_point
        .as_ref()
        .expect("some rate meets a 50 ms p99 at 10 ms service");
    assert!(op.offered_qps < 100.0, "above capacity: {op:?}");
    assert!(op.p99_ms <= 50.0, "{op:?}");
    assert!(
        r.curve.iter().any(|c| !c.meets_sla),
        "the search brackets the SLA"
    );
}

#[test]
fn md1_queueing_delay_has_the_theorys_magnitude_and_the_operating_point_is_below_capacity() {
    let (measured, theory, r) = md1(20.0, 2.0);
    // The theory is at the measured service time and rate, so a busy machine's slow wake-ups
    // move it with the measurement (14% apart under 4 busy loops on 2 vCPUs); a delay counted
    // to the batch's end instead of its start (1.9× here) is outside.
    assert!(
        measured > 0.6 * theory && measured < 1.6 * theory,
        "mean queueing delay {measured} ms vs {theory} ms"
    );
    assert_operating_point_below_capacity(&r);
}

#[test]
#[ignore = "timing accuracy, needs a quiet machine: cargo test --test server -- --ignored"]
fn accuracy_md1_queue_matches_pollaczek_khinchine() {
    let (measured, theory, r) = md1(90.0, 3.0);
    let err = (measured - theory).abs() / theory;
    assert!(
        err <= 0.15,
        "mean queueing delay {measured} ms vs {theory} ms"
    );
    assert_operating_point_below_capacity(&r);
    let op = r.operating_point.unwrap();
    assert!(op.offered_qps >= 40.0, "{op:?}");
}

/// Operating points of an 8 ms + 1 ms/request service at batch 1 and with dynamic batching up to
/// 8 (5 ms queue delay), SLA 60 ms.
fn batch1_and_batched(probe_s: f64) -> (f64, f64) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mk = || {
        [Fixed {
            fixed: Duration::from_millis(8),
            per_item: Duration::from_millis(1),
        }]
    };
    let mut base = config(40.0, 1, 60.0, probe_s);
    let (single, _) = find_operating_point(&base, &mut mk(), 40.0, 10).unwrap();
    base.max_batch = 8;
    base.max_queue_delay = Duration::from_millis(5);
    let (batched, _) = find_operating_point(&base, &mut mk(), 40.0, 10).unwrap();
    let (a, b) = (
        single.operating_point.unwrap().offered_qps,
        batched.operating_point.unwrap().offered_qps,
    );
    eprintln!("operating point: batch 1 {a:.1} QPS, dynamic batching up to 8 {b:.1} QPS");
    // Capacity at batch 1 is 1000/9 QPS; batches of 8 raise it to 8000/16 = 500 QPS.
    assert!(a < 1000.0 / 9.0, "batch 1 cannot exceed its capacity: {a}");
    (a, b)
}

#[test]
fn dynamic_batching_raises_the_operating_point_when_batches_are_cheap() {
    let (a, b) = batch1_and_batched(2.0);
    assert!(
        b > a,
        "batching should raise the operating point: {a} -> {b}"
    );
}

#[test]
#[ignore = "timing accuracy, needs a quiet machine: cargo test --test server -- --ignored"]
fn accuracy_dynamic_batching_raises_the_operating_point_by_half_or_more() {
    let (a, b) = batch1_and_batched(3.0);
    assert!(
        b > 1.5 * a,
        "batching should raise the operating point: {a} -> {b}"
    );
}

/// A 10 ms service offered 500 QPS against a 20 ms SLA falls behind at once: the probe stops
/// early, well before its 2,500 scheduled requests, and says why.
#[test]
fn a_probe_stops_early_when_the_sla_is_clearly_missed() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut svc = [Fixed {
        fixed: Duration::from_millis(10),
        per_item: Duration::ZERO,
    }];
    let p = probe(&config(500.0, 1, 20.0, 5.0), &mut svc).unwrap().point;
    let why = p.early_stop.as_deref().expect("stopped early");
    assert!(
        why.contains("over the SLA") || why.contains("backlog"),
        "{why}"
    );
    assert!(p.completed < 2_500, "{} of 2500 served", p.completed);
    assert!(!p.meets_sla);
}

/// The search never probes more than it is allowed.
#[test]
fn the_search_keeps_to_its_probe_limit() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut svc = [Fixed {
        fixed: Duration::from_millis(5),
        per_item: Duration::ZERO,
    }];
    let (r, _) = find_operating_point(&config(50.0, 1, 100.0, 0.5), &mut svc, 50.0, 3).unwrap();
    assert!(
        !r.curve.is_empty() && r.curve.len() <= 3,
        "{} probes",
        r.curve.len()
    );
}

/// 150 QPS offered to a 10 ms service (capacity 100 QPS) for 1 s with a 10 s SLA: every
/// request is served well within the SLA, but the server falls behind the offered rate, so the
/// point does not meet it (achieved must be within 2% of offered).
#[test]
fn a_rate_the_server_cannot_keep_up_with_does_not_meet_the_sla() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut svc = [Fixed {
        fixed: Duration::from_millis(10),
        per_item: Duration::ZERO,
    }];
    let p = probe(&config(150.0, 1, 10_000.0, 1.0), &mut svc)
        .unwrap()
        .point;
    assert_eq!(p.early_stop, None);
    assert!(p.p99_ms <= 10_000.0, "{p:?}");
    assert!(p.achieved_qps < 0.98 * 150.0, "{p:?}");
    assert!(!p.meets_sla, "{p:?}");
}

fn point(rate: f64, meets: bool) -> CurvePoint {
    CurvePoint {
        offered_qps: rate,
        achieved_qps: rate,
        completed: 100,
        p50_ms: 10.0,
        p90_ms: 20.0,
        p99_ms: if meets { 40.0 } else { 80.0 },
        p99_interval_ms: None,
        mean_ms: 12.0,
        mean_queue_delay_ms: 1.0,
        mean_batch: 1.0,
        scheduling_lag_p99_us: 10.0,
        meets_sla: meets,
        early_stop: None,
        request_times: None,
    }
}

/// A confirmation that misses the SLA sends the search below the rate until a rate passes its
/// own confirmation; the operating point becomes that rate, failed confirmations join the
/// curve, and the reader is told.
#[test]
fn a_failed_confirmation_sends_the_search_below_until_one_passes() {
    let mut search = ServerResult {
        max_batch: 1,
        max_queue_delay_ms: 0.0,
        instances: 1,
        sla_p99_ms: 50.0,
        operating_point: Some(point(60.0, true)),
        curve: vec![point(40.0, true), point(60.0, true), point(80.0, false)],
        confirmation: None,
    };
    // This service meets the SLA up to 50 QPS only (the search was optimistic).
    let mut asked = Vec::new();
    let (probe, (), notes) = recbench::harness::server::confirm(&mut search, 50.0, |rate| {
        asked.push(rate);
        Ok((
            recbench::harness::server::Probe {
                point: point(rate, rate <= 50.0),
                latencies_ms: vec![1.0],
            },
            (),
        ))
    })
    .unwrap();
    // 60 fails; next max(40, 0.85 × 60 = 51) = 51 fails; next max(40, 43.35) passes.
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(
        (asked[1] - 51.0).abs() < 1e-9 && (asked[2] - 43.35).abs() < 1e-9,
        "{asked:?}"
    );
    assert!(probe.point.meets_sla);
    assert_eq!(
        search.operating_point.as_ref().unwrap().offered_qps,
        asked[2]
    );
    assert_eq!(
        search.curve.len(),
        5,
        "both failed confirmations are on the curve"
    );
    assert_eq!(notes.len(), 2, "{notes:?}");

    // A service that never passes: at most MAX_RECONFIRMATIONS more probes, marked marginal.
    let mut search2 = ServerResult {
        operating_point: Some(point(60.0, true)),
        curve: vec![point(60.0, true)],
        ..search
    };
    let mut n = 0;
    let (probe, (), notes) = recbench::harness::server::confirm(&mut search2, 50.0, |rate| {
        n += 1;
        Ok((
            recbench::harness::server::Probe {
                point: point(rate, false),
                latencies_ms: vec![1.0],
            },
            (),
        ))
    })
    .unwrap();
    assert_eq!(n, 1 + recbench::harness::server::MAX_RECONFIRMATIONS);
    assert!(!probe.point.meets_sla);
    assert!(notes
        .last()
        .unwrap()
        .contains("no rate passed its confirmation"));
}

/// Two instances serve one queue together: 150 QPS to a 10 ms service (capacity 100 QPS per
/// instance) keeps up with two instances and falls behind with one. Count-based, not timing:
/// one instance cannot serve more than 100 requests a second whatever the machine does.
#[test]
fn two_instances_serve_what_one_cannot() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mk = || Fixed {
        fixed: Duration::from_millis(10),
        per_item: Duration::ZERO,
    };
    let cfg = config(150.0, 1, 10_000.0, 2.0);
    let one = probe(&cfg, &mut [mk()]).unwrap().point;
    let two = probe(&cfg, &mut [mk(), mk()]).unwrap().point;
    eprintln!(
        "150 QPS: one instance achieved {:.1}, two {:.1}",
        one.achieved_qps, two.achieved_qps
    );
    assert!(one.achieved_qps < 0.98 * 150.0 && !one.meets_sla, "{one:?}");
    assert!(two.achieved_qps > one.achieved_qps, "{two:?}");
    assert_eq!(two.completed, 300);
}

/// `max_queue_delay` lets a batch wait for more requests: at 100 QPS with batches of up to 8, a
/// 30 ms wait fills batches (the mean is well above 1), no wait serves them as they come.
#[test]
fn max_queue_delay_fills_batches() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mk = || {
        [Fixed {
            fixed: Duration::from_millis(1),
            per_item: Duration::ZERO,
        }]
    };
    let mut cfg = config(100.0, 8, 10_000.0, 2.0);
    let eager = probe(&cfg, &mut mk()).unwrap().point;
    cfg.max_queue_delay = Duration::from_millis(30);
    let patient = probe(&cfg, &mut mk()).unwrap().point;
    eprintln!(
        "mean batch: no wait {:.2}, 30 ms wait {:.2}",
        eager.mean_batch, patient.mean_batch
    );
    // Poisson arrivals at 100 QPS put about 3 requests in 30 ms.
    assert!(patient.mean_batch > 1.5, "{patient:?}");
    assert!(
        patient.mean_batch > eager.mean_batch,
        "{eager:?} {patient:?}"
    );
    assert!(patient.mean_queue_delay_ms > eager.mean_queue_delay_ms);
}

/// Each request's time splits into queued (for a free instance), waiting for its batch to
/// close and its batch's compute; with the dispatcher's lag they make up its latency. A
/// service of 3 ms per batch with a 4 ms batching wait at 100 QPS, and one of 5 ms per
/// request at 150 QPS (busy: requests queue): each part is where it must be, and the parts'
/// means sum to the mean latency less the lag, which is code between two clock reads.
#[test]
fn request_times_add_up_to_the_latency() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut batching = config(100.0, 8, 10_000.0, 2.0);
    batching.max_queue_delay = Duration::from_millis(4);
    let busy = config(150.0, 1, 10_000.0, 2.0);
    for (cfg, fixed) in [(batching, 3), (busy, 5)] {
        let mut svc = [Fixed {
            fixed: Duration::from_millis(fixed),
            per_item: Duration::ZERO,
        }];
        let p = probe(&cfg, &mut svc).unwrap().point;
        let t = p.request_times.expect("request times recorded");
        eprintln!(
            "{fixed} ms service: {t:?}, mean latency {:.3} ms",
            p.mean_ms
        );
        // The service's own time is a floor for compute.
        assert!(t.compute.mean_ms >= fixed as f64, "{t:?}");
        let sum = t.queued.mean_ms + t.batch_wait.mean_ms + t.compute.mean_ms;
        assert!(
            sum <= p.mean_ms + 1e-6,
            "parts {sum} > latency {}",
            p.mean_ms
        );
        assert!(
            p.mean_ms - sum < 0.5_f64.max(0.1 * p.mean_ms),
            "parts {sum} leave too much of latency {}: {t:?}",
            p.mean_ms
        );
        // Relative checks only (a busy machine stretches every part): with batching at low
        // load the oldest request of every batch waits up to 4 ms for it to close, while the
        // instance is mostly free; without batching nobody waits for a batch, and at 150 QPS
        // × 5 ms (ρ = 0.75) requests queue for the one instance (7.5 ms on average, M/D/1).
        if cfg.max_batch > 1 {
            assert!(t.batch_wait.mean_ms > 1.0, "{t:?}");
            assert!(t.batch_wait.mean_ms > t.queued.mean_ms, "{t:?}");
        } else {
            assert!(t.queued.mean_ms > 1.0, "{t:?}");
            assert!(t.queued.mean_ms > 2.0 * t.batch_wait.mean_ms, "{t:?}");
        }
    }
}
