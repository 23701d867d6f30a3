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
use crate::model::weights::SplitMix64;
use crate::results::{ResultsFile, RunResult, Status};
use crate::stats::{percentile, percentile_in_place};

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

/// Two-level bootstrap one-sided 95% bounds (5th and 95th percentiles) of stat(b)/stat(a), where
/// `a` and `b` are each a list of rounds (one worker process each): every resample draws the
/// rounds with replacement, then the iterations within each drawn round. With `paired` (the
/// same number of rounds, run back to back) round k of both sides is drawn together. A side of
/// one round is resampled over its iterations alone.
pub fn bootstrap_ratio_rounds(
    a: &[&[f64]],
    b: &[&[f64]],
    paired: bool,
    stat: fn(&[f64]) -> f64,
    seed: u64,
) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    let mut ratios: Vec<f64> = Vec::with_capacity(2000);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let (ia, ib): (Vec<usize>, Vec<usize>) = if paired && a.len() == b.len() {
            let k: Vec<usize> = (0..a.len()).map(|_| pick(a.len())).collect();
            (k.clone(), k)
        } else {
            (
                (0..a.len()).map(|_| pick(a.len())).collect(),
                (0..b.len()).map(|_| pick(b.len())).collect(),
            )
        };
        for (out, side, idx) in [(&mut ra, a, &ia), (&mut rb, b, &ib)] {
            out.clear();
            for &r in idx {
                let round = side[r];
                for _ in 0..round.len() {
                    out.push(round[pick(round.len())]);
                }
            }
        }
        ratios.push(stat(&rb) / stat(&ra));
    }
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.05), percentile(&ratios, 0.95))
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

/// Two-level bootstrap bounds of stat(b)/stat(a) for a candidate `b` of one process against
/// baseline rounds `a` (stored sweeps): the baseline side resamples its rounds, then their
/// iterations; the candidate side resamples its iterations and is scaled by the process factor
/// of a baseline round drawn at random (that round's statistic over the baseline's), so the
/// spread between processes counts on both sides.
pub fn bootstrap_ratio_borrowed(
    a: &[&[f64]],
    b: &[f64],
    stat: fn(&[f64]) -> f64,
    seed: u64,
) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    let all: Vec<f64> = a.iter().flat_map(|r| r.iter().copied()).collect();
    let overall = stat(&all);
    let factors: Vec<f64> = a.iter().map(|r| stat(r) / overall).collect();
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut ratios: Vec<f64> = (0..2000)
        .map(|_| {
            ra.clear();
            for _ in 0..a.len() {
                let round = a[pick(a.len())];
                for _ in 0..round.len() {
                    ra.push(round[pick(round.len())]);
                }
            }
            rb.clear();
            for _ in 0..b.len() {
                rb.push(b[pick(b.len())]);
            }
            let f = factors[pick(factors.len())];
            stat(&rb) * f / stat(&ra)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.05), percentile(&ratios, 0.95))
}

/// Bootstrap one-sided 95% bounds (5th and 95th percentiles) of stat(b)/stat(a), over the
/// iterations alone (one process a side).
pub fn bootstrap_ratio(a: &[f64], b: &[f64], stat: fn(&[f64]) -> f64, seed: u64) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut draw = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|_| v[(rng.next_u64() % v.len() as u64) as usize])
            .collect()
    };
    let mut ratios: Vec<f64> = (0..2000).map(|_| stat(&draw(b)) / stat(&draw(a))).collect();
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.05), percentile(&ratios, 0.95))
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
    let (ci, resampled) = if ra.len() >= 2 && rb.len() == 1 {
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
    let point = stat(sb) / stat(sa);
    MetricChange {
        metric: name.into(),
        unit,
        baseline: Some(stat(sa)),
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
        let seed = crate::model::weights::fnv1a(&a.spec.id);
        metrics.push(sampled("p50 latency", "ms", a, b, median, threshold, seed));
        metrics.push(sampled("p99 latency", "ms", a, b, p99, threshold, seed ^ 1));
        // Throughput (and cost per 1k, its inverse on one machine) follows the mean iteration
        // time; the values shown are the runs' requests per second.
        let mut tp = sampled("throughput", "requests/s", a, b, mean, threshold, seed ^ 2);
        tp.baseline = a.throughput.as_ref().map(|t| t.requests_per_s);
        tp.candidate = b.throughput.as_ref().map(|t| t.requests_per_s);
        metrics.push(tp);
        let (ma, mb) = (a.memory.peak_rss_bytes, b.memory.peak_rss_bytes);
        let mib = |x: u64| x as f64 / (1u64 << 20) as f64;
        let r = ma.zip(mb).map(|(x, y)| y as f64 / x as f64);
        metrics.push(MetricChange {
            metric: "peak RSS".into(),
            unit: "MiB",
            baseline: ma.map(mib),
            candidate: mb.map(mib),
            slowdown: r,
            ci: None,
            resampled: String::new(),
            settle_rounds: None,
            verdict: match r {
                None => Verdict::Unknown,
                Some(r) if r > 1.0 + threshold => Verdict::Regressed,
                Some(r) if r < 1.0 / (1.0 + threshold) => Verdict::Improved,
                Some(_) => Verdict::Unchanged,
            },
        });
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
mod tests {
    use super::*;

    fn noisy(n: usize, centre: f64, seed: u64) -> Vec<f64> {
        let mut r = SplitMix64::new(seed);
        (0..n)
            .map(|_| centre * (1.0 + 0.03 * r.next_normal()))
            .collect()
    }

    #[test]
    fn same_distribution_is_unchanged_and_a_real_slowdown_is_caught() {
        let a = noisy(200, 10.0, 1);
        let same = noisy(200, 10.0, 2);
        let slow = noisy(200, 12.0, 3);
        assert_eq!(
            decide(bootstrap_ratio(&a, &same, median, 9), 0.05),
            Verdict::Unchanged
        );
        assert_eq!(
            decide(bootstrap_ratio(&a, &slow, median, 9), 0.05),
            Verdict::Regressed
        );
        assert_eq!(
            decide(bootstrap_ratio(&slow, &a, median, 9), 0.05),
            Verdict::Improved
        );
        // 20% slower (12 against 10) but a 25% threshold: not a regression.
        assert_eq!(
            decide(bootstrap_ratio(&a, &slow, median, 9), 0.25),
            Verdict::Unchanged
        );
    }

    #[test]
    fn a_slowdown_inside_the_noise_is_not_called() {
        // 4% slower, noise 3% per sample, few samples, 5% threshold: not provably beyond it.
        let a = noisy(10, 10.0, 4);
        let b = noisy(10, 10.4, 5);
        assert_ne!(
            decide(bootstrap_ratio(&a, &b, median, 9), 0.05),
            Verdict::Regressed
        );
    }

    /// The first ok run of the committed reference sweep (real samples, memory and parity),
    /// its samples cut to 300 so the bootstrap is quick in a debug build.
    fn run() -> RunResult {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let f = ResultsFile::load(&p).unwrap();
        let mut r = f.runs.into_iter().find(|r| r.status == Status::Ok).unwrap();
        r.samples_ms.truncate(300);
        r
    }

    fn verdict(c: &RunChange, metric: &str) -> Verdict {
        c.metrics
            .iter()
            .find(|m| m.metric.starts_with(metric))
            .unwrap_or_else(|| panic!("no {metric} in {c:?}"))
            .verdict
    }

    #[test]
    fn memory_and_parity_regressions_fail_the_gate() {
        let a = run();
        let same = compare_run(&a, &a, 0.10);
        assert_eq!(verdict(&same, "peak RSS"), Verdict::Unchanged);
        assert_eq!(verdict(&same, "parity"), Verdict::Unchanged);

        let mut b = a.clone();
        b.memory.peak_rss_bytes = a.memory.peak_rss_bytes.map(|m| m * 3 / 2);
        let c = compare_run(&a, &b, 0.10);
        assert_eq!(verdict(&c, "peak RSS"), Verdict::Regressed);
        assert_eq!(verdict(&c, "p50 latency"), Verdict::Unchanged);

        let mut b = a.clone();
        b.parity.as_mut().unwrap().passed = false;
        let c = compare_run(&a, &b, 0.10);
        assert_eq!(verdict(&c, "parity"), Verdict::Regressed);
        let cmp = Comparison {
            threshold: 0.10,
            fail_on_inconclusive: false,
            runs: vec![c],
            only_in_baseline: vec![],
            only_in_candidate: vec![],
            host_differences: vec![],
        };
        assert!(cmp.failed(), "a parity regression fails the gate");
    }

    #[test]
    fn too_few_samples_give_no_verdict_rather_than_a_guess() {
        let a = run();
        let mut b = a.clone();
        b.samples_ms.truncate(4);
        let c = compare_run(&a, &b, 0.10);
        for m in ["p50 latency", "p99 latency", "throughput"] {
            assert_eq!(verdict(&c, m), Verdict::Unknown, "{m}");
        }
        let mut cmp = Comparison {
            threshold: 0.10,
            fail_on_inconclusive: false,
            runs: vec![c],
            only_in_baseline: vec![],
            only_in_candidate: vec![],
            host_differences: vec![],
        };
        assert_eq!(cmp.runs[0].outcome, Outcome::Unknown);
        assert!(cmp.summary().contains("1 unknown"), "{}", cmp.summary());
        // Not a change: hidden unless --all, counted in the summary either way.
        assert!(!markdown(&cmp, false).contains("too few samples"));
        let md = markdown(&cmp, true);
        assert!(md.contains("unknown (too few samples)"), "{md}");
        // Skipped and failed runs are counted as such, not as unchanged.
        let mut skipped = a.clone();
        skipped.status = Status::Skipped;
        let mut failed = a.clone();
        failed.status = Status::Failed;
        cmp.runs = vec![
            compare_run(&skipped, &skipped, 0.10),
            compare_run(&failed, &failed, 0.10),
            compare_run(&a, &failed, 0.10),
        ];
        let outcomes: Vec<Outcome> = cmp.runs.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Skipped, Outcome::Failed, Outcome::NewlyBroken]
        );
        let summary = cmp.summary();
        for part in ["1 newly broken", "1 failed", "1 skipped", "0 unchanged"] {
            assert!(summary.contains(part), "{part}: {summary}");
        }
        assert!(cmp.failed(), "a newly broken run fails the gate");
    }

    /// A slowdown whose interval straddles the threshold is inconclusive, with its direction in
    /// words; it passes the gate unless the gate is strict.
    #[test]
    fn an_interval_across_the_threshold_is_inconclusive_and_said_which_way() {
        assert_eq!(decide((1.05, 1.20), 0.10), Verdict::Inconclusive);
        assert_eq!(decide((0.85, 0.95), 0.10), Verdict::Inconclusive);
        assert_eq!(decide((0.95, 1.08), 0.10), Verdict::Unchanged);
        assert_eq!(decide((1.11, 1.20), 0.10), Verdict::Regressed);
        assert_eq!(decide((0.80, 0.90), 0.10), Verdict::Improved);

        let a = run();
        let mut b = a.clone();
        // Every 20th iteration four times as long: the mean moves by ~15%, the median not at
        // all, and the p99 by a factor the bootstrap cannot pin down.
        let mut r = SplitMix64::new(7);
        for x in b.samples_ms.iter_mut() {
            if r.next_u64() % 20 == 0 {
                *x *= 4.0;
            }
        }
        let c = compare_run(&a, &b, 0.10);
        let tp = c.metrics.iter().find(|m| m.metric == "throughput").unwrap();
        assert_eq!(tp.unit, "requests/s");
        assert!(
            tp.direction().ends_with("slower"),
            "a throughput drop reads slower: {}",
            tp.direction()
        );
        assert_eq!(verdict(&c, "p50 latency"), Verdict::Unchanged);
        assert!(c.metrics.iter().all(|m| m.verdict != Verdict::Improved));

        let straddling = MetricChange {
            metric: "p99 latency".into(),
            unit: "ms",
            baseline: Some(10.0),
            candidate: Some(12.0),
            slowdown: Some(1.2),
            ci: Some((1.02, 1.31)),
            verdict: decide((1.02, 1.31), 0.10),
            resampled: "paired rounds (4)".into(),
            settle_rounds: rounds_to_settle(1.2, (1.02, 1.31), 0.10, 4),
        };
        // Half-width 0.145 around 1.2, 0.1 from the ×1.10 it straddles: 4 × 1.45² → 9 rounds.
        assert_eq!(straddling.settle_rounds, Some(9));
        let mut run = compare_run(&a, &a, 0.10);
        run.metrics = vec![straddling];
        run.outcome = Outcome::Inconclusive;
        let mut cmp = Comparison {
            threshold: 0.10,
            fail_on_inconclusive: false,
            runs: vec![run],
            only_in_baseline: vec![],
            only_in_candidate: vec![],
            host_differences: vec![],
        };
        assert!(!cmp.failed(), "inconclusive passes by default");
        let md = markdown(&cmp, false);
        assert!(
            md.contains("| ms | 10.000 | 12.000 | +20.0% | ×1.020–×1.310 over paired rounds (4) | inconclusive: ×1.20 slower; the interval straddles ×1.10 (about 9 interleaved rounds would settle it) |"),
            "{md}"
        );
        assert!(md.contains("1 inconclusive"), "{md}");
        cmp.fail_on_inconclusive = true;
        assert!(cmp.failed(), "--fail-on-inconclusive fails on it");
        let json = cmp.json();
        assert_eq!(json["verdict"], "regression");
        assert_eq!(json["exit_code"], 1);
        assert_eq!(json["counts"]["inconclusive"], 1);
        assert_eq!(json["runs"][0]["metrics"][0]["unit"], "ms");
    }

    /// Rounds (processes) whose means differ by more than their iterations vary: the two-level
    /// bootstrap's interval covers that spread, pooling the iterations hides it. Two sides drawn
    /// from the same distribution of processes must not look different.
    #[test]
    fn intervals_resample_processes_not_only_iterations() {
        let mut r = SplitMix64::new(11);
        // Each round's mean drawn with a 6% spread between processes, each iteration within it
        // with 1%: the situation of 11 A/A comparisons on a Zen 4 VM (issue #40).
        let mut side = |rounds: usize| -> Vec<Vec<f64>> {
            (0..rounds)
                .map(|_| {
                    let m = 10.0 * (1.0 + 0.06 * r.next_normal());
                    (0..400)
                        .map(|_| m * (1.0 + 0.01 * r.next_normal()))
                        .collect()
                })
                .collect()
        };
        let (a, b) = (side(4), side(4));
        let ra: Vec<&[f64]> = a.iter().map(|v| v.as_slice()).collect();
        let rb: Vec<&[f64]> = b.iter().map(|v| v.as_slice()).collect();
        let pooled = |x: &[Vec<f64>]| x.concat();
        let flat = bootstrap_ratio(&pooled(&a), &pooled(&b), median, 3);
        let two = bootstrap_ratio_rounds(&ra, &rb, true, median, 3);
        let (wf, wt) = (flat.1 - flat.0, two.1 - two.0);
        eprintln!(
            "pooled {:.3}–{:.3} (width {wf:.3}), two-level {:.3}–{:.3} (width {wt:.3}): {:.1}× wider",
            flat.0,
            flat.1,
            two.0,
            two.1,
            wt / wf
        );
        assert!(
            wt > 3.0 * wf,
            "the two-level interval is only {:.1}× the pooled one ({wt:.3} against {wf:.3})",
            wt / wf
        );
        assert!(
            two.0 <= 1.0 && 1.0 <= two.1,
            "the same distribution of processes: {two:?} must hold 1"
        );
        // Rounds reach compare through the results file.
        let rounds = |x: &[Vec<f64>]| -> Vec<crate::results::Round> {
            x.iter()
                .map(|s| crate::results::Round {
                    samples_ms: s.clone(),
                    p50_ms: None,
                    p99_ms: None,
                    requests_per_s: None,
                })
                .collect()
        };
        let mut x = run();
        x.rounds = rounds(&a);
        x.samples_ms = pooled(&a);
        let mut y = x.clone();
        y.rounds = rounds(&b);
        y.samples_ms = pooled(&b);
        let c = compare_run(&x, &y, 0.03);
        let p50 = c
            .metrics
            .iter()
            .find(|m| m.metric == "p50 latency")
            .unwrap();
        assert_eq!(p50.resampled, "paired rounds (4)");
        assert_ne!(p50.verdict, Verdict::Regressed, "{p50:?}");
        assert_ne!(p50.verdict, Verdict::Improved, "{p50:?}");
    }

    /// A folder of stored baseline sweeps lends its spread between sweeps to a candidate sweep
    /// of one process: a candidate 4% slower than one baseline sweep but inside the sweeps'
    /// own ±5% spread is not a regression at 3%, and its interval holds 1 where the single
    /// stored sweep's (iterations only) excludes it; a real ×1.3 slowdown is still caught.
    #[test]
    fn a_baseline_folder_judges_a_sweep_by_the_spread_between_sweeps() {
        let dir = tempfile::tempdir().unwrap();
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let mut f = ResultsFile::load(&p).unwrap();
        f.runs
            .retain(|r| r.status == Status::Ok && r.samples_ms.len() >= 300);
        f.runs.truncate(2);
        let mut rng = SplitMix64::new(5);
        let mut sweep = |factor: f64| {
            let mut g = f.clone();
            for r in &mut g.runs {
                // The run's own samples, redrawn, times the sweep's process factor.
                let n = r.samples_ms.len();
                r.samples_ms = (0..300)
                    .map(|_| f.runs[0].samples_ms[(rng.next_u64() % n as u64) as usize] * factor)
                    .collect();
            }
            g
        };
        let folder = dir.path().join("baselines");
        std::fs::create_dir(&folder).unwrap();
        for (i, k) in [0.95, 1.0, 1.05, 0.97, 1.03].iter().enumerate() {
            sweep(*k).save(&folder.join(format!("{i}.json"))).unwrap();
        }
        let cand = dir.path().join("cand.json");
        sweep(0.95 * 1.04).save(&cand).unwrap();
        let slow = dir.path().join("slow.json");
        sweep(1.3).save(&slow).unwrap();

        let p50 = |c: &Comparison| c.runs[0].metrics[0].clone();
        let one = compare(&folder.join("0.json"), &cand, 0.03, false).unwrap();
        assert_eq!(p50(&one).resampled, "iterations only");
        // One stored sweep's interval excludes 1: it claims a difference between two sweeps
        // drawn from the same spread of processes.
        assert!(p50(&one).ci.unwrap().0 > 1.0, "{:?}", p50(&one));
        let many = compare(&folder, &cand, 0.03, false).unwrap();
        let m = p50(&many);
        assert_eq!(
            m.resampled,
            "5 baseline sweeps (their spread lent to the candidate)"
        );
        assert_ne!(m.verdict, Verdict::Regressed, "{m:?}");
        assert!(
            m.ci.unwrap().0 <= 1.0,
            "the folder's interval holds 1: {m:?}"
        );
        let (w1, w5) = (
            p50(&one).ci.map(|c| c.1 - c.0).unwrap(),
            m.ci.map(|c| c.1 - c.0).unwrap(),
        );
        assert!(
            w5 > 2.0 * w1,
            "the sweeps' spread widens the interval: {w5} vs {w1}"
        );
        let caught = compare(&folder, &slow, 0.10, false).unwrap();
        assert_eq!(
            p50(&caught).verdict,
            Verdict::Regressed,
            "{:?}",
            p50(&caught)
        );
        assert!(caught.failed());
        // An empty folder is bad input, named.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = compare(&empty, &cand, 0.03, false).unwrap_err().to_string();
        assert!(e.contains("holds no results file"), "{e}");
    }

    /// A file compared with itself: a pass with no rows but the summary, every metric unchanged.
    #[test]
    fn a_file_compared_with_itself_prints_no_rows() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let dir = tempfile::tempdir().unwrap();
        let mut f = ResultsFile::load(&p).unwrap();
        for r in &mut f.runs {
            r.samples_ms.truncate(200);
        }
        let a = dir.path().join("a.json");
        f.save(&a).unwrap();
        let c = compare(&a, &a, 0.10, false).unwrap();
        assert!(!c.failed());
        // The p99 of a few hundred iterations may not be pinned within 10%: such a row is
        // inconclusive (its interval holds 1 and straddles the threshold), never a change.
        let md = markdown(&c, false);
        for row in md.lines().filter(|l| l.starts_with("| `")) {
            assert!(
                row.contains("| inconclusive: no change; the interval straddles ×1.10 |"),
                "{row}"
            );
        }
        let all = markdown(&c, true);
        let metrics: usize = c.runs.iter().map(|r| r.metrics.len()).sum();
        assert_eq!(
            all.lines().filter(|l| l.starts_with("| `")).count(),
            metrics,
            "{all}"
        );
        assert!(md.lines().count() < all.lines().count());
        // Without the inconclusive rows, nothing is left to show but the summary.
        let mut settled = c.clone();
        for r in &mut settled.runs {
            r.metrics.retain(|m| m.verdict == Verdict::Unchanged);
            r.outcome = Outcome::Unchanged;
        }
        let md = markdown(&settled, false);
        assert!(!md.contains("| run |"), "{md}");
        assert!(md.contains("No metric of the 24 runs changed"), "{md}");
        let json = c.json();
        assert_eq!(json["verdict"], "pass");
        assert_eq!(json["exit_code"], 0);
    }

    #[test]
    fn runs_on_one_side_only_are_listed_and_ids_cannot_break_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let mut f = ResultsFile::load(&p).unwrap();
        for r in &mut f.runs {
            r.samples_ms.truncate(50);
        }
        let a_path = dir.path().join("a.json");
        f.save(&a_path).unwrap();
        let gone = f.runs.remove(0).spec.id;
        f.runs[0].spec.id = "new | `run`\nwith breaks".into();
        let b_path = dir.path().join("b.json");
        f.save(&b_path).unwrap();
        let c = compare(&a_path, &b_path, 0.10, false).unwrap();
        assert!(c.only_in_baseline.contains(&gone));
        assert!(c.only_in_baseline.len() == 2 && c.only_in_candidate.len() == 1);
        let md = markdown(&c, false);
        let row = md
            .lines()
            .find(|l| l.contains("only in candidate"))
            .unwrap();
        let pipes = row
            .char_indices()
            .filter(|(i, c)| *c == '|' && !row[..*i].ends_with('\\'))
            .count();
        assert_eq!(pipes, 9, "eight cells: {row}");
        assert!(row.starts_with("| `new \\| 'run' with breaks` |"), "{row}");
    }

    #[test]
    fn server_load_runs_compare_their_per_request_latencies() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/server/20261128T040254Z-vm.json");
        let f = ResultsFile::load(&p).unwrap();
        let a = f
            .runs
            .iter()
            .find(|r| r.status == Status::Ok && r.server.is_some() && r.samples_ms.len() > 100)
            .unwrap();
        assert!(matches!(
            verdict(&compare_run(a, a, 0.10), "p99 latency"),
            Verdict::Unchanged | Verdict::Inconclusive
        ));
        let mut b = a.clone();
        for x in &mut b.samples_ms {
            *x *= 1.5;
        }
        let c = compare_run(a, &b, 0.10);
        assert_eq!(verdict(&c, "p99 latency"), Verdict::Regressed);
        assert_eq!(verdict(&c, "p50 latency"), Verdict::Regressed);
    }
}
