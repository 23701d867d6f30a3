//! The candle backend: a BERT forward written with candle-core ops (pure Rust on the CPU; on
//! CUDA with candle's kernels and cuBLAS when built with `cuda`).
//!
//! It is written here rather than taken from candle-transformers because the latter fills the
//! attention mask with a value that overflows to -inf in f16/bf16 and produces NaN (pinned by
//! tests/candle_stock.rs for candle-transformers 0.11, which also checks that this BERT and the
//! stock one agree within 1e-5 in fp32 on MiniLM's real weights). Here the
//! attention softmax, LayerNorm and pooling run in f32 whatever the precision, the matmuls run
//! in the run's precision. int8 layers run on the CPU on recbench's int8 GEMM (`qgemm.rs`:
//! weights per output channel, activations quantized per row, AVX-512 VNNI where the CPU has
//! it) or on candle's Q8_0 quantized matmul (weights in blocks of 32 with one scale each,
//! activations quantized on the fly), on its block dot products or, padded to whole 256-value
//! superblocks, on its VNNI tiles: each layer shape is timed every way at load and the fastest
//! kept and remembered (`RECBENCH_CANDLE_INT8=gemm|blocks|tiles` forces one; `int8.rs`). On
//! CUDA int8 runs on candle's Q8_0.
//!
//! On the CPU, with f32 activations (fp32 and int8), the layers run either on candle's own ops
//! or on the fused kernels of `fused.rs` (bias and GELU in the GEMM's pass, attention per
//! sequence and head without head-split copies, residual add inside LayerNorm), whichever is
//! faster on the run's shape on this host, timed at load and remembered
//! (`RECBENCH_CANDLE_KERNELS=ops|fused` forces one).
//!
//! This backend in fp32 is also the reference every other backend is compared with; the
//! reference is computed with candle's own ops (a load without a shape hint never measures).

mod bf16;
pub mod bgemm;
#[cfg(feature = "cuda")]
mod device_ops;
#[cfg(feature = "cuda")]
mod device_topk;
pub mod fused;
mod int8;
pub mod qgemm;
mod topk;

pub use bf16::{bf16_forced, BF16_ENV};
use int8::*;
pub use int8::{int8_forced, unmeasured_layout, Int8Layout, INT8_ENV};
pub use topk::{mean_pool, top_k_rows_chunked, TOPK_CHUNK};

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device as CDevice, Module, Tensor};

use super::{Device, Embeddings, Encoder, EncoderOptions, Precision};
use crate::error::{Error, Result};
use crate::model::bert::{BertTensors, Dense, Norm};
use crate::model::{BertConfig, ModelFiles, TokenBatch};

fn err(e: candle_core::Error) -> Error {
    Error::backend("candle", e)
}

pub const COMPILED: bool = true;

/// Which (device, precision) pairs this backend runs, or why not.
pub fn supports(device: Device, _precision: Precision) -> std::result::Result<(), String> {
    super::cuda_ready("candle", device)?;
    if device != Device::Cpu {
        cuda_libraries()?;
    }
    Ok(())
}

/// The CUDA libraries candle's cudarc opens when a CUDA device is first used (cuBLAS, cuBLASLt,
/// cuRAND, NVRTC), looked up once per process; a GPU host's PyTorch installation has them in
/// `site-packages/nvidia/cu13/lib` (scripts/gpu-check.sh puts that on LD_LIBRARY_PATH).
fn cuda_libraries() -> std::result::Result<(), String> {
    static FOUND: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            for (stem, majors) in [
                ("cublas", &["13", "12"][..]),
                ("cublasLt", &["13", "12"][..]),
                ("curand", &["10"][..]),
                ("nvrtc", &["13", "12"][..]),
            ] {
                crate::telemetry::cuda::find_library(stem, majors).map_err(|why| {
                    format!("candle on CUDA needs the CUDA library {stem}: {why}")
                })?;
            }
            Ok(())
        })
        .clone()
}

pub fn runtime_version() -> String {
    env!("RECBENCH_CANDLE_VERSION").to_string()
}

pub fn describe() -> String {
    format!(
        "pure Rust; on CPU candle's ops or fused kernels, the faster by measurement at load \
         ({KERNELS_ENV}=ops|fused forces one); int8 on recbench's int8 GEMM (weights per output \
         channel, activations per row; AVX-512 VNNI where the CPU has it) or candle's Q8_0 \
         quantized matmul, on its block dot products or its VNNI tiles (inner size padded to a \
         multiple of 256), the fastest per layer shape by measurement \
         ({INT8_ENV}=gemm|blocks|tiles forces one); bf16 on the CPU on recbench's bf16 GEMM \
         (f32 sums; AVX-512 BF16 where the CPU has it) or in f32, the faster per layer shape by \
         measurement ({BF16_ENV}=gemm|f32 forces one)"
    )
}

/// Forces the CPU layer kernels: `ops` (candle's own) or `fused`; unset or `auto` measures.
pub const KERNELS_ENV: &str = "RECBENCH_CANDLE_KERNELS";

/// Nothing but the precision changes the outputs of candle's own ops, which a load without a
/// shape hint (the reference) runs, save int8 layers, which run there on recbench's GEMM where
/// the CPU has AVX-512 VNNI or as `RECBENCH_CANDLE_INT8` forces ([`unmeasured_layout`]), and bf16,
/// whose layers run on recbench's bf16 GEMM there (or in f32, forced by `RECBENCH_CANDLE_BF16`);
/// an encoder on the fused kernels or on measured layouts says so itself (`Encoder::cache_tag`).
pub fn cache_tag(precision: Precision) -> Option<String> {
    match precision {
        Precision::Int8 => match int8_forced() {
            Ok(Some(l)) => (l != Int8Layout::Blocks).then(|| l.name().into()),
            _ => (unmeasured_layout() == Int8Layout::Gemm).then(|| "gemm".into()),
        },
        Precision::Bf16 => Some(match bf16_forced() {
            Ok(Some(false)) => "f32".into(),
            _ => "bf16gemm".into(),
        }),
        _ => None,
    }
}

/// `RECBENCH_CANDLE_KERNELS`: `Some(true)` fused, `Some(false)` candle's ops, `None` measure.
fn kernels_forced() -> Result<Option<bool>> {
    forced_either(KERNELS_ENV, "kernels", ["ops", "fused"])
}

/// Environment variable `name` as one of two settings: `Some(false)` the first, `Some(true)`
/// the second, `None` unset, empty or `auto` (measure); an error names it and what it allows.
fn forced_either(name: &str, what: &str, [no, yes]: [&str; 2]) -> Result<Option<bool>> {
    match std::env::var(name).ok().as_deref() {
        None | Some("") | Some("auto") => Ok(None),
        Some(v) if v == no => Ok(Some(false)),
        Some(v) if v == yes => Ok(Some(true)),
        Some(other) => Err(Error::input(
            "<environment>",
            None,
            name,
            format!("unknown {what} {other:?}; allowed: auto, {no}, {yes}"),
        )),
    }
}

pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<Box<dyn Encoder>> {
    Ok(Box::new(CandleBert::load(files, opts)?))
}

/// The `gemm` crate's f32 product, the kernel candle runs on CPU.
pub fn gemm_gflops(n: usize, threads: usize, budget: std::time::Duration) -> Option<f64> {
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 5) % 11) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let best = super::best_gflops(n, budget, || {
        // SAFETY: a, b and c are n×n row-major buffers matching the strides given.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            );
        }
    });
    std::hint::black_box(&c);
    Some(best)
}

enum Linear {
    /// Weight transposed to `[in, out]`, contiguous, in the compute dtype.
    Dense { w_t: Tensor, b: Tensor },
    /// Q8_0 weight with `pad` zero columns appended (see [`choose_int8_layout`]); input (padded
    /// as the weight on every call) and output in f32.
    Quant { w: QMatMul, b: Tensor, pad: usize },
    /// Int8 per output channel on recbench's int8 GEMM (CPU), bias inside; f32 in and out.
    Gemm(qgemm::QWeight),
    /// bf16 on recbench's bf16 GEMM (CPU), bias inside; f32 in and out.
    Bf16(bgemm::BWeight),
}

impl Linear {
    /// `layout`: how an int8 weight runs (ignored for the other precisions); `bf16_gemm`:
    /// whether a bf16 weight runs on recbench's bf16 GEMM (else in `dtype`).
    fn new(
        w: &Tensor,
        b: &Tensor,
        precision: Precision,
        dtype: DType,
        layout: Int8Layout,
        bf16_gemm: bool,
    ) -> candle_core::Result<Self> {
        Ok(match (precision, layout) {
            (Precision::Bf16, _) if bf16_gemm => Linear::Bf16(bgemm::BWeight::new(w, b)?),
            (Precision::Int8, Int8Layout::Gemm) => Linear::Gemm(qgemm::QWeight::new(w, b)?),
            (Precision::Int8, _) => {
                let pad = if layout == Int8Layout::Tiles {
                    tile_pad(w.dim(1)?)
                } else {
                    0
                };
                Linear::Quant {
                    w: q8_0(w, pad)?,
                    b: b.clone(),
                    pad,
                }
            }
            _ => Linear::Dense {
                w_t: w.t()?.contiguous()?.to_dtype(dtype)?,
                b: b.to_dtype(dtype)?,
            },
        })
    }

    /// `x` is `[rows, in]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Dense { w_t, b } => x.matmul(w_t)?.broadcast_add(b),
            Linear::Quant { w, b, pad } => w.forward(&padded(x, *pad)?)?.broadcast_add(b),
            Linear::Gemm(w) => qgemm::linear(x, w, false),
            Linear::Bf16(w) => bgemm::linear(x, w, false),
        }
    }

    /// As `forward`, then GELU when `gelu`, then `res` added: the bias, GELU and residual in
    /// one pass of recbench's CUDA kernel.
    #[cfg(feature = "cuda")]
    fn forward_cuda(
        &self,
        x: &Tensor,
        gelu: bool,
        res: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (y, b) = match self {
            Linear::Dense { w_t, b } => (x.matmul(w_t)?, b),
            Linear::Quant { w, b, pad } => (w.forward(&padded(x, *pad)?)?, b),
            Linear::Gemm(_) | Linear::Bf16(_) => {
                candle_core::bail!("recbench's int8 and bf16 GEMMs run on the CPU only")
            }
        };
        device_ops::bias_act(&y, b, gelu, res)
    }

    /// How an int8 weight runs (`None` for the other precisions).
    fn layout(&self) -> Option<Int8Layout> {
        match self {
            Linear::Quant { pad: 0, .. } => Some(Int8Layout::Blocks),
            Linear::Quant { .. } => Some(Int8Layout::Tiles),
            Linear::Gemm(_) => Some(Int8Layout::Gemm),
            Linear::Dense { .. } | Linear::Bf16(_) => None,
        }
    }

    /// As `forward`, then GELU when `gelu`, on the fused kernels (f32 on the CPU).
    fn forward_fused(&self, x: &Tensor, gelu: bool, threads: usize) -> candle_core::Result<Tensor> {
        match self {
            Linear::Dense { w_t, b } => fused::linear(x, w_t, b, gelu, threads),
            Linear::Quant { w, b, pad } => fused::bias(&w.forward(&padded(x, *pad)?)?, b, gelu),
            Linear::Gemm(w) => qgemm::linear(x, w, gelu),
            Linear::Bf16(w) => bgemm::linear(x, w, gelu),
        }
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Normalises in the weights' dtype (f32 on the CPU; on CUDA the activations', where
    /// candle's kernel accumulates in f32) and returns `dtype`.
    fn forward(&self, x: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&x.to_dtype(self.w.dtype())?, &self.w, &self.b, self.eps)?
            .to_dtype(dtype)
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    ln1: LayerNorm,
    inter: Linear,
    out: Linear,
    ln2: LayerNorm,
}

/// BERT encoder with masked-mean pooling on candle.
pub struct CandleBert {
    cfg: BertConfig,
    device: CDevice,
    /// Dtype of activations between layers (f32 for fp32 and int8).
    dtype: DType,
    word: Tensor,
    pos: Tensor,
    typ: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    /// Whether the layers run on the fused kernels (CPU, f32 activations).
    fused: bool,
    threads: usize,
    /// How the kernels were chosen, for the run's notes (`None`: no choice here).
    chosen: Option<String>,
    /// How the int8 or bf16 layers run, for the run's notes (`None`: neither, or not on the
    /// CPU).
    lowp_layers: Option<String>,
    /// What of the int8 or bf16 layers' choices changes the outputs, for the cache tag.
    lowp_tag: Option<String>,
    /// The catalog's item embeddings on the device, `[items, hidden]` in the scoring dtype
    /// (`Encoder::load_items`).
    items: Option<Tensor>,
    /// Whether the layers run on CUDA with recbench's kernels for the element-wise steps
    /// (checked against candle's ops at load; `device_ops`).
    cuda_layers: bool,
    /// Whether scoring on CUDA takes its top-k from recbench's kernel (checked against the
    /// host's top-k in `load_items`) rather than from [`top_k_rows_chunked`].
    topk_kernel: bool,
}

impl CandleBert {
    /// Loads the safetensors weights of `files` at the requested precision, with the CPU layer
    /// kernels `RECBENCH_CANDLE_KERNELS` forces or chosen as [`CandleBert::load_with`] says.
    pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<CandleBert> {
        Self::load_with(files, opts, kernels_forced()?)
    }

    /// As [`CandleBert::load`] with the CPU layer kernels given: `Some(true)` the fused
    /// kernels, `Some(false)` candle's ops, `None` chosen (see `choose_kernels`).
    pub fn load_with(
        files: &ModelFiles,
        opts: EncoderOptions,
        fused: Option<bool>,
    ) -> Result<CandleBert> {
        Self::load_forced(files, opts, fused, int8_forced()?)
    }

    /// As [`CandleBert::load_with`] with the int8 layout given too (`None`: chosen, see
    /// `choose_int8_layout`).
    pub fn load_forced(
        files: &ModelFiles,
        opts: EncoderOptions,
        fused: Option<bool>,
        int8_layout: Option<Int8Layout>,
    ) -> Result<CandleBert> {
        supports(opts.device, opts.precision).map_err(|m| Error::backend("candle", m))?;
        let device = match opts.device {
            Device::Cpu => CDevice::Cpu,
            // Opens the CUDA libraries (cuBLAS, cuRAND, NVRTC) on first use; a host that lacks
            // one gets candle's error naming it.
            Device::Cuda(i) => CDevice::new_cuda(i).map_err(err)?,
        };
        // bf16 on the CPU keeps f32 activations: its products run on recbench's bf16 GEMM (or
        // in f32, where that is faster), since candle's CPU bf16 matmul widens to f32 anyway.
        let dtype = match opts.precision {
            Precision::Fp32 | Precision::Int8 => DType::F32,
            Precision::Bf16 if device.is_cpu() => DType::F32,
            Precision::Fp16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        };
        let tensors = candle_core::safetensors::load(&files.weights, &device).map_err(|e| {
            Error::Model(format!(
                "{}: cannot load weights: {e}",
                files.weights.display()
            ))
        })?;
        let cfg = files.config.clone();
        let get = |name: &str| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| {
                Error::Model(format!(
                    "{}: missing tensor {name}",
                    files.weights.display()
                ))
            })?;
            t.to_dtype(DType::F32).map_err(err)
        };
        let t = BertTensors::read(&cfg, |name, _| get(name))?;
        let eps = cfg.layer_norm_eps as f32;
        // LayerNorm and the attention softmax run in f32 on the CPU (candle's CPU kernels for
        // f16/bf16 are emulated); on CUDA in the activations' dtype, whose kernels accumulate
        // in f32, instead of casting every activation to f32 and back.
        let norm_dtype = if device.is_cpu() { DType::F32 } else { dtype };
        let ln = |n: &Norm<Tensor>| -> Result<LayerNorm> {
            Ok(LayerNorm {
                w: n.weight.to_dtype(norm_dtype).map_err(err)?,
                b: n.bias.to_dtype(norm_dtype).map_err(err)?,
                eps,
            })
        };
        // One [3a, h] projection instead of three: one GEMM per layer for Q, K and V.
        let qkvs = t
            .layers
            .iter()
            .map(|l| l.fused_qkv(|[q, k, v]| Tensor::cat(&[q, k, v], 0).map_err(err)))
            .collect::<Result<Vec<_>>>()?;
        let mut shapes = Vec::new();
        for (l, qkv) in t.layers.iter().zip(&qkvs) {
            for w in [
                &qkv.weight,
                &l.attn_out.weight,
                &l.intermediate.weight,
                &l.output.weight,
            ] {
                let (n, k) = w.dims2().map_err(err)?;
                shapes.push((k, n));
            }
        }
        let (layouts, bf16_layers, lowp_layers, lowp_tag) = if device.is_cpu() {
            choose_lowp_layers(&shapes, opts, int8_layout, &files.identity())?
        } else {
            (Int8Layouts::new(), bf16::Bf16Layers::new(), None, None)
        };
        let linear = |d: &Dense<Tensor>| {
            let (n, k) = d.weight.dims2().map_err(err)?;
            let layout = layouts.get(&(k, n)).copied().unwrap_or(Int8Layout::Blocks);
            let bf16_gemm = bf16_layers.get(&(k, n)).copied().unwrap_or(false);
            Linear::new(&d.weight, &d.bias, opts.precision, dtype, layout, bf16_gemm).map_err(err)
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for (l, qkv) in t.layers.iter().zip(qkvs) {
            layers.push(Layer {
                qkv: linear(&qkv)?,
                attn_out: linear(&l.attn_out)?,
                ln1: ln(&l.attn_norm)?,
                inter: linear(&l.intermediate)?,
                out: linear(&l.output)?,
                ln2: ln(&l.out_norm)?,
            });
        }
        let e = t.embeddings;
        let mut bert = CandleBert {
            emb_ln: ln(&e.norm)?,
            word: e.word,
            pos: e.position,
            typ: e.token_type,
            layers,
            cfg,
            device,
            dtype,
            fused: false,
            threads: opts.threads.max(1),
            chosen: None,
            lowp_layers,
            lowp_tag,
            items: None,
            cuda_layers: false,
            topk_kernel: false,
        };
        if bert.device.is_cpu() && dtype == DType::F32 {
            bert.choose_kernels(opts, fused, &files.identity())?;
        } else if !bert.device.is_cpu() {
            bert.choose_cuda_layers(fused)?;
        }
        Ok(bert)
    }

    /// Candle's ops or the fused kernels: `forced`, else candle's
    /// ops without a shape hint (the reference), else the faster on the hinted shape (best of
    /// 3 interleaved forwards after a warm-up each), remembered per host, candle version,
    /// threads, precision and shape.
    fn choose_kernels(
        &mut self,
        opts: EncoderOptions,
        forced: Option<bool>,
        model: &str,
    ) -> Result<()> {
        if let Some(f) = forced {
            self.fused = f;
            self.chosen = Some(format!(
                "{} (forced by {KERNELS_ENV})",
                if f { "fused" } else { "ops" }
            ));
            return Ok(());
        }
        let Some((b, s)) = opts.shape_hint else {
            self.chosen = Some("ops (no shape to measure on: candle's own ops)".into());
            return Ok(());
        };
        // The fused kernels are recbench's own code: a new build measures again (`host()`
        // includes the build's commit).
        let key = format!(
            "cpu {}, candle {}, {model}, {} threads, {}, ops or fused, {b}x{s}",
            crate::tuning::choices::host(),
            runtime_version(),
            self.threads,
            opts.precision
        );
        let decided = crate::tuning::choices::recall_or_measure(
            "candle-kernels",
            &key,
            |v| Some(v.starts_with("fused")),
            || {
                let rows = b * s;
                let batch = TokenBatch {
                    batch: b,
                    seq_len: s,
                    input_ids: (0..rows as u32).map(|i| 1000 + i % 5000).collect(),
                    type_ids: vec![0; rows],
                    attention_mask: vec![1; rows],
                };
                let (t_ops, t_fused) = crate::tuning::race(
                    || self.forward_with(&batch, false).map(drop),
                    || self.forward_with(&batch, true).map(drop),
                )
                .map_err(err)?;
                let fused = t_fused < t_ops;
                let mut how = format!(
                    "{} (ops {t_ops:.2} ms, fused {t_fused:.2} ms per forward of {b} × {s} tokens)",
                    if fused { "fused" } else { "ops" }
                );
                if opts.precision == Precision::Int8 {
                    how.push_str(&self.int8_against_f32(rows).map_err(err)?);
                }
                Ok::<_, Error>((fused, how))
            },
        )?;
        self.fused = decided.value;
        self.chosen = Some(decided.told());
        Ok(())
    }

    fn forward(&self, batch: &TokenBatch) -> candle_core::Result<Tensor> {
        self.forward_with(batch, self.fused)
    }

    fn forward_with(&self, batch: &TokenBatch, fused: bool) -> candle_core::Result<Tensor> {
        let (b, s, h) = (batch.batch, batch.seq_len, self.cfg.hidden_size);
        let (nh, hd, a) = (
            self.cfg.num_heads,
            self.cfg.head_dim(),
            self.cfg.attention_width(),
        );
        let ids = Tensor::from_slice(&batch.input_ids, b * s, &self.device)?;
        let types = Tensor::from_slice(&batch.type_ids, b * s, &self.device)?;
        let mask = Tensor::from_slice(&batch.attention_mask, (b, s), &self.device)?
            .to_dtype(DType::F32)?;
        // Additive mask in the softmax's dtype: 0 for tokens, -1e4 for padding (finite in f16
        // and bf16, so no -inf and no NaN; exp(-1e4) is 0 in every dtype). None where the
        // batch has no padding.
        let norm_dtype = self.emb_ln.w.dtype();
        let bias = if batch.attention_mask.iter().all(|&m| m == 1) {
            None
        } else {
            Some(
                ((mask.clone() - 1.0)? * 1e4)?
                    .to_dtype(norm_dtype)?
                    .reshape((b, 1, 1, s))?,
            )
        };

        let pos = self.pos.narrow(0, 0, s)?;
        let x = self
            .word
            .index_select(&ids, 0)?
            .reshape((b, s, h))?
            .broadcast_add(&pos)?
            .add(&self.typ.index_select(&types, 0)?.reshape((b, s, h))?)?;
        let mut x = self.emb_ln.forward(&x.reshape((b * s, h))?, self.dtype)?;
        let scale = 1.0 / (hd as f64).sqrt();
        if fused {
            let mask_bias = ((mask.clone() - 1.0)? * 1e9)?;
            let t = self.threads;
            for layer in &self.layers {
                let qkv = layer.qkv.forward_fused(&x, false, t)?;
                let ctx = fused::attention(&qkv, &mask_bias, (b, s), (nh, hd), scale as f32)?;
                let attn = layer.attn_out.forward_fused(&ctx, false, t)?;
                let x1 =
                    fused::add_layer_norm(&attn, &x, &layer.ln1.w, &layer.ln1.b, layer.ln1.eps)?;
                let inter = layer.inter.forward_fused(&x1, true, t)?;
                let ffn = layer.out.forward_fused(&inter, false, t)?;
                x = fused::add_layer_norm(&ffn, &x1, &layer.ln2.w, &layer.ln2.b, layer.ln2.eps)?;
            }
            return mean_pool(&x.reshape((b, s, h))?, &mask);
        }
        #[cfg(feature = "cuda")]
        if self.cuda_layers {
            for layer in &self.layers {
                x = self.cuda_layer(layer, &x, bias.as_ref(), (b, s), scale as f32)?;
            }
            return mean_pool(&x.to_dtype(DType::F32)?.reshape((b, s, h))?, &mask);
        }
        for layer in &self.layers {
            let qkv = layer
                .qkv
                .forward(&x)?
                .reshape((b, s, 3, nh, hd))?
                .permute((2, 0, 3, 1, 4))?;
            // The scale on the scores, as the fused CPU kernels apply it (their int8 results
            // are held to these to a rounding step); on CUDA `cuda_layer` scales Q instead.
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let mut scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(norm_dtype)?;
            if let Some(bias) = &bias {
                scores = scores.broadcast_add(bias)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
            let ctx = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * s, a))?;
            let attn = layer.attn_out.forward(&ctx)?;
            let x1 = layer.ln1.forward(&(attn + &x)?, self.dtype)?;
            let inter = layer.inter.forward(&x1)?.gelu_erf()?;
            let ffn = layer.out.forward(&inter)?;
            x = layer.ln2.forward(&(ffn + &x1)?, self.dtype)?;
        }
        mean_pool(&x.to_dtype(DType::F32)?.reshape((b, s, h))?, &mask)
    }
}

impl CandleBert {
    /// One layer on CUDA: candle's matmuls, softmax and LayerNorm, recbench's kernels for the
    /// biases (with GELU or the residual in the same pass) and for splitting and merging the
    /// heads. `x` is `[batch·seq, hidden]` in the activations' dtype; `bias` the additive mask.
    #[cfg(feature = "cuda")]
    fn cuda_layer(
        &self,
        layer: &Layer,
        x: &Tensor,
        bias: Option<&Tensor>,
        (b, s): (usize, usize),
        scale: f32,
    ) -> candle_core::Result<Tensor> {
        let heads = (self.cfg.num_heads, self.cfg.head_dim());
        let qkv = layer.qkv.forward_cuda(x, false, None)?;
        let (q, k, v) = device_ops::split_heads(&qkv, (b, s), heads, scale)?;
        let mut scores = q.matmul(&k.t()?)?.to_dtype(self.emb_ln.w.dtype())?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let ctx = device_ops::merge_heads(&probs.matmul(&v)?)?;
        let attn = layer.attn_out.forward_cuda(&ctx, false, Some(x))?;
        let x1 = layer.ln1.forward(&attn, self.dtype)?;
        let inter = layer.inter.forward_cuda(&x1, true, None)?;
        let ffn = layer.out.forward_cuda(&inter, false, Some(&x1))?;
        layer.ln2.forward(&ffn, self.dtype)
    }

    /// On CUDA: recbench's layer kernels unless `forced` says candle's ops (`Some(false)`,
    /// `RECBENCH_CANDLE_KERNELS=ops`), and only where they agree with candle's ops on a check
    /// batch (two rows of 24 tokens, one padded): every pooled embedding's cosine with candle's
    /// must reach 0.9999 (f32) or 0.999 (f16, bf16). What was chosen and why goes in the notes.
    fn choose_cuda_layers(&mut self, forced: Option<bool>) -> Result<()> {
        if !cfg!(feature = "cuda") {
            return Ok(());
        }
        if forced == Some(false) {
            self.chosen = Some(format!("candle's ops (forced by {KERNELS_ENV}=ops)"));
            return Ok(());
        }
        let ids: Vec<u32> = (0..24u32).map(|i| 1000 + 37 * i % 5000).collect();
        let batch = TokenBatch::from_sequences(vec![
            (ids.clone(), vec![0; 24]),
            (ids[..15].to_vec(), vec![0; 15]),
        ]);
        let ops = self.forward_with(&batch, false).map_err(err)?;
        self.cuda_layers = true;
        let mine = self.forward_with(&batch, false);
        let bar = if self.dtype == DType::F32 {
            0.9999
        } else {
            0.999
        };
        let agree = mine.and_then(|m| {
            // Rows are unit vectors: the cosine is the dot product.
            (m * &ops)?.sum(1)?.to_vec1::<f32>()
        });
        let why = match agree {
            Ok(cos) if cos.iter().all(|&c| f64::from(c) >= bar) => None,
            Ok(cos) => Some(format!(
                "its check batch's cosines with candle's ops are {cos:?}, below {bar}"
            )),
            Err(e) => Some(e.to_string()),
        };
        self.cuda_layers = why.is_none();
        self.chosen = Some(match why {
            None => "candle's matmuls, softmax and LayerNorm with recbench's CUDA kernels for the \
                     bias, GELU and residual (one pass each) and the heads' split and merge \
                     (checked against candle's ops at load)"
                .to_string(),
            Some(why) => {
                format!("candle's ops (recbench's CUDA layer kernels are not used: {why})")
            }
        });
        Ok(())
    }
}

impl CandleBert {
    /// The scoring dtype on this device: the activations' on CUDA (f16 or bf16 tensor cores
    /// for half-precision runs), f32 on the CPU (candle's CPU half-precision products are
    /// emulated and slower).
    fn scoring_dtype(&self) -> DType {
        if self.device.is_cpu() {
            DType::F32
        } else {
            self.dtype
        }
    }

    /// Scores `users` (`[rows, hidden]` f32) against the loaded items and returns each row's
    /// top `k`: on CUDA with candle's matmul and recbench's top-k kernel (`device_topk`; for
    /// k above its limit [`top_k_rows_chunked`]; only the ids and scores are copied back), on
    /// the CPU with candle's matmul and the host's one-pass top-k.
    fn rank(&self, users: &Tensor, k: usize) -> Result<Vec<Vec<(usize, f32)>>> {
        let items = self
            .items
            .as_ref()
            .ok_or_else(|| Error::backend("candle", "encode_and_rank before load_items"))?;
        let scores = users
            .to_dtype(items.dtype())
            .and_then(|u| u.matmul(&items.t()?))
            .map_err(err)?;
        let (rows, n) = scores.dims2().map_err(err)?;
        if self.device.is_cpu() {
            let v = scores
                .to_dtype(DType::F32)
                .and_then(|s| s.flatten_all()?.to_vec1::<f32>())
                .map_err(err)?;
            return Ok(crate::topk::top_k_rows(&v, n, k, self.threads));
        }
        #[cfg(feature = "cuda")]
        if self.topk_kernel {
            if let Some(top) = device_topk::top_k_rows(&scores, k).map_err(err)? {
                return Ok(top);
            }
        }
        let (ids, top) = top_k_rows_chunked(&scores, k, TOPK_CHUNK).map_err(err)?;
        let ids: Vec<i64> = ids
            .flatten_all()
            .and_then(|t| t.to_vec1::<u32>())
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect();
        let top = top
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(err)?;
        Ok(super::Ranked::rows_of(&ids, &top, rows, k))
    }
}

impl CandleBert {
    /// Whether recbench's top-k kernel runs here and agrees with the host's top-k: on 3 rows of
    /// 5,000 seeded scores in `dtype` (ties included), the columns and scores of each row's
    /// best 10 must be equal.
    #[cfg(feature = "cuda")]
    fn check_topk_kernel(&self, dtype: DType) -> std::result::Result<(), String> {
        let (rows, n, k) = (3, 5_000, 10);
        // A coarse grid of values, so that ties occur and their order is checked too.
        let mut rng = crate::util::rand::SplitMix64::new(0x70b_4e11);
        let vals: Vec<f32> = (0..rows * n)
            .map(|_| (rng.next_u64() % 997) as f32 / 997.0)
            .collect();
        let scores = Tensor::from_vec(vals, (rows, n), &self.device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| e.to_string())?;
        let got = device_topk::top_k_rows(&scores, k)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no kernel for {} scores", dtype.as_str()))?;
        let host = scores
            .to_dtype(DType::F32)
            .and_then(|s| s.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| e.to_string())?;
        let want = crate::topk::top_k_rows(&host, n, k, 1);
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "its top-{k} of a check differs from the host's ({got:?} against {want:?})"
            ))
        }
    }

    #[cfg(not(feature = "cuda"))]
    fn check_topk_kernel(&self, _dtype: DType) -> std::result::Result<(), String> {
        Err("this build has no CUDA".to_string())
    }
}

impl Encoder for CandleBert {
    fn load_items(&mut self, items: super::ItemsRef<'_>) -> Result<Option<String>> {
        let dtype = self.scoring_dtype();
        let t = Tensor::from_slice(items.data, (items.len(), items.dim), &self.device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(err)?;
        self.items = Some(t);
        let how = if self.device.is_cpu() {
            "candle matmul + the host's one-pass top-k".to_string()
        } else {
            match self.check_topk_kernel(dtype) {
                Ok(()) => {
                    self.topk_kernel = true;
                    "candle matmul + recbench's top-k kernel on the device (k ≤ 32; candle's \
                     argsort by chunks above)"
                        .to_string()
                }
                Err(why) => format!(
                    "candle matmul + chunked argsort top-k on the device (recbench's top-k \
                     kernel is not used: {why})"
                ),
            }
        };
        Ok(Some(format!(
            "{} item embeddings in {} on {}: {how}",
            items.len(),
            dtype.as_str(),
            if self.device.is_cpu() {
                "the CPU"
            } else {
                "the GPU"
            }
        )))
    }

    fn encode_and_rank(&mut self, batch: &TokenBatch, k: usize) -> Result<super::Ranked> {
        let t = std::time::Instant::now();
        let users = self.forward(batch).map_err(err)?;
        self.device.synchronize().map_err(err)?;
        let encode_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = std::time::Instant::now();
        let top = self.rank(&users, k)?;
        Ok(super::Ranked {
            top,
            encode_ms,
            score_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings> {
        let out = self.forward(batch).map_err(err)?;
        let data = out
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(err)?;
        Ok(Embeddings {
            rows: batch.batch,
            dim: self.cfg.hidden_size,
            data,
        })
    }

    fn kernels(&self) -> Option<String> {
        let layers = self
            .chosen
            .as_ref()
            .map(|c| format!("layers on {c} ({KERNELS_ENV})"));
        match (layers, self.lowp_layers.clone()) {
            (Some(l), Some(i)) => Some(format!("{l}; {i}")),
            (l, i) => l.or(i),
        }
    }

    /// `fused` on the fused kernels, then what the int8 or bf16 layers' choices change (see
    /// [`layout_tag`]), joined by `-`.
    fn cache_tag(&self) -> Option<String> {
        let parts: Vec<&str> = [self.fused.then_some("fused"), self.lowp_tag.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join("-"))
    }
}

#[cfg(test)]
mod tests;
