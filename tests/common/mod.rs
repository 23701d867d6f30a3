//! Helpers shared by the test files (each test binary uses a subset).
#![allow(dead_code)]

use recbench::backend::{self, BackendKind, Device, EncoderOptions, Precision};
use recbench::model::reference::{self, RefWeights};
use recbench::model::weights::DEFAULT_SEED;
use recbench::model::{ModelFiles, Preset, Tokenizer};

/// CPU, two threads, at `precision`.
pub fn opts(precision: Precision) -> EncoderOptions {
    EncoderOptions {
        device: Device::Cpu,
        precision,
        threads: 2,
        shape_hint: None,
    }
}

/// Cosine similarity, accumulated in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    d / (n(a) * n(b))
}

/// Max abs difference between `kind` at fp32 and the float64 forward written with plain loops,
/// on tiny, on two padded inputs of different lengths.
pub fn tiny_max_diff_vs_f64_reference(kind: BackendKind) -> f64 {
    tiny_max_diff_vs_f64_reference_pruned(kind, "full")
}

/// Tiny pruned by `recipe` with heads halved and the FFN cut: 1 head of 64, so the attention
/// runs at width 64 against a hidden size of 128.
pub const NARROW_ATTENTION: &str = "drop-ffn-25+drop-heads-50";

/// Tiny pruned by [`NARROW_ATTENTION`] (its pruned files, written to the cache on first use).
pub fn narrow_attention_tiny() -> ModelFiles {
    let recipe = recbench::model::Recipe::parse(NARROW_ATTENTION).unwrap();
    ModelFiles::resolve_pruned(Preset::Tiny, DEFAULT_SEED, &recipe).unwrap()
}

/// The largest absolute difference between two equally long vectors of embeddings.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "embeddings of different sizes");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// As [`tiny_max_diff_vs_f64_reference`], on tiny pruned by `recipe` (the pruned file in the
/// cache): the float64 forward reads the same pruned weights.
pub fn tiny_max_diff_vs_f64_reference_pruned(kind: BackendKind, recipe: &str) -> f64 {
    let recipe = recbench::model::Recipe::parse(recipe).unwrap();
    let files = ModelFiles::resolve_pruned(Preset::Tiny, DEFAULT_SEED, &recipe).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let batch = tok
        .batch(
            &[
                "a short one",
                "a somewhat longer sentence about films and books, with padding for the other",
            ],
            64,
        )
        .unwrap();
    let mut enc = backend::open(kind, &files, opts(Precision::Fp32)).unwrap();
    let got = enc.encode(&batch).unwrap();
    assert_eq!((got.rows, got.dim), (2, files.config.hidden_size));
    let want = reference::forward(
        &files.config,
        &RefWeights::load(&files.weights, &files.config).unwrap(),
        &batch,
    );
    let mut max = 0.0f64;
    for (i, row) in want.iter().enumerate() {
        for (a, b) in got.row(i).iter().zip(row) {
            max = max.max((*a as f64 - b).abs());
        }
    }
    max
}

/// The rows of a CSV text as RFC 4180 reads them: a quoted field may hold commas, newlines and
/// doubled quotes (runs.csv quotes its notes and energy basis).
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// The files of `dir` whose extension is `ext`, sorted.
pub fn files_with_extension(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Asserts that a finished command exited 0, showing its stderr when not.
#[track_caller]
pub fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stdout whose reader is already gone (`recbench … | head` after head exited).
pub fn closed_stdout() -> std::process::Stdio {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    // SAFETY: fds[1] is a fresh descriptor owned by nothing else.
    std::process::Stdio::from(unsafe { std::fs::File::from_raw_fd(fds[1]) })
}

/// Waits until the results file in `folder` holds at least `n` runs; returns how many.
pub fn wait_for_runs(folder: &std::path::Path, n: usize) -> usize {
    let start = std::time::Instant::now();
    loop {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "no run finished in time"
        );
        let have = std::fs::read_dir(folder)
            .ok()
            .and_then(|mut d| {
                d.find_map(|e| {
                    e.ok()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "json"))
                })
            })
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map_or(0, |v| v["runs"].as_array().map_or(0, |r| r.len()));
        if have >= n {
            return have;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Environment variables a user may have set that change what recbench measures or decides:
/// recbench's own settings, the thread runtimes' knobs, the runtimes' ISA caps and glibc's
/// tunables. [`isolate`] removes them; the ones named in [`KEPT`] tell the tests how to run.
const SCRUBBED: [&str; 9] = [
    "RECBENCH_",
    "OMP_",
    "GOMP_",
    "KMP_",
    "MKL_",
    "ONEDNN_",
    "DNNL_",
    "ATEN_CPU_CAPABILITY",
    "FBGEMM_",
];
const SCRUBBED_EXACT: [&str; 2] = ["GLIBC_TUNABLES", "RAYON_NUM_THREADS"];
/// Settings for the test run itself, kept: where the set-up's cache is, which checks to skip,
/// which CUDA build to check; and what cargo passes on from the build script.
const KEPT: [&str; 7] = [
    "RECBENCH_CACHE",
    "RECBENCH_SKIP_",
    "RECBENCH_CUDA_BIN",
    // Set by cargo from the build script, for the build, not by the user.
    "RECBENCH_GIT_COMMIT",
    "RECBENCH_CANDLE_VERSION",
    "RECBENCH_ORT_VERSION",
    "RECBENCH_TCH_VERSION",
];

/// The cache this test binary uses, once [`isolate`] ran.
static TEST_CACHE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

extern "C" fn remove_test_cache() {
    if let Some(p) = TEST_CACHE.get() {
        // Removes the links, never what they point to.
        let _ = std::fs::remove_dir_all(p);
    }
}

/// Call first in every test that runs recbench (in process or as a child). Once per test
/// binary, before any test goes on:
/// - the variables in [`SCRUBBED`] are removed from this process (children inherit that), so
///   no `OMP_NUM_THREADS`, ISA cap or `RECBENCH_*` setting of the user's shell changes a test;
/// - `RECBENCH_CACHE` points at a cache of this binary's own: every entry of the set-up's cache
///   linked (runtimes, weights, exports, embeddings) except `kernels/`, which starts empty, so
///   every kernel decision a test expects to be measured is measured here, whatever earlier runs
///   left. The folder is removed when the binary exits.
///
/// Every test calls it first, so no test reads the environment while it changes.
pub fn isolate() {
    TEST_CACHE.get_or_init(|| {
        let real = recbench::model::cache_dir();
        let scrub = |k: &str| {
            !KEPT.iter().any(|p| k.starts_with(p))
                && (SCRUBBED.iter().any(|p| k.starts_with(p)) || SCRUBBED_EXACT.contains(&k))
        };
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| scrub(k))
            .collect();
        for k in &names {
            std::env::remove_var(k);
        }
        if !names.is_empty() {
            eprintln!("test: not passed on to recbench: {}", names.join(" "));
        }
        let dir = tempfile::Builder::new()
            .prefix("recbench-test-cache-")
            .tempdir()
            .unwrap()
            .keep();
        if let Ok(entries) = std::fs::read_dir(&real) {
            for e in entries.flatten() {
                if e.file_name() != "kernels" {
                    std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
                }
            }
        }
        std::fs::create_dir(dir.join("kernels")).unwrap();
        std::env::set_var("RECBENCH_CACHE", &dir);
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(remove_test_cache) };
        dir
    });
}

/// Runs the fixture scenario `tests/fixtures/NAME.toml` (`recbench run … --quiet`, huge pages
/// and glibc tunables left to the sweep's own choice) and returns its results file.
#[allow(dead_code)]
pub fn run_fixture(name: &str) -> serde_json::Value {
    use assert_cmd::cargo::CommandCargoExt;
    let out = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.toml"));
    let st = std::process::Command::cargo_bin("recbench")
        .unwrap()
        .arg("run")
        .arg(&fixture)
        .args(["--quiet", "--out"])
        .arg(out.path())
        .env_remove("RECBENCH_HUGEPAGES")
        .env_remove("GLIBC_TUNABLES")
        .status()
        .unwrap();
    assert!(st.success());
    let dir = out.path().join(name);
    let file = files_with_extension(&dir, "json")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no results file in {}", dir.display()));
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

/// An ok run records its cold start: every part measured (none negative), the first request
/// timed, and the total at least the parts before steady latency plus that first request.
pub fn assert_cold_start(run: &serde_json::Value) {
    let c = &run["cold_start"];
    let part = |k: &str| c[k].as_f64().unwrap_or(0.0);
    for k in [
        "exec_s",
        "model_files_s",
        "open_s",
        "index_s",
        "to_steady_s",
    ] {
        assert!(part(k) >= 0.0, "{k} in {c}");
    }
    assert!(c["open_s"].as_f64().is_some_and(|s| s > 0.0), "{c}");
    let first_s = c["first_request_ms"].as_f64().unwrap_or(0.0) / 1e3;
    assert!(first_s > 0.0, "{c}");
    let before = part("exec_s") + part("model_files_s") + part("open_s") + part("index_s");
    let total = c["total_s"].as_f64().unwrap_or(-1.0);
    assert!(
        total >= before + first_s - 1e-9,
        "the total is not its parts: {c}"
    );
    if let Some(steady) = c["to_steady_s"].as_f64() {
        assert!((total - before - steady).abs() < 1e-9, "{c}");
    }
}
