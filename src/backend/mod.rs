//! Inference backends behind one trait.
//!
//! Every backend turns a [`TokenBatch`] into pooled, L2-normalised embeddings; the model spec,
//! the inputs, the pooling definition and the parity checks are shared, only the tensor calls
//! differ. A backend compiled out of this build still has a variant here and answers with a
//! clear "not enabled in this build; rebuild with --features X" error (see `disabled.rs`).

#[cfg(feature = "candle")]
pub mod candle;
mod disabled;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "torch")]
pub mod torch;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{ModelFiles, TokenBatch};

/// Pooled embeddings, row-major `[rows, dim]`.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Whether every value is finite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
}

/// A loaded model on one device at one precision.
pub trait Encoder: Send {
    /// Encodes a batch. Returns only when the results are on the host, so any device work is
    /// complete: callers may read the clock right after.
    fn encode(&mut self, batch: &TokenBatch) -> Result<Embeddings>;

    /// Which kernels run the model where a backend has a choice, recorded with every run.
    fn kernels(&self) -> Option<String> {
        None
    }
}

/// Selects the kernel of the torch backend's fp32 linear layers on CPU: `onednn` (default) or
/// `aten` (see `backend::torch::LinearKernel`).
pub const TORCH_LINEAR_ENV: &str = "RECBENCH_TORCH_LINEAR";

/// Which inference runtime runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Candle,
    Onnx,
    Torch,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Candle, BackendKind::Onnx, BackendKind::Torch];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Candle => "candle",
            BackendKind::Onnx => "onnx",
            BackendKind::Torch => "torch",
        }
    }

    pub fn parse(s: &str) -> Option<BackendKind> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Whether this build includes the backend.
    pub fn compiled(self) -> bool {
        match self {
            BackendKind::Candle => cfg!(feature = "candle"),
            BackendKind::Onnx => cfg!(feature = "onnx"),
            BackendKind::Torch => cfg!(feature = "torch"),
        }
    }

    /// Version of the runtime library this build uses (for onnx: the library actually loaded).
    pub fn runtime_version(self) -> String {
        match self {
            BackendKind::Candle => env!("RECBENCH_CANDLE_VERSION").to_string(),
            #[cfg(feature = "onnx")]
            BackendKind::Onnx => onnx::runtime_version(),
            #[cfg(not(feature = "onnx"))]
            BackendKind::Onnx => env!("RECBENCH_ORT_VERSION").to_string(),
            #[cfg(feature = "torch")]
            BackendKind::Torch => torch::runtime_version().to_string(),
            #[cfg(not(feature = "torch"))]
            BackendKind::Torch => env!("RECBENCH_TCH_VERSION").to_string(),
        }
    }

    /// Whether a (device, precision) pair is supported, or why not. Used by scenario expansion
    /// to turn unsupported combinations into `skipped` runs.
    pub fn supports(self, device: Device, precision: Precision) -> std::result::Result<(), String> {
        if !self.compiled() {
            return Err(format!(
                "backend {} is not enabled in this build; rebuild with --features {}",
                self.name(),
                self.name()
            ));
        }
        if let Device::Cuda(_) = device {
            if !cfg!(feature = "cuda") {
                return Err(format!(
                    "{} on CUDA is not enabled in this build; rebuild with --features cuda",
                    self.name()
                ));
            }
        }
        #[cfg(feature = "onnx")]
        if self == BackendKind::Onnx {
            return onnx::supports(device, precision);
        }
        #[cfg(feature = "torch")]
        if self == BackendKind::Torch {
            return torch::supports(device, precision);
        }
        let _ = precision;
        Ok(())
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Numeric precision of weights and compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 4] = [
        Precision::Fp32,
        Precision::Bf16,
        Precision::Fp16,
        Precision::Int8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "f32" => Some(Precision::Fp32),
            "f16" => Some(Precision::Fp16),
            _ => Self::ALL.into_iter().find(|p| p.name() == s),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    /// Parses `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn parse(s: &str) -> Option<Device> {
        match s {
            "cpu" => Some(Device::Cpu),
            "cuda" => Some(Device::Cuda(0)),
            _ => s.strip_prefix("cuda:")?.parse().ok().map(Device::Cuda),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Device::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown device {s:?}")))
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct EncoderOptions {
    pub device: Device,
    pub precision: Precision,
    /// Intra-op threads; the worker also sets the runtime's environment before loading.
    pub threads: usize,
}

/// Loads `files` on the backend `kind`.
pub fn open(
    kind: BackendKind,
    files: &ModelFiles,
    opts: EncoderOptions,
) -> Result<Box<dyn Encoder>> {
    kind.supports(opts.device, opts.precision)
        .map_err(|m| Error::backend(kind.name(), m))?;
    match kind {
        #[cfg(feature = "candle")]
        BackendKind::Candle => Ok(Box::new(candle::CandleBert::load(files, opts)?)),
        #[cfg(not(feature = "candle"))]
        BackendKind::Candle => {
            let _ = files;
            disabled::open("candle", "candle")
        }
        #[cfg(feature = "onnx")]
        BackendKind::Onnx => Ok(Box::new(onnx::OnnxBert::load(files, opts)?)),
        #[cfg(not(feature = "onnx"))]
        BackendKind::Onnx => disabled::open("onnx", "onnx"),
        #[cfg(feature = "torch")]
        BackendKind::Torch => Ok(Box::new(torch::TorchBert::load(files, opts)?)),
        #[cfg(not(feature = "torch"))]
        BackendKind::Torch => disabled::open("torch", "torch"),
    }
}

/// One line of `recbench backends`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    pub backend: BackendKind,
    pub compiled: bool,
    pub runtime_version: String,
    pub devices: Vec<String>,
    pub precisions: Vec<Precision>,
    pub note: String,
}

/// What this build can run.
pub fn inventory() -> Vec<BackendInfo> {
    BackendKind::ALL
        .into_iter()
        .map(|b| {
            let compiled = b.compiled();
            let mut devices = vec![];
            if compiled {
                devices.push("cpu".to_string());
            }
            let precisions = if compiled {
                Precision::ALL
                    .into_iter()
                    .filter(|p| b.supports(Device::Cpu, *p).is_ok())
                    .collect()
            } else {
                vec![]
            };
            let note = if compiled {
                match b {
                    BackendKind::Candle => {
                        "pure Rust; int8 via candle's Q8_0 quantized matmul".into()
                    }
                    BackendKind::Onnx => format!(
                        "graph flavour from RECBENCH_ONNX_FLAVOUR (default {}); \
                         int8 = dynamic quantization, per-channel weight scales",
                        crate::model::onnx::Flavour::DEFAULT
                    ),
                    BackendKind::Torch => format!(
                        "libtorch via tch; fp32 linear layers on oneDNN ({TORCH_LINEAR_ENV}=aten \
                         for aten/MKL); int8 by hand: per-row activations, per-channel weights, \
                         _int_mm; intra-op threads per run, 1 inter-op"
                    ),
                }
            } else {
                format!(
                    "not enabled in this build; rebuild with --features {}",
                    b.name()
                )
            };
            BackendInfo {
                backend: b,
                compiled,
                runtime_version: b.runtime_version(),
                devices,
                precisions,
                note,
            }
        })
        .collect()
}
