//! The bootstrap intervals of `compare`: over iterations (one process a side), over rounds then
//! iterations (Kalibera and Jones's two levels), and a one-process candidate against stored
//! sweeps that lend it their spread.
//!
//! With rounds, the processes are the sample, and there are few of them (two to twenty). A
//! bootstrap over n processes sees only (n − 1)/n of their variance, and its percentiles assume
//! the spread is known: at two rounds a side, identical builds were called regressed at 3% in 5
//! of 9 comparisons on the 2-vCPU VM. So a round-level interval is the bootstrap's standard error
//! of the log ratio, widened for few processes as Hesterberg's expanded percentile interval is:
//! the point ± √(n/(n−1)) · t(0.95, n−1) standard errors (T. C. Hesterberg, "What Teachers Should
//! Know About the Bootstrap", The American Statistician 69(4), 2015). At twenty rounds that is
//! 1.08 times the normal width; at two, 5.4 times.

use crate::stats::percentile;
use crate::util::rand::SplitMix64;

/// Student's t quantile at 0.95 with `df` degrees of freedom (`df` ≥ 1): a table to 30, then the
/// Cornish–Fisher expansion around the normal's 1.645 (within 0.001 of the exact value there).
pub fn t95(df: usize) -> f64 {
    const T: [f64; 30] = [
        6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771,
        1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706,
        1.703, 1.701, 1.699, 1.697,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        _ => {
            let (z, d) = (1.644_854_f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

/// Standard errors from the point to a one-sided 95% bound with `n` processes:
/// √(n/(n−1)) · t(0.95, n−1), the expanded interval's width (see the module comment).
pub fn widening(n: usize) -> f64 {
    if n < 2 {
        return f64::INFINITY;
    }
    (n as f64 / (n - 1) as f64).sqrt() * t95(n - 1)
}

/// The one-sided 95% bounds around `point` from bootstrap ratios over `n` processes: the
/// standard deviation of their logarithms, widened for `n`.
fn expanded(point: f64, ratios: &[f64], n: usize) -> (f64, f64) {
    let logs: Vec<f64> = ratios
        .iter()
        .map(|r| r.ln())
        .filter(|l| l.is_finite())
        .collect();
    let half = widening(n) * crate::stats::mean_var(&logs).1.sqrt();
    ((point.ln() - half).exp(), (point.ln() + half).exp())
}

/// Two-level bootstrap one-sided 95% bounds of stat(b)/stat(a), where `a` and `b` are each a list
/// of rounds (one worker process each): every resample draws the rounds with replacement, then
/// the iterations within each drawn round. With `paired` (the same number of rounds, run back to
/// back) round k of both sides is drawn together. With rounds on both sides the bounds are the
/// expanded interval around the pooled ratio (module comment), n being the pairs (or the fewer
/// rounds, unpaired); a side of one round is resampled over its iterations alone, and the bounds
/// are then the 5th and 95th percentiles.
pub fn bootstrap_ratio_rounds(
    a: &[&[f64]],
    b: &[&[f64]],
    paired: bool,
    stat: fn(&[f64]) -> f64,
    seed: u64,
) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    let mut ratios: Vec<f64> = Vec::with_capacity(2000);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let (ia, ib): (Vec<usize>, Vec<usize>) = if paired && a.len() == b.len() {
            let k: Vec<usize> = (0..a.len()).map(|_| pick(a.len())).collect();
            (k.clone(), k)
        } else {
            (
                (0..a.len()).map(|_| pick(a.len())).collect(),
                (0..b.len()).map(|_| pick(b.len())).collect(),
            )
        };
        for (out, side, idx) in [(&mut ra, a, &ia), (&mut rb, b, &ib)] {
            out.clear();
            for &r in idx {
                let round = side[r];
                for _ in 0..round.len() {
                    out.push(round[pick(round.len())]);
                }
            }
        }
        ratios.push(stat(&rb) / stat(&ra));
    }
    let n = a.len().min(b.len());
    if n >= 2 {
        return expanded(stat(&b.concat()) / stat(&a.concat()), &ratios, n);
    }
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.05), percentile(&ratios, 0.95))
}

/// The statistic of stored sweeps taken as one baseline: the mean of each sweep's own statistic.
/// Not the statistic of the sweeps pooled: a candidate of one process is compared with a typical
/// process, and the p99 of five pooled sweeps sits in the worst sweep's tail, above what any one
/// process shows, so an identical candidate would read faster.
pub fn per_sweep_stat(a: &[&[f64]], stat: fn(&[f64]) -> f64) -> f64 {
    a.iter().map(|r| stat(r)).sum::<f64>() / a.len() as f64
}

/// Two-level bootstrap bounds of stat(b)/stat(a) for a candidate `b` of one process against
/// baseline rounds `a` (stored sweeps), the baseline's statistic being `per_sweep_stat`: the
/// baseline side resamples its rounds, then their iterations; the candidate side resamples its
/// iterations and is scaled by the process factor of a baseline round drawn at random (that
/// round's statistic over the rounds' mean, so the factors average 1), so the spread between
/// processes counts on both sides. The bounds are the expanded interval over the baseline's
/// sweeps (module comment).
pub fn bootstrap_ratio_borrowed(
    a: &[&[f64]],
    b: &[f64],
    stat: fn(&[f64]) -> f64,
    seed: u64,
) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    let centre = per_sweep_stat(a, stat);
    let factors: Vec<f64> = a.iter().map(|r| stat(r) / centre).collect();
    let mut buf = Vec::new();
    let ratios: Vec<f64> = (0..2000)
        .map(|_| {
            let mut base = 0.0;
            for _ in 0..a.len() {
                let round = a[pick(a.len())];
                buf.clear();
                for _ in 0..round.len() {
                    buf.push(round[pick(round.len())]);
                }
                base += stat(&buf);
            }
            base /= a.len() as f64;
            buf.clear();
            for _ in 0..b.len() {
                buf.push(b[pick(b.len())]);
            }
            let f = factors[pick(factors.len())];
            stat(&buf) * f / base
        })
        .collect();
    expanded(stat(b) / centre, &ratios, a.len())
}

/// Bootstrap one-sided 95% bounds (5th and 95th percentiles) of stat(b)/stat(a), over the
/// iterations alone (one process a side).
pub fn bootstrap_ratio(a: &[f64], b: &[f64], stat: fn(&[f64]) -> f64, seed: u64) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut draw = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|_| v[(rng.next_u64() % v.len() as u64) as usize])
            .collect()
    };
    let mut ratios: Vec<f64> = (0..2000).map(|_| stat(&draw(b)) / stat(&draw(a))).collect();
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.05), percentile(&ratios, 0.95))
}
