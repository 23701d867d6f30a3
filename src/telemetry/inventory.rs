//! Hardware and software inventory of the host, read from procfs and sysfs.
//!
//! Every figure is read, not assumed; what cannot be read is `null` in JSON.

use serde::{Deserialize, Serialize};

use super::gpu::Gpu;

/// CPU flags that decide which kernels a backend can use; the full list is long and mostly
/// irrelevant to inference speed.
pub const RELEVANT_FLAGS: &[&str] = &[
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimdhp",
    "sve",
    "sve2",
    "i8mm",
    "bf16",
    "hypervisor",
];

/// What the machine is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub host: String,
    pub cpu_model: Option<String>,
    /// Vendor, family, model and stepping from `/proc/cpuinfo`: what tells CPU generations apart
    /// where a VM shows a generic model name (two "AMD EPYC" VMs here were Zen 4 and Zen 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_signature: Option<String>,
    pub cpu_flags: Vec<String>,
    pub architecture: String,
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    pub sockets: Option<usize>,
    pub l2_cache_bytes: Option<u64>,
    pub l3_cache_bytes: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    /// `virtual machine (<vendor>)` when the hypervisor flag is set, `bare metal` otherwise.
    pub virtualization: Option<String>,
    /// NVIDIA GPUs (empty without NVML).
    pub gpus: Vec<Gpu>,
    /// Why the GPU list may be incomplete.
    pub gpu_probe: String,
    /// Readable power sensors (RAPL domains).
    pub power_sensors: Vec<String>,
    /// What a run's power figure will be based on when no sensor is readable.
    pub power_estimate: String,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo
        .lines()
        .find(|l| l.split(':').next().map(str::trim) == Some(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// Parses a sysfs cache size such as `1024K` or `32M`.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024),
        'M' => (&s[..s.len() - 1], 1024 * 1024),
        'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// Physical cores and sockets from `/proc/cpuinfo` (unique (physical id, core id) pairs).
fn topology(cpuinfo: &str) -> (Option<usize>, Option<usize>) {
    let mut cores = std::collections::BTreeSet::new();
    let mut sockets = std::collections::BTreeSet::new();
    for block in cpuinfo.split("\n\n") {
        let pid = cpuinfo_field(block, "physical id");
        let cid = cpuinfo_field(block, "core id");
        if let (Some(p), Some(c)) = (pid, cid) {
            cores.insert((p.to_string(), c.to_string()));
            sockets.insert(p.to_string());
        }
    }
    if cores.is_empty() {
        (None, None)
    } else {
        (Some(cores.len()), Some(sockets.len()))
    }
}

/// The theoretical fp32 peak of this CPU, with the basis of every factor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fp32Peak {
    /// cores × FMA pipes × fp32 lanes per pipe × 2 (multiply and add) × clock; `None` when the
    /// clock cannot be read.
    pub gflops: Option<f64>,
    /// How each factor was obtained (read, or assumed, and why).
    pub basis: String,
}

/// [`Fp32Peak`] of this host.
pub fn fp32_peak() -> Fp32Peak {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let max_khz = read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .and_then(|s| s.trim().parse::<u64>().ok());
    let (_, current_mhz) = super::system::cpu_brand_and_mhz();
    fp32_peak_from(&cpuinfo, max_khz, current_mhz, default_threads())
}

/// [`Fp32Peak`] from the text of /proc/cpuinfo (vendor, family and flags), cpufreq's maximum
/// (kHz), the current clock sysinfo reads (MHz, the fallback) and the core count.
pub fn fp32_peak_from(
    cpuinfo: &str,
    max_khz: Option<u64>,
    current_mhz: Option<u64>,
    cores: usize,
) -> Fp32Peak {
    let flags: Vec<&str> = cpuinfo_field(cpuinfo, "flags")
        .or_else(|| cpuinfo_field(cpuinfo, "Features"))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let has = |f: &str| flags.contains(&f);
    let amd = cpuinfo_field(cpuinfo, "vendor_id") == Some("AuthenticAMD");
    let family = cpuinfo_field(cpuinfo, "cpu family").and_then(|f| f.parse::<u32>().ok());
    let (lanes, width) = if has("avx512f") && amd && family == Some(25) {
        // Zen 4 (family 25 with AVX-512) runs 512-bit instructions on 256-bit pipes.
        (8, "AVX-512 on 256-bit pipes (AMD family 25, Zen 4)")
    } else if has("avx512f") {
        (16, "AVX-512")
    } else if has("avx2") && has("fma") {
        (8, "AVX2 + FMA")
    } else if has("avx") {
        (8, "AVX")
    } else if has("asimd") {
        (4, "NEON")
    } else {
        (4, "SSE")
    };
    let (ghz, clock) = match max_khz {
        Some(k) => (Some(k as f64 / 1e6), "cpufreq maximum".to_string()),
        None => match current_mhz {
            Some(mhz) => (
                Some(mhz as f64 / 1e3),
                "the current clock, read by sysinfo (no cpufreq: often the nominal clock in a \
                 VM; turbo can exceed it)"
                    .to_string(),
            ),
            None => (None, "clock unreadable".to_string()),
        },
    };
    const PIPES: usize = 2;
    let gflops = ghz.map(|g| (cores * PIPES * lanes * 2) as f64 * g);
    Fp32Peak {
        gflops,
        basis: format!(
            "{cores} cores × {PIPES} FMA pipes (assumed: x86 server cores since Haswell/Zen have \
             two; some Xeon Silver/Bronze have one 512-bit pipe) × {lanes} fp32 lanes ({width}) \
             × 2 × {} ({clock})",
            ghz.map_or("?".into(), |g| format!("{g:.2} GHz"))
        ),
    }
}

/// `AuthenticAMD family 26 model 2 stepping 1` (x86), `CPU implementer 0x41 part 0xd40` (Arm):
/// `None` when `/proc/cpuinfo` has neither.
fn cpu_signature(cpuinfo: &str) -> Option<String> {
    let field = |k| cpuinfo_field(cpuinfo, k);
    if let (Some(family), Some(model)) = (field("cpu family"), field("model")) {
        let mut s = format!(
            "{} family {family} model {model}",
            field("vendor_id").unwrap_or("x86")
        );
        if let Some(stepping) = field("stepping") {
            s.push_str(&format!(" stepping {stepping}"));
        }
        return Some(s);
    }
    match (field("CPU implementer"), field("CPU part")) {
        (Some(i), Some(p)) => Some(format!("CPU implementer {i} part {p}")),
        _ => None,
    }
}

/// This CPU as kernel choices depend on it: its model name, its signature (one name can cover
/// two generations) and its instruction-set flags, from /proc/cpuinfo (empty where unreadable).
pub fn cpu_identity() -> String {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    format!(
        "{} ({}) [{}]",
        cpuinfo_field(&cpuinfo, "model name").unwrap_or("unknown CPU"),
        cpu_signature(&cpuinfo).unwrap_or_default(),
        cpuinfo_field(&cpuinfo, "flags").unwrap_or("")
    )
}

/// Host name (sysinfo), sanitised for use in file names.
pub fn hostname() -> String {
    let raw = super::system::host_name().unwrap_or_else(|| "host".to_string());
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("h{s}")
    } else {
        s
    }
}

/// Total memory of this machine in bytes (sysinfo).
pub fn memory_bytes() -> Option<u64> {
    super::system::total_memory_bytes()
}

/// Physical cores (sysinfo), falling back to logical ones: the default thread count ("auto").
pub fn default_threads() -> usize {
    super::system::physical_cores()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// RAPL domains whose energy counter this process can read.
pub fn readable_rapl_domains(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if std::fs::read_to_string(p.join("energy_uj")).is_ok() {
            let name = std::fs::read_to_string(p.join("name")).unwrap_or_default();
            out.push(format!(
                "rapl:{}:{}",
                e.file_name().to_string_lossy(),
                name.trim()
            ));
        }
    }
    out.sort();
    out
}

#[cfg(feature = "nvml")]
fn gpus() -> Vec<Gpu> {
    super::nvml::gpus()
}

#[cfg(not(feature = "nvml"))]
fn gpus() -> Vec<Gpu> {
    vec![]
}

#[cfg(feature = "nvml")]
fn gpu_probe() -> String {
    super::nvml::probe_note()
}

#[cfg(not(feature = "nvml"))]
fn gpu_probe() -> String {
    "not probed: this build has no nvml feature (rebuild with --features nvml)".into()
}

impl Inventory {
    /// Reads the inventory of this machine.
    pub fn collect() -> Inventory {
        let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
        let flags_line = cpuinfo_field(&cpuinfo, "flags")
            .or_else(|| cpuinfo_field(&cpuinfo, "Features"))
            .unwrap_or("");
        let all: std::collections::BTreeSet<&str> = flags_line.split_whitespace().collect();
        let cpu_flags: Vec<String> = RELEVANT_FLAGS
            .iter()
            .filter(|f| all.contains(**f))
            .map(|f| f.to_string())
            .collect();
        // Cores from sysinfo; sockets from /proc/cpuinfo's physical ids (sysinfo has none).
        let (_, sockets) = topology(&cpuinfo);
        let physical_cores = super::system::physical_cores();
        let (brand, _) = super::system::cpu_brand_and_mhz();
        let cpu_model = brand.or_else(|| cpuinfo_field(&cpuinfo, "model name").map(str::to_string));
        let cache = |level: &str| {
            (0..8).find_map(|i| {
                let base = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
                (read(&format!("{base}/level"))? == level
                    && read(&format!("{base}/type"))? != "Instruction")
                    .then(|| parse_size(&read(&format!("{base}/size"))?))
                    .flatten()
            })
        };
        let memory_bytes = memory_bytes();
        let os = read("/etc/os-release").and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
        let virtualization = Some(if all.contains("hypervisor") {
            let vendor =
                read("/sys/class/dmi/id/sys_vendor").unwrap_or_else(|| "unknown vendor".into());
            format!("virtual machine ({vendor})")
        } else {
            "bare metal".to_string()
        });
        Inventory {
            host: hostname(),
            cpu_model: cpu_model.clone(),
            cpu_signature: cpu_signature(&cpuinfo),
            cpu_flags,
            architecture: std::env::consts::ARCH.to_string(),
            logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            physical_cores,
            sockets,
            l2_cache_bytes: cache("2"),
            l3_cache_bytes: cache("3"),
            memory_bytes,
            os,
            kernel: super::system::kernel(),
            virtualization,
            gpus: gpus(),
            gpu_probe: gpu_probe(),
            power_sensors: readable_rapl_domains(&super::powercap_root()),
            power_estimate: match cpu_model.as_deref().and_then(super::power::lookup_tdp) {
                Some(t) => format!("{} W TDP / {} threads ({})", t.tdp_watts, t.threads, t.source),
                None => format!(
                    "none: CPU model {:?} is not in the TDP table, so runs without a sensor have null power",
                    cpu_model.as_deref().unwrap_or("unknown")
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_signature_tells_generations_apart_under_one_model_name() {
        let zen = |family, model| {
            format!("processor : 0\nvendor_id : AuthenticAMD\ncpu family : {family}\nmodel : {model}\nmodel name : AMD EPYC\nstepping : 1\n")
        };
        assert_eq!(
            cpu_signature(&zen(26, 2)).as_deref(),
            Some("AuthenticAMD family 26 model 2 stepping 1")
        );
        assert_ne!(cpu_signature(&zen(25, 17)), cpu_signature(&zen(26, 2)));
        let arm = "processor : 0\nCPU implementer : 0x41\nCPU part : 0xd40\n";
        assert_eq!(
            cpu_signature(arm).as_deref(),
            Some("CPU implementer 0x41 part 0xd40")
        );
        assert_eq!(cpu_signature("processor : 0\n"), None);
    }

    #[test]
    fn topology_counts_unique_cores() {
        let info = "processor : 0\nphysical id : 0\ncore id : 0\n\nprocessor : 1\nphysical id : 0\ncore id : 0\n\nprocessor : 2\nphysical id : 0\ncore id : 1\n";
        assert_eq!(topology(info), (Some(2), Some(1)));
        assert_eq!(topology("processor : 0\n"), (None, None));
    }

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_size("1024K"), Some(1 << 20));
        assert_eq!(parse_size("32M"), Some(32 << 20));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn this_machine_has_a_cpu_and_memory() {
        let inv = Inventory::collect();
        assert!(inv.logical_cores >= 1);
        assert!(inv.memory_bytes.unwrap() > 1 << 28);
        assert!(!inv.host.contains('/'));
    }

    #[test]
    fn fp32_peak_counts_lanes_by_isa_and_microarchitecture() {
        let cpu = |vendor: &str, family: u32, flags: &str| {
            format!("vendor_id\t: {vendor}\ncpu family\t: {family}\nflags\t\t: {flags}\n")
        };
        // Zen 4: AVX-512 on 256-bit pipes, so 8 lanes, as AVX2.
        let zen4 = fp32_peak_from(
            &cpu("AuthenticAMD", 25, "avx2 fma avx512f"),
            None,
            Some(2000),
            2,
        );
        assert_eq!(zen4.gflops, Some(2.0 * 2.0 * 8.0 * 2.0 * 2.0));
        assert!(
            zen4.basis.contains("Zen 4") && zen4.basis.contains("current clock"),
            "{}",
            zen4.basis
        );
        // An Intel core with AVX-512: 16 lanes; cpufreq's maximum wins over the current clock.
        let skx = fp32_peak_from(
            &cpu("GenuineIntel", 6, "avx2 fma avx512f"),
            Some(3_000_000),
            Some(2000),
            4,
        );
        assert_eq!(skx.gflops, Some(4.0 * 2.0 * 16.0 * 2.0 * 3.0));
        assert!(skx.basis.contains("cpufreq maximum"), "{}", skx.basis);
        let avx2 = fp32_peak_from(&cpu("AuthenticAMD", 23, "avx2 fma"), None, Some(2000), 1);
        assert_eq!(avx2.gflops, Some(2.0 * 8.0 * 2.0 * 2.0));
        // No clock, no figure.
        assert_eq!(
            fp32_peak_from("flags : avx2 fma\n", None, None, 2).gflops,
            None
        );
    }
}
