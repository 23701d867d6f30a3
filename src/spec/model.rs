//! The model a run names: a BERT architecture ([`BertConfig`]), the named presets
//! ([`Preset`]) and the pruning recipes ([`Recipe`]) with the architecture each leaves. What
//! the recipes do to weights is `model::prune`'s; building and loading models is `model`'s.

use serde::{Deserialize, Serialize};

/// Architecture of a BERT encoder (post-LayerNorm, GELU, absolute positions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Width of one attention head. `hidden_size / num_heads` in every preset; head pruning
    /// keeps it and lowers `num_heads`, so the attention runs narrower than the hidden size.
    pub head_size: usize,
    pub intermediate_size: usize,
    pub max_position: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

impl BertConfig {
    fn synthetic(num_layers: usize, hidden_size: usize, num_heads: usize) -> Self {
        BertConfig {
            vocab_size: 30522,
            hidden_size,
            num_layers,
            num_heads,
            head_size: hidden_size / num_heads,
            intermediate_size: 4 * hidden_size,
            max_position: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_size
    }

    /// Width of Q, K, V and the attention context: `num_heads × head_dim`, the hidden size
    /// unless heads were pruned.
    pub fn attention_width(&self) -> usize {
        self.num_heads * self.head_size
    }

    /// Number of parameters.
    pub fn parameters(&self) -> u64 {
        let h = self.hidden_size as u64;
        let a = self.attention_width() as u64;
        let i = self.intermediate_size as u64;
        let emb = (self.vocab_size + self.max_position + self.type_vocab_size) as u64 * h + 2 * h;
        // Q, K, V (weights and biases), the output projection, the FFN, two LayerNorms.
        let layer = 3 * (h * a + a) + (a * h + h) + 2 * (h * i) + i + h + 4 * h;
        emb + self.num_layers as u64 * layer
    }

    /// Multiply-add FLOPs (2 per MAC) of one forward pass of one sequence of `seq_len` tokens:
    /// the four attention projections, the two attention products and the feed-forward block
    /// (at the attention width and intermediate size of a pruned model).
    /// Embedding lookups, softmax, LayerNorm and pooling are not counted (they are memory-bound
    /// and below 1% of the total for every preset).
    pub fn flops_per_sequence(&self, seq_len: usize) -> f64 {
        let (s, h, a, i) = (
            seq_len as f64,
            self.hidden_size as f64,
            self.attention_width() as f64,
            self.intermediate_size as f64,
        );
        let per_layer = 8.0 * s * h * a + 4.0 * s * h * i + 4.0 * s * s * a;
        self.num_layers as f64 * per_layer
    }
}

/// A named model: a synthetic size or the real MiniLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    Tiny,
    Mini,
    Small,
    Medium,
    Base,
    Large,
    #[serde(rename = "minilm-l6")]
    MiniLmL6,
}

impl Preset {
    /// Every preset, smallest first.
    pub const ALL: [Preset; 7] = [
        Preset::Tiny,
        Preset::Mini,
        Preset::Small,
        Preset::Medium,
        Preset::Base,
        Preset::Large,
        Preset::MiniLmL6,
    ];

    /// Name used in scenario files, results and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Mini => "mini",
            Preset::Small => "small",
            Preset::Medium => "medium",
            Preset::Base => "base",
            Preset::Large => "large",
            Preset::MiniLmL6 => "minilm-l6",
        }
    }

    /// Parses a preset name.
    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Comma-separated list of names, for error messages.
    pub fn allowed() -> String {
        Preset::ALL.map(|p| p.name()).join(", ")
    }

    /// Whether the weights are real trained weights (as opposed to seeded random ones).
    pub fn is_real(self) -> bool {
        matches!(self, Preset::MiniLmL6)
    }

    /// The architecture of this preset.
    pub fn config(self) -> BertConfig {
        match self {
            Preset::Tiny => BertConfig::synthetic(2, 128, 2),
            Preset::Mini => BertConfig::synthetic(4, 256, 4),
            Preset::Small => BertConfig::synthetic(4, 512, 8),
            Preset::Medium => BertConfig::synthetic(8, 512, 8),
            Preset::Base => BertConfig::synthetic(12, 768, 12),
            Preset::Large => BertConfig::synthetic(24, 1024, 16),
            Preset::MiniLmL6 => BertConfig {
                num_heads: 12,
                intermediate_size: 1536,
                ..BertConfig::synthetic(6, 384, 12)
            },
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The recipes a scenario may name, for error messages.
pub const ALLOWED: &str = "\"full\", or steps joined by '+': \"keep-layers-N\" (keep the first N \
    layers), \"drop-ffn-P\" (remove P% of the FFN neurons, 0 to 95), \"drop-heads-P\" (remove P% \
    of the attention heads, 0 to 95)";

/// A pruning recipe. The default is `full`: nothing removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Recipe {
    /// Encoder layers kept (the first N); `None` keeps all.
    pub keep_layers: Option<usize>,
    /// Percent of FFN neurons removed per layer.
    pub drop_ffn_pct: Option<u32>,
    /// Percent of attention heads removed per layer.
    pub drop_heads_pct: Option<u32>,
}

impl Recipe {
    /// Parses a recipe name; the error says what is allowed.
    pub fn parse(s: &str) -> std::result::Result<Recipe, String> {
        let mut r = Recipe::default();
        if s == "full" {
            return Ok(r);
        }
        let bad = |why: String| Err(format!("{s:?}: {why}; allowed: {ALLOWED}"));
        if s.is_empty() {
            return bad("an empty recipe".into());
        }
        for step in s.split('+') {
            let num = |prefix: &str| step.strip_prefix(prefix).map(|n| n.parse::<u64>());
            if let Some(n) = num("keep-layers-") {
                match n {
                    Ok(n) if (1..=1024).contains(&n) && r.keep_layers.is_none() => {
                        r.keep_layers = Some(n as usize)
                    }
                    Ok(_) if r.keep_layers.is_some() => {
                        return bad("keep-layers is given twice".into())
                    }
                    _ => return bad(format!("{step:?} needs a layer count from 1")),
                }
            } else if let Some(p) = num("drop-ffn-") {
                match p {
                    Ok(p) if p <= 95 && r.drop_ffn_pct.is_none() => r.drop_ffn_pct = Some(p as u32),
                    Ok(_) if r.drop_ffn_pct.is_some() => {
                        return bad("drop-ffn is given twice".into())
                    }
                    _ => return bad(format!("{step:?} needs a percentage from 0 to 95")),
                }
            } else if let Some(p) = num("drop-heads-") {
                match p {
                    Ok(p) if p <= 95 && r.drop_heads_pct.is_none() => {
                        r.drop_heads_pct = Some(p as u32)
                    }
                    Ok(_) if r.drop_heads_pct.is_some() => {
                        return bad("drop-heads is given twice".into())
                    }
                    _ => return bad(format!("{step:?} needs a percentage from 0 to 95")),
                }
            } else {
                return bad(format!("unknown step {step:?}"));
            }
        }
        Ok(r)
    }

    /// The canonical name: `full`, or the steps in the order layers, FFN, heads.
    pub fn name(&self) -> String {
        let mut steps = Vec::new();
        if let Some(n) = self.keep_layers {
            steps.push(format!("keep-layers-{n}"));
        }
        if let Some(p) = self.drop_ffn_pct {
            steps.push(format!("drop-ffn-{p}"));
        }
        if let Some(p) = self.drop_heads_pct {
            steps.push(format!("drop-heads-{p}"));
        }
        if steps.is_empty() {
            "full".into()
        } else {
            steps.join("+")
        }
    }

    /// Whether this is `full`: the model as published, no pruned file.
    pub fn is_full(&self) -> bool {
        *self == Recipe::default()
    }

    /// The architecture `cfg` has after this recipe, or why the recipe does not fit it.
    pub fn apply(&self, cfg: &BertConfig) -> std::result::Result<BertConfig, String> {
        let mut out = cfg.clone();
        if let Some(n) = self.keep_layers {
            if n > cfg.num_layers {
                return Err(format!(
                    "keep-layers-{n} keeps more layers than the model has ({})",
                    cfg.num_layers
                ));
            }
            out.num_layers = n;
        }
        if let Some(p) = self.drop_ffn_pct {
            out.intermediate_size = kept(cfg.intermediate_size, p);
        }
        if let Some(p) = self.drop_heads_pct {
            out.num_heads = kept(cfg.num_heads, p);
        }
        Ok(out)
    }
}

impl std::fmt::Display for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl TryFrom<String> for Recipe {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Recipe::parse(&s)
    }
}

impl From<Recipe> for String {
    fn from(r: Recipe) -> String {
        r.name()
    }
}

/// How many of `n` units are left after removing `pct` percent (rounded, at least one).
fn kept(n: usize, pct: u32) -> usize {
    ((n as f64 * (100 - pct) as f64 / 100.0).round() as usize).clamp(1, n)
}
