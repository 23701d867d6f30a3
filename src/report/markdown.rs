//! `summary.md`: the recommendation and a compact table, for CI step summaries.

use super::columns::cells;
use super::{fmt_opt, recommendation, Row, Source};
use crate::results::Status;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn summary(rows: &[Row], sources: &[Source]) -> String {
    let mut out = String::from("# recbench report\n\n");
    for s in sources {
        let inv = &s.file.environment.inventory;
        out.push_str(&format!(
            "- `{}` — host {}, {} ({} logical cores), scenario {}, recbench {} ({})\n",
            cell(&s.path.display().to_string()),
            cell(&inv.host),
            cell(inv.cpu_model.as_deref().unwrap_or("unknown CPU")),
            inv.logical_cores,
            cell(&s.file.scenario.name),
            cell(&s.file.environment.recbench_version),
            cell(&s.file.environment.git_commit)
        ));
    }
    for d in super::inconsistencies(sources) {
        out.push_str(&format!("- **Not one sweep:** {}\n", cell(&d)));
    }
    out.push_str("\n## Recommendation\n\n");
    let groups = recommendation(rows);
    if groups.is_empty() {
        out.push_str("No priced configuration meets its latency budget and the quality bar.\n");
    }
    for (title, rec) in &groups {
        out.push_str(&format!("### {}\n\n", cell(title)));
        for (i, r) in rec.iter().enumerate() {
            let f = r.headline().unwrap();
            out.push_str(&format!(
                "{}. **{}** — ${:.6} per 1k requests ({}; 95% CI {:.6}–{:.6}), p99 {} ms ≤ SLA {} ms, {:.1} req/s ({})\n",
                i + 1,
                cell(&r.label()),
                f.cost_per_1k_usd,
                f.basis,
                f.ci_low_usd,
                f.ci_high_usd,
                fmt_opt(r.p99_ms(), 2),
                r.sla_ms(),
                r.cost.as_ref().unwrap().requests_per_s,
                r.cost.as_ref().unwrap().rate_basis.name()
            ));
        }
        out.push('\n');
    }
    out.push_str("\n## Runs\n\n| status | configuration | p50 ms | p99 ms | req/s | $/1k (basis) | parity cos | warnings |\n|---|---|---:|---:|---:|---:|---:|---|\n");
    for r in rows.iter().filter(|r| r.run.status != Status::Skipped) {
        let c = cells(
            r.run,
            &[
                "status",
                "p50_ms",
                "p99_ms",
                "parity_min_cosine",
                "warnings",
            ],
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
                "{:.6} ({})",
                f.cost_per_1k_usd, f.basis
            )),
            c[3],
            cell(&c[4]),
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
