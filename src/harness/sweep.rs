//! The one sweep loop. A plain sweep runs every planned run once, on this binary; an interleaved
//! one alternates a baseline binary and this one (A B A B …) for `rounds` rounds per run, or
//! until `--rounds auto` settles. Both tell what happens to the same observers: the terminal
//! ([`Progress`]: a bar, plain lines or nothing) and the results files ([`Writer`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::progress::Progress;
use super::{
    attribute_idle, ceiling_for, ceilings, merge_rounds, one_line, spawn_worker, AutoRounds,
    References, SweepOptions, AUTO_MAX_ROUNDS, INTERRUPTED,
};
use crate::error::Result;
use crate::results::{Environment, ResultsFile, RunResult, Status};
use crate::scenario::PlannedRun;

/// The sides of an interleaved sweep, in the order they run and their files are written.
pub const SIDES: [&str; 2] = ["baseline", "candidate"];

/// What watches a sweep as it goes.
pub trait Observer {
    /// A line of information (preparing a model's weights and reference).
    fn note(&mut self, msg: &str);
    /// A worker starts; `label` names the run, and its round and side when interleaved.
    fn run_started(&mut self, label: &str);
    /// Run `p` finished (or was skipped): one result per side, its rounds merged.
    fn run_finished(&mut self, p: &PlannedRun, results: &[RunResult]) -> Result<()>;
}

impl Observer for Progress {
    fn note(&mut self, msg: &str) {
        Progress::note(self, msg);
    }

    fn run_started(&mut self, label: &str) {
        self.start(label);
    }

    fn run_finished(&mut self, p: &PlannedRun, results: &[RunResult]) -> Result<()> {
        let weight = if p.skip.is_none() {
            p.spec.worst_case_s()
        } else {
            0.0
        };
        let summary = match results {
            [one] => one_line(one),
            sides => sides
                .iter()
                .zip(SIDES)
                .map(|(r, side)| format!("{side} {}", one_line(r)))
                .collect::<Vec<_>>()
                .join("; "),
        };
        self.finish(&p.spec.id, weight, &summary);
        Ok(())
    }
}

/// The results files of a sweep, one per side, each saved (atomically) after every run and kept
/// in plan order, whatever order a resumed sweep's runs finished in.
pub struct Writer {
    pub files: Vec<(PathBuf, ResultsFile)>,
    order: BTreeMap<String, usize>,
}

impl Writer {
    /// Writes each file as it is now (a fresh file, or the runs a resumed sweep keeps).
    pub fn new(mut files: Vec<(PathBuf, ResultsFile)>, planned: &[PlannedRun]) -> Result<Writer> {
        for (path, file) in &mut files {
            file.save(path)?;
        }
        let order = planned
            .iter()
            .enumerate()
            .map(|(i, p)| (p.spec.id.clone(), i))
            .collect();
        Ok(Writer { files, order })
    }
}

impl Observer for Writer {
    fn note(&mut self, _: &str) {}

    fn run_started(&mut self, _: &str) {}

    fn run_finished(&mut self, _: &PlannedRun, results: &[RunResult]) -> Result<()> {
        for ((path, file), r) in self.files.iter_mut().zip(results) {
            file.runs.push(r.clone());
            let order = &self.order;
            file.runs
                .sort_by_key(|r| order.get(&r.spec.id).copied().unwrap_or(usize::MAX));
            file.save(path)?;
        }
        Ok(())
    }
}

/// Runs `planned` on `exes` (one binary, or a baseline and this one), telling `observers`.
/// Returns whether the sweep was interrupted; every finished run has been told by then.
pub fn each_run(
    planned: Vec<PlannedRun>,
    exes: &[PathBuf],
    env: &Environment,
    opts: &SweepOptions,
    observers: &mut [&mut dyn Observer],
) -> Result<bool> {
    let ceilings = ceilings(env);
    let mut references = References::default();
    let interleaved = exes.len() > 1;
    let auto = opts.auto_rounds.filter(|_| interleaved);
    let max_rounds = match (interleaved, auto) {
        (false, _) => 1,
        (true, Some(_)) => AUTO_MAX_ROUNDS,
        (true, None) => opts.rounds.max(1),
    };
    let sweep_start = Instant::now();
    let mut runs_left = planned.iter().filter(|p| p.skip.is_none()).count().max(1);
    for p in planned {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let mut sides: Vec<Vec<RunResult>> = vec![vec![]; exes.len()];
        let mut auto_note = None;
        if let Some(reason) = &p.skip {
            for s in &mut sides {
                s.push(RunResult::not_run(
                    p.spec.clone(),
                    Status::Skipped,
                    reason.clone(),
                ));
            }
        } else {
            references.prepare(&p, &mut |msg: &str| {
                for o in observers.iter_mut() {
                    o.note(msg);
                }
            })?;
            // The rest of the budget, shared among the runs still to go.
            let share_s = auto.map(|a| {
                (a.budget_s - sweep_start.elapsed().as_secs_f64()).max(0.0) / runs_left as f64
            });
            let run_start = Instant::now();
            for round in 0..max_rounds {
                for (k, exe) in exes.iter().enumerate() {
                    let label = if interleaved {
                        format!("{} round {} {}", p.spec.id, round + 1, SIDES[k])
                    } else {
                        p.spec.id.clone()
                    };
                    for o in observers.iter_mut() {
                        o.run_started(&label);
                    }
                    let ceiling = ceiling_for(&ceilings, &env.inventory.gpus, &p);
                    match spawn_worker(exe, &p, ceiling)? {
                        Some(r) => sides[k].push(r),
                        None => return Ok(true),
                    }
                }
                let (Some(auto), Some(share)) = (auto, share_s) else {
                    continue;
                };
                let spent = run_start.elapsed().as_secs_f64();
                if let Some(why) = auto_stop(&sides, round + 1, max_rounds, auto, spent, share) {
                    auto_note = Some(format!("rounds auto: {why}"));
                    break;
                }
            }
            runs_left = runs_left.saturating_sub(1).max(1);
        }
        let results: Vec<RunResult> = sides
            .into_iter()
            .map(|rounds| {
                let mut r = merge_rounds(rounds);
                r.notes.extend(auto_note.clone());
                attribute_idle(env, &mut r);
                r
            })
            .collect();
        for o in observers.iter_mut() {
            o.run_finished(&p, &results)?;
        }
    }
    Ok(false)
}

/// Why `--rounds auto` stops after `done` paired rounds, if it does: a round failed, the p50 and
/// mean-time slowdowns are each decided at the gate, the run spent its share of the budget
/// (`spent` of `share` seconds), or it ran the most rounds a run gets.
fn auto_stop(
    sides: &[Vec<RunResult>],
    done: usize,
    max_rounds: usize,
    auto: AutoRounds,
    spent: f64,
    share: f64,
) -> Option<String> {
    if done < 2 {
        return None;
    }
    // The gate as `--max-regression` took it: 10, 2.5 or 0.01 (percent), not rounded away.
    let gate = (auto.threshold * 1e4).round() / 100.0;
    let samples =
        |k: usize| -> Vec<&[f64]> { sides[k].iter().map(|r| r.samples_ms.as_slice()).collect() };
    if sides.iter().flatten().any(|r| r.status != Status::Ok) {
        Some(format!(
            "stopped after {done} rounds: a round did not complete"
        ))
    } else if crate::compare::rounds_settle(&samples(0), &samples(1), auto.threshold) {
        Some(format!(
            "settled after {done} rounds: the p50 and mean-time slowdowns are each decided at \
             ±{gate}%"
        ))
    } else if spent >= share {
        Some(format!(
            "stopped after {done} rounds at this run's share of the time budget ({share:.0} s \
             of --budget-s {:.0}), not settled at ±{gate}%",
            auto.budget_s
        ))
    } else if done == max_rounds {
        Some(format!(
            "stopped at the most rounds a run gets ({max_rounds}), not settled at ±{gate}%"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rand::SplitMix64;

    /// Rounds of one worker process each, 60 iterations around each `centre` ms, 3% apart,
    /// on a run of the committed reference results, for the baseline's and the candidate's
    /// centres.
    fn sides(baseline: &[f64], candidate: &[f64]) -> Vec<Vec<RunResult>> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let f = ResultsFile::load(&p).unwrap();
        let run = f.runs.into_iter().find(|r| r.status == Status::Ok).unwrap();
        let round = |centre: f64, seed: u64| {
            let mut rng = SplitMix64::new(seed);
            let mut r = run.clone();
            r.samples_ms = (0..60)
                .map(|_| centre * (1.0 + 0.03 * rng.next_normal()))
                .collect();
            r
        };
        [baseline, candidate]
            .iter()
            .enumerate()
            .map(|(k, c)| {
                c.iter()
                    .enumerate()
                    .map(|(i, &m)| round(m, 100 * k as u64 + i as u64))
                    .collect()
            })
            .collect()
    }

    const GATE: AutoRounds = AutoRounds {
        threshold: 0.0001,
        budget_s: 60.0,
    };

    /// Each reason `--rounds auto` stops, and none before two rounds or while budget is left.
    /// The budget's branch is checked here on rounds that cannot settle (their two pairs
    /// disagree by 10%); the integration test in tests/faults.rs runs identical builds, which a
    /// gate of ±0.01% settles now and then (each bound is 95%).
    #[test]
    fn auto_rounds_stop_for_the_reason_they_give() {
        let clear = sides(&[10.0, 10.0], &[12.0, 12.1]);
        assert_eq!(
            auto_stop(&sides(&[10.0], &[12.0]), 1, 20, GATE, 9.5, 9.0),
            None
        );
        let why = auto_stop(&clear, 2, 20, GATE, 0.0, 9.0).unwrap();
        assert_eq!(
            why,
            "settled after 2 rounds: the p50 and mean-time slowdowns are each decided at \
             ±0.01%"
        );

        let split = sides(&[10.0, 10.0], &[10.5, 9.5]);
        assert_eq!(auto_stop(&split, 2, 20, GATE, 1.0, 9.0), None);
        let why = auto_stop(&split, 2, 20, GATE, 9.5, 9.0).unwrap();
        assert!(
            why.starts_with("stopped after 2 rounds at this run's share of the time budget (9 s of --budget-s 60), not settled at ±0.01%"),
            "{why}"
        );
        let why = auto_stop(&split, 2, 2, GATE, 1.0, 9.0).unwrap();
        assert_eq!(
            why,
            "stopped at the most rounds a run gets (2), not settled at ±0.01%"
        );

        let mut failed = clear.clone();
        failed[1][1].status = Status::Failed;
        let why = auto_stop(&failed, 2, 20, GATE, 0.0, 9.0).unwrap();
        assert_eq!(why, "stopped after 2 rounds: a round did not complete");
    }
}
