//! The CI regression gate: compare a candidate results file with a baseline, run by run and
//! metric by metric, and call a change a regression only when it exceeds the threshold with 95%
//! confidence.
//!
//! For latency and throughput the decision uses the per-iteration samples both files keep: a
//! bootstrap (2,000 resamples, seeded) of the ratio candidate/baseline of the statistic (median,
//! p99, or mean iteration time for throughput). A slowdown is *regressed* when the one-sided 95%
//! lower bound of the ratio exceeds 1 + threshold, *improved* when the upper bound is below
//! 1 / (1 + threshold), else *unchanged*. Peak memory has one value per run and is compared with
//! the threshold alone. Parity regresses when a run that passed its tolerance no longer does.

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
    Regressed,
    /// Not enough data on one side to decide.
    Unknown,
}

/// One metric of one run.
#[derive(Debug, Clone, Serialize)]
pub struct MetricChange {
    pub metric: String,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    /// candidate / baseline, oriented so that > 1 is worse.
    pub slowdown: Option<f64>,
    /// One-sided 95% bounds of `slowdown` (lower, upper).
    pub ci: Option<(f64, f64)>,
    pub verdict: Verdict,
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
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub threshold: f64,
    pub runs: Vec<RunChange>,
    pub only_in_baseline: Vec<String>,
    pub only_in_candidate: Vec<String>,
    /// How the two machines differ in what decides speed; empty when they do not. Non-empty
    /// only with `--allow-different-hosts`: every verdict then compares machines as well.
    pub host_differences: Vec<String>,
}

impl Comparison {
    /// Whether the gate fails.
    pub fn failed(&self) -> bool {
        self.runs
            .iter()
            .any(|r| r.newly_broken || r.metrics.iter().any(|m| m.verdict == Verdict::Regressed))
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

/// Bootstrap one-sided 95% bounds (5th and 95th percentiles) of stat(b)/stat(a).
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
    if ci.0 > 1.0 + threshold {
        Verdict::Regressed
    } else if ci.1 < 1.0 / (1.0 + threshold) {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

fn sampled(
    name: &str,
    a: &[f64],
    b: &[f64],
    stat: fn(&[f64]) -> f64,
    threshold: f64,
    seed: u64,
) -> MetricChange {
    if a.len() < 5 || b.len() < 5 {
        return MetricChange {
            metric: name.into(),
            baseline: (!a.is_empty()).then(|| stat(a)),
            candidate: (!b.is_empty()).then(|| stat(b)),
            slowdown: None,
            ci: None,
            verdict: Verdict::Unknown,
        };
    }
    let ci = bootstrap_ratio(a, b, stat, seed);
    MetricChange {
        metric: name.into(),
        baseline: Some(stat(a)),
        candidate: Some(stat(b)),
        slowdown: Some(stat(b) / stat(a)),
        ci: Some(ci),
        verdict: decide(ci, threshold),
    }
}

fn compare_run(a: &RunResult, b: &RunResult, threshold: f64) -> RunChange {
    let mut metrics = Vec::new();
    let both_ok = a.status == Status::Ok && b.status == Status::Ok;
    if both_ok {
        let seed = crate::model::weights::fnv1a(&a.spec.id);
        let (sa, sb) = (&a.samples_ms, &b.samples_ms);
        metrics.push(sampled("p50_ms", sa, sb, median, threshold, seed));
        metrics.push(sampled("p99_ms", sa, sb, p99, threshold, seed ^ 1));
        // Throughput and cost per 1k follow the mean iteration time on the same machine.
        let mut tp = sampled(
            "throughput (mean iteration time)",
            sa,
            sb,
            mean,
            threshold,
            seed ^ 2,
        );
        tp.baseline = a.throughput.as_ref().map(|t| t.requests_per_s);
        tp.candidate = b.throughput.as_ref().map(|t| t.requests_per_s);
        let mut cost = tp.clone();
        cost.metric = "cost per 1k (∝ 1 / throughput)".into();
        cost.baseline = tp.baseline.map(|r| 1.0 / r);
        cost.candidate = tp.candidate.map(|r| 1.0 / r);
        metrics.push(tp);
        metrics.push(cost);
        let (ma, mb) = (a.memory.peak_rss_bytes, b.memory.peak_rss_bytes);
        metrics.push(match (ma, mb) {
            (Some(x), Some(y)) => {
                let r = y as f64 / x as f64;
                MetricChange {
                    metric: "peak_rss_bytes".into(),
                    baseline: Some(x as f64),
                    candidate: Some(y as f64),
                    slowdown: Some(r),
                    ci: None,
                    verdict: if r > 1.0 + threshold {
                        Verdict::Regressed
                    } else if r < 1.0 / (1.0 + threshold) {
                        Verdict::Improved
                    } else {
                        Verdict::Unchanged
                    },
                }
            }
            _ => MetricChange {
                metric: "peak_rss_bytes".into(),
                baseline: ma.map(|x| x as f64),
                candidate: mb.map(|x| x as f64),
                slowdown: None,
                ci: None,
                verdict: Verdict::Unknown,
            },
        });
    }
    let (pa, pb) = (a.parity.as_ref(), b.parity.as_ref());
    if let (Some(pa), Some(pb)) = (pa, pb) {
        metrics.push(MetricChange {
            metric: "parity min cosine".into(),
            baseline: Some(pa.min_cosine),
            candidate: Some(pb.min_cosine),
            slowdown: None,
            ci: None,
            verdict: match (pa.passed, pb.passed) {
                (true, false) => Verdict::Regressed,
                (false, true) => Verdict::Improved,
                _ => Verdict::Unchanged,
            },
        });
    }
    let valid = |s: Status| matches!(s, Status::Ok | Status::Skipped);
    RunChange {
        id: a.spec.id.clone(),
        baseline_status: a.status,
        candidate_status: b.status,
        newly_broken: valid(a.status) && matches!(b.status, Status::Failed | Status::Invalid),
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

/// Compares two results files. Files that cannot be compared are bad input (exit code 2),
/// among them files from machines that differ in what decides speed, unless
/// `allow_different_hosts`.
pub fn compare(
    baseline_path: &Path,
    candidate_path: &Path,
    threshold: f64,
    allow_different_hosts: bool,
) -> Result<Comparison> {
    let a = ResultsFile::load(baseline_path)?;
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
    /// One line: runs compared and how many regressed, improved, stayed unchanged or could not
    /// be judged, and the runs on one side only.
    pub fn summary(&self) -> String {
        let count = |v: Verdict| {
            self.runs
                .iter()
                .filter(|r| {
                    if v == Verdict::Regressed && r.newly_broken {
                        return true;
                    }
                    let vs: Vec<Verdict> = r.metrics.iter().map(|m| m.verdict).collect();
                    match v {
                        Verdict::Regressed => vs.contains(&Verdict::Regressed),
                        Verdict::Improved => {
                            !vs.contains(&Verdict::Regressed) && vs.contains(&Verdict::Improved)
                        }
                        Verdict::Unknown => {
                            !vs.contains(&Verdict::Regressed)
                                && !vs.contains(&Verdict::Improved)
                                && vs.contains(&Verdict::Unknown)
                        }
                        Verdict::Unchanged => {
                            !r.newly_broken && vs.iter().all(|x| *x == Verdict::Unchanged)
                        }
                    }
                })
                .count()
        };
        format!(
            "{} runs compared: {} regressed, {} improved, {} unchanged, {} unknown; {} only in \
             the baseline, {} only in the candidate{}",
            self.runs.len(),
            count(Verdict::Regressed),
            count(Verdict::Improved),
            count(Verdict::Unchanged),
            count(Verdict::Unknown),
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
}

fn fmt(x: Option<f64>) -> String {
    match x {
        Some(v) if v.abs() >= 1e5 => format!("{:.3e}", v),
        Some(v) => format!("{v:.4}"),
        None => "—".into(),
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

/// The comparison as a Markdown table (for CI step summaries).
pub fn markdown(c: &Comparison) -> String {
    let mut s = format!(
        "## recbench compare: {}{}\n\n{}.\n\nThreshold {:.1}%; a regression needs the 95% one-sided bound beyond it.\n\n| run | metric | baseline | candidate | ratio | 95% bounds | verdict |\n|---|---|---:|---:|---:|---:|---|\n",
        if c.failed() { "REGRESSION" } else { "pass" },
        if c.host_differences.is_empty() { "" } else { " (cross-host)" },
        c.summary(),
        c.threshold * 100.0
    );
    for r in &c.runs {
        if r.newly_broken {
            s.push_str(&format!(
                "| {} | status | {} | {} | | | **newly broken** |\n",
                id_cell(&r.id),
                r.baseline_status.name(),
                r.candidate_status.name()
            ));
        }
        for m in &r.metrics {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                id_cell(&r.id),
                m.metric,
                fmt(m.baseline),
                fmt(m.candidate),
                m.slowdown.map_or("—".into(), |x| format!("{x:.3}")),
                m.ci.map_or("—".into(), |(l, u)| format!("{l:.3}–{u:.3}")),
                match m.verdict {
                    Verdict::Regressed => "**regressed**",
                    Verdict::Improved => "improved",
                    Verdict::Unchanged => "unchanged",
                    Verdict::Unknown => "unknown (too few samples)",
                }
            ));
        }
    }
    for id in &c.only_in_baseline {
        s.push_str(&format!(
            "| {} | only in baseline | | | | | |\n",
            id_cell(id)
        ));
    }
    for id in &c.only_in_candidate {
        s.push_str(&format!(
            "| {} | only in candidate | | | | | |\n",
            id_cell(id)
        ));
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
        assert_eq!(verdict(&same, "peak_rss_bytes"), Verdict::Unchanged);
        assert_eq!(verdict(&same, "parity"), Verdict::Unchanged);

        let mut b = a.clone();
        b.memory.peak_rss_bytes = a.memory.peak_rss_bytes.map(|m| m * 3 / 2);
        let c = compare_run(&a, &b, 0.10);
        assert_eq!(verdict(&c, "peak_rss_bytes"), Verdict::Regressed);
        assert_eq!(verdict(&c, "p50_ms"), Verdict::Unchanged);

        let mut b = a.clone();
        b.parity.as_mut().unwrap().passed = false;
        let c = compare_run(&a, &b, 0.10);
        assert_eq!(verdict(&c, "parity"), Verdict::Regressed);
        let cmp = Comparison {
            threshold: 0.10,
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
        for m in ["p50_ms", "p99_ms", "throughput"] {
            assert_eq!(verdict(&c, m), Verdict::Unknown, "{m}");
        }
        let md = markdown(&Comparison {
            threshold: 0.10,
            runs: vec![c],
            only_in_baseline: vec![],
            only_in_candidate: vec![],
            host_differences: vec![],
        });
        assert!(md.contains("unknown (too few samples)"), "{md}");
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
        let md = markdown(&c);
        let row = md
            .lines()
            .find(|l| l.contains("only in candidate"))
            .unwrap();
        let pipes = row
            .char_indices()
            .filter(|(i, c)| *c == '|' && !row[..*i].ends_with('\\'))
            .count();
        assert_eq!(pipes, 8, "seven cells: {row}");
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
        assert_eq!(
            verdict(&compare_run(a, a, 0.10), "p99_ms"),
            Verdict::Unchanged
        );
        let mut b = a.clone();
        for x in &mut b.samples_ms {
            *x *= 1.5;
        }
        let c = compare_run(a, &b, 0.10);
        assert_eq!(verdict(&c, "p99_ms"), Verdict::Regressed);
        assert_eq!(verdict(&c, "p50_ms"), Verdict::Regressed);
    }
}
