//! How a sweep (or a parity check) shows its progress: on a terminal, a bar with the run count,
//! the current run, the elapsed time and an ETA; anywhere else (CI, a Kubernetes Job log), one
//! plain line per finished run with the same facts, so a log shows progress while it happens;
//! with `--quiet`, nothing.
//!
//! The ETA weighs every item by what the caller knows of its cost (a run's worst-case
//! measurement time, [`RunSpec::worst_case_s`]; a parity check's model size) and scales the
//! weight still to go by the time the finished items took per unit of weight: loading, parity
//! and a machine's speed are then accounted for as the work goes.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[cfg(doc)]
use crate::spec::RunSpec;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// An indicatif bar on stderr.
    Bar,
    /// One line per finished run on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

impl Display {
    /// A bar when stderr is a terminal, else lines; nothing when `quiet`.
    pub fn for_stderr(quiet: bool) -> Display {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bar
        } else {
            Display::Lines
        }
    }
}

/// Progress of a series of `total` runs.
pub struct Progress {
    display: Display,
    bar: Option<ProgressBar>,
    started: Instant,
    total: usize,
    finished: usize,
    /// Worst-case seconds of the runs still to go, and of those finished since the start.
    weight_left: f64,
    weight_done: f64,
}

/// `1h02m`, `4m10s`, `12s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    /// Progress over `total` items, of which those still to go weigh `weight_left` together.
    pub fn new(display: Display, total: usize, weight_left: f64) -> Progress {
        let bar = (display == Display::Bar).then(|| {
            let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} runs, {elapsed} elapsed{prefix}\n  {wide_msg}",
                )
                .expect("a valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(500));
            b
        });
        Progress {
            display,
            bar,
            started: Instant::now(),
            total,
            finished: 0,
            weight_left,
            weight_done: 0.0,
        }
    }

    /// Marks runs finished earlier (a resumed sweep) on the bar.
    pub fn skip_finished(&mut self, n: usize) {
        self.finished += n;
        if let Some(b) = &self.bar {
            b.set_position(self.finished as u64);
        }
    }

    /// A line of information (preparing a model, resuming a file).
    pub fn note(&self, msg: &str) {
        match (&self.bar, self.display) {
            (Some(b), _) => b.println(msg),
            (None, Display::Lines) => {
                let _ = writeln!(std::io::stderr(), "{msg}");
            }
            _ => {}
        }
    }

    /// Item `id` starts.
    pub fn start(&self, id: &str) {
        if let Some(b) = &self.bar {
            b.set_message(id.to_string());
        }
    }

    /// The estimated time left, once a run with weight has finished.
    pub fn eta(&self) -> Option<Duration> {
        (self.weight_done > 0.0).then(|| {
            let per_weight = self.started.elapsed().as_secs_f64() / self.weight_done;
            Duration::from_secs_f64((per_weight * self.weight_left).max(0.0))
        })
    }

    /// Item `id` of weight `w` (0 for one that did not run) finished with `summary`.
    pub fn finish(&mut self, id: &str, w: f64, summary: &str) {
        self.finished += 1;
        self.weight_left = (self.weight_left - w).max(0.0);
        self.weight_done += w;
        let eta = self
            .eta()
            .map_or("ETA —".into(), |d| format!("ETA {}", human(d)));
        let line = format!(
            "[{}/{}] {} {summary} (elapsed {}, {eta})",
            self.finished,
            self.total,
            id,
            human(self.started.elapsed()),
        );
        match (&self.bar, self.display) {
            (Some(b), _) => {
                b.println(line);
                b.set_position(self.finished as u64);
                b.set_prefix(format!(", {eta}"));
            }
            (None, Display::Lines) => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            _ => {}
        }
    }

    /// Clears the bar (lines stay as they are).
    pub fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(250)), "4m10s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
    }
}
