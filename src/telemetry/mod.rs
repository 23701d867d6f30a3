//! What the machine is and what a run used: hardware inventory, memory and power, each figure
//! labelled by its source.

pub mod cuda;
pub mod gpu;
pub mod gpu_peaks;
pub mod inventory;
pub mod memory;
#[cfg(feature = "nvml")]
pub mod nvml;
pub mod power;
pub mod system;

pub use inventory::Inventory;

use std::time::Duration;

/// GPU meters of this machine (empty without the `nvml` feature or without an NVIDIA driver).
pub fn gpu_meters() -> Vec<Box<dyn power::GpuMeter>> {
    #[cfg(feature = "nvml")]
    {
        nvml::meters()
    }
    #[cfg(not(feature = "nvml"))]
    {
        vec![]
    }
}

/// Where RAPL counters are read: `/sys/class/powercap`, or `RECBENCH_POWERCAP_ROOT` (tests give a
/// tree of their own, so what they expect does not depend on the host's sensors).
pub fn powercap_root() -> std::path::PathBuf {
    std::env::var_os("RECBENCH_POWERCAP_ROOT")
        .filter(|v| !v.is_empty())
        .map_or_else(|| "/sys/class/powercap".into(), Into::into)
}

/// Starts a power sampler over every readable sensor (RAPL and NVML), sampling every 100 ms.
pub fn start_power() -> power::PowerSampler {
    power::PowerSampler::start(
        power::rapl_domains(&powercap_root()),
        gpu_meters(),
        Duration::from_millis(100),
    )
}

/// The TDP entry for this machine's CPU, if the table has it.
pub fn cpu_tdp() -> Option<&'static power::CpuTdp> {
    let inv = Inventory::collect();
    inv.cpu_model.as_deref().and_then(power::lookup_tdp)
}

/// Idle power of the readable sensors over `duration` (nothing is running in this process),
/// or `None` when no sensor is readable: an estimate of idle is not a measurement.
pub fn idle_baseline(duration: Duration) -> Option<power::Power> {
    let rapl = power::rapl_domains(&powercap_root());
    let gpus = gpu_meters();
    if rapl.is_empty() && gpus.is_empty() {
        return None;
    }
    let s = power::PowerSampler::start(rapl, gpus, Duration::from_millis(100));
    std::thread::sleep(duration);
    Some(s.stop(None))
}
