//! The report's "Over a day" section: the decision's options at the demand's peak, each as an
//! autoscaled fleet over the demand (`cost::day`), as `recbench plan --diurnal/--trace` prints
//! them. Its cells and sentence are here; html.rs renders them into index.html, markdown.rs
//! into summary.md.

use std::fmt::Write;

use super::Model;
use crate::cost::day::{tie, DayGroup, DayOption};
use crate::cost::{usd, usd_per_1m};

/// One option's cells, as [`HEAD`] names them: hardware, capacity, cold start, peak and mean
/// machines, cost per day with its interval, per month, per million requests, SLA-minutes
/// missed, the fleet sized for the peak, and the evidence with its caveats.
pub(super) fn cells(o: &DayOption) -> [String; 10] {
    [
        format!(
            "{}{}",
            o.hardware_id,
            if o.upper_bound {
                " (offline upper bound)"
            } else {
                ""
            }
        ),
        format!("{:.1}", o.capacity_per_instance_qps),
        match o.process_start_s {
            Some(p) => format!("{:.1} ({p:.1} measured)", o.cold_start_s),
            None => format!("{:.1} (none measured)", o.cold_start_s),
        },
        format!(
            "{} / {:.1}",
            o.autoscaled.peak_instances, o.autoscaled.mean_instances
        ),
        match o.usd_per_day_interval {
            Some((lo, hi)) => format!("{} [{}–{}]", usd(o.usd_per_day), usd(lo), usd(hi)),
            None => usd(o.usd_per_day),
        },
        usd(o.usd_per_month),
        usd_per_1m(o.cost_per_1k_usd),
        format!("{:.1}", o.autoscaled.seconds_over_sla / 60.0),
        format!(
            "{} machine{} all day, {}/day, {:.1} min missed",
            o.static_peak.peak_instances,
            if o.static_peak.peak_instances == 1 {
                ""
            } else {
                "s"
            },
            usd(o.static_usd_per_day),
            o.static_peak.seconds_over_sla / 60.0
        ),
        if o.caveats.is_empty() {
            o.evidence.clone()
        } else {
            format!("{}; caveats: {}", o.evidence, o.caveats.join(", "))
        },
    ]
}

pub(super) const HEAD: [&str; 10] = [
    "hardware",
    "capacity per machine (req/s)",
    "cold start s",
    "machines peak / mean",
    "USD/day [interval]",
    "USD/month",
    "$ per 1M requests",
    "minutes over the SLA",
    "sized for the peak all day",
    "evidence",
];

/// What the day says of a group in a sentence: its cheapest measured option and what it saves
/// against a fleet sized for the peak; where the decision at the reader's `--qps` names another
/// option first, that too; and a tie where there is one.
pub(super) fn verdict(g: &DayGroup, m: &Model) -> String {
    let Some(best) = g.options.iter().find(|o| !o.upper_bound) else {
        return match g.options.first() {
            Some(_) => "Only offline upper bounds qualify: no measured operating point to plan a fleet with.".into(),
            None => "No option meets the budget at the demand's peak.".into(),
        };
    };
    let mut s = format!(
        "Cheapest over the demand: {}, {}/day ({} a month) autoscaled, against {}/day sized for the peak all day; it would miss the SLA for {:.1} min.",
        best.hardware_id,
        usd(best.usd_per_day),
        usd(best.usd_per_month),
        usd(best.static_usd_per_day),
        best.autoscaled.seconds_over_sla / 60.0
    );
    let at_qps = m
        .decisions
        .iter()
        .find(|d| d.title() == g.group)
        .and_then(|d| d.options.first());
    if let (Some(first), Some(q)) = (at_qps, m.req.qps) {
        if first.hardware != best.hardware_id {
            let _ = write!(
                s,
                " At a constant {q} requests/s the decision above names {} first: this demand's peak and its quiet hours change the order.",
                first.hardware
            );
        }
    }
    if let Some(t) = tie(&g.options) {
        let _ = write!(s, " {t}");
    }
    s
}
