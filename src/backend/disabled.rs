//! Stand-ins for backends compiled out of this build: same entry point, one clear error that
//! says which feature to enable.

use super::Encoder;
use crate::error::{Error, Result};

/// Always fails with "backend X is not enabled in this build; rebuild with --features F".
#[cfg_attr(
    all(feature = "candle", feature = "onnx", feature = "torch"),
    allow(dead_code)
)]
pub fn open(backend: &str, feature: &str) -> Result<Box<dyn Encoder>> {
    Err(Error::NotEnabled {
        what: format!("backend {backend}"),
        feature: feature.to_string(),
    })
}
