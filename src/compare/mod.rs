//! The CI regression gate: compare a candidate results file with a baseline, run by run and
//! metric by metric, and call a change a regression only when it exceeds the threshold with 95%
//! confidence.
//!
//! For latency and throughput the decision uses the per-iteration samples both files keep: a
//! bootstrap (2,000 resamples, seeded) of the ratio candidate/baseline of the statistic (median,
//! p99, or mean iteration time for throughput). Most of the variation between two measurements
//! of the same code lies between processes (kernel choices, memory placement, clocks,
//! neighbours), not between the iterations of one, so where a run was merged from interleaved
//! rounds (one worker process each) the bootstrap has two levels, as Kalibera and Jones
//! recommend ("Rigorous benchmarking in reasonable time", ISMM 2013): it resamples the rounds,
//! then the iterations within each drawn round. Rounds of the two files with the same count are
//! resampled as pairs (round k of the baseline ran back to back with round k of the candidate),
//! so drift that hit both sides cancels. A run of one process has no process-level evidence:
//! its interval is over iterations only, and the row says so. A slowdown is *regressed* when the one-sided 95%
//! lower bound of the ratio exceeds 1 + threshold, *improved* when the upper bound is below
//! 1 / (1 + threshold), *inconclusive* when the interval straddles either of those, else
//! *unchanged*. Peak memory has one value per run and is compared with the threshold alone.
//! Parity regresses when a run that passed its tolerance no longer does. Only a regression (or a
//! run newly failed) fails the gate, and an inconclusive metric too with `--fail-on-inconclusive`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::results::{ResultsFile, RunResult, Status};
use crate::stats::percentile_in_place;

mod bootstrap;
mod memory;
pub use bootstrap::{
    bootstrap_ratio, bootstrap_ratio_borrowed, bootstrap_ratio_rounds, per_sweep_stat,
};

/// What happened to one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Improved,
    Unchanged,
    /// The interval straddles the threshold: neither a regression nor its absence is shown.
    Inconclusive,
    Regressed,
    /// Not enough data on one side to decide.
    Unknown,
}

/// One metric of one run.
#[derive(Debug, Clone, Serialize)]
pub struct MetricChange {
    pub metric: String,
    /// The unit of `baseline` and `candidate`: "ms", "requests/s", "MiB", "cosine".
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    /// candidate / baseline, oriented so that > 1 is worse.
    pub slowdown: Option<f64>,
    /// One-sided 95% bounds of `slowdown` (lower, upper).
    pub ci: Option<(f64, f64)>,
    pub verdict: Verdict,
    /// What the interval resampled: "paired rounds (N)", "rounds (N and M)", or "iterations
    /// only" (one process on a side: no process-level evidence). Empty where no interval.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resampled: String,
    /// An inconclusive metric: about how many rounds (processes a side) would settle it, the
    /// interval narrowing as 1/√rounds around its point: rounds × (half-width ÷ distance of the
    /// point from the threshold it straddles)². `None` where the point sits on the threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_rounds: Option<usize>,
}

/// Rounds that would likely settle an interval `ci` around `point` that straddles a threshold,
/// measured with `rounds` rounds: the interval narrows as 1/√rounds, so it clears the nearest
/// threshold it straddles once its half-width is below the point's distance from it.
fn rounds_to_settle(point: f64, ci: (f64, f64), threshold: f64, rounds: usize) -> Option<usize> {
    let (worse, better) = (1.0 + threshold, 1.0 / (1.0 + threshold));
    let straddled = [worse, better]
        .into_iter()
        .filter(|t| ci.0 < *t && *t < ci.1)
        .min_by(|a, b| (a - point).abs().total_cmp(&(b - point).abs()))?;
    let distance = (point - straddled).abs();
    let half = (ci.1 - ci.0) / 2.0;
    (distance > 1e-9).then(|| {
        let r = rounds.max(1) as f64 * (half / distance).powi(2);
        (r.ceil() as usize).max(rounds + 1)
    })
}

/// What happened to one run, all its metrics taken together: the first that applies of newly
/// broken, failed, skipped, regressed, inconclusive, improved, unknown, unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Valid (ok or skipped) in the baseline, failed or invalid in the candidate.
    NewlyBroken,
    /// Failed or invalid in the baseline (and so not comparable).
    Failed,
    /// Skipped on either side: nothing was measured to compare.
    Skipped,
    Regressed,
    Inconclusive,
    Improved,
    /// Some metric had too few samples to decide, none changed.
    Unknown,
    Unchanged,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::NewlyBroken,
        Outcome::Failed,
        Outcome::Skipped,
        Outcome::Regressed,
        Outcome::Inconclusive,
        Outcome::Improved,
        Outcome::Unknown,
        Outcome::Unchanged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::NewlyBroken => "newly broken",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Regressed => "regressed",
            Outcome::Inconclusive => "inconclusive",
            Outcome::Improved => "improved",
            Outcome::Unknown => "unknown",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// One matched run.
#[derive(Debug, Clone, Serialize)]
pub struct RunChange {
    pub id: String,
    pub baseline_status: Status,
    pub candidate_status: Status,
    pub metrics: Vec<MetricChange>,
    /// The run was valid in the baseline and is failed or invalid now.
    pub newly_broken: bool,
    pub outcome: Outcome,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub threshold: f64,
    /// An inconclusive metric fails the gate too (`--fail-on-inconclusive`).
    pub fail_on_inconclusive: bool,
    pub runs: Vec<RunChange>,
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    /// How the two machines differ in what decides speed; empty when they do not. Non-empty
    /// only with `--allow-different-hosts`: every verdict then compares machines as well.
    pub host_differences: Vec<String>,
}

impl Comparison {
    /// Whether the gate fails: a run regressed or newly broken, or, when strict, inconclusive.
    pub fn failed(&self) -> bool {
        self.runs.iter().any(|r| match r.outcome {
            Outcome::NewlyBroken | Outcome::Regressed => true,
            Outcome::Inconclusive => self.fail_on_inconclusive,
            _ => false,
        })
    }

    /// How many runs had each outcome, in `Outcome::ALL`'s order.
    pub fn counts(&self) -> Vec<(Outcome, usize)> {
        Outcome::ALL
            .iter()
            .map(|&o| (o, self.runs.iter().filter(|r| r.outcome == o).count()))
            .collect()
    }
}

fn median(v: &[f64]) -> f64 {
    percentile_in_place(&mut v.to_vec(), 0.5)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn p99(v: &[f64]) -> f64 {
    percentile_in_place(&mut v.to_vec(), 0.99)
}

/// Whether paired rounds (one worker process each, run back to back) settle a gate at
/// `threshold`: the two-level intervals of the p50 and mean-time slowdowns are each decided
/// (regressed, improved or unchanged), none inconclusive. `run --rounds auto` adds rounds until
/// this holds.
pub fn rounds_settle(a: &[&[f64]], b: &[&[f64]], threshold: f64) -> bool {
    if a.len() < 2 || a.len() != b.len() || a.iter().chain(b).any(|r| r.len() < 5) {
        return false;
    }
    let stats: [fn(&[f64]) -> f64; 2] = [median, mean];
    stats.iter().enumerate().all(|(k, stat)| {
        decide(
            bootstrap_ratio_rounds(a, b, true, *stat, 0x5e77 + k as u64),
            threshold,
        ) != Verdict::Inconclusive
    })
}

fn decide(ci: (f64, f64), threshold: f64) -> Verdict {
    let (worse, better) = (1.0 + threshold, 1.0 / (1.0 + threshold));
    if ci.0 > worse {
        Verdict::Regressed
    } else if ci.1 < better {
        Verdict::Improved
    } else if ci.1 > worse || ci.0 < better {
        Verdict::Inconclusive
    } else {
        Verdict::Unchanged
    }
}

fn sampled(
    name: &str,
    unit: &'static str,
    a: &RunResult,
    b: &RunResult,
    stat: fn(&[f64]) -> f64,
    threshold: f64,
    seed: u64,
) -> MetricChange {
    let (sa, sb) = (&a.samples_ms, &b.samples_ms);
    if sa.len() < 5 || sb.len() < 5 {
        return MetricChange {
            metric: name.into(),
            unit,
            baseline: (!sa.is_empty()).then(|| stat(sa)),
            candidate: (!sb.is_empty()).then(|| stat(sb)),
            slowdown: None,
            ci: None,
            verdict: Verdict::Unknown,
            resampled: String::new(),
            settle_rounds: None,
        };
    }
    let (ra, rb) = (a.round_samples(), b.round_samples());
    let borrowed = ra.len() >= 2 && rb.len() == 1;
    let (ci, resampled) = if borrowed {
        // A candidate sweep of one process against stored baseline sweeps: its own process
        // noise is unseen, so it borrows the baseline's spread between sweeps.
        (
            bootstrap_ratio_borrowed(&ra, sb, stat, seed),
            format!(
                "{} baseline sweeps (their spread lent to the candidate)",
                ra.len()
            ),
        )
    } else if ra.len() >= 2 && rb.len() >= 2 {
        let paired = ra.len() == rb.len();
        (
            bootstrap_ratio_rounds(&ra, &rb, paired, stat, seed),
            if paired {
                format!("paired rounds ({})", ra.len())
            } else {
                format!("rounds ({} and {})", ra.len(), rb.len())
            },
        )
    } else {
        (
            bootstrap_ratio(sa, sb, stat, seed),
            "iterations only".to_string(),
        )
    };
    let verdict = decide(ci, threshold);
    let base = if borrowed {
        per_sweep_stat(&ra, stat)
    } else {
        stat(sa)
    };
    let point = stat(sb) / base;
    MetricChange {
        metric: name.into(),
        unit,
        baseline: Some(base),
        candidate: Some(stat(sb)),
        slowdown: Some(point),
        ci: Some(ci),
        verdict,
        // Only with rounds on both sides: an interval over iterations alone says nothing of
        // how processes vary, so it cannot say how many would settle it.
        settle_rounds: (verdict == Verdict::Inconclusive && ra.len() >= 2 && rb.len() >= 2)
            .then(|| rounds_to_settle(point, ci, threshold, ra.len().min(rb.len())))
            .flatten(),
        resampled,
    }
}

fn compare_run(a: &RunResult, b: &RunResult, threshold: f64) -> RunChange {
    let mut metrics = Vec::new();
    let both_ok = a.status == Status::Ok && b.status == Status::Ok;
    if both_ok {
        let seed = crate::util::hash::fnv1a(&a.spec.id);
        metrics.push(sampled("p50 latency", "ms", a, b, median, threshold, seed));
        metrics.push(sampled("p99 latency", "ms", a, b, p99, threshold, seed ^ 1));
        // Throughput (and cost per 1k, its inverse on one machine) follows the mean iteration
        // time; the values shown are the runs' requests per second.
        let mut tp = sampled("throughput", "requests/s", a, b, mean, threshold, seed ^ 2);
        tp.baseline = a.throughput.as_ref().map(|t| t.requests_per_s);
        tp.candidate = b.throughput.as_ref().map(|t| t.requests_per_s);
        metrics.push(tp);
        metrics.push(memory::change(a, b, threshold));
    }
    let (pa, pb) = (a.parity.as_ref(), b.parity.as_ref());
    if let (Some(pa), Some(pb)) = (pa, pb) {
        metrics.push(MetricChange {
            metric: "parity min cosine".into(),
            unit: "cosine",
            baseline: Some(pa.min_cosine),
            candidate: Some(pb.min_cosine),
            slowdown: None,
            ci: None,
            resampled: String::new(),
            settle_rounds: None,
            verdict: match (pa.passed, pb.passed) {
                (true, false) => Verdict::Regressed,
                (false, true) => Verdict::Improved,
                _ => Verdict::Unchanged,
            },
        });
    }
    let valid = |s: Status| matches!(s, Status::Ok | Status::Skipped);
    let broken = |s: Status| matches!(s, Status::Failed | Status::Invalid);
    let newly_broken = valid(a.status) && broken(b.status);
    let has = |v: Verdict| metrics.iter().any(|m| m.verdict == v);
    let outcome = if newly_broken {
        Outcome::NewlyBroken
    } else if broken(a.status) || broken(b.status) {
        Outcome::Failed
    } else if !both_ok {
        Outcome::Skipped
    } else if has(Verdict::Regressed) {
        Outcome::Regressed
    } else if has(Verdict::Inconclusive) {
        Outcome::Inconclusive
    } else if has(Verdict::Improved) {
        Outcome::Improved
    } else if has(Verdict::Unknown) {
        Outcome::Unknown
    } else {
        Outcome::Unchanged
    };
    RunChange {
        id: a.spec.id.clone(),
        baseline_status: a.status,
        candidate_status: b.status,
        newly_broken,
        outcome,
        metrics,
    }
}

/// How the machines of two results files differ in what decides speed: CPU model, ISA flags,
/// core counts, GPUs, backend runtime versions.
pub fn host_differences(a: &ResultsFile, b: &ResultsFile) -> Vec<String> {
    let (ia, ib) = (&a.environment.inventory, &b.environment.inventory);
    let mut d = Vec::new();
    let differ = |d: &mut Vec<String>, field: &str, x: String, y: String| {
        if x != y {
            d.push(format!("{field}: {x} vs {y}"));
        }
    };
    differ(
        &mut d,
        "cpu_model",
        format!("{:?}", ia.cpu_model.as_deref().unwrap_or("unknown")),
        format!("{:?}", ib.cpu_model.as_deref().unwrap_or("unknown")),
    );
    // Files written before the signature was recorded have none: a difference only when both do.
    if let (Some(x), Some(y)) = (&ia.cpu_signature, &ib.cpu_signature) {
        differ(&mut d, "cpu_signature", format!("{x:?}"), format!("{y:?}"));
    }
    differ(
        &mut d,
        "logical_cores",
        ia.logical_cores.to_string(),
        ib.logical_cores.to_string(),
    );
    differ(
        &mut d,
        "physical_cores",
        format!("{:?}", ia.physical_cores),
        format!("{:?}", ib.physical_cores),
    );
    let gpus = |i: &crate::telemetry::Inventory| {
        let g: Vec<&str> = i.gpus.iter().map(|g| g.name.as_str()).collect();
        format!("[{}]", g.join(", "))
    };
    differ(&mut d, "gpus", gpus(ia), gpus(ib));
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter().filter(|f| !y.contains(f)).cloned().collect()
    };
    let (lost, gained) = (
        only(&ia.cpu_flags, &ib.cpu_flags),
        only(&ib.cpu_flags, &ia.cpu_flags),
    );
    if !lost.is_empty() || !gained.is_empty() {
        d.push(format!(
            "cpu_flags: only the baseline has [{}], only the candidate has [{}]",
            lost.join(" "),
            gained.join(" ")
        ));
    }
    for va in &a.environment.backends {
        if let Some(vb) = b
            .environment
            .backends
            .iter()
            .find(|v| v.backend == va.backend)
        {
            differ(
                &mut d,
                &format!("{} runtime", va.backend),
                format!("{:?}", va.runtime_version),
                format!("{:?}", vb.runtime_version),
            );
        }
    }
    d
}

/// A folder of stored baseline sweeps (`results/baselines/…`, one results file a sweep of one
/// scenario on one machine) read as one baseline whose runs keep each sweep as a round: the
/// spread between the sweeps is the process-level noise a separate candidate sweep is judged
/// against. The first file (by name) gives everything but the samples; a run id missing from a
/// sweep, or not ok there, is left out of that sweep's rounds.
fn baseline_folder(dir: &Path, allow_different_hosts: bool) -> Result<ResultsFile> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            Error::input(
                dir,
                None,
                "baseline",
                format!("cannot read the folder: {e}"),
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let Some(first) = paths.first() else {
        return Err(Error::input(
            dir,
            None,
            "baseline",
            "the baseline folder holds no results file (*.json)",
        ));
    };
    let mut base = ResultsFile::load(first)?;
    let mut sweeps = vec![base.clone()];
    for p in &paths[1..] {
        let f = ResultsFile::load(p)?;
        let diff = host_differences(&base, &f);
        if !diff.is_empty() && !allow_different_hosts {
            return Err(Error::input(
                p,
                None,
                "environment",
                format!(
                    "this stored baseline comes from another machine than {} ({}): the \
                     folder's sweeps must be of one machine",
                    first.display(),
                    diff.join("; ")
                ),
            ));
        }
        if f.scenario.name != base.scenario.name {
            return Err(Error::input(
                p,
                None,
                "scenario.name",
                format!(
                    "scenario {:?} in a baseline folder of {:?}",
                    f.scenario.name, base.scenario.name
                ),
            ));
        }
        sweeps.push(f);
    }
    for run in base.runs.iter_mut().filter(|r| r.status == Status::Ok) {
        let rounds: Vec<crate::results::Round> = sweeps
            .iter()
            .filter_map(|f| {
                f.runs
                    .iter()
                    .find(|r| r.spec.id == run.spec.id && r.status == Status::Ok)
            })
            .map(|r| crate::results::Round {
                samples_ms: r.samples_ms.clone(),
                p50_ms: r.latency.as_ref().map(|l| l.p50_ms),
                p99_ms: r.latency.as_ref().map(|l| l.p99_ms),
                requests_per_s: r.throughput.as_ref().map(|t| t.requests_per_s),
                peak_rss_bytes: r.memory.peak_rss_bytes,
            })
            .collect();
        if rounds.len() >= 2 {
            run.samples_ms = rounds.iter().flat_map(|r| r.samples_ms.clone()).collect();
            run.notes.push(format!(
                "stored baseline: {} sweeps in {}",
                rounds.len(),
                dir.display()
            ));
            run.rounds = rounds;
        }
    }
    Ok(base)
}

/// Compares two results files. Files that cannot be compared are bad input (exit code 2),
/// among them files from machines that differ in what decides speed, unless
/// `allow_different_hosts`.
pub fn compare(
    baseline_path: &Path,
    candidate_path: &Path,
    threshold: f64,
    allow_different_hosts: bool,
) -> Result<Comparison> {
    let a = if baseline_path.is_dir() {
        baseline_folder(baseline_path, allow_different_hosts)?
    } else {
        ResultsFile::load(baseline_path)?
    };
    let b = ResultsFile::load(candidate_path)?;
    let host_differences = host_differences(&a, &b);
    if !host_differences.is_empty() && !allow_different_hosts {
        return Err(Error::input(
            candidate_path,
            None,
            "environment",
            format!(
                "the files come from different machines ({}); a speed difference would measure \
                 the machines, not the code. Compare runs of one machine, or pass \
                 --allow-different-hosts to label every verdict as cross-host",
                host_differences.join("; ")
            ),
        ));
    }
    if a.scenario.name != b.scenario.name {
        return Err(Error::input(
            candidate_path,
            None,
            "scenario.name",
            format!(
                "scenario {:?} cannot be compared with the baseline's {:?}",
                b.scenario.name, a.scenario.name
            ),
        ));
    }
    let ia: BTreeMap<&str, &RunResult> = a.runs.iter().map(|r| (r.spec.id.as_str(), r)).collect();
    let ib: BTreeMap<&str, &RunResult> = b.runs.iter().map(|r| (r.spec.id.as_str(), r)).collect();
    // A file from before device scoring scored on the host under the same run id: its timed
    // region is another one, so a ratio would measure where the scoring ran, not the code.
    if let Some((id, ra, rb)) = ia.iter().find_map(|(id, ra)| {
        ib.get(id)
            .filter(|rb| rb.spec.scoring != ra.spec.scoring)
            .map(|rb| (id, ra, rb))
    }) {
        return Err(Error::input(
            candidate_path,
            None,
            "runs[].spec.scoring",
            format!(
                "run {id} scored on the {} in the baseline and on the {} here: their timed \
                 regions differ, so they cannot be compared",
                ra.spec.scoring, rb.spec.scoring
            ),
        ));
    }
    let runs: Vec<RunChange> = ia
        .iter()
        .filter_map(|(id, ra)| ib.get(id).map(|rb| compare_run(ra, rb, threshold)))
        .collect();
    if runs.is_empty() && !(a.runs.is_empty() && b.runs.is_empty()) {
        let models = |f: &ResultsFile| {
            let mut m: Vec<String> = f.runs.iter().map(|r| r.spec.model.to_string()).collect();
            m.sort();
            m.dedup();
            m.join(", ")
        };
        return Err(Error::input(
            candidate_path,
            None,
            "runs",
            format!(
                "no run in common with the baseline (baseline models: {}; candidate models: {})",
                models(&a),
                models(&b)
            ),
        ));
    }
    Ok(Comparison {
        threshold,
        fail_on_inconclusive: false,
        runs,
        only_in_baseline: ia
            .keys()
            .filter(|k| !ib.contains_key(*k))
            .map(|k| k.to_string())
            .collect(),
        only_in_candidate: ib
            .keys()
            .filter(|k| !ia.contains_key(*k))
            .map(|k| k.to_string())
            .collect(),
        host_differences,
    })
}

impl Comparison {
    /// One line: runs compared, how many had each outcome (regressed, newly broken,
    /// inconclusive, improved, unchanged, unknown, skipped, failed), and the runs on one side
    /// only.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = self
            .counts()
            .into_iter()
            .filter(|(o, n)| *n > 0 || matches!(o, Outcome::Regressed | Outcome::Unchanged))
            .map(|(o, n)| format!("{n} {}", o.name()))
            .collect();
        format!(
            "{} runs compared: {}; {} only in the baseline, {} only in the candidate{}",
            self.runs.len(),
            counts.join(", "),
            self.only_in_baseline.len(),
            self.only_in_candidate.len(),
            if self.host_differences.is_empty() {
                String::new()
            } else {
                format!(
                    ". CROSS-HOST: the machines differ ({}), so every verdict compares the \
                     machines as well as the code",
                    self.host_differences.join("; ")
                )
            }
        )
    }

    /// The verdict for bots (`compare --json`): "regression" or "pass", the exit code it gives,
    /// the counts per outcome, and every run with its metrics.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a comparison serialises");
        let failed = self.failed();
        v["verdict"] = (if failed { "regression" } else { "pass" }).into();
        v["exit_code"] = i32::from(failed).into();
        v["counts"] = self
            .counts()
            .into_iter()
            .map(|(o, n)| (o.name().replace(' ', "_"), serde_json::Value::from(n)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        v
    }
}

fn fmt(x: Option<f64>) -> String {
    match x {
        Some(v) if v.abs() >= 1e5 => format!("{:.3e}", v),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
        None => "—".into(),
    }
}

impl MetricChange {
    /// The change in words: which way, and by how much as a factor of time (or memory). A
    /// throughput drop reads "slower", like a latency rise; memory reads "larger"/"smaller".
    pub fn direction(&self) -> String {
        let Some(r) = self.slowdown else {
            return match (self.baseline, self.candidate) {
                (Some(a), Some(b)) if b < a => "lower".into(),
                (Some(a), Some(b)) if b > a => "higher".into(),
                _ => String::new(),
            };
        };
        let (worse, better) = if self.unit == "MiB" {
            ("larger", "smaller")
        } else {
            ("slower", "faster")
        };
        if (r - 1.0).abs() < 0.005 {
            "no change".into()
        } else if r >= 1.0 {
            format!("×{r:.2} {worse}")
        } else {
            format!("×{:.2} {better}", 1.0 / r)
        }
    }

    /// The verdict cell: the verdict, with the direction when something changed or may have.
    fn verdict_cell(&self, threshold: f64) -> String {
        match self.verdict {
            Verdict::Regressed => format!("**regressed**: {}", self.direction()),
            Verdict::Improved => format!("improved: {}", self.direction()),
            Verdict::Inconclusive => format!(
                "inconclusive: {}; the interval straddles ×{:.2}{}",
                self.direction(),
                if self.slowdown.unwrap_or(1.0) >= 1.0 {
                    1.0 + threshold
                } else {
                    1.0 / (1.0 + threshold)
                },
                match self.settle_rounds {
                    Some(n) => format!(" (about {n} interleaved rounds would settle it)"),
                    None => String::new(),
                }
            ),
            Verdict::Unchanged => "unchanged".into(),
            Verdict::Unknown => "unknown (too few samples)".into(),
        }
    }
}

/// A run id as a Markdown table cell: in a code span, with the characters that would end the
/// cell or the span (`|`, a backtick, a line break) replaced.
fn id_cell(id: &str) -> String {
    format!(
        "`{}`",
        id.replace('|', "\\|")
            .replace('`', "'")
            .replace(['\n', '\r'], " ")
    )
}

/// The comparison as a Markdown table (for CI step summaries): runs and metrics that changed,
/// are inconclusive, failed or are on one side only; with `all`, every metric of every run.
pub fn markdown(c: &Comparison, all: bool) -> String {
    let t = c.threshold;
    let mut s = format!(
        "## recbench compare: {}{}\n\n{}.\n\nThreshold {:.1}%: a metric regressed when the \
         one-sided 95% bound of its slowdown (candidate ÷ baseline time) is beyond ×{:.3}, \
         improved when below ×{:.3}, inconclusive when its interval straddles either{}. \
         Throughput's slowdown is its mean iteration time's, which cost per 1k follows.\n\n",
        if c.failed() { "REGRESSION" } else { "pass" },
        if c.host_differences.is_empty() {
            ""
        } else {
            " (cross-host)"
        },
        c.summary(),
        t * 100.0,
        1.0 + t,
        1.0 / (1.0 + t),
        if c.fail_on_inconclusive {
            "; with --fail-on-inconclusive, an inconclusive metric fails the gate"
        } else {
            ""
        },
    );
    let shown = |m: &MetricChange| {
        all || matches!(
            m.verdict,
            Verdict::Regressed | Verdict::Improved | Verdict::Inconclusive
        )
    };
    let mut rows = Vec::new();
    for r in &c.runs {
        if matches!(r.outcome, Outcome::NewlyBroken | Outcome::Failed)
            || (all && r.outcome == Outcome::Skipped)
        {
            rows.push(format!(
                "| {} | status | | {} | {} | | | {} |",
                id_cell(&r.id),
                r.baseline_status.name(),
                r.candidate_status.name(),
                if r.newly_broken {
                    "**newly broken**"
                } else {
                    r.outcome.name()
                }
            ));
        }
        for m in r.metrics.iter().filter(|m| shown(m)) {
            let change = match (m.baseline, m.candidate) {
                (Some(a), Some(b)) if a != 0.0 => format!("{:+.1}%", (b / a - 1.0) * 100.0),
                _ => "—".into(),
            };
            rows.push(format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                id_cell(&r.id),
                m.metric,
                m.unit,
                fmt(m.baseline),
                fmt(m.candidate),
                change,
                m.ci.map_or("—".into(), |(l, u)| format!(
                    "×{l:.3}–×{u:.3} over {}",
                    m.resampled
                )),
                m.verdict_cell(t)
            ));
        }
    }
    for id in &c.only_in_baseline {
        rows.push(format!(
            "| {} | only in baseline | | | | | | |",
            id_cell(id)
        ));
    }
    for id in &c.only_in_candidate {
        rows.push(format!(
            "| {} | only in candidate | | | | | | |",
            id_cell(id)
        ));
    }
    if rows.is_empty() {
        s.push_str(&format!(
            "No metric of the {} runs changed beyond the threshold or is inconclusive \
             (`--all` lists every metric).\n",
            c.runs.len()
        ));
        return s;
    }
    if c.runs
        .iter()
        .flat_map(|r| &r.metrics)
        .any(|m| m.resampled == "iterations only")
    {
        s.push_str(
            "Runs of one worker process a side have intervals over iterations only: no \
             process-level evidence, so they are narrower than a rerun would show. Interleave \
             with `--rounds 2` or more for intervals over processes.\n\n",
        );
    }
    if !all {
        s.push_str("Changed, inconclusive and failed rows only; `--all` lists every metric.\n\n");
    }
    s.push_str(
        "| run | metric | unit | baseline | candidate | change | slowdown, 95% bounds | verdict |\n\
         |---|---|---|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        s.push_str(&row);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests;
