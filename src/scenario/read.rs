//! Reading a scenario: the raw tables as serde sees them (every value with its span), the
//! syntax step, and `Ctx`, which checks each value and names its line and field.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::*;
use crate::error::{field_at, line_of, Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) name: Spanned<Value>,
    pub(super) description: Option<Spanned<Value>>,
    pub(super) model: RawModel,
    pub(super) workload: RawWorkload,
    pub(super) matrix: RawMatrix,
    pub(super) measure: Option<RawMeasure>,
    pub(super) recommender: Option<RawRecommender>,
    pub(super) cost: Option<RawCost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) presets: Spanned<Value>,
    pub(super) seed: Option<Spanned<Value>>,
    pub(super) prune: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub(super) mode: Spanned<Value>,
    pub(super) batch: Spanned<Value>,
    pub(super) seq_len: Spanned<Value>,
    pub(super) precision: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatrix {
    pub(super) backends: Spanned<Value>,
    pub(super) devices: Option<Spanned<Value>>,
    pub(super) threads: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMeasure {
    pub(super) warmup_s: Option<Spanned<Value>>,
    pub(super) min_s: Option<Spanned<Value>>,
    pub(super) min_queries: Option<Spanned<Value>>,
    pub(super) max_s: Option<Spanned<Value>>,
    pub(super) timeout_s: Option<Spanned<Value>>,
    pub(super) load: Option<Spanned<Value>>,
    pub(super) sla_p99_ms: Option<Spanned<Value>>,
    pub(super) max_queue_delay_ms: Option<Spanned<Value>>,
    pub(super) instances: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecommender {
    pub(super) candidates: Option<Spanned<Value>>,
    pub(super) top_k: Option<Spanned<Value>>,
    pub(super) catalog_items: Option<Spanned<Value>>,
    pub(super) scoring: Option<Spanned<Value>>,
    pub(super) item_precision: Option<Spanned<Value>>,
    pub(super) index: Option<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCost {
    pub(super) hardware: Option<Spanned<Value>>,
}

/// Reads values out of the raw tree with errors that name file, line and field.
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, v: &Spanned<Value>, field: &str, msg: impl Into<String>) -> Error {
        Error::input(
            self.path,
            Some(line_of(self.text, v.span().start)),
            field,
            msg,
        )
    }

    pub(super) fn describe(v: &Value) -> String {
        match v {
            Value::String(s) => format!("string {s:?}"),
            Value::Integer(i) => format!("integer {i}"),
            Value::Float(f) => format!("float {f}"),
            Value::Boolean(b) => format!("boolean {b}"),
            Value::Datetime(d) => format!("date {d}"),
            Value::Array(_) => "a list".into(),
            Value::Table(_) => "a table".into(),
        }
    }

    /// A scalar or a list of scalars, as a non-empty list without duplicates.
    pub(super) fn list<'v>(
        &self,
        v: &'v Spanned<Value>,
        field: &str,
        what: &str,
    ) -> Result<Vec<&'v Value>> {
        let items: Vec<&Value> = match v.get_ref() {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        if items.is_empty() {
            return Err(self.err(
                v,
                field,
                format!("the list is empty; give at least one {what}"),
            ));
        }
        Ok(items)
    }

    pub(super) fn strings(
        &self,
        v: &Spanned<Value>,
        field: &str,
        allowed: &str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for item in self.list(v, field, "value")? {
            match item {
                Value::String(s) => {
                    if out.contains(s) {
                        return Err(self.err(v, field, format!("{s:?} is listed twice")));
                    }
                    out.push(s.clone())
                }
                other => {
                    return Err(self.err(
                        v,
                        field,
                        format!(
                            "expected a string or a list of strings ({allowed}), found {}",
                            Self::describe(other)
                        ),
                    ))
                }
            }
        }
        Ok(out)
    }

    pub(super) fn parse_each<T>(
        &self,
        v: &Spanned<Value>,
        field: &str,
        allowed: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.strings(v, field, allowed)?
            .into_iter()
            .map(|s| {
                parse(&s).ok_or_else(|| {
                    self.err(v, field, format!("unknown value {s:?}; allowed: {allowed}"))
                })
            })
            .collect()
    }

    pub(super) fn ints(
        &self,
        v: &Spanned<Value>,
        field: &str,
        min: i64,
        max: i64,
    ) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for item in self.list(v, field, "number")? {
            let n = self.int_value(v, item, field, min, max)?;
            if out.contains(&n) {
                return Err(self.err(v, field, format!("{n} is listed twice")));
            }
            out.push(n);
        }
        Ok(out)
    }

    pub(super) fn int_value(
        &self,
        v: &Spanned<Value>,
        item: &Value,
        field: &str,
        min: i64,
        max: i64,
    ) -> Result<usize> {
        match item {
            Value::Integer(n) if (min..=max).contains(n) => Ok(*n as usize),
            Value::Integer(n) => Err(self.err(
                v,
                field,
                format!("{n} is out of range; allowed: {min} to {max}"),
            )),
            other => Err(self.err(
                v,
                field,
                format!(
                    "expected a whole number from {min} to {max}, found {}",
                    Self::describe(other)
                ),
            )),
        }
    }

    pub(super) fn int(
        &self,
        v: Option<&Spanned<Value>>,
        field: &str,
        min: i64,
        max: i64,
        default: usize,
    ) -> Result<usize> {
        match v {
            None => Ok(default),
            Some(v) => self.int_value(v, v.get_ref(), field, min, max),
        }
    }

    pub(super) fn float(
        &self,
        v: Option<&Spanned<Value>>,
        field: &str,
        min: f64,
        max: f64,
        default: f64,
    ) -> Result<f64> {
        let Some(v) = v else { return Ok(default) };
        let x = match v.get_ref() {
            Value::Integer(n) => *n as f64,
            Value::Float(f) => *f,
            other => {
                return Err(self.err(
                    v,
                    field,
                    format!(
                        "expected a number of seconds or milliseconds, found {}",
                        Self::describe(other)
                    ),
                ))
            }
        };
        if !x.is_finite() || x < min || x > max {
            return Err(self.err(
                v,
                field,
                format!("{x} is out of range; allowed: {min} to {max}"),
            ));
        }
        Ok(x)
    }

    pub(super) fn string(
        &self,
        v: Option<&Spanned<Value>>,
        field: &str,
        default: &str,
    ) -> Result<String> {
        match v {
            None => Ok(default.to_string()),
            Some(v) => match v.get_ref() {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.err(
                    v,
                    field,
                    format!("expected a string, found {}", Self::describe(other)),
                )),
            },
        }
    }
}

impl Ctx<'_> {
    /// The scenario's name (it names the results folder) and description.
    pub(super) fn naming(&self, raw: &Raw) -> Result<(String, String)> {
        let c = self;
        let name = c.string(Some(&raw.name), "name", "")?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            || name.starts_with('.')
        {
            return Err(c.err(
                &raw.name,
                "name",
                format!("{name:?} is not allowed; use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.' (it names the results folder)"),
            ));
        }
        let description = c.string(raw.description.as_ref(), "description", "")?;
        Ok((name, description))
    }

    /// `[model]` and `[workload]`: the model presets and the request shapes.
    #[allow(clippy::type_complexity)]
    pub(super) fn workload(
        &self,
        raw: &Raw,
    ) -> Result<(
        Vec<Preset>,
        Vec<Recipe>,
        u64,
        Vec<Mode>,
        Vec<usize>,
        Vec<usize>,
        Vec<Precision>,
    )> {
        let c = self;
        let presets = c.parse_each(
            &raw.model.presets,
            "model.presets",
            &Preset::allowed(),
            Preset::parse,
        )?;
        let prunes = match &raw.model.prune {
            None => vec![Recipe::default()],
            Some(v) => {
                let mut out: Vec<Recipe> = Vec::new();
                for name in c.strings(v, "model.prune", crate::model::prune::ALLOWED)? {
                    let r = Recipe::parse(&name)
                        .map_err(|why| c.err(v, "model.prune", format!("unknown recipe {why}")))?;
                    for p in &presets {
                        r.apply(&p.config()).map_err(|why| {
                            c.err(v, "model.prune", format!("{name:?} on model {p}: {why}"))
                        })?;
                    }
                    if out.contains(&r) {
                        return Err(c.err(
                            v,
                            "model.prune",
                            format!("{name:?} is listed twice (as {r})"),
                        ));
                    }
                    out.push(r);
                }
                out
            }
        };
        let seed = c.int(
            raw.model.seed.as_ref(),
            "model.seed",
            0,
            i64::MAX,
            DEFAULT_SEED as usize,
        )? as u64;

        let w = &raw.workload;
        let modes = c.parse_each(&w.mode, "workload.mode", &Mode::allowed(), Mode::parse)?;
        let batch = c.ints(&w.batch, "workload.batch", 1, 4096)?;
        let seq_len = c.ints(&w.seq_len, "workload.seq_len", 8, 512)?;
        let precisions = match &w.precision {
            Some(v) => c.parse_each(
                v,
                "workload.precision",
                &Precision::allowed(),
                Precision::parse,
            )?,
            None => vec![Precision::Fp32],
        };

        Ok((presets, prunes, seed, modes, batch, seq_len, precisions))
    }

    /// `[matrix]`: backends, devices and thread counts.
    #[allow(clippy::type_complexity)]
    pub(super) fn matrix(
        &self,
        m: &RawMatrix,
    ) -> Result<(Vec<BackendKind>, Vec<Device>, Vec<Option<usize>>)> {
        let c = self;
        let backends = c.parse_each(
            &m.backends,
            "matrix.backends",
            &BackendKind::allowed(),
            BackendKind::parse,
        )?;
        let devices = match &m.devices {
            Some(v) => c.parse_each(v, "matrix.devices", Device::ALLOWED, Device::parse)?,
            None => vec![Device::Cpu],
        };
        let threads = match &m.threads {
            None => vec![None],
            Some(v) => {
                let mut out = Vec::new();
                for item in c.list(v, "matrix.threads", "thread count")? {
                    match item {
                        Value::String(s) if s == "auto" => out.push(None),
                        Value::Integer(_) => {
                            out.push(Some(c.int_value(v, item, "matrix.threads", 1, 1024)?))
                        }
                        other => {
                            return Err(c.err(
                                v,
                                "matrix.threads",
                                format!(
                                    "expected \"auto\" or a thread count from 1 to 1024, found {}",
                                    Ctx::describe(other)
                                ),
                            ))
                        }
                    }
                }
                let unique: BTreeSet<_> = out.iter().collect();
                if unique.len() != out.len() {
                    return Err(c.err(v, "matrix.threads", "a thread count is listed twice"));
                }
                out
            }
        };

        Ok((backends, devices, threads))
    }

    /// `[measure]`: durations, loads and the server settings.
    pub(super) fn measure(&self, meas: Option<&RawMeasure>) -> Result<Measure> {
        let c = self;
        let get = |f: fn(&RawMeasure) -> &Option<Spanned<Value>>| meas.and_then(|m| f(m).as_ref());
        let warmup_s = c.float(get(|m| &m.warmup_s), "measure.warmup_s", 0.0, 3600.0, 2.0)?;
        let min_s = c.float(get(|m| &m.min_s), "measure.min_s", 0.001, 86_400.0, 10.0)?;
        let min_queries = c.int(
            get(|m| &m.min_queries),
            "measure.min_queries",
            1,
            100_000_000,
            200,
        )?;
        let max_s = c.float(
            get(|m| &m.max_s),
            "measure.max_s",
            0.001,
            86_400.0,
            60.0_f64.max(min_s),
        )?;
        if max_s < min_s {
            let v = get(|m| &m.max_s).expect("max_s below min_s means it was given");
            return Err(c.err(
                v,
                "measure.max_s",
                format!("{max_s} is below measure.min_s = {min_s}; max_s must be at least min_s"),
            ));
        }
        let timeout_s = match get(|m| &m.timeout_s) {
            None => None,
            Some(v) => Some(c.float(Some(v), "measure.timeout_s", 1.0, 7.0 * 86_400.0, 0.0)?),
        };
        let loads = match get(|m| &m.load) {
            None => vec![Load::Offline],
            Some(v) => c.parse_each(v, "measure.load", &Load::allowed(), Load::parse)?,
        };
        let sla_p99_ms = c.float(
            get(|m| &m.sla_p99_ms),
            "measure.sla_p99_ms",
            0.001,
            3_600_000.0,
            50.0,
        )?;

        let max_queue_delay_ms = c.float(
            get(|m| &m.max_queue_delay_ms),
            "measure.max_queue_delay_ms",
            0.0,
            60_000.0,
            2.0,
        )?;
        let instances = c.int(get(|m| &m.instances), "measure.instances", 1, 64, 1)?;
        Ok(Measure {
            warmup_s,
            min_s,
            min_queries,
            max_s,
            timeout_s,
            loads,
            sla_p99_ms,
            max_queue_delay_ms,
            instances,
        })
    }

    /// `[recommender]`: candidates, top-k, catalog sizes, scoring and the retrieval levers, and
    /// how they bound each other.
    pub(super) fn recommender(
        &self,
        rec: Option<&RawRecommender>,
        modes: &[Mode],
    ) -> Result<Recommender> {
        let c = self;
        let candidates = c.int(
            rec.and_then(|r| r.candidates.as_ref()),
            "recommender.candidates",
            1,
            10_000,
            100,
        )?;
        let top_k = c.int(
            rec.and_then(|r| r.top_k.as_ref()),
            "recommender.top_k",
            1,
            10_000,
            10,
        )?;
        let catalog_v = rec.and_then(|r| r.catalog_items.as_ref());
        let catalog_items = match catalog_v {
            Some(v) => c.ints(v, "recommender.catalog_items", 1, 100_000_000)?,
            None => vec![100_000],
        };
        if let Some(v) = rec.and_then(|r| r.top_k.as_ref()) {
            if modes.contains(&Mode::CrossEncoder) && top_k > candidates {
                return Err(c.err(v, "recommender.top_k", format!("{top_k} is more than recommender.candidates = {candidates}; a cross-encoder request can return at most its candidates")));
            }
            let smallest = catalog_items.iter().copied().min().unwrap_or(0);
            if top_k > smallest {
                return Err(c.err(
                    v,
                    "recommender.top_k",
                    format!("{top_k} is more than recommender.catalog_items = {smallest}"),
                ));
            }
        }

        let scoring_v = rec.and_then(|r| r.scoring.as_ref());
        let scoring_s = c.string(scoring_v, "recommender.scoring", "device")?;
        let scoring = Scoring::parse(&scoring_s).ok_or_else(|| {
            c.err(
                scoring_v.expect("a default parses"),
                "recommender.scoring",
                format!("unknown value {scoring_s:?}; allowed: device, host"),
            )
        })?;

        // The retrieval levers: a scenario that names one, or lists catalog sizes, sweeps them.
        let precision_v = rec.and_then(|r| r.item_precision.as_ref());
        let index_v = rec.and_then(|r| r.index.as_ref());
        let listed = matches!(catalog_v.map(|v| v.get_ref()), Some(Value::Array(_)));
        let retrievals = if precision_v.is_some() || index_v.is_some() || listed {
            let precisions = match precision_v {
                Some(v) => c.parse_each(
                    v,
                    "recommender.item_precision",
                    &Precision::allowed(),
                    Precision::parse,
                )?,
                None => vec![Precision::Fp32],
            };
            let indexes = match index_v {
                Some(v) => c
                    .strings(v, "recommender.index", Index::FORMS)?
                    .iter()
                    .map(|s| {
                        Index::parse(s)
                            .map_err(|why| c.err(v, "recommender.index", format!("{s:?}: {why}")))
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => vec![Index::Exact],
            };
            let levers = precisions.iter().any(|p| *p != Precision::Fp32)
                || indexes.iter().any(|i| *i != Index::Exact);
            if levers && scoring != Scoring::Host {
                let v = precision_v.or(index_v).expect("a lever was named");
                let field = if precision_v.is_some() {
                    "recommender.item_precision"
                } else {
                    "recommender.index"
                };
                return Err(c.err(
                    v,
                    field,
                    "item precisions other than fp32 and indexes other than exact run in \
                     recbench's retrieval on the host CPU; set recommender.scoring = \"host\"",
                ));
            }
            Some(
                precisions
                    .iter()
                    .flat_map(|&item_precision| {
                        indexes.iter().map(move |&index| Retrieval {
                            item_precision,
                            index,
                        })
                    })
                    .collect(),
            )
        } else {
            None
        };
        Ok(Recommender {
            candidates,
            top_k,
            catalog_items,
            scoring,
            retrievals,
        })
    }
}

/// The validated `[recommender]` table.
pub(super) struct Recommender {
    pub(super) candidates: usize,
    pub(super) top_k: usize,
    pub(super) catalog_items: Vec<usize>,
    pub(super) scoring: Scoring,
    pub(super) retrievals: Option<Vec<Retrieval>>,
}

/// The validated `[measure]` table.
pub(super) struct Measure {
    pub(super) warmup_s: f64,
    pub(super) min_s: f64,
    pub(super) min_queries: usize,
    pub(super) max_s: f64,
    pub(super) timeout_s: Option<f64>,
    pub(super) loads: Vec<Load>,
    pub(super) sla_p99_ms: f64,
    pub(super) max_queue_delay_ms: f64,
    pub(super) instances: usize,
}

/// Step 1, syntax and types: serde checks the structure (unknown keys, missing tables) and keeps
/// the span of every value; its messages are reworded to name the field.
pub(super) fn syntax(path: &Path, text: &str) -> Result<Raw> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start);
        let mut msg = e.message().trim().to_string();
        let mut field = offset.map(|o| field_at(text, o)).unwrap_or_default();
        // "missing field `x`" points at the table (or the whole file); name the missing key.
        if let Some(name) = msg
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            let table = offset
                .and_then(|o| text[o..].lines().next())
                .map(str::trim)
                .filter(|l| l.starts_with('[') && l.ends_with(']'))
                .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            field = match table {
                Some(t) => format!("{t}.{name}"),
                None if field.contains('.') => {
                    format!("{}.{name}", field.rsplit_once('.').unwrap().0)
                }
                None => name.to_string(),
            };
        }
        // serde's wording names internal types; say what the file should hold instead.
        if let Some(i) = msg.find("expected struct Raw") {
            msg = format!("{}expected a table", &msg[..i]);
        }
        if msg.contains("as i128") {
            msg = "this number is too large for any field".into();
        }
        Error::input(path, offset.map(|o| line_of(text, o)), field, msg)
    })
}
