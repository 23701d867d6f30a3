//! The catalog a two-tower run searches: `n` unit vectors shaped like a real catalog.
//!
//! The demo catalog's real item embeddings (from the run's encoder) are the cluster centres;
//! item `i` is centre `i mod centres` plus Gaussian noise of expected norm [`SPREAD`], scaled
//! back to unit length. So an item has cosine ≈ 0.8 with its centre and ≈ 0.64 with the other
//! items of its cluster, the way embeddings of similar products sit together, and the top-10 of
//! a query is decided among thousands of near neighbours, not among copies (repeating the
//! centres, as recbench did before, gave every query ten copies of one item and made any index
//! look perfect). The values depend only on the centres, `n` and the seed: each block of rows
//! draws from its own generator, so the thread count does not change them.

use crate::recommender::ItemIndex;
use crate::util::rand::SplitMix64;

/// Expected norm of the noise added to a unit centre.
pub const SPREAD: f64 = 0.75;

/// Rows per generator block (and per unit of work across threads).
const BLOCK: usize = 4096;

/// `n` catalog items around `centres` (see the module comment), with `threads` threads.
pub fn clustered(centres: &ItemIndex, n: usize, seed: u64, threads: usize) -> ItemIndex {
    let dim = centres.dim;
    let c = centres.len();
    let mut data = vec![0.0f32; n * dim];
    if c == 0 || dim == 0 {
        return ItemIndex { dim, data: vec![] };
    }
    let sigma = SPREAD / (dim as f64).sqrt();
    let fill = |b: usize, rows: &mut [f32]| {
        let mut r = SplitMix64::new(seed ^ 0xC47A_1065 ^ (b as u64).wrapping_mul(0x9E37_79B9));
        for (j, row) in rows.chunks_mut(dim).enumerate() {
            let i = b * BLOCK + j;
            let centre = &centres.data[(i % c) * dim..(i % c + 1) * dim];
            let mut norm = 0.0f64;
            for (x, m) in row.iter_mut().zip(centre) {
                let v = *m as f64 + sigma * r.next_normal();
                *x = v as f32;
                norm += v * v;
            }
            let inv = 1.0 / norm.sqrt().max(f64::MIN_POSITIVE);
            row.iter_mut().for_each(|x| *x = (*x as f64 * inv) as f32);
        }
    };
    let blocks: Vec<(usize, &mut [f32])> = data.chunks_mut(BLOCK * dim).enumerate().collect();
    let threads = threads.clamp(1, blocks.len().max(1));
    let mut lanes: Vec<Vec<(usize, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
    for (k, b) in blocks.into_iter().enumerate() {
        lanes[k % threads].push(b);
    }
    std::thread::scope(|s| {
        for lane in lanes {
            s.spawn(move || lane.into_iter().for_each(|(b, rows)| fill(b, rows)));
        }
    });
    ItemIndex { dim, data }
}

/// A name for the catalog [`clustered`] makes from these arguments (the centres' values
/// hashed), under which an index built on it can be kept.
pub fn key(centres: &ItemIndex, n: usize, seed: u64) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for x in &centres.data {
        h = (h ^ x.to_bits() as u64).wrapping_mul(0x100_0000_01b3);
    }
    format!("c{h:016x}-d{}-n{n}-s{seed}-spread{SPREAD}", centres.dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centres() -> ItemIndex {
        let mut r = SplitMix64::new(1);
        let (c, dim) = (5, 32);
        let mut data: Vec<f32> = (0..c * dim).map(|_| r.next_normal() as f32).collect();
        for row in data.chunks_mut(dim) {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= n);
        }
        ItemIndex { dim, data }
    }

    #[test]
    fn items_are_unit_vectors_near_their_centre_and_fixed_by_the_seed_alone() {
        let c = centres();
        let a = clustered(&c, 10_000, 3, 1);
        assert_eq!(a.len(), 10_000);
        assert_eq!(
            a.data,
            clustered(&c, 10_000, 3, 3).data,
            "threads change values"
        );
        assert_ne!(
            a.data,
            clustered(&c, 10_000, 4, 1).data,
            "the seed is not used"
        );
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        let mut near = 0.0;
        for i in 0..a.len() {
            let row = &a.data[i * 32..(i + 1) * 32];
            assert!(
                (dot(row, row) - 1.0).abs() < 1e-5,
                "row {i} is not unit length"
            );
            near += dot(row, &c.data[(i % 5) * 32..(i % 5 + 1) * 32]);
        }
        // cos ≈ 1/sqrt(1 + SPREAD²) = 0.8 with the centre.
        let mean = near / a.len() as f32;
        assert!(
            (mean - 0.8).abs() < 0.03,
            "mean cosine with the centre {mean}"
        );
        // No two items are copies.
        assert_ne!(&a.data[..32], &a.data[5 * 32..6 * 32]);
    }
}
