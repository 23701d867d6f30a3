//! From a request to a top-k list, in both modes.
//!
//! * Two-tower: the user text is encoded once and scored by dot product against precomputed
//!   item embeddings (built offline by the same encoder and cached), then top-k.
//! * Cross-encoder: each (user, candidate item) pair is encoded jointly; a linear relevance head
//!   on the pooled output scores it; top-k of the candidates. The head is seeded, not trained:
//!   its cost is that of a real cross-encoder head (one dot product per pair), its scores are not
//!   meant to be good recommendations. `recommend` therefore uses the two-tower mode.

use std::path::{Path, PathBuf};

use crate::backend::{Embeddings, Encoder};
use crate::error::{Error, Result};
use crate::model::{cache_dir, Tokenizer};
pub use crate::topk::{top_k, top_k_rows};
use crate::util::hash::fnv1a;
use crate::util::rand::SplitMix64;

/// The bundled demo catalog: films, books, products, albums, games and podcasts, one per line.
pub const BUNDLED_ITEMS: &str = include_str!("../data/items.tsv");

/// Longest item or user text, in tokens, when encoding for recommendations.
pub const TEXT_MAX_TOKENS: usize = 128;

/// One recommendable item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: u32,
    pub kind: String,
    pub title: String,
    pub description: String,
}

impl Item {
    /// The text the encoder sees for this item.
    pub fn text(&self) -> String {
        format!("{}. {}", self.title, self.description)
    }
}

/// Parses a catalog TSV (`id  kind  title  description`, with that header).
pub fn parse_items(path: &Path, text: &str) -> Result<Vec<Item>> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_end() == "id\tkind\ttitle\tdescription" => {}
        _ => {
            return Err(Error::input(
                path,
                Some(1),
                "header",
                "expected the header `id<TAB>kind<TAB>title<TAB>description`",
            ))
        }
    }
    let mut items = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return Err(Error::input(
                path,
                Some(i + 1),
                "",
                format!("expected 4 tab-separated fields, found {}", f.len()),
            ));
        }
        let id = f[0].parse().map_err(|_| {
            Error::input(
                path,
                Some(i + 1),
                "id",
                format!("{:?} is not a whole number", f[0]),
            )
        })?;
        items.push(Item {
            id,
            kind: f[1].to_string(),
            title: f[2].to_string(),
            description: f[3].to_string(),
        });
    }
    if items.is_empty() {
        return Err(Error::input(path, None, "", "catalog has no items"));
    }
    Ok(items)
}

/// The bundled demo catalog.
pub fn bundled_items() -> Vec<Item> {
    parse_items(Path::new("data/items.tsv"), BUNDLED_ITEMS).expect("bundled catalog parses")
}

/// Item embeddings, row-major `[items, dim]`.
#[derive(Debug, Clone)]
pub struct ItemIndex {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl ItemIndex {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The embeddings as a backend takes them for scoring on its device.
    pub fn items(&self) -> crate::backend::ItemsRef<'_> {
        crate::backend::ItemsRef {
            data: &self.data,
            dim: self.dim,
        }
    }

    /// Scores `[users, items]` = users · itemsᵀ, with `threads` threads.
    ///
    /// The items are split into one contiguous range per thread, each a single-threaded GEMM
    /// into its columns of the output: the catalog is the large dimension, and a request's few
    /// users leave the `gemm` crate's own parallel split little to share (with one user it ran
    /// on one thread: 16 ms for 100,000 × 384 on the 16-vCPU H200 host against 4 ms for eight).
    pub fn scores(&self, users: &Embeddings, threads: usize) -> Vec<f32> {
        let (m, n, k) = (users.rows, self.len(), self.dim);
        let mut out = vec![0.0f32; m * n];
        let threads = if m * n * k > 1 << 20 {
            threads.clamp(1, n.max(1))
        } else {
            1
        };
        let per = n.div_ceil(threads).max(1);
        let dst = SendPtr(out.as_mut_ptr());
        let run = |j0: usize| {
            let cols = per.min(n - j0);
            // SAFETY: the pointers and strides describe row-major users (m×k), this range of
            // item rows (cols×k, read as its transpose) and columns j0..j0+cols of the m×n
            // output; ranges do not overlap, so threads write disjoint elements.
            unsafe {
                gemm::gemm(
                    m,
                    cols,
                    k,
                    dst.get().add(j0),
                    1,
                    n as isize,
                    false,
                    users.data.as_ptr(),
                    1,
                    k as isize,
                    self.data.as_ptr().add(j0 * k),
                    k as isize,
                    1,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        };
        if threads == 1 || n == 0 {
            if n > 0 {
                run(0);
            }
        } else {
            std::thread::scope(|s| {
                for j0 in (per..n).step_by(per) {
                    s.spawn(move || run(j0));
                }
                run(0);
            });
        }
        out
    }
}

/// A raw output pointer shared by the scoring threads, each writing its own columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the threads of `ItemIndex::scores` write disjoint elements through it and are joined
// before the buffer is read.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// The seeded linear relevance head of cross-encoder mode (unit norm).
pub fn cross_encoder_head(dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ fnv1a("cross-encoder-head"));
    let v: Vec<f64> = (0..dim).map(|_| rng.next_normal()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| (x / norm) as f32).collect()
}

/// Encodes `texts` in batches of `batch`, returning all pooled embeddings.
pub fn encode_texts(
    encoder: &mut dyn Encoder,
    tokenizer: &Tokenizer,
    texts: &[String],
    batch: usize,
) -> Result<ItemIndex> {
    let mut data = Vec::new();
    let mut dim = 0;
    for chunk in texts.chunks(batch.max(1)) {
        let refs: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
        let tb = tokenizer.batch(&refs, TEXT_MAX_TOKENS)?;
        let e = encoder.encode(&tb)?;
        dim = e.dim;
        data.extend_from_slice(&e.data);
    }
    Ok(ItemIndex { dim, data })
}

/// Item embeddings of `items` for one model and encoder configuration, cached on disk under
/// `key` (which must identify model, seed, backend and precision).
pub fn item_index(
    encoder: &mut dyn Encoder,
    tokenizer: &Tokenizer,
    items: &[Item],
    key: &str,
) -> Result<ItemIndex> {
    if let Some(ix) = cached_item_index(items, key) {
        return Ok(ix);
    }
    let texts: Vec<String> = items.iter().map(Item::text).collect();
    let index = encode_texts(encoder, tokenizer, &texts, 32)?;
    let mut bytes = (index.dim as u64).to_le_bytes().to_vec();
    bytes.extend(index.data.iter().flat_map(|v| v.to_le_bytes()));
    crate::util::files::write_atomic(&item_cache_path(items, key), &bytes)?;
    Ok(index)
}

/// The cached item embeddings under `key`, if present and complete.
pub fn cached_item_index(items: &[Item], key: &str) -> Option<ItemIndex> {
    let bytes = std::fs::read(item_cache_path(items, key)).ok()?;
    if bytes.len() < 8 {
        return None;
    }
    let dim = u64::from_le_bytes(bytes[..8].try_into().ok()?) as usize;
    let data: Vec<f32> = bytes[8..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (dim > 0 && data.len() == dim * items.len()).then_some(ItemIndex { dim, data })
}

fn item_cache_path(items: &[Item], key: &str) -> PathBuf {
    let texts: Vec<String> = items.iter().map(Item::text).collect();
    let catalog_hash = fnv1a(&texts.join("\n"));
    cache_dir()
        .join("embeddings")
        .join(format!("{key}-{catalog_hash:016x}.f32"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_catalog_is_large_and_well_formed() {
        let items = bundled_items();
        assert!(items.len() >= 1000, "{} items", items.len());
        for (i, it) in items.iter().enumerate() {
            assert_eq!(it.id as usize, i + 1);
            assert!(!it.title.is_empty() && !it.description.is_empty());
        }
        for kind in ["film", "book", "product"] {
            assert!(
                items.iter().filter(|i| i.kind == kind).count() >= 100,
                "{kind}"
            );
        }
    }

    #[test]
    fn catalog_errors_name_the_line() {
        let e = parse_items(
            Path::new("c.tsv"),
            "id\tkind\ttitle\tdescription\n1\tfilm\tx\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.tsv:2: expected 4 tab-separated fields, found 3"
        );
        let e = parse_items(
            Path::new("c.tsv"),
            "id\tkind\ttitle\tdescription\nx\tfilm\ta\tb\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("c.tsv:2: field `id`"), "{e}");
    }

    /// The obvious top-k: sort every index (what `top_k` must agree with).
    fn top_k_by_sorting(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<usize> = (0..scores.len()).collect();
        idx.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b)));
        idx.into_iter().take(k).map(|i| (i, scores[i])).collect()
    }

    #[test]
    fn top_k_agrees_with_sorting_including_ties_and_nan() {
        let mut rng = SplitMix64::new(7);
        for case in 0..300 {
            let n = 1 + case % 97;
            // Coarse values make ties common; some NaN and infinities.
            let scores: Vec<f32> = (0..n)
                .map(|_| match rng.next_u64() % 23 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 => f32::INFINITY,
                    r => (r % 7) as f32 - 3.0,
                })
                .collect();
            for k in [0, 1, 3, 10, n, n + 5] {
                let got = top_k(&scores, k);
                let want = top_k_by_sorting(&scores, k);
                let ids = |v: &[(usize, f32)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
                assert_eq!(ids(&got), ids(&want), "n={n} k={k} scores={scores:?}");
            }
        }
    }

    #[test]
    fn top_k_rows_splits_rows_over_threads_without_changing_them() {
        let mut rng = SplitMix64::new(11);
        let (rows, n) = (37, 20_011);
        let scores: Vec<f32> = (0..rows * n)
            .map(|_| (rng.next_u64() % 1000) as f32)
            .collect();
        let serial = top_k_rows(&scores, n, 10, 1);
        assert_eq!(serial.len(), rows);
        for (r, got) in serial.iter().enumerate() {
            assert_eq!(got, &top_k_by_sorting(&scores[r * n..(r + 1) * n], 10));
        }
        assert_eq!(top_k_rows(&scores, n, 10, 4), serial);
        assert_eq!(top_k_rows(&scores, n, 10, 64), serial);
    }

    #[test]
    fn top_k_is_ordered_and_stable() {
        let s = [0.1, 0.9, 0.5, 0.9, -1.0];
        assert_eq!(top_k(&s, 3), vec![(1, 0.9), (3, 0.9), (2, 0.5)]);
        assert_eq!(top_k(&s, 10).len(), 5);
        assert!(top_k(&s, 0).is_empty());
    }

    #[test]
    fn threaded_scores_match_dot_products_in_every_item_range() {
        let mut rng = SplitMix64::new(3);
        let (m, n, k) = (3, 7001, 64);
        let users = Embeddings {
            rows: m,
            dim: k,
            data: (0..m * k).map(|_| rng.next_normal() as f32).collect(),
        };
        let items = ItemIndex {
            dim: k,
            data: (0..n * k).map(|_| rng.next_normal() as f32).collect(),
        };
        for threads in [1, 2, 3, 8] {
            let s = items.scores(&users, threads);
            assert_eq!(s.len(), m * n);
            for r in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|i| users.data[r * k + i] as f64 * items.data[j * k + i] as f64)
                        .sum();
                    let got = s[r * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "threads {threads}, user {r}, item {j}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn gemm_scores_match_dot_products() {
        let users = Embeddings {
            rows: 2,
            dim: 3,
            data: vec![1.0, 0.0, 2.0, 0.5, -1.0, 0.0],
        };
        let items = ItemIndex {
            dim: 3,
            data: vec![1.0, 1.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, -1.0, 1.0, 1.0, 1.0],
        };
        let s = items.scores(&users, 1);
        assert_eq!(s, vec![3.0, 0.0, 1.0, 3.0, -0.5, -2.0, 1.5, -0.5]);
    }
}
