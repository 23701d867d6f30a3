//! Unit tests of the candle backend.
use super::*;

/// The chunked top-k the GPU runs, here on candle's CPU ops, against the host's one-pass
/// top-k: several chunk sizes (one, two and three rounds of cutting), a ragged last chunk,
/// k larger than a chunk's survivors, f32 and f16.
#[test]
fn chunked_top_k_equals_the_hosts() {
    let mut rng = crate::util::rand::SplitMix64::new(5);
    let (rows, n) = (3, 10_007);
    // Distinct values (a permutation, scaled): no ties for the two orders to differ on.
    let mut v: Vec<f32> = (0..rows * n)
        .map(|i| i as f32 / (rows * n) as f32)
        .collect();
    for i in (1..v.len()).rev() {
        v.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let scores = Tensor::from_slice(&v, (rows, n), &CDevice::Cpu).unwrap();
    let want = crate::topk::top_k_rows(&v, n, 10, 1);
    for chunk in [16, 100, 4096, 20_000] {
        let (ids, top) = top_k_rows_chunked(&scores, 10, chunk).unwrap();
        let ids = ids.to_vec2::<u32>().unwrap();
        let top = top.to_vec2::<f32>().unwrap();
        for r in 0..rows {
            let got: Vec<(usize, f32)> = ids[r]
                .iter()
                .map(|&i| i as usize)
                .zip(top[r].clone())
                .collect();
            assert_eq!(got, want[r], "chunk {chunk}, row {r}");
        }
    }
    // In f16 the scores round; the ids must still be those of the best ten f16 values.
    let half = scores.to_dtype(DType::F16).unwrap();
    let (ids, _) = top_k_rows_chunked(&half, 10, 64).unwrap();
    let rounded: Vec<f32> = half
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for (r, ids) in ids.to_vec2::<u32>().unwrap().iter().enumerate() {
        let row = &rounded[r * n..(r + 1) * n];
        let tenth = crate::topk::top_k(row, 10)[9].1;
        for &i in ids {
            assert!(
                row[i as usize] >= tenth,
                "row {r}: id {i} is not in the top 10"
            );
        }
    }
}
