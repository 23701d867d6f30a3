//! The data-sheet ceilings of the GPUs recbench knows: dense (no structured sparsity) fp16/bf16
//! tensor-core and fp32 (CUDA cores, no TF32) throughput and memory bandwidth, each row with its
//! source. A GPU run's efficiency is its encoder FLOP/s against the peak of its precision; a
//! GPU not in the table gets none (empty, never a guess).

/// One GPU model's ceilings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuPeak {
    /// What the GPU's name (as NVML reports it) must contain, and must not.
    pub contains: &'static str,
    pub excludes: &'static [&'static str],
    /// Dense fp16 and bf16 tensor-core TFLOP/s.
    pub half_tflops: f64,
    /// fp32 TFLOP/s on the CUDA cores (what a product runs at with TF32 off, PyTorch's and
    /// candle's default for matmuls).
    pub fp32_tflops: f64,
    /// Memory bandwidth, TB/s.
    pub memory_tb_s: f64,
    pub source: &'static str,
}

/// The table. Names as NVML reports them ("NVIDIA H200", "NVIDIA H100 80GB HBM3",
/// "NVIDIA A100-SXM4-80GB", "NVIDIA L4", "Tesla T4"). Data-sheet figures with sparsity are
/// halved to dense ones where the sheet gives only those.
pub const TABLE: &[GpuPeak] = &[
    GpuPeak {
        contains: "H200 NVL",
        excludes: &[],
        half_tflops: 835.5,
        fp32_tflops: 60.0,
        memory_tb_s: 4.8,
        source: "NVIDIA H200 Tensor Core GPU data sheet (H200 NVL column: FP16 1,671 TFLOPS with sparsity)",
    },
    GpuPeak {
        contains: "H200",
        excludes: &["NVL"],
        half_tflops: 989.5,
        fp32_tflops: 67.0,
        memory_tb_s: 4.8,
        source: "NVIDIA H200 Tensor Core GPU data sheet (H200 SXM column: FP16 1,979 TFLOPS with sparsity)",
    },
    GpuPeak {
        contains: "H100 80GB HBM3",
        excludes: &[],
        half_tflops: 989.5,
        fp32_tflops: 67.0,
        memory_tb_s: 3.35,
        source: "NVIDIA H100 Tensor Core GPU data sheet (H100 SXM column: FP16 1,979 TFLOPS with sparsity)",
    },
    GpuPeak {
        contains: "H100 PCIe",
        excludes: &[],
        half_tflops: 756.0,
        fp32_tflops: 51.0,
        memory_tb_s: 2.0,
        source: "NVIDIA H100 Tensor Core GPU data sheet (H100 PCIe column: FP16 1,513 TFLOPS with sparsity)",
    },
    GpuPeak {
        contains: "A100-SXM4-80GB",
        excludes: &[],
        half_tflops: 312.0,
        fp32_tflops: 19.5,
        memory_tb_s: 2.039,
        source: "NVIDIA A100 Tensor Core GPU data sheet (A100 80GB SXM column)",
    },
    GpuPeak {
        contains: "L4",
        excludes: &["L40"],
        half_tflops: 121.0,
        fp32_tflops: 30.3,
        memory_tb_s: 0.3,
        source: "NVIDIA L4 Tensor Core GPU data sheet (FP16 242 TFLOPS with sparsity)",
    },
    GpuPeak {
        contains: "T4",
        excludes: &[],
        half_tflops: 65.0,
        fp32_tflops: 8.1,
        memory_tb_s: 0.32,
        source: "NVIDIA T4 Tensor Core GPU data sheet (mixed-precision FP16/FP32 65 TFLOPS)",
    },
];

/// The ceilings of the GPU called `name`, if the table has it.
pub fn of(name: &str) -> Option<&'static GpuPeak> {
    TABLE
        .iter()
        .find(|p| name.contains(p.contains) && !p.excludes.iter().any(|x| name.contains(x)))
}

impl GpuPeak {
    /// The peak a run at `precision` is measured against, in GFLOP/s: the tensor cores' for
    /// fp16 and bf16, the CUDA cores' fp32 for fp32; none for int8 (the backends' CUDA int8
    /// paths do not run on one unit whose peak says what they could reach).
    pub fn gflops(&self, precision: crate::spec::Precision) -> Option<f64> {
        use crate::spec::Precision::*;
        match precision {
            Fp16 | Bf16 => Some(self.half_tflops * 1e3),
            Fp32 => Some(self.fp32_tflops * 1e3),
            Int8 => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::of;
    use crate::spec::Precision;

    #[test]
    fn names_map_to_their_own_row_and_unknown_gpus_to_none() {
        assert_eq!(of("NVIDIA H200").unwrap().half_tflops, 989.5);
        assert_eq!(of("NVIDIA H200 NVL").unwrap().half_tflops, 835.5);
        assert_eq!(of("NVIDIA H100 PCIe").unwrap().fp32_tflops, 51.0);
        assert_eq!(of("NVIDIA L4").unwrap().memory_tb_s, 0.3);
        assert!(of("NVIDIA L40S").is_none(), "L40S is not an L4");
        assert!(of("NVIDIA A10G").is_none());
        assert!(
            of("NVIDIA H100 NVL").is_none(),
            "not in the table: none, not the SXM row"
        );
        let h200 = of("NVIDIA H200").unwrap();
        assert_eq!(h200.gflops(Precision::Fp16), Some(989_500.0));
        assert_eq!(h200.gflops(Precision::Fp32), Some(67_000.0));
        assert_eq!(h200.gflops(Precision::Int8), None);
    }
}
