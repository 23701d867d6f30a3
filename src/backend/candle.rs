//! The candle backend: a BERT forward written with candle-core ops (pure Rust on the CPU; on
//! CUDA with candle's kernels and cuBLAS when built with `cuda`).
//!
//! It is written here rather than taken from candle-transformers because the latter fills the
//! attention mask with a value that overflows to -inf in f16/bf16 and produces NaN. Here the
//! attention softmax, LayerNorm and pooling run in f32 whatever the precision, the matmuls run
//! in the run's precision, and int8 uses candle's Q8_0 quantized matmul (weights in blocks of 32
//! with one scale each, activations quantized on the fly).
//!
//! This backend in fp32 is also the reference every other backend is compared with.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device as CDevice, Module, Tensor, D};

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
    "pure Rust; int8 via candle's Q8_0 quantized matmul".into()
}

/// Nothing but the precision changes candle's outputs.
pub fn cache_tag(_precision: Precision) -> Option<String> {
    None
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
    /// Q8_0 weight; input and output in f32.
    Quant { w: QMatMul, b: Tensor },
}

impl Linear {
    fn new(
        w: &Tensor,
        b: &Tensor,
        precision: Precision,
        dtype: DType,
    ) -> candle_core::Result<Self> {
        Ok(match precision {
            Precision::Int8 => Linear::Quant {
                w: QMatMul::from_qtensor(if w.device().is_cpu() {
                    QTensor::quantize(w, GgmlDType::Q8_0)?
                } else {
                    // candle quantizes on the CPU, into blocks that live on the device.
                    QTensor::quantize_onto(
                        &w.to_device(&CDevice::Cpu)?,
                        GgmlDType::Q8_0,
                        w.device(),
                    )?
                })?,
                b: b.clone(),
            },
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
            Linear::Quant { w, b } => w.forward(x)?.broadcast_add(b),
        }
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Normalises in f32 and returns `dtype`.
    fn forward(&self, x: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(&x.to_dtype(DType::F32)?, &self.w, &self.b, self.eps)?
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
}

impl CandleBert {
    /// Loads the safetensors weights of `files` at the requested precision.
    pub fn load(files: &ModelFiles, opts: EncoderOptions) -> Result<CandleBert> {
        supports(opts.device, opts.precision).map_err(|m| Error::backend("candle", m))?;
        let device = match opts.device {
            Device::Cpu => CDevice::Cpu,
            // Opens the CUDA libraries (cuBLAS, cuRAND, NVRTC) on first use; a host that lacks
            // one gets candle's error naming it.
            Device::Cuda(i) => CDevice::new_cuda(i).map_err(err)?,
        };
        let dtype = match opts.precision {
            Precision::Fp32 | Precision::Int8 => DType::F32,
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
        let ln = |n: &Norm<Tensor>| LayerNorm {
            w: n.weight.clone(),
            b: n.bias.clone(),
            eps,
        };
        let linear =
            |d: &Dense<Tensor>| Linear::new(&d.weight, &d.bias, opts.precision, dtype).map_err(err);
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in &t.layers {
            // One [3a, h] projection instead of three: one GEMM per layer for Q, K and V.
            let qkv = l.fused_qkv(|[q, k, v]| Tensor::cat(&[q, k, v], 0).map_err(err))?;
            layers.push(Layer {
                qkv: linear(&qkv)?,
                attn_out: linear(&l.attn_out)?,
                ln1: ln(&l.attn_norm),
                inter: linear(&l.intermediate)?,
                out: linear(&l.output)?,
                ln2: ln(&l.out_norm),
            });
        }
        let e = t.embeddings;
        Ok(CandleBert {
            emb_ln: ln(&e.norm),
            word: e.word,
            pos: e.position,
            typ: e.token_type,
            layers,
            cfg,
            device,
            dtype,
        })
    }

    fn forward(&self, batch: &TokenBatch) -> candle_core::Result<Tensor> {
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
        // Additive mask in f32: 0 for tokens, -1e9 for padding (finite: no NaN in any dtype,
        // because the softmax runs in f32).
        let bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((b, 1, 1, s))?;

        let pos = self.pos.narrow(0, 0, s)?;
        let x = self
            .word
            .index_select(&ids, 0)?
            .reshape((b, s, h))?
            .broadcast_add(&pos)?
            .add(&self.typ.index_select(&types, 0)?.reshape((b, s, h))?)?;
        let mut x = self.emb_ln.forward(&x.reshape((b * s, h))?, self.dtype)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer
                .qkv
                .forward(&x)?
                .reshape((b, s, 3, nh, hd))?
                .permute((2, 0, 3, 1, 4))?;
            let q = qkv.get(0)?.contiguous()?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = (q.matmul(&k.t()?)? * scale)?
                .to_dtype(DType::F32)?
                .broadcast_add(&bias)?;
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

/// Attention-masked mean over tokens, then L2 normalisation: `x` is `[batch, seq, hidden]`
/// f32, `mask` is `[batch, seq]` f32 of 0/1. Returns `[batch, hidden]`.
pub fn mean_pool(x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let summed = x.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    let counts = mask.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    mean.broadcast_div(&norm)
}

impl Encoder for CandleBert {
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
}
