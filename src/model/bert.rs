//! The tensors of a BERT encoder, named once.
//!
//! Hugging Face's `BertModel` naming, as all-MiniLM-L6-v2 uses it (no `bert.` prefix, no
//! pooler). [`BertTensors::read`] walks every tensor in file order through a caller's `get`,
//! which receives the name and the expected shape; candle, torch, the ONNX exporter, the float64
//! reference and the synthetic-weight writer all read the model through it, so none of them
//! spells a tensor name.

use super::BertConfig;

/// A linear layer: `weight` is `[out, in]`.
#[derive(Debug, Clone)]
pub struct Dense<T> {
    pub weight: T,
    pub bias: T,
}

/// A LayerNorm's scale and shift.
#[derive(Debug, Clone)]
pub struct Norm<T> {
    pub weight: T,
    pub bias: T,
}

/// The embedding tables and their LayerNorm.
#[derive(Debug, Clone)]
pub struct EmbeddingTensors<T> {
    pub word: T,
    pub position: T,
    pub token_type: T,
    pub norm: Norm<T>,
}

/// One encoder layer (post-LayerNorm).
#[derive(Debug, Clone)]
pub struct LayerTensors<T> {
    pub query: Dense<T>,
    pub key: Dense<T>,
    pub value: Dense<T>,
    /// The attention output projection.
    pub attn_out: Dense<T>,
    /// LayerNorm after attention + residual.
    pub attn_norm: Norm<T>,
    pub intermediate: Dense<T>,
    pub output: Dense<T>,
    /// LayerNorm after the feed-forward + residual.
    pub out_norm: Norm<T>,
}

/// Every tensor of a BERT encoder.
#[derive(Debug, Clone)]
pub struct BertTensors<T> {
    pub embeddings: EmbeddingTensors<T>,
    pub layers: Vec<LayerTensors<T>>,
}

type Get<'a, T, E> = dyn FnMut(&str, &[usize]) -> Result<T, E> + 'a;

fn dense<T, E>(get: &mut Get<T, E>, p: &str, out: usize, inp: usize) -> Result<Dense<T>, E> {
    Ok(Dense {
        weight: get(&format!("{p}.weight"), &[out, inp])?,
        bias: get(&format!("{p}.bias"), &[out])?,
    })
}

fn norm<T, E>(get: &mut Get<T, E>, p: &str, h: usize) -> Result<Norm<T>, E> {
    Ok(Norm {
        weight: get(&format!("{p}.weight"), &[h])?,
        bias: get(&format!("{p}.bias"), &[h])?,
    })
}

impl<T> BertTensors<T> {
    /// Reads every tensor of `cfg`'s model, in file order, with `get(name, shape)`.
    pub fn read<E>(
        cfg: &BertConfig,
        mut get: impl FnMut(&str, &[usize]) -> Result<T, E>,
    ) -> Result<Self, E> {
        let get: &mut Get<T, E> = &mut get;
        let (h, a, i) = (
            cfg.hidden_size,
            cfg.attention_width(),
            cfg.intermediate_size,
        );
        let embeddings = EmbeddingTensors {
            word: get("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?,
            position: get(
                "embeddings.position_embeddings.weight",
                &[cfg.max_position, h],
            )?,
            token_type: get(
                "embeddings.token_type_embeddings.weight",
                &[cfg.type_vocab_size, h],
            )?,
            norm: norm(get, "embeddings.LayerNorm", h)?,
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |n: &str| format!("encoder.layer.{l}.{n}");
            layers.push(LayerTensors {
                query: dense(get, &p("attention.self.query"), a, h)?,
                key: dense(get, &p("attention.self.key"), a, h)?,
                value: dense(get, &p("attention.self.value"), a, h)?,
                attn_out: dense(get, &p("attention.output.dense"), h, a)?,
                attn_norm: norm(get, &p("attention.output.LayerNorm"), h)?,
                intermediate: dense(get, &p("intermediate.dense"), i, h)?,
                output: dense(get, &p("output.dense"), h, i)?,
                out_norm: norm(get, &p("output.LayerNorm"), h)?,
            });
        }
        Ok(BertTensors { embeddings, layers })
    }
}

impl<T> BertTensors<T> {
    /// Every tensor in file order, the order [`BertTensors::read`] asks for them (and
    /// [`tensor_shapes`] names them); a test pins the two orders together.
    pub fn flatten(self) -> Vec<T> {
        let e = self.embeddings;
        let mut v = vec![e.word, e.position, e.token_type, e.norm.weight, e.norm.bias];
        for l in self.layers {
            for d in [l.query, l.key, l.value, l.attn_out] {
                v.extend([d.weight, d.bias]);
            }
            v.extend([l.attn_norm.weight, l.attn_norm.bias]);
            for d in [l.intermediate, l.output] {
                v.extend([d.weight, d.bias]);
            }
            v.extend([l.out_norm.weight, l.out_norm.bias]);
        }
        v
    }
}

impl<T> LayerTensors<T> {
    /// Q, K and V as one `[3a, h]` projection (`a` the attention width) (one GEMM per layer), stacking the three weights
    /// and the three biases along the output axis with the caller's `cat`.
    pub fn fused_qkv<E>(
        &self,
        mut cat: impl FnMut([&T; 3]) -> Result<T, E>,
    ) -> Result<Dense<T>, E> {
        Ok(Dense {
            weight: cat([&self.query.weight, &self.key.weight, &self.value.weight])?,
            bias: cat([&self.query.bias, &self.key.bias, &self.value.bias])?,
        })
    }
}

/// Names and shapes of every tensor of `cfg`'s model, in file order.
pub fn tensor_shapes(cfg: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    BertTensors::read(cfg, |name, shape| {
        v.push((name.to_string(), shape.to_vec()));
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_or_else(|e| match e {});
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Preset;

    #[test]
    fn flatten_gives_the_tensors_in_the_order_read_asks_for_them() {
        let cfg = Preset::Tiny.config();
        let names = BertTensors::read(&cfg, |name, _| {
            Ok::<_, std::convert::Infallible>(name.to_string())
        })
        .unwrap_or_else(|e| match e {});
        let order: Vec<String> = tensor_shapes(&cfg).into_iter().map(|t| t.0).collect();
        assert_eq!(names.flatten(), order);
    }
}
