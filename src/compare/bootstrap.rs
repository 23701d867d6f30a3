//! The bootstrap intervals of `compare`: over iterations (one process a side), over rounds then
//! iterations (Kalibera and Jones's two levels), and a one-process candidate against stored
//! sweeps that lend it their spread.

use crate::model::weights::SplitMix64;
use crate::stats::percentile;

/// Two-level bootstrap one-sided 95% bounds (5th and 95th percentiles) of stat(b)/stat(a), where
/// `a` and `b` are each a list of rounds (one worker process each): every resample draws the
/// rounds with replacement, then the iterations within each drawn round. With `paired` (the
/// same number of rounds, run back to back) round k of both sides is drawn together. A side of
/// one round is resampled over its iterations alone.
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
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.05), percentile(&ratios, 0.95))
}

/// Two-level bootstrap bounds of stat(b)/stat(a) for a candidate `b` of one process against
/// baseline rounds `a` (stored sweeps): the baseline side resamples its rounds, then their
/// iterations; the candidate side resamples its iterations and is scaled by the process factor
/// of a baseline round drawn at random (that round's statistic over the baseline's), so the
/// spread between processes counts on both sides.
pub fn bootstrap_ratio_borrowed(
    a: &[&[f64]],
    b: &[f64],
    stat: fn(&[f64]) -> f64,
    seed: u64,
) -> (f64, f64) {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: usize| (rng.next_u64() % n as u64) as usize;
    let all: Vec<f64> = a.iter().flat_map(|r| r.iter().copied()).collect();
    let overall = stat(&all);
    let factors: Vec<f64> = a.iter().map(|r| stat(r) / overall).collect();
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut ratios: Vec<f64> = (0..2000)
        .map(|_| {
            ra.clear();
            for _ in 0..a.len() {
                let round = a[pick(a.len())];
                for _ in 0..round.len() {
                    ra.push(round[pick(round.len())]);
                }
            }
            rb.clear();
            for _ in 0..b.len() {
                rb.push(b[pick(b.len())]);
            }
            let f = factors[pick(factors.len())];
            stat(&rb) * f / stat(&ra)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (percentile(&ratios, 0.05), percentile(&ratios, 0.95))
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
