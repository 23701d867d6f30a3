//! Power and energy over a measurement window, each figure labelled by where it came from.
//!
//! Sources, best first:
//! * `rapl`: CPU package and DRAM energy counters from the powercap sysfs tree, read by a
//!   background thread every 100 ms so that counter wrap-around is seen and handled;
//! * `nvml`: a GPU's total-energy counter, or its power integrated over samples where the
//!   counter is not supported;
//! * `estimated`: no readable sensor — the CPU's TDP per hardware thread (from a table with a
//!   source for every entry) times the worker's busy threads (its CPU time / wall time);
//! * `none`: nothing readable and no estimate possible. Watts and joules are then `null`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Power figures of one run (or of the idle baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Power {
    /// Average power over the window, all measured domains together.
    pub watts: Option<f64>,
    /// Energy over the window.
    pub energy_joules: Option<f64>,
    /// `rapl`, `nvml`, `rapl+nvml`, `estimated` or `none`.
    pub source: String,
    /// Idle power of the same domains measured before the sweep, when a sensor exists.
    pub idle_watts: Option<f64>,
    /// `watts - idle_watts`: the power the workload added.
    pub above_idle_watts: Option<f64>,
    /// Worker CPU time / wall time over the window: how many hardware threads were busy.
    pub busy_threads: Option<f64>,
    /// How an `estimated` figure was made (TDP, threads and the source of the TDP).
    pub estimate_basis: Option<String>,
    /// Each measured domain separately.
    pub domains: Vec<DomainEnergy>,
    pub note: Option<String>,
}

/// Energy of one domain (a RAPL package, DRAM, a GPU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEnergy {
    pub domain: String,
    pub source: String,
    pub watts: f64,
    pub energy_joules: f64,
}

impl Default for Power {
    fn default() -> Self {
        Power {
            watts: None,
            energy_joules: None,
            source: "none".into(),
            idle_watts: None,
            above_idle_watts: None,
            busy_threads: None,
            estimate_basis: None,
            domains: vec![],
            note: Some("not measured".into()),
        }
    }
}

/// One RAPL energy counter.
#[derive(Debug, Clone)]
pub struct RaplDomain {
    pub name: String,
    pub energy_path: PathBuf,
    /// Counter range: it wraps to 0 after this many µJ.
    pub max_range_uj: u64,
}

/// The RAPL domains to sum: the packages (`intel-rapl:N`) and their DRAM sub-domains. Core and
/// uncore sub-domains are part of the package and are skipped so nothing is counted twice.
pub fn rapl_domains(root: &Path) -> Vec<RaplDomain> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    // Sub-domains live both as siblings (intel-rapl:0:0) and inside the package folder.
    for d in dirs.clone() {
        if let Ok(sub) = std::fs::read_dir(&d) {
            dirs.extend(sub.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for d in dirs {
        let file = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !file.starts_with("intel-rapl:") && !file.starts_with("amd-rapl:") {
            continue;
        }
        let name = std::fs::read_to_string(d.join("name"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let depth = file.matches(':').count();
        let wanted = depth == 1 || name == "dram";
        if !wanted || !seen.insert(file.clone()) {
            continue;
        }
        let energy_path = d.join("energy_uj");
        if std::fs::read_to_string(&energy_path).is_err() {
            continue;
        }
        let max_range_uj = std::fs::read_to_string(d.join("max_energy_range_uj"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u64::MAX);
        out.push(RaplDomain {
            name: format!("{file} ({name})"),
            energy_path,
            max_range_uj,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Counter increase from `prev` to `now`, allowing one wrap-around at `max_range`.
pub fn counter_delta(prev: u64, now: u64, max_range: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        max_range.saturating_sub(prev) + now
    }
}

/// A GPU energy meter (NVML in real builds, a fake in tests).
pub trait GpuMeter: Send {
    fn name(&self) -> String;
    /// Total energy since the driver loaded, in millijoules, if the GPU supports the counter.
    fn energy_mj(&self) -> Option<u64>;
    /// Instantaneous power in milliwatts.
    fn power_mw(&self) -> Option<u32>;
}

struct Accum {
    rapl_prev: Vec<Option<u64>>,
    rapl_uj: Vec<u64>,
    gpu_start_mj: Vec<Option<u64>>,
    gpu_last_mj: Vec<Option<u64>>,
    /// Trapezoid integral of power samples, for GPUs without the counter (mJ).
    gpu_integrated_mj: Vec<f64>,
    gpu_last_sample: Vec<Option<(Instant, f64)>>,
}

/// Samples every source on a background thread between `start` and `stop`.
pub struct PowerSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    acc: Arc<Mutex<Accum>>,
    rapl: Arc<Vec<RaplDomain>>,
    gpu_names: Vec<String>,
    started: Instant,
    cpu_start_s: Option<f64>,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn sample(acc: &mut Accum, rapl: &[RaplDomain], gpus: &[Box<dyn GpuMeter>]) {
    for (i, d) in rapl.iter().enumerate() {
        if let Some(now) = read_u64(&d.energy_path) {
            if let Some(prev) = acc.rapl_prev[i] {
                acc.rapl_uj[i] += counter_delta(prev, now, d.max_range_uj);
            }
            acc.rapl_prev[i] = Some(now);
        }
    }
    for (i, g) in gpus.iter().enumerate() {
        if let Some(e) = g.energy_mj() {
            if acc.gpu_start_mj[i].is_none() {
                acc.gpu_start_mj[i] = Some(e);
            }
            acc.gpu_last_mj[i] = Some(e);
        } else if let Some(p) = g.power_mw() {
            let now = (Instant::now(), p as f64);
            if let Some((t0, p0)) = acc.gpu_last_sample[i] {
                acc.gpu_integrated_mj[i] += (now.0 - t0).as_secs_f64() * (p0 + now.1) / 2.0;
            }
            acc.gpu_last_sample[i] = Some(now);
        }
    }
}

/// Seconds of CPU time (user + system) this process has used.
pub fn process_cpu_seconds() -> Option<f64> {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

impl PowerSampler {
    /// Starts sampling `rapl` domains and `gpus` every `period`.
    pub fn start(
        rapl: Vec<RaplDomain>,
        gpus: Vec<Box<dyn GpuMeter>>,
        period: Duration,
    ) -> PowerSampler {
        let n = rapl.len();
        let g = gpus.len();
        let gpu_names = gpus.iter().map(|g| g.name()).collect();
        let acc = Arc::new(Mutex::new(Accum {
            rapl_prev: vec![None; n],
            rapl_uj: vec![0; n],
            gpu_start_mj: vec![None; g],
            gpu_last_mj: vec![None; g],
            gpu_integrated_mj: vec![0.0; g],
            gpu_last_sample: vec![None; g],
        }));
        let rapl = Arc::new(rapl);
        let stop = Arc::new(AtomicBool::new(false));
        sample(&mut acc.lock().unwrap(), &rapl, &gpus);
        let started = Instant::now();
        let thread = (n + g > 0).then(|| {
            let (acc, rapl, stop) = (acc.clone(), rapl.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    sample(&mut acc.lock().unwrap(), &rapl, &gpus);
                }
                sample(&mut acc.lock().unwrap(), &rapl, &gpus);
            })
        });
        PowerSampler {
            stop,
            thread,
            acc,
            rapl,
            gpu_names,
            started,
            cpu_start_s: process_cpu_seconds(),
        }
    }

    /// Stops sampling and returns the window's figures. Without sensors, `estimate` turns
    /// busy threads into watts.
    pub fn stop(mut self, estimate: Option<&CpuTdp>) -> Power {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let busy = match (self.cpu_start_s, process_cpu_seconds()) {
            (Some(a), Some(b)) => Some((b - a) / wall),
            _ => None,
        };
        let acc = self.acc.lock().unwrap();
        let mut domains = Vec::new();
        for (i, d) in self.rapl.iter().enumerate() {
            let j = acc.rapl_uj[i] as f64 / 1e6;
            domains.push(DomainEnergy {
                domain: d.name.clone(),
                source: "rapl".into(),
                watts: j / wall,
                energy_joules: j,
            });
        }
        for (i, name) in self.gpu_names.iter().enumerate() {
            let mj = match (acc.gpu_start_mj[i], acc.gpu_last_mj[i]) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64),
                _ if acc.gpu_last_sample[i].is_some() => Some(acc.gpu_integrated_mj[i]),
                _ => None,
            };
            if let Some(mj) = mj {
                let j = mj / 1e3;
                domains.push(DomainEnergy {
                    domain: name.clone(),
                    source: "nvml".into(),
                    watts: j / wall,
                    energy_joules: j,
                });
            }
        }
        let mut p = Power {
            busy_threads: busy,
            ..Power::default()
        };
        if !domains.is_empty() {
            let mut sources: Vec<&str> = domains.iter().map(|d| d.source.as_str()).collect();
            sources.dedup();
            let j: f64 = domains.iter().map(|d| d.energy_joules).sum();
            p.energy_joules = Some(j);
            p.watts = Some(j / wall);
            p.source = sources.join("+");
            p.note = None;
            p.domains = domains;
        } else if let (Some(tdp), Some(busy)) = (estimate, busy) {
            let w = tdp.watts_per_thread() * busy;
            p.watts = Some(w);
            p.energy_joules = Some(w * wall);
            p.source = "estimated".into();
            p.estimate_basis = Some(format!(
                "{} W TDP / {} hardware threads ({}; {}) × {busy:.2} busy threads",
                tdp.tdp_watts, tdp.threads, tdp.model, tdp.source
            ));
            p.note = Some(
                "no power sensor readable; estimate from TDP and CPU time, not a measurement"
                    .into(),
            );
        } else {
            p.note = Some(match busy {
                Some(_) => "no power sensor readable and this CPU model is not in the TDP table: no estimate possible".into(),
                None => "no power sensor readable and CPU time unavailable".into(),
            });
        }
        p
    }
}

/// Thermal design power of a CPU model, with where the figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTdp {
    pub model: &'static str,
    pub tdp_watts: f64,
    /// Hardware threads of one package.
    pub threads: u32,
    pub source: &'static str,
}

impl CpuTdp {
    pub fn watts_per_thread(&self) -> f64 {
        self.tdp_watts / self.threads as f64
    }
}

/// Vendor TDP figures of common server CPUs, matched by a model-name substring. Only parts whose
/// TDP the vendor publishes; cloud-custom parts (EPYC 7R13, Xeon 8375C, Graviton) are absent
/// because their TDP is not published, so such hosts get no estimate rather than a guess.
pub const TDP_TABLE: &[CpuTdp] = &[
    CpuTdp {
        model: "EPYC 9654",
        tdp_watts: 360.0,
        threads: 192,
        source: "AMD specification, EPYC 9654",
    },
    CpuTdp {
        model: "EPYC 9354",
        tdp_watts: 280.0,
        threads: 64,
        source: "AMD specification, EPYC 9354",
    },
    CpuTdp {
        model: "EPYC 7763",
        tdp_watts: 280.0,
        threads: 128,
        source: "AMD specification, EPYC 7763",
    },
    CpuTdp {
        model: "EPYC 7543",
        tdp_watts: 225.0,
        threads: 64,
        source: "AMD specification, EPYC 7543",
    },
    CpuTdp {
        model: "Platinum 8480",
        tdp_watts: 350.0,
        threads: 112,
        source: "Intel specification, Xeon Platinum 8480+",
    },
    CpuTdp {
        model: "Platinum 8380",
        tdp_watts: 270.0,
        threads: 80,
        source: "Intel specification, Xeon Platinum 8380",
    },
    CpuTdp {
        model: "Gold 6338",
        tdp_watts: 205.0,
        threads: 64,
        source: "Intel specification, Xeon Gold 6338",
    },
];

/// TDP of the CPU named `model`, if the table has it.
pub fn lookup_tdp(model: &str) -> Option<&'static CpuTdp> {
    TDP_TABLE.iter().find(|t| model.contains(t.model))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    /// A fake powercap tree: package 0 with core (skipped) and dram (kept) sub-domains.
    fn fake_tree(root: &Path) {
        let pkg = root.join("intel-rapl:0");
        write(&pkg.join("name"), "package-0\n");
        write(&pkg.join("energy_uj"), "1000000\n");
        write(&pkg.join("max_energy_range_uj"), "262143328850\n");
        let core = pkg.join("intel-rapl:0:0");
        write(&core.join("name"), "core\n");
        write(&core.join("energy_uj"), "5\n");
        let dram = pkg.join("intel-rapl:0:1");
        write(&dram.join("name"), "dram\n");
        write(&dram.join("energy_uj"), "990000000\n");
        write(&dram.join("max_energy_range_uj"), "1000000000\n");
    }

    #[test]
    fn discovers_packages_and_dram_but_not_cores() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path());
        let d = rapl_domains(dir.path());
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["intel-rapl:0 (package-0)", "intel-rapl:0:1 (dram)"]
        );
        assert_eq!(d[1].max_range_uj, 1_000_000_000);
    }

    #[test]
    fn wraparound_is_counted_once() {
        assert_eq!(counter_delta(100, 300, 1000), 200);
        assert_eq!(counter_delta(900, 100, 1000), 200);
    }

    #[test]
    fn sampler_measures_energy_across_a_wrap() {
        let dir = tempfile::tempdir().unwrap();
        fake_tree(dir.path());
        let domains = rapl_domains(dir.path());
        let s = PowerSampler::start(domains, vec![], Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(50));
        // Package +2 J; DRAM wraps from 990 J past its 1000 J range to 5 J: +15 J.
        write(&dir.path().join("intel-rapl:0/energy_uj"), "3000000\n");
        write(
            &dir.path().join("intel-rapl:0/intel-rapl:0:1/energy_uj"),
            "5000000\n",
        );
        std::thread::sleep(Duration::from_millis(50));
        let p = s.stop(None);
        assert_eq!(p.source, "rapl");
        let e = p.energy_joules.unwrap();
        assert!((e - 17.0).abs() < 1e-9, "{e}");
        assert!(p.watts.unwrap() > 0.0);
        assert_eq!(p.domains.len(), 2);
    }

    struct FakeGpu {
        energy: Option<Arc<Mutex<u64>>>,
        power_mw: u32,
    }

    impl GpuMeter for FakeGpu {
        fn name(&self) -> String {
            "fake GPU".into()
        }
        fn energy_mj(&self) -> Option<u64> {
            self.energy.as_ref().map(|e| *e.lock().unwrap())
        }
        fn power_mw(&self) -> Option<u32> {
            Some(self.power_mw)
        }
    }

    #[test]
    fn gpu_energy_counter_is_preferred() {
        let e = Arc::new(Mutex::new(1_000_000u64));
        let g = FakeGpu {
            energy: Some(e.clone()),
            power_mw: 1,
        };
        let s = PowerSampler::start(vec![], vec![Box::new(g)], Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(20));
        *e.lock().unwrap() += 4_500; // 4.5 J
        std::thread::sleep(Duration::from_millis(20));
        let p = s.stop(None);
        assert_eq!(p.source, "nvml");
        assert!((p.energy_joules.unwrap() - 4.5).abs() < 1e-9);
    }

    #[test]
    fn gpu_power_is_integrated_without_the_counter() {
        let g = FakeGpu {
            energy: None,
            power_mw: 200_000,
        };
        let s = PowerSampler::start(vec![], vec![Box::new(g)], Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(200));
        let p = s.stop(None);
        // 200 W constant: the integral over the sampled span is close to 200 W × span.
        let w = p.watts.unwrap();
        assert!((150.0..=200.5).contains(&w), "{w}");
    }

    #[test]
    fn estimate_is_labelled_and_null_without_a_tdp() {
        let thread_cpu = || {
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
            ru.ru_utime.tv_sec as f64 + ru.ru_utime.tv_usec as f64 / 1e6
        };
        let s = PowerSampler::start(vec![], vec![], Duration::from_millis(5));
        // Burn 0.1 s of this thread's CPU time, however long a loaded machine takes to give it.
        let (start, mut x) = (thread_cpu(), 0u64);
        while thread_cpu() - start < 0.1 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let tdp = lookup_tdp("AMD EPYC 9354 32-Core Processor").unwrap();
        let p = s.stop(Some(tdp));
        assert_eq!(p.source, "estimated");
        let busy = p.busy_threads.unwrap();
        assert!((p.watts.unwrap() - 280.0 / 64.0 * busy).abs() < 1e-9);
        // Energy = TDP per thread × CPU seconds; other test threads can only add CPU time.
        let j = p.energy_joules.unwrap();
        assert!(j >= 280.0 / 64.0 * 0.099, "{j} J for 0.1 CPU-seconds");
        assert!(p.estimate_basis.unwrap().contains("AMD specification"));

        let p = PowerSampler::start(vec![], vec![], Duration::from_millis(5)).stop(None);
        assert_eq!(p.source, "none");
        assert!(
            p.watts.is_none() && p.energy_joules.is_none(),
            "missing is null, never 0"
        );
        assert!(
            lookup_tdp("AMD EPYC").is_none(),
            "a masked model name is not guessed"
        );
    }
}
