//! `summary.md`: the recommendation and a compact table, for CI step summaries.

use std::fmt::Write;

use super::columns::cells;
use super::{fmt_opt, Model};
use crate::results::Status;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn summary(m: &Model) -> String {
    let (rows, sources, req) = (m.rows, m.sources, m.req);
    let mut out = String::from("# recbench report\n\n");
    // The answer first: one sentence per model and request shape.
    for d in &m.decisions {
        out.push_str(&format!(
            "- **{}**: {}\n",
            cell(&d.title()),
            cell(&d.answer())
        ));
    }
    out.push('\n');
    let machines = super::machines(sources);
    out.push_str(&format!(
        "Measured on {} machine{}:\n\n",
        machines.len(),
        if machines.len() == 1 { "" } else { "s" }
    ));
    for m in &machines {
        out.push_str(&format!(
            "- **{}**: {}\n",
            cell(&m.label),
            cell(&m.summary())
        ));
    }
    out.push('\n');
    for (s, label) in sources.iter().zip(super::machine_labels(sources)) {
        let inv = &s.file.environment.inventory;
        out.push_str(&format!(
            "- `{}` — host {}, {} ({} logical cores), scenario {}, recbench {} ({})\n",
            cell(&s.path.display().to_string()),
            cell(&label),
            cell(inv.cpu_model.as_deref().unwrap_or("unknown CPU")),
            inv.logical_cores,
            cell(&s.file.scenario.name),
            cell(&s.file.environment.recbench_version),
            cell(&s.file.environment.git_commit)
        ));
    }
    for d in &m.inconsistencies {
        out.push_str(&format!("- **Not one sweep:** {}\n", cell(d)));
    }
    out.push_str(&format!(
        "\n## Which hardware, at {}, on the {} price\n\n",
        req.p99_ms
            .map_or("each run's own SLA".to_string(), |p| format!(
                "p99 ≤ {p} ms"
            )),
        req.basis
    ));
    for d in &m.decisions {
        out.push_str(&format!("### {}\n\n", cell(&d.title())));
        out.push_str(&format!("{}\n\n", d.verdict()));
        if !d.options.is_empty() {
            out.push_str("| | hardware | configuration | $ per 1M req | capacity per machine, req/s | evidence | p99 ms | machines | USD/month | energy per 1k | notes |\n|---|---|---|---:|---:|---|---:|---:|---:|---:|---|\n");
            for (i, o) in d.options.iter().enumerate() {
                let s = &o.row.run.spec;
                out.push_str(&format!(
                    "| {} | {} ({}) | {} {} batch {}, {} replica(s) per machine | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} |\n",
                    if i == 0 { "**cheapest**" } else { "" },
                    cell(&o.hardware),
                    if o.gpu { "GPU" } else { "CPU" },
                    s.backend,
                    s.precision,
                    s.batch,
                    s.instances,
                    crate::cost::usd_per_1m(o.cost_per_1k_usd),
                    o.capacity_qps,
                    o.evidence.words(),
                    o.p99_ms,
                    o.instances.map_or("—".into(), |n| n.to_string()),
                    o.monthly_usd.map_or("—".into(), crate::cost::usd),
                    match (o.energy_per_1k_joules, &o.row.cost) {
                        (Some(j), Some(c)) => format!("{j:.1} J ({})", c.power.covers),
                        _ => "—".into(),
                    },
                    cell(&super::notes::badges(o.row)),
                ));
            }
            out.push('\n');
            for o in &d.options {
                for n in super::notes::notes(o.row) {
                    out.push_str(&format!(
                        "- note on {}: **{}**, {}\n",
                        cell(&o.hardware),
                        n.badge,
                        cell(&n.detail)
                    ));
                }
            }
            out.push('\n');
        }
        for (r, why) in &d.excluded {
            out.push_str(&format!(
                "- excluded `{}`: {}\n",
                cell(&r.run.spec.id),
                cell(why)
            ));
        }
        out.push('\n');
    }
    if let Some(day) = &m.day {
        day_section(&mut out, m, day);
    }
    out.push_str("\n## Runs\n\n| status | configuration | p50 ms | p99 ms | req/s | $ per 1M req (basis) | parity cos | notes |\n|---|---|---:|---:|---:|---:|---:|---|\n");
    for r in rows.iter().filter(|r| r.run.status != Status::Skipped) {
        let c = cells(
            r.run,
            &["status", "p50_ms", "p99_ms", "parity_min_cosine"],
            "—",
        );
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c[0],
            cell(&r.label()),
            c[1],
            c[2],
            fmt_opt(r.requests_per_s(), 1),
            r.headline().map_or("unpriced".into(), |f| format!(
                "{} ({})",
                crate::cost::usd_per_1m(f.cost_per_1k_usd),
                f.basis
            )),
            c[3],
            cell(&super::notes::badges(r)),
        ));
    }
    let skipped = rows
        .iter()
        .filter(|r| r.run.status == Status::Skipped)
        .count();
    if skipped > 0 {
        out.push_str(&format!(
            "\n{skipped} run(s) skipped; reasons in index.html and runs.csv.\n"
        ));
    }
    out
}

/// The section "Over a day" ([`super::day`]).
fn day_section(out: &mut String, m: &Model, day: &super::DayPlan) {
    let _ = writeln!(
        out,
        "\n## Over a day\n\n{}\n",
        cell(&crate::cost::day::describe(day.trace, &day.settings))
    );
    for g in &day.groups {
        let _ = writeln!(
            out,
            "### {}\n\n{}\n",
            cell(&g.group),
            cell(&super::day::verdict(g, m))
        );
        if g.options.is_empty() {
            continue;
        }
        let _ = writeln!(out, "| {} |", super::day::HEAD.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(super::day::HEAD.len()));
        for o in &g.options {
            let row: Vec<String> = super::day::cells(o).iter().map(|c| cell(c)).collect();
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
}
