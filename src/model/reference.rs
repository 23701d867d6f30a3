//! A float64 BERT forward written with plain loops, independent of every backend.
//!
//! It exists to check the backends against arithmetic that shares none of their code: the tests
//! compare candle's fp32 output with it. It is slow by design; use it on `tiny` or short inputs.

use std::path::Path;

use super::bert::{BertTensors, Dense, Norm};
use super::{BertConfig, TokenBatch};
use crate::error::{Error, Result};

/// Weights as f64 vectors.
pub struct RefWeights(BertTensors<Vec<f64>>);

impl RefWeights {
    /// Loads every tensor of `cfg`'s model from a safetensors file of f32 tensors.
    pub fn load(path: &Path, cfg: &BertConfig) -> Result<RefWeights> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let t = BertTensors::read(cfg, |name, _| {
            let view = st
                .tensor(name)
                .map_err(|e| Error::Model(format!("{}: {name}: {e}", path.display())))?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(Error::Model(format!(
                    "{}: {name} is {:?}, the reference reads f32",
                    path.display(),
                    view.dtype()
                )));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect())
        })?;
        Ok(RefWeights(t))
    }
}

fn layer_norm(x: &mut [f64], n: &Norm<Vec<f64>>, eps: f64) {
    let (w, b) = (&n.weight, &n.bias);
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (i, v) in x.iter_mut().enumerate() {
        *v = (*v - mean) * inv * w[i] + b[i];
    }
}

/// y = x · Wᵀ + b for one row; W is `[out, in]` row-major (PyTorch layout).
fn linear(x: &[f64], d: &Dense<Vec<f64>>) -> Vec<f64> {
    let (w, b) = (&d.weight, &d.bias);
    let inp = x.len();
    b.iter()
        .enumerate()
        .map(|(o, bias)| {
            bias + w[o * inp..(o + 1) * inp]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum::<f64>()
        })
        .collect()
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// erf to ~1e-16 relative: Taylor series for small |x|, continued fraction (Lentz) for large.
fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
        let ax = x.abs();
        let mut f = ax;
        for n in (1..60).rev() {
            f = ax + (n as f64 / 2.0) / f;
        }
        let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f;
        (1.0 - erfc).copysign(x)
    }
}

/// Pooled (masked mean, L2-normalised) embeddings of every sequence in `batch`.
pub fn forward(cfg: &BertConfig, w: &RefWeights, batch: &TokenBatch) -> Vec<Vec<f64>> {
    let (h, nh, hd) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim());
    let eps = cfg.layer_norm_eps;
    let mut out = Vec::with_capacity(batch.batch);
    for b in 0..batch.batch {
        let row = b * batch.seq_len;
        let len = batch.seq_len;
        let mask = &batch.attention_mask[row..row + len];
        let e = &w.0.embeddings;
        let (word, pos, typ) = (&e.word, &e.position, &e.token_type);
        let mut x: Vec<Vec<f64>> = (0..len)
            .map(|t| {
                let id = batch.input_ids[row + t] as usize;
                let ty = batch.type_ids[row + t] as usize;
                let mut v: Vec<f64> = (0..h)
                    .map(|j| word[id * h + j] + pos[t * h + j] + typ[ty * h + j])
                    .collect();
                layer_norm(&mut v, &e.norm, eps);
                v
            })
            .collect();
        for l in &w.0.layers {
            let proj = |d: &Dense<Vec<f64>>, x: &[Vec<f64>]| -> Vec<Vec<f64>> {
                x.iter().map(|r| linear(r, d)).collect()
            };
            let q = proj(&l.query, &x);
            let k = proj(&l.key, &x);
            let v = proj(&l.value, &x);
            let mut ctx = vec![vec![0.0; cfg.attention_width()]; len];
            let scale = 1.0 / (hd as f64).sqrt();
            for head in 0..nh {
                let o = head * hd;
                for i in 0..len {
                    let scores: Vec<f64> = (0..len)
                        .map(|j| {
                            if mask[j] == 0 {
                                f64::NEG_INFINITY
                            } else {
                                (0..hd).map(|d| q[i][o + d] * k[j][o + d]).sum::<f64>() * scale
                            }
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for d in 0..hd {
                        ctx[i][o + d] = (0..len).map(|j| e[j] / z * v[j][o + d]).sum();
                    }
                }
            }
            let attn = proj(&l.attn_out, &ctx);
            for (xi, ai) in x.iter_mut().zip(&attn) {
                for (a, b) in xi.iter_mut().zip(ai) {
                    *a += b;
                }
                layer_norm(xi, &l.attn_norm, eps);
            }
            let inter: Vec<Vec<f64>> = proj(&l.intermediate, &x)
                .into_iter()
                .map(|r| r.into_iter().map(gelu).collect())
                .collect();
            let ffn = proj(&l.output, &inter);
            for (xi, fi) in x.iter_mut().zip(&ffn) {
                for (a, b) in xi.iter_mut().zip(fi) {
                    *a += b;
                }
                layer_norm(xi, &l.out_norm, eps);
            }
        }
        let mut pooled = vec![0.0; h];
        let n = mask.iter().filter(|&&m| m == 1).count() as f64;
        for (t, xt) in x.iter().enumerate() {
            if mask[t] == 1 {
                for (p, v) in pooled.iter_mut().zip(xt) {
                    *p += v / n;
                }
            }
        }
        let norm = pooled.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        out.push(pooled.into_iter().map(|v| v / norm).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-2.0, -0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
        ] {
            assert!((erf(x) - want).abs() < 1e-14, "erf({x}) = {}", erf(x));
        }
    }
}
