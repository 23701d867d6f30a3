//! ONNX form of the BERT model: which graph flavour to emit, and (with the `onnx` feature) the
//! exporter that turns a config + safetensors weights into a cached `.onnx` file.
//!
//! The flavour is chosen per process by `RECBENCH_ONNX_FLAVOUR` (`plain` or `fused`); unset
//! means [`Flavour::DEFAULT`], the one measured faster (docs/benchmarks/onnx.md). It is part of
//! the cache names of everything an onnx run computes, so the two flavours never share results.

#[cfg(feature = "onnx")]
pub mod export;
#[cfg(feature = "onnx")]
pub mod proto;

use crate::error::{Error, Result};

/// Environment variable selecting the graph flavour of the onnx backend.
pub const FLAVOUR_ENV: &str = "RECBENCH_ONNX_FLAVOUR";

/// Which operators the exported graph uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// Standard ONNX operators only (opset 17); ONNX Runtime's optimiser may fuse them.
    Plain,
    /// ONNX Runtime's `com.microsoft` transformer operators where they apply:
    /// EmbedLayerNormalization, Attention (MultiHeadAttention in int8, whose projections are
    /// quantized), SkipLayerNormalization, BiasGelu.
    Fused,
}

impl Flavour {
    /// The flavour used when `RECBENCH_ONNX_FLAVOUR` is unset: the faster one on the reference
    /// machine (docs/benchmarks/onnx.md).
    pub const DEFAULT: Flavour = Flavour::Plain;
    pub const ALL: [Flavour; 2] = [Flavour::Plain, Flavour::Fused];

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Plain => "plain",
            Flavour::Fused => "fused",
        }
    }

    pub fn parse(s: &str) -> Option<Flavour> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The flavour `RECBENCH_ONNX_FLAVOUR` forces; `None` when it is unset or `auto`: the
    /// onnx backend then times both on the run's shape and keeps the faster.
    pub fn forced_from_env() -> Result<Option<Flavour>> {
        match std::env::var(FLAVOUR_ENV) {
            Ok(s) if s == "auto" || s.is_empty() => Ok(None),
            Ok(_) => Self::from_env().map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The flavour selected by `RECBENCH_ONNX_FLAVOUR`, or the default.
    pub fn from_env() -> Result<Flavour> {
        match std::env::var(FLAVOUR_ENV) {
            Ok(s) if !s.is_empty() && s != "auto" => Flavour::parse(&s).ok_or_else(|| {
                Error::input(
                    "<environment>",
                    None,
                    FLAVOUR_ENV,
                    format!("unknown ONNX graph flavour {s:?}; allowed: auto, plain, fused"),
                )
            }),
            _ => Ok(Flavour::DEFAULT),
        }
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
