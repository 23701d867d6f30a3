//! `runs.csv`: one row per run, every figure, for spreadsheets.

use super::{Row, Source};

fn field(s: &str) -> String {
    // Quote every field that could confuse a spreadsheet, and neutralise formula injection.
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn num(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite())
        .map_or(String::new(), |v| format!("{v}"))
}

pub fn runs_csv(rows: &[Row], sources: &[Source]) -> String {
    let header = [
        "results_file",
        "host",
        "run_id",
        "status",
        "reason",
        "backend",
        "device",
        "precision",
        "model",
        "mode",
        "load",
        "batch",
        "seq_len",
        "threads",
        "candidates",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
        "mean_ms",
        "std_ms",
        "cv",
        "samples",
        "requests_per_s",
        "sequences_per_s",
        "tokens_per_s",
        "achieved_gflops",
        "efficiency",
        "peak_rss_bytes",
        "power_watts",
        "power_source",
        "energy_per_1k_joules",
        "parity_max_abs_diff",
        "parity_min_cosine",
        "parity_top10_overlap",
        "parity_passed",
        "operating_point_qps",
        "operating_point_p99_ms",
        "sla_p99_ms",
        "hardware_id",
        "mapping",
        "rate_basis",
        "cost_basis",
        "hourly_usd",
        "cost_per_1k_usd",
        "cost_ci_low_usd",
        "cost_ci_high_usd",
    ];
    let mut out = header.join(",") + "\n";
    for r in rows {
        let run = r.run;
        let s = &run.spec;
        let l = run.latency.as_ref();
        let t = run.throughput.as_ref();
        let p = run.parity.as_ref();
        let op = run.server.as_ref().and_then(|x| x.operating_point.as_ref());
        let base = vec![
            field(&sources[r.source].path.display().to_string()),
            field(&r.host),
            field(&s.id),
            run.status.name().into(),
            field(run.reason.as_deref().unwrap_or("")),
            s.backend.to_string(),
            s.device.to_string(),
            s.precision.to_string(),
            s.model.to_string(),
            s.mode.name().into(),
            s.load.name().into(),
            s.batch.to_string(),
            s.seq_len.to_string(),
            s.threads.to_string(),
            s.candidates.to_string(),
            num(l.map(|l| l.p50_ms)),
            num(l.map(|l| l.p90_ms)),
            num(l.map(|l| l.p95_ms)),
            num(l.map(|l| l.p99_ms)),
            num(l.map(|l| l.p999_ms)),
            num(l.map(|l| l.mean_ms)),
            num(l.map(|l| l.std_ms)),
            num(l.map(|l| l.cv)),
            l.map_or(String::new(), |l| l.count.to_string()),
            num(t.map(|t| t.requests_per_s)),
            num(t.map(|t| t.sequences_per_s)),
            num(t.map(|t| t.tokens_per_s)),
            num(run.compute.as_ref().map(|c| c.achieved_gflops)),
            num(run.compute.as_ref().and_then(|c| c.efficiency)),
            run.memory
                .peak_rss_bytes
                .map_or(String::new(), |b| b.to_string()),
            num(run.power.watts),
            field(&run.power.source),
            num(r.cost.as_ref().and_then(|c| c.energy_per_1k_joules)),
            num(p.map(|p| p.max_abs_diff)),
            num(p.map(|p| p.min_cosine)),
            num(p.map(|p| p.top10_overlap)),
            p.map_or(String::new(), |p| p.passed.to_string()),
            num(op.map(|o| o.offered_qps)),
            num(op.map(|o| o.p99_ms)),
            num(Some(s.sla_p99_ms)),
            field(r.mapping.hardware_id.as_deref().unwrap_or("")),
            field(&format!("{}: {}", r.mapping.how, r.mapping.detail)),
        ];
        match &r.cost {
            Some(c) if !c.figures.is_empty() => {
                for f in &c.figures {
                    let mut row = base.clone();
                    row.extend([
                        field(&format!("{:?}", c.rate_basis)),
                        field(&f.basis),
                        num(Some(f.hourly_usd)),
                        num(Some(f.cost_per_1k_usd)),
                        num(Some(f.ci_low_usd)),
                        num(Some(f.ci_high_usd)),
                    ]);
                    out.push_str(&(row.join(",") + "\n"));
                }
            }
            _ => {
                let mut row = base;
                row.extend(std::iter::repeat_n(String::new(), 6));
                out.push_str(&(row.join(",") + "\n"));
            }
        }
    }
    out
}
