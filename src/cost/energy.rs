//! Energy per run, labelled by where it comes from: a measured power figure (RAPL, NVML) when
//! the run has one, else an estimate from the catalog entry its host is priced as, with Cloud
//! Carbon Footprint's per-vCPU (and per-GPU) minimum and maximum watts by processor
//! (`catalog/energy.toml`, every coefficient with its source file and commit) scaled by the
//! run's measured CPU utilisation. An estimate is never shown as a measurement: its label says
//! `estimated` and its basis spells out the arithmetic and the source.

use std::sync::OnceLock;

use serde::Deserialize;

use super::HardwareEntry;
use crate::results::RunResult;
use crate::spec::Device;

/// The shipped coefficient file, compiled in so the binary estimates from any folder.
pub const SHIPPED_ENERGY: &str = include_str!("../../catalog/energy.toml");

/// Where the coefficients were read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoefficientSource {
    pub project: String,
    pub repository: String,
    pub commit: String,
    pub commit_date: String,
    pub read: String,
    /// GPU utilisation assumed where none is recorded (CCF's own default).
    pub gpu_utilisation_assumed: f64,
    pub gpu_utilisation_source: String,
}

/// Minimum and maximum watts of one processor: per vCPU for a CPU, per board for a GPU.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coefficient {
    pub name: String,
    pub min_watts: f64,
    pub max_watts: f64,
    /// The file of the source repository the figures are in.
    pub file: String,
    /// The last commit that changed that file, and its date.
    pub file_changed: String,
    #[serde(default)]
    pub note: String,
}

/// A catalog entry's processors, by coefficient name (empty: none applies).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyMap {
    pub hardware: String,
    #[serde(default)]
    pub cpu: String,
    #[serde(default)]
    pub gpu: String,
    pub why: String,
}

/// `catalog/energy.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyTable {
    pub source: CoefficientSource,
    pub cpu: Vec<Coefficient>,
    pub gpu: Vec<Coefficient>,
    pub map: Vec<EnergyMap>,
}

impl EnergyTable {
    /// Parses and checks a coefficient file: positive watts with min ≤ max, and every name a
    /// map line uses defined.
    pub fn parse(text: &str) -> std::result::Result<EnergyTable, String> {
        let t: EnergyTable = toml::from_str(text).map_err(|e| e.to_string())?;
        for c in t.cpu.iter().chain(&t.gpu) {
            if !(c.min_watts >= 0.0 && c.max_watts > 0.0 && c.min_watts <= c.max_watts) {
                return Err(format!(
                    "{}: min_watts {} and max_watts {} must satisfy 0 ≤ min ≤ max, max > 0",
                    c.name, c.min_watts, c.max_watts
                ));
            }
        }
        for m in &t.map {
            if !m.cpu.is_empty() && !t.cpu.iter().any(|c| c.name == m.cpu) {
                return Err(format!("{}: no [[cpu]] named {:?}", m.hardware, m.cpu));
            }
            if !m.gpu.is_empty() && !t.gpu.iter().any(|c| c.name == m.gpu) {
                return Err(format!("{}: no [[gpu]] named {:?}", m.hardware, m.gpu));
            }
        }
        Ok(t)
    }

    /// The shipped table (checked by a unit test, so a bad edit fails `cargo test`).
    pub fn shipped() -> &'static EnergyTable {
        static T: OnceLock<EnergyTable> = OnceLock::new();
        T.get_or_init(|| {
            EnergyTable::parse(SHIPPED_ENERGY)
                .unwrap_or_else(|e| panic!("catalog/energy.toml (compiled in): {e}"))
        })
    }

    fn cite(&self, c: &Coefficient) -> String {
        format!(
            "{} {} at commit {} ({})",
            self.source.project,
            c.file,
            &self.source.commit[..12.min(self.source.commit.len())],
            self.source.commit_date
        )
    }
}

/// The power a run is costed with, and where it comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunPower {
    /// Average watts over the run's measurement window.
    pub watts: Option<f64>,
    /// Short label: `rapl`, `nvml`, `rapl+nvml` (measured), `estimated (TDP)` (the worker's
    /// own estimate at run time), `estimated (CCF)` or `none`.
    pub label: String,
    /// How the figure was made, in words: the arithmetic and the source of an estimate, or why
    /// there is none.
    pub basis: String,
    /// What the watts cover and where each part comes from, for every place energy is shown:
    /// "CPU package (RAPL)", "GPU board only (NVML); host CPU not counted", "GPU board (NVML) +
    /// host CPU (CCF estimate)", "CPU (CCF estimate)". A CPU machine's package figure and a GPU
    /// board's figure are different scopes; this says which one a number is.
    pub covers: String,
}

impl RunPower {
    /// True for a figure that a sensor measured.
    pub fn measured(&self) -> bool {
        self.watts.is_some() && !self.label.starts_with("estimated")
    }

    /// True for an estimate, in whole or in part (at run time or from the coefficients).
    pub fn estimated(&self) -> bool {
        self.watts.is_some() && self.label.contains("estimate")
    }
}

/// What a sensor's figure covers, by its source.
fn measured_scope(source: &str) -> String {
    match source {
        "rapl" => "CPU package (RAPL)".into(),
        "nvml" => "GPU board only (NVML); host CPU not counted".into(),
        "rapl+nvml" => "CPU package (RAPL) + GPU board (NVML)".into(),
        other => format!("as measured by {other}"),
    }
}

/// The power of run `r` costed as `hw`, on a host with `host_cores` logical cores: the run's
/// own figure when it has one (a sensor reading, or the worker's labelled TDP estimate),
/// else the coefficient estimate for `hw`, else none with the reason.
pub fn run_power(
    table: &EnergyTable,
    r: &RunResult,
    hw: &HardwareEntry,
    host_cores: usize,
) -> RunPower {
    if let Some(w) = r.power.watts {
        let estimated = r.power.source == "estimated";
        // A GPU board measured alone leaves out the host CPU that fed it: add the catalog
        // entry's CPU estimate where there is one, and say so either way.
        if r.power.source == "nvml" && matches!(r.spec.device, Device::Cuda(_)) {
            let host = table
                .map
                .iter()
                .find(|m| m.hardware == hw.id)
                .ok_or_else(|| format!("{} has no processor line in catalog/energy.toml", hw.id))
                .and_then(|m| cpu_estimate(table, r, hw, host_cores, m));
            return match host {
                Ok(Some((cpu_w, how))) => RunPower {
                    watts: Some(w + cpu_w),
                    label: "nvml + host estimate".into(),
                    basis: format!(
                        "{:.1} W = GPU board {w:.1} W measured (nvml) + host {how}",
                        w + cpu_w
                    ),
                    covers: "GPU board (NVML) + host CPU (CCF estimate)".into(),
                },
                Ok(None) | Err(_) => RunPower {
                    watts: Some(w),
                    label: "nvml".into(),
                    basis: format!(
                        "measured (nvml): the GPU board only; the host CPU is not counted ({})",
                        match host {
                            Ok(_) =>
                                "the catalog entry names no CPU to estimate it from".to_string(),
                            Err(e) => e,
                        }
                    ),
                    covers: measured_scope("nvml"),
                },
            };
        }
        return RunPower {
            watts: Some(w),
            label: if estimated {
                "estimated (TDP)".into()
            } else {
                r.power.source.clone()
            },
            basis: if estimated {
                format!(
                    "estimated at run time: {}",
                    r.power
                        .estimate_basis
                        .as_deref()
                        .unwrap_or("TDP per thread")
                )
            } else {
                format!("measured ({})", r.power.source)
            },
            covers: if estimated {
                "CPU package (TDP estimate)".into()
            } else {
                measured_scope(&r.power.source)
            },
        };
    }
    let on_gpu = matches!(r.spec.device, Device::Cuda(_));
    match estimate(table, r, hw, host_cores) {
        Ok((w, basis)) => RunPower {
            watts: Some(w),
            label: "estimated (CCF)".into(),
            covers: match (on_gpu, basis.contains("host CPU not counted")) {
                (false, _) => "CPU (CCF estimate)".into(),
                (true, false) => "GPU + host CPU (CCF estimate)".into(),
                (true, true) => "GPU only (estimate); host CPU not counted".into(),
            },
            basis,
        },
        Err(why) => RunPower {
            watts: None,
            label: "none".into(),
            basis: format!("no power sensor and no estimate: {why}"),
            covers: String::new(),
        },
    }
}

/// CCF's CPU part for `r` on `hw`: vCPUs × (min + utilisation × (max − min)), utilisation
/// measured (busy threads / vCPUs), with the arithmetic; `None` where the map names no CPU.
fn cpu_estimate(
    table: &EnergyTable,
    r: &RunResult,
    hw: &HardwareEntry,
    host_cores: usize,
    m: &EnergyMap,
) -> std::result::Result<Option<(f64, String)>, String> {
    let Some(c) = table.cpu.iter().find(|c| c.name == m.cpu) else {
        return Ok(None);
    };
    let share = if matches!(r.spec.device, Device::Cuda(_)) && hw.gpu_count > 1 {
        1.0 / hw.gpu_count as f64
    } else {
        1.0
    };
    let vcpus = if hw.vcpus > 0 {
        hw.vcpus as f64
    } else {
        host_cores.max(1) as f64
    } * share;
    let busy = r.power.busy_threads.ok_or(
        "the run recorded no CPU utilisation (busy threads), so the CPU draw cannot be scaled",
    )?;
    let u = (busy / vcpus).clamp(0.0, 1.0);
    let w = vcpus * (c.min_watts + u * (c.max_watts - c.min_watts));
    Ok(Some((
        w,
        format!(
            "CPU {w:.1} W = {vcpus} vCPU × ({} + {u:.3} × ({} − {})) W per vCPU, utilisation \
             {u:.3} = {busy:.2} busy threads measured / {vcpus} vCPUs; {} coefficients from {}",
            c.min_watts,
            c.max_watts,
            c.min_watts,
            c.name,
            table.cite(c)
        ),
    )))
}

/// CCF's compute model for `r` on `hw`: watts and the arithmetic, or why no estimate.
pub fn estimate(
    table: &EnergyTable,
    r: &RunResult,
    hw: &HardwareEntry,
    host_cores: usize,
) -> std::result::Result<(f64, String), String> {
    let m = table
        .map
        .iter()
        .find(|m| m.hardware == hw.id)
        .ok_or_else(|| format!("{} has no processor line in catalog/energy.toml", hw.id))?;
    let on_gpu = matches!(r.spec.device, Device::Cuda(_));
    let mut watts = 0.0;
    let mut parts: Vec<String> = Vec::new();
    // The CPU: vCPUs × (min + utilisation × (max − min)), utilisation measured.
    match cpu_estimate(table, r, hw, host_cores, m)? {
        Some((w, how)) => {
            watts += w;
            parts.push(how);
        }
        None if !on_gpu => {
            return Err(format!("{}: {}", hw.id, m.why));
        }
        None => parts.push("host CPU not counted".into()),
    }
    if on_gpu {
        let u = table.source.gpu_utilisation_assumed;
        match table.gpu.iter().find(|g| g.name == m.gpu) {
            Some(g) => {
                let w = g.min_watts + u * (g.max_watts - g.min_watts);
                watts += w;
                parts.push(format!(
                    "GPU {w:.1} W = {} + {u} × ({} − {}) W, utilisation {u} ASSUMED (not \
                     recorded; CCF's default); {} coefficients from {}",
                    g.min_watts,
                    g.max_watts,
                    g.min_watts,
                    g.name,
                    table.cite(g)
                ));
            }
            None => {
                let tdp = hw.tdp_watts.ok_or_else(|| {
                    format!(
                        "{}: no CCF coefficient for its GPU and no tdp_watts in the catalog",
                        hw.id
                    )
                })?;
                watts += tdp;
                parts.push(format!(
                    "GPU {tdp:.1} W = the catalog's board power for {} (an upper bound: CCF \
                     has no coefficient for this GPU)",
                    hw.gpu_model
                ));
            }
        }
    }
    Ok((
        watts,
        format!(
            "estimated {watts:.1} W for {}: {}. {} Compute only (no memory, storage, network \
             or PUE).",
            hw.id,
            parts.join("; "),
            m.why
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::Catalog;

    #[test]
    fn shipped_coefficients_parse_and_every_catalog_entry_with_a_processor_line_exists() {
        let t = EnergyTable::shipped();
        let c = Catalog::shipped_with(None).unwrap();
        for m in &t.map {
            assert!(
                c.get(&m.hardware).is_some(),
                "{} not in the catalog",
                m.hardware
            );
        }
        assert_eq!(t.source.commit.len(), 40);
        for k in t.cpu.iter().chain(&t.gpu) {
            assert!(k.file.starts_with("packages/"), "{}", k.name);
        }
        let bad = SHIPPED_ENERGY.replace("cpu = \"Cascade Lake\"", "cpu = \"Cascade Lak\"");
        assert!(EnergyTable::parse(&bad).unwrap_err().contains("no [[cpu]]"));
    }

    /// A run of the committed reference sweep (no sensor: power is null) and a coefficient read
    /// straight from the TOML text, not through the parser under test.
    fn reference_run() -> RunResult {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let f = crate::results::ResultsFile::load(&p).unwrap();
        let r = f
            .runs
            .into_iter()
            .find(|r| r.status == crate::results::Status::Ok);
        r.unwrap()
    }

    fn coefficient(table: &str, name: &str) -> (f64, f64) {
        let v: toml::Value = toml::from_str(SHIPPED_ENERGY).unwrap();
        let c = v[table]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"].as_str() == Some(name))
            .unwrap();
        (
            c["min_watts"].as_float().unwrap(),
            c["max_watts"].as_float().unwrap(),
        )
    }

    #[test]
    fn a_sensorless_mapped_run_gets_a_labelled_ccf_estimate_and_a_measurement_wins() {
        let catalog = Catalog::shipped_with(None).unwrap();
        let hw = catalog.get("aws-m7i-large").unwrap();
        let mut r = reference_run();
        assert_eq!(r.power.watts, None, "the reference host has no sensor");
        let busy = r.power.busy_threads.unwrap();
        let p = run_power(EnergyTable::shipped(), &r, hw, 2);
        // CCF: vCPUs × (min + utilisation × (max − min)), utilisation = busy threads / vCPUs.
        let (min, max) = coefficient("cpu", "AWS average");
        assert_eq!(
            (min, max),
            (0.74, 3.5),
            "the AWS average of CCF's AWS constants"
        );
        let want = 2.0 * (min + busy / 2.0 * (max - min));
        assert!((p.watts.unwrap() - want).abs() < 1e-9, "{p:?} vs {want}");
        assert_eq!(p.label, "estimated (CCF)");
        assert!(p.estimated() && !p.measured());
        for needle in [
            "Cloud Carbon Footprint",
            "AwsFootprintEstimationConstants.ts",
            "b7a049c7d25c",
            "busy threads measured",
            "Sapphire Rapids",
        ] {
            assert!(p.basis.contains(needle), "{needle:?} in {}", p.basis);
        }
        // The cost model carries it into energy per 1k at the priced rate.
        let c = crate::cost::cost_run(&r, hw, 2).unwrap();
        let j = c.energy_per_1k_joules.unwrap();
        assert!((j - want * 1000.0 / c.requests_per_s).abs() < 1e-9);
        // A measured figure wins over the estimate.
        r.power.watts = Some(42.0);
        r.power.source = "rapl".into();
        let p = run_power(EnergyTable::shipped(), &r, hw, 2);
        assert_eq!((p.watts, p.label.as_str()), (Some(42.0), "rapl"));
        assert!(p.measured());
        assert_eq!(p.covers, "CPU package (RAPL)");
        // No utilisation recorded: no estimate, and the reason says so.
        r.power.watts = None;
        r.power.busy_threads = None;
        let p = run_power(EnergyTable::shipped(), &r, hw, 2);
        assert_eq!(p.watts, None);
        assert!(p.basis.contains("no CPU utilisation"), "{}", p.basis);
    }

    #[test]
    fn a_gpu_run_adds_the_gpu_at_ccf_default_utilisation_or_the_catalog_board_power() {
        let catalog = Catalog::shipped_with(None).unwrap();
        let mut r = reference_run();
        r.spec.device = Device::Cuda(0);
        let busy = r.power.busy_threads.unwrap();
        // g4dn.xlarge: 4 vCPUs of Cascade Lake plus a T4 at 50% (CCF's default).
        let hw = catalog.get("aws-g4dn-xlarge").unwrap();
        let (cmin, cmax) = coefficient("cpu", "Cascade Lake");
        let (gmin, gmax) = coefficient("gpu", "Nvidia T4");
        let want = 4.0 * (cmin + busy / 4.0 * (cmax - cmin)) + gmin + 0.5 * (gmax - gmin);
        let p = run_power(EnergyTable::shipped(), &r, hw, 2);
        assert!((p.watts.unwrap() - want).abs() < 1e-9, "{p:?} vs {want}");
        assert!(p.basis.contains("ASSUMED"), "{}", p.basis);
        // H200: no CCF coefficient, no CPU named: the catalog's board power, labelled.
        let hw = catalog.get("packetai-1x-h200-sxm").unwrap();
        let p = run_power(EnergyTable::shipped(), &r, hw, 2);
        assert_eq!(p.watts, hw.tdp_watts);
        assert!(p.basis.contains("upper bound") && p.basis.contains("host CPU not counted"));
        assert_eq!(p.covers, "GPU only (estimate); host CPU not counted");

        // NVML measures the board alone. Where the catalog entry names the host's CPU, its CCF
        // estimate is added and the figure says it covers both; where it names none, the
        // figure says the host is not counted.
        r.power.watts = Some(150.0);
        r.power.source = "nvml".into();
        let hw = catalog.get("aws-g4dn-xlarge").unwrap();
        let cpu = 4.0 * (cmin + busy / 4.0 * (cmax - cmin));
        let p = run_power(EnergyTable::shipped(), &r, hw, 2);
        assert!((p.watts.unwrap() - (150.0 + cpu)).abs() < 1e-9, "{p:?}");
        assert_eq!(p.covers, "GPU board (NVML) + host CPU (CCF estimate)");
        assert!(p.estimated(), "partly estimated: the badge says so");
        assert!(
            p.basis.contains("GPU board 150.0 W measured"),
            "{}",
            p.basis
        );
        let hw = catalog.get("packetai-1x-h200-sxm").unwrap();
        let p = run_power(EnergyTable::shipped(), &r, hw, 2);
        assert_eq!(p.watts, Some(150.0));
        assert_eq!(p.covers, "GPU board only (NVML); host CPU not counted");
        assert!(!p.estimated());
        r.power.watts = None;
        // An entry with no processor line: no estimate.
        let hw = catalog.get("owned-1u-dual-socket-cpu").unwrap();
        r.spec.device = Device::Cpu;
        assert!(run_power(EnergyTable::shipped(), &r, hw, 2).watts.is_none());
    }
}
