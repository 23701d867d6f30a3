//! Pruning recipes: deterministic, training-free ways to make a BERT encoder cheaper, and the
//! pruned weights they produce.
//!
//! A recipe is named in scenario files (`[model] prune = [...]`) and results as `full` (the
//! model as published) or one or more steps joined by `+`:
//! - `keep-layers-N`: keep the first N encoder layers (the bottom of the stack) and drop the
//!   rest;
//! - `drop-ffn-P`: in every kept layer, remove P% of the feed-forward (intermediate) neurons,
//!   those of lowest weight magnitude ‖W_in[n,:]‖₂ · ‖W_out[:,n]‖₂;
//! - `drop-heads-P`: in every kept layer, remove P% of the attention heads, those of lowest
//!   importance score ‖W_V,h‖_F · ‖W_O,h‖_F (the value rows and output-projection columns
//!   that carry the head's output into the residual stream). The head width is kept, so the
//!   attention runs at `heads × head width`, narrower than the hidden size.
//!
//! Ranking is by weights alone (no data, no training), ties broken by position, so a recipe
//! gives the same file on every machine. The pruned model is written once as safetensors in
//! the cache (`models/pruned/`), keyed by the model's weights and the recipe, and every backend
//! and the ONNX export read that file. A recipe that removes nothing (`drop-ffn-0`,
//! `keep-layers-6` on a 6-layer model) writes exactly the original tensors.

use std::path::Path;

use super::bert::{BertTensors, Dense, LayerTensors};
use super::BertConfig;
use crate::error::{Error, Result};

/// Version of the pruning code; part of every cache name of a pruned model, so a change in how
/// recipes rank or cut can never be mixed with old caches.
pub const PRUNE_VERSION: u32 = 1;

pub use crate::spec::{Recipe, ALLOWED};

/// Indices of the `keep` highest scores, in their original order; ties go to the lower index.
fn top_indices(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut kept = order[..keep].to_vec();
    kept.sort_unstable();
    kept
}

fn norm(v: impl Iterator<Item = f32>) -> f64 {
    v.map(|x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// Rows `groups` (each `group` rows long) of a row-major `[rows, cols]` weight or a bias.
fn rows(w: &[f32], cols: usize, group: usize, groups: &[usize]) -> Vec<f32> {
    groups
        .iter()
        .flat_map(|&g| &w[g * group * cols..(g + 1) * group * cols])
        .copied()
        .collect()
}

/// Columns `groups` (each `group` columns wide) of a row-major weight with `cols` columns.
fn cols(w: &[f32], cols: usize, group: usize, groups: &[usize]) -> Vec<f32> {
    w.chunks_exact(cols)
        .flat_map(|row| {
            groups
                .iter()
                .flat_map(move |&g| &row[g * group..(g + 1) * group])
        })
        .copied()
        .collect()
}

/// Removes the lowest-ranked FFN neurons of one layer, keeping `keep`.
fn prune_ffn(l: &mut LayerTensors<Vec<f32>>, h: usize, keep: usize) {
    let i = l.intermediate.bias.len();
    let scores: Vec<f64> = (0..i)
        .map(|n| {
            let w_in = norm(l.intermediate.weight[n * h..(n + 1) * h].iter().copied());
            let w_out = norm(l.output.weight.iter().skip(n).step_by(i).copied());
            w_in * w_out
        })
        .collect();
    let k = top_indices(&scores, keep);
    l.intermediate = Dense {
        weight: rows(&l.intermediate.weight, h, 1, &k),
        bias: rows(&l.intermediate.bias, 1, 1, &k),
    };
    l.output.weight = cols(&l.output.weight, i, 1, &k);
}

/// Removes the lowest-ranked attention heads of one layer, keeping `keep` of `nh` heads of
/// width `hd`.
fn prune_heads(l: &mut LayerTensors<Vec<f32>>, h: usize, nh: usize, hd: usize, keep: usize) {
    let a = nh * hd;
    let scores: Vec<f64> = (0..nh)
        .map(|g| {
            let v = norm(l.value.weight[g * hd * h..(g + 1) * hd * h].iter().copied());
            let o = norm(cols(&l.attn_out.weight, a, hd, &[g]).into_iter());
            v * o
        })
        .collect();
    let k = top_indices(&scores, keep);
    for d in [&mut l.query, &mut l.key, &mut l.value] {
        d.weight = rows(&d.weight, h, hd, &k);
        d.bias = rows(&d.bias, 1, hd, &k);
    }
    l.attn_out.weight = cols(&l.attn_out.weight, a, hd, &k);
}

/// Applies `recipe` to the tensors of a model of architecture `cfg`; returns the pruned
/// architecture and tensors.
pub fn prune(
    recipe: &Recipe,
    cfg: &BertConfig,
    mut t: BertTensors<Vec<f32>>,
) -> std::result::Result<(BertConfig, BertTensors<Vec<f32>>), String> {
    let out = recipe.apply(cfg)?;
    t.layers.truncate(out.num_layers);
    let h = cfg.hidden_size;
    // A step runs whenever the recipe names it, even when it keeps everything: `drop-ffn-0`
    // goes through the same ranking and cutting as `drop-ffn-50` (tests/levers.rs checks that
    // it reproduces the full model exactly).
    for l in &mut t.layers {
        if recipe.drop_ffn_pct.is_some() {
            prune_ffn(l, h, out.intermediate_size);
        }
        if recipe.drop_heads_pct.is_some() {
            prune_heads(l, h, cfg.num_heads, cfg.head_dim(), out.num_heads);
        }
    }
    Ok((out, t))
}

/// Reads the model at `weights` (architecture `cfg`), prunes it by `recipe` and writes the
/// result atomically to `path`. Returns the pruned architecture.
pub fn write_pruned(
    recipe: &Recipe,
    cfg: &BertConfig,
    weights: &Path,
    path: &Path,
) -> Result<BertConfig> {
    let bytes = std::fs::read(weights).map_err(|e| Error::io(weights, e))?;
    let t = super::tensor_file::read_f32(cfg, &bytes, weights)?;
    let (pruned, t) = prune(recipe, cfg, t)
        .map_err(|why| Error::Model(format!("pruning {}: {why}", weights.display())))?;
    let tensors = super::bert::tensor_shapes(&pruned)
        .into_iter()
        .zip(t.flatten())
        .map(|((name, shape), v)| (name, shape, v))
        .collect();
    let note = format!("pruned recipe={recipe} v{PRUNE_VERSION}");
    super::tensor_file::write_f32(path, tensors, &note)?;
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Preset;

    #[test]
    fn names_round_trip_and_bad_names_say_what_is_allowed() {
        for s in [
            "full",
            "keep-layers-4",
            "drop-ffn-50",
            "drop-heads-50",
            "keep-layers-3+drop-ffn-25+drop-heads-50",
        ] {
            assert_eq!(Recipe::parse(s).unwrap().name(), s);
        }
        assert_eq!(
            Recipe::parse("drop-heads-50+keep-layers-4").unwrap().name(),
            "keep-layers-4+drop-heads-50"
        );
        assert!(Recipe::parse("full").unwrap().is_full());
        for bad in [
            "",
            "half",
            "keep-layers-0",
            "drop-ffn-96",
            "drop-ffn-x",
            "keep-layers-2+keep-layers-3",
            "full+drop-ffn-10",
        ] {
            let e = Recipe::parse(bad).unwrap_err();
            assert!(e.contains("allowed: \"full\""), "{bad}: {e}");
        }
    }

    #[test]
    fn apply_gives_the_pruned_shapes_and_refuses_more_layers_than_the_model_has() {
        let c = Preset::MiniLmL6.config();
        let p = Recipe::parse("keep-layers-4+drop-ffn-50+drop-heads-50")
            .unwrap()
            .apply(&c)
            .unwrap();
        assert_eq!(
            (p.num_layers, p.intermediate_size, p.num_heads, p.head_dim()),
            (4, 768, 6, 32)
        );
        assert_eq!((p.hidden_size, p.attention_width()), (384, 192));
        let e = Recipe::parse("keep-layers-7")
            .unwrap()
            .apply(&c)
            .unwrap_err();
        assert!(e.contains("more layers than the model has (6)"), "{e}");
    }

    /// Distinct values per tensor so a wrong row or column shows.
    fn numbered(cfg: &BertConfig) -> BertTensors<Vec<f32>> {
        let mut k = 0.0f32;
        BertTensors::read(cfg, |_, shape| {
            let n: usize = shape.iter().product();
            let v = (0..n).map(|j| k + j as f32).collect();
            k += 1e6;
            Ok::<_, std::convert::Infallible>(v)
        })
        .unwrap_or_else(|e| match e {})
    }

    #[test]
    fn heads_and_neurons_of_lowest_magnitude_go_and_the_rest_keep_their_weights() {
        let cfg = Preset::Tiny.config(); // 2 heads of 64, FFN 512
        let mut t = numbered(&cfg);
        // Head 0 carries nothing: it must be the one removed.
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        for v in &mut t.layers[0].value.weight[..hd * h] {
            *v = 0.0;
        }
        let full = t.clone();
        let r = Recipe::parse("drop-heads-50+drop-ffn-50").unwrap();
        let (pc, p) = prune(&r, &cfg, t).unwrap();
        assert_eq!((pc.num_heads, pc.intermediate_size), (1, 256));
        let l0 = &p.layers[0];
        // Kept head 1: rows hd..2hd of Q, K, V; columns hd..2hd of the output projection.
        assert_eq!(
            l0.query.weight,
            full.layers[0].query.weight[hd * h..].to_vec()
        );
        assert_eq!(l0.value.bias, full.layers[0].value.bias[hd..].to_vec());
        assert_eq!(
            l0.attn_out.weight[..hd],
            full.layers[0].attn_out.weight[hd..2 * hd]
        );
        assert_eq!(l0.attn_out.bias, full.layers[0].attn_out.bias);
        // Numbered weights grow with the index: the last 256 neurons have the largest norms.
        let i = cfg.intermediate_size;
        assert_eq!(
            l0.intermediate.weight[..h],
            full.layers[0].intermediate.weight[256 * h..257 * h]
        );
        assert_eq!(
            l0.output.weight[..256],
            full.layers[0].output.weight[256..i]
        );
        // Shapes agree with the pruned config's tensor list.
        for ((_, shape), v) in crate::model::bert::tensor_shapes(&pc)
            .iter()
            .zip(p.flatten())
        {
            assert_eq!(shape.iter().product::<usize>(), v.len());
        }
    }

    #[test]
    fn a_recipe_that_removes_nothing_keeps_every_tensor() {
        let cfg = Preset::Tiny.config();
        let t = numbered(&cfg);
        let r = Recipe::parse("keep-layers-2+drop-ffn-0+drop-heads-0").unwrap();
        let (pc, p) = prune(&r, &cfg, t.clone()).unwrap();
        assert_eq!(pc, cfg);
        assert_eq!(p.flatten(), t.flatten());
    }
}
