//! A run that crashes, runs out of memory, hangs or produces NaN is recorded with its cause and
//! the sweep goes on. Faults are injected through a test-only hook in the worker, compiled only
//! with `--features fault-injection` (`cargo test --features fault-injection --test faults`).
#![cfg(feature = "fault-injection")]

use std::path::Path;
use std::process::Command;

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
