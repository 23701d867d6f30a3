//! The ONNX Runtime sessions that `OnnxBert::load` races side by side leave no worker spinning
//! once a forward returns (each session has its own thread pool; a spinning one would take a core
//! from the next candidate). Alone in its test binary: it reads the CPU time of the whole process,
//! which other tests running beside it would add to.
#![cfg(feature = "onnx")]

mod common;

use std::time::Duration;

use ort::session::builder::GraphOptimizationLevel;
use recbench::backend::onnx::{OnnxBert, Spin};
use recbench::backend::{Device, Encoder, Precision};
use recbench::harness::parity::PROBES;
use recbench::model::onnx::{export, Flavour};
use recbench::model::{ModelFiles, Preset, Tokenizer};
use recbench::recommender::TEXT_MAX_TOKENS;

/// User plus system CPU time of this process, in ms.
fn process_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut u), 0);
        u
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

/// CPU time the process burns in the 300 ms after a forward returns, while this thread sleeps.
fn cpu_ms_after_a_forward(spin: Spin) -> f64 {
    let files = ModelFiles::resolve(Preset::Tiny, recbench::model::weights::DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let batch = tok.batch(&PROBES, TEXT_MAX_TOKENS).unwrap();
    let path = export::export_cached(&files, Flavour::Plain, Precision::Fp32).unwrap();
    let mut enc = OnnxBert::load_file_with(
        &path,
        files.config.hidden_size,
        2,
        GraphOptimizationLevel::All,
        Device::Cpu,
        spin,
    )
    .unwrap();
    for _ in 0..5 {
        enc.encode(&batch).unwrap();
    }
    let before = process_cpu_ms();
    std::thread::sleep(Duration::from_millis(300));
    process_cpu_ms() - before
}

#[test]
fn raced_sessions_stop_their_workers_when_a_forward_returns() {
    common::isolate();
    // A worker that spins on burns CPU time while this thread sleeps; one that stopped burns
    // none (a little slack for the process's other threads waking up). On the 2-vCPU EPYC VM:
    // 0.0 ms stopped, 42 ms with ONNX Runtime's default, and 40 ms when `StopAfterRun` was
    // made to set the default (tried).
    let stopped = cpu_ms_after_a_forward(Spin::StopAfterRun);
    assert!(
        stopped < 10.0,
        "{stopped:.1} ms of CPU time while idle after a forward with Spin::StopAfterRun \
         ({:.1} ms with the runtime's default)",
        cpu_ms_after_a_forward(Spin::Default)
    );
}
