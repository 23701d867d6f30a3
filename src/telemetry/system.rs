//! Host and process figures from sysinfo, which reads them on every OS it supports (procfs on
//! Linux, sysctl on macOS and the BSDs, the Windows APIs), so `recbench hardware` says what it
//! can wherever it runs. `/proc/cpuinfo` is still read for what sysinfo does not give: the CPU's
//! vendor, family, model and stepping (its signature), its ISA flags and its sockets; and
//! `/proc/self` for the peak resident memory of the worker and its reset (`VmHWM`,
//! `clear_refs`), which sysinfo does not track.

use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System,
};

/// Total memory of this machine in bytes; `None` where sysinfo cannot read it.
pub fn total_memory_bytes() -> Option<u64> {
    let s = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    Some(s.total_memory()).filter(|m| *m > 0)
}

/// Physical cores of this machine; `None` where sysinfo cannot tell.
pub fn physical_cores() -> Option<usize> {
    System::physical_core_count().filter(|n| *n > 0)
}

/// The CPU's brand string (on Linux, `/proc/cpuinfo`'s model name) and its current clock in
/// MHz as the OS reports it.
pub fn cpu_brand_and_mhz() -> (Option<String>, Option<u64>) {
    let s = System::new_with_specifics(
        RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_frequency()),
    );
    let cpu = s.cpus().first();
    (
        cpu.map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty()),
        cpu.map(|c| c.frequency()).filter(|f| *f > 0),
    )
}

/// The host name as the OS reports it.
pub fn host_name() -> Option<String> {
    System::host_name().filter(|h| !h.trim().is_empty())
}

/// The kernel release.
pub fn kernel() -> Option<String> {
    System::kernel_version().filter(|k| !k.trim().is_empty())
}

/// Resident memory of this process in bytes, now.
pub fn process_rss_bytes() -> Option<u64> {
    let pid = sysinfo::get_current_pid().ok()?;
    let mut s = System::new();
    s.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    s.process(pid).map(|p| p.memory()).filter(|m| *m > 0)
}

#[cfg(test)]
mod tests {
    /// `field: value` of a procfs text.
    fn field(text: &str, key: &str) -> Option<String> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    }

    /// On Linux, sysinfo's figures are procfs's: the results keep the same values as when
    /// recbench read procfs itself.
    #[test]
    #[cfg(target_os = "linux")]
    fn sysinfo_agrees_with_procfs_on_this_machine() {
        let read = |p: &str| std::fs::read_to_string(p).unwrap();
        let meminfo = read("/proc/meminfo");
        // `key:   123 kB` → 123.
        let kib = |text: &str, key: &str| -> u64 {
            let v = field(text, key).unwrap();
            v.split_whitespace().next().unwrap().parse().unwrap()
        };
        assert_eq!(
            super::total_memory_bytes(),
            Some(kib(&meminfo, "MemTotal") * 1024)
        );
        let cpuinfo = read("/proc/cpuinfo");
        let (brand, mhz) = super::cpu_brand_and_mhz();
        assert_eq!(brand, field(&cpuinfo, "model name"));
        assert!(mhz.is_some_and(|m| m > 100), "{mhz:?} MHz");
        // Unique (physical id, core id) pairs, where /proc/cpuinfo has them.
        let pairs: std::collections::BTreeSet<(String, String)> = cpuinfo
            .split("\n\n")
            .filter_map(|b| Some((field(b, "physical id")?, field(b, "core id")?)))
            .collect();
        if !pairs.is_empty() {
            assert_eq!(super::physical_cores(), Some(pairs.len()));
        }
        assert_eq!(
            super::host_name().as_deref(),
            Some(read("/proc/sys/kernel/hostname").trim())
        );
        assert_eq!(
            super::kernel().as_deref(),
            Some(read("/proc/sys/kernel/osrelease").trim())
        );
        let status = read("/proc/self/status");
        let rss = super::process_rss_bytes().unwrap() as f64;
        let procfs = (kib(&status, "VmRSS") * 1024) as f64;
        assert!(
            (rss / procfs - 1.0).abs() < 0.2,
            "sysinfo {rss} bytes against VmRSS {procfs}"
        );
    }
}
