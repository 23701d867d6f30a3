//! NVIDIA GPUs through NVML (`nvml-wrapper` loads libnvidia-ml at run time). A host without the
//! library or without a GPU simply has no GPUs: that is not an error.

use nvml_wrapper::Nvml;

use super::gpu::Gpu;
use super::power::GpuMeter;

fn nvml() -> Option<&'static Nvml> {
    static NVML: std::sync::OnceLock<Option<Nvml>> = std::sync::OnceLock::new();
    NVML.get_or_init(|| Nvml::init().ok()).as_ref()
}

/// Why the GPU list is what it is.
pub fn probe_note() -> String {
    match nvml() {
        Some(_) => "NVML".into(),
        None => "NVML not loadable (no NVIDIA driver): no NVIDIA GPU".into(),
    }
}

/// Every NVIDIA GPU.
pub fn gpus() -> Vec<Gpu> {
    let Some(n) = nvml() else { return vec![] };
    let driver = n.sys_driver_version().ok();
    let cuda = n.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let count = n.device_count().unwrap_or(0);
    (0..count)
        .filter_map(|i| {
            let d = n.device_by_index(i).ok()?;
            Some(Gpu {
                index: i as usize,
                name: d.name().unwrap_or_else(|_| "unknown NVIDIA GPU".into()),
                memory_bytes: d.memory_info().ok().map(|m| m.total),
                driver: driver.clone(),
                cuda_version: cuda.clone(),
                power_limit_watts: d.enforced_power_limit().ok().map(|mw| mw as f64 / 1e3),
            })
        })
        .collect()
}

struct NvmlGpu {
    index: u32,
    name: String,
}

impl GpuMeter for NvmlGpu {
    fn name(&self) -> String {
        format!("gpu{} ({})", self.index, self.name)
    }
    fn energy_mj(&self) -> Option<u64> {
        nvml()?
            .device_by_index(self.index)
            .ok()?
            .total_energy_consumption()
            .ok()
    }
    fn power_mw(&self) -> Option<u32> {
        nvml()?.device_by_index(self.index).ok()?.power_usage().ok()
    }
}

/// A power meter per GPU.
pub fn meters() -> Vec<Box<dyn GpuMeter>> {
    gpus()
        .into_iter()
        .map(|g| {
            Box::new(NvmlGpu {
                index: g.index as u32,
                name: g.name,
            }) as Box<dyn GpuMeter>
        })
        .collect()
}

/// GPU memory used by process `pid` on every GPU, in bytes (NVML per-process accounting).
pub fn process_memory_bytes(pid: u32) -> Option<u64> {
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let n = nvml()?;
    let mut total = None;
    for i in 0..n.device_count().ok()? {
        let Ok(d) = n.device_by_index(i) else {
            continue;
        };
        for p in d.running_compute_processes().unwrap_or_default() {
            if p.pid == pid {
                if let UsedGpuMemory::Used(b) = p.used_gpu_memory {
                    *total.get_or_insert(0) += b;
                }
            }
        }
    }
    total
}
