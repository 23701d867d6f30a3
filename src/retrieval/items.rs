//! Item embeddings stored at a retrieval precision, and queries prepared to score them.
//!
//! fp16 and bf16 round each value; int8 keeps one scale per item (its largest magnitude / 127)
//! and the query is quantized per row the same way, so a score is `dot_i8 × scale_item ×
//! scale_query`.

use half::{bf16, f16};

use super::kernels;
use crate::spec::Precision;

/// Row-major `[items, dim]` at one precision.
pub enum Items {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    I8 { q: Vec<i8>, scale: Vec<f32> },
}

/// A query row as the item precision scores it.
pub struct Query {
    pub f32: Vec<f32>,
    /// int8 items only: the row quantized, and its scale.
    pub i8: Vec<i8>,
    pub scale: f32,
}

/// Symmetric int8 of `row`: the values and the scale that maps them back.
fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (q, x) in out.iter_mut().zip(row) {
        *q = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

impl Items {
    /// `data` (`[n, dim]`, fp32) stored at `p`.
    pub fn store(data: &[f32], dim: usize, p: Precision) -> Items {
        match p {
            Precision::Fp32 => Items::F32(data.to_vec()),
            Precision::Fp16 => Items::F16(data.iter().map(|x| f16::from_f32(*x)).collect()),
            Precision::Bf16 => Items::Bf16(data.iter().map(|x| bf16::from_f32(*x)).collect()),
            Precision::Int8 => {
                let mut q = vec![0i8; data.len()];
                let scale = data
                    .chunks(dim.max(1))
                    .zip(q.chunks_mut(dim.max(1)))
                    .map(|(row, out)| quantize_row(row, out))
                    .collect();
                Items::I8 { q, scale }
            }
        }
    }

    /// Bytes the embeddings take.
    pub fn bytes(&self) -> u64 {
        (match self {
            Items::F32(v) => v.len() * 4,
            Items::F16(v) => v.len() * 2,
            Items::Bf16(v) => v.len() * 2,
            Items::I8 { q, scale } => q.len() + scale.len() * 4,
        }) as u64
    }

    /// A query row prepared for these items.
    pub fn query(&self, row: &[f32]) -> Query {
        let mut q = Query {
            f32: row.to_vec(),
            i8: vec![],
            scale: 1.0,
        };
        if let Items::I8 { .. } = self {
            q.i8 = vec![0; row.len()];
            q.scale = quantize_row(row, &mut q.i8);
        }
        q
    }

    /// Score of `query` against item `j`.
    #[inline]
    pub fn score(&self, dim: usize, query: &Query, j: usize) -> f32 {
        let r = j * dim..(j + 1) * dim;
        match self {
            Items::F32(v) => kernels::dot_f32(&query.f32, &v[r]),
            Items::F16(v) => kernels::dot_f16(&query.f32, &v[r]),
            Items::Bf16(v) => kernels::dot_bf16(&query.f32, &v[r]),
            Items::I8 { q, scale } => {
                kernels::dot_i8(&query.i8, &q[r]) as f32 * scale[j] * query.scale
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_scores_come_within_a_few_thousandths_of_fp32_for_unit_vectors() {
        let mut r = crate::util::rand::SplitMix64::new(9);
        let dim = 384;
        let unit = |r: &mut crate::util::rand::SplitMix64| {
            let v: Vec<f32> = (0..dim).map(|_| r.next_normal() as f32).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let items: Vec<f32> = (0..50).flat_map(|_| unit(&mut r)).collect();
        let user = unit(&mut r);
        for p in Precision::ALL {
            let s = Items::store(&items, dim, p);
            let q = s.query(&user);
            let tol = match p {
                Precision::Fp32 => 1e-6,
                Precision::Fp16 => 1e-3,
                Precision::Bf16 | Precision::Int8 => 1e-2,
            };
            for j in 0..50 {
                let exact: f32 = user.iter().zip(&items[j * dim..]).map(|(a, b)| a * b).sum();
                let got = s.score(dim, &q, j);
                assert!((got - exact).abs() < tol, "{p} item {j}: {got} vs {exact}");
            }
        }
    }
}
