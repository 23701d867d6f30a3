//! The decision a procurement reader came for: per (model, mode), one row per hardware option
//! with its cheapest configuration that meets the latency budget and the quality bar, its cost
//! per 1,000 requests, its capacity, and what serving a target load costs a month; then every
//! configuration that was excluded, with the reason.
//!
//! One rule decides everywhere (this table, its chart, `plan`): a server-load run counts at
//! its operating point only when the confirmation probe there met the SLA; a reader's stricter
//! budget re-judges it from its latency–throughput curve (labelled unconfirmed). Offline peak
//! throughput only bounds what a service can sell: such capacities come after every measured
//! operating point and are labelled upper bounds.

use std::collections::BTreeMap;

use super::Row;
use crate::cost::{RateBasis, HOURS_PER_MONTH};
use crate::model::Preset;
use crate::results::Status;
use crate::spec::{Device, Mode};

/// What the reader asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// Target request rate; without it, no instance counts or monthly costs.
    pub qps: Option<f64>,
    /// p99 budget; without it, each run's own SLA.
    pub p99_ms: Option<f64>,
    /// Price basis: `on-demand`, `reserved-1y`, `spot` or `owned`.
    pub basis: String,
    /// Spare capacity on top of the target rate (0.3 = 30%).
    pub headroom: f64,
    /// Lowest top-10 overlap with the full fp32 model a configuration may have
    /// (`--min-quality`); without it, parity alone is the quality bar.
    pub min_quality: Option<f64>,
}

impl Default for Requirement {
    fn default() -> Self {
        Requirement {
            qps: None,
            p99_ms: None,
            basis: "on-demand".into(),
            headroom: 0.3,
            min_quality: None,
        }
    }
}

/// How a capacity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Evidence {
    /// The operating point of a server-load run, confirmed by a second probe.
    Confirmed,
    /// A rate of a server-load run's search curve that meets a stricter budget than the run's
    /// SLA; not confirmed by a second probe.
    Curve,
    /// Peak offline (or single-stream) throughput whose batch p99 fits the budget: an upper
    /// bound for serving.
    UpperBound,
}

impl Evidence {
    pub fn words(self) -> &'static str {
        match self {
            Evidence::Confirmed => "confirmed operating point",
            Evidence::Curve => "from the search curve, not confirmed",
            Evidence::UpperBound => "offline peak: an upper bound",
        }
    }
}

/// One configuration that meets the requirement.
#[derive(Clone)]
pub struct Candidate<'r, 'a> {
    pub row: &'r Row<'a>,
    pub hardware: String,
    pub gpu: bool,
    pub evidence: Evidence,
    /// Requests per second one instance serves within the budget.
    pub capacity_qps: f64,
    /// p99 at that capacity (per request at an operating point, per batch offline).
    pub p99_ms: f64,
    pub hourly_usd: f64,
    pub cost_per_1k_usd: f64,
    /// 95% interval of the cost, when the evidence gives one.
    pub ci_usd: Option<(f64, f64)>,
    pub instances: Option<u64>,
    pub monthly_usd: Option<f64>,
    pub energy_per_1k_joules: Option<f64>,
}

/// The decision for one (model, mode).
#[derive(Clone)]
pub struct Decision<'r, 'a> {
    pub model: Preset,
    pub mode: Mode,
    /// The budget the options were judged at (`None`: each run's own SLA).
    pub p99_ms: Option<f64>,
    /// The best option per hardware option, best first.
    pub options: Vec<Candidate<'r, 'a>>,
    /// Every configuration that does not qualify, with the reason.
    pub excluded: Vec<(&'r Row<'a>, String)>,
}

impl Decision<'_, '_> {
    pub fn title(&self) -> String {
        let kind = if self.model.is_real() {
            "real weights"
        } else {
            "synthetic weights: a model-size proxy, not a recommender to deploy"
        };
        format!("{}, {} ({kind})", self.model, self.mode.name())
    }

    /// The CPU-against-GPU verdict in one sentence, with the ratio, or what is missing for it.
    pub fn verdict(&self) -> String {
        let by = |gpu: bool| self.options.iter().find(|o| o.gpu == gpu);
        let per = |o: &Candidate| format!("${:.6} per 1k on {}", o.cost_per_1k_usd, o.hardware);
        match (by(false), by(true)) {
            (Some(c), Some(g)) => {
                let (cheap, dear, what) = if c.cost_per_1k_usd <= g.cost_per_1k_usd {
                    (c, g, "CPU")
                } else {
                    (g, c, "GPU")
                };
                let mut v = format!(
                    "The {what} option is cheaper: {} against {}, {:.2}× less per request.",
                    per(cheap),
                    per(dear),
                    dear.cost_per_1k_usd / cheap.cost_per_1k_usd
                );
                // A cost from an offline peak can only rise at an operating point: the order
                // holds when that is the dearer option's figure, not when it is the cheaper's.
                if cheap.evidence != Evidence::Confirmed && dear.evidence == Evidence::Confirmed {
                    v.push_str(&format!(
                        " The {what} figure is not a confirmed operating point ({}), so its cost \
                         is a lower bound: measured under server load at this budget the order \
                         could change.",
                        cheap.evidence.words()
                    ));
                }
                v
            }
            (Some(c), None) => format!(
                "Only CPU options qualify here: the cheapest is {}; no GPU result to compare \
                 with.",
                per(c)
            ),
            (None, Some(g)) => format!(
                "Only GPU options qualify here: the cheapest is {}; no CPU result to compare \
                 with.",
                per(g)
            ),
            (None, None) => "No configuration qualifies; see the exclusions.".into(),
        }
    }
}

/// A run's top-10 overlap with the full model in fp32. Files written before quality was
/// recorded have none; for an unpruned run parity's overlap is that same figure (parity's
/// reference *is* the full model in fp32), so it stands in.
pub fn quality_top10(run: &crate::results::RunResult) -> Option<f64> {
    match (&run.quality, &run.parity) {
        (Some(q), _) => Some(q.top10_overlap),
        (None, Some(p)) if run.spec.prune.is_full() => Some(p.top10_overlap),
        _ => None,
    }
}

/// Judges one row at the requirement: the capacity it can sell and on what evidence, or why not.
fn judge(r: &Row, req: &Requirement) -> Result<(Evidence, f64, f64), String> {
    let run = r.run;
    match run.status {
        Status::Ok => {}
        Status::Skipped => return Err(format!("not run: {}", run.reason.as_deref().unwrap_or(""))),
        s => {
            return Err(format!(
                "{}: {}",
                s.name(),
                run.reason.as_deref().unwrap_or("")
            ))
        }
    }
    match &run.parity {
        Some(p) if p.passed => {}
        Some(p) => return Err(format!("parity failed ({})", p.tolerance)),
        None => return Err("no parity check".into()),
    }
    if let Some(bar) = req.min_quality {
        match quality_top10(run) {
            Some(q) if q >= bar => {}
            Some(q) => {
                return Err(format!(
                    "quality below the bar: top-10 overlap {q:.2} with the full model < {bar}"
                ))
            }
            None => return Err("no quality figure against the full model".into()),
        }
    }
    if r.cost.is_none() {
        return Err(format!("unpriced: {}", r.mapping.detail));
    }
    let budget = req.p99_ms.unwrap_or(run.spec.sla_p99_ms);
    if let Some(s) = &run.server {
        let Some(c) = &s.confirmation else {
            return Err(format!(
                "no rate met the {} ms SLA of the search",
                s.sla_p99_ms
            ));
        };
        if !c.meets_sla {
            return Err(format!(
                "the confirmation probe at {:.1} QPS missed the SLA (p99 {:.1} ms > {} ms)",
                c.offered_qps, c.p99_ms, s.sla_p99_ms
            ));
        }
        if c.p99_ms <= budget {
            return Ok((Evidence::Confirmed, c.offered_qps, c.p99_ms));
        }
        // A stricter budget than the run's SLA: the highest probed rate that meets it.
        return s
            .curve
            .iter()
            .filter(|p| p.p99_ms <= budget && p.achieved_qps >= 0.98 * p.offered_qps)
            .filter(|p| p.early_stop.is_none())
            .max_by(|a, b| a.offered_qps.total_cmp(&b.offered_qps))
            .map(|p| (Evidence::Curve, p.offered_qps, p.p99_ms))
            .ok_or_else(|| {
                format!(
                    "no probed rate kept p99 within {budget} ms (the run's SLA was {} ms)",
                    s.sla_p99_ms
                )
            });
    }
    let (Some(l), Some(t)) = (&run.latency, &run.throughput) else {
        return Err("no latency or throughput".into());
    };
    if l.p99_ms > budget {
        return Err(format!("p99 of a batch {:.1} ms > {budget} ms", l.p99_ms));
    }
    Ok((Evidence::UpperBound, t.requests_per_s, l.p99_ms))
}

/// The decisions for every (model, mode), real-weight models first.
pub fn decide<'r, 'a>(rows: &'r [Row<'a>], req: &Requirement) -> Vec<Decision<'r, 'a>> {
    let mut groups: BTreeMap<(bool, u64, Preset, Mode), Vec<&'r Row<'a>>> = BTreeMap::new();
    for r in rows {
        let s = &r.run.spec;
        groups
            .entry((
                !s.model.is_real(),
                s.model.config().parameters(),
                s.model,
                s.mode,
            ))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((_, _, model, mode), rs)| {
            let mut all = Vec::new();
            let mut excluded = Vec::new();
            for r in rs {
                match judge(r, req) {
                    Err(why) => excluded.push((r, why)),
                    Ok((evidence, capacity, p99)) => {
                        let c = r.cost.as_ref().expect("judged rows are priced");
                        let Some(f) = c.figures.iter().find(|f| f.basis == req.basis) else {
                            excluded
                                .push((r, format!("no {} price for {}", req.basis, c.hardware_id)));
                            continue;
                        };
                        let ci = (evidence == Evidence::Confirmed
                            || (evidence == Evidence::UpperBound
                                && c.rate_basis != RateBasis::OperatingPoint))
                            .then_some((f.ci_low_usd, f.ci_high_usd));
                        let instances = req
                            .qps
                            .map(|q| (q * (1.0 + req.headroom) / capacity).ceil().max(1.0) as u64);
                        all.push(Candidate {
                            row: r,
                            hardware: c.hardware_id.clone(),
                            gpu: matches!(r.run.spec.device, Device::Cuda(_)),
                            evidence,
                            capacity_qps: capacity,
                            p99_ms: p99,
                            hourly_usd: f.hourly_usd,
                            cost_per_1k_usd: crate::cost::per_1k(f.hourly_usd, capacity),
                            ci_usd: ci,
                            instances,
                            monthly_usd: instances
                                .map(|n| n as f64 * f.hourly_usd * HOURS_PER_MONTH),
                            energy_per_1k_joules: c.power.watts.map(|w| w * 1000.0 / capacity),
                        });
                    }
                }
            }
            // Measured operating points first, then the cheapest.
            all.sort_by(|a, b| {
                (a.evidence == Evidence::UpperBound)
                    .cmp(&(b.evidence == Evidence::UpperBound))
                    .then(a.cost_per_1k_usd.total_cmp(&b.cost_per_1k_usd))
            });
            let mut options: Vec<Candidate> = Vec::new();
            for o in all {
                if let Some(best) = options.iter().find(|b| b.hardware == o.hardware) {
                    let short = |c: &Candidate| {
                        let s = &c.row.run.spec;
                        format!(
                            "{} {} {} b{}",
                            s.backend,
                            s.precision,
                            s.load.name(),
                            s.batch
                        )
                    };
                    let why = if o.evidence == Evidence::UpperBound
                        && best.evidence != Evidence::UpperBound
                    {
                        format!(
                            "${:.6} per 1k at offline peak is only an upper bound; {} was \
                             measured at an operating point (${:.6})",
                            o.cost_per_1k_usd,
                            short(best),
                            best.cost_per_1k_usd
                        )
                    } else {
                        format!(
                            "${:.6} per 1k on {}, more than {} (${:.6})",
                            o.cost_per_1k_usd,
                            o.hardware,
                            short(best),
                            best.cost_per_1k_usd
                        )
                    };
                    excluded.push((o.row, format!("not the best on its hardware: {why}")));
                } else {
                    options.push(o);
                }
            }
            Decision {
                model,
                mode,
                p99_ms: req.p99_ms,
                options,
                excluded,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::Catalog;
    use crate::report::{load_sources, price};

    fn reference_sources() -> Vec<crate::report::Source> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference");
        load_sources(&[
            root.join("server/20261128T040254Z-vm.json"),
            root.join("quick/20261128T040112Z-vm.json"),
        ])
        .unwrap()
    }

    fn at(p99: Option<f64>, qps: Option<f64>) -> Requirement {
        Requirement {
            qps,
            p99_ms: p99,
            ..Requirement::default()
        }
    }

    #[test]
    fn a_missed_confirmation_excludes_the_run_everywhere_and_says_so() {
        let sources = reference_sources();
        let catalog = Catalog::shipped_with(None).unwrap();
        let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
        let rows = price(&sources, &catalog, &maps).unwrap();
        let d = decide(&rows, &at(Some(100.0), Some(500.0)));
        let two_tower = d
            .iter()
            .find(|d| d.model == Preset::MiniLmL6 && d.mode == Mode::TwoTower)
            .unwrap();
        let best = &two_tower.options[0];
        assert_eq!(best.evidence, Evidence::Confirmed);
        assert!(best
            .row
            .run
            .spec
            .id
            .starts_with("onnx/cpu/fp32/minilm-l6/two-tower/server/b1"));
        // 500 × 1.3 / 189.6 QPS → 4 instances.
        assert_eq!(best.instances, Some(4));
        let why = |prefix: &str| {
            two_tower
                .excluded
                .iter()
                .find(|(r, _)| r.run.spec.id.starts_with(prefix))
                .map(|(_, w)| w.clone())
                .unwrap()
        };
        assert!(why("onnx/cpu/fp32/minilm-l6/two-tower/server/b4")
            .contains("confirmation probe at 220.1 QPS missed the SLA"));
        assert!(why("torch/cpu/fp32/minilm-l6/two-tower/server/b4").contains("missed the SLA"));
        assert!(two_tower.verdict().starts_with("Only CPU options qualify"));
    }

    #[test]
    fn a_stricter_budget_is_judged_from_the_curve_and_labelled() {
        let sources = reference_sources();
        let catalog = Catalog::shipped_with(None).unwrap();
        let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
        let rows = price(&sources, &catalog, &maps).unwrap();
        let d = decide(&rows, &at(Some(60.0), None));
        let two_tower = d
            .iter()
            .find(|d| d.model == Preset::MiniLmL6 && d.mode == Mode::TwoTower)
            .unwrap();
        for o in &two_tower.options {
            assert!(o.p99_ms <= 60.0, "{}", o.p99_ms);
            assert_eq!(o.instances, None, "no --qps, no sizing");
            if let Some(server) = &o.row.run.server {
                let c = server.confirmation.as_ref().unwrap();
                assert_eq!(
                    o.evidence,
                    if c.p99_ms <= 60.0 {
                        Evidence::Confirmed
                    } else {
                        Evidence::Curve
                    }
                );
            }
        }
    }

    #[test]
    fn cpu_against_gpu_is_one_sentence_with_the_ratio() {
        let mut sources = reference_sources();
        // The same server file as if measured on one H200 (a fixture: the figures are the CPU's).
        let mut gpu = sources.remove(0);
        gpu.file.environment.inventory.host = "gpu-host".into();
        gpu.file.environment.inventory.gpus = vec![crate::telemetry::inventory::Gpu {
            index: 0,
            name: "NVIDIA H200".into(),
            memory_bytes: None,
            driver: None,
            cuda_version: None,
            power_limit_watts: None,
        }];
        for r in &mut gpu.file.runs {
            r.spec.device = Device::Cuda(0);
        }
        let cpu = reference_sources().remove(0);
        let sources = vec![cpu, gpu];
        let catalog = Catalog::shipped_with(None).unwrap();
        let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
        let rows = price(&sources, &catalog, &maps).unwrap();
        let d = decide(&rows, &at(Some(100.0), Some(500.0)));
        let v = d[0].verdict();
        let cpu = d[0].options.iter().find(|o| !o.gpu).unwrap();
        let gpu = d[0].options.iter().find(|o| o.gpu).unwrap();
        assert_eq!(gpu.hardware, "packetai-1x-h200-sxm");
        let ratio = gpu.cost_per_1k_usd / cpu.cost_per_1k_usd;
        assert!(v.starts_with("The CPU option is cheaper"), "{v}");
        assert!(v.contains(&format!("{ratio:.2}× less per request")), "{v}");
        assert!(!v.contains("lower bound"), "{v}");
        // The cheaper option known only from an offline peak: the verdict says it may not hold.
        let mut d = d[0].clone();
        let cheap = d.options.iter_mut().find(|o| !o.gpu).unwrap();
        cheap.evidence = Evidence::UpperBound;
        let v = d.verdict();
        assert!(v.contains("its cost is a lower bound"), "{v}");
        let gpu = d.options.iter_mut().find(|o| o.gpu).unwrap();
        gpu.evidence = Evidence::UpperBound;
        assert!(
            !d.verdict().contains("lower bound"),
            "both peaks: compared like with like"
        );
    }
}
