//! What a reader of a run's figures must be warned about, judged once and shown everywhere: as
//! badges in index.html and as the `notes` column of runs.csv and summary.md.
//!
//! Stability is judged by what matters for the load: offline and single-stream runs by the
//! coefficient of variation of their iteration times; server-load runs by whether the capacity
//! is pinned down — the bisection bracket around the operating point, and the agreement of the
//! confirmation probe with the search at the same rate — because under Poisson load the spread
//! of latencies is queueing, not noise.

use super::Row;
use crate::spec::Load;

/// Server load: a capacity bracket wider than this fraction of the operating point is not
/// pinned down.
pub const MAX_BRACKET: f64 = 0.10;
/// Server load: a confirmation p99 further than this fraction of the SLA from the search's p99
/// at the same rate means the two probes disagree.
pub const MAX_PROBE_DISAGREEMENT: f64 = 0.20;
/// Fewer latency samples than this: p99 sits close to the slowest sample.
pub const FEW_SAMPLES: usize = 100;

/// One warning: a short badge and the sentence behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub badge: &'static str,
    pub detail: String,
}

impl Note {
    fn new(badge: &'static str, detail: impl Into<String>) -> Note {
        Note {
            badge,
            detail: detail.into(),
        }
    }

    /// `badge: detail`, for text outputs.
    pub fn text(&self) -> String {
        format!("{}: {}", self.badge, self.detail)
    }
}

/// The notes of one row: its run's figures, its price and its energy.
pub fn notes(r: &Row) -> Vec<Note> {
    let run = r.run;
    let mut out = Vec::new();
    if let Some(l) = &run.latency {
        if run.spec.load != Load::Server && l.unstable {
            out.push(Note::new(
                "unstable",
                format!(
                    "iteration times vary (coefficient of variation {:.1}% > 10%): measure on a \
                     quieter machine or longer",
                    l.cv * 100.0
                ),
            ));
        }
    }
    if let Some(s) = &run.server {
        if let Some(op) = &s.operating_point {
            let wide = |a: &f64| a - op.offered_qps > MAX_BRACKET * op.offered_qps;
            if let Some(above) = s.fail_above().filter(wide) {
                out.push(Note::new(
                    "unstable",
                    format!(
                        "capacity not pinned down: the SLA held at {:.1} and failed at {:.1} \
                         requests/s, a bracket {:.0}% wide (more than {:.0}%)",
                        op.offered_qps,
                        above,
                        (above / op.offered_qps - 1.0) * 100.0,
                        MAX_BRACKET * 100.0
                    ),
                ));
            }
            if let Some(c) = &s.confirmation {
                let gap = (c.p99_ms - op.p99_ms).abs();
                if c.meets_sla && gap > MAX_PROBE_DISAGREEMENT * s.sla_p99_ms {
                    out.push(Note::new(
                        "unstable",
                        format!(
                            "the confirmation probe and the search disagree at {:.1} \
                             requests/s: p99 {:.1} ms against {:.1} ms, more than {:.0}% of \
                             the SLA apart",
                            c.offered_qps,
                            c.p99_ms,
                            op.p99_ms,
                            MAX_PROBE_DISAGREEMENT * 100.0
                        ),
                    ));
                }
            }
        }
        if let Some(c) = s.confirmation.as_ref().filter(|c| !c.meets_sla) {
            out.push(Note::new(
                "marginal operating point",
                format!(
                    "the confirmation probe at {:.1} requests/s gave p99 {:.1} ms against the \
                     {} ms SLA, though the search had passed that rate",
                    c.offered_qps, c.p99_ms, s.sla_p99_ms
                ),
            ));
        }
    }
    for n in &run.notes {
        let lower = n.to_lowercase();
        if lower.contains("went on below") {
            out.push(Note::new("marginal operating point", n.clone()));
        } else if lower.contains("fallback") || lower.contains("fell back") {
            out.push(Note::new("kernel fallback", n.clone()));
        } else if lower.contains("no operating point") {
            out.push(Note::new("no operating point", n.clone()));
        }
    }
    if let Some(share) = host_scoring_share(run).filter(|s| *s >= HOST_BOUND_SHARE) {
        let note = run.notes.iter().find(|n| n.starts_with("scoring:"));
        out.push(Note::new(
            "host-bound",
            format!(
                "{}: the host-side scoring is {share:.0}% of the time, so this GPU figure \
                 measures the host CPU more than the GPU (it scored on the host: \
                 `[recommender] scoring = \"device\"` scores where the encoder runs)",
                note.map_or("scoring", |n| n.as_str())
            ),
        ));
    }
    if let Some(l) = &run.latency {
        let stopped = run.notes.iter().find(|n| n.starts_with("stopped at max_s"));
        if let Some(n) = stopped {
            out.push(Note::new("few samples", n.clone()));
        } else if l.count < FEW_SAMPLES {
            out.push(Note::new(
                "few samples",
                format!(
                    "p99 from {} samples (fewer than {FEW_SAMPLES}): it sits close to the \
                     slowest one",
                    l.count
                ),
            ));
        }
    }
    if run.status == crate::results::Status::Ok {
        match &r.cost {
            None => out.push(Note::new("unpriced", r.mapping.detail.clone())),
            Some(c) => {
                if r.mapping.how == "explicit" {
                    out.push(Note::new(
                        "priced by the user's assertion",
                        format!(
                            "host {} is priced as {} because the user said so, not because its \
                             CPU or GPU matched",
                            r.host, c.hardware_id
                        ),
                    ));
                }
                if let Some(why) = &c.price_unsure {
                    out.push(Note::new(
                        "price unsure",
                        format!(
                            "the catalog's price for {} is flagged: {why}",
                            c.hardware_id
                        ),
                    ));
                }
                if c.power.estimated() {
                    out.push(Note::new("energy estimated", c.power.basis.clone()));
                }
            }
        }
    }
    out
}

/// A GPU run whose host-side scoring took at least this share (%) of an iteration is marked
/// `host-bound`.
pub const HOST_BOUND_SHARE: f64 = 50.0;

/// The share (%) of a GPU run's median iteration (under server load: request latency) its
/// host-side scoring took, from the run's `scoring:` note (written by the worker).
fn host_scoring_share(run: &crate::results::RunResult) -> Option<f64> {
    if !matches!(run.spec.device, crate::spec::Device::Cuda(_))
        || run.spec.scoring != crate::spec::Scoring::Host
    {
        return None;
    }
    let n = run.notes.iter().find(|n| n.starts_with("scoring:"))?;
    let (head, _) = n.split_once("%)")?;
    head.rsplit_once('(')?.1.parse().ok()
}

/// The notes as one text cell: `badge: detail; …`.
pub fn text(r: &Row) -> String {
    notes(r)
        .iter()
        .map(Note::text)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The badges that qualify a row's cost and capacity (all but `energy estimated`, which
/// qualifies its energy only), each once: what travels with a cost figure into the headline,
/// `plan` and the cost chart.
pub fn cost_caveats(r: &Row) -> Vec<&'static str> {
    let mut seen = std::collections::BTreeSet::new();
    notes(r)
        .iter()
        .map(|n| n.badge)
        .filter(|b| *b != "energy estimated" && seen.insert(*b))
        .collect()
}

/// The badges as one short text cell, each badge once: `unstable, few samples`.
pub fn badges(r: &Row) -> String {
    let mut b: Vec<&str> = notes(r).iter().map(|n| n.badge).collect();
    b.dedup();
    let mut seen = std::collections::BTreeSet::new();
    b.retain(|x| seen.insert(*x));
    b.join(", ")
}

#[cfg(test)]
mod tests {
    use crate::cost::Catalog;
    use crate::report::{load_sources, price};

    /// The H200 runs of 2026-11-30, which scored on the host: every offline MiniLM run there
    /// spent most of its iteration on host-side scoring (its `scoring:` note), and is marked
    /// so; CPU runs never are, and neither are the H200 runs of 2026-12-04, which scored on
    /// the device.
    #[test]
    fn gpu_runs_dominated_by_host_scoring_are_marked_host_bound() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let gpu = root.join(
            "results/reference/gpu/runs/2026-11-30-host-scoring/gpu-minilm/20261130T164713Z-vm.json",
        );
        let cpu = root.join("results/reference/levers/20261130T150158Z-vm.json");
        let on_device = root.join("results/reference/gpu/gpu-minilm/20261204T154829Z-vm.json");
        let device_sources = load_sources(&[on_device]).unwrap();
        let device_rows =
            price(&device_sources, &Catalog::shipped_with(None).unwrap(), &[]).unwrap();
        let mut device_ok = 0;
        for r in device_rows
            .iter()
            .filter(|r| r.run.status == crate::results::Status::Ok)
        {
            assert_eq!(r.run.spec.scoring, crate::spec::Scoring::Device);
            assert!(
                super::host_scoring_share(r.run).is_none(),
                "{}",
                r.run.spec.id
            );
            assert!(!super::notes(r).iter().any(|n| n.badge == "host-bound"));
            device_ok += 1;
        }
        assert!(device_ok >= 20, "{device_ok} device-scored runs");
        let sources = load_sources(&[gpu, cpu]).unwrap();
        let rows = price(&sources, &Catalog::shipped_with(None).unwrap(), &[]).unwrap();
        let (mut marked, mut cpu_rows) = (0, 0);
        for r in rows
            .iter()
            .filter(|r| r.run.status == crate::results::Status::Ok)
        {
            let share = super::host_scoring_share(r.run);
            let host_bound = super::notes(r).iter().any(|n| n.badge == "host-bound");
            if matches!(r.run.spec.device, crate::spec::Device::Cpu) {
                cpu_rows += 1;
                assert!(share.is_none() && !host_bound, "{}", r.run.spec.id);
            } else {
                let share = share.unwrap_or_else(|| panic!("{}: no share", r.run.spec.id));
                assert_eq!(
                    host_bound,
                    share >= super::HOST_BOUND_SHARE,
                    "{}",
                    r.run.spec.id
                );
                marked += usize::from(host_bound);
            }
        }
        assert!(cpu_rows > 0);
        assert!(
            marked >= 20,
            "all but the fastest GPU runs are host-bound: {marked}"
        );
    }

    /// A price the catalog flags UNSURE carries a `price unsure` badge with the catalog's
    /// reason; a price it does not flag carries none.
    #[test]
    fn a_price_the_catalog_doubts_is_badged_where_it_is_used() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let gpu = root.join("results/reference/gpu/gpu-minilm/20261204T154829Z-vm.json");
        let cpu = root.join("results/reference/quick/20261128T040112Z-vm.json");
        let catalog = Catalog::shipped_with(None).unwrap();
        for (file, hw, unsure) in [
            (gpu, "packetai-1x-h200-sxm", true),
            (cpu, "aws-m7i-large", false),
        ] {
            let sources = load_sources(&[file]).unwrap();
            let maps = [("vm".to_string(), hw.to_string())];
            let rows = price(&sources, &catalog, &maps).unwrap();
            let priced: Vec<_> = rows.iter().filter(|r| r.cost.is_some()).collect();
            assert!(!priced.is_empty());
            for r in priced {
                let n = super::notes(r);
                let flag = n.iter().find(|n| n.badge == "price unsure");
                assert_eq!(flag.is_some(), unsure, "{hw}: {n:?}");
                if let Some(f) = flag {
                    assert!(
                        f.detail.contains(hw) && f.detail.contains("UNSURE"),
                        "{f:?}"
                    );
                    assert!(super::cost_caveats(r).contains(&"price unsure"));
                }
            }
        }
    }

    /// The reference server results, priced as the example report prices them: the two runs
    /// whose confirmation probe missed the SLA are marked marginal, no server run is called
    /// unstable for its latency spread (44–65% CV there, which is queueing), and every priced
    /// run says it is priced by assertion and that its energy is estimated.
    #[test]
    fn server_runs_are_judged_by_their_probes_not_their_latency_spread() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let sources =
            load_sources(
                &[root.join("results/reference/server-20261128/20261128T040254Z-vm.json")],
            )
            .unwrap();
        let maps = [("vm".to_string(), "aws-m7i-large".to_string())];
        let rows = price(&sources, &Catalog::shipped_with(None).unwrap(), &maps).unwrap();
        let mut marginal = Vec::new();
        for r in &rows {
            let notes = super::notes(r);
            let badges: Vec<&str> = notes.iter().map(|n| n.badge).collect();
            assert!(
                r.run.latency.as_ref().is_some_and(|l| l.cv > 0.10),
                "the fixture's server runs all have a latency CV above 10%"
            );
            assert!(
                !notes
                    .iter()
                    .any(|n| n.badge == "unstable" && n.detail.contains("coefficient")),
                "{}: {notes:?}",
                r.run.spec.id
            );
            if badges.contains(&"marginal operating point") {
                marginal.push(r.run.spec.id.clone());
            }
            if r.cost.is_some() {
                assert!(
                    badges.contains(&"priced by the user's assertion"),
                    "{badges:?}"
                );
                assert!(badges.contains(&"energy estimated"), "{badges:?}");
            }
        }
        marginal.sort();
        marginal.dedup();
        assert_eq!(
            marginal,
            [
                "onnx/cpu/fp32/minilm-l6/two-tower/server/b4/s64/t2/d5/i1",
                "torch/cpu/fp32/minilm-l6/two-tower/server/b4/s64/t2/d5/i1"
            ]
        );
    }
}
