//! What the inventory records of one GPU, filled by the NVML probe.

use serde::{Deserialize, Serialize};

/// One GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: usize,
    pub name: String,
    pub memory_bytes: Option<u64>,
    pub driver: Option<String>,
    pub cuda_version: Option<String>,
    pub power_limit_watts: Option<f64>,
}
