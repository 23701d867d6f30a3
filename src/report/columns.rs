//! The run-row model: every field that describes a run (its spec, its figures, its warnings) is
//! listed here once, with a key (the `runs.csv` header), a title (the terminal, Markdown and HTML
//! header) and how to read it from a [`RunResult`]. The terminal table, `runs.csv`, `summary.md`
//! and the HTML tables pick columns from [`COLUMNS`] by key; none spells a field itself. The
//! priced columns (hardware, basis, $/1k) come from the cost model and are added by the reports.

use crate::results::RunResult;
use crate::spec::RunSpec;

/// A cell's value, formatted for people ([`Value::display`]) or machines ([`Value::raw`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    /// A number shown with this many decimals.
    Num(Option<f64>, usize),
    /// A fraction shown as a whole percentage.
    Percent(Option<f64>),
    Count(Option<u64>),
    /// Bytes, shown in whole MiB.
    Bytes(Option<u64>),
}

impl Value {
    /// For people: fixed decimals, `missing` where there is no value.
    pub fn display(&self, missing: &str) -> String {
        let finite = |x: &Option<f64>| x.filter(|v| v.is_finite());
        match self {
            Value::Text(s) => s.clone(),
            Value::Num(x, d) => finite(x).map_or(missing.into(), |v| format!("{v:.d$}")),
            Value::Percent(x) => finite(x).map_or(missing.into(), |v| format!("{:.0}%", v * 100.0)),
            Value::Count(n) => n.map_or(missing.into(), |n| n.to_string()),
            Value::Bytes(b) => {
                b.map_or(missing.into(), |b| format!("{:.0}", b as f64 / 1_048_576.0))
            }
        }
    }

    /// For machines: full precision and base units, empty where there is no value.
    pub fn raw(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Num(x, _) | Value::Percent(x) => x
                .filter(|v| v.is_finite())
                .map_or(String::new(), |v| format!("{v}")),
            Value::Count(n) | Value::Bytes(n) => n.map_or(String::new(), |n| n.to_string()),
        }
    }
}

/// One field of a run row.
pub struct Column {
    /// Machine name: the `runs.csv` header.
    pub key: &'static str,
    /// Human header (units included).
    pub title: &'static str,
    /// Right-aligned in tables.
    pub numeric: bool,
    pub value: fn(&RunResult) -> Value,
}

impl Column {
    pub fn of(&self, run: &RunResult) -> Value {
        (self.value)(run)
    }
}

macro_rules! col {
    ($key:literal, $title:literal, text, |$r:ident| $e:expr) => {
        Column {
            key: $key,
            title: $title,
            numeric: false,
            value: |$r: &RunResult| Value::Text($e),
        }
    };
    ($key:literal, $title:literal, $kind:ident $(($d:literal))?, |$r:ident| $e:expr) => {
        Column {
            key: $key,
            title: $title,
            numeric: true,
            value: |$r: &RunResult| Value::$kind($e $(, $d)?),
        }
    };
}

fn count(n: usize) -> Option<u64> {
    Some(n as u64)
}

/// Every field of a run row, in `runs.csv` order.
pub static COLUMNS: &[Column] = &[
    col!("run_id", "run", text, |r| r.spec.id.clone()),
    col!("status", "status", text, |r| r.status.name().into()),
    col!("reason", "reason", text, |r| r
        .reason
        .clone()
        .unwrap_or_default()),
    col!("backend", "backend", text, |r| r.spec.backend.to_string()),
    col!("device", "device", text, |r| r.spec.device.to_string()),
    col!("precision", "prec", text, |r| r.spec.precision.to_string()),
    col!("model", "model", text, |r| r.spec.model.to_string()),
    col!("prune", "prune", text, |r| r.spec.prune.to_string()),
    col!("mode", "mode", text, |r| r.spec.mode.name().into()),
    col!("load", "load", text, |r| r.spec.load.name().into()),
    col!("batch", "batch", Count, |r| count(r.spec.batch)),
    col!("seq_len", "seq", Count, |r| count(r.spec.seq_len)),
    col!("threads", "thr", Count, |r| count(r.spec.threads)),
    col!("candidates", "cand", Count, |r| count(r.spec.candidates)),
    col!("p50_ms", "p50 ms", Num(2), |r| r
        .latency
        .as_ref()
        .map(|l| l.p50_ms)),
    col!("p90_ms", "p90 ms", Num(2), |r| r
        .latency
        .as_ref()
        .map(|l| l.p90_ms)),
    col!("p95_ms", "p95 ms", Num(2), |r| r
        .latency
        .as_ref()
        .map(|l| l.p95_ms)),
    col!("p99_ms", "p99 ms", Num(2), |r| r
        .latency
        .as_ref()
        .map(|l| l.p99_ms)),
    col!("p999_ms", "p99.9 ms", Num(2), |r| r
        .latency
        .as_ref()
        .map(|l| l.p999_ms)),
    col!("mean_ms", "mean ms", Num(2), |r| r
        .latency
        .as_ref()
        .map(|l| l.mean_ms)),
    col!("std_ms", "std ms", Num(2), |r| r
        .latency
        .as_ref()
        .map(|l| l.std_ms)),
    col!("cv", "CV", Percent, |r| r.latency.as_ref().map(|l| l.cv)),
    col!("samples", "samples", Count, |r| r
        .latency
        .as_ref()
        .map(|l| l.count as u64)),
    col!("requests_per_s", "req/s", Num(1), |r| r
        .throughput
        .as_ref()
        .map(|t| t.requests_per_s)),
    col!("sequences_per_s", "seq/s", Num(1), |r| r
        .throughput
        .as_ref()
        .map(|t| t.sequences_per_s)),
    col!("tokens_per_s", "tok/s", Num(0), |r| r
        .throughput
        .as_ref()
        .map(|t| t.tokens_per_s)),
    col!("achieved_gflops", "GFLOP/s", Num(1), |r| r
        .compute
        .as_ref()
        .map(|c| c.achieved_gflops)),
    // Recomputed from the run's achieved GFLOP/s and the GEMM ceiling measured on its own
    // host (recorded with the run), capped at 100%: files written before the cap stored
    // efficiencies above it (an MLAS kernel beating every GEMM the ceiling measured).
    col!("efficiency", "eff", Percent, |r| r
        .compute
        .as_ref()
        .and_then(|c| crate::results::Compute::efficiency(
            c.achieved_gflops,
            c.gemm_ceiling_gflops
        )
        .0)),
    col!("peak_rss_bytes", "RSS MiB", Bytes, |r| r
        .memory
        .peak_rss_bytes),
    col!("cold_start_s", "cold s", Num(2), |r| r
        .cold_start
        .as_ref()
        .map(|c| c.total_s)),
    col!("power_watts", "power W", Num(1), |r| r.power.watts),
    col!("power_source", "power source", text, |r| r
        .power
        .source
        .clone()),
    col!("parity_max_abs_diff", "max|diff|", Num(7), |r| r
        .parity
        .as_ref()
        .map(|p| p.max_abs_diff)),
    col!("parity_min_cosine", "cos", Num(5), |r| r
        .parity
        .as_ref()
        .map(|p| p.min_cosine)),
    col!("parity_top10_overlap", "top10", Num(2), |r| r
        .parity
        .as_ref()
        .map(|p| p.top10_overlap)),
    col!("catalog_items", "items", Count, |r| (r.spec.mode
        == crate::spec::Mode::TwoTower)
        .then_some(r.spec.catalog_items as u64)),
    col!("retrieval", "search", text, |r| r.spec.retrieval.map_or(
        String::new(),
        |x| format!("{} {}", x.item_precision, x.index)
    )),
    col!("recall_at_10", "recall", Num(3), |r| r
        .retrieval
        .as_ref()
        .map(|x| x.recall_at_k)),
    col!("encode_p50_ms", "enc ms", Num(2), |r| r
        .retrieval
        .as_ref()
        .and_then(|x| x.encode_ms)
        .map(|x| x.p50_ms)),
    col!("search_p50_ms", "search ms", Num(2), |r| r
        .retrieval
        .as_ref()
        .and_then(|x| x.search_ms)
        .map(|x| x.p50_ms)),
    col!("quality_top10_overlap", "q top10", Num(2), |r| r
        .quality
        .as_ref()
        .map(|q| q.top10_overlap)),
    col!("quality_mean_cosine", "q cos", Num(4), |r| r
        .quality
        .as_ref()
        .map(|q| q.mean_cosine)),
    col!("quality_rank_correlation", "q rank", Num(4), |r| r
        .quality
        .as_ref()
        .map(|q| q.score_rank_correlation)),
    col!("parity_passed", "parity", text, |r| r
        .parity
        .as_ref()
        .map_or(String::new(), |p| p.passed.to_string())),
    col!("operating_point_qps", "op. QPS", Num(1), |r| r
        .server
        .as_ref()
        .and_then(|s| s.operating_point.as_ref())
        .map(|o| o.offered_qps)),
    col!("operating_point_p99_ms", "op. p99 ms", Num(2), |r| r
        .server
        .as_ref()
        .and_then(|s| s.operating_point.as_ref())
        .map(|o| o.p99_ms)),
    col!("sla_p99_ms", "SLA ms", Num(1), |r| Some(r.spec.sla_p99_ms)),
    col!("warnings", "warnings", text, |r| warnings(r).join("; ")),
];

/// The column called `key`. Keys are fixed at compile time, so an unknown one is a bug.
pub fn column(key: &str) -> &'static Column {
    COLUMNS
        .iter()
        .find(|c| c.key == key)
        .unwrap_or_else(|| panic!("no run column {key:?}"))
}

/// The titles and alignment of the columns called `keys`.
pub fn heads(keys: &[&str]) -> Vec<(&'static str, bool)> {
    keys.iter()
        .map(|k| {
            let c = column(k);
            (c.title, c.numeric)
        })
        .collect()
}

/// The cells of the columns called `keys` for `run`, for people (`missing` where empty).
pub fn cells(run: &RunResult, keys: &[&str], missing: &str) -> Vec<String> {
    keys.iter()
        .map(|k| column(k).of(run).display(missing))
        .collect()
}

/// What a reader of a run's figures should be warned about: an unstable measurement (offline
/// and single-stream only: under server load the spread is queueing, not noise) and the notes
/// the worker recorded that qualify the figures.
pub fn warnings(r: &RunResult) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(l) = &r.latency {
        if l.unstable && r.spec.load != crate::spec::Load::Server {
            w.push(format!("unstable (CV {:.0}%)", l.cv * 100.0));
        }
    }
    w.extend(
        r.notes
            .iter()
            .filter(|n| {
                n.contains("marginal")
                    || n.starts_with("stopped at max_s")
                    || n.contains("no operating point")
            })
            .cloned(),
    );
    w
}

/// Short human label of a run's configuration: `device | backend precision | model [recipe]
/// mode | load bBATCH sSEQ` (the pruning recipe only when the model is pruned).
pub fn spec_label(s: &RunSpec) -> String {
    format!(
        "{} | {} {} | {}{} {} | {} b{} s{}",
        s.device,
        s.backend,
        s.precision,
        s.model,
        prune_suffix(s),
        s.mode.name(),
        s.load.name(),
        s.batch,
        s.seq_len
    )
}

/// ` RECIPE` for a pruned model, nothing for the full one.
pub fn prune_suffix(s: &RunSpec) -> String {
    if s.prune.is_full() {
        String::new()
    } else {
        format!(" {}", s.prune)
    }
}

/// A plain-text table with aligned columns and a rule under the header.
pub fn text_table(head: &[(&str, bool)], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..head.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([head[c].0.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(head)
            .map(|((cell, w), (_, numeric))| {
                if *numeric {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(head.iter().map(|h| h.0).collect());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&(rule.join("  ") + "\n"));
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference quick sweep of 2026-11-28 stored efficiencies up to 153% (written before
    /// the cap). The column recomputes them against the ceiling measured on the run's own host:
    /// never above 100%, and the stored value where it was within.
    #[test]
    fn efficiency_is_never_shown_above_100_percent() {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let f = crate::results::ResultsFile::load(&p).unwrap();
        let col = column("efficiency");
        let (mut over, mut within) = (0, 0);
        for r in &f.runs {
            let Some(c) = &r.compute else { continue };
            let Value::Percent(shown) = col.of(r) else {
                panic!("a percentage")
            };
            match c.efficiency {
                Some(e) if e > 1.0 => {
                    assert_eq!(shown, Some(1.0), "{}", r.spec.id);
                    over += 1;
                }
                Some(e) => {
                    assert!((shown.unwrap() - e).abs() < 1e-9, "{}", r.spec.id);
                    within += 1;
                }
                None => assert_eq!(shown, None),
            }
        }
        assert!(over >= 5 && within >= 5, "{over} over, {within} within");
    }
}
