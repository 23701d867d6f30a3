//! BERT configuration presets.
//!
//! The synthetic presets span two orders of magnitude of compute so that a sweep shows where each
//! piece of hardware stops being the cheapest; `minilm-l6` is the real all-MiniLM-L6-v2.

pub use crate::spec::{BertConfig, Preset};

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
