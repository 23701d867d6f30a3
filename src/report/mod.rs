//! Reports for capacity planners and procurement: one or many results files (several machines
//! merge into one report) become `index.html` (self-contained: inline CSS, charts embedded as
//! PNG data), the PNG charts, `runs.csv` (one row per run, every figure) and `summary.md`.
//!
//! Every number in a report is read from a results file or computed from one with the cost
//! model; the report names the files (with their SHA-256), the catalog entries and price
//! sources it used. Invalid, failed and skipped runs are listed with their reasons and never
//! drawn as valid points.

mod charts;
pub mod columns;
mod csv;
mod day;
pub mod decision;
mod html;
mod markdown;
pub mod notes;
pub mod quality;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cost::{self, Catalog, Mapping, RunCost};
use crate::error::{Error, Result};
use crate::results::{ResultsFile, RunResult, Status};
use crate::spec::Device;

/// One results file read into a report.
pub struct Source {
    pub path: PathBuf,
    pub sha256: String,
    pub file: ResultsFile,
}

/// One run with its host and price.
pub struct Row<'a> {
    pub source: usize,
    /// The machine it ran on, as the report names it ([`machine_labels`]).
    pub host: String,
    pub run: &'a RunResult,
    pub mapping: Mapping,
    pub cost: Option<RunCost>,
}

impl Row<'_> {
    /// Short human label of the configuration, with the hardware it is priced as (or its
    /// host).
    pub fn label(&self) -> String {
        let hw = self
            .cost
            .as_ref()
            .map_or(self.host.clone(), |c| c.hardware_id.clone());
        format!("{hw} {}", columns::spec_label(&self.run.spec))
    }

    /// Requests per second the run is priced at (the operating point under server load), else
    /// its measured throughput.
    pub fn requests_per_s(&self) -> Option<f64> {
        self.cost.as_ref().map(|c| c.requests_per_s).or(self
            .run
            .throughput
            .as_ref()
            .map(|t| t.requests_per_s))
    }

    /// The cost figure on the preferred basis (on-demand, else the first available).
    pub fn headline(&self) -> Option<&cost::CostFigure> {
        let c = self.cost.as_ref()?;
        c.figures
            .iter()
            .find(|f| f.basis == "on-demand")
            .or(c.figures.first())
    }

    /// p99 latency of the run: per request in the confirmation probe at the operating point
    /// (server), per forward pass of `batch` requests (offline), per request (single-stream).
    pub fn p99_ms(&self) -> Option<f64> {
        self.run.latency.as_ref().map(|l| l.p99_ms)
    }

    /// SLA of the run's scenario.
    pub fn sla_ms(&self) -> f64 {
        self.run.spec.sla_p99_ms
    }

    /// Meets the latency budget and the quality bar.
    pub fn eligible(&self) -> bool {
        self.run.status == Status::Ok
            && self.run.parity.as_ref().is_some_and(|p| p.passed)
            && self.p99_ms().is_some_and(|p| p <= self.sla_ms())
    }
}

/// Options of `recbench report` and `recbench plan`.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// A user catalog merged over the shipped one.
    pub catalog: Option<PathBuf>,
    /// Explicit host → catalog id mappings.
    pub maps: Vec<(String, String)>,
    /// The reader's requirement the decision table is judged at.
    pub requirement: decision::Requirement,
    /// A demand over time to plan the fleets over (the report's "Over a day" section).
    pub day: Option<(cost::day::Trace, cost::day::DaySettings)>,
}

/// Parses `HOST=ID`.
pub fn parse_map(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((h, id)) if !h.is_empty() && !id.is_empty() => Ok((h.to_string(), id.to_string())),
        _ => Err(Error::input(
            "<command line>",
            None,
            "--map",
            format!("{s:?}: expected HOST=CATALOG_ID"),
        )),
    }
}

/// Loads the results files.
pub fn load_sources(inputs: &[PathBuf]) -> Result<Vec<Source>> {
    if inputs.is_empty() {
        return Err(Error::input(
            "<command line>",
            None,
            "RESULTS",
            "give at least one results file",
        ));
    }
    inputs
        .iter()
        .map(|p| {
            let file = ResultsFile::load(p)?;
            Ok(Source {
                sha256: crate::util::hash::sha256_file(p)?,
                path: p.clone(),
                file,
            })
        })
        .collect()
}

/// Prices every run of every source.
pub fn price<'a>(
    sources: &'a [Source],
    catalog: &Catalog,
    maps: &[(String, String)],
) -> Result<Vec<Row<'a>>> {
    for (host, id) in maps {
        if catalog.get(id).is_none() {
            return Err(Error::input(
                "<command line>",
                None,
                "--map",
                format!("{host}={id}: {id:?} is not in the catalog"),
            ));
        }
    }
    let mut rows = Vec::new();
    let labels = machine_labels(sources);
    for (i, s) in sources.iter().enumerate() {
        let host = s.file.environment.inventory.host.clone();
        let explicit = maps
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, id)| (id.clone(), "--map"))
            .or_else(|| {
                // `[cost] hardware = "id"` in the scenario, as validated when it ran.
                let id = &s.file.scenario.cost.as_ref()?.hardware;
                (id != "auto").then(|| (id.clone(), "the scenario's [cost] hardware"))
            });
        for r in &s.file.runs {
            let on_gpu = matches!(r.spec.device, Device::Cuda(_));
            let mut mapping = cost::map_host(
                catalog,
                &s.file,
                on_gpu,
                explicit.as_ref().map(|e| e.0.as_str()),
            );
            if let (Some((_, by)), "explicit") = (&explicit, mapping.how.as_str()) {
                mapping.detail = format!(
                    "{} (by {by}; the equivalence is the user's assertion)",
                    mapping.detail
                );
            }
            let cost = mapping
                .hardware_id
                .as_deref()
                .and_then(|id| catalog.get(id))
                .and_then(|hw| cost::cost_run(r, hw, s.file.environment.inventory.logical_cores));
            rows.push(Row {
                source: i,
                host: labels[i].clone(),
                run: r,
                mapping,
                cost,
            });
        }
    }
    Ok(rows)
}

/// Makes `name` safe as a file name inside the output folder.
pub fn safe_file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        "file".into()
    } else {
        s
    }
}

/// What tells one machine from another in results files: host name, CPU model, signature,
/// ISA flags (sorted) and GPU models.
type MachineKey<'s> = (&'s str, &'s str, &'s str, Vec<&'s str>, Vec<&'s str>);

fn machine_key(s: &Source) -> MachineKey<'_> {
    let inv = &s.file.environment.inventory;
    let mut flags: Vec<&str> = inv.cpu_flags.iter().map(String::as_str).collect();
    flags.sort_unstable();
    (
        inv.host.as_str(),
        inv.cpu_model.as_deref().unwrap_or("unknown CPU"),
        inv.cpu_signature.as_deref().unwrap_or(""),
        flags,
        inv.gpus.iter().map(|g| g.name.as_str()).collect(),
    )
}

/// The name each source's machine goes by in the report: its host name where that names one
/// machine, else (VMs are often all called `vm`) the host name with what tells its machines
/// apart: the CPU model, the CPU signature where models agree, the ISA flags not all of them
/// have where signatures agree too, and the GPUs.
pub fn machine_labels(sources: &[Source]) -> Vec<String> {
    let keys: Vec<MachineKey> = sources.iter().map(machine_key).collect();
    keys.iter()
        .map(|k| {
            let (host, model, sig, flags, gpus) = k;
            let others: Vec<&MachineKey> =
                keys.iter().filter(|o| o.0 == *host && *o != k).collect();
            if others.is_empty() {
                return host.to_string();
            }
            let mut parts = vec![model.to_string()];
            if others.iter().any(|o| o.1 == *model) && !sig.is_empty() {
                parts.push(sig.to_string());
            }
            let same_cpu = others.iter().filter(|o| o.1 == *model && o.2 == *sig);
            let own: Vec<&str> = flags
                .iter()
                .copied()
                .filter(|f| same_cpu.clone().any(|o| !o.3.contains(f)))
                .collect();
            if !own.is_empty() {
                parts.push(format!("with {}", own.join(" ")));
            }
            let gpus = if gpus.is_empty() {
                String::new()
            } else {
                format!(" + {}", gpus.join(", "))
            };
            format!("{host} ({}{gpus})", parts.join(", "))
        })
        .collect()
}

/// The machines of a report, each with its label, its builds of recbench, scenarios and files,
/// in the order they first appear.
pub struct Machine {
    pub label: String,
    pub builds: Vec<String>,
    pub scenarios: Vec<String>,
    pub started: Vec<String>,
    pub files: Vec<String>,
}

impl Machine {
    /// What the report says of it after its label: build, sweeps and their start, file count.
    pub fn summary(&self) -> String {
        format!(
            "recbench {}; {} started {}; {} file{}",
            self.builds.join(", "),
            self.scenarios.join(", "),
            self.started.join(", "),
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" }
        )
    }
}

/// The sources grouped by machine ([`machine_labels`]).
pub fn machines(sources: &[Source]) -> Vec<Machine> {
    let labels = machine_labels(sources);
    let mut out: Vec<Machine> = Vec::new();
    for (s, label) in sources.iter().zip(labels) {
        let i = match out.iter().position(|m| m.label == label) {
            Some(i) => i,
            None => {
                out.push(Machine {
                    label,
                    builds: vec![],
                    scenarios: vec![],
                    started: vec![],
                    files: vec![],
                });
                out.len() - 1
            }
        };
        let m = &mut out[i];
        let e = &s.file.environment;
        let build = format!("{} ({})", e.recbench_version, e.git_commit);
        for (list, v) in [
            (&mut m.builds, build),
            (&mut m.scenarios, s.file.scenario.name.clone()),
            (&mut m.started, s.file.started_utc.clone()),
        ] {
            if !list.contains(&v) {
                list.push(v);
            }
        }
        m.files.push(s.path.display().to_string());
    }
    out
}

/// How the results files of a report differ in what makes them comparable: the text of the
/// scenario they ran (SHA-256; between files of one scenario name), and, for one machine, the
/// recbench version and commit that ran it. Machines that differ are the report's subject:
/// they are named apart ([`machine_labels`]) and each one's build is listed with it
/// ([`machines`]), not reported here. Empty when they agree (or there is one file).
pub fn inconsistencies(sources: &[Source]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    let Some(first) = sources.first() else {
        return out;
    };
    let hash = |s: &Source| -> String {
        let h = Sha256::digest(s.file.scenario.text.as_bytes());
        crate::util::hash::hex(&h[..6])
    };
    for s in &sources[1..] {
        let name = s.path.display();
        // Files of one scenario name are one sweep on several hosts: they must have run the
        // same text. Files of different scenarios (a quick sweep and a server sweep) may be
        // merged on purpose.
        let same_name = sources
            .iter()
            .find(|x| x.file.scenario.name == s.file.scenario.name)
            .unwrap_or(first);
        if hash(s) != hash(same_name) {
            out.push(format!(
                "{name} ran scenario {:?} with text {} but {} ran {:?} with text {}: the runs may \
                 differ in more than the machine",
                s.file.scenario.name,
                hash(s),
                same_name.path.display(),
                same_name.file.scenario.name,
                hash(same_name)
            ));
        }
    }
    // One machine measured by several builds: its runs are not of one sweep. One line per
    // machine, grouping the files, however many there are.
    let labels = machine_labels(sources);
    let mut per_machine: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (s, label) in sources.iter().zip(&labels) {
        let e = &s.file.environment;
        per_machine
            .entry(label.as_str())
            .or_default()
            .entry(format!("{} ({})", e.recbench_version, e.git_commit))
            .or_default()
            .push(s.path.display().to_string());
    }
    for (label, builds) in per_machine.iter().filter(|(_, b)| b.len() > 1) {
        out.push(format!(
            "{label} was measured by {} builds of recbench: {}",
            builds.len(),
            listed(builds)
        ));
    }
    // One run id measured in several files of one machine: its rates must agree within their
    // intervals (bootstrap offline, search bracket under server load), else one of the
    // measurements is not what the other is.
    // (machine, run id) → (file index, rate, its interval) per file that measured it.
    type Measured = Vec<(usize, f64, (f64, f64))>;
    let mut seen: BTreeMap<(&str, &str), Measured> = BTreeMap::new();
    for (i, (s, label)) in sources.iter().zip(&labels).enumerate() {
        for r in s.file.runs.iter().filter(|r| r.status == Status::Ok) {
            if let Some((_, rate, ci)) = cost::rate_with_ci(r) {
                seen.entry((label.as_str(), r.spec.id.as_str()))
                    .or_default()
                    .push((i, rate, ci));
            }
        }
    }
    for ((label, id), m) in &seen {
        let apart = m.iter().enumerate().find_map(|(k, a)| {
            m[k + 1..]
                .iter()
                .find(|b| a.2 .1 < b.2 .0 || b.2 .1 < a.2 .0)
                .map(|b| (a, b))
        });
        if let Some((a, b)) = apart {
            out.push(format!(
                "run {id} on {label} disagrees across files beyond its intervals: {:.1} \
                 requests/s ({:.1}–{:.1}) in {}, {:.1} ({:.1}–{:.1}) in {}",
                a.1,
                a.2 .0,
                a.2 .1,
                sources[a.0].path.display(),
                b.1,
                b.2 .0,
                b.2 .1,
                sources[b.0].path.display()
            ));
        }
    }
    out
}

/// `key: file, file; key: file` for the lines of [`inconsistencies`].
fn listed(groups: &BTreeMap<String, Vec<String>>) -> String {
    groups
        .iter()
        .map(|(k, files)| format!("{k}: {}", files.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Writes the report into `opts.out`: each of [`OUTPUTS`]' files, in order, each file
/// atomically. Returns the files written.
pub fn write(opts: &ReportOptions) -> Result<Vec<PathBuf>> {
    let catalog = Catalog::shipped_with(opts.catalog.as_deref())?;
    let sources = load_sources(&opts.inputs)?;
    let rows = price(&sources, &catalog, &opts.maps)?;
    let model = Model::new(&rows, &sources, &opts.requirement).with_day(opts.day.as_ref());
    let r = Rendering {
        charts: charts::all(&model)?,
        model: &model,
        catalog: &catalog,
    };
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let mut written = Vec::new();
    for output in OUTPUTS {
        for (name, bytes) in output.render(&r)? {
            let p = opts.out.join(safe_file_name(&name));
            crate::util::files::write_atomic(&p, &bytes)?;
            written.push(p);
        }
    }
    Ok(written)
}

/// One kind of file a report writes, rendered from the one [`Model`] (hyperfine's exporters
/// in spirit). A new output format is one implementation and one entry in [`OUTPUTS`].
pub trait Output {
    /// Its files, as (file name, bytes), in the order they are written.
    fn render(&self, r: &Rendering) -> Result<Vec<(String, Vec<u8>)>>;
}

/// What every output reads: the model, the catalog it was priced with, and the charts (drawn
/// once: the PNG files and index.html's embedded copies are the same bytes).
pub struct Rendering<'m, 'r, 'a> {
    pub model: &'m Model<'r, 'a>,
    pub catalog: &'m Catalog,
    pub charts: Vec<charts::Chart>,
}

/// The report's outputs, in the order they are written: the PNG charts, `runs.csv`,
/// `summary.md`, `index.html` (last, so a reader never opens a page whose charts are missing).
pub const OUTPUTS: [&dyn Output; 4] = [&Pngs, &RunsCsv, &SummaryMd, &IndexHtml];

struct Pngs;
impl Output for Pngs {
    fn render(&self, r: &Rendering) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(r.charts
            .iter()
            .map(|c| (c.file.clone(), c.png.clone()))
            .collect())
    }
}

struct RunsCsv;
impl Output for RunsCsv {
    fn render(&self, r: &Rendering) -> Result<Vec<(String, Vec<u8>)>> {
        let text = csv::runs_csv(r.model.rows, r.model.sources);
        Ok(vec![("runs.csv".into(), text.into_bytes())])
    }
}

struct SummaryMd;
impl Output for SummaryMd {
    fn render(&self, r: &Rendering) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(vec![(
            "summary.md".into(),
            markdown::summary(r.model).into_bytes(),
        )])
    }
}

struct IndexHtml;
impl Output for IndexHtml {
    fn render(&self, r: &Rendering) -> Result<Vec<(String, Vec<u8>)>> {
        let page = html::page(r.model, r.catalog, &r.charts);
        Ok(vec![("index.html".into(), page.into_bytes())])
    }
}

/// What every output of a report shows, worked out once from the priced rows: the decision per
/// (model, mode), the cost–quality groups at the quality bar, and what the input files disagree
/// on. index.html, summary.md, the charts and `plan` all read this one model; runs.csv lists its
/// rows.
pub struct Model<'r, 'a> {
    pub rows: &'r [Row<'a>],
    pub sources: &'a [Source],
    pub req: &'r decision::Requirement,
    pub decisions: Vec<decision::Decision<'r, 'a>>,
    pub quality: Vec<quality::Group<'r, 'a>>,
    /// A retrieval sweep's runs on the cost–recall plane, one group per catalog size (empty
    /// without one).
    pub retrieval: Vec<quality::Group<'r, 'a>>,
    pub inconsistencies: Vec<String>,
    /// The plan's fleets over a demand in time, where the reader gave one.
    pub day: Option<DayPlan<'r>>,
}

/// The decision's options over a demand in time: what `plan --diurnal/--trace` prints.
pub struct DayPlan<'r> {
    pub trace: &'r cost::day::Trace,
    pub settings: cost::day::DaySettings,
    pub groups: Vec<cost::day::DayGroup>,
}

impl<'r, 'a> Model<'r, 'a> {
    pub fn new(
        rows: &'r [Row<'a>],
        sources: &'a [Source],
        req: &'r decision::Requirement,
    ) -> Model<'r, 'a> {
        Model {
            rows,
            sources,
            req,
            decisions: decision::decide(rows, req),
            quality: quality::groups(rows, req.min_quality, quality::Plane::Quality),
            retrieval: quality::groups(rows, None, quality::Plane::Recall),
            inconsistencies: inconsistencies(sources),
            day: None,
        }
    }

    /// The model with the decision at `day`'s peak (what `plan --diurnal/--trace` decides
    /// at, whatever `--qps` the tables are sized for) planned over its demand.
    pub fn with_day(
        mut self,
        day: Option<&'r (cost::day::Trace, cost::day::DaySettings)>,
    ) -> Model<'r, 'a> {
        let day = day.map(|(trace, settings)| {
            let at_peak = decision::Requirement {
                qps: Some(trace.peak()),
                ..self.req.clone()
            };
            // The tables' decision already is at the peak when the reader gave no other rate.
            let groups = if at_peak == *self.req {
                self.plan_groups()
            } else {
                plan_groups(&decision::decide(self.rows, &at_peak), &at_peak)
            };
            DayPlan {
                trace,
                settings: *settings,
                groups: cost::day::plan_day(&groups, trace, settings),
            }
        });
        self.day = day;
        self
    }

    /// The capacity plan at the reader's requirement ([`plan_groups`]).
    pub fn plan_groups(&self) -> Vec<cost::PlanGroup> {
        plan_groups(&self.decisions, self.req)
    }
}

/// The capacity plan: `decisions` at `req` per (model, mode), each hardware option's best
/// configuration (measured operating points before offline upper bounds), with the exclusions
/// and their reasons.
pub fn plan_groups(
    decisions: &[decision::Decision],
    req: &decision::Requirement,
) -> Vec<cost::PlanGroup> {
    decisions
        .iter()
        .map(|d| cost::PlanGroup {
            group: d.title(),
            verdict: d.verdict(),
            options: d
                .options
                .iter()
                .map(|o| cost::PlanOption {
                    host: o.row.host.clone(),
                    hardware_id: o.hardware.clone(),
                    run_id: o.row.run.spec.id.clone(),
                    evidence: o.evidence.words().into(),
                    capacity_per_instance_qps: o.capacity_qps,
                    capacity_interval_qps: o.ci_usd.filter(|(lo, _)| *lo > 0.0).map(|(lo, hi)| {
                        (
                            cost::capacity_at(o.hourly_usd, hi),
                            cost::capacity_at(o.hourly_usd, lo),
                        )
                    }),
                    p99_ms: o.p99_ms,
                    instances: o.instances.unwrap_or(0),
                    basis: req.basis.clone(),
                    hourly_usd: o.hourly_usd,
                    cost_per_1k_usd: o.cost_per_1k_usd,
                    monthly_usd: o.monthly_usd.unwrap_or(0.0),
                    caveats: notes::cost_caveats(o.row)
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    process_start_s: o.row.run.cold_start.as_ref().map(|c| c.total_s),
                })
                .collect(),
            excluded: d
                .excluded
                .iter()
                .map(|(r, why)| (r.run.spec.id.clone(), why.clone()))
                .collect(),
        })
        .collect()
}

/// Groups rows by a key, keeping order of first appearance.
pub(crate) fn group_by<'r, 'a, K: Ord + Clone>(
    rows: &[&'r Row<'a>],
    key: impl Fn(&Row) -> K,
) -> BTreeMap<K, Vec<&'r Row<'a>>> {
    let mut m: BTreeMap<K, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        m.entry(key(r)).or_default().push(r);
    }
    m
}

/// The capacity plan for `recbench plan` ([`Model::plan_groups`]).
pub fn plan(opts: &ReportOptions) -> Result<Vec<cost::PlanGroup>> {
    let sources = load_sources(&opts.inputs)?;
    let catalog = Catalog::shipped_with(opts.catalog.as_deref())?;
    let rows = price(&sources, &catalog, &opts.maps)?;
    Ok(Model::new(&rows, &sources, &opts.requirement).plan_groups())
}

/// Hosts that could not be priced, with the reason, for messages.
pub fn unpriced_hosts(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .filter(|r| r.run.status == Status::Ok && r.cost.is_none())
        .map(|r| format!("{}: {}", r.host, r.mapping.detail))
        .collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.filter(|v| v.is_finite())
        .map_or("—".into(), |v| format!("{v:.digits$}"))
}

/// The committed levers sweep's results files (`results/reference/levers/*.json`), sorted: what
/// the tests of the cost–quality front draw from.
#[cfg(test)]
pub(crate) fn levers_reference_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference/levers");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
}
