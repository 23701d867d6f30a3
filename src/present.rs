//! What the command line prints: every terminal table and listing, rendered to a string so the
//! binary only parses arguments, calls the library and writes the result.

use std::fmt::Write;
use std::path::Path;

use crate::backend::BackendInfo;
use crate::cost::PlanGroup;
use crate::harness::parity::ParityRow;
use crate::model::Preset;
use crate::recommender::Item;
use crate::report::columns::{column, text_table};
use crate::results::{ResultsFile, Status};
use crate::scenario::{PlannedRun, Scenario};
use crate::spec::{BackendKind, Precision};
use crate::telemetry::Inventory;

/// The columns of the terminal table of a sweep.
const SWEEP_COLUMNS: [&str; 22] = [
    "status",
    "backend",
    "device",
    "precision",
    "model",
    "prune",
    "mode",
    "load",
    "batch",
    "seq_len",
    "threads",
    "p50_ms",
    "p99_ms",
    "requests_per_s",
    "sequences_per_s",
    "achieved_gflops",
    "efficiency",
    "parity_min_cosine",
    "quality_top10_overlap",
    "peak_rss_bytes",
    "cold_start_s",
    "warnings",
];

/// `recbench run`: one line per run that ran, then the failed and invalid runs with their
/// cause, then the skipped runs counted by reason.
pub fn sweep(file: &ResultsFile) -> String {
    // A retrieval sweep's runs differ by their search: its settings and figures are shown.
    let mut keys = SWEEP_COLUMNS.to_vec();
    if file.runs.iter().any(|r| r.spec.retrieval.is_some()) {
        let at = keys
            .iter()
            .position(|k| *k == "threads")
            .map_or(keys.len(), |i| i + 1);
        let search = [
            "catalog_items",
            "retrieval",
            "recall_at_10",
            "encode_p50_ms",
            "search_p50_ms",
        ];
        keys.splice(at..at, search);
    }
    let cols: Vec<_> = keys.iter().map(|k| column(k)).collect();
    let head: Vec<(&str, bool)> = cols.iter().map(|c| (c.title, c.numeric)).collect();
    let rows: Vec<Vec<String>> = file
        .runs
        .iter()
        .filter(|r| r.status != Status::Skipped)
        .map(|r| cols.iter().map(|c| c.of(r).display("-")).collect())
        .collect();
    let mut out = text_table(&head, &rows);
    for r in file
        .runs
        .iter()
        .filter(|r| matches!(r.status, Status::Failed | Status::Invalid))
    {
        let _ = writeln!(
            out,
            "{} {}: {}",
            r.status.name(),
            r.spec.id,
            r.reason.as_deref().unwrap_or("")
        );
    }
    let mut skipped: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in file.runs.iter().filter(|r| r.status == Status::Skipped) {
        *skipped
            .entry(r.reason.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    for (reason, n) in skipped {
        let _ = writeln!(out, "skipped {n} run(s): {reason}");
    }
    out
}

/// `recbench validate`: the verdict and every planned run, skipped ones with their reason.
pub fn validation(path: &Path, sc: &Scenario, runs: &[PlannedRun]) -> String {
    let mut s = String::new();
    let skipped = runs.iter().filter(|r| r.skip.is_some()).count();
    let _ = writeln!(
        s,
        "{}: ok; scenario {:?} expands to {} runs ({} to run, {} skipped)",
        path.display(),
        sc.name,
        runs.len(),
        runs.len() - skipped,
        skipped
    );
    let worst: f64 = runs
        .iter()
        .filter(|r| r.skip.is_none())
        .map(|r| r.spec.worst_case_s())
        .sum();
    let _ = writeln!(
        s,
        "worst case {} of measurement for the {} runs to run (warm-up + max_s each; a \
         server-load run up to {} probes), plus loading each model and its parity check",
        crate::harness::progress::human(std::time::Duration::from_secs_f64(worst)),
        runs.len() - skipped,
        crate::spec::SERVER_PROBES + 1
    );
    for r in runs {
        let _ = match &r.skip {
            None => writeln!(s, "  run   {}", r.spec.id),
            Some(why) => writeln!(s, "  skip  {}: {why}", r.spec.id),
        };
    }
    s
}

/// `recbench plan`: per (model, mode), each hardware option's best configuration, cheapest
/// first (measured operating points before offline upper bounds), then the exclusions.
pub fn plan(groups: &[PlanGroup], qps: f64, p99_ms: f64, headroom: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Serving {qps} requests/s with p99 <= {p99_ms} ms and {:.0}% headroom:",
        headroom * 100.0
    );
    for g in groups {
        let _ = writeln!(s, "\n{}\n  {}", g.group, g.verdict);
        if !g.options.is_empty() {
            let _ = writeln!(
                s,
                "  {:<22} {:<12} {:>10} {:>11} {:>8} {:>9} {:>12}  {:<36} run",
                "hardware",
                "basis",
                "$/1M req",
                "req/s/mach",
                "p99 ms",
                "machines",
                "USD/month",
                "evidence"
            );
        }
        for o in &g.options {
            let _ = writeln!(
                s,
                "  {:<22} {:<12} {:>10} {:>11.1} {:>8.2} {:>9} {:>12}  {:<36} {}",
                o.hardware_id,
                o.basis,
                crate::cost::usd_per_1m(o.cost_per_1k_usd),
                o.capacity_per_instance_qps,
                o.p99_ms,
                o.instances,
                crate::cost::usd(o.monthly_usd),
                o.evidence,
                o.run_id
            );
            if !o.caveats.is_empty() {
                let _ = writeln!(s, "  {:<22} caveats: {}", "", o.caveats.join(", "));
            }
        }
        for (id, why) in &g.excluded {
            let _ = writeln!(s, "  excluded {id}: {why}");
        }
    }
    s
}

/// `recbench plan --diurnal/--trace`: each option's fleet over the trace, autoscaled and sized
/// for the peak.
pub fn day(
    groups: &[crate::cost::day::DayGroup],
    trace: &crate::cost::day::Trace,
    s: &crate::cost::day::DaySettings,
    p99_ms: f64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "At p99 <= {p99_ms} ms. {}",
        crate::cost::day::describe(trace, s)
    );
    for g in groups {
        let _ = writeln!(out, "\n{}", g.group);
        if g.options.is_empty() {
            let _ = writeln!(out, "  no option meets the budget at the trace's peak");
            continue;
        }
        let _ = writeln!(
            out,
            "  {:<22} {:>5} {:>6} {:>26} {:>12} {:>9} {:>8}  {:<24}  evidence",
            "hardware",
            "peak",
            "mean",
            "USD/day [interval]",
            "USD/month",
            "$/1M req",
            "SLA-min",
            "sized for the peak"
        );
        for o in &g.options {
            let interval = o.usd_per_day_interval.map_or(String::new(), |(lo, hi)| {
                format!(" [{}–{}]", crate::cost::usd(lo), crate::cost::usd(hi))
            });
            let _ = writeln!(
                out,
                "  {:<22} {:>5} {:>6.1} {:>26} {:>12} {:>9} {:>8.1}  {:<24}  {}{}",
                o.hardware_id,
                o.autoscaled.peak_instances,
                o.autoscaled.mean_instances,
                format!("{}{interval}", crate::cost::usd(o.usd_per_day)),
                crate::cost::usd(o.usd_per_month),
                crate::cost::usd_per_1m(o.cost_per_1k_usd),
                o.autoscaled.seconds_over_sla / 60.0,
                format!(
                    "{} × all day, {}/day",
                    o.static_peak.peak_instances,
                    crate::cost::usd(o.static_usd_per_day)
                ),
                o.evidence,
                if o.upper_bound {
                    " (listed apart: an offline peak is an upper bound)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                out,
                "  {:<22} cold start {:.1} s: {}",
                "",
                o.cold_start_s,
                match o.process_start_s {
                    Some(p) => format!("{p:.1} s measured process start + the machine's"),
                    None =>
                        "the machine's only (its results predate cold-start measurement)".into(),
                }
            );
            if !o.caveats.is_empty() {
                let _ = writeln!(out, "  {:<22} caveats: {}", "", o.caveats.join(", "));
            }
        }
        if let Some(tie) = crate::cost::day::tie(&g.options) {
            let _ = writeln!(out, "  {tie}");
        }
    }
    out
}

/// `recbench parity`: one line per (model, backend, device, precision).
pub fn parity(rows: &[ParityRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:<7} {:<6} {:<5} {:>12} {:>10} {:>10} {:>8}  verdict",
        "model", "backend", "device", "prec", "max|diff|", "min cos", "mean cos", "top10"
    );
    for r in rows {
        let head = format!(
            "{:<10} {:<7} {:<6} {:<5}",
            r.model.name(),
            r.backend.name(),
            r.device.to_string(),
            r.precision.name()
        );
        let _ = match (&r.parity, &r.error) {
            (Some(p), _) => writeln!(
                s,
                "{head} {:>12.3e} {:>10.6} {:>10.6} {:>8.2}  {} ({})",
                p.max_abs_diff,
                p.min_cosine,
                p.mean_cosine,
                p.top10_overlap,
                if p.passed { "pass" } else { "FAIL" },
                p.tolerance
            ),
            (None, e) => writeln!(s, "{head} not checked: {}", e.as_deref().unwrap_or("")),
        };
    }
    s
}

/// The one-line count of a parity check, for stderr.
pub fn parity_counts(rows: &[ParityRow]) -> String {
    let checked = rows.iter().filter(|r| r.parity.is_some()).count();
    let failed = rows
        .iter()
        .filter(|r| r.parity.as_ref().is_some_and(|p| !p.passed))
        .count();
    format!(
        "parity: {checked} checked, {failed} failed, {} not checked (the reason is on its line)",
        rows.len() - checked
    )
}

/// `recbench backends`: one line per backend.
pub fn backends(inv: &[BackendInfo]) -> String {
    let mut s = String::new();
    for b in inv {
        let p: Vec<&str> = b.precisions.iter().map(|p| p.name()).collect();
        let _ = writeln!(
            s,
            "{:<7} {:<9} runtime {:<18} devices [{}] precisions [{}] {}",
            b.backend.name(),
            if b.compiled { "compiled" } else { "disabled" },
            b.runtime_version,
            b.devices.join(", "),
            p.join(", "),
            b.note
        );
        let _ = writeln!(s, "        cuda: {}", b.cuda);
    }
    s
}

/// `recbench recommend`: the ranked items.
pub fn recommendations(
    user: &str,
    best: &[(usize, f32)],
    items: &[Item],
    (preset, kind, precision): (Preset, BackendKind, Precision),
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Top {} for {:?} ({} on {}, {}):",
        best.len(),
        user,
        preset,
        kind,
        precision
    );
    for (rank, (i, score)) in best.iter().enumerate() {
        let it = &items[*i];
        let _ = writeln!(
            s,
            "{:>3}. {:.3}  [{}] {} — {}",
            rank + 1,
            score,
            it.kind,
            it.title,
            it.description
        );
    }
    s
}

/// `recbench hardware`: what this machine has.
pub fn inventory(inv: &Inventory) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    let gib = |b: Option<u64>| {
        b.map_or("unknown".into(), |b| {
            format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
        })
    };
    let mut s = String::new();
    let _ = writeln!(s, "host            {}", inv.host);
    let _ = writeln!(s, "cpu             {}", opt(&inv.cpu_model));
    if let Some(sig) = &inv.cpu_signature {
        let _ = writeln!(s, "cpu signature   {sig}");
    }
    let _ = writeln!(s, "architecture    {}", inv.architecture);
    let _ = writeln!(
        s,
        "cores           {} logical, {} physical, {} socket(s)",
        inv.logical_cores,
        inv.physical_cores
            .map_or("unknown".into(), |c| c.to_string()),
        inv.sockets.map_or("unknown".into(), |c| c.to_string())
    );
    let _ = writeln!(s, "cpu flags       {}", inv.cpu_flags.join(" "));
    let _ = writeln!(
        s,
        "caches          L2 {}  L3 {}",
        inv.l2_cache_bytes
            .map_or("unknown".into(), |b| format!("{} KiB", b / 1024)),
        inv.l3_cache_bytes
            .map_or("unknown".into(), |b| format!("{} MiB", b / (1 << 20)))
    );
    let _ = writeln!(s, "memory          {}", gib(inv.memory_bytes));
    let _ = writeln!(s, "os              {}", opt(&inv.os));
    let _ = writeln!(s, "kernel          {}", opt(&inv.kernel));
    let _ = writeln!(s, "virtualization  {}", opt(&inv.virtualization));
    if inv.gpus.is_empty() {
        let _ = writeln!(s, "gpus            none found ({})", inv.gpu_probe);
    }
    for g in &inv.gpus {
        let _ = writeln!(
            s,
            "gpu {}           {} {}",
            g.index,
            g.name,
            gib(g.memory_bytes)
        );
        let _ = writeln!(
            s,
            "  peak          {}",
            crate::telemetry::gpu_peaks::of(&g.name).map_or(
                "not in recbench's table: GPU runs here get no efficiency".into(),
                |p| format!(
                    "fp16/bf16 {:.0} TFLOP/s dense, fp32 {:.1} TFLOP/s, memory {:.2} TB/s ({})",
                    p.half_tflops, p.fp32_tflops, p.memory_tb_s, p.source
                )
            )
        );
    }
    let _ = writeln!(
        s,
        "power sensors   {}",
        if inv.power_sensors.is_empty() {
            "none readable".to_string()
        } else {
            inv.power_sensors.join(", ")
        }
    );
    let _ = writeln!(s, "power estimate  {}", inv.power_estimate);
    let peak = crate::telemetry::inventory::fp32_peak();
    let _ = writeln!(
        s,
        "fp32 peak       {} (theoretical: {}); runs' efficiency is against the best GEMM \
         measured, not this",
        peak.gflops
            .map_or("unknown".into(), |g| format!("{g:.0} GFLOP/s")),
        peak.basis
    );
    s
}
