//! Host tuning chosen by measurement: racing candidate kernels or settings side by side
//! ([`race_all`]), remembering each decision per host and build ([`choices`]), and the process
//! settings the workers run under ([`malloc`]). Below both the backends (their kernel choices)
//! and the harness (OpenMP spin and huge pages, raced in probe processes), and above neither.

pub mod choices;
pub mod malloc;

/// The variables among `names` that are set in this process, as `NAME=value`: the settings a
/// user (or a benchmark script) gave that a decision by measurement must keep apart or obey.
pub fn set_in_env(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect()
}

/// Milliseconds of each candidate kernel on one input: the best of 3 interleaved calls each
/// (A B C A B C …), after one warm-up call each (a bounded cost at load). What every choice by
/// measurement times with.
///
/// A candidate whose first timed call took more than [`HOPELESS_FACTOR`] times the fastest
/// first timed call, and more than [`HOPELESS_MS`], is not called again: that time stands. The
/// warm-up call is never judged: it carries one-time costs (oneDNN builds its kernels on a
/// first call: 34 ms against 0.6 ms for every later one on the EPYC VM). The two calls saved
/// can be seconds (torch's weight-only int8 at 4,096 rows: 1 s a call against 6 ms for
/// `_int_mm` on the same VM).
pub fn race_all<E>(
    candidates: &mut [Box<dyn FnMut() -> std::result::Result<(), E> + '_>],
) -> std::result::Result<Vec<f64>, E> {
    for c in candidates.iter_mut() {
        c()?;
    }
    let mut best = vec![f64::INFINITY; candidates.len()];
    let mut hopeless = vec![false; candidates.len()];
    for round in 0..3 {
        for ((c, b), h) in candidates.iter_mut().zip(best.iter_mut()).zip(&hopeless) {
            if *h {
                continue;
            }
            let t = std::time::Instant::now();
            c()?;
            *b = b.min(t.elapsed().as_secs_f64() * 1e3);
        }
        if round == 0 {
            let fastest = best.iter().copied().fold(f64::INFINITY, f64::min);
            for (h, &b) in hopeless.iter_mut().zip(&best) {
                *h = b > HOPELESS_FACTOR * fastest && b > HOPELESS_MS;
            }
        }
    }
    Ok(best)
}

/// See [`race_all`].
const HOPELESS_FACTOR: f64 = 10.0;
const HOPELESS_MS: f64 = 20.0;

/// [`race_all`] of two candidates.
pub fn race<E>(
    a: impl FnMut() -> std::result::Result<(), E>,
    b: impl FnMut() -> std::result::Result<(), E>,
) -> std::result::Result<(f64, f64), E> {
    let t = race_all(&mut [Box::new(a), Box::new(b)])?;
    Ok((t[0], t[1]))
}

#[cfg(test)]
mod tests {
    /// Races a candidate that sleeps `first_ms` on its first call and `later_ms` on every later
    /// one against a no-op. Returns how often each was called and each one's time.
    fn race_sleeper(first_ms: u64, later_ms: u64) -> ((u32, u32), (f64, f64)) {
        let (mut na, mut nb) = (0, 0);
        let times = super::race::<()>(
            || {
                na += 1;
                let ms = if na == 1 { first_ms } else { later_ms };
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            },
            || {
                nb += 1;
                Ok(())
            },
        )
        .unwrap();
        ((na, nb), times)
    }

    /// `race` returns each candidate's own best time, in the order given: a candidate that
    /// sleeps 5 ms a call is never reported below 5 ms, and the other is the faster (the best
    /// of 3 calls of a no-op).
    #[test]
    fn race_times_each_candidate_in_order() {
        let (calls, (slow, fast)) = race_sleeper(5, 5);
        assert_eq!(calls, (4, 4), "one warm-up and three timed calls each");
        assert!(slow >= 5.0 && fast < slow, "{slow} {fast}");
    }

    /// A candidate whose first timed call took over 10× the fastest one's and over 20 ms is
    /// called no more: that time is its time, and the others are timed as before.
    #[test]
    fn a_hopeless_candidate_is_called_twice() {
        let (calls, (slow, fast)) = race_sleeper(30, 30);
        assert_eq!(calls, (2, 4), "warm-up and one timed call");
        assert!(slow >= 30.0 && fast < 1.0, "{slow} {fast}");
    }

    /// A slow first call (a one-time cost, like a JIT) does not make a candidate hopeless: it
    /// is timed like the others, and its later calls count.
    #[test]
    fn a_slow_first_call_is_not_judged() {
        let (calls, (jit, other)) = race_sleeper(30, 0);
        assert_eq!(calls, (4, 4));
        assert!(jit < 1.0 && other < 1.0, "{jit} {other}");
    }
}
