//! The BERT forward on libtorch: layers, attention, pooling, the `Encoder` face.

use tch::{Kind, TchError, Tensor};

use super::*;
use crate::backend::{Device, Embeddings, Encoder, EncoderOptions, Precision};
use crate::error::{Error, Result};
use crate::model::bert::{BertTensors, Dense, Norm};
use crate::model::{BertConfig, ModelFiles, TokenBatch};

pub(super) struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let h = self.w.size()[0];
        x.f_layer_norm(
            [h].as_slice(),
            Some(&self.w),
            Some(&self.b),
            self.eps,
            false,
        )
    }
}

pub(super) struct Layer {
    qkv: Linear,
    attn_out: Linear,
    ln1: LayerNorm,
    inter: Linear,
    out: Linear,
    ln2: LayerNorm,
}

/// BERT encoder with masked-mean pooling on libtorch.
pub struct TorchBert {
    cfg: BertConfig,
    device: tch::Device,
    word: Tensor,
    pos: Tensor,
    typ: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    kernels: String,
    /// Which kernels computed the outputs, for cache keys of computed embeddings.
    tag: Option<String>,
    /// The catalog's item embeddings on the device, `[items, hidden]` in the scoring kind
    /// (`Encoder::load_items`).
    items: Option<Tensor>,
    /// The activations' kind (f32 for fp32 and int8).
    kind: Kind,
    threads: usize,
}

impl TorchBert {
    /// Loads the safetensors weights of `files` at the requested precision.
    pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<TorchBert> {
        TorchBert::load_with(files, opts, LinearKernel::from_env()?)
    }

    /// As `load`, with the fp32 linear kernel given rather than read from the environment.
    pub fn load_with(
        files: &ModelFiles,
        opts: EncoderOptions,
        linear_kernel: LinearKernel,
    ) -> Result<TorchBert> {
        supports(opts.device, opts.precision).map_err(|m| Error::backend("torch", m))?;
        let device = match opts.device {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => {
                let n = tch::Cuda::device_count();
                if (i as i64) >= n {
                    return Err(Error::backend(
                        "torch",
                        format!("libtorch sees {n} CUDA device(s), not cuda:{i}"),
                    ));
                }
                tch::Device::Cuda(i)
            }
        };
        set_threads(opts.threads)?;
        let kind = match opts.precision {
            Precision::Fp32 | Precision::Int8 => Kind::Float,
            Precision::Fp16 => Kind::Half,
            Precision::Bf16 => Kind::BFloat16,
        };
        let _guard = tch::no_grad_guard();
        let tensors: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&files.weights)
                .map_err(|e| {
                    Error::Model(format!(
                        "{}: cannot load weights: {e}",
                        files.weights.display()
                    ))
                })?
                .into_iter()
                .collect();
        let cfg = files.config.clone();
        let get = |name: &str| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| {
                Error::Model(format!(
                    "{}: missing tensor {name}",
                    files.weights.display()
                ))
            })?;
            t.f_to_kind(Kind::Float)
                .and_then(|t| t.f_to(device))
                .map_err(err)
        };
        let t = BertTensors::read(&cfg, |name, _| get(name))?;
        // LayerNorm parameters in the compute dtype (libtorch's CPU kernels accumulate in f32).
        let ln = |n: &Norm<Tensor>| -> Result<LayerNorm> {
            Ok(LayerNorm {
                w: n.weight.f_to_kind(kind).map_err(err)?,
                b: n.bias.f_to_kind(kind).map_err(err)?,
                eps: cfg.layer_norm_eps,
            })
        };
        let cpu = device == tch::Device::Cpu;
        let rows = opts
            .shape_hint
            .map_or(DEFAULT_ROWS, |(seqs, tokens)| seqs * tokens) as i64;
        let mut chooser = match opts.precision {
            Precision::Int8 => KernelChoice {
                what: "int8 linear layers",
                env: INT8_ENV,
                names: INT8_KERNELS,
                forced: int8_forced()?,
                raced: INT8_RACED,
                rows,
                threads: opts.threads,
                model: files.identity(),
                decided: Vec::new(),
            },
            _ => KernelChoice {
                what: "fp32 linear layers (oneDNN from 2^24 multiply-adds per call)",
                env: LINEAR_ENV,
                names: FP32_KERNELS,
                forced: match linear_kernel {
                    LinearKernel::Auto => None,
                    LinearKernel::Aten => Some(0),
                    LinearKernel::OneDnn => Some(1),
                    LinearKernel::OneDnnPacked => Some(2),
                },
                raced: FP32_KERNELS.len(),
                rows,
                threads: opts.threads,
                model: files.identity(),
                decided: Vec::new(),
            },
        };
        let chosen = cpu && matches!(opts.precision, Precision::Fp32 | Precision::Int8);
        let mut linear = |d: &Dense<Tensor>| -> Result<Linear> {
            let (w, b) = (&d.weight, &d.bias);
            let make = |k| Linear::new(w, b, opts.precision, kind, k, rows).map_err(err);
            if !chosen {
                return make(0);
            }
            let (out, inner) = w.size2().map_err(err)?;
            let floor = (opts.precision == Precision::Fp32 && rows * inner * out < ONEDNN_MIN_MACS)
                .then_some("below the oneDNN size floor");
            let n = chooser.raced;
            let k = chooser.pick((inner, out), floor, || {
                let all: Vec<_> = (0..n)
                    .map(|k| Linear::new(w, b, opts.precision, kind, k, rows))
                    .collect();
                time_all(&all, inner, rows)
            })?;
            make(k)
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in &t.layers {
            // One [3a, h] projection instead of three: one GEMM per layer for Q, K and V.
            let qkv = l.fused_qkv(|[q, k, v]| Tensor::f_cat(&[q, k, v], 0).map_err(err))?;
            layers.push(Layer {
                qkv: linear(&qkv)?,
                attn_out: linear(&l.attn_out)?,
                ln1: ln(&l.attn_norm)?,
                inter: linear(&l.intermediate)?,
                out: linear(&l.output)?,
                ln2: ln(&l.out_norm)?,
            });
        }
        let (kernels, tag) = if chosen {
            let (mut note, tag) = chooser.describe();
            let rows = INT8_KERNELS.iter().position(|k| *k == "fbgemm_rows");
            if chooser.names == INT8_KERNELS && chooser.uses(rows) {
                if let Some(bits) = quant::rows_bits() {
                    note.push_str(&format!(
                        "; fbgemm_rows quantizes activations per row to {bits} bits on this CPU \
                         (8 with VNNI, 7 with AVX2 alone)"
                    ));
                }
            }
            (note, tag)
        } else {
            (
                format!("{} linear layers: aten linear", opts.precision.name()),
                None,
            )
        };
        let e = &t.embeddings;
        let emb = |x: &Tensor| x.f_to_kind(kind).map_err(err);
        Ok(TorchBert {
            word: emb(&e.word)?,
            pos: emb(&e.position)?,
            typ: emb(&e.token_type)?,
            emb_ln: ln(&e.norm)?,
            layers,
            cfg,
            device,
            kernels,
            tag,
            items: None,
            kind,
            threads: opts.threads,
        })
    }

    /// Pooled, L2-normalised embeddings `[batch, hidden]` in f32.
    fn forward(&self, batch: &TokenBatch) -> Result<Tensor, TchError> {
        let (b, s) = (batch.batch as i64, batch.seq_len as i64);
        let (h, nh, hd, a) = (
            self.cfg.hidden_size as i64,
            self.cfg.num_heads as i64,
            self.cfg.head_dim() as i64,
            self.cfg.attention_width() as i64,
        );
        let to_i64 = |v: &[u32]| -> Result<Tensor, TchError> {
            let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
            Tensor::f_from_slice(&v)?.f_to(self.device)
        };
        let ids = to_i64(&batch.input_ids)?;
        let types = to_i64(&batch.type_ids)?;
        let mask = to_i64(&batch.attention_mask)?.f_reshape([b, s])?;
        // Boolean mask, true where a key may be attended to, broadcast over heads and queries.
        let attend = mask.f_gt(0)?.f_reshape([b, 1, 1, s])?;

        let pos = self.pos.f_narrow(0, 0, s)?;
        let x = self
            .word
            .f_index_select(0, &ids)?
            .f_add(&self.typ.f_index_select(0, &types)?)?
            .f_reshape([b, s, h])?
            .f_add(&pos)?
            .f_reshape([b * s, h])?;
        let mut x = self.emb_ln.forward(&x)?;
        for layer in &self.layers {
            // [b*s, 3a] → [3, b, nh, s, hd] (a = nh·hd, the hidden size unless heads were pruned); q, k, v are strided views, which SDPA accepts.
            let qkv = layer
                .qkv
                .forward(&x)?
                .f_reshape([b, s, 3, nh, hd])?
                .f_permute([2, 0, 3, 1, 4])?;
            let (q, k, v) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
            let ctx = Tensor::f_scaled_dot_product_attention(
                &q,
                &k,
                &v,
                Some(&attend),
                0.0,
                false,
                None,
                false,
            )?
            .f_transpose(1, 2)?
            .f_reshape([b * s, a])?;
            let x1 = layer
                .ln1
                .forward(&layer.attn_out.forward(&ctx)?.f_add(&x)?)?;
            let inter = layer.inter.forward(&x1)?.f_gelu("none")?;
            x = layer.ln2.forward(&layer.out.forward(&inter)?.f_add(&x1)?)?;
        }
        // Masked mean over tokens, then L2 normalisation, in f32.
        let x = x.f_to_kind(Kind::Float)?.f_reshape([b, s, h])?;
        let m = mask.f_to_kind(Kind::Float)?.f_unsqueeze(2)?;
        let summed = x
            .f_mul(&m)?
            .f_sum_dim_intlist([1].as_slice(), false, Kind::Float)?;
        let counts = m
            .f_sum_dim_intlist([1].as_slice(), false, Kind::Float)?
            .f_clamp_min(1.0)?;
        let mean = summed.f_div(&counts)?;
        let norm = mean
            .f_square()?
            .f_sum_dim_intlist([1].as_slice(), true, Kind::Float)?
            .f_sqrt()?
            .f_clamp_min(1e-12)?;
        mean.f_div(&norm)
    }
}

impl TorchBert {
    /// The scoring kind on this device: the activations' on CUDA (f16 or bf16 for
    /// half-precision runs), f32 on the CPU (libtorch's CPU half-precision products are slow
    /// without AVX512-FP16).
    fn scoring_kind(&self) -> Kind {
        if self.device == tch::Device::Cpu {
            Kind::Float
        } else {
            self.kind
        }
    }

    fn synchronize(&self) {
        if let tch::Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// `mm` against the loaded items and `topk` where they are; only `[rows, k]` ids and
    /// scores are copied back.
    fn rank(&self, users: &Tensor, k: usize) -> Result<Vec<Vec<(usize, f32)>>, TchError> {
        let items = self
            .items
            .as_ref()
            .ok_or_else(|| TchError::Kind("encode_and_rank before load_items".into()))?;
        let n = items.size()[0];
        let scores = users.f_to_kind(items.kind())?.f_mm(&items.f_tr()?)?;
        let (top, ids) = scores.f_topk((k as i64).min(n), -1, true, true)?;
        let rows = users.size()[0] as usize;
        let top = Vec::<f32>::try_from(
            &top.f_to_kind(Kind::Float)?
                .f_to(tch::Device::Cpu)?
                .f_view([-1])?,
        )?;
        let ids = Vec::<i64>::try_from(&ids.f_to(tch::Device::Cpu)?.f_view([-1])?)?;
        Ok(crate::backend::Ranked::rows_of(&ids, &top, rows, k))
    }
}

impl Encoder for TorchBert {
    fn load_items(&mut self, items: crate::backend::ItemsRef<'_>) -> Result<Option<String>> {
        let _guard = tch::no_grad_guard();
        let kind = self.scoring_kind();
        let t = Tensor::f_from_slice(items.data)
            .and_then(|t| t.f_view([items.len() as i64, items.dim as i64]))
            .and_then(|t| t.f_to_kind(kind))
            .and_then(|t| t.f_to(self.device))
            .map_err(err)?;
        self.items = Some(t);
        let (name, at) = match self.device {
            tch::Device::Cpu => ("f32", format!("the CPU ({} threads)", self.threads)),
            _ => (
                match kind {
                    Kind::Half => "f16",
                    Kind::BFloat16 => "bf16",
                    _ => "f32",
                },
                "the GPU".to_string(),
            ),
        };
        Ok(Some(format!(
            "{} item embeddings in {name} on {at}: torch mm + topk",
            items.len()
        )))
    }

    fn encode_and_rank(&mut self, batch: &TokenBatch, k: usize) -> Result<crate::backend::Ranked> {
        let _guard = tch::no_grad_guard();
        let t = std::time::Instant::now();
        let users = self.forward(batch).map_err(err)?;
        self.synchronize();
        let encode_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        let top = self.rank(&users, k).map_err(err)?;
        Ok(crate::backend::Ranked {
            top,
            encode_ms,
            score_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings> {
        let _guard = tch::no_grad_guard();
        let out = self
            .forward(batch)
            .and_then(|t| t.f_to(tch::Device::Cpu)?.f_contiguous()?.f_view([-1]))
            .map_err(err)?;
        let data = Vec::<f32>::try_from(&out).map_err(err)?;
        Ok(Embeddings {
            rows: batch.batch,
            dim: self.cfg.hidden_size,
            data,
        })
    }

    fn kernels(&self) -> Option<String> {
        Some(self.kernels.clone())
    }

    fn cache_tag(&self) -> Option<String> {
        self.tag.clone()
    }
}
