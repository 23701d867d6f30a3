//! The report as its readers get it: files written, numbers traceable to the results file,
//! hostile strings escaped, and the page rendered by a real browser.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn recbench() -> Command {
    Command::cargo_bin("recbench").unwrap()
}

/// One real sweep shared by the tests of this file.
fn results_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report.toml");
        let out = recbench()
            .arg("run")
            .arg(&fixture)
            .arg("--out")
            .arg(&dir)
            .arg("--quiet")
            .output()
            .unwrap();
        common::assert_succeeded(&out);
        let folder = dir.join("report-fixture");
        let f = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "json"));
        f.unwrap()
    })
}

/// `recbench report INPUTS --out TMP EXTRA`, run from the repository (relative inputs are
/// named from there, as the scripts name them).
fn report(inputs: &[&Path], extra: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let out_dir = tempfile::tempdir().unwrap();
    let mut c = recbench();
    c.current_dir(env!("CARGO_MANIFEST_DIR")).arg("report");
    for i in inputs {
        c.arg(i);
    }
    let out = c
        .arg("--out")
        .arg(out_dir.path())
        .args(extra)
        .output()
        .unwrap();
    (out_dir, out)
}

/// The committed example report (reports/example, what scripts/example-report.sh --reuse
/// writes) is what this build makes of the committed inputs, byte for byte: every table, chart,
/// page and plan. A change that moves a figure, a word or a pixel of the report fails here, so it
/// is made on purpose and the example regenerated with it. The report carries no clock or build
/// of its own (only the input files' commits and times), so nothing is masked.
#[test]
fn the_committed_example_report_is_what_this_build_writes_from_its_inputs() {
    common::isolate();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs: Vec<PathBuf> = Vec::new();
    // The retrieval sweep's files sit in their folder itself.
    let retrieval: Vec<PathBuf> =
        common::files_with_extension(&root.join("results/reference/retrieval"), "json")
            .into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect();
    for (dir, prefix) in [
        ("results/reference/example", ""),
        ("results/reference/gpu", "gpu-"),
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix) && e.path().is_dir())
            .flat_map(|e| {
                std::fs::read_dir(e.path())
                    .unwrap()
                    .flatten()
                    .map(|f| f.path())
            })
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect();
        found.sort();
        inputs.extend(found);
    }
    inputs.extend(retrieval);
    assert_eq!(inputs.len(), 6, "the example's inputs: {inputs:?}");
    let args = [
        "--map",
        "vm=aws-m7i-large",
        "--qps",
        "500",
        "--p99-ms",
        "100",
        "--min-quality",
        "0.9",
    ];
    // As the script runs it: the inputs named relative to the repository (the report quotes
    // them).
    let refs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    let day = ["--diurnal", "800:100"];
    let (dir, out) = report(&refs, &[&args[..], &day].concat());
    common::assert_succeeded(&out);
    let plan = |extra: &[&str]| {
        let plan = recbench()
            .current_dir(root)
            .arg("plan")
            .args(&inputs)
            .args(extra)
            .output()
            .unwrap();
        common::assert_succeeded(&plan);
        plan.stdout
    };
    std::fs::write(dir.path().join("plan-500qps-p99-100ms.txt"), plan(&args)).unwrap();
    // `plan --diurnal` takes the trace's peak for --qps.
    let (map, budget) = (&args[..2], &args[4..]);
    std::fs::write(
        dir.path().join("plan-diurnal-800-100-p99-100ms.txt"),
        plan(&[&day[..], budget, map].concat()),
    )
    .unwrap();

    let example = root.join("reports/example");
    let mut names: Vec<String> = std::fs::read_dir(&example)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, names, "the files the report writes");
    let differ: Vec<&String> = names
        .iter()
        .filter(|n| {
            std::fs::read(example.join(n)).unwrap() != std::fs::read(dir.path().join(n)).unwrap()
        })
        .collect();
    assert!(
        differ.is_empty(),
        "this build writes {differ:?} differently from reports/example: if the change is meant, \
         regenerate it (RECBENCH=target/release/recbench scripts/example-report.sh --reuse)"
    );
}

/// Pixels of a PNG that are clearly coloured (not white, grey or black): bars, lines, points.
fn coloured_pixels(png: &Path) -> usize {
    let img = image::open(png).unwrap().to_rgb8();
    img.pixels()
        .filter(|p| {
            let [r, g, b] = p.0.map(i32::from);
            (r - g).abs() + (g - b).abs() + (b - r).abs() > 90
        })
        .count()
}

/// Pixels of the bar colour of the bar charts (Okabe–Ito blue at 85% over white), within ±4 per
/// channel: a "nothing to draw" placeholder has none.
fn bar_pixels(png: &Path) -> usize {
    let img = image::open(png).unwrap().to_rgb8();
    img.pixels()
        .filter(|p| {
            let [r, g, b] = p.0.map(i32::from);
            (r - 38).abs() <= 4 && (g - 135).abs() <= 4 && (b - 189).abs() <= 4
        })
        .count()
}

/// The on-demand USD per hour of a catalog entry, read from the shipped catalog file.
fn catalog_price(id: &str) -> f64 {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog/hardware.toml"),
    )
    .unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v["hardware"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"].as_str() == Some(id))
        .unwrap()["on_demand_usd_per_hour"]
        .as_float()
        .unwrap()
}

#[test]
fn report_writes_every_file_and_its_numbers_trace_to_the_results() {
    common::isolate();
    let results = results_file();
    let (dir, out) = report(&[results], &[]);
    common::assert_succeeded(&out);
    for f in [
        "index.html",
        "runs.csv",
        "summary.md",
        "cost_per_1k.png",
        "latency_vs_batch.png",
        "throughput_vs_batch.png",
        "latency_throughput.png",
        "energy_per_1k.png",
        "cost_vs_quality.png",
    ] {
        let bytes = std::fs::read(dir.path().join(f)).unwrap_or_else(|_| panic!("{f} missing"));
        if f.ends_with(".png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{f} is a PNG");
        }
    }
    // The fixture has valid offline runs at two precisions, priced: these charts draw data
    // (a "nothing to draw" placeholder is a line of text); the server-load and energy charts
    // have nothing to draw here (no server run, no power sensor in CI).
    // The cost chart has one bar per (model, mode) and hardware option that qualifies, which
    // depends on the measured latencies: count its bars' colour, not all ink.
    let bars = bar_pixels(&dir.path().join("cost_per_1k.png"));
    eprintln!("cost_per_1k.png: {bars} bar pixels");
    assert!(
        bars > 1_000,
        "cost_per_1k.png draws bars: {bars} bar pixels"
    );
    for f in ["latency_vs_batch.png", "throughput_vs_batch.png"] {
        let ink = coloured_pixels(&dir.path().join(f));
        eprintln!("{f}: {ink} coloured pixels");
        assert!(ink > 4_000, "{f} draws data: {ink} coloured pixels");
    }
    let ink = coloured_pixels(&dir.path().join("latency_throughput.png"));
    eprintln!("latency_throughput.png (placeholder): {ink} coloured pixels");
    assert!(ink < 4_000, "the placeholder is text only: {ink}");
    let v: Value = serde_json::from_slice(&std::fs::read(results).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let csv = std::fs::read_to_string(dir.path().join("runs.csv")).unwrap();
    let rows = common::csv_rows(&csv);
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    // Every run appears; every ok run's p50 and cost are those of the results file and formula.
    for r in runs {
        let id = r["spec"]["id"].as_str().unwrap();
        let cells = rows
            .iter()
            .find(|c| c[col("run_id")] == id)
            .unwrap_or_else(|| panic!("{id} not in runs.csv"));
        assert_eq!(cells[col("status")], r["status"].as_str().unwrap());
        if r["status"] == "ok" {
            // Every backend of the fixture (candle, and torch where built) records its cold
            // start.
            common::assert_cold_start(r);
            let p50: f64 = cells[col("p50_ms")].parse().unwrap();
            assert_eq!(p50, r["latency"]["p50_ms"].as_f64().unwrap());
            // Cost from the catalog's price and the results file's throughput, not from the
            // CSV's own columns.
            let rps = r["throughput"]["requests_per_s"].as_f64().unwrap();
            let cells = rows
                .iter()
                .find(|c| c[col("run_id")] == id && c[col("cost_basis")] == "on-demand")
                .unwrap_or_else(|| panic!("{id} has no on-demand row"));
            let cost: f64 = cells[col("cost_per_1k_usd")].parse().unwrap();
            let want = 1000.0 * catalog_price("aws-m7i-large") / 3600.0 / rps;
            assert!((cost - want).abs() < 1e-12 * want.max(1.0), "{cells:?}");
            assert_eq!(cells[col("hardware_id")], "aws-m7i-large");
        }
    }
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(
        html.contains("Which hardware, at each run&#39;s own SLA")
            && html.contains("<b>cheapest</b>")
            && html.contains("no GPU option qualifies to compare with"),
        "decision table"
    );
    assert!(
        !html.contains("http://") && !html.contains("<script") && !html.contains("<link"),
        "self-contained, no network"
    );
    if !cfg!(feature = "torch") {
        assert!(
            html.contains("rebuild with --features torch"),
            "skipped runs listed with their reason"
        );
    }
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("## Which hardware")
            && md.contains("**cheapest**")
            && md.contains("aws-m7i-large")
    );
}

#[test]
fn hostile_strings_are_escaped_and_cannot_escape_the_output_folder() {
    common::isolate();
    let mut v: Value = serde_json::from_slice(&std::fs::read(results_file()).unwrap()).unwrap();
    v["environment"]["inventory"]["cpu_model"] = "<script>alert('cpu')</script>".into();
    v["environment"]["inventory"]["host"] = "../../<img src=x onerror=alert(1)>".into();
    v["scenario"]["name"] = "../../../etc/passwd".into();
    v["runs"][0]["reason"] = "<b onmouseover=alert(2)>x</b>".into();
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("hostile.json");
    std::fs::write(&hostile, serde_json::to_vec(&v).unwrap()).unwrap();
    // The output folder sits three levels down a sandbox, so a name that climbs out of it
    // ("../../../etc/passwd") would land in the sandbox, where it is looked for.
    let sandbox = tempfile::tempdir().unwrap();
    let out_dir = sandbox.path().join("a/b/c/out");
    let out = recbench()
        .arg("report")
        .arg(&hostile)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(
        !html.contains("<script>alert")
            && !html.contains("<img src=x")
            && !html.contains("<b onmouseover")
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;cpu&#39;)&lt;/script&gt;"));
    // Every file in the sandbox is one of the report's own, inside the output folder.
    let mut files = Vec::new();
    let mut todo = vec![sandbox.path().to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(
        files.iter().all(|p| p.parent() == Some(out_dir.as_path())),
        "written outside the output folder: {files:?}"
    );
    assert_eq!(files.len(), 9, "{files:?}");
}

/// Splits CSV text into records of fields, honouring double quotes (a quoted field may hold
/// commas, quotes and line breaks).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut fields, mut cur, mut quoted) =
        (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            ('\n', false) => {
                fields.push(std::mem::take(&mut cur));
                records.push(std::mem::take(&mut fields));
            }
            _ => cur.push(c),
        }
    }
    records
}

#[test]
fn summary_md_and_runs_csv_keep_hostile_strings_in_their_cells() {
    common::isolate();
    let mut v: Value = serde_json::from_slice(&std::fs::read(results_file()).unwrap()).unwrap();
    v["environment"]["inventory"]["host"] = "evil|host\n# injected heading".into();
    let formula = "=HYPERLINK(\"http://x\",\"click\"), with a comma";
    v["runs"][0]["reason"] = formula.into();
    let dir = tempfile::tempdir().unwrap();
    let hostile = write_json(dir.path(), "hostile.json", &v);
    let (out_dir, out) = report(
        &[&hostile],
        &["--map", "evil|host\n# injected heading=aws-m7i-large"],
    );
    common::assert_succeeded(&out);
    let md = std::fs::read_to_string(out_dir.path().join("summary.md")).unwrap();
    assert!(
        !md.contains("\n# injected heading"),
        "no line break from a host name"
    );
    let runs_table = &md[md.find("## Runs").unwrap()..];
    for row in runs_table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| status"))
    {
        let pipes = row
            .char_indices()
            .filter(|(i, c)| *c == '|' && !row[..*i].ends_with('\\'))
            .count();
        assert_eq!(pipes, 9, "eight cells in every runs row: {row}");
    }
    let csv = csv_records(&std::fs::read_to_string(out_dir.path().join("runs.csv")).unwrap());
    let header = &csv[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for record in &csv[1..] {
        assert_eq!(record.len(), header.len(), "{record:?}");
        assert_eq!(record[col("host")], "evil|host\n# injected heading");
    }
    let id = v["runs"][0]["spec"]["id"].as_str().unwrap();
    let row = csv.iter().find(|f| f[col("run_id")] == id).unwrap();
    // A spreadsheet would run a cell that starts with '='; the quote makes it text.
    assert_eq!(row[col("reason")], format!("'{formula}"));
}

/// `--catalog FILE` merges a user catalog over the shipped one: the same id takes the user's
/// price, and the report says which catalog files it used.
#[test]
fn a_user_catalog_replaces_the_shipped_price() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("mine.toml");
    std::fs::write(
        &user,
        "[[hardware]]\nid = \"aws-m7i-large\"\nprovider = \"me\"\nkind = \"cpu\"\nvcpus = 2\non_demand_usd_per_hour = 7.2\nprice_source = \"my quote\"\nprice_date = \"2026-11-30\"\n",
    )
    .unwrap();
    let (out_dir, out) = report(&[results_file()], &["--catalog", user.to_str().unwrap()]);
    common::assert_succeeded(&out);
    let csv = csv_records(&std::fs::read_to_string(out_dir.path().join("runs.csv")).unwrap());
    let col = |name: &str| csv[0].iter().position(|h| h == name).unwrap();
    let priced: Vec<&Vec<String>> = csv[1..]
        .iter()
        .filter(|r| r[col("status")] == "ok")
        .collect();
    assert!(!priced.is_empty());
    for r in priced {
        assert_eq!(r[col("hourly_usd")], "7.2", "{r:?}");
        assert_eq!(r[col("cost_basis")], "on-demand");
    }
    let html = std::fs::read_to_string(out_dir.path().join("index.html")).unwrap();
    assert!(html.contains("mine.toml") && html.contains("my quote"));
}

/// Files from several hosts merge into one report, each machine listed with its build; the
/// report warns when files of one scenario ran different texts, or one machine was measured by
/// several builds; machines that share a host name are named apart.
#[test]
fn a_fleet_report_says_when_its_files_are_not_one_sweep() {
    common::isolate();
    let dir = tempfile::tempdir().unwrap();
    let mut v: Value = serde_json::from_slice(&std::fs::read(results_file()).unwrap()).unwrap();
    v["environment"]["inventory"]["host"] = "other-host".into();
    let same = write_json(dir.path(), "same.json", &v);
    let (out_dir, out) = report(&[results_file(), &same], &[]);
    common::assert_succeeded(&out);
    let html = std::fs::read_to_string(out_dir.path().join("index.html")).unwrap();
    assert!(!html.contains("not of one sweep"));
    assert!(
        html.contains("Measured on 2 machines"),
        "the machines are listed"
    );
    // Another machine, another build and an edited scenario: the edit is a warning; the build
    // is that machine's own, listed with it.
    v["scenario"]["text"] =
        (v["scenario"]["text"].as_str().unwrap().to_string() + "\n# edited").into();
    v["environment"]["recbench_version"] = "0.0.1".into();
    let other = write_json(dir.path(), "other.json", &v);
    let (out_dir, out) = report(&[results_file(), &other], &[]);
    assert!(out.status.success());
    let html = std::fs::read_to_string(out_dir.path().join("index.html")).unwrap();
    assert!(html.contains("not of one sweep"), "warned");
    assert!(html.contains("other.json ran scenario"), "the edit");
    assert!(
        !html.contains("builds of recbench"),
        "machines may differ in build"
    );
    assert!(
        html.contains("<b>other-host</b>: recbench 0.0.1"),
        "its build"
    );
    let md = std::fs::read_to_string(out_dir.path().join("summary.md")).unwrap();
    assert_eq!(md.matches("**Not one sweep:**").count(), 1, "{md}");
    // Three files of a third build on that same machine: one line for its two builds. And one
    // host name over two CPUs: the machines are named apart, no warning.
    v["environment"]["recbench_version"] = "0.0.2".into();
    let mut paths = vec![results_file().to_path_buf(), other.clone()];
    for i in 0..3 {
        paths.push(write_json(dir.path(), &format!("third{i}.json"), &v));
    }
    let host = serde_json::from_slice::<Value>(&std::fs::read(results_file()).unwrap()).unwrap()
        ["environment"]["inventory"]["host"]
        .as_str()
        .unwrap()
        .to_string();
    v["environment"]["inventory"]["cpu_signature"] = "AuthenticAMD family 26 model 2".into();
    v["environment"]["inventory"]["host"] = host.clone().into();
    paths.push(write_json(dir.path(), "other-cpu.json", &v));
    let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let (out_dir, out) = report(&refs, &[]);
    assert!(out.status.success());
    let md = std::fs::read_to_string(out_dir.path().join("summary.md")).unwrap();
    let builds: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("builds of recbench"))
        .collect();
    assert_eq!(builds.len(), 1, "{md}");
    assert!(
        builds[0].contains("other-host was measured by 2 builds")
            && builds[0].contains("0.0.1")
            && builds[0].contains("third2.json"),
        "{md}"
    );
    assert!(!md.contains("different machines"), "{md}");
    let csv = std::fs::read_to_string(out_dir.path().join("runs.csv")).unwrap();
    let rows = common::csv_rows(&csv);
    let col = rows[0].iter().position(|h| h == "host").unwrap();
    let mut hosts: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r[col].as_str())
        .filter(|h| h.starts_with(&format!("{host} (")))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts.len(), 2, "host {host} named apart: {hosts:?}");
    assert!(
        hosts.iter().any(|h| h.contains("family 26 model 2")),
        "{hosts:?}"
    );

    // Identical copies agree; a copy of one machine's file where one run is twice as slow
    // disagrees beyond its intervals, and the report says which run and which files.
    assert!(!md.contains("disagrees across files"), "{md}");
    let mut v: Value = serde_json::from_slice(&std::fs::read(results_file()).unwrap()).unwrap();
    let run = v["runs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["status"] == "ok")
        .unwrap();
    let id = run["spec"]["id"].as_str().unwrap().to_string();
    let slow: Vec<Value> = run["samples_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x.as_f64().unwrap() * 2.0).into())
        .collect();
    run["samples_ms"] = slow.into();
    let rps = run["throughput"]["requests_per_s"].as_f64().unwrap();
    run["throughput"]["requests_per_s"] = (rps / 2.0).into();
    let slower = write_json(dir.path(), "slower.json", &v);
    let (out_dir, out) = report(&[results_file(), &slower], &[]);
    common::assert_succeeded(&out);
    let md = std::fs::read_to_string(out_dir.path().join("summary.md")).unwrap();
    let line = md
        .lines()
        .find(|l| l.contains("disagrees across files beyond its intervals"))
        .unwrap_or_else(|| panic!("no warning: {md}"));
    assert!(line.contains(&id) && line.contains("slower.json"), "{line}");
}

#[test]
fn unmapped_host_is_said_so_and_explicit_map_must_exist() {
    common::isolate();
    let mut v: Value = serde_json::from_slice(&std::fs::read(results_file()).unwrap()).unwrap();
    v["scenario"]["text"] = v["scenario"]["text"]
        .as_str()
        .unwrap()
        .replace("hardware = \"aws-m7i-large\"", "hardware = \"auto\"")
        .into();
    // The report reads the validated settings the run recorded, not the scenario text.
    assert_eq!(v["scenario"]["cost"]["hardware"], "aws-m7i-large");
    v["scenario"]["cost"]["hardware"] = "auto".into();
    v["environment"]["inventory"]["cpu_model"] = "Imaginary CPU 9000".into();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.json");
    std::fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
    let (out_dir, out) = report(&[&f], &[]);
    assert!(out.status.success());
    let html = std::fs::read_to_string(out_dir.path().join("index.html")).unwrap();
    assert!(
        html.contains("matches no catalog entry; not guessed"),
        "unmapped host explained"
    );
    let (_, out) = report(&[&f], &["--map", "vm=no-such-id"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"no-such-id\" is not in the catalog"));
}

#[test]
fn plan_answers_with_instances_and_monthly_cost() {
    common::isolate();
    let out = recbench()
        .arg("plan")
        .arg(results_file())
        .args(["--qps", "500", "--p99-ms", "500", "--json"])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let groups = v.as_array().unwrap();
    assert_eq!(groups.len(), 1, "one (model, mode) in the fixture");
    let g = &groups[0];
    assert!(g["group"].as_str().unwrap().starts_with("tiny, two-tower"));
    let opts = g["options"].as_array().unwrap();
    assert_eq!(opts.len(), 1, "one hardware option: {opts:?}");
    let first = &opts[0];
    let cap = first["capacity_per_instance_qps"].as_f64().unwrap();
    let n = first["instances"].as_u64().unwrap();
    assert_eq!(n, (500.0 * 1.3 / cap).ceil() as u64);
    let monthly = first["monthly_usd"].as_f64().unwrap();
    let hourly = catalog_price("aws-m7i-large");
    assert!(
        (monthly - n as f64 * hourly * 730.0).abs() < 1e-9,
        "{first}"
    );
    assert_eq!(first["evidence"], "offline peak: an upper bound");
    // The cheapest configuration of the hardware: every other ok run is excluded as costlier.
    let cost = first["cost_per_1k_usd"].as_f64().unwrap();
    for e in g["excluded"].as_array().unwrap() {
        let why = e[1].as_str().unwrap();
        assert!(
            why.starts_with("not the best on its hardware") || why.starts_with("not run"),
            "{why}"
        );
    }
    assert!((cost - 1000.0 * hourly / 3600.0 / cap).abs() < 1e-12);
    let out = recbench()
        .arg("plan")
        .arg(results_file())
        .args(["--qps", "-5", "--p99-ms", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `plan --diurnal` and `--trace`: per option, its machines over the day (peak and mean), the
/// cost per day with its interval, the minutes over the budget, and the fleet sized for the
/// peak; a bad trace exits 2 naming its line and column.
#[test]
fn plan_over_a_day_prints_machines_cost_and_minutes_missed() {
    common::isolate();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = root.join("results/reference/server/20261205T120538Z-vm.json");
    let day = |extra: &[&str]| {
        let out = recbench()
            .arg("plan")
            .arg(&server)
            .args(["--p99-ms", "100", "--map", "vm=aws-m7i-large"])
            .args(extra)
            .output()
            .unwrap();
        common::assert_succeeded(&out);
        out
    };
    let text = String::from_utf8(day(&["--diurnal", "800:100"]).stdout).unwrap();
    assert!(text.contains("Over 24.0 h of demand"), "{text}");
    assert!(
        text.contains("SLA-min") && text.contains("USD/day"),
        "{text}"
    );
    let v: Value =
        serde_json::from_slice(&day(&["--diurnal", "800:100", "--json"]).stdout).unwrap();
    let opts: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["options"].as_array().unwrap())
        .collect();
    assert!(!opts.is_empty(), "{v}");
    for o in &opts {
        let a = &o["autoscaled"];
        let (peak, mean) = (
            a["peak_instances"].as_u64().unwrap(),
            a["mean_instances"].as_f64().unwrap(),
        );
        assert!(peak >= 1 && mean <= peak as f64 && mean >= 1.0, "{o}");
        // Autoscaled, the day costs no more than a fleet sized for its peak all day.
        assert!(
            o["usd_per_day"].as_f64().unwrap() <= o["static_usd_per_day"].as_f64().unwrap() + 1e-9,
            "{o}"
        );
        let hourly = o["hourly_usd"].as_f64().unwrap();
        let hours = a["instance_hours"].as_f64().unwrap();
        assert!(
            (o["usd_per_day"].as_f64().unwrap() - hours * hourly).abs() < 1e-6,
            "{o}"
        );
        assert!(a["seconds_over_sla"].as_f64().unwrap() >= 0.0);
        // The sweep measured each run's cold start: the plan adds it to the machine's.
        let measured = o["process_start_s"].as_f64().unwrap();
        assert!(measured > 0.0, "{o}");
        assert!(
            (o["cold_start_s"].as_f64().unwrap() - (60.0 + measured)).abs() < 1e-9,
            "{o}"
        );
    }
    let text = String::from_utf8(day(&["--trace", "data/trace-weekday.csv"]).stdout).unwrap();
    assert!(text.contains("Over 24.0 h of demand (peak 907"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("trace.csv");
    std::fs::write(&bad, "timestamp,qps\n0,100\n60,120\n30,90\n").unwrap();
    let out = recbench()
        .arg("plan")
        .arg(&server)
        .args(["--p99-ms", "100", "--trace"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trace.csv:4") && err.contains("column 1"),
        "{err}"
    );
}

/// `report --diurnal` adds the section "Over a day": the same fleets `plan --diurnal` plans,
/// each option's cost per day, machines and SLA minutes in its table, the cheapest measured
/// option named in its sentence, and the chart of the fleets (day.png). Without a demand in
/// time there is neither.
#[test]
fn report_over_a_day_shows_the_day_plan() {
    common::isolate();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = root.join("results/reference/server/20261205T120538Z-vm.json");
    let flags = ["--p99-ms", "100", "--map", "vm=aws-m7i-large"];
    let out = recbench()
        .arg("plan")
        .arg(&server)
        .args(flags)
        .args(["--diurnal", "800:100", "--json"])
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The report's tables are sized for --qps 500; its day is planned at the demand's peak,
    // as `plan` plans it.
    let (dir, out) = report(
        &[&server],
        &[&flags[..], &["--qps", "500", "--diurnal", "800:100"]].concat(),
    );
    common::assert_succeeded(&out);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(
        md.contains("## Over a day") && md.contains("Over 24.0 h of demand"),
        "{md}"
    );
    assert!(
        html.contains("<h2 id=\"day\">") && html.contains("(day.png)"),
        "no day section"
    );
    let png = std::fs::read(dir.path().join("day.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "day.png is not a PNG");
    let mut groups = 0;
    for g in plan.as_array().unwrap() {
        let options = g["options"].as_array().unwrap();
        let Some(best) = options
            .iter()
            .find(|o| !o["upper_bound"].as_bool().unwrap())
        else {
            continue;
        };
        groups += 1;
        let usd = |k: &str| recbench::cost::usd(best[k].as_f64().unwrap());
        let sentence = format!(
            "Cheapest over the demand: {}, {}/day ({} a month) autoscaled, against {}/day sized for the peak all day; it would miss the SLA for {:.1} min.",
            best["hardware_id"].as_str().unwrap(),
            usd("usd_per_day"),
            usd("usd_per_month"),
            usd("static_usd_per_day"),
            best["autoscaled"]["seconds_over_sla"].as_f64().unwrap() / 60.0
        );
        assert!(md.contains(&sentence), "{sentence:?} not in {md}");
        // Each option's row: the plan's figures, cell by cell.
        for o in options {
            let (a, s) = (&o["autoscaled"], &o["static_peak"]);
            let f = |k: &str| o[k].as_f64().unwrap();
            let interval = o["usd_per_day_interval"]
                .as_array()
                .map_or(String::new(), |i| {
                    let u = |x: &Value| recbench::cost::usd(x.as_f64().unwrap());
                    format!(" [{}–{}]", u(&i[0]), u(&i[1]))
                });
            let row = format!(
                "| {} / {:.1} | {}{interval} | {} | {} | {:.1} | {} machine{} all day, {}/day, {:.1} min missed |",
                a["peak_instances"].as_u64().unwrap(),
                a["mean_instances"].as_f64().unwrap(),
                recbench::cost::usd(f("usd_per_day")),
                recbench::cost::usd(f("usd_per_month")),
                recbench::cost::usd_per_1m(f("cost_per_1k_usd")),
                a["seconds_over_sla"].as_f64().unwrap() / 60.0,
                s["peak_instances"].as_u64().unwrap(),
                if s["peak_instances"].as_u64() == Some(1) { "" } else { "s" },
                recbench::cost::usd(f("static_usd_per_day")),
                s["seconds_over_sla"].as_f64().unwrap() / 60.0,
            );
            assert!(md.contains(&row), "{row:?} not in {md}");
        }
    }
    assert!(groups > 0, "no measured option in {plan}");
    let (dir, out) = report(&[&server], &flags);
    common::assert_succeeded(&out);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(!md.contains("Over a day") && !dir.path().join("day.png").exists());
}

/// `report --qps --p99-ms --basis --headroom` (the README's promise) judge the files at the
/// reader's requirement: the verdict names the rate and the budget and sizes the fleet with
/// the headroom asked, as `plan` does with the same flags. Bad values are usage errors that
/// name the flag, and no report is written.
#[test]
fn report_takes_the_readers_requirement_and_refuses_bad_values() {
    common::isolate();
    let f = results_file();
    let flags = [
        "--qps",
        "500",
        "--p99-ms",
        "500",
        "--basis",
        "on-demand",
        "--headroom",
        "0.5",
    ];
    let out = recbench()
        .arg("plan")
        .arg(f)
        .args(flags)
        .arg("--json")
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let best = &v[0]["options"][0];
    let n = best["instances"].as_u64().unwrap();
    let cap = best["capacity_per_instance_qps"].as_f64().unwrap();
    assert_eq!(n, (500.0 * 1.5 / cap).ceil() as u64, "headroom 0.5: {best}");
    let (dir, out) = report(&[f], &flags);
    common::assert_succeeded(&out);
    let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        md.contains("## Which hardware, at p99 ≤ 500 ms, on the on-demand price"),
        "{md}"
    );
    let verdict = format!(
        "At 500 requests/s and p99 ≤ 500 ms, the cheapest is {} (CPU): {n} machine(s)",
        best["hardware_id"].as_str().unwrap()
    );
    assert!(md.contains(&verdict), "{verdict:?} not in {md}");
    // Units and words: dollars per million requests (not six decimals per 1k), machines to
    // rent against model replicas within one.
    let usd = best["cost_per_1k_usd"].as_f64().unwrap();
    let per_million = recbench::cost::usd_per_1m(usd);
    assert!(
        md.contains(&format!("({per_million} per 1M requests at full load)")),
        "{per_million}: {md}"
    );
    assert!(
        md.contains("| $ per 1M req |")
            && md.contains("| machines |")
            && md.contains("replica(s) per machine"),
        "{md}"
    );
    assert!(!md.contains("$/1k") && !md.contains("instances"), "{md}");
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    // The page's first lines under its title are the answer, the same sentence as summary.md's
    // first line and the verdict's start.
    let top = html
        .split("</h1>\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no title"));
    assert!(
        top.starts_with("<div class=\"answer\"><ul><li><b>"),
        "{}",
        &top[..200]
    );
    let first = md.lines().nth(2).unwrap();
    assert!(first.contains(&verdict), "{first}");
    let answer = first.split_once("**: ").unwrap().1;
    assert!(top.contains(&answer.replace('\'', "&#39;")), "{answer}");
    assert!(
        html.contains("<th class=n>$ per 1M requests</th>")
            && html.contains("<th class=n>machines</th>")
            && html.contains(&format!("<td class=n>{per_million}<br><small>95% CI ")),
        "html units"
    );
    let out = recbench().arg("plan").arg(f).args(flags).output().unwrap();
    common::assert_succeeded(&out);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("$/1M req") && plan.contains(" machines ") && plan.contains(&per_million),
        "{plan}"
    );

    for (args, says) in [
        (
            vec!["--qps", "0"],
            "field `--qps`: 0 must be a positive number",
        ),
        (
            vec!["--qps", "inf"],
            "field `--qps`: inf must be a positive number",
        ),
        (
            vec!["--p99-ms", "nan"],
            "field `--p99-ms`: NaN must be a positive number",
        ),
        (
            vec!["--basis", "nope"],
            "field `--basis`: unknown price basis \"nope\"",
        ),
        (
            vec!["--headroom", "11"],
            "field `--headroom`: 11 must be between 0 and 10",
        ),
        (
            vec!["--headroom=-1"],
            "field `--headroom`: -1 must be between 0 and 10",
        ),
    ] {
        let (dir, out) = report(&[f], &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{args:?}: a report was written"
        );
    }
}

/// A caveat written in a run's notes (here a kernel fallback) travels with its figure: the
/// headline's sentence, the decision table, `plan` (text and JSON) and the cost chart's bar
/// (its alt text) all carry the badge.
#[test]
fn a_runs_caveat_travels_to_the_headline_the_table_plan_and_the_chart() {
    common::isolate();
    let f = results_file();
    let flags = ["--qps", "200", "--p99-ms", "500"];
    let plan_json = |file: &Path| -> Value {
        let out = recbench()
            .arg("plan")
            .arg(file)
            .args(flags)
            .arg("--json")
            .output()
            .unwrap();
        common::assert_succeeded(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = plan_json(f);
    let best = &before[0]["options"][0];
    let id = best["run_id"].as_str().unwrap().to_string();
    assert!(
        !best["caveats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "kernel fallback"),
        "{best}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
    let run = v["runs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["spec"]["id"] == id.as_str())
        .unwrap();
    run["notes"]
        .as_array_mut()
        .unwrap()
        .push("the fused attention kernel fell back to the unfused one".into());
    let noted = write_json(dir.path(), "noted.json", &v);

    let after = plan_json(&noted);
    let best = &after[0]["options"][0];
    assert_eq!(best["run_id"], id.as_str(), "the same winner");
    assert!(
        best["caveats"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "kernel fallback"),
        "{best}"
    );
    let hw = best["hardware_id"].as_str().unwrap();
    let caveats = format!("(caveats on {hw}'s figure: ");
    let verdict = after[0]["verdict"].as_str().unwrap();
    assert!(
        verdict.contains(&caveats) && verdict.contains("kernel fallback"),
        "{verdict}"
    );
    let out = recbench()
        .arg("plan")
        .arg(&noted)
        .args(flags)
        .output()
        .unwrap();
    common::assert_succeeded(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("caveats: ") && l.contains("kernel fallback")),
        "{text}"
    );

    let (out_dir, out) = report(&[&noted], &flags);
    common::assert_succeeded(&out);
    let md = std::fs::read_to_string(out_dir.path().join("summary.md")).unwrap();
    assert!(md.contains(&caveats), "{md}");
    // The report's first line is the answer, and it carries the caveat too.
    let first = md.lines().nth(2).unwrap();
    assert!(
        first.starts_with("- **") && first.contains(&caveats) && first.contains("kernel fallback"),
        "{first}"
    );
    let row = md.lines().find(|l| l.contains("**cheapest**")).unwrap();
    assert!(row.contains("kernel fallback"), "{row}");
    let html = std::fs::read_to_string(out_dir.path().join("index.html")).unwrap();
    let alt = html
        .split("<img alt=\"")
        .nth(1)
        .and_then(|a| a.split('"').next())
        .unwrap();
    assert!(
        alt.starts_with("Cost per million recommendations")
            && alt.contains(&format!("{hw} (CPU) |"))
            && alt.contains("caveats: ")
            && alt.contains("kernel fallback"),
        "{alt}"
    );
}

/// Renders the report in headless Chromium (Debian's package, no network) and checks what a
/// reader sees: the recommendation text in the DOM and a screenshot with content.
#[test]
fn report_renders_in_headless_chromium() {
    common::isolate();
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if found.is_none() && std::env::var_os("RECBENCH_SKIP_BROWSER").is_some_and(|v| !v.is_empty()) {
        eprintln!("skipped: no Chromium here and RECBENCH_SKIP_BROWSER is set");
        return;
    }
    let chromium = found.expect(
        "Chromium is needed for this test: scripts/test.sh installs Debian's chromium package \
         (or set RECBENCH_SKIP_BROWSER=1 to skip it, and say so)",
    );
    let (dir, out) = report(&[results_file()], &[]);
    assert!(out.status.success());
    let page = dir.path().join("index.html");
    let profile = tempfile::tempdir().unwrap();
    let shot = dir.path().join("screenshot.png");
    let common = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut c = Command::new(chromium);
    common(&mut c);
    let dom = c
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("cheapest"), "decision table rendered");
    assert!(
        dom.matches("data:image/png;base64,").count() >= 6,
        "charts embedded"
    );
    let mut c = Command::new(chromium);
    common(&mut c);
    let st = c
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2400")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&st.stderr)));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 50_000,
        "the screenshot has content ({} bytes)",
        png.len()
    );
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    std::fs::copy(&shot, &keep).unwrap();
}

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p
}

fn compare(a: &Path, b: &Path) -> std::process::Output {
    recbench()
        .arg("compare")
        .arg(a)
        .arg(b)
        .args(["--max-regression", "10"])
        .output()
        .unwrap()
}

#[test]
fn compare_passes_a_a_and_fails_a_real_slowdown() {
    common::isolate();
    let base = results_file();
    let dir = tempfile::tempdir().unwrap();
    // A/A: the candidate's samples are drawn again (with replacement, seeded) from the
    // baseline's: the same distribution, other draws, as a second run of the same build gives.
    let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for r in v["runs"].as_array_mut().unwrap() {
        let s: Vec<f64> = r["samples_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let drawn: Vec<Value> = (0..s.len())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s[(state % s.len() as u64) as usize].into()
            })
            .collect();
        r["samples_ms"] = drawn.into();
    }
    let again = write_json(dir.path(), "again.json", &v);
    let out = compare(base, &again);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("pass"));
    // The summary comes before the table.
    let summary = stdout
        .lines()
        .find(|l| l.contains("runs compared"))
        .unwrap();
    assert!(summary.contains("0 regressed"), "{summary}");
    // The table lists changed and inconclusive rows only: an A/A comparison may have none,
    // and then says so.
    match stdout.find("| run |") {
        Some(table) => assert!(stdout.find("runs compared").unwrap() < table, "{stdout}"),
        None => assert!(stdout.contains("No metric of the "), "{stdout}"),
    }

    // Every iteration of the first ok run 30% slower: a regression beyond 10% with confidence.
    let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    let i = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["status"] == "ok")
        .unwrap();
    let slow: Vec<Value> = v["runs"][i]["samples_ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x.as_f64().unwrap() * 1.3).into())
        .collect();
    v["runs"][i]["samples_ms"] = slow.into();
    let cand = write_json(dir.path(), "slow.json", &v);
    let md = dir.path().join("gate.md");
    let out = recbench()
        .arg("compare")
        .arg(base)
        .arg(&cand)
        .args(["--max-regression", "10", "--markdown"])
        .arg(&md)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let table = std::fs::read_to_string(&md).unwrap();
    assert!(
        table.contains("REGRESSION") && table.contains("**regressed**"),
        "{table}"
    );
    // Its reader gone (`recbench compare … | head` after head exited, or `| true`), the gate
    // keeps its verdict: the exit code is the verdict, not the text.
    for args in [vec![], vec!["--json"]] {
        let out = recbench()
            .arg("compare")
            .arg(base)
            .arg(&cand)
            .args(["--max-regression", "10"])
            .args(&args)
            .stdout(common::closed_stdout())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    }

    // A run that was ok and is now invalid fails the gate even without samples.
    let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    v["runs"][i]["status"] = "invalid".into();
    let cand = write_json(dir.path(), "invalid.json", &v);
    let out = compare(base, &cand);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("newly broken"));
}

#[test]
fn compare_refuses_incompatible_files_with_exit_code_2() {
    common::isolate();
    let base = results_file();
    let dir = tempfile::tempdir().unwrap();
    let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    v["schema_version"] = 2.into();
    let future = write_json(dir.path(), "future.json", &v);
    let out = compare(base, &future);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 2 is not supported"));

    // A file from before device scoring (its runs scored on the host under the same ids).
    let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    for r in v["runs"].as_array_mut().unwrap() {
        r["spec"].as_object_mut().unwrap().remove("scoring");
    }
    let before = write_json(dir.path(), "host-scored.json", &v);
    let out = compare(&before, base);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("field `runs[].spec.scoring`")
            && err.contains("scored on the host in the baseline and on the device here"),
        "{err}"
    );

    let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    for r in v["runs"].as_array_mut().unwrap() {
        r["spec"]["id"] = r["spec"]["id"]
            .as_str()
            .unwrap()
            .replace("tiny", "base")
            .into();
        r["spec"]["model"] = "base".into();
    }
    let other = write_json(dir.path(), "other-model.json", &v);
    let out = compare(base, &other);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no run in common"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another machine: refused with what differs, unless asked for, then labelled.
    let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
    v["environment"]["inventory"]["cpu_model"] = "Other CPU".into();
    v["environment"]["inventory"]["cpu_flags"] = serde_json::json!(["avx2", "fma"]);
    let other_host = write_json(dir.path(), "other-host.json", &v);
    let out = compare(base, &other_host);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("different machines")
            && err.contains("cpu_model")
            && err.contains("cpu_flags"),
        "{err}"
    );
    let out = recbench()
        .arg("compare")
        .arg(base)
        .arg(&other_host)
        .args(["--max-regression", "10", "--allow-different-hosts"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("(cross-host)") && stdout.contains("CROSS-HOST"),
        "{stdout}"
    );

    // What else decides speed, one difference at a time: core counts, the GPUs, a backend's
    // runtime. Each is refused and named.
    type Change = fn(&mut Value);
    let differing: [(&str, Change); 4] = [
        ("logical_cores", |v| {
            let n = v["environment"]["inventory"]["logical_cores"]
                .as_u64()
                .unwrap();
            v["environment"]["inventory"]["logical_cores"] = (n + 2).into();
        }),
        ("physical_cores", |v| {
            v["environment"]["inventory"]["physical_cores"] = 97.into();
        }),
        ("gpus", |v| {
            v["environment"]["inventory"]["gpus"] = serde_json::json!([{
                "index": 0, "name": "NVIDIA H200", "memory_bytes": 150754820096u64,
                "driver": "580.159.04", "cuda_version": "13.0", "power_limit_watts": 700.0
            }]);
        }),
        ("candle runtime", |v| {
            let b = v["environment"]["backends"]
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|b| b["backend"] == "candle")
                .unwrap();
            b["runtime_version"] = "0.0.1-other".into();
        }),
    ];
    for (field, change) in differing {
        let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
        change(&mut v);
        let other = write_json(dir.path(), "differs.json", &v);
        let out = compare(base, &other);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(
            err.contains("different machines") && err.contains(&format!("{field}:")),
            "{field}: {err}"
        );
    }

    // The same model name and flags on another CPU generation (a VM's generic "AMD EPYC"):
    // the signature tells them apart; a file without one (older) is not refused for lacking it.
    let with_signature = |name: &str, sig: Option<&str>| {
        let mut v: Value = serde_json::from_slice(&std::fs::read(base).unwrap()).unwrap();
        let inv = v["environment"]["inventory"].as_object_mut().unwrap();
        match sig {
            Some(sig) => inv.insert("cpu_signature".into(), sig.into()),
            None => inv.remove("cpu_signature"),
        };
        write_json(dir.path(), name, &v)
    };
    let zen4 = with_signature(
        "zen4.json",
        Some("AuthenticAMD family 25 model 17 stepping 1"),
    );
    let zen5 = with_signature(
        "zen5.json",
        Some("AuthenticAMD family 26 model 2 stepping 1"),
    );
    let unsigned = with_signature("unsigned.json", None);
    let out = compare(&zen4, &zen5);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cpu_signature") && err.contains("family 26"),
        "{err}"
    );
    let out = compare(&zen4, &unsigned);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let truncated = dir.path().join("truncated.json");
    let bytes = std::fs::read(base).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = compare(base, &truncated);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated.json:") && !err.contains("panicked"),
        "{err}"
    );
}

/// The committed retrieval sweep (results/reference/retrieval): the report's Retrieval section
/// lists every valid run's search with its recall@10 as the results file has it, draws the
/// cost–recall plane, and a quality bar judges a search's run by the model's overlap times its
/// recall, so a lossy search is excluded with that reason.
#[test]
fn the_retrieval_section_lists_every_search_with_its_recall_and_the_bar_counts_recall() {
    common::isolate();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = common::files_with_extension(&root.join("results/reference/retrieval"), "json")
        .into_iter()
        .next()
        .expect("a committed retrieval sweep");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let (dir, out) = report(
        &[&file],
        &["--map", "vm=aws-m7i-large", "--min-quality", "0.9"],
    );
    common::assert_succeeded(&out);
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    let section = &html[html
        .find("<h2 id=\"retrieval\">")
        .expect("a Retrieval section")..];
    let section = &section[..section[4..].find("<h2").map_or(section.len(), |i| i + 4)];
    let mut lossy = None;
    for r in v["runs"].as_array().unwrap() {
        if r["status"] != "ok" {
            continue;
        }
        let id = r["spec"]["id"].as_str().unwrap();
        let recall = r["retrieval"]["recall_at_k"].as_f64().unwrap();
        let row = section
            .split("<tr>")
            .find(|row| row.contains(&format!("<code>{id}</code>")))
            .unwrap_or_else(|| panic!("{id} is not in the Retrieval section"));
        assert!(
            row.contains(&format!(">{recall:.3}<")),
            "{id}: recall {recall} in {row}"
        );
        let overlap = r["quality"]["top10_overlap"].as_f64().unwrap();
        if overlap * recall < 0.9 {
            lossy = Some(id.to_string());
        }
    }
    let png = dir.path().join("retrieval.png");
    assert!(
        coloured_pixels(&png) > 1000,
        "the cost–recall plane is drawn"
    );
    // The bar is applied to overlap × recall: a search below it is excluded, saying why.
    let lossy = lossy.expect("the sweep has a search below recall 0.9 (USearch's int8)");
    let excluded = html
        .split("<tr>")
        .find(|row| row.contains(&lossy) && row.contains("quality below the bar"))
        .unwrap_or_else(|| panic!("{lossy} is not excluded by the quality bar"));
    assert!(
        excluded.contains("times its search&#39;s recall@10"),
        "{excluded}"
    );
}
