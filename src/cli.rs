//! Command-line definitions (clap) only; no logic.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Cost per 1,000 recommendations of a BERT recommender across CPUs, GPUs, backends, model sizes
/// and precisions.
#[derive(Debug, Parser)]
#[command(name = "recbench", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RECBENCH_GIT_COMMIT"), ")"), about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario's sweep, writing results after every run.
    Run {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Results folder; the file goes to <DIR>/<scenario>/<utc>-<host>.json.
        #[arg(long, default_value = "results")]
        out: PathBuf,
        /// Only these backends (repeatable).
        #[arg(long = "backend")]
        backends: Vec<String>,
        /// Only these devices (repeatable): cpu, cuda, cuda:N.
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Shrink durations for a smoke test (CI).
        #[arg(long)]
        quick: bool,
        /// Continue the newest results file of this scenario and host, skipping finished runs.
        #[arg(long)]
        resume: bool,
        /// No progress on stderr.
        #[arg(long)]
        quiet: bool,
        /// Print the results file as JSON instead of the summary table.
        #[arg(long)]
        json: bool,
        /// Baseline recbench binary: run it and this build alternately for every run and write
        /// a baseline and a candidate results file, for `recbench compare`.
        #[arg(long, value_name = "BASELINE_BINARY")]
        interleave: Option<PathBuf>,
        /// Alternations per run with --interleave: a number (1 to 100), or `auto` to add rounds
        /// to each run until its slowdown is settled at --max-regression (at most 20), within
        /// --budget-s for the whole sweep.
        #[arg(long, default_value = "2", value_parser = parse_rounds)]
        rounds: Rounds,
        /// With --rounds auto: the wall-clock budget of the whole interleaved sweep, in seconds.
        #[arg(long = "budget-s", default_value_t = 600.0)]
        budget_s: f64,
        /// With --rounds auto: the gate (percent) each run's rounds must settle, as `compare
        /// --max-regression` will judge it.
        #[arg(long = "max-regression", default_value_t = 5.0)]
        max_regression: f64,
    },
    /// Turn results files (one or many machines) into index.html, PNG charts, runs.csv and summary.md.
    Report {
        /// Results files; several machines merge into one report.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "reports/latest")]
        out: PathBuf,
        /// A user price catalog merged over the shipped one (same id replaces).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Price host HOST as catalog entry ID (repeatable), e.g. --map myhost=aws-m7i-large.
        #[arg(long = "map")]
        maps: Vec<String>,
        /// Target request rate the decision table sizes instances and monthly cost for.
        #[arg(long)]
        qps: Option<f64>,
        /// p99 budget in milliseconds the runs are judged at (default: each run's own SLA).
        #[arg(long = "p99-ms")]
        p99_ms: Option<f64>,
        /// Price basis of the decision table: on-demand, reserved-1y, spot or owned.
        #[arg(long, default_value = "on-demand")]
        basis: String,
        /// Spare capacity on top of the target rate (0.3 = 30%).
        #[arg(long, default_value_t = 0.3)]
        headroom: f64,
        /// Quality bar of the decision table: the lowest top-10 overlap with the full fp32
        /// model (0 to 1) a configuration may have, e.g. 0.8.
        #[arg(long = "min-quality")]
        min_quality: Option<f64>,
        /// With --diurnal or --trace: a section "Over a day" (the plan's fleets over the
        /// demand); the decision table is then sized for its peak unless --qps is given.
        #[command(flatten)]
        day: DayArgs,
    },
    /// CI gate: compare a candidate results file with a baseline; exit 1 on a regression.
    Compare {
        /// The baseline: a results file, or a folder of stored baseline sweeps of one scenario
        /// on one machine (their spread between sweeps is the noise the candidate is judged by).
        baseline: PathBuf,
        candidate: PathBuf,
        /// Slowdown (percent) that counts as a regression when exceeded with 95% confidence.
        #[arg(long = "max-regression", default_value_t = 5.0)]
        max_regression: f64,
        /// Also write the table as Markdown (e.g. $GITHUB_STEP_SUMMARY).
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Compare files from machines that differ in what decides speed (CPU model, ISA
        /// flags, cores, GPUs, runtime versions); every verdict is then labelled cross-host.
        #[arg(long = "allow-different-hosts")]
        allow_different_hosts: bool,
        /// List every metric of every run, not only those changed, inconclusive or failed.
        #[arg(long)]
        all: bool,
        /// Fail the gate (exit 1) also when a metric is inconclusive: its interval straddles the
        /// threshold.
        #[arg(long = "fail-on-inconclusive")]
        fail_on_inconclusive: bool,
        /// Print the verdict, counts and every run as JSON (for bots) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Capacity plan: instances and monthly cost per configuration that meets a p99 budget at a target rate.
    Plan {
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Target request rate (with --diurnal or --trace: the trace's peak).
        #[arg(long, required_unless_present_any = ["diurnal", "trace"], conflicts_with_all = ["diurnal", "trace"])]
        qps: Option<f64>,
        #[command(flatten)]
        day: DayArgs,
        /// p99 latency budget in milliseconds.
        #[arg(long = "p99-ms")]
        p99_ms: f64,
        /// Spare capacity on top of the target rate (0.3 = 30%).
        #[arg(long, default_value_t = 0.3)]
        headroom: f64,
        /// Price basis: on-demand, reserved-1y, spot or owned.
        #[arg(long, default_value = "on-demand")]
        basis: String,
        /// Lowest top-10 overlap with the full fp32 model (0 to 1) a configuration may have.
        #[arg(long = "min-quality")]
        min_quality: Option<f64>,
        #[arg(long)]
        catalog: Option<PathBuf>,
        #[arg(long = "map")]
        maps: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check a scenario file and show the runs it expands to.
    Validate {
        scenario: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check every backend and precision of a scenario against the candle fp32 reference.
    Parity {
        /// Scenarios whose models, backends, devices and precisions are checked (default: the
        /// quick set, scenarios/parity.toml and scenarios/parity-minilm.toml; with --full,
        /// scenarios/parity-full.toml).
        scenarios: Vec<PathBuf>,
        /// Every precision of tiny, MiniLM and BERT-base (tens of minutes on 2 cores).
        #[arg(long, conflicts_with = "scenarios")]
        full: bool,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
        /// Only these backends (repeatable).
        #[arg(long = "backend")]
        backends: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Recommend demo-catalog items for a user description.
    Recommend {
        /// What the user likes, in words.
        #[arg(long)]
        user: String,
        /// How many items.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
        top: u16,
        #[arg(long, default_value = "candle")]
        backend: String,
        #[arg(long, default_value = "fp32")]
        precision: String,
        #[arg(long, default_value = "minilm-l6")]
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Hardware inventory: CPU, cores, memory, GPUs, power sensors.
    Hardware {
        #[arg(long)]
        json: bool,
    },
    /// Backends compiled into this build, their runtime versions and devices.
    Backends {
        #[arg(long)]
        json: bool,
    },
    /// Internal: run one benchmark point (spawned by `run`).
    #[command(name = "__worker", hide = true)]
    Worker {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        gemm_ceiling: Option<f64>,
    },
    /// Internal: time a run's forward under one malloc setting (spawned by `run`, see
    /// harness::hugepages).
    #[command(name = "__hugepage-probe", hide = true)]
    HugepageProbe {
        #[arg(long)]
        spec: PathBuf,
    },
    /// Internal: time libtorch under one OpenMP spin (spawned by `run`, see harness::openmp).
    #[command(name = "__openmp-probe", hide = true)]
    OpenmpProbe {
        #[arg(long)]
        model: String,
        #[arg(long)]
        sequences: usize,
        #[arg(long)]
        seq: usize,
        #[arg(long)]
        threads: usize,
        #[arg(long)]
        items: usize,
        /// Time this run's own encoder (int8, bf16) instead of the fp32 stand-in.
        #[arg(long)]
        spec: Option<std::path::PathBuf>,
    },
}

/// `--rounds`: a fixed number of alternations, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounds {
    Fixed(usize),
    Auto,
}

fn parse_rounds(s: &str) -> Result<Rounds, String> {
    if s == "auto" {
        return Ok(Rounds::Auto);
    }
    match s.parse::<usize>() {
        Ok(n) if (1..=100).contains(&n) => Ok(Rounds::Fixed(n)),
        _ => Err(format!(
            "{s:?} is neither a number from 1 to 100 nor `auto`"
        )),
    }
}

/// The demand a plan follows over time, and how its fleets follow it (`plan` and `report`).
#[derive(Debug, Args)]
pub struct DayArgs {
    /// Plan over a seeded synthetic day: PEAK:TROUGH[:PERIOD] requests/s (period in s, or
    /// with an s, m or h suffix; 24h by default), with Poisson noise and bursts.
    #[arg(long, conflicts_with = "trace")]
    pub diurnal: Option<String>,
    /// Plan over a trace: a CSV of timestamp,qps (seconds, requests per second).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Seconds from asking for a machine to its serving process starting (provisioning, boot,
    /// image pull; assumed). Each option's measured process start comes on top.
    #[arg(long = "cold-start-s", default_value_t = 60.0)]
    pub cold_start_s: f64,
    /// Seconds the demand must call for more machines before the autoscaler starts them.
    #[arg(long = "scale-up-s", default_value_t = 30.0)]
    pub scale_up_s: f64,
    /// Seconds the demand must call for fewer machines before the autoscaler stops them.
    #[arg(long = "scale-down-s", default_value_t = 300.0)]
    pub scale_down_s: f64,
}
