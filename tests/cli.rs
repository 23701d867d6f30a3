//! Whole-pipeline tests through the real `recbench` binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// The binary, with an empty powercap tree instead of this host's: whether the host has
/// readable RAPL counters must not change what the tests expect.
fn recbench() -> Command {
    let no_sensors = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-powercap");
    std::fs::create_dir_all(&no_sensors).unwrap();
    let mut c = Command::cargo_bin("recbench").unwrap();
    c.env("RUST_BACKTRACE", "1"); // a panic would show a backtrace; the tests assert there is none
    c.env("RECBENCH_POWERCAP_ROOT", &no_sensors);
    c
}

/// With no readable sensor, a run's power is a labelled TDP estimate when this CPU is in the
/// table, else null with source `none` (what `recbench hardware` says about this CPU).
fn power_without_sensors() -> &'static str {
    let out = recbench().args(["hardware", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["power_sensors"].as_array().unwrap().is_empty(),
        "the injected powercap tree is empty: {}",
        v["power_sensors"]
    );
    if v["power_estimate"].as_str().unwrap().starts_with("none") {
        "none"
    } else {
        "estimated"
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `recbench run` of the smoke fixture on candle into `out`; callers add the rest.
fn smoke_run(out: &Path) -> Command {
    let mut c = recbench();
    c.arg("run")
        .arg(fixture("smoke.toml"))
        .arg("--out")
        .arg(out)
        .args(["--backend", "candle"]);
    c
}

/// The one results file in `dir`, parsed.
fn only_results(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(only_json_file(dir)).unwrap()).unwrap()
}

fn only_json_file(dir: &Path) -> PathBuf {
    let files = common::files_with_extension(dir, "json");
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn assert_clean_input_error(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
}

#[test]
fn malformed_scenario_exits_2_naming_file_line_and_field() {
    common::isolate();
    let path = fixture("bad-batch.toml");
    let out = recbench().arg("validate").arg(&path).output().unwrap();
    assert_clean_input_error(
        &out,
        &format!(
            "{}:6: field `workload.batch`: -4 is out of range; allowed: 1 to 4096",
            path.display()
        ),
    );
    // `run` refuses it the same way, before writing anything.
    let dir = tempfile::tempdir().unwrap();
    let out = recbench()
        .arg("run")
        .arg(&path)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_clean_input_error(&out, ":6: field `workload.batch`");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn missing_scenario_and_bad_flags_are_usage_errors() {
    common::isolate();
    let out = recbench()
        .args(["validate", "does/not/exist.toml"])
        .output()
        .unwrap();
    assert_clean_input_error(&out, "does/not/exist.toml: cannot read the file");
    let out = recbench()
        .arg("run")
        .arg(fixture("smoke.toml"))
        .args(["--backend", "tensorflow"])
        .output()
        .unwrap();
    assert_clean_input_error(&out, "unknown backend \"tensorflow\"");
}

#[test]
fn validate_lists_runs_and_skips_with_reasons() {
    common::isolate();
    let out = recbench()
        .arg("validate")
        .arg(fixture("smoke.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("expands to 16 runs"), "{text}");
    assert!(text.contains("single-stream load issues one request at a time"));
    if !cfg!(feature = "onnx") {
        assert!(text.contains("rebuild with --features onnx"));
    }
}

#[test]
fn smoke_sweep_writes_ok_runs_and_resume_repeats_nothing() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let out = smoke_run(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = only_json_file(&dir.path().join("smoke"));
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert!(v["scenario"]["text"]
        .as_str()
        .unwrap()
        .contains("name = \"smoke\""));
    assert!(
        v["environment"]["inventory"]["logical_cores"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let ceiling = &v["environment"]["gemm_ceiling"][0];
    assert!(ceiling["gflops"].as_f64().unwrap() > 0.1);
    // The ceiling is the best of every kernel measured, at 1024 and 2048, each recorded.
    let kernels = ceiling["kernels"].as_array().unwrap();
    let best = kernels
        .iter()
        .map(|k| k["gflops"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(ceiling["gflops"].as_f64().unwrap(), best);
    for size in [1024, 2048] {
        assert!(
            kernels
                .iter()
                .any(|k| k["kernel"] == "gemm crate (candle)" && k["size"] == size),
            "{kernels:?}"
        );
    }
    if cfg!(feature = "torch") {
        assert!(kernels.iter().any(|k| k["kernel"] == "libtorch mm"));
    }
    if cfg!(feature = "onnx") {
        assert!(kernels
            .iter()
            .any(|k| k["kernel"] == "ONNX Runtime MatMul (MLAS)"));
    }
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8, "candle only: 2 modes × 2 loads × 2 batches");
    let ok: Vec<&Value> = runs.iter().filter(|r| r["status"] == "ok").collect();
    assert_eq!(ok.len(), 6, "single-stream at batch 2 is skipped");
    for r in &ok {
        let l = &r["latency"];
        assert!(l["count"].as_u64().unwrap() >= 3);
        let (p50, p99, max) = (
            l["p50_ms"].as_f64().unwrap(),
            l["p99_ms"].as_f64().unwrap(),
            l["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{l}");
        let t = &r["throughput"];
        let seq = t["sequences_per_s"].as_f64().unwrap();
        let req = t["requests_per_s"].as_f64().unwrap();
        let expect_ratio = if r["spec"]["mode"] == "cross-encoder" {
            4.0
        } else {
            1.0
        };
        assert!((seq / req - expect_ratio).abs() < 1e-9);
        assert!((t["tokens_per_s"].as_f64().unwrap() / seq - 32.0).abs() < 1e-9);
        assert!(r["parity"]["passed"].as_bool().unwrap());
        assert!(r["parity"]["max_abs_diff"].as_f64().unwrap() <= 1e-4);
        assert!(r["memory"]["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
        assert!(r["compute"]["achieved_gflops"].as_f64().unwrap() > 0.0);
        common::assert_cold_start(r);
        let source = power_without_sensors();
        assert_eq!(r["power"]["source"], source);
        assert_eq!(
            r["power"]["watts"].is_null(),
            source == "none",
            "missing power is null, never 0; an estimate is a number: {}",
            r["power"]
        );
        assert!(!r["samples_ms"].as_array().unwrap().is_empty());
        assert!(
            !r["notes"].to_string().contains("isa cap"),
            "no ISA cap is set here: {}",
            r["notes"]
        );
    }
    for r in runs.iter().filter(|r| r["status"] == "skipped") {
        assert!(r["reason"]
            .as_str()
            .unwrap()
            .contains("batch 2 does not apply"));
    }

    // --resume finds the file, keeps every finished run and runs nothing again.
    let before = std::fs::read(&path).unwrap();
    let out = smoke_run(dir.path()).args(["--resume"]).output().unwrap();
    common::assert_succeeded(&out);
    assert_eq!(only_json_file(&dir.path().join("smoke")), path);
    let after: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let b: Value = serde_json::from_slice(&before).unwrap();
    let measured = |v: &Value| -> Vec<Value> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "ok")
            .cloned()
            .collect()
    };
    assert_eq!(
        measured(&after),
        measured(&b),
        "no measured run repeated or lost"
    );
    assert_eq!(after["runs"].as_array().unwrap().len(), 8);
    let ids = |v: &Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["spec"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&after), ids(&b), "same runs, same (plan) order");
}

#[test]
fn recommend_gives_science_fiction_to_a_science_fiction_fan() {
    common::isolate();
    let out = recbench()
        .args([
            "recommend",
            "--user",
            "I love space exploration and science-fiction films",
            "--top",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 10);
    let scifi = items
        .iter()
        .filter(|i| {
            let d = i["description"].as_str().unwrap().to_lowercase();
            d.contains("science-fiction") || d.contains("space") || d.contains("science fiction")
        })
        .count();
    assert!(scifi >= 8, "only {scifi} of 10 are science fiction: {v:#}");
    let scores: Vec<f64> = items.iter().map(|i| i["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted best first");

    let out = recbench()
        .args([
            "recommend",
            "--user",
            "a sturdy tent and a sleeping bag for hiking trips",
            "--top",
            "5",
            "--json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == "product")
            .count()
            >= 4,
        "{v:#}"
    );
}

#[test]
fn hardware_and_backends_report_as_json() {
    common::isolate();
    let out = recbench().args(["hardware", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["logical_cores"].as_u64().unwrap() >= 1);
    assert!(v["memory_bytes"].as_u64().unwrap() > 0);
    let out = recbench().args(["backends", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let candle = v
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "candle")
        .unwrap();
    assert_eq!(candle["compiled"], true);
    assert!(candle["runtime_version"]
        .as_str()
        .unwrap()
        .starts_with("0."));
    let torch = v
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "torch")
        .unwrap();
    assert_eq!(torch["compiled"], cfg!(feature = "torch"));
}

fn runs_in(path: &Path) -> Vec<Value> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).expect("a valid results file");
    v["runs"].as_array().unwrap().clone()
}

#[test]
fn sigkill_mid_sweep_keeps_a_valid_file_and_resume_completes_it() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let mut child = smoke_run(dir.path())
        .args(["--quiet"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let folder = dir.path().join("smoke");
    common::wait_for_runs(&folder, 2);
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    let path = only_json_file(&folder);
    let before = runs_in(&path);
    assert!(before.len() >= 2);
    let out = smoke_run(dir.path())
        .args(["--quiet", "--resume"])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let after = runs_in(&path);
    assert_eq!(after.len(), 8, "resume completed the sweep");
    for a in before
        .iter()
        .filter(|a| matches!(a["status"].as_str(), Some("ok" | "invalid")))
    {
        let b = after
            .iter()
            .find(|b| b["spec"]["id"] == a["spec"]["id"])
            .unwrap();
        assert_eq!(a, b, "a finished run was kept as it was, not repeated");
    }
    let ids: std::collections::BTreeSet<_> = after
        .iter()
        .map(|r| r["spec"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 8, "no run twice");
}

#[test]
fn two_sweeps_into_one_folder_never_clobber_each_other() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        smoke_run(dir.path())
            .args(["--quiet"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let files = common::files_with_extension(&dir.path().join("smoke"), "json");
    assert_eq!(files.len(), 2, "{files:?}");
    for f in files {
        assert_eq!(runs_in(&f).len(), 8, "{}", f.display());
    }
}

/// A RAPL package counter that advances at 25 W while a sweep runs: the runs and the idle
/// baseline record power from source `rapl`, and each figure is checked against the writer's
/// own log, whatever sensors this host has and however late a busy machine ran the writer.
///
/// A thread of this test writes the counter about every 10 ms and logs when it read the clock
/// and what it wrote. A window's energy must then be the difference of two logged values
/// exactly, and its length (energy / watts) must fit between those two writes: from after
/// the first was replaced to before the second was. A wrong conversion (mJ for µJ) or a
/// window timed from the wrong instant (50 ms early was tried) misses it.
#[test]
fn rapl_counters_are_read_and_turned_into_watts() {
    common::isolate();
    let tree = tempfile::tempdir().unwrap();
    let pkg = tree.path().join("intel-rapl:0");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("name"), "package-0\n").unwrap();
    std::fs::write(pkg.join("max_energy_range_uj"), "262143328850\n").unwrap();
    let energy = pkg.join("energy_uj");
    std::fs::write(&energy, "0\n").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, energy) = (stop.clone(), energy.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            // (when the clock was read, the value written, when the write had landed)
            let mut writes = vec![(t0, 0u64, t0)];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                let now = Instant::now();
                let uj = ((now - t0).as_secs_f64() * 25e6) as u64;
                let tmp = energy.with_extension("tmp");
                std::fs::write(&tmp, format!("{uj}\n")).unwrap();
                std::fs::rename(&tmp, &energy).unwrap();
                writes.push((now, uj, Instant::now()));
            }
            writes
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let out = smoke_run(dir.path())
        .env("RECBENCH_POWERCAP_ROOT", tree.path())
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    common::assert_succeeded(&out);
    let v: Value = only_results(&dir.path().join("smoke"));
    assert_eq!(
        v["environment"]["inventory"]["power_sensors"][0],
        "rapl:intel-rapl:0:package-0"
    );
    // A window that read write i's value at its start and write j's at its end began after
    // write i's clock read (its value cannot be seen earlier; write 0 stood before the sweep)
    // and before write i + 1 landed, and ended likewise between j's clock read and j + 1's
    // landing. A busy machine may stall the writer between the two: the bounds widen with it.
    let check = |what: &str, p: &Value| {
        assert_eq!(p["source"], "rapl", "{what}: {p}");
        let (w, j) = (
            p["watts"].as_f64().unwrap(),
            p["energy_joules"].as_f64().unwrap(),
        );
        let window = j / w;
        let uj = (j * 1e6).round() as i64;
        let slack = 0.002; // between the sampler's first read and its clock
        let fits = (0..writes.len()).any(|a| {
            (a + 1..writes.len()).any(|b| {
                let (read_a, ua, _) = writes[a];
                let (read_b, ub, _) = writes[b];
                let shortest = writes
                    .get(a + 1)
                    .map_or(0.0, |n| read_b.saturating_duration_since(n.2).as_secs_f64());
                let longest = match writes.get(b + 1) {
                    Some(n) if a > 0 => (n.2 - read_a).as_secs_f64(),
                    _ => f64::INFINITY,
                };
                (ub as i64 - ua as i64 - uj).abs() <= 1
                    && window >= shortest - slack
                    && window <= longest + slack
            })
        });
        eprintln!("{what}: {w:.3} W over {window:.4} s, {uj} µJ");
        assert!(
            fits,
            "{what}: {uj} µJ over {window} s is no window of the counter the test wrote"
        );
        assert!((w - 25.0).abs() < 10.0, "{what}: {w} W");
    };
    check("idle", &v["environment"]["idle_power"]);
    let runs = v["runs"].as_array().unwrap();
    assert!(runs.iter().any(|r| r["status"] == "ok"));
    for r in runs.iter().filter(|r| r["status"] == "ok") {
        check(r["spec"]["id"].as_str().unwrap(), &r["power"]);
    }
}

/// Server load through the real worker: the search, its probe limit and 2% rule, the
/// confirmation probe whose latencies become the run's, two instances with dynamic batching,
/// and the cost priced at the operating point with the bracket as its interval.
#[test]
fn server_load_finds_and_confirms_an_operating_point_and_is_priced_there() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let out = recbench()
        .arg("run")
        .arg(fixture("server.toml"))
        .arg("--out")
        .arg(dir.path())
        .arg("--quiet")
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let path = only_json_file(&dir.path().join("server-fixture"));
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let r = &v["runs"][0];
    assert_eq!(r["status"], "ok", "{r}");
    let s = &r["server"];
    assert_eq!(
        (s["max_batch"].as_u64(), s["instances"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(s["max_queue_delay_ms"], 1.0);
    assert_eq!(s["sla_p99_ms"], 40.0);
    let curve = s["curve"].as_array().unwrap();
    // At most 12 search probes, plus up to 4 failed confirmations that joined the curve.
    assert!(
        !curve.is_empty() && curve.len() <= 16,
        "at most 12 + 4 probes: {}",
        curve.len()
    );
    for c in curve {
        let (offered, achieved) = (
            c["offered_qps"].as_f64().unwrap(),
            c["achieved_qps"].as_f64().unwrap(),
        );
        if c["meets_sla"] == true {
            assert!(achieved >= 0.98 * offered, "the 2% rule: {c}");
            assert!(c["p99_ms"].as_f64().unwrap() <= 40.0, "{c}");
        }
        assert!(c["mean_batch"].as_f64().unwrap() <= 4.0, "{c}");
    }
    let op = &s["operating_point"];
    let notes = r["notes"].to_string();
    let report_dir = tempfile::tempdir().unwrap();
    let report = || {
        let out = recbench()
            .arg("report")
            .arg(&path)
            .arg("--out")
            .arg(report_dir.path())
            .output()
            .unwrap();
        common::assert_succeeded(&out);
        let csv = std::fs::read_to_string(report_dir.path().join("runs.csv")).unwrap();
        common::csv_rows(&csv)
    };
    if op.is_null() {
        // Other sweeps running beside this test (cargo runs test binaries in parallel) can keep
        // every probe of tiny over 40 ms. Then no rate met the SLA, the run says so, and it is
        // priced at no rate at all, least of all one it never served.
        eprintln!("no operating point on this (busy) machine: {s}");
        assert!(
            curve.iter().all(|c| c["meets_sla"] == false),
            "a probe met the SLA but no operating point was kept: {s}"
        );
        assert!(notes.contains("no operating point"), "{notes}");
        let rows = report();
        let col = |n: &str| rows[0].iter().position(|h| h == n).unwrap();
        assert!(
            rows[1..]
                .iter()
                .all(|row| row[col("cost_per_1k_usd")].is_empty()),
            "priced without an operating point: {rows:?}"
        );
        return;
    }
    assert_eq!(op["meets_sla"], true, "{s}");
    // Latency spread under Poisson load is queueing: never flagged unstable for it.
    assert_eq!(r["latency"]["unstable"], false, "{}", r["latency"]);
    assert!(!r["notes"].to_string().contains("coefficient of variation"));
    let confirm = &s["confirmation"];
    // The confirmation is at the operating point, unless (on a busy machine) no rate passed
    // its confirmation, which the notes say; the run then does not count (the report excludes
    // it).
    if confirm["meets_sla"] == true {
        assert_eq!(confirm["offered_qps"], op["offered_qps"]);
    } else {
        assert!(notes.contains("no rate passed its confirmation"), "{notes}");
    }
    // The operating point is the highest rate that met the SLA in the search and in its own
    // confirmation probe: a passing rate above it must have failed its confirmation.
    let best = curve
        .iter()
        .filter(|c| c["meets_sla"] == true)
        .map(|c| c["offered_qps"].as_f64().unwrap())
        .fold(0.0, f64::max);
    if best > op["offered_qps"].as_f64().unwrap() {
        assert!(
            notes.contains("the search went on below that rate"),
            "{notes}"
        );
    }
    // The run's latency is the confirmation probe's, per request.
    assert_eq!(r["latency"]["count"], confirm["completed"]);
    assert_eq!(r["latency"]["p99_ms"].as_f64(), confirm["p99_ms"].as_f64());
    let rps = r["throughput"]["requests_per_s"].as_f64().unwrap();
    assert!((rps - confirm["achieved_qps"].as_f64().unwrap()).abs() < 1e-6 * rps);

    let rows = report();
    let col = |n: &str| rows[0].iter().position(|h| h == n).unwrap();
    let row = rows
        .iter()
        .find(|r| r[col("cost_basis")] == "on-demand")
        .unwrap();
    assert_eq!(row[col("rate_basis")], "operating-point");
    let offered = op["offered_qps"].as_f64().unwrap();
    let hourly: f64 = row[col("hourly_usd")].parse().unwrap();
    let cost: f64 = row[col("cost_per_1k_usd")].parse().unwrap();
    assert!(
        (cost - 1000.0 * hourly / 3600.0 / offered).abs() < 1e-12,
        "priced at the operating point"
    );
    // The interval is the capacity interval's (`cost::capacity_interval`: from the highest
    // rate that met the SLA beyond doubt to the lowest that missed it beyond doubt, by each
    // probe's p99 interval), priced: it lies between the operating point and, at least as far
    // out, the next rate the search saw fail.
    let fail_above = curve
        .iter()
        .filter(|c| c["meets_sla"] == false && c["offered_qps"].as_f64().unwrap() > offered)
        .map(|c| c["offered_qps"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    let server: recbench::results::ServerResult = serde_json::from_value(s.clone()).unwrap();
    let (lo, hi) = recbench::cost::capacity_interval(&server);
    assert!(
        lo <= offered,
        "capacity interval ({lo}, {hi}) against {offered}"
    );
    if fail_above.is_finite() {
        assert!(
            hi >= fail_above,
            "capacity interval ({lo}, {hi}) against {fail_above}"
        );
    }
    let low: f64 = row[col("cost_ci_low_usd")].parse().unwrap();
    let high: f64 = row[col("cost_ci_high_usd")].parse().unwrap();
    let priced = |rate: f64| 1000.0 * hourly / 3600.0 / rate;
    assert!(
        (high - priced(lo)).abs() < 1e-12,
        "high {high} against {}",
        priced(lo)
    );
    if hi > offered {
        assert!(
            (low - priced(hi)).abs() < 1e-12,
            "low {low} against {}",
            priced(hi)
        );
    }
}

/// `recbench run` of a short tiny-model candle scenario named `name`, into `dir`.
fn tiny_candle_run(dir: &Path, name: &str) -> Command {
    candle_run(dir, name, "tiny")
}

/// `recbench run` of a short candle scenario of `model` (batch 1, 16 tokens) named `name`,
/// into `dir`.
fn candle_run(dir: &Path, name: &str, model: &str) -> Command {
    let scenario = dir.join(format!("{name}.toml"));
    std::fs::write(
        &scenario,
        format!("name = \"{name}\"\n[model]\npresets = [\"{model}\"]\n[workload]\nmode = \"two-tower\"\nbatch = 1\nseq_len = 16\n[matrix]\nbackends = [\"candle\"]\n[measure]\nwarmup_s = 0.05\nmin_s = 0.1\nmin_queries = 3\nmax_s = 1\n"),
    )
    .unwrap();
    let mut c = recbench();
    c.arg("run").arg(&scenario).arg("--out").arg(dir);
    c
}

#[test]
fn an_isa_cap_in_the_environment_is_in_the_run_notes() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_candle_run(dir.path(), "cap")
        .env("ONEDNN_MAX_CPU_ISA", "AVX2")
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let v = only_results(&dir.path().join("cap"));
    let notes = v["runs"][0]["notes"].to_string();
    assert!(
        notes.contains("isa cap: ONEDNN_MAX_CPU_ISA=AVX2"),
        "{notes}"
    );
}

/// The tiny candle run with `RECBENCH_HUGEPAGES=value`.
fn forced_huge_pages(dir: &Path, value: &str) -> std::process::Output {
    tiny_candle_run(dir, "huge")
        .env("RECBENCH_HUGEPAGES", value)
        .env_remove("GLIBC_TUNABLES")
        .output()
        .unwrap()
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn forced_huge_pages_reach_the_worker_which_still_keeps_its_freed_memory() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let out = forced_huge_pages(dir.path(), "on");
    common::assert_succeeded(&out);
    let v = only_results(&dir.path().join("huge"));
    let notes = v["runs"][0]["notes"].to_string();
    // The parent's decision, and the worker's own word that it runs with the tunable and set
    // its malloc thresholds all the same.
    assert!(
        notes.contains("huge pages: malloc asks for transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), forced by RECBENCH_HUGEPAGES=on"),
        "{notes}"
    );
    assert!(
        notes.contains("trimming off), so buffers of up to 32 MiB are reused across iterations instead of faulted in again; malloc asks for transparent huge pages"),
        "{notes}"
    );
}

#[test]
fn a_bad_huge_page_or_int8_layout_setting_stops_the_sweep_before_its_first_run() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    // The candle int8 layout is checked even in a sweep whose runs are fp32.
    for (name, var, value, why) in [
        (
            "huge",
            "RECBENCH_HUGEPAGES",
            "maybe",
            "\"maybe\" is neither on nor off",
        ),
        (
            "int8",
            "RECBENCH_CANDLE_INT8",
            "tiled",
            "allowed: auto, blocks, tiles, gemm",
        ),
    ] {
        let out = tiny_candle_run(dir.path(), name)
            .env(var, value)
            .env_remove("GLIBC_TUNABLES")
            .output()
            .unwrap();
        assert_clean_input_error(&out, var);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
        assert!(
            !dir.path().join(name).exists(),
            "{var}: a results folder was started"
        );
    }
}

#[test]
fn parity_and_quick_runs_from_the_command_line() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("p.toml");
    std::fs::write(
        &scenario,
        "name = \"p\"\n[model]\npresets = [\"tiny\"]\n[workload]\nmode = \"two-tower\"\nbatch = 1\nseq_len = 16\nprecision = [\"fp32\", \"int8\"]\n[matrix]\nbackends = [\"candle\"]\n",
    )
    .unwrap();
    let out = recbench()
        .arg("parity")
        .arg(&scenario)
        .arg("--json")
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["parity"]["passed"], true, "{r}");
    }
    assert_eq!(
        rows[0]["parity"]["max_abs_diff"], 0.0,
        "candle fp32 is the reference"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("parity: 2 checked, 0 failed"));

    // --quick: durations shrink to at most 0.5 s warm-up, 1 s minimum, 5 s maximum, recorded.
    std::fs::write(
        &scenario,
        std::fs::read_to_string(&scenario).unwrap()
            + "[measure]\nwarmup_s = 30\nmin_s = 60\nmax_s = 120\nmin_queries = 100000\n",
    )
    .unwrap();
    let out = recbench()
        .arg("run")
        .arg(&scenario)
        .args(["--quick", "--quiet", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let v: Value = only_results(&dir.path().join("p"));
    assert_eq!(v["scenario"]["quick"], true);
    for r in v["runs"].as_array().unwrap() {
        let s = &r["spec"];
        assert_eq!(
            (
                s["warmup_s"].as_f64(),
                s["min_s"].as_f64(),
                s["max_s"].as_f64()
            ),
            (Some(0.5), Some(1.0), Some(5.0))
        );
        assert!(
            r["throughput"]["measured_s"].as_f64().unwrap() <= 5.5,
            "{r}"
        );
    }
}

/// Every subcommand that writes to stdout ends quietly (status 0, no panic) when the reader
/// has closed the pipe.
#[test]
fn a_closed_pipe_ends_every_subcommand_quietly() {
    common::isolate();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = root.join("results/reference/quick/20261128T040112Z-vm.json");
    let report_dir = tempfile::tempdir().unwrap();
    let reference = reference.to_str().unwrap();
    let procurement = root.join("scenarios/procurement.toml");
    // Two short tiny runs on candle, for `run` and `parity`.
    let faults = root.join("tests/fixtures/faults.toml");
    let run_dir = tempfile::tempdir().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["validate", procurement.to_str().unwrap()],
        vec!["validate", procurement.to_str().unwrap(), "--json"],
        vec!["hardware"],
        vec!["hardware", "--json"],
        vec!["backends"],
        vec![
            "plan",
            reference,
            "--qps",
            "100",
            "--p99-ms",
            "1000",
            "--map",
            "vm=aws-m7i-large",
        ],
        vec!["compare", reference, reference],
        vec![
            "report",
            reference,
            "--out",
            report_dir.path().to_str().unwrap(),
        ],
        vec!["recommend", "--user", "jazz", "--model", "tiny"],
        vec![
            "plan",
            reference,
            "--qps",
            "100",
            "--p99-ms",
            "1000",
            "--map",
            "vm=aws-m7i-large",
            "--json",
        ],
        vec!["compare", reference, reference, "--json"],
        vec!["parity", faults.to_str().unwrap(), "--quiet"],
        vec!["parity", faults.to_str().unwrap(), "--quiet", "--json"],
        vec![
            "run",
            faults.to_str().unwrap(),
            "--out",
            run_dir.path().to_str().unwrap(),
        ],
    ];
    for args in cases {
        let out = recbench()
            .args(&args)
            .stdout(common::closed_stdout())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// Only regular files up to 256 MiB are read (the README's promise), whatever the input: a
/// scenario, a results file, a catalog. One byte more is refused at once with exit 2 and the
/// file's name; a file of exactly 256 MiB is read (and then refused for what it holds).
#[test]
fn inputs_larger_than_256_mib_are_refused_by_name() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let sized = |name: &str, len: u64| {
        let p = dir.path().join(name);
        std::fs::File::create(&p).unwrap().set_len(len).unwrap(); // sparse: no disk used
        p
    };
    let cap = 256u64 << 20;
    let reference = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results/reference/quick/20261128T040112Z-vm.json");
    for (len, refused) in [(cap + 1, true), (cap, false)] {
        let scenario = sized("big.toml", len);
        let results = sized("big.json", len);
        let catalog = sized("catalog.toml", len);
        let cases: Vec<(Vec<&std::ffi::OsStr>, &Path)> = vec![
            (vec!["validate".as_ref(), scenario.as_os_str()], &scenario),
            (
                vec![
                    "compare".as_ref(),
                    reference.as_os_str(),
                    results.as_os_str(),
                ],
                &results,
            ),
            (
                vec![
                    "plan".as_ref(),
                    reference.as_os_str(),
                    "--qps".as_ref(),
                    "1".as_ref(),
                    "--p99-ms".as_ref(),
                    "100".as_ref(),
                    "--catalog".as_ref(),
                    catalog.as_os_str(),
                ],
                &catalog,
            ),
        ];
        for (args, file) in cases {
            let out = recbench().args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(&file.display().to_string()), "{err}");
            assert_eq!(
                err.contains("is more than recbench reads (256 MiB)"),
                refused,
                "{len} bytes: {err}"
            );
        }
    }
}

/// The cache is found from any working directory without `RECBENCH_CACHE`: the repository's
/// `.cache` where the set-up put it there, else (a set-up into `$RECBENCH_CACHE` elsewhere)
/// `$XDG_CACHE_HOME/recbench`, here a link to the set-up's cache. A cache without the model
/// says where it looked.
#[test]
fn the_cache_is_found_from_any_folder_and_a_missing_one_is_named() {
    common::isolate();
    let elsewhere = tempfile::tempdir().unwrap();
    let repo_cache = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache");
    let xdg = tempfile::tempdir().unwrap();
    let mut c = recbench();
    c.current_dir(elsewhere.path()).env_remove("RECBENCH_CACHE");
    if repo_cache.join("models/minilm-l6/tokenizer.json").exists() {
        eprintln!("the set-up's cache is the repository's .cache");
    } else {
        assert!(
            !repo_cache.exists(),
            "{} exists without the set-up's model: the XDG place would not be reached",
            repo_cache.display()
        );
        std::os::unix::fs::symlink(recbench::model::cache_dir(), xdg.path().join("recbench"))
            .unwrap();
        c.env("XDG_CACHE_HOME", xdg.path());
        eprintln!("the set-up's cache is elsewhere: found through XDG_CACHE_HOME");
    }
    let out = c
        .args([
            "recommend",
            "--user",
            "space films",
            "--model",
            "tiny",
            "--top",
            "2",
        ])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Top 2"));
    let empty = tempfile::tempdir().unwrap();
    let out = recbench()
        .env("RECBENCH_CACHE", empty.path())
        .args(["recommend", "--user", "x", "--model", "tiny"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("caches looked in") && err.contains(&empty.path().display().to_string()),
        "{err}"
    );
}

/// A device or folder given as a results file is refused at once (it used to read /dev/zero
/// forever).
#[test]
fn a_file_that_is_not_a_regular_file_is_refused_at_once() {
    common::isolate();
    let out_dir = tempfile::tempdir().unwrap();
    let mut child = recbench()
        .args(["report", "/dev/zero", "--out"])
        .arg(out_dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        panic!("report /dev/zero did not return");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/zero: not a regular file"));
}

/// Off a terminal (CI, a Kubernetes Job log), a sweep prints one plain line per finished run
/// with its status, p50, elapsed time and ETA; validate says how long the sweep can take.
#[test]
fn progress_lines_off_a_terminal_and_the_worst_case_in_validate() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let out = smoke_run(dir.path()).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 8, "one line per run: {err}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("[{}/8] candle/", i + 1)), "{l}");
        assert!(l.contains("(elapsed ") && l.contains("ETA "), "{l}");
    }
    assert!(lines[0].contains(" ok: p50 "), "{}", lines[0]);
    assert!(
        lines.iter().any(|l| l.contains(" skipped: single-stream")),
        "{err}"
    );
    assert!(lines.last().unwrap().ends_with("ETA 0s)"), "{err}");
    let quiet = smoke_run(tempfile::tempdir().unwrap().path())
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("[1/8]"));

    let out = recbench()
        .arg("validate")
        .arg(fixture("smoke.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Each run to run: warm-up 0.05 s + max_s 2 s.
    let n: usize = text
        .split(" to run, ")
        .next()
        .and_then(|h| h.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let want = format!(
        "worst case {}s of measurement for the {n} runs to run",
        (n as f64 * 2.05) as u64
    );
    assert!(text.contains(&want), "{want}\n{text}");
}

/// A host without an NVIDIA driver (injected, so a GPU host gives the same answer): CUDA runs
/// are skipped with the reason, never a crash, the CPU runs of the sweep go on, and `backends`
/// says per backend what CUDA needs here.
#[test]
fn cuda_runs_on_a_host_without_a_driver_are_skipped_with_the_reason() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("gpu.toml");
    std::fs::write(
        &scenario,
        "name = \"gpu\"\n[model]\npresets = \"tiny\"\n[workload]\nmode = \"two-tower\"\nbatch = 1\nseq_len = 16\n[matrix]\nbackends = \"candle\"\ndevices = [\"cpu\", \"cuda\"]\nthreads = 1\n[measure]\nwarmup_s = 0.05\nmin_s = 0.2\nmin_queries = 3\nmax_s = 1\n[recommender]\ncatalog_items = 1000\n",
    )
    .unwrap();
    let no_driver = "/nonexistent/libcuda.so.1";
    let out = recbench()
        .env("RECBENCH_CUDA_DRIVER", no_driver)
        .arg("run")
        .arg(&scenario)
        .args(["--quiet", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let v: Value = only_results(&dir.path().join("gpu"));
    let runs = v["runs"].as_array().unwrap();
    let cuda = runs
        .iter()
        .find(|r| r["spec"]["device"] == "cuda:0")
        .unwrap();
    assert_eq!(cuda["status"], "skipped");
    let why = cuda["reason"].as_str().unwrap();
    assert!(
        why.contains("no NVIDIA driver") && why.contains(no_driver),
        "{why}"
    );
    let cpu = runs.iter().find(|r| r["spec"]["device"] == "cpu").unwrap();
    assert_eq!(cpu["status"], "ok");

    let out = recbench()
        .env("RECBENCH_CUDA_DRIVER", no_driver)
        .args(["backends", "--json"])
        .output()
        .unwrap();
    let inv: Value = serde_json::from_slice(&out.stdout).unwrap();
    for b in inv
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["compiled"] == true)
    {
        let c = b["cuda"].as_str().unwrap();
        assert!(c.contains("CUDA") && c.contains("no NVIDIA driver"), "{c}");
    }
}

/// `--out` names a folder: a file there is a usage error (exit 2, one sentence), and the file
/// is left as it was.
#[test]
fn out_pointing_at_a_file_is_a_usage_error() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "keep me").unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = root.join("results/reference/quick/20261128T040112Z-vm.json");
    let scenario = root.join("scenarios/quick.toml");
    for args in [
        vec!["report".into(), reference.display().to_string()],
        vec!["run".into(), scenario.display().to_string()],
    ] {
        let out = recbench()
            .args(&args)
            .arg("--out")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim(),
            format!(
                "Error: <command line>: field `--out`: {} is a file, not a folder: --out names \
                 the folder to write into",
                file.display()
            ),
            "{args:?}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}

/// A kernel decision belongs to the model it was measured on: with a fresh decision cache,
/// tiny and then MiniLM at the same shape, threads and precision each get their own (MiniLM's
/// note never quotes tiny's timings), and the cache holds one decision per model.
#[test]
fn kernel_decisions_are_measured_per_model() {
    common::isolate();
    let minilm = recbench::model::cache_dir().join("models/minilm-l6");
    if !minilm.join("model.safetensors").exists() {
        eprintln!("skipped: MiniLM is not in the cache (scripts/fetch.sh fetches it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(cache.join("models")).unwrap();
    std::os::unix::fs::symlink(&minilm, cache.join("models/minilm-l6")).unwrap();
    let run = |name: &str, model: &str| -> String {
        let out = candle_run(dir.path(), name, model)
            .env("RECBENCH_CACHE", &cache)
            .env_remove("RECBENCH_CANDLE_KERNELS")
            .output()
            .unwrap();
        common::assert_succeeded(&out);
        let v = only_results(&dir.path().join(name));
        let notes = v["runs"][0]["notes"].as_array().unwrap().clone();
        notes
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .find(|n| n.starts_with("kernels:"))
            .unwrap_or_else(|| panic!("{name}: no kernels note in {notes:?}"))
    };
    // "layers on ops (ops 0.87 ms, fused 0.94 ms per forward of 1 × 16 tokens), …" → the
    // timings in brackets.
    let timings = |n: &str| {
        let (_, t) = n.split_once('(').unwrap();
        t.split_once(')').unwrap().0.to_string()
    };
    let tiny = run("tiny-first", "tiny");
    let minilm = run("minilm-then", "minilm-l6");
    assert_ne!(
        timings(&minilm),
        timings(&tiny),
        "MiniLM's note quotes tiny's timings: {minilm}"
    );
    let decisions: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(cache.join("kernels/candle-kernels.json")).unwrap())
            .unwrap();
    for (model, note) in [("model tiny", &tiny), ("model minilm-l6", &minilm)] {
        let (_, how) = decisions
            .iter()
            .find(|(k, _)| k.contains(model))
            .unwrap_or_else(|| panic!("no decision for {model} in {decisions:?}"));
        assert!(
            how.as_str().unwrap().contains(&timings(note)),
            "{model}: remembered {how}, the run said {note}"
        );
    }
}
