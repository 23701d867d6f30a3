//! The BERT forward on libtorch: layers, attention, pooling, the `Encoder` face.

use tch::{Kind, TchError, Tensor};

use super::*;
use crate::backend::torch::ffi::Finish;
use crate::backend::{Device, Embeddings, Encoder, EncoderOptions, Precision};
use crate::error::{Error, Result};
use crate::model::bert::{BertTensors, Dense, Norm};
use crate::model::{BertConfig, ModelFiles, TokenBatch};

pub(super) struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

/// The layer's oneDNN per-row weight, which the fused int8 path needs.
fn fused(l: &Linear) -> Result<&quant::RowsPacked, TchError> {
    l.onednn_rows()
        .ok_or_else(|| TchError::Torch("fused int8 layer without oneDNN's weight".into()))
}

impl LayerNorm {
    /// `LayerNorm(· + residual)` as the fused int8 layer's finish.
    fn after_add<'a>(&'a self, residual: &'a Tensor) -> Finish<'a> {
        Finish::AddNorm {
            residual,
            weight: &self.w,
            bias: &self.b,
            eps: self.eps,
        }
    }

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
    /// Per-op times of the forward, with `RECBENCH_TORCH_OPS=1` (CPU only).
    ops: OpClock,
    /// int8 with oneDNN's per-row layer in every linear: the layer's ops run fused (see
    /// [`INT8_FUSE_ENV`]).
    fused: bool,
}

/// `RECBENCH_TORCH_INT8_FUSE=0` turns off the fused int8 layer. Where `onednn_rows` runs every
/// linear layer, recbench by default runs the epilogue of the attention output and of the output
/// layer in one per-row pass with the residual add, LayerNorm and the quantization of the rows
/// the next linear layer takes (the intermediate one, or the next layer's Q, K and V), each row
/// in cache throughout. Unfused, each is a separate libtorch op or pass over memory.
pub const INT8_FUSE_ENV: &str = "RECBENCH_TORCH_INT8_FUSE";

/// `RECBENCH_TORCH_OPS=1`: the CPU forward times each of its ops (and `onednn_rows`' quantize,
/// matmul and epilogue inside the shim), and the run's notes carry the split over its timed
/// window ([`Encoder::op_times`]). libtorch's CPU ops return when their intra-op threads are
/// done, so the wall clock around each is that op's time; on CUDA (asynchronous) it stays off.
pub const OPS_ENV: &str = "RECBENCH_TORCH_OPS";

/// (op, total seconds, calls) in first-seen order, and the number of forwards.
type OpTimes = (Vec<(&'static str, f64, u64)>, u64);

struct OpClock {
    on: bool,
    times: std::sync::Mutex<OpTimes>,
}

impl OpClock {
    fn new(cpu: bool) -> OpClock {
        let on = cpu && std::env::var(OPS_ENV).is_ok_and(|v| v == "1");
        if on {
            quant::int8_split(true);
        }
        OpClock {
            on,
            times: Default::default(),
        }
    }

    /// `f()`, timed under `op` when on.
    fn time<T>(
        &self,
        op: &'static str,
        f: impl FnOnce() -> Result<T, TchError>,
    ) -> Result<T, TchError> {
        if !self.on {
            return f();
        }
        let t = std::time::Instant::now();
        let out = f()?;
        let dt = t.elapsed().as_secs_f64();
        let mut g = self.times.lock().unwrap_or_else(|e| e.into_inner());
        match g.0.iter_mut().find(|(name, ..)| *name == op) {
            Some(e) => {
                e.1 += dt;
                e.2 += 1;
            }
            None => g.0.push((op, dt, 1)),
        }
        Ok(out)
    }

    fn forward_done(&self) {
        if self.on {
            self.times.lock().unwrap_or_else(|e| e.into_inner()).1 += 1;
        }
    }

    /// The ops' ms per forward since the last call, and their shares, on one line; starts a
    /// new count.
    fn take(&self) -> Option<String> {
        if !self.on {
            return None;
        }
        let (ops, n) = std::mem::take(&mut *self.times.lock().unwrap_or_else(|e| e.into_inner()));
        let split = quant::int8_split(true);
        let total: f64 = ops.iter().map(|e| e.1).sum();
        if n == 0 || total <= 0.0 {
            return None;
        }
        let share = |s: f64| format!("{:.3} ms ({:.1}%)", s * 1e3 / n as f64, 100.0 * s / total);
        let mut parts: Vec<String> = ops
            .iter()
            .map(|(op, t, _)| format!("{op} {}", share(*t)))
            .collect();
        if split.iter().sum::<f64>() > 0.0 {
            parts.push(format!(
                "of which in onednn_rows: quantize rows {}, oneDNN matmul {}, epilogue {}",
                share(split[0] * 1e-3),
                share(split[1] * 1e-3),
                share(split[2] * 1e-3)
            ));
        }
        Some(format!(
            "torch per-op times ({OPS_ENV}=1), ms per forward over {n} forwards, {:.3} ms in \
             all: {}",
            total * 1e3 / n as f64,
            parts.join(", ")
        ))
    }
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
        let fused = opts.precision == Precision::Int8
            && layers.iter().all(|l| {
                [&l.qkv, &l.attn_out, &l.inter, &l.out]
                    .iter()
                    .all(|k| k.onednn_rows().is_some())
            })
            && std::env::var(INT8_FUSE_ENV).map_or(true, |v| v != "0");
        let (kernels, tag) = if chosen {
            let (mut note, mut tag) = chooser.describe();
            if fused {
                note.push_str(
                    "; fused: epilogue + residual add + LayerNorm (or GELU) + the next layer's \
                     per-row quantization in one pass",
                );
                // "-gelu": GELU moved into the fused pass (other float results than the
                // "+fused" item embeddings cached before it).
                tag = Some(format!("{}+fused-gelu", tag.unwrap_or_default()));
            }
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
            ops: OpClock::new(cpu),
            fused,
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
        let ops = &self.ops;
        let ids = to_i64(&batch.input_ids)?;
        let types = to_i64(&batch.type_ids)?;
        let mask = to_i64(&batch.attention_mask)?.f_reshape([b, s])?;
        // Boolean mask, true where a key may be attended to, broadcast over heads and queries.
        let attend = mask.f_gt(0)?.f_reshape([b, 1, 1, s])?;

        let mut x = ops.time("embeddings", || {
            let pos = self.pos.f_narrow(0, 0, s)?;
            let x = self
                .word
                .f_index_select(0, &ids)?
                .f_add(&self.typ.f_index_select(0, &types)?)?
                .f_reshape([b, s, h])?
                .f_add(&pos)?
                .f_reshape([b * s, h])?;
            self.emb_ln.forward(&x)
        })?;
        // The fused int8 path carries each layer input's quantized rows beside it.
        let mut xq = if self.fused {
            Some(ops.time("quantize rows", || quant::quantize_rows_u8(&x))?)
        } else {
            None
        };
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            // [b*s, 3a] → [3, b, nh, s, hd] (a = nh·hd, the hidden size unless heads were pruned); q, k, v are strided views, which SDPA accepts.
            let qkv = ops
                .time("qkv linear", || match (&xq, layer.qkv.onednn_rows()) {
                    (Some(xq), Some(p)) => Ok(p.fused(xq, Finish::Plain, false)?.0),
                    _ => layer.qkv.forward(&x),
                })?
                .f_reshape([b, s, 3, nh, hd])?
                .f_permute([2, 0, 3, 1, 4])?;
            let ctx = ops.time("attention", || {
                let (q, k, v) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
                Tensor::f_scaled_dot_product_attention(
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
                .f_reshape([b * s, a])
            })?;
            if self.fused {
                let cq = ops.time("quantize rows", || quant::quantize_rows_u8(&ctx))?;
                let (x1, x1q) = ops.time("attn out + add + norm", || {
                    fused(&layer.attn_out)?.fused(&cq, layer.ln1.after_add(&x), true)
                })?;
                let x1q = x1q.expect("asked for");
                let (_, iq) = ops.time("intermediate linear + gelu", || {
                    fused(&layer.inter)?.fused(&x1q, Finish::Gelu, true)
                })?;
                let iq = iq.expect("asked for");
                let (y, yq) = ops.time("output + add + norm", || {
                    fused(&layer.out)?.fused(&iq, layer.ln2.after_add(&x1), i < last)
                })?;
                (x, xq) = (y, yq);
                continue;
            }
            let y = ops.time("attn out linear", || layer.attn_out.forward(&ctx))?;
            let x1 = ops.time("add + layer norm", || layer.ln1.forward(&y.f_add(&x)?))?;
            let inter = ops.time("intermediate linear", || layer.inter.forward(&x1))?;
            let inter = ops.time("gelu", || inter.f_gelu("none"))?;
            let y = ops.time("output linear", || layer.out.forward(&inter))?;
            x = ops.time("add + layer norm", || layer.ln2.forward(&y.f_add(&x1)?))?;
        }
        let out = ops.time("pooling", || {
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
        })?;
        ops.forward_done();
        Ok(out)
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

    fn op_times(&mut self) -> Option<String> {
        self.ops.take()
    }

    fn cache_tag(&self) -> Option<String> {
        self.tag.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-op note counts each op once per name, per forward, over the forwards since the
    /// last take, and a take starts a new count; off, it says nothing.
    #[test]
    fn op_clock_reports_each_op_per_forward_and_starts_again() {
        let clock = OpClock {
            on: true,
            times: Default::default(),
        };
        for _ in 0..2 {
            for op in ["norm", "linear", "norm"] {
                clock
                    .time(op, || {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        Ok(())
                    })
                    .unwrap();
            }
            clock.forward_done();
        }
        let note = clock.take().expect("two forwards timed");
        assert!(note.contains("over 2 forwards"), "{note}");
        assert_eq!(note.matches("norm ").count(), 1, "{note}");
        assert!(note.find("norm ") < note.find("linear "), "{note}");
        assert!(clock.take().is_none(), "a take starts a new count");
        let off = OpClock {
            on: false,
            times: Default::default(),
        };
        off.time("linear", || Ok(())).unwrap();
        off.forward_done();
        assert!(off.take().is_none());
    }
}
