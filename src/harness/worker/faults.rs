//! Test-only faults of the worker (feature `fault-injection`; without it none is ever injected).

use std::hint::black_box;

use crate::backend::Embeddings;
use crate::spec::RunSpec;

/// Test-only faults (feature `fault-injection`): `RECBENCH_FAULT=KIND@PATTERN` makes the runs
/// whose id (or the `recbench parity` checks whose label) contains PATTERN segfault, abort, run
/// out of memory, hang, emit NaN (`nan`), compute probe embeddings that drift from the
/// reference (`drift`) or take 20 ms longer per timed iteration (`slow`). With `RECBENCH_FAULT_LOG=FILE`, every worker appends its run id
/// and its fault (`-` for none) to FILE when it starts, so a test sees which binary ran when.
pub(super) fn fault(spec: &RunSpec) -> Option<String> {
    fault_of(&spec.id)
}

/// The fault injected into the run or check named `id`, if any.
#[cfg(feature = "fault-injection")]
pub(super) fn fault_of(id: &str) -> Option<String> {
    let v = std::env::var("RECBENCH_FAULT").ok()?;
    let (kind, pat) = v.split_once('@').unwrap_or((v.as_str(), ""));
    id.contains(pat).then(|| kind.to_string())
}

#[cfg(not(feature = "fault-injection"))]
pub(super) fn fault_of(_: &str) -> Option<String> {
    None
}

/// Test-only (`drift`): a backend that computes something slightly different, in a run or in
/// a `recbench parity` check named `id`.
pub(crate) fn inject_drift(id: &str, probes: &mut Embeddings) {
    if fault_of(id).as_deref() == Some("drift") {
        for v in probes.data.iter_mut().step_by(7) {
            *v += 0.05;
        }
    }
}

#[cfg(feature = "fault-injection")]
pub(super) fn log_start(spec: &RunSpec) {
    use std::io::Write;
    if let Some(path) = std::env::var_os("RECBENCH_FAULT_LOG") {
        let line = format!(
            "{}\t{}\n",
            spec.id,
            fault(spec).unwrap_or_else(|| "-".into())
        );
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("RECBENCH_FAULT_LOG opens");
        f.write_all(line.as_bytes())
            .expect("RECBENCH_FAULT_LOG is written");
    }
}

#[cfg(not(feature = "fault-injection"))]
pub(super) fn log_start(_: &RunSpec) {}

/// The time a `slow` fault adds to every timed iteration (zero without it).
pub(super) fn injected_delay(spec: &RunSpec) -> std::time::Duration {
    match fault(spec).as_deref() {
        Some("slow") => std::time::Duration::from_millis(20),
        _ => std::time::Duration::ZERO,
    }
}

pub(super) fn inject_crash(spec: &RunSpec) {
    match fault(spec).as_deref() {
        // Rust's own SIGSEGV handler (stack-overflow detection) would swallow a raised signal:
        // restore the default action first, as a crash in native code would meet it.
        Some("segfault") => unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        },
        Some("abort") => std::process::abort(),
        Some("oom") => {
            // Cap the address space, then ask for more than the cap.
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
            let v = vec![1u8; 4 << 30];
            black_box(v);
        }
        Some("hang") => loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        },
        _ => {}
    }
}
