//! The CUDA build (`scripts/build-gpu.sh`) on a host without a GPU: it starts, and every CUDA
//! run it cannot do is `skipped` with the reason (no driver, no such device, libtorch's CUDA
//! libraries missing, ONNX Runtime's CUDA provider missing), never a crash. And the one command
//! for a GPU host, `scripts/gpu-check.sh --dry-run`, goes through every step on the CPU.
//!
//! The CUDA-build tests need that binary, which takes a separate release build:
//! `scripts/test.sh` builds it and runs them with `--ignored`, RECBENCH_CUDA_BIN naming it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The binary scripts/build-gpu.sh made.
fn cuda_bin() -> PathBuf {
    let bin = std::env::var_os("RECBENCH_CUDA_BIN").map(PathBuf::from).expect(
        "RECBENCH_CUDA_BIN must name the binary of scripts/build-gpu.sh (target/gpu/bundle/recbench)",
    );
    assert!(bin.is_file(), "{} does not exist", bin.display());
    bin
}

/// A stand-in for the NVIDIA driver library: it initialises and reports `devices` devices, and
/// has nothing else. Enough for recbench's driver probe; every runtime then meets its own need.
fn fake_driver(dir: &Path, devices: u32) -> PathBuf {
    let src = dir.join("fake_cuda.c");
    std::fs::write(
        &src,
        format!(
            "int cuInit(unsigned flags) {{ (void)flags; return 0; }}\n\
             int cuDeviceGetCount(int *n) {{ *n = {devices}; return 0; }}\n"
        ),
    )
    .unwrap();
    let lib = dir.join("libfakecuda.so");
    let ok = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status()
        .expect("a C compiler (cc) to build the stand-in driver");
    assert!(ok.success());
    lib
}

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `backends --json` of the CUDA build with the driver library `driver`: the CUDA line of each
/// backend compiled in (all three where the set-up fetched their runtimes).
fn cuda_lines(driver: &Path) -> Vec<(String, String)> {
    let out = Command::new(cuda_bin())
        .env("RECBENCH_CUDA_DRIVER", driver)
        .args(["backends", "--json"])
        .output()
        .unwrap();
    json(&out)
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["compiled"] == true)
        .map(|b| {
            (
                b["backend"].as_str().unwrap().to_string(),
                b["cuda"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The skip reasons of a sweep of `backends` on `device` (tiny model, CPU-sized).
fn skip_reasons(driver: &Path, device: &str, dir: &Path) -> Vec<(String, String, String)> {
    let scenario = dir.join("cuda.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"cuda\"\n[model]\npresets = \"tiny\"\n[workload]\nmode = \"two-tower\"\n\
             batch = 1\nseq_len = 16\nprecision = [\"fp32\", \"int8\"]\n[matrix]\n\
             backends = [\"candle\", \"onnx\", \"torch\"]\ndevices = [\"{device}\"]\nthreads = 1\n"
        ),
    )
    .unwrap();
    let out = Command::new(cuda_bin())
        .env("RECBENCH_CUDA_DRIVER", driver)
        .arg("validate")
        .arg(&scenario)
        .arg("--json")
        .output()
        .unwrap();
    let v = json(&out);
    v.as_array()
        .unwrap_or_else(|| panic!("no runs in {v}"))
        .iter()
        .map(|r| {
            (
                r["spec"]["backend"].as_str().unwrap().to_string(),
                r["spec"]["precision"].as_str().unwrap().to_string(),
                r["skip"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs the CUDA build: scripts/test.sh builds it (scripts/build-gpu.sh) and runs this with --ignored"]
fn the_cuda_build_starts_without_a_driver_and_says_so_per_backend() {
    common::isolate();
    let no_driver = Path::new("/nonexistent/libcuda.so.1");
    let lines = cuda_lines(no_driver);
    assert!(lines.iter().any(|(b, _)| b == "candle"), "{lines:?}");
    for (backend, line) in &lines {
        assert!(
            line.contains(&format!("{backend} on CUDA"))
                && line.contains("no NVIDIA driver")
                && line.contains("/nonexistent/libcuda.so.1"),
            "{backend}: {line}"
        );
        // The CUDA build never asks to be rebuilt with CUDA.
        assert!(!line.contains("not enabled in this build"), "{line}");
    }
    let dir = tempfile::tempdir().unwrap();
    for (backend, precision, skip) in skip_reasons(no_driver, "cuda", dir.path()) {
        assert!(
            skip.contains("no NVIDIA driver"),
            "{backend} {precision}: {skip}"
        );
    }
}

#[test]
#[ignore = "needs the CUDA build: scripts/test.sh builds it (scripts/build-gpu.sh) and runs this with --ignored"]
fn with_a_driver_each_backend_names_what_its_cuda_runtime_lacks_here() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let driver = fake_driver(dir.path(), 1);
    let lines = cuda_lines(&driver);
    let line = |b: &str| {
        let l = lines.iter().find(|(n, _)| n == b).map(|(_, l)| l.as_str());
        assert!(l.is_some(), "{b} is not in this CUDA build: {lines:?}");
        l.unwrap()
    };
    // candle's cudarc opens cuBLAS & co. when a device is first used: not on this host.
    assert!(
        line("candle").contains("needs the CUDA library cublas")
            && line("candle").contains("libcublas.so.13"),
        "{}",
        line("candle")
    );
    // libtorch's CUDA half is there, its CUDA libraries (cuDNN, cuBLAS, ...) are not.
    assert!(
        line("torch").contains("libtorch_cuda.so") && line("torch").contains("cannot open"),
        "{}",
        line("torch")
    );
    // The PyPI onnxruntime wheel is the CPU build: no CUDA provider beside it.
    assert!(
        line("onnx").contains("libonnxruntime_providers_cuda.so")
            && line("onnx").contains("missing"),
        "{}",
        line("onnx")
    );

    let runs = skip_reasons(&driver, "cuda", dir.path());
    assert_eq!(runs.len(), 6, "{runs:?}");
    for (backend, precision, skip) in &runs {
        let want = match (backend.as_str(), precision.as_str()) {
            ("candle", _) => "needs the CUDA library cublas",
            ("onnx", "fp32") => "libonnxruntime_providers_cuda.so",
            ("onnx", _) => "fp32 only",
            ("torch", "int8") => "torch int8 on CUDA is not built",
            _ => "libtorch_cuda.so",
        };
        assert!(skip.contains(want), "{backend} {precision}: {skip}");
    }

    // A device the driver does not have.
    for (backend, precision, skip) in skip_reasons(&driver, "cuda:3", dir.path()) {
        assert!(
            skip.contains("cuda:3") && skip.contains("sees 1 CUDA device"),
            "{backend} {precision}: {skip}"
        );
    }
}

/// The GPU host's one command, every step on this host's CPU: hardware, backends, parity, the
/// GPU scenarios (shrunk), and the report beside the committed CPU reference results.
#[test]
fn gpu_check_dry_run_goes_through_every_step_on_the_cpu() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/gpu-check.sh"))
        .args(["--dry-run", "--out"])
        .arg(dir.path())
        .env("RECBENCH", env!("CARGO_BIN_EXE_recbench"))
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("gpu-check.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in ["hardware", "backends", "parity", "run", "report"] {
        assert!(
            log.contains(&format!("recbench {step}")),
            "step {step} missing:\n{log}"
        );
    }
    // The anchors: recbench's rounds between the eager ones (the eager side needs torch and
    // transformers in this Python and says so when they are missing), and their table.
    for round in 1..=3 {
        assert!(
            log.contains(&format!("anchors round {round}: PyTorch eager")),
            "anchors round {round} missing:\n{log}"
        );
    }
    let table = std::fs::read_to_string(dir.path().join("anchors.md")).unwrap();
    assert!(table.contains("| recbench candle | fp16 |"), "{table}");
    if cfg!(feature = "torch") {
        assert!(table.contains("| recbench torch | fp16 |"), "{table}");
    }
    assert!(table.contains("a CPU dry run, not a GPU figure"), "{table}");
    // `backends` printed each backend's CUDA line.
    assert!(log.contains("cuda:"), "{log}");
    // The shrunk GPU sweep ran on the CPU, and its runs passed.
    let sweep = std::fs::read_dir(dir.path().join("gpu-dry-run"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(sweep).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let ok: Vec<&Value> = runs.iter().filter(|r| r["status"] == "ok").collect();
    assert!(!ok.is_empty(), "{v}");
    assert!(ok.iter().all(|r| r["spec"]["device"] == "cpu"));
    // Every run scored on its device (the CPU inside the backend here) and said how.
    assert!(
        ok.iter().all(|r| r["spec"]["scoring"] == "device"
            && r["notes"].to_string().contains("scoring on the device:")),
        "{v}"
    );
    assert!(runs.iter().all(|r| r["spec"]["model"] == "tiny"));
    let html = std::fs::read_to_string(dir.path().join("report/index.html")).unwrap();
    assert!(
        html.contains("gpu-dry-run"),
        "the report names the GPU results"
    );
}
