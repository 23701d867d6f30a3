//! A run that crashes, runs out of memory, hangs or produces NaN is recorded with its cause and
//! the sweep goes on. Faults are injected through a test-only hook in the worker, compiled only
//! with `--features fault-injection` (`cargo test --features fault-injection --test faults`).
#![cfg(feature = "fault-injection")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn sweep_with_fault(fault: &str) -> (Value, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faults.toml");
    let out = Command::cargo_bin("recbench")
        .unwrap()
        .arg("run")
        .arg(&fixture)
        .arg("--out")
        .arg(dir.path())
        .arg("--quiet")
        .env("RECBENCH_FAULT", format!("{fault}@/b1/"))
        .output()
        .unwrap();
    let folder = dir.path().join("faults");
    let file = std::fs::read_dir(&folder)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    (
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap(),
        out,
    )
}

fn check(fault: &str, status: &str, cause: &str) {
    let (v, out) = sweep_with_fault(fault);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed run fails the sweep: {err}"
    );
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "the sweep went on after the fault");
    let broken = &runs[0];
    assert_eq!(broken["status"], status, "{broken}");
    let reason = broken["reason"].as_str().unwrap();
    assert!(
        reason.contains(cause),
        "{fault}: reason {reason:?} lacks {cause:?}"
    );
    assert!(
        broken["latency"].is_null(),
        "no speed is reported for a broken run"
    );
    assert_eq!(runs[1]["status"], "ok", "the next run is unaffected");
}

#[test]
fn segfault_is_recorded_with_its_signal() {
    check("segfault", "failed", "SIGSEGV");
}

#[test]
fn abort_is_recorded_with_its_signal() {
    check("abort", "failed", "SIGABRT");
}

#[test]
fn out_of_memory_is_recorded_as_such() {
    check("oom", "failed", "out of memory");
}

#[test]
fn hang_is_killed_at_the_timeout() {
    check("hang", "failed", "timed out after 15 s");
}

#[test]
fn nan_output_is_invalid_not_a_result() {
    check("nan", "invalid", "NaN");
}

#[test]
fn a_parity_failure_makes_the_run_invalid_and_untimed() {
    let (v, _) = sweep_with_fault("drift");
    let broken = &v["runs"][0];
    assert_eq!(broken["status"], "invalid", "{broken}");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .starts_with("parity failed"),
        "{broken}"
    );
    assert_eq!(broken["parity"]["passed"], false);
    assert!(broken["latency"].is_null() && broken["throughput"].is_null());
    assert!(
        broken["samples_ms"].as_array().unwrap().is_empty(),
        "not timed"
    );
    assert_eq!(v["runs"][1]["status"], "ok");
}

/// The pid of a `recbench __worker` child of `parent`, waiting up to 30 s for one to start.
fn worker_of(parent: u32) -> Option<u32> {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // After the parenthesised name: state, then the parent pid.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if ppid == Some(parent) && String::from_utf8_lossy(&cmd).contains("__worker") {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Whether process `pid` is gone (or a zombie) within 5 s: well before the fixture's 15 s run
/// timeout, which a dead parent could not enforce anyway.
fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) if s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')) => return true,
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

/// A sweep whose first worker hangs: the parent is sent `signal` while that worker runs, and the
/// worker must not outlive it.
fn worker_dies_with_parent(signal: i32) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faults.toml");
    let mut parent = Command::cargo_bin("recbench")
        .unwrap()
        .arg("run")
        .arg(&fixture)
        .arg("--out")
        .arg(dir.path())
        .arg("--quiet")
        .env("RECBENCH_FAULT", "hang@/b1/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let worker = worker_of(parent.id()).expect("the hanging worker started");
    unsafe { libc::kill(parent.id() as i32, signal) };
    let until = Instant::now() + Duration::from_secs(10);
    while parent.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let parent_exited = parent.try_wait().unwrap().is_some();
    if !parent_exited {
        let _ = parent.kill();
        let _ = parent.wait();
    }
    let dead = gone(worker);
    if !dead {
        unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    }
    assert!(parent_exited, "the sweep did not stop on signal {signal}");
    assert!(
        dead,
        "worker {worker} outlived its parent (signal {signal})"
    );
}

#[test]
fn the_worker_dies_when_the_parent_is_killed() {
    worker_dies_with_parent(libc::SIGKILL);
}

#[test]
fn the_worker_dies_when_the_parent_is_interrupted() {
    worker_dies_with_parent(libc::SIGINT);
}
