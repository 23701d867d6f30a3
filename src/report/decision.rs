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
use crate::cost::{usd_per_1m, RateBasis, HOURS_PER_MONTH};
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
    /// The monthly bill at the ends of the capacity's interval (`ci_usd`), when both are known.
    pub monthly_range_usd: Option<(f64, f64)>,
    pub energy_per_1k_joules: Option<f64>,
}

impl Candidate<'_, '_> {
    /// What `ci_usd` is: a bootstrap interval of an offline peak, or the bracket of a
    /// server-load search (the rate that met the SLA and the next that did not), which is no
    /// confidence interval.
    pub fn interval_words(&self) -> &'static str {
        match self.evidence {
            Evidence::UpperBound => "95% CI",
            Evidence::Confirmed | Evidence::Curve => "search bracket",
        }
    }

    /// What the options are ranked by: the monthly bill at the asked load, else the cost per 1k.
    fn rank_usd(&self) -> f64 {
        self.monthly_usd.unwrap_or(self.cost_per_1k_usd)
    }

    /// [`Self::rank_usd`] at the ends of the capacity's interval, where the evidence gives one.
    fn rank_range(&self) -> Option<(f64, f64)> {
        match self.monthly_usd {
            Some(_) => self.monthly_range_usd,
            None => self.ci_usd,
        }
    }

    fn kind(&self) -> &'static str {
        if self.gpu {
            "GPU"
        } else {
            "CPU"
        }
    }
}

/// The decision for one (model, mode).
#[derive(Clone)]
pub struct Decision<'r, 'a> {
    pub model: Preset,
    pub mode: Mode,
    /// The budget the options were judged at (`None`: each run's own SLA).
    pub p99_ms: Option<f64>,
    /// The load they were sized for (`None`: ranked by cost per 1k).
    pub qps: Option<f64>,
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

    /// The answer when no configuration meets the requirement: the budget and load asked, how
    /// many configurations were measured, and the lowest p99 any of them measured (its own
    /// figure: offline rows would add the time to fill their batch), so the reader sees how
    /// far the budget is from what the hardware does.
    fn nothing_qualifies(&self) -> String {
        let at = match (self.p99_ms, self.qps) {
            (Some(p), Some(q)) => format!(" at p99 ≤ {p} ms and {q:.0} requests/s"),
            (Some(p), None) => format!(" at p99 ≤ {p} ms"),
            (None, Some(q)) => format!(" at {q:.0} requests/s and each run's own SLA"),
            (None, None) => " at each run's own SLA".into(),
        };
        let mut v = format!(
            "No configuration qualifies{at}: the {} measured are excluded below, each with \
             its reason.",
            self.excluded.len()
        );
        let lowest = self
            .excluded
            .iter()
            .filter_map(|(r, _)| Some((r, r.run.latency.as_ref()?.p99_ms)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((r, p99)) = lowest {
            v.push_str(&format!(
                " The lowest p99 measured was {p99:.1} ms ({} on {})",
                r.run.spec.id, r.host
            ));
            // What the closest configuration would need: a looser budget, or a machine that
            // much faster.
            match self.p99_ms.filter(|b| *b > 0.0 && p99 > *b) {
                Some(b) => v.push_str(&format!(
                    ": it would need a budget of at least {:.0} ms, or a machine {:.1}× as \
                     fast.",
                    p99.ceil(),
                    p99 / b
                )),
                None => v.push('.'),
            }
        }
        v
    }

    /// The answer in one sentence: the winner (the table's first option, `plan`'s first), its
    /// machines and bill (or cost per request), against the best option of the other kind (CPU
    /// or GPU), with the caveats that qualify the winner's figure. The report's first lines and
    /// the top of `plan` are these.
    pub fn answer(&self) -> String {
        self.parts().0
    }

    /// The answer, then what the evidence allows: the answer sentence and the sentences that
    /// qualify it (a cheaper flat-out cost, an offline upper bound to confirm).
    pub fn verdict(&self) -> String {
        let (answer, rest) = self.parts();
        if rest.is_empty() {
            answer
        } else {
            format!("{answer} {rest}")
        }
    }

    fn parts(&self) -> (String, String) {
        let Some(win) = self.options.first() else {
            return (self.nothing_qualifies(), String::new());
        };
        let other = self.options.iter().find(|o| o.gpu != win.gpu);
        // The other kind cheaper by an offline peak only: the winner is the cheapest measured.
        let unmeasured_cheaper = other.is_some_and(|o| o.rank_usd() < win.rank_usd());
        let cheapest = if unmeasured_cheaper {
            "the cheapest option measured under server load"
        } else {
            "the cheapest"
        };
        let at = match self.p99_ms {
            Some(p) => format!("p99 ≤ {p} ms"),
            None => "each run's own SLA".into(),
        };
        let mut v = match (self.qps, win.monthly_usd) {
            (Some(q), Some(m)) => format!(
                "At {q:.0} requests/s and {at}, {cheapest} is {} ({}): {} machine(s), {} a \
                 month ({} per 1M requests at full load)",
                win.hardware,
                win.kind(),
                win.instances.unwrap_or(0),
                crate::cost::usd(m),
                usd_per_1m(win.cost_per_1k_usd)
            ),
            _ => format!(
                "At {at}, {cheapest} per request is {} ({}): {} per 1M requests at full load",
                win.hardware,
                win.kind(),
                usd_per_1m(win.cost_per_1k_usd)
            ),
        };
        // How the winner's capacity was established, where it is not a confirmed operating
        // point: an offline peak can only overstate serving capacity, so a stricter budget
        // answered from one may show fewer machines than a looser one answered from a
        // server-load measurement.
        match win.evidence {
            Evidence::Confirmed => {}
            Evidence::Curve => v.push_str(" on a rate of its server-load curve, not confirmed"),
            Evidence::UpperBound => v.push_str(
                " on its offline peak, an upper bound: serving at this budget was not measured",
            ),
        }
        match other {
            None => v.push_str(&format!(
                "; no {} option qualifies to compare with",
                if win.gpu { "CPU" } else { "GPU" }
            )),
            Some(o) => match (o.monthly_usd, win.monthly_usd) {
                (Some(om), Some(wm)) => v.push_str(&format!(
                    ", against {} for {} {} ({}), {:.2}× the bill",
                    crate::cost::usd(om),
                    o.instances.unwrap_or(0),
                    o.hardware,
                    o.kind(),
                    om / wm.max(1e-12)
                )),
                _ => v.push_str(&format!(
                    ", against {} on {} ({}), {:.2}× the cost per request",
                    usd_per_1m(o.cost_per_1k_usd),
                    o.hardware,
                    o.kind(),
                    o.cost_per_1k_usd / win.cost_per_1k_usd.max(1e-12)
                )),
            },
        }
        // What qualifies the winner's figure travels with it, inside the answer.
        let caveats = super::notes::cost_caveats(win.row);
        if !caveats.is_empty() {
            v.push_str(&format!(
                " (caveats on {}'s figure: {})",
                win.hardware,
                caveats.join(", ")
            ));
        }
        v.push('.');
        let mut rest = String::new();
        if let Some(o) = other {
            if self.qps.is_some() && !unmeasured_cheaper && o.cost_per_1k_usd < win.cost_per_1k_usd
            {
                rest.push_str(&format!(
                    " {} costs less per request when it runs flat out ({} per 1M), but this \
                     load fills {:.0}% of one machine of it.",
                    o.hardware,
                    usd_per_1m(o.cost_per_1k_usd),
                    100.0 * self.qps.unwrap_or(0.0) / o.capacity_qps.max(1e-9)
                ));
            }
            if unmeasured_cheaper {
                rest.push_str(&format!(
                    " {} would cost less by its offline peak, an upper bound that serving may \
                     not reach: measure it under server load at this budget before buying on it.",
                    o.hardware
                ));
            } else if win.evidence == Evidence::UpperBound && o.evidence == Evidence::UpperBound {
                rest.push_str(
                    " Both capacities are offline peaks (upper bounds): measure them under server \
                     load to confirm the order.",
                );
            } else if o.evidence == Evidence::UpperBound {
                rest.push_str(&format!(
                    " {}'s capacity is an offline peak, an upper bound: measured under server \
                     load it can only cost more, so the order holds.",
                    o.hardware
                ));
            }
        }
        if let Some(tie) = self.tie() {
            rest.push(' ');
            rest.push_str(&tie);
        }
        (v, rest.trim_start().to_string())
    }

    /// The first two options are a statistical tie when the winner's figure at the bad end of
    /// its interval is no better than the runner-up's at its good end: the sentence that says
    /// so, with the intervals and what measurement would separate them.
    pub fn tie(&self) -> Option<String> {
        let [win, next, ..] = self.options.as_slice() else {
            return None;
        };
        let ((wl, wh), (nl, nh)) = (win.rank_range()?, next.rank_range()?);
        if wh < nl {
            return None;
        }
        let show = |x: f64| match self.qps {
            Some(_) => format!("{} a month", crate::cost::usd(x)),
            None => format!("{} per 1M requests", usd_per_1m(x)),
        };
        let separate = |c: &Candidate| {
            match c.evidence {
            Evidence::UpperBound => "more rounds (`run --rounds N`) or a longer window (`[measure] min_s`)",
            Evidence::Confirmed | Evidence::Curve => "a finer operating-point search and longer probes (`[measure] min_s`; its interval runs from the rate that met the budget beyond doubt to the next that missed it beyond doubt, by each probe's p99 interval)",
        }
        };
        Some(format!(
            "{} and {} are a statistical tie: across their intervals {} costs {}–{} and {}              {}–{}. To separate them: {} for {}, {} for {}.",
            win.hardware,
            next.hardware,
            win.hardware,
            show(wl),
            show(wh),
            next.hardware,
            show(nl),
            show(nh),
            separate(win),
            win.hardware,
            separate(next),
            next.hardware
        ))
    }
}

/// A run's top-10 overlap with the full model in fp32. Files written before quality was
/// recorded have none; for an unpruned run parity's overlap is that same figure (parity's
/// reference *is* the full model in fp32), so it stands in.
pub fn quality_top10(run: &crate::results::RunResult) -> Option<f64> {
    let model = match (&run.quality, &run.parity) {
        (Some(q), _) => Some(q.top10_overlap),
        (None, Some(p)) if run.spec.prune.is_full() => Some(p.top10_overlap),
        _ => None,
    };
    // A retrieval sweep's run: the model's overlap times its search's recall@10 (the share of
    // the exact top-10 its search returned), what a user receives from both levers if the two
    // losses are independent. Without a recall figure it has no quality.
    match (run.spec.retrieval, &run.retrieval) {
        (None, _) => model,
        (Some(_), Some(r)) => model.map(|q| q * r.recall_at_k),
        (Some(_), None) => None,
    }
}

/// Requests an operating point's confirmation must have served for its p99 to be read: at
/// fewer, the p99 is one of the slowest few requests.
pub const MIN_OPERATING_POINT_REQUESTS: usize = 100;

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
                    "quality below the bar: top-10 overlap {q:.2} with the full model{} < {bar}",
                    if run.spec.retrieval.is_some() {
                        " (times its search's recall@10)"
                    } else {
                        ""
                    }
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
        // The lowest p99 any probed rate reached: below it no rate meets a budget.
        let floor = s
            .curve
            .iter()
            .map(|p| p.p99_ms)
            .filter(|p| p.is_finite())
            .min_by(f64::total_cmp);
        let below_floor = |b: f64| {
            floor.filter(|f| *f > b).map(|f| {
                format!(
                    "cannot meet p99 ≤ {b} ms: its floor is {f:.1} ms (the lowest p99 of the {} \
                     probed rates)",
                    s.curve.len()
                )
            })
        };
        // Below the floor, nothing else about the run matters at this budget.
        if let Some(why) = below_floor(budget) {
            return Err(why);
        }
        let Some(c) = &s.confirmation else {
            return Err(below_floor(s.sla_p99_ms).unwrap_or_else(|| {
                format!("no rate met the {} ms SLA of the search", s.sla_p99_ms)
            }));
        };
        if c.completed < MIN_OPERATING_POINT_REQUESTS {
            return Err(format!(
                "its operating point rests on {} requests, fewer than the {} a p99 needs",
                c.completed, MIN_OPERATING_POINT_REQUESTS
            ));
        }
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
    let capacity = t.requests_per_s;
    let serving = offline_serving_p99(run.spec.batch, l.p99_ms, capacity, req);
    if serving.p99_ms > budget {
        return Err(format!(
            "serving p99 {:.1} ms > {budget} ms: filling a batch of {} at {:.0} requests/s per \
             machine ({}) takes {:.1} ms, then the batch's own p99 is {:.1} ms",
            serving.p99_ms,
            run.spec.batch,
            serving.arrival_qps,
            serving.load,
            serving.fill_ms,
            l.p99_ms
        ));
    }
    Ok((Evidence::UpperBound, capacity, serving.p99_ms))
}

/// What an offline run's batch costs a request when it is served: the first request of a batch
/// waits while the other `batch − 1` arrive, at the rate one machine receives, then for the
/// batch's own p99.
struct OfflineServing {
    p99_ms: f64,
    fill_ms: f64,
    arrival_qps: f64,
    /// Where the arrival rate comes from, for the reader.
    load: String,
}

/// The serving p99 of an offline run of `batch` (batch p99 `batch_p99_ms`, peak `capacity`
/// requests/s per machine): at the asked load, each of the machines it takes (with headroom)
/// receives `qps / machines`; without one, a machine running flat out receives its capacity.
fn offline_serving_p99(
    batch: usize,
    batch_p99_ms: f64,
    capacity: f64,
    req: &Requirement,
) -> OfflineServing {
    let (arrival_qps, load) = match req.qps {
        Some(q) => {
            let machines = machines_for(q, req.headroom, capacity);
            (
                q / machines as f64,
                format!("{q:.0} requests/s over {machines} machine(s)"),
            )
        }
        None => (capacity, "a machine at its offline peak".to_string()),
    };
    let fill_ms = batch.saturating_sub(1) as f64 / arrival_qps.max(1e-9) * 1e3;
    OfflineServing {
        p99_ms: fill_ms + batch_p99_ms,
        fill_ms,
        arrival_qps,
        load,
    }
}

/// Machines (or instances) that serve `qps` with `headroom` spare at `capacity` each.
fn machines_for(qps: f64, headroom: f64, capacity: f64) -> u64 {
    (qps * (1.0 + headroom) / capacity).ceil().max(1.0) as u64
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
                        let instances = req.qps.map(|q| machines_for(q, req.headroom, capacity));
                        let bill = |q: f64, usd_per_1k: f64| {
                            let cap = crate::cost::capacity_at(f.hourly_usd, usd_per_1k);
                            machines_for(q, req.headroom, cap) as f64
                                * f.hourly_usd
                                * HOURS_PER_MONTH
                        };
                        let monthly_range_usd = match (req.qps, ci) {
                            (Some(q), Some((lo, hi))) if lo > 0.0 => {
                                Some((bill(q, lo), bill(q, hi)))
                            }
                            _ => None,
                        };
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
                            monthly_range_usd,
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
                            "{} per 1M requests at offline peak is only an upper bound; {} \
                             was measured at an operating point ({})",
                            usd_per_1m(o.cost_per_1k_usd),
                            short(best),
                            usd_per_1m(best.cost_per_1k_usd)
                        )
                    } else {
                        format!(
                            "{} per 1M requests on {}, more than {} ({})",
                            usd_per_1m(o.cost_per_1k_usd),
                            o.hardware,
                            short(best),
                            usd_per_1m(best.cost_per_1k_usd)
                        )
                    };
                    excluded.push((o.row, format!("not the best on its hardware: {why}")));
                } else {
                    options.push(o);
                }
            }
            // One order for the table, its tag, the verdict and `plan`: measured operating
            // points before offline upper bounds, then the bill at the asked load (machines ×
            // price; the cost per 1k assumes a machine runs flat out, which a small load does
            // not), or the cost per 1k without one.
            options.sort_by(|a, b| {
                (a.evidence == Evidence::UpperBound)
                    .cmp(&(b.evidence == Evidence::UpperBound))
                    .then(a.rank_usd().total_cmp(&b.rank_usd()))
            });
            Decision {
                model,
                mode,
                p99_ms: req.p99_ms,
                qps: req.qps,
                options,
                excluded,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
