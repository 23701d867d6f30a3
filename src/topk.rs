//! Top-k selection over score rows, as the host does it: the host-side scoring path and every
//! backend that scores on the CPU share it (device backends rank with their own kernels and are
//! checked against it).

/// Indices of the `k` largest scores, best first (ties broken by lower index; order as
/// `f32::total_cmp`).
///
/// One pass over the scores keeping the best `k` so far in a sorted buffer: a score enters only
/// when it beats the buffer's worst, so for k ≪ n it costs about n comparisons and no
/// allocation as large as the row (a catalog row is 100,000 scores per request).
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let k = k.min(scores.len());
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    // `a` ranks before `b`: higher score, then lower index.
    let before = |a: &(usize, f32), b: &(usize, f32)| match a.1.total_cmp(&b.1) {
        std::cmp::Ordering::Equal => a.0 < b.0,
        o => o == std::cmp::Ordering::Greater,
    };
    for (i, &s) in scores.iter().enumerate() {
        let cand = (i, s);
        if best.len() == k {
            // Indices rise through the scan, so an equal score never beats the worst kept.
            if s.total_cmp(&best[k - 1].1) != std::cmp::Ordering::Greater {
                continue;
            }
            best.pop();
        }
        let at = best.partition_point(|b| before(b, &cand));
        best.insert(at, cand);
    }
    best
}

/// The top-`k` of each row of `scores` (`[rows, n]`, row-major), as `top_k` gives it per
/// row, with the rows split over `threads` threads when there is enough work.
pub fn top_k_rows(scores: &[f32], n: usize, k: usize, threads: usize) -> Vec<Vec<(usize, f32)>> {
    if n == 0 {
        return vec![];
    }
    let rows = scores.len() / n;
    let threads = threads.clamp(1, rows.max(1));
    if threads == 1 || scores.len() < 1 << 18 {
        return scores.chunks(n).map(|r| top_k(r, k)).collect();
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = scores
            .chunks(per * n)
            .map(|part| s.spawn(move || part.chunks(n).map(|r| top_k(r, k)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("a top-k thread panicked"))
            .collect()
    })
}
