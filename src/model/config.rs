//! BERT configuration presets.
//!
//! The synthetic presets span two orders of magnitude of compute so that a sweep shows where each
//! piece of hardware stops being the cheapest; `minilm-l6` is the real all-MiniLM-L6-v2.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_shapes() {
        let shape = |p: Preset| {
            let c = p.config();
            (c.num_layers, c.hidden_size, c.num_heads)
        };
        assert_eq!(shape(Preset::Tiny), (2, 128, 2));
        assert_eq!(shape(Preset::Mini), (4, 256, 4));
        assert_eq!(shape(Preset::Small), (4, 512, 8));
        assert_eq!(shape(Preset::Medium), (8, 512, 8));
        assert_eq!(shape(Preset::Base), (12, 768, 12));
        assert_eq!(shape(Preset::Large), (24, 1024, 16));
        assert_eq!(shape(Preset::MiniLmL6), (6, 384, 12));
        for p in Preset::ALL {
            assert_eq!(p.config().vocab_size, 30522);
            assert_eq!(p.config().max_position, 512);
            assert_eq!(Preset::parse(p.name()), Some(p));
        }
    }

    #[test]
    fn bert_base_has_the_well_known_parameter_count() {
        // BERT-base without the pooler: 109.48M parameters minus the 0.59M pooler.
        let n = Preset::Base.config().parameters();
        assert!((108_800_000..109_000_000).contains(&n), "{n}");
    }

    #[test]
    fn flops_match_the_closed_form_for_bert_base() {
        // 12 layers × (24·s·h² + 4·s²·h) at s = 128, h = 768.
        let f = Preset::Base.config().flops_per_sequence(128);
        let expect = 12.0 * (24.0 * 128.0 * 768.0f64.powi(2) + 4.0 * 128.0f64.powi(2) * 768.0);
        assert!((f - expect).abs() < 1.0);
    }
}
