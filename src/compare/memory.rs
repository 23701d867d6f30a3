//! Peak memory in `compare`: an interval where each process's peak is kept, else the threshold.

use super::{bootstrap, decide, MetricChange, Verdict};
use crate::results::RunResult;
use crate::stats::mean_var;

/// Peak resident memory. Where both sides keep each process's peak (rounds, or stored sweeps),
/// the interval is Student's on the logarithms, as the processes vary: paired rounds by their
/// differences, a one-process candidate against stored sweeps as one more draw from them (a
/// prediction interval), other rounds by the difference of their means. A side of one process
/// gives no spread: the ratio is judged against the threshold alone, as the row says.
pub(super) fn change(a: &RunResult, b: &RunResult, threshold: f64) -> MetricChange {
    let mib = |x: f64| x / (1u64 << 20) as f64;
    let rounds = |r: &RunResult| -> Option<Vec<f64>> {
        let v: Option<Vec<f64>> = r
            .rounds
            .iter()
            .map(|x| x.peak_rss_bytes.filter(|b| *b > 0).map(|b| (b as f64).ln()))
            .collect();
        v.filter(|v| v.len() >= 2)
    };
    let mean = |v: &[f64]| mean_var(v).0;
    let var = |v: &[f64]| mean_var(v).1;
    let single = |r: &RunResult| {
        r.memory
            .peak_rss_bytes
            .filter(|b| *b > 0)
            .map(|b| (b as f64).ln())
    };
    // (log of the baseline, log of the candidate, half-width of the 95% one-sided bound, what
    // the interval rests on)
    let judged: Option<(f64, f64, f64, String)> = match (rounds(a), rounds(b), single(b)) {
        (Some(ra), Some(rb), _) if ra.len() == rb.len() => {
            let d: Vec<f64> = rb.iter().zip(&ra).map(|(y, x)| y - x).collect();
            let n = d.len();
            Some((
                mean(&ra),
                mean(&rb),
                bootstrap::t95(n - 1) * (var(&d) / n as f64).sqrt(),
                format!("paired rounds ({n})"),
            ))
        }
        (Some(ra), Some(rb), _) => {
            let df = ra.len().min(rb.len()) - 1;
            Some((
                mean(&ra),
                mean(&rb),
                bootstrap::t95(df)
                    * (var(&ra) / ra.len() as f64 + var(&rb) / rb.len() as f64).sqrt(),
                format!("rounds ({} and {})", ra.len(), rb.len()),
            ))
        }
        (Some(ra), None, Some(lb)) => {
            let n = ra.len();
            Some((
                mean(&ra),
                lb,
                bootstrap::t95(n - 1) * (var(&ra) * (1.0 + 1.0 / n as f64)).sqrt(),
                format!("{n} baseline sweeps (the candidate as one more)"),
            ))
        }
        _ => None,
    };
    match judged {
        Some((la, lb, half, resampled)) => {
            let point = (lb - la).exp();
            let ci = ((lb - la - half).exp(), (lb - la + half).exp());
            MetricChange {
                metric: "peak RSS".into(),
                unit: "MiB",
                baseline: Some(mib(la.exp())),
                candidate: Some(mib(lb.exp())),
                slowdown: Some(point),
                ci: Some(ci),
                resampled,
                settle_rounds: None,
                verdict: decide(ci, threshold),
            }
        }
        None => {
            let (ma, mb) = (a.memory.peak_rss_bytes, b.memory.peak_rss_bytes);
            let r = ma.zip(mb).map(|(x, y)| y as f64 / x as f64);
            MetricChange {
                metric: "peak RSS".into(),
                unit: "MiB",
                baseline: ma.map(|x| mib(x as f64)),
                candidate: mb.map(|x| mib(x as f64)),
                slowdown: r,
                ci: None,
                resampled: "one process a side: the threshold alone".into(),
                settle_rounds: None,
                verdict: match r {
                    None => Verdict::Unknown,
                    Some(r) if r > 1.0 + threshold => Verdict::Regressed,
                    Some(r) if r < 1.0 / (1.0 + threshold) => Verdict::Improved,
                    Some(_) => Verdict::Unchanged,
                },
            }
        }
    }
}
