//! Memory figures of the worker process: its resident memory from sysinfo; its peak (`VmHWM`)
//! and the reset of that peak from procfs, which sysinfo does not track.

/// Peak resident set size of this process in bytes (`VmHWM`), if procfs has it.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Current resident set size of this process in bytes (sysinfo; `VmRSS` on Linux).
pub fn rss_bytes() -> Option<u64> {
    super::system::process_rss_bytes()
}

fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak-RSS mark to the current RSS (Linux ≥ 4.0: write 5 to `clear_refs`), so that
/// the peak read later covers only the measurement window. Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_at_least_current() {
        // Current first: memory may grow between the two reads, never the peak shrink.
        let now = super::rss_bytes().unwrap();
        let peak = super::peak_rss_bytes().unwrap();
        assert!(peak >= now && now > 1 << 20, "peak {peak}, now {now}");
    }
}
