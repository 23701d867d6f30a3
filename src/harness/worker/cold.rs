//! A worker's cold start, timed as it happens ([`Clock`]) and summed into the results'
//! [`ColdStart`] once the run's steady latency is known.

use std::time::Instant;

use crate::results::{ColdStart, STEADY_WITHIN};

/// The parts of a cold start, each timed from the end of the one before; what only a benchmark
/// does in between is [`Clock::skip`]ped.
pub struct Clock {
    exec_s: Option<f64>,
    last: Instant,
    model_files_s: f64,
    open_s: f64,
    index_s: Option<f64>,
}

/// The parts [`Clock::lap`] records.
#[derive(Clone, Copy)]
pub enum Part {
    ModelFiles,
    Open,
    Index,
}

impl Clock {
    /// Starts timing now; the time before (exec to here) from the OS.
    pub fn start() -> Clock {
        Clock {
            exec_s: process_age_s(),
            last: Instant::now(),
            model_files_s: 0.0,
            open_s: 0.0,
            index_s: None,
        }
    }

    /// Records the time since the last lap or skip as `part` (adding to what it had).
    pub fn lap(&mut self, part: Part) {
        let s = self.last.elapsed().as_secs_f64();
        match part {
            Part::ModelFiles => self.model_files_s += s,
            Part::Open => self.open_s += s,
            Part::Index => *self.index_s.get_or_insert(0.0) += s,
        }
        self.last = Instant::now();
    }

    /// Leaves the time since the last lap out (a benchmark's own work).
    pub fn skip(&mut self) {
        self.last = Instant::now();
    }

    /// The cold start, given the warm-up's iteration times (the first is the first request)
    /// and the run's measured p50.
    pub fn finish(self, warm_ms: &[f64], p50_ms: f64) -> Option<ColdStart> {
        let first_request_ms = *warm_ms.first()?;
        let to_steady_s = to_steady_s(warm_ms, p50_ms);
        let warm_s = to_steady_s.unwrap_or(warm_ms.iter().sum::<f64>() / 1e3);
        Some(ColdStart {
            exec_s: self.exec_s,
            model_files_s: self.model_files_s,
            open_s: self.open_s,
            index_s: self.index_s,
            first_request_ms,
            to_steady_s,
            total_s: self.exec_s.unwrap_or(0.0)
                + self.model_files_s
                + self.open_s
                + self.index_s.unwrap_or(0.0)
                + warm_s,
        })
    }
}

/// Seconds from the first iteration's start to the end of the first iteration within
/// [`STEADY_WITHIN`] of `p50_ms`; `None` when none is.
pub fn to_steady_s(warm_ms: &[f64], p50_ms: f64) -> Option<f64> {
    let mut s = 0.0;
    for &ms in warm_ms {
        s += ms / 1e3;
        if ms <= p50_ms * (1.0 + STEADY_WITHIN) {
            return Some(s);
        }
    }
    None
}

/// How long ago this process started, from `/proc/self/stat` (its start in clock ticks after
/// boot) and `/proc/uptime`: 10 ms resolution. `None` off Linux.
fn process_age_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields count from after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    let start_ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let age = uptime - start_ticks / clock_ticks_per_s();
    (age >= 0.0).then_some(age)
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`, USER_HZ: 100 on x86 and arm64).
fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant; it has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand: p50 10 ms, so steady is ≤ 11 ms. Iterations 50, 20, 12, 10.5: the
    /// fourth is the first within 10%, at 50 + 20 + 12 + 10.5 = 92.5 ms.
    #[test]
    fn steady_is_the_end_of_the_first_iteration_within_ten_percent_of_p50() {
        let got = to_steady_s(&[50.0, 20.0, 12.0, 10.5, 30.0], 10.0).unwrap();
        assert!((got - 0.0925).abs() < 1e-12, "{got}");
        assert_eq!(to_steady_s(&[9.0], 10.0), Some(0.009));
        assert_eq!(to_steady_s(&[50.0, 20.0], 10.0), None);
    }

    /// The total is the parts: exec, files, open, index and the warm-up to steady (the whole
    /// warm-up when it never got there).
    #[test]
    fn the_total_is_its_parts() {
        let c = Clock {
            exec_s: Some(0.5),
            last: Instant::now(),
            model_files_s: 0.25,
            open_s: 2.0,
            index_s: Some(1.0),
        };
        let cs = c.finish(&[100.0, 20.0, 10.0], 10.0).unwrap();
        assert_eq!(cs.first_request_ms, 100.0);
        assert!(
            (cs.total_s - (0.5 + 0.25 + 2.0 + 1.0 + 0.13)).abs() < 1e-12,
            "{cs:?}"
        );
        let c = Clock {
            exec_s: None,
            last: Instant::now(),
            model_files_s: 0.0,
            open_s: 1.0,
            index_s: None,
        };
        let cs = c.finish(&[100.0, 50.0], 10.0).unwrap();
        assert_eq!(cs.to_steady_s, None);
        assert!((cs.total_s - 1.15).abs() < 1e-12, "{cs:?}");
    }

    /// This test process started before now and after boot.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_knows_its_age() {
        let age = process_age_s().unwrap();
        assert!((0.0..24.0 * 3600.0).contains(&age), "{age}");
    }
}
