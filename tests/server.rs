//! Accuracy of the server load generator itself, with mock services of known service time.
//!
//! The tests in this file run one at a time (a lock), because each measures timing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use recbench::harness::server::{find_operating_point, probe, ProbeConfig, Service};

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

#[test]
fn noop_service_at_1000_qps_is_on_rate_and_punctual() {
    let _g = SERIAL.lock().unwrap();
    let mut svc = [Fixed {
        fixed: Duration::ZERO,
        per_item: Duration::ZERO,
    }];
    let p = probe(&config(1000.0, 1, 50.0, 10.0), &mut svc)
        .unwrap()
        .point;
    assert_eq!(p.completed, 10_000);
    let err = (p.achieved_qps - 1000.0).abs() / 1000.0;
    assert!(err <= 0.02, "achieved {} qps", p.achieved_qps);
    assert!(
        p.scheduling_lag_p99_us < 200.0,
        "scheduling lag p99 {} µs",
        p.scheduling_lag_p99_us
    );
    assert!(p.meets_sla, "{p:?}");
}

#[test]
fn md1_queue_matches_pollaczek_khinchine_and_the_operating_point_is_below_capacity() {
    let _g = SERIAL.lock().unwrap();
    let s = 0.010;
    let mut svc = [Fixed {
        fixed: Duration::from_secs_f64(s),
        per_item: Duration::ZERO,
    }];
    // ρ = 0.6: mean wait in queue ρ·S / (2(1 − ρ)) = 7.5 ms.
    let p = probe(&config(60.0, 1, 1000.0, 90.0), &mut svc)
        .unwrap()
        .point;
    let rho = 60.0 * s;
    let expect_ms = rho * s / (2.0 * (1.0 - rho)) * 1e3;
    let err = (p.mean_queue_delay_ms - expect_ms).abs() / expect_ms;
    eprintln!(
        "M/D/1: measured mean queueing delay {:.3} ms, theory {expect_ms:.3} ms ({:.1}% off)",
        p.mean_queue_delay_ms,
        err * 100.0
    );
    assert!(
        err <= 0.15,
        "mean queueing delay {} ms vs {expect_ms} ms",
        p.mean_queue_delay_ms
    );

    // Capacity is 100 QPS; with a 50 ms p99 budget the operating point must be below it.
    let (r, lat) = find_operating_point(&config(40.0, 1, 50.0, 3.0), &mut svc, 40.0, 12).unwrap();
    let op = r
        .operating_point
        .expect("40 QPS meets a 50 ms p99 at 10 ms service");
    eprintln!(
        "operating point {:.1} QPS, p99 {:.1} ms after {} probes",
        op.offered_qps,
        op.p99_ms,
        r.curve.len()
    );
    assert!(op.offered_qps < 100.0 && op.offered_qps >= 40.0, "{op:?}");
    assert!(op.p99_ms <= 50.0 && !lat.is_empty());
    assert!(
        r.curve.iter().any(|c| !c.meets_sla),
        "the search brackets the SLA"
    );
}

#[test]
fn dynamic_batching_raises_the_operating_point_when_batches_are_cheap() {
    let _g = SERIAL.lock().unwrap();
    // 8 ms per batch plus 1 ms per request: batching amortises the fixed part.
    let mk = || {
        [Fixed {
            fixed: Duration::from_millis(8),
            per_item: Duration::from_millis(1),
        }]
    };
    let mut base = config(40.0, 1, 60.0, 3.0);
    let (single, _) = find_operating_point(&base, &mut mk(), 40.0, 10).unwrap();
    base.max_batch = 8;
    base.max_queue_delay = Duration::from_millis(5);
    let (batched, _) = find_operating_point(&base, &mut mk(), 40.0, 10).unwrap();
    let (a, b) = (
        single.operating_point.unwrap().offered_qps,
        batched.operating_point.unwrap().offered_qps,
    );
    eprintln!("operating point: batch 1 {a:.1} QPS, dynamic batching up to 8 {b:.1} QPS");
    assert!(a < 1000.0 / 9.0, "batch 1 cannot exceed its capacity: {a}");
    assert!(
        b > 1.5 * a,
        "batching should raise the operating point: {a} -> {b}"
    );
}
