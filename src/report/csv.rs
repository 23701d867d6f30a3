//! `runs.csv`: one row per run, every figure, for spreadsheets.

use super::columns::COLUMNS;
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

fn run_columns() -> impl Iterator<Item = &'static super::columns::Column> {
    COLUMNS.iter().filter(|c| c.key != "warnings")
}

fn num(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite())
        .map_or(String::new(), |v| format!("{v}"))
}

/// The columns after the run's own (see [`COLUMNS`]): what the cost model adds.
const PRICED: [&str; 13] = [
    "notes",
    "energy_per_1k_joules",
    "energy_source",
    "energy_covers",
    "energy_basis",
    "hardware_id",
    "mapping",
    "rate_basis",
    "cost_basis",
    "hourly_usd",
    "cost_per_1k_usd",
    "cost_ci_low_usd",
    "cost_ci_high_usd",
];

/// One line per run and price basis (one line for an unpriced run): the results file, the
/// host, every run column (the run's own `warnings` give way to `notes`, which add what the
/// price and the energy need said), then the priced columns.
pub fn runs_csv(rows: &[Row], sources: &[Source]) -> String {
    let header: Vec<&str> = ["results_file", "host"]
        .into_iter()
        .chain(run_columns().map(|c| c.key))
        .chain(PRICED)
        .collect();
    let mut out = header.join(",") + "\n";
    for r in rows {
        let mut base: Vec<String> = vec![
            field(&sources[r.source].path.display().to_string()),
            field(&r.host),
        ];
        base.extend(run_columns().map(|c| field(&c.of(r.run).raw())));
        base.extend([
            field(&super::notes::text(r)),
            num(r.cost.as_ref().and_then(|c| c.energy_per_1k_joules)),
            field(r.cost.as_ref().map_or("", |c| c.power.label.as_str())),
            field(r.cost.as_ref().map_or("", |c| c.power.covers.as_str())),
            field(r.cost.as_ref().map_or("", |c| c.power.basis.as_str())),
            field(r.mapping.hardware_id.as_deref().unwrap_or("")),
            field(&format!("{}: {}", r.mapping.how, r.mapping.detail)),
        ]);
        match &r.cost {
            Some(c) if !c.figures.is_empty() => {
                for f in &c.figures {
                    let mut row = base.clone();
                    row.extend([
                        c.rate_basis.name().to_string(),
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
