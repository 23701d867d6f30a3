//! recbench's binary: parse arguments, call the library, map errors to exit codes
//! (0 success, 1 a check or run failed, 2 bad input or usage).

mod cli;

use std::io::Write;

use anyhow::Context;
use clap::Parser;

use cli::{Cli, Command};
use recbench::backend::{self, BackendKind, Device, Precision};
use recbench::harness::{self, SweepOptions};
use recbench::model::Preset;
use recbench::present;
use recbench::report;
use recbench::results::Status;
use recbench::scenario::Scenario;
use recbench::telemetry::Inventory;
use recbench::Error;

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            note(&format!("Error: {e:#}"));
            e.chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map_or(1, Error::exit_code)
        }
    };
    // Output lost to anything but a closed pipe fails an otherwise successful command; a
    // failure's own code (1 or 2) stands either way.
    let lost = STDOUT_FAILED.load(std::sync::atomic::Ordering::Relaxed);
    std::process::exit(if code == 0 && lost { 1 } else { code });
}

/// Set once a write to stdout failed: later output is dropped, the command goes on.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set when that failure was not a closed pipe (a full disk under `> file`): a command that
/// otherwise succeeded then exits 1, as its output is lost.
static STDOUT_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes `text` to stdout. A reader that closed the pipe (`recbench compare … | head`) ends
/// the output, never the command: what is left is not written, and the exit code is the
/// command's own (a regression that `compare` found still exits 1; the verdict is the exit
/// code, not the text).
fn say(text: &str) {
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            STDOUT_FAILED.store(true, Ordering::Relaxed);
            let _ = writeln!(std::io::stderr(), "Error: writing to stdout: {e}");
        }
    }
}

/// A command's answer on stdout: the value as JSON with `--json`, else its text for people.
/// Every command that answers goes through here, so the two forms cannot drift apart.
fn emit<T: serde::Serialize + ?Sized>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        say(&format!("{}\n", serde_json::to_string_pretty(value)?));
    } else {
        say(&text());
    }
    Ok(())
}

/// The reader's requirement from `--qps`, `--p99-ms`, `--basis`, `--headroom` and
/// `--min-quality`, checked.
fn requirement(
    qps: Option<f64>,
    p99_ms: Option<f64>,
    basis: String,
    headroom: f64,
    min_quality: Option<f64>,
) -> anyhow::Result<report::decision::Requirement> {
    if let Some(q) = min_quality {
        if !(q.is_finite() && (0.0..=1.0).contains(&q)) {
            return Err(usage(
                "--min-quality",
                format!("{q} must be a top-10 overlap between 0 and 1"),
            ));
        }
    }
    for (name, v) in [("--qps", qps), ("--p99-ms", p99_ms)] {
        if let Some(v) = v {
            if !(v.is_finite() && v > 0.0) {
                return Err(usage(name, format!("{v} must be a positive number")));
            }
        }
    }
    if !(headroom.is_finite() && (0.0..=10.0).contains(&headroom)) {
        return Err(usage(
            "--headroom",
            format!("{headroom} must be between 0 and 10"),
        ));
    }
    const BASES: [&str; 4] = ["on-demand", "reserved-1y", "spot", "owned"];
    if !BASES.contains(&basis.as_str()) {
        return Err(usage(
            "--basis",
            format!(
                "unknown price basis {basis:?}; allowed: {}",
                BASES.join(", ")
            ),
        ));
    }
    Ok(report::decision::Requirement {
        qps,
        p99_ms,
        basis,
        headroom,
        min_quality,
    })
}

/// The demand of `--diurnal` or `--trace` and the autoscaler's settings, checked; `None`
/// without either.
fn day_plan(
    a: &cli::DayArgs,
    headroom: f64,
) -> anyhow::Result<Option<(recbench::cost::day::Trace, recbench::cost::day::DaySettings)>> {
    use recbench::cost::day;
    let trace = match (&a.diurnal, &a.trace) {
        (Some(d), _) => {
            let (peak, trough, period) =
                day::parse_diurnal(d).map_err(|m| usage("--diurnal", m))?;
            day::diurnal(peak, trough, period, period, 20_240_601)
        }
        (None, Some(p)) => day::parse_trace(p, &recbench::util::files::read_text(p)?)?,
        (None, None) => return Ok(None),
    };
    for (name, v) in [
        ("--cold-start-s", a.cold_start_s),
        ("--scale-up-s", a.scale_up_s),
        ("--scale-down-s", a.scale_down_s),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(usage(
                name,
                format!("{v} must be a number of seconds, at least 0"),
            ));
        }
    }
    let settings = day::DaySettings {
        headroom,
        scale_up_delay_s: a.scale_up_s,
        scale_down_delay_s: a.scale_down_s,
        cold_start_s: a.cold_start_s,
    };
    Ok(Some((trace, settings)))
}

/// Writes a line to stderr; a closed stderr is not worth a panic.
fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `--out` names a folder (made when missing): an existing file there is a usage error.
fn out_folder(out: &std::path::Path) -> anyhow::Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(usage(
            "--out",
            format!(
                "{} is a file, not a folder: --out names the folder to write into",
                out.display()
            ),
        ));
    }
    Ok(())
}

fn usage(field: &str, message: String) -> anyhow::Error {
    Error::input("<command line>", None, field, message).into()
}

fn parse_backend(s: &str) -> anyhow::Result<BackendKind> {
    BackendKind::parse(s).ok_or_else(|| {
        usage(
            "--backend",
            format!("unknown backend {s:?}; allowed: {}", BackendKind::allowed()),
        )
    })
}

fn parse_backends(names: &[String]) -> anyhow::Result<Vec<BackendKind>> {
    names.iter().map(|b| parse_backend(b)).collect()
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Run {
            scenario,
            out,
            backends,
            devices,
            quick,
            resume,
            quiet,
            json,
            interleave,
            rounds,
            budget_s,
            max_regression,
        } => {
            let sc = Scenario::load(&scenario)?;
            out_folder(&out)?;
            recbench::cost::check_hardware(&sc, &recbench::cost::Catalog::shipped_with(None)?)?;
            let backends = parse_backends(&backends)?;
            let devices = devices
                .iter()
                .map(|d| {
                    Device::parse(d).ok_or_else(|| {
                        usage(
                            "--device",
                            format!("unknown device {d:?}; allowed: {}", Device::ALLOWED),
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            ctrlc::set_handler(|| {
                harness::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            })
            .context("installing the Ctrl-C handler")?;
            let opts = SweepOptions {
                out_dir: out,
                backends,
                devices,
                quick,
                resume,
                quiet,
                interleave: interleave.clone(),
                rounds: match rounds {
                    cli::Rounds::Fixed(n) => n,
                    cli::Rounds::Auto => harness::AUTO_MAX_ROUNDS,
                },
                auto_rounds: match rounds {
                    cli::Rounds::Fixed(_) => None,
                    cli::Rounds::Auto => {
                        if !(budget_s.is_finite() && budget_s > 0.0) {
                            return Err(usage(
                                "--budget-s",
                                format!("{budget_s} must be a positive number of seconds"),
                            ));
                        }
                        if !(max_regression.is_finite() && max_regression > 0.0) {
                            return Err(usage(
                                "--max-regression",
                                format!("{max_regression} must be a positive percentage"),
                            ));
                        }
                        Some(harness::AutoRounds {
                            threshold: max_regression / 100.0,
                            budget_s,
                        })
                    }
                },
            };
            if let Some(baseline) = &interleave {
                if resume {
                    return Err(usage(
                        "--resume",
                        "cannot be combined with --interleave".into(),
                    ));
                }
                let (a, b, interrupted) = harness::run_interleaved(sc, &opts, baseline)?;
                say(&format!(
                    "baseline:  {}\ncandidate: {}\n",
                    a.display(),
                    b.display()
                ));
                say(&format!(
                    "compare with: recbench compare {} {}\n",
                    a.display(),
                    b.display()
                ));
                return Ok(if interrupted { 130 } else { 0 });
            }
            let outcome = harness::run_sweep(sc, &opts)?;
            emit(json, &outcome.results, || present::sweep(&outcome.results))?;
            note(&format!("results: {}", outcome.path.display()));
            if outcome.interrupted {
                note(&format!(
                    "interrupted: {} finished runs are kept in {}; `recbench run --resume` continues",
                    outcome.results.runs.len(),
                    outcome.path.display()
                ));
                return Ok(130);
            }
            let failed = outcome
                .results
                .runs
                .iter()
                .any(|r| matches!(r.status, Status::Failed | Status::Invalid));
            Ok(if failed { 1 } else { 0 })
        }
        Command::Report {
            results,
            out,
            catalog,
            maps,
            qps,
            p99_ms,
            basis,
            headroom,
            min_quality,
            day,
        } => {
            let day = day_plan(&day, headroom)?;
            let qps = qps.or(day.as_ref().map(|(t, _)| t.peak()));
            let requirement = requirement(qps, p99_ms, basis, headroom, min_quality)?;
            out_folder(&out)?;
            let maps = maps
                .iter()
                .map(|m| report::parse_map(m))
                .collect::<Result<Vec<_>, _>>()?;
            let opts = report::ReportOptions {
                inputs: results,
                out,
                catalog,
                maps,
                requirement,
                day,
            };
            for p in report::write(&opts)? {
                say(&format!("{}\n", p.display()));
            }
            Ok(0)
        }
        Command::Compare {
            baseline,
            candidate,
            max_regression,
            markdown,
            allow_different_hosts,
            all,
            fail_on_inconclusive,
            json,
        } => {
            if !(max_regression.is_finite() && (0.0..=1000.0).contains(&max_regression)) {
                return Err(usage(
                    "--max-regression",
                    format!("{max_regression} must be a percentage from 0 to 1000"),
                ));
            }
            let mut c = recbench::compare::compare(
                &baseline,
                &candidate,
                max_regression / 100.0,
                allow_different_hosts,
            )?;
            c.fail_on_inconclusive = fail_on_inconclusive;
            let md = recbench::compare::markdown(&c, all);
            if let Some(p) = markdown {
                std::fs::write(&p, &md).with_context(|| format!("writing {}", p.display()))?;
            }
            emit(json, &c.json(), || md)?;
            Ok(if c.failed() { 1 } else { 0 })
        }
        Command::Plan {
            results,
            qps,
            day,
            p99_ms,
            headroom,
            basis,
            min_quality,
            catalog,
            maps,
            json,
        } => {
            let day = day_plan(&day, headroom)?;
            let qps = match &day {
                Some((t, _)) => t.peak(),
                None => qps.expect("clap requires --qps without a trace"),
            };
            let requirement = requirement(Some(qps), Some(p99_ms), basis, headroom, min_quality)?;
            let maps = maps
                .iter()
                .map(|m| report::parse_map(m))
                .collect::<Result<Vec<_>, _>>()?;
            let opts = report::ReportOptions {
                inputs: results,
                out: Default::default(),
                catalog,
                maps,
                requirement,
                day: None,
            };
            let groups = report::plan(&opts)?;
            match day {
                Some((t, settings)) => {
                    let days = recbench::cost::day::plan_day(&groups, &t, &settings);
                    emit(json, &days, || present::day(&days, &t, &settings, p99_ms))?;
                }
                None => emit(json, &groups, || {
                    present::plan(&groups, qps, p99_ms, headroom)
                })?,
            }
            Ok(0)
        }
        Command::Validate { scenario, json } => {
            let sc = Scenario::load(&scenario)?;
            recbench::cost::check_hardware(&sc, &recbench::cost::Catalog::shipped_with(None)?)?;
            let runs = sc.expand(&harness::this_host());
            let v: Vec<_> = runs
                .iter()
                .map(|r| serde_json::json!({"spec": r.spec, "skip": r.skip}))
                .collect();
            emit(json, &v, || present::validation(&scenario, &sc, &runs))?;
            Ok(0)
        }
        Command::Parity {
            scenarios,
            full,
            quiet,
            backends,
            json,
        } => {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
            let scenarios = match (scenarios.is_empty(), full) {
                (false, _) => scenarios,
                (true, false) => vec![root.join("parity.toml"), root.join("parity-minilm.toml")],
                (true, true) => vec![root.join("parity-full.toml")],
            };
            let backends = parse_backends(&backends)?;
            let display = harness::progress::Display::for_stderr(quiet || json);
            let mut rows = Vec::new();
            for path in &scenarios {
                let sc = Scenario::load(path)?;
                rows.extend(harness::parity::check_scenario(&sc, &backends, display)?);
            }
            emit(json, &rows, || present::parity(&rows))?;
            let failed = rows
                .iter()
                .any(|r| r.parity.as_ref().is_some_and(|p| !p.passed));
            note(&present::parity_counts(&rows));
            Ok(if failed { 1 } else { 0 })
        }
        Command::Recommend {
            user,
            top,
            backend,
            precision,
            model,
            json,
        } => {
            let kind = parse_backend(&backend)?;
            let precision = Precision::parse(&precision).ok_or_else(|| {
                usage(
                    "--precision",
                    format!(
                        "unknown precision {precision:?}; allowed: {}",
                        Precision::allowed()
                    ),
                )
            })?;
            let preset = Preset::parse(&model).ok_or_else(|| {
                usage(
                    "--model",
                    format!("unknown model {model:?}; allowed: {}", Preset::allowed()),
                )
            })?;
            recommend(&user, top as usize, kind, precision, preset, json)?;
            Ok(0)
        }
        Command::Hardware { json } => {
            let inv = Inventory::collect();
            emit(json, &inv, || present::inventory(&inv))?;
            Ok(0)
        }
        Command::Backends { json } => {
            let inv = backend::inventory();
            emit(json, &inv, || present::backends(&inv))?;
            Ok(0)
        }
        Command::Worker {
            spec,
            out,
            gemm_ceiling,
        } => {
            harness::worker::main(&spec, &out, gemm_ceiling)?;
            Ok(0)
        }
        Command::HugepageProbe { spec } => {
            say(&format!("{:.4}\n", harness::hugepages::probe(&spec)?));
            Ok(0)
        }
        Command::OpenmpProbe {
            model,
            sequences,
            seq,
            threads,
            items,
            spec,
        } => {
            if let Some(spec) = spec {
                say(&format!("{:.4}\n", harness::openmp::probe_spec(&spec)?));
                return Ok(0);
            }
            let model = Preset::parse(&model)
                .ok_or_else(|| anyhow::anyhow!("unknown model preset {model:?}"))?;
            let shape = harness::openmp::Shape {
                model,
                precision: Precision::Fp32,
                sequences,
                seq,
                threads,
                items,
            };
            say(&format!("{:.4}\n", harness::openmp::probe(&shape)?));
            Ok(0)
        }
    }
}

fn recommend(
    user: &str,
    top: usize,
    kind: BackendKind,
    precision: Precision,
    preset: Preset,
    json: bool,
) -> anyhow::Result<()> {
    let (best, items) = harness::recommend::top_items(user, top, kind, precision, preset)?;
    let v: Vec<_> = best
        .iter()
        .map(|(i, s)| serde_json::json!({"id": items[*i].id, "kind": items[*i].kind, "title": items[*i].title, "description": items[*i].description, "score": s}))
        .collect();
    emit(json, &v, || {
        present::recommendations(user, &best, &items, (preset, kind, precision))
    })
}
