//! Prices and the cost model: the hardware catalog, cost per 1k requests per price basis with a
//! confidence interval, energy per 1k requests, and capacity plans.
//!
//! cost_per_1k_usd = 1000 × hourly_usd / 3600 / requests_per_s, at the SLA operating point when
//! the run has one (server load), else at peak offline throughput, and labelled which.
//! Energy per 1k requests comes from the run's measured power, else from an estimate by the
//! catalog entry's processor ([`energy`]), labelled as such.

pub mod day;
pub mod energy;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{line_of, Error, Result};
use crate::results::{ResultsFile, RunResult, Status};
use crate::util::files::read_text;

/// One priced machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareEntry {
    pub id: String,
    pub provider: String,
    #[serde(default)]
    pub region: String,
    pub kind: String,
    /// 0 when left out (unknown); written out, it must be positive.
    #[serde(default, deserialize_with = "positive_u32")]
    pub vcpus: u32,
    /// 0 when left out (unknown); written out, it must be a positive number.
    #[serde(default, deserialize_with = "positive_f64")]
    pub memory_gib: f64,
    #[serde(default)]
    pub cpu_model: String,
    #[serde(default)]
    pub cpu_match: Vec<String>,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub gpu_model: String,
    #[serde(default)]
    pub gpu_count: u32,
    #[serde(default)]
    pub gpu_match: Vec<String>,
    pub tdp_watts: Option<f64>,
    pub on_demand_usd_per_hour: Option<f64>,
    pub reserved_1y_usd_per_hour: Option<f64>,
    pub spot_usd_per_hour: Option<f64>,
    pub purchase_usd: Option<f64>,
    pub lifetime_years: Option<f64>,
    pub electricity_usd_per_kwh: Option<f64>,
    pub pue: Option<f64>,
    pub power_watts: Option<f64>,
    #[serde(default)]
    pub assumption: bool,
    #[serde(default)]
    pub price_note: String,
    #[serde(default)]
    pub price_source: String,
    #[serde(default)]
    pub price_date: String,
    /// `page` (the date the source shows) or `retrieved` (the day the source was read).
    #[serde(default)]
    pub price_date_kind: String,
    #[serde(default)]
    pub notes: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    hardware: Vec<HardwareEntry>,
}

/// The entries of a catalog file's text, checked as a user's catalog is (`path` names the
/// file in errors).
pub fn parse_catalog_entries(path: &Path, text: &str) -> Result<Vec<HardwareEntry>> {
    parse_catalog_text(path, text)
}

/// `entries` written as a catalog file that [`parse_catalog_entries`] reads back (an unknown
/// vCPU count or memory, 0 in an entry, is left out as it was read).
pub fn catalog_toml(entries: &[HardwareEntry]) -> String {
    let mut v = toml::Value::try_from(CatalogFile {
        hardware: entries.to_vec(),
    })
    .expect("a catalog serialises");
    if let Some(list) = v.get_mut("hardware").and_then(|h| h.as_array_mut()) {
        for t in list.iter_mut().filter_map(|e| e.as_table_mut()) {
            for key in ["vcpus", "memory_gib"] {
                let zero = t
                    .get(key)
                    .is_some_and(|x| x.as_integer() == Some(0) || x.as_float() == Some(0.0));
                if zero {
                    t.remove(key);
                }
            }
        }
    }
    toml::to_string(&v).expect("a catalog serialises")
}

/// The price catalog: the shipped file with a user file merged over it (same id replaces).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub entries: Vec<HardwareEntry>,
    pub files: Vec<PathBuf>,
}

/// Default location of the shipped catalog.
pub const DEFAULT_CATALOG: &str = "catalog/hardware.toml";

/// The shipped catalog, compiled in so the binary prices runs from any folder.
pub const SHIPPED_CATALOG: &str = include_str!("../catalog/hardware.toml");

/// A count that may be left out (0: unknown) but, written out, is positive.
fn positive_u32<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom(
            "0 is not a count: give a positive number, or leave the field out when unknown",
        ));
    }
    Ok(v)
}

/// An amount that may be left out (0: unknown) but, written out, is positive and finite.
fn positive_f64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v.is_finite() && v > 0.0) {
        return Err(serde::de::Error::custom(format!(
            "{v} is not a positive amount: give one, or leave the field out when unknown"
        )));
    }
    Ok(v)
}

fn parse_catalog(path: &Path) -> Result<Vec<HardwareEntry>> {
    parse_catalog_text(path, &read_text(path)?)
}

fn parse_catalog_text(path: &Path, text: &str) -> Result<Vec<HardwareEntry>> {
    let text = text.to_string();
    let f: CatalogFile = toml::from_str(&text).map_err(|e| {
        let off = e.span().map(|s| s.start);
        let line = off.map(|o| line_of(&text, o));
        let mut msg = e.message().trim().to_string();
        if let Some(name) = msg
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            return Error::input(path, line, format!("hardware.{name}"), msg.clone());
        }
        msg = msg.replace("expected f64", "expected a number");
        let field = off
            .map(|o| crate::error::field_at(&text, o))
            .unwrap_or_default();
        Error::input(path, line, field, msg)
    })?;
    let mut seen = std::collections::BTreeSet::new();
    for h in &f.hardware {
        let line_of_key = |key: &str| -> Option<usize> {
            let id_at = text.find(&format!("\"{}\"", h.id))?;
            let rel = text[id_at..]
                .find(&format!("\n{key}"))
                .map(|i| id_at + i + 1)
                .unwrap_or(id_at);
            Some(line_of(&text, rel))
        };
        let bad = |key: &str, msg: String| {
            Error::input(path, line_of_key(key), format!("hardware.{key}"), msg)
        };
        if h.id.is_empty()
            || !h
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(bad(
                "id",
                format!("{:?}: use letters, digits, '-', '_' or '.'", h.id),
            ));
        }
        if !seen.insert(h.id.clone()) {
            return Err(bad("id", format!("{:?} appears twice in this file", h.id)));
        }
        for (key, v) in [
            ("on_demand_usd_per_hour", h.on_demand_usd_per_hour),
            ("reserved_1y_usd_per_hour", h.reserved_1y_usd_per_hour),
            ("spot_usd_per_hour", h.spot_usd_per_hour),
            ("purchase_usd", h.purchase_usd),
            ("lifetime_years", h.lifetime_years),
            ("electricity_usd_per_kwh", h.electricity_usd_per_kwh),
            ("power_watts", h.power_watts),
            ("tdp_watts", h.tdp_watts),
        ] {
            if let Some(x) = v {
                if !x.is_finite() || x <= 0.0 || x > 1e9 {
                    return Err(bad(key, format!("{x} is not a positive amount")));
                }
            }
        }
        if let Some(p) = h.pue {
            if !(1.0..=5.0).contains(&p) {
                return Err(bad("pue", format!("{p} is outside 1.0 to 5.0")));
            }
        }
        if !matches!(h.kind.as_str(), "cpu" | "gpu") {
            return Err(bad("kind", format!("{:?}; allowed: cpu, gpu", h.kind)));
        }
        if h.kind == "gpu" && h.gpu_count == 0 {
            return Err(bad(
                "gpu_count",
                "a gpu entry needs gpu_count of at least 1 (its GPUs share the price)".into(),
            ));
        }
        let hourly = h.on_demand_usd_per_hour.is_some()
            || h.reserved_1y_usd_per_hour.is_some()
            || h.spot_usd_per_hour.is_some();
        let owned = h.purchase_usd.is_some() && h.lifetime_years.is_some();
        if !hourly && !owned {
            return Err(bad("id", "has no price: give on_demand_usd_per_hour (or reserved/spot), or purchase_usd with lifetime_years".into()));
        }
    }
    Ok(f.hardware)
}

impl Catalog {
    /// The shipped catalog with `user` merged over it.
    pub fn shipped_with(user: Option<&Path>) -> Result<Catalog> {
        let mut c = Catalog {
            entries: parse_catalog_text(Path::new(DEFAULT_CATALOG), SHIPPED_CATALOG)?,
            files: vec![PathBuf::from(DEFAULT_CATALOG)],
        };
        if let Some(u) = user {
            for e in parse_catalog(u)? {
                match c.entries.iter_mut().find(|x| x.id == e.id) {
                    Some(x) => *x = e,
                    None => c.entries.push(e),
                }
            }
            c.files.push(u.to_path_buf());
        }
        Ok(c)
    }

    /// Loads the shipped catalog and merges `user` over it.
    pub fn load(shipped: &Path, user: Option<&Path>) -> Result<Catalog> {
        let mut entries = parse_catalog(shipped)?;
        let mut files = vec![shipped.to_path_buf()];
        if let Some(u) = user {
            for e in parse_catalog(u)? {
                match entries.iter_mut().find(|x| x.id == e.id) {
                    Some(x) => *x = e,
                    None => entries.push(e),
                }
            }
            files.push(u.to_path_buf());
        }
        Ok(Catalog { entries, files })
    }

    pub fn get(&self, id: &str) -> Option<&HardwareEntry> {
        self.entries.iter().find(|e| e.id == id)
    }
}

/// Checks a scenario's `[cost] hardware` against `catalog`: `auto`, or an id the catalog has.
pub fn check_hardware(sc: &crate::scenario::Scenario, catalog: &Catalog) -> Result<()> {
    let id = &sc.cost_hardware;
    if id == "auto" || catalog.get(id).is_some() {
        return Ok(());
    }
    let files: Vec<String> = catalog
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    Err(Error::input(
        &sc.path,
        sc.cost_hardware_line,
        "cost.hardware",
        format!(
            "{id:?} is not in the catalog ({}); use \"auto\" or one of its ids (`recbench \
             report --catalog FILE` adds your own entries, `--map HOST=ID` maps a host)",
            files.join(", ")
        ),
    ))
}

/// How a measured host was matched to a catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapping {
    pub hardware_id: Option<String>,
    /// `explicit` (the user named the entry), `auto` (CPU/GPU model and size matched) or
    /// `unmapped` (with the reason).
    pub how: String,
    pub detail: String,
}

/// Maps the host of `file` to a catalog entry, for runs on `device`.
pub fn map_host(
    catalog: &Catalog,
    file: &ResultsFile,
    on_gpu: bool,
    explicit: Option<&str>,
) -> Mapping {
    let inv = &file.environment.inventory;
    // A CPU entry has no GPU to price a GPU run with: such a run is matched by its GPU below
    // (two machines can share a host name, e.g. `vm`, and one mapping names them both).
    let mut not_applied = String::new();
    if let Some(id) = explicit.filter(|id| {
        let cpu_only = catalog.get(id).is_some_and(|e| e.kind != "gpu");
        if on_gpu && cpu_only {
            not_applied = format!(
                "{id} (named for host {}) is a CPU entry, not applied to GPU runs; ",
                inv.host
            );
        }
        !(on_gpu && cpu_only)
    }) {
        return match catalog.get(id) {
            Some(_) => Mapping {
                hardware_id: Some(id.into()),
                how: "explicit".into(),
                detail: format!("host {} priced as {id}", inv.host),
            },
            None => Mapping {
                hardware_id: None,
                how: "unmapped".into(),
                detail: format!("{id:?} is not in the catalog"),
            },
        };
    }
    let cpu = inv.cpu_model.clone().unwrap_or_default();
    if on_gpu {
        let Some(gpu) = inv.gpus.first() else {
            return Mapping {
                hardware_id: None,
                how: "unmapped".into(),
                detail: "GPU run on a host whose inventory lists no GPU".into(),
            };
        };
        let hit = catalog.entries.iter().find(|e| {
            e.kind == "gpu"
                && e.gpu_match.iter().any(|m| gpu.name.contains(m.as_str()))
                && e.gpu_count as usize == inv.gpus.len()
        });
        return match hit {
            Some(e) => Mapping {
                hardware_id: Some(e.id.clone()),
                how: "auto".into(),
                detail: format!(
                    "{not_applied}{} × {} matched {}",
                    inv.gpus.len(),
                    gpu.name,
                    e.id
                ),
            },
            None => Mapping {
                hardware_id: None,
                how: "unmapped".into(),
                detail: format!(
                    "{not_applied}no catalog entry with {} × {:?}; map it explicitly",
                    inv.gpus.len(),
                    gpu.name
                ),
            },
        };
    }
    let family: Vec<&HardwareEntry> = catalog
        .entries
        .iter()
        .filter(|e| {
            e.kind == "cpu"
                && e.cpu_match
                    .iter()
                    .any(|m| !m.is_empty() && cpu.contains(m.as_str()))
        })
        .collect();
    match family.iter().find(|e| e.vcpus as usize == inv.logical_cores) {
        Some(e) => Mapping { hardware_id: Some(e.id.clone()), how: "auto".into(), detail: format!("{cpu:?} with {} vCPUs matched {}", inv.logical_cores, e.id) },
        None if family.is_empty() => Mapping {
            hardware_id: None,
            how: "unmapped".into(),
            detail: format!("CPU {cpu:?} matches no catalog entry; not guessed (map it explicitly with --map {}=ID)", inv.host),
        },
        None => Mapping {
            hardware_id: None,
            how: "unmapped".into(),
            detail: format!(
                "CPU {cpu:?} matches {} but none has {} vCPUs; not guessed (map it explicitly)",
                family.iter().map(|e| e.id.as_str()).collect::<Vec<_>>().join(", "),
                inv.logical_cores
            ),
        },
    }
}

/// Which throughput a cost is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateBasis {
    /// Highest Poisson rate with p99 within the SLA (server load).
    OperatingPoint,
    /// Peak throughput of back-to-back batches (offline load): an upper bound for serving.
    OfflinePeak,
    /// One request at a time.
    SingleStream,
}

impl RateBasis {
    /// The name reports print (as in the JSON).
    pub fn name(self) -> &'static str {
        match self {
            RateBasis::OperatingPoint => "operating-point",
            RateBasis::OfflinePeak => "offline-peak",
            RateBasis::SingleStream => "single-stream",
        }
    }
}

/// The cost of one run on one price basis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostFigure {
    /// `on-demand`, `reserved-1y`, `spot` or `owned`.
    pub basis: String,
    pub hourly_usd: f64,
    pub cost_per_1k_usd: f64,
    /// 95% interval from the throughput's uncertainty.
    pub ci_low_usd: f64,
    pub ci_high_usd: f64,
    pub note: String,
}

/// Cost, energy and their provenance for one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCost {
    pub hardware_id: String,
    pub rate_basis: RateBasis,
    pub requests_per_s: f64,
    pub requests_per_s_ci: (f64, f64),
    /// Share of the instance's price charged to this run (1/gpus for one GPU of several).
    pub share: f64,
    pub figures: Vec<CostFigure>,
    /// Joules per 1,000 requests at `requests_per_s`, from `power` (measured or estimated).
    pub energy_per_1k_joules: Option<f64>,
    /// Above the host's idle draw; measured figures only.
    pub energy_above_idle_per_1k_joules: Option<f64>,
    /// The power the energy comes from, with its label and basis.
    pub power: energy::RunPower,
    /// The catalog's own doubt about the price: the entry's note when it starts with
    /// `UNSURE` (the catalog's flag for a price no primary source confirms).
    pub price_unsure: Option<String>,
}

/// Throughput and a 95% interval for `r`.
pub fn rate_with_ci(r: &RunResult) -> Option<(RateBasis, f64, (f64, f64))> {
    if let Some(s) = &r.server {
        let op = s.operating_point.as_ref()?;
        return Some((
            RateBasis::OperatingPoint,
            op.offered_qps,
            capacity_interval(s),
        ));
    }
    let t = r.throughput.as_ref()?;
    let basis = match r.spec.load {
        crate::spec::Load::SingleStream => RateBasis::SingleStream,
        _ => RateBasis::OfflinePeak,
    };
    let per_iter = t.requests_per_s * t.measured_s / r.samples_ms.len().max(1) as f64; // requests per iteration
    let ci =
        bootstrap_rate_ci(&r.samples_ms, per_iter).unwrap_or((t.requests_per_s, t.requests_per_s));
    Some((basis, t.requests_per_s, ci))
}

/// The interval of a server run's capacity: from the highest probed rate at or below the
/// operating point that met the SLA beyond doubt, to the lowest probed rate above it that
/// missed it beyond doubt. Beyond doubt is by each probe's 95% bootstrap interval of its p99
/// (`CurvePoint::p99_interval_ms`): met when the interval's top is within the SLA (and the probe
/// kept up with its rate), missed when its bottom is above it (or the probe stopped early, or
/// fell 2% short of its rate); a rate probed twice (the search and its confirmation) counts as
/// met only when both probes met it. Without intervals (files from before them) this is the
/// search's bracket: the operating point and the next probed rate, which failed. Where no
/// probe at or below the operating point met the SLA beyond doubt, the operating point stays
/// the bottom; where no probe above it missed beyond doubt, the top is the highest probed rate
/// that missed.
pub fn capacity_interval(s: &crate::results::ServerResult) -> (f64, f64) {
    use crate::results::CurvePoint;
    let Some(op) = s.operating_point.as_ref() else {
        return (0.0, 0.0);
    };
    let sla = s.sla_p99_ms;
    let p99 = |c: &CurvePoint| c.p99_interval_ms.unwrap_or((c.p99_ms, c.p99_ms));
    let kept_up = |c: &CurvePoint| c.early_stop.is_none() && c.achieved_qps >= 0.98 * c.offered_qps;
    let probes: Vec<&CurvePoint> = s.curve.iter().chain(s.confirmation.iter()).collect();
    let at = |rate: f64| probes.iter().filter(move |c| c.offered_qps == rate);
    let lo = probes
        .iter()
        .map(|c| c.offered_qps)
        .filter(|&r| r <= op.offered_qps && at(r).all(|c| kept_up(c) && p99(c).1 <= sla))
        .fold(f64::NEG_INFINITY, f64::max);
    let above = || probes.iter().filter(|c| c.offered_qps > op.offered_qps);
    let surely_missed = above()
        .filter(|c| !kept_up(c) || p99(c).0 > sla)
        .map(|c| c.offered_qps)
        .fold(f64::INFINITY, f64::min);
    let missed = above()
        .filter(|c| !c.meets_sla)
        .map(|c| c.offered_qps)
        .fold(f64::NEG_INFINITY, f64::max);
    let hi = if surely_missed.is_finite() {
        surely_missed
    } else if missed.is_finite() {
        missed
    } else {
        op.offered_qps
    };
    (if lo.is_finite() { lo } else { op.offered_qps }, hi)
}

/// 95% bootstrap interval of requests/s = requests per iteration / mean iteration time.
pub fn bootstrap_rate_ci(samples_ms: &[f64], per_iter: f64) -> Option<(f64, f64)> {
    if samples_ms.len() < 2 {
        return None;
    }
    let mut rng = crate::util::rand::SplitMix64::new(0x5eed);
    let n = samples_ms.len();
    let mut rates: Vec<f64> = (0..1000)
        .map(|_| {
            let s: f64 = (0..n)
                .map(|_| samples_ms[(rng.next_u64() % n as u64) as usize])
                .sum();
            per_iter / (s / n as f64 / 1e3)
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    Some((rates[25], rates[974]))
}

/// USD per 1,000 requests at `hourly` USD an hour and `rps` requests a second.
pub fn per_1k(hourly: f64, rps: f64) -> f64 {
    1000.0 * hourly / 3600.0 / rps
}

/// The requests per second at which a machine of `hourly` dollars costs `usd_per_1k` per 1k
/// requests: [`per_1k`] solved for the rate, so each end of a cost's interval gives the
/// capacity's other end.
pub fn capacity_at(hourly: f64, usd_per_1k: f64) -> f64 {
    hourly / 3.6 / usd_per_1k
}

/// A cost per 1k requests as people read it: dollars per million requests, with three
/// significant figures ("$0.338", "$12.4", "$1,207"), not six decimals of a dollar per 1k.
pub fn usd_per_1m(usd_per_1k: f64) -> String {
    let x = usd_per_1k * 1000.0;
    if !x.is_finite() {
        return "—".into();
    }
    let digits = match x.abs() {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        v if v >= 1.0 => 2,
        _ => 3,
    };
    dollars(x, digits)
}

/// A monthly bill as people read it: "$1,642.50".
pub fn usd(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    dollars(x, 2)
}

/// `$` and `x` with `digits` decimals and thousands separators in the whole part, for figures a
/// reader compares by eye.
fn dollars(x: f64, digits: usize) -> String {
    let s = format!("{:.digits$}", x.abs());
    let (whole, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 { "-" } else { "" };
    match frac {
        Some(f) => format!("{sign}${grouped}.{f}"),
        None => format!("{sign}${grouped}"),
    }
}

/// Prices run `r` on `hw`, for a host with `host_cores` logical cores (the vCPU count an energy
/// estimate falls back on when the catalog entry gives none).
pub fn cost_run(r: &RunResult, hw: &HardwareEntry, host_cores: usize) -> Option<RunCost> {
    if r.status != Status::Ok {
        return None;
    }
    let (basis, rps, (lo, hi)) = rate_with_ci(r)?;
    if rps <= 0.0 {
        return None;
    }
    let on_gpu = matches!(r.spec.device, crate::spec::Device::Cuda(_));
    let share = if on_gpu && hw.gpu_count > 1 {
        1.0 / hw.gpu_count as f64
    } else {
        1.0
    };
    let share_note = if share < 1.0 {
        format!("; per-GPU share (1/{}) of the instance", hw.gpu_count)
    } else {
        String::new()
    };
    let mut figures = Vec::new();
    let mut push = |name: &str, hourly: f64, note: String| {
        let h = hourly * share;
        figures.push(CostFigure {
            basis: name.into(),
            hourly_usd: h,
            cost_per_1k_usd: per_1k(h, rps),
            ci_low_usd: per_1k(h, hi),
            ci_high_usd: per_1k(h, lo),
            note,
        });
    };
    let src = format!("{} ({})", hw.price_source, hw.price_date);
    if let Some(p) = hw.on_demand_usd_per_hour {
        push("on-demand", p, format!("list price {src}{share_note}"));
    }
    if let Some(p) = hw.reserved_1y_usd_per_hour {
        push("reserved-1y", p, format!("{src}{share_note}"));
    }
    if let Some(p) = hw.spot_usd_per_hour {
        push(
            "spot",
            p,
            format!("spot price on {} (moves daily){share_note}", hw.price_date),
        );
    }
    if let (Some(buy), Some(years)) = (hw.purchase_usd, hw.lifetime_years) {
        let amortised = buy / (years * 8760.0);
        let (watts, wsrc) = match r.power.watts {
            Some(w) => (Some(w), format!("measured {:.0} W ({})", w, r.power.source)),
            None => (
                hw.power_watts,
                match hw.power_watts {
                    Some(w) => format!("catalog typical draw {w} W (not measured)"),
                    None => "no power figure (neither measured nor in the catalog)".into(),
                },
            ),
        };
        let energy = match (watts, hw.electricity_usd_per_kwh) {
            (Some(w), Some(kwh)) => w / 1000.0 * kwh * hw.pue.unwrap_or(1.0),
            _ => 0.0,
        };
        push(
            "owned",
            amortised + energy,
            format!(
                "purchase ${buy:.0} over {years} years + energy at {wsrc} × {} × PUE {}{}",
                hw.electricity_usd_per_kwh
                    .map_or("no electricity price".into(), |p| format!("${p}/kWh")),
                hw.pue.map_or("1 (not given)".into(), |p| p.to_string()),
                if hw.assumption {
                    "; purchase price is an assumption"
                } else {
                    ""
                }
            ),
        );
    }
    let power = energy::run_power(energy::EnergyTable::shipped(), r, hw, host_cores);
    let energy = power.watts.map(|w| w * 1000.0 / rps);
    let above = r.power.above_idle_watts.map(|w| w * 1000.0 / rps);
    Some(RunCost {
        hardware_id: hw.id.clone(),
        rate_basis: basis,
        requests_per_s: rps,
        requests_per_s_ci: (lo, hi),
        share,
        figures,
        energy_per_1k_joules: energy,
        energy_above_idle_per_1k_joules: above,
        power,
        price_unsure: hw
            .notes
            .trim_start()
            .starts_with("UNSURE")
            .then(|| hw.notes.trim().to_string()),
    })
}

/// One option of a capacity plan: a hardware option's best configuration.
#[derive(Debug, Clone, Serialize)]
pub struct PlanOption {
    pub host: String,
    pub hardware_id: String,
    pub run_id: String,
    /// How the capacity was established (confirmed operating point, search curve, offline
    /// upper bound).
    pub evidence: String,
    pub capacity_per_instance_qps: f64,
    /// The capacity's interval where the evidence gives one (the search bracket of a server-load
    /// operating point, the 95% CI of an offline peak).
    pub capacity_interval_qps: Option<(f64, f64)>,
    pub p99_ms: f64,
    pub instances: u64,
    pub basis: String,
    /// The machine's price per hour on `basis`.
    pub hourly_usd: f64,
    pub cost_per_1k_usd: f64,
    pub monthly_usd: f64,
    /// The badges that qualify this figure (host-bound, kernel fallback, unstable, few
    /// samples, priced by the user's assertion …), as in the report's table.
    pub caveats: Vec<String>,
    /// The run's measured cold start: its worker process's start to steady latency (results
    /// written before it was measured: none).
    pub process_start_s: Option<f64>,
}

/// The plan of one (model, mode): its options (best first), the CPU-against-GPU verdict and
/// the configurations excluded, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct PlanGroup {
    pub group: String,
    pub verdict: String,
    pub options: Vec<PlanOption>,
    pub excluded: Vec<(String, String)>,
}

/// Hours in an average month.
pub const HOURS_PER_MONTH: f64 = 730.0;

#[cfg(test)]
mod tests;
