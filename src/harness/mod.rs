//! The sweep: expand a scenario, run each point in its own worker process, write results after
//! every run.
//!
//! The parent never loads a backend for measurement; it computes the fp32 reference once per
//! model, measures the machine's GEMM ceiling, spawns `recbench __worker` per run with the run's
//! thread count in the environment, enforces a timeout, and turns crashes into `failed` results
//! carrying the signal or exit code and the worker's last stderr lines.

pub mod ceiling;
pub mod hugepages;
pub mod inputs;
pub mod openmp;
pub mod parity;
pub mod progress;
pub mod recommend;
pub mod server;
pub mod sweep;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::model::{ModelFiles, Tokenizer};
use crate::results::{
    self, BackendVersion, Environment, ResultsFile, RunResult, ScenarioEcho, Status,
};
use crate::scenario::{Host, PlannedRun, Scenario};
use crate::spec::{BackendKind, Device};
use crate::telemetry::{inventory, Inventory};
use progress::{Display, Progress};

/// Set by the Ctrl-C handler; the sweep stops after saving what is finished.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How to run a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    pub out_dir: PathBuf,
    pub backends: Vec<BackendKind>,
    pub devices: Vec<Device>,
    pub quick: bool,
    pub resume: bool,
    pub quiet: bool,
    /// Run a baseline binary and this one alternately, `rounds` times per run (`--interleave`).
    pub interleave: Option<PathBuf>,
    pub rounds: usize,
    /// `--rounds auto`: add rounds to a run until its slowdown is settled at this gate, or its
    /// share of the time budget is spent.
    pub auto_rounds: Option<AutoRounds>,
}

/// `--rounds auto`: the gate a run's rounds must settle and the time the sweep may take.
#[derive(Debug, Clone, Copy)]
pub struct AutoRounds {
    /// The gate's threshold (0.05 = 5%), as `compare --max-regression` takes it.
    pub threshold: f64,
    /// Wall seconds for the whole interleaved sweep; each run gets the rest of it divided by
    /// the runs still to go.
    pub budget_s: f64,
}

/// `--rounds auto` never runs more rounds than this per run.
pub const AUTO_MAX_ROUNDS: usize = 20;

/// What a sweep produced.
pub struct SweepOutcome {
    pub path: PathBuf,
    pub results: ResultsFile,
    pub interrupted: bool,
}

/// Builds the environment block of a results file from the sweep's one probe of the host.
pub fn environment(inventory: Inventory, thread_counts: &BTreeSet<usize>) -> Environment {
    let gemm_ceiling = thread_counts.iter().map(|&t| ceiling::measure(t)).collect();
    Environment {
        inventory,
        recbench_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("RECBENCH_GIT_COMMIT").to_string(),
        backends: BackendKind::ALL
            .into_iter()
            .filter(|b| b.compiled())
            .map(|b| BackendVersion {
                backend: b.name().into(),
                runtime_version: b.runtime_version(),
            })
            .collect(),
        gemm_ceiling,
        idle_power: crate::telemetry::idle_baseline(Duration::from_secs(3)),
    }
}

/// An empty results file for a sweep of `scenario` on this machine.
fn new_file(scenario: &Scenario, opts: &SweepOptions, environment: Environment) -> ResultsFile {
    let now = results::now_utc();
    ResultsFile {
        schema_version: results::SCHEMA_VERSION,
        scenario: ScenarioEcho {
            name: scenario.name.clone(),
            path: scenario.path.display().to_string(),
            text: scenario.text.clone(),
            quick: opts.quick,
            cost: Some(results::CostSettings {
                hardware: scenario.cost_hardware.clone(),
            }),
        },
        environment,
        started_utc: now.clone(),
        updated_utc: now,
        runs: vec![],
    }
}

/// The scenario's runs, filtered by `--backend` and `--device`.
/// This machine, as planning sees it: its physical cores and its memory.
pub fn this_host() -> Host {
    Host {
        auto_threads: inventory::default_threads(),
        memory_bytes: inventory::memory_bytes(),
    }
}

/// The machine an inventory describes, as planning sees it (what [`this_host`] reads).
fn host_of(inv: &Inventory) -> Host {
    Host {
        auto_threads: inv.physical_cores.unwrap_or(inv.logical_cores),
        memory_bytes: inv.memory_bytes,
    }
}

fn plan(scenario: &Scenario, opts: &SweepOptions, host: &Host) -> Vec<PlannedRun> {
    let mut planned = scenario.expand(host);
    planned.retain(|p| {
        (opts.backends.is_empty() || opts.backends.contains(&p.spec.backend))
            && (opts.devices.is_empty() || opts.devices.contains(&p.spec.device))
    });
    planned
}

/// What every sweep does first: shrink durations for `--quick`, probe the host (once a sweep),
/// plan the runs on it (an empty plan is an input error), and choose where progress goes.
fn set_up(
    scenario: &mut Scenario,
    opts: &SweepOptions,
) -> Result<(Vec<PlannedRun>, Inventory, Display)> {
    if opts.quick {
        scenario.quick();
    }
    // A bad RECBENCH_HUGEPAGES, RECBENCH_SUB_BATCH or RECBENCH_CANDLE_INT8 stops the sweep
    // before its first run.
    hugepages::forced()?;
    worker::sub_batch::setting()?;
    crate::backend::check_env()?;
    let inventory = Inventory::collect();
    let planned = plan(scenario, opts, &host_of(&inventory));
    if planned.is_empty() {
        return Err(Error::input(
            &scenario.path,
            None,
            "matrix",
            "no run is left after the --backend/--device filters",
        ));
    }
    Ok((planned, inventory, Display::for_stderr(opts.quiet)))
}

/// The thread counts of the runs that will run: the GEMM ceiling is measured at each.
fn measured_threads(planned: &[PlannedRun]) -> BTreeSet<usize> {
    planned
        .iter()
        .filter(|p| p.skip.is_none())
        .map(|p| p.spec.threads)
        .collect()
}

/// The CPU fp32 GEMM ceiling a run's efficiency is measured against: only a CPU run in fp32
/// has one. The CPU's GEMMs say nothing of a GPU's, and an fp32 ceiling nothing of int8 or
/// half-precision products (with VNNI an int8 MiniLM ran above the fp32 ceiling on the 2-vCPU
/// EPYC VM), so their efficiency stays empty rather than wrong.
///
/// A GPU run's ceiling is its GPU's data-sheet peak at the run's precision
/// (`telemetry::gpu_peaks`), when the table has the GPU `gpus` names at the run's index.
fn ceiling_for(
    ceilings: &BTreeMap<usize, f64>,
    gpus: &[crate::telemetry::gpu::Gpu],
    p: &PlannedRun,
) -> Option<f64> {
    match p.spec.device {
        crate::spec::Device::Cpu => (p.spec.precision == crate::spec::Precision::Fp32)
            .then(|| ceilings.get(&p.spec.threads).copied())
            .flatten(),
        crate::spec::Device::Cuda(i) => gpus
            .iter()
            .find(|g| g.index == i)
            .and_then(|g| crate::telemetry::gpu_peaks::of(&g.name))
            .and_then(|peak| peak.gflops(p.spec.precision)),
    }
}

/// The GEMM ceiling per thread count of an environment.
fn ceilings(env: &Environment) -> BTreeMap<usize, f64> {
    env.gemm_ceiling
        .iter()
        .map(|g| (g.threads, g.gflops))
        .collect()
}

/// The models (and their pruned variants) whose weights and fp32 reference are ready in the
/// cache, so workers only read them.
#[derive(Default)]
struct References(BTreeSet<(crate::model::Preset, u64, crate::model::Recipe)>);

impl References {
    fn prepare(&mut self, p: &PlannedRun, note: &mut dyn FnMut(&str)) -> Result<()> {
        let s = &p.spec;
        // A pruned run's quality is measured against the full model: prepare that one first.
        let mut wanted = vec![crate::model::Recipe::default()];
        if !s.prune.is_full() {
            wanted.push(s.prune.clone());
        }
        for recipe in wanted {
            if self.0.insert((s.model, s.seed, recipe.clone())) {
                let what = match recipe.is_full() {
                    true => s.model.to_string(),
                    false => format!("{} pruned {recipe}", s.model),
                };
                note(&format!("preparing {what} (weights, fp32 reference) ..."));
                prepare_reference(s.model, s.seed, &recipe)?;
            }
        }
        Ok(())
    }
}

/// A measured power figure split into the host's idle draw (measured at the sweep's start) and
/// what the run added above it; estimates are left whole.
fn attribute_idle(env: &Environment, result: &mut RunResult) {
    if let (Some(idle), Some(w)) = (
        env.idle_power.as_ref().and_then(|p| p.watts),
        result.power.watts,
    ) {
        if result.power.source != "estimated" {
            result.power.idle_watts = Some(idle);
            result.power.above_idle_watts = Some(w - idle);
        }
    }
}

/// Runs the sweep described by `scenario`.
pub fn run_sweep(mut scenario: Scenario, opts: &SweepOptions) -> Result<SweepOutcome> {
    let (planned, inventory, display) = set_up(&mut scenario, opts)?;
    let say = |msg: &str| {
        if display != Display::Quiet {
            let _ = writeln!(std::io::stderr(), "{msg}");
        }
    };

    let host = inventory.host.clone();
    let (path, file) = match opts
        .resume
        .then(|| results::latest(&opts.out_dir, &scenario.name, &host))
        .flatten()
    {
        Some(path) => {
            let mut f = ResultsFile::load(&path)?;
            if f.scenario.name != scenario.name {
                return Err(Error::input(
                    &path,
                    None,
                    "scenario.name",
                    format!(
                        "this file is from scenario {:?}, not {:?}",
                        f.scenario.name, scenario.name
                    ),
                ));
            }
            // Measured runs (ok or invalid) are kept; failed runs are retried and skipped ones
            // re-planned, since this build may be able to run them.
            f.runs
                .retain(|r| matches!(r.status, Status::Ok | Status::Invalid));
            say(&format!(
                "resuming {} ({} runs kept)",
                path.display(),
                f.runs.len()
            ));
            (path, f)
        }
        None => {
            say("measuring the fp32 GEMM ceiling of this machine ...");
            let env = environment(inventory, &measured_threads(&planned));
            let path = results::claim_path(&opts.out_dir, &scenario.name, &host)?;
            let f = new_file(&scenario, opts, env);
            (path, f)
        }
    };
    let env = file.environment.clone();
    let done: BTreeSet<String> = file.runs.iter().map(|r| r.spec.id.clone()).collect();
    let mut writer = sweep::Writer::new(vec![(path, file)], &planned)?;
    let (finished, to_run): (Vec<PlannedRun>, Vec<PlannedRun>) =
        planned.into_iter().partition(|p| done.contains(&p.spec.id));
    let mut progress = Progress::new(
        display,
        finished.len() + to_run.len(),
        to_run
            .iter()
            .filter(|p| p.skip.is_none())
            .map(|p| p.spec.worst_case_s())
            .sum(),
    );
    progress.skip_finished(finished.len());
    let mut observers: [&mut dyn sweep::Observer; 2] = [&mut progress, &mut writer];
    let interrupted = sweep::each_run(to_run, &[self_exe()?], &env, opts, &mut observers)?;
    progress.done();
    let (path, results) = writer.files.pop().expect("one file");
    Ok(SweepOutcome {
        path,
        results,
        interrupted,
    })
}

fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| Error::io("current executable", e))
}

/// The git commit a recbench binary reports in `--version` (`recbench X (commit)`).
fn binary_commit(exe: &Path) -> String {
    Command::new(exe)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string();
            Some(
                s.split_once('(')?
                    .1
                    .trim()
                    .trim_end_matches(')')
                    .to_string(),
            )
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Merges the rounds of one run (all ok) into one result: samples concatenated in order,
/// throughput over the summed measurement windows, peak memory the largest, energy summed. A
/// run of one round is that round.
pub fn merge_rounds(mut rounds: Vec<RunResult>) -> RunResult {
    if rounds.len() == 1 {
        return rounds.pop().expect("one round");
    }
    if let Some(bad) = rounds.iter().find(|r| r.status != Status::Ok) {
        let mut r = bad.clone();
        r.notes.push(format!(
            "one of {} interleaved rounds; the others are not kept",
            rounds.len()
        ));
        return r;
    }
    let n = rounds.len();
    let mut out = rounds[0].clone();
    let samples: Vec<f64> = rounds
        .iter()
        .flat_map(|r| r.samples_ms.iter().copied())
        .collect();
    let measured: f64 = rounds
        .iter()
        .filter_map(|r| r.throughput.as_ref().map(|t| t.measured_s))
        .sum();
    // Totals over the rounds of a rate × the window it was measured over.
    let total = |rate: fn(&crate::results::Throughput) -> f64| -> f64 {
        rounds
            .iter()
            .filter_map(|r| r.throughput.as_ref().map(|t| rate(t) * t.measured_s))
            .sum()
    };
    let req = total(|t| t.requests_per_s);
    let seq = total(|t| t.sequences_per_s);
    let tok = total(|t| t.tokens_per_s);
    out.throughput = Some(crate::results::Throughput {
        sequences_per_s: seq / measured,
        tokens_per_s: tok / measured,
        requests_per_s: req / measured,
        measured_s: measured,
    });
    out.latency = crate::stats::Latency::from_samples(&samples);
    out.samples_ms = crate::stats::thin(&samples, worker::MAX_SAMPLES);
    // Each process kept apart: the variation between processes is most of the variation
    // between two measurements of the same code (compare resamples these).
    out.rounds = rounds
        .iter()
        .map(|r| crate::results::Round {
            samples_ms: crate::stats::thin(&r.samples_ms, worker::MAX_SAMPLES / n),
            p50_ms: r.latency.as_ref().map(|l| l.p50_ms),
            p99_ms: r.latency.as_ref().map(|l| l.p99_ms),
            requests_per_s: r.throughput.as_ref().map(|t| t.requests_per_s),
            peak_rss_bytes: r.memory.peak_rss_bytes,
        })
        .collect();
    if let Some(c) = out.compute.as_mut() {
        c.achieved_gflops = c.flops_per_sequence * seq / measured / 1e9;
        c.efficiency =
            crate::results::Compute::efficiency(c.achieved_gflops, c.gemm_ceiling_gflops).0;
    }
    out.memory.peak_rss_bytes = rounds.iter().filter_map(|r| r.memory.peak_rss_bytes).max();
    let energy: Option<f64> = rounds.iter().map(|r| r.power.energy_joules).sum();
    out.power.energy_joules = energy;
    out.power.watts = energy.map(|e| e / measured);
    out.wall_s = rounds.iter().map(|r| r.wall_s).sum();
    out.notes
        .push(format!("merged from {n} interleaved rounds"));
    out
}

/// Runs the sweep twice over, alternating a baseline binary and this one for every run
/// (ABAB…), so drift of the machine hits both equally. Writes `…-baseline.json` and
/// `…-candidate.json` next to each other and returns their paths.
pub fn run_interleaved(
    mut scenario: Scenario,
    opts: &SweepOptions,
    baseline: &Path,
) -> Result<(PathBuf, PathBuf, bool)> {
    if !baseline.is_file() {
        return Err(Error::input(
            baseline,
            None,
            "--interleave",
            "not a file: give the baseline recbench binary",
        ));
    }
    let (planned, inventory, display) = set_up(&mut scenario, opts)?;
    if display != Display::Quiet {
        let _ = writeln!(
            std::io::stderr(),
            "measuring the fp32 GEMM ceiling of this machine ..."
        );
    }
    let host = inventory.host.clone();
    let env = environment(inventory, &measured_threads(&planned));
    let exes = [baseline.to_path_buf(), self_exe()?];
    let mut files = Vec::new();
    for (side, exe) in sweep::SIDES.into_iter().zip(&exes) {
        let mut e = env.clone();
        e.git_commit = binary_commit(exe);
        let path = results::claim_path(&opts.out_dir, &scenario.name, &format!("{host}-{side}"))?;
        files.push((path, new_file(&scenario, opts, e)));
    }
    let mut writer = sweep::Writer::new(files, &planned)?;
    let mut progress = Progress::new(
        display,
        planned.len(),
        planned
            .iter()
            .filter(|p| p.skip.is_none())
            .map(|p| p.spec.worst_case_s())
            .sum(),
    );
    let mut observers: [&mut dyn sweep::Observer; 2] = [&mut progress, &mut writer];
    let interrupted = sweep::each_run(planned, &exes, &env, opts, &mut observers)?;
    progress.done();
    let paths: Vec<PathBuf> = writer.files.into_iter().map(|(p, _)| p).collect();
    Ok((paths[0].clone(), paths[1].clone(), interrupted))
}

/// Makes sure the synthetic or pruned weights and the fp32 reference of a model are cached, so
/// workers only read them.
fn prepare_reference(
    model: crate::model::Preset,
    seed: u64,
    recipe: &crate::model::Recipe,
) -> Result<()> {
    let files = ModelFiles::resolve_pruned(model, seed, recipe)?;
    let tok = Tokenizer::load(&files.tokenizer)?;
    parity::reference(&files, &tok).map(|_| ())
}

/// A short status line for progress output.
pub fn one_line(r: &RunResult) -> String {
    match (r.status, &r.latency, &r.throughput) {
        (Status::Ok, Some(l), Some(t)) => format!(
            "ok: p50 {:.2} ms, p99 {:.2} ms, {:.1} req/s, {:.1} seq/s",
            l.p50_ms, l.p99_ms, t.requests_per_s, t.sequences_per_s
        ),
        (s, _, _) => format!("{}: {}", s.name(), r.reason.as_deref().unwrap_or("")),
    }
}

/// Keeps the last lines a worker wrote to stderr, for failure reports.
fn collect_tail(
    stderr: std::process::ChildStderr,
) -> (Arc<Mutex<VecDeque<String>>>, std::thread::JoinHandle<()>) {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let t2 = tail.clone();
    let h = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(|l| l.ok())
        {
            let mut t = t2.lock().unwrap();
            t.push_back(line);
            if t.len() > 20 {
                t.pop_front();
            }
        }
    });
    (tail, h)
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV (segmentation fault)",
        libc::SIGABRT => "SIGABRT (abort)",
        libc::SIGKILL => "SIGKILL (killed; out of memory?)",
        libc::SIGBUS => "SIGBUS (bus error)",
        libc::SIGFPE => "SIGFPE (arithmetic exception)",
        libc::SIGILL => "SIGILL (illegal instruction: a kernel for a CPU feature this host lacks?)",
        libc::SIGINT => "SIGINT (interrupted)",
        libc::SIGTERM => "SIGTERM (terminated)",
        _ => "signal",
    }
}

/// Makes the process `cmd` starts die with this one, so a killed sweep leaves no orphan.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which
    // is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Runs one spec in a worker process. `Ok(None)` means the sweep was interrupted.
fn spawn_worker(exe: &Path, p: &PlannedRun, ceiling: Option<f64>) -> Result<Option<RunResult>> {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::Builder::new()
        .prefix("recbench-run-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let spec_path = dir.path().join("spec.json");
    let out_path = dir.path().join("result.json");
    std::fs::write(
        &spec_path,
        serde_json::to_vec(&p.spec).expect("spec serialises"),
    )
    .map_err(|e| Error::io(&spec_path, e))?;
    let threads = p.spec.threads.to_string();
    let mut cmd = Command::new(exe);
    cmd.arg("__worker")
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&out_path);
    if let Some(c) = ceiling {
        cmd.arg("--gemm-ceiling").arg(c.to_string());
    }
    die_with_parent(&mut cmd);
    let mut env = vec![
        ("RAYON_NUM_THREADS", threads.clone()),
        ("OMP_NUM_THREADS", threads.clone()),
        ("MKL_NUM_THREADS", threads),
    ];
    // How long libtorch's OpenMP threads spin between regions, by measurement (see openmp.rs).
    let openmp = openmp::decide(exe, &p.spec, &spec_path);
    if let Some(spin) = openmp.as_ref().and_then(|d| d.spin) {
        env.push(("GOMP_SPINCOUNT", spin.to_string()));
    }
    // Whether malloc asks for huge pages, by measurement with the rest of that environment
    // (see hugepages.rs).
    let hugepages = hugepages::decide(exe, &p.spec, &spec_path, &env)?;
    for (k, v) in hugepages.iter().flat_map(|d| d.env()) {
        env.push((k, v.into()));
    }
    let mut child = cmd
        .envs(env)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(exe, e))?;
    let (tail, reader) = collect_tail(child.stderr.take().expect("piped"));
    let start = Instant::now();
    let timeout = Duration::from_secs_f64(p.spec.timeout_s);
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| Error::io(exe, e))? {
            break Some(st);
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let tail: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
    let tail_text = if tail.is_empty() {
        String::new()
    } else {
        format!("; last stderr lines: {}", tail.join(" | "))
    };
    let failed = |reason: String| RunResult::not_run(p.spec.clone(), Status::Failed, reason);
    let Some(status) = status else {
        return Ok(Some(failed(format!(
            "worker timed out after {:.0} s (measure.timeout_s) and was killed{tail_text}",
            p.spec.timeout_s
        ))));
    };
    if let Some(sig) = status.signal() {
        if sig == libc::SIGINT || INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let oom = tail.iter().any(|l| l.contains("memory allocation of"));
        return Ok(Some(failed(format!(
            "worker killed by signal {sig}, {}{}{tail_text}",
            signal_name(sig),
            if oom { ": out of memory" } else { "" }
        ))));
    }
    match std::fs::read(&out_path) {
        Ok(bytes) if status.success() => match serde_json::from_slice::<RunResult>(&bytes) {
            Ok(mut r) => {
                r.notes.extend(openmp.map(|d| d.note));
                r.notes.extend(hugepages.map(|d| d.note));
                Ok(Some(r))
            }
            Err(e) => Ok(Some(failed(format!(
                "worker wrote an unreadable result: {e}"
            )))),
        },
        _ => Ok(Some(failed(format!(
            "worker exited with code {}{tail_text}",
            status.code().unwrap_or(-1)
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cpu_fp32_runs_are_measured_against_the_fp32_ceiling() {
        use crate::spec::{Device, Precision};
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let spec = ResultsFile::load(&p).unwrap().runs[0].spec.clone();
        let ceilings = BTreeMap::from([(spec.threads, 100.0)]);
        let ceiling = |device, precision| {
            let mut spec = spec.clone();
            (spec.device, spec.precision) = (device, precision);
            ceiling_for(&ceilings, &[], &PlannedRun { spec, skip: None })
        };
        assert_eq!(ceiling(Device::Cpu, Precision::Fp32), Some(100.0));
        for precision in [Precision::Int8, Precision::Bf16, Precision::Fp16] {
            assert_eq!(ceiling(Device::Cpu, precision), None, "{precision:?}");
        }
        assert_eq!(ceiling(Device::Cuda(0), Precision::Fp32), None);
    }

    #[test]
    fn interleaved_rounds_merge_into_one_run_over_the_summed_windows() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let f = ResultsFile::load(&p).unwrap();
        let a = f
            .runs
            .iter()
            .find(|r| r.status == Status::Ok)
            .unwrap()
            .clone();
        let mut b = a.clone();
        let ta = a.throughput.clone().unwrap();
        // Round 2: half the rate over twice the window, every iteration twice as long.
        b.throughput = Some(crate::results::Throughput {
            requests_per_s: ta.requests_per_s / 2.0,
            sequences_per_s: ta.sequences_per_s / 2.0,
            tokens_per_s: ta.tokens_per_s / 2.0,
            measured_s: ta.measured_s * 2.0,
        });
        b.samples_ms = a.samples_ms.iter().map(|x| x * 2.0).collect();
        b.memory.peak_rss_bytes = a.memory.peak_rss_bytes.map(|m| m + 1);
        let m = merge_rounds(vec![a.clone(), b.clone()]);
        let t = m.throughput.as_ref().unwrap();
        // Requests: r·w + (r/2)·2w = 2·r·w over 3·w.
        assert!((t.requests_per_s - ta.requests_per_s * 2.0 / 3.0).abs() < 1e-9 * t.requests_per_s);
        assert!((t.measured_s - 3.0 * ta.measured_s).abs() < 1e-9);
        assert_eq!(
            m.samples_ms.len(),
            (a.samples_ms.len() * 2).min(worker::MAX_SAMPLES)
        );
        assert_eq!(m.memory.peak_rss_bytes, b.memory.peak_rss_bytes);
        assert!(m
            .notes
            .iter()
            .any(|n| n == "merged from 2 interleaved rounds"));
        // A failed round makes the run that round's outcome, said so.
        let mut bad = a.clone();
        bad.status = Status::Failed;
        let m = merge_rounds(vec![a, bad]);
        assert_eq!(m.status, Status::Failed);
        assert!(m
            .notes
            .last()
            .unwrap()
            .contains("one of 2 interleaved rounds"));
    }
}
