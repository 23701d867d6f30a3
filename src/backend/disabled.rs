//! The face of a backend compiled out of this build: the same functions as a real backend
//! module, each answering "backend X is not enabled in this build; rebuild with --features X".

/// Expands, inside a backend's module, to that backend's face for a build without its feature.
#[cfg_attr(
    all(feature = "candle", feature = "onnx", feature = "torch"),
    allow(unused_macros)
)]
macro_rules! face {
    ($name:literal, $version:expr) => {
        use crate::backend::{Device, Encoder, EncoderOptions, Precision};
        use crate::error::{Error, Result};
        use crate::model::ModelFiles;

        pub const COMPILED: bool = false;

        fn why() -> String {
            format!(
                "backend {} is not enabled in this build; rebuild with --features {}",
                $name, $name
            )
        }

        pub fn supports(_: Device, _: Precision) -> std::result::Result<(), String> {
            Err(why())
        }

        pub fn runtime_version() -> String {
            $version.to_string()
        }

        pub fn describe() -> String {
            format!(
                "not enabled in this build; rebuild with --features {}",
                $name
            )
        }

        pub fn cache_tag(_: Precision) -> Option<String> {
            None
        }

        pub fn gemm_gflops(_: usize, _: usize, _: std::time::Duration) -> Option<f64> {
            None
        }

        pub fn load(_: &ModelFiles, _: EncoderOptions) -> Result<Box<dyn Encoder>> {
            Err(Error::NotEnabled {
                what: format!("backend {}", $name),
                feature: $name.to_string(),
            })
        }
    };
}

#[cfg_attr(
    all(feature = "candle", feature = "onnx", feature = "torch"),
    allow(unused_imports)
)]
pub(crate) use face;
