//! The vocabulary every layer shares: which backend, device, precision, request shape and load a
//! run names, with their parsing and the allowed-value lists that error messages quote.
//!
//! This module imports nothing of the crate: scenarios, results, backends, reports and the
//! command line all depend on it, never the other way round.

use serde::{Deserialize, Serialize};

mod model;
mod run;
pub use model::{BertConfig, Preset, Recipe, ALLOWED};
pub use run::{RunSpec, SERVER_PROBES};

/// Implements `name`, `parse`, `allowed` and `Display` for a fieldless enum from one table of
/// (variant, name) pairs, so the spelling of each value is written once.
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order error messages list them.
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];

            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The value called `s`, if any.
            pub fn from_name(s: &str) -> Option<$ty> {
                Self::ALL.into_iter().find(|v| v.name() == s)
            }

            /// The allowed values as error messages list them: `a, b, c`.
            pub fn allowed() -> String {
                Self::ALL.map(|v| v.name()).join(", ")
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// Which inference runtime runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Candle,
    Onnx,
    Torch,
}

named!(BackendKind { Candle => "candle", Onnx => "onnx", Torch => "torch" });

impl BackendKind {
    pub fn parse(s: &str) -> Option<BackendKind> {
        Self::from_name(s)
    }
}

/// Numeric precision of weights and compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
    Int8,
}

named!(Precision { Fp32 => "fp32", Bf16 => "bf16", Fp16 => "fp16", Int8 => "int8" });

impl Precision {
    /// Parses a precision name; `f32` and `f16` are accepted as aliases.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "f32" => Some(Precision::Fp32),
            "f16" => Some(Precision::Fp16),
            _ => Self::from_name(s),
        }
    }
}

/// Request shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One user sequence per request, scored against cached item embeddings.
    TwoTower,
    /// `candidates` (user, item) sequences per request, scored jointly.
    CrossEncoder,
}

named!(Mode { TwoTower => "two-tower", CrossEncoder => "cross-encoder" });

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Self::from_name(s)
    }
}

/// How requests arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// Back-to-back batches of `batch` requests: peak throughput.
    Offline,
    /// One request at a time, the next issued when the previous completes: best-case latency.
    SingleStream,
    /// Poisson arrivals at a target rate with dynamic batching.
    Server,
}

named!(Load { Offline => "offline", SingleStream => "single-stream", Server => "server" });

impl Load {
    pub fn parse(s: &str) -> Option<Load> {
        Self::from_name(s)
    }
}

/// Where a two-tower request's catalog search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scoring {
    /// Inside the backend, on the run's device (the GPU for a GPU run; on a CPU run the
    /// backend's own CPU kernels): item embeddings live there in the scoring precision and only
    /// the top-k ids and scores come back.
    Device,
    /// On the host CPU with recbench's own GEMM and one-pass top-k, whatever device ran the
    /// encoder: the embeddings come back first.
    Host,
}

named!(Scoring { Device => "device", Host => "host" });

impl Scoring {
    pub fn parse(s: &str) -> Option<Scoring> {
        Self::from_name(s)
    }

    /// What results files written before the field existed did: score on the host.
    pub fn before_the_field() -> Scoring {
        Scoring::Host
    }
}

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    /// The allowed spellings, as error messages list them.
    pub const ALLOWED: &'static str = "cpu, cuda, cuda:N";

    /// Parses `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn parse(s: &str) -> Option<Device> {
        match s {
            "cpu" => Some(Device::Cpu),
            "cuda" => Some(Device::Cuda(0)),
            _ => s.strip_prefix("cuda:")?.parse().ok().map(Device::Cuda),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Device::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown device {s:?}")))
    }
}

/// How a two-tower request searches the catalog: a full scan, or an approximate
/// nearest-neighbour index with its search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Index {
    /// Every item scored.
    Exact,
    /// A hierarchical navigable small-world graph: `m` links per node, `ef` candidates kept
    /// while searching (`ef_construction` while building, fixed at 128), items inserted by
    /// `build_threads` threads at once (1 unless named: one thread builds the same graph every
    /// time; USearch's concurrent insertion does not, see `retrieval::hnsw`).
    Hnsw {
        m: usize,
        ef: usize,
        build_threads: usize,
    },
    /// An inverted file: `nlist` k-means cells, the `nprobe` nearest scanned per query.
    Ivf { nlist: usize, nprobe: usize },
}

impl Index {
    /// The forms `parse` takes, as error messages list them.
    pub const FORMS: &'static str =
        "\"exact\", \"hnsw:m=16,ef=64\" or \"ivf:nlist=1024,nprobe=16\"";

    /// Parses `exact`, `hnsw:m=M,ef=EF[,build_threads=T]` or `ivf:nlist=N,nprobe=P` (every
    /// parameter named but `build_threads`, each at least 1, `nprobe` ≤ `nlist`, `m` ≥ 2).
    pub fn parse(s: &str) -> std::result::Result<Index, String> {
        let (kind, params) = s.split_once(':').unwrap_or((s, ""));
        let mut values = std::collections::BTreeMap::new();
        for part in params.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=value"))?;
            let v: usize = v
                .trim()
                .parse()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| format!("{k} = {v:?} is not a whole number of at least 1"))?;
            values.insert(k.trim().to_string(), v);
        }
        let mut take = |name: &str| {
            values
                .remove(name)
                .ok_or_else(|| format!("{kind} needs {name}=…; use {}", Index::FORMS))
        };
        let index = match kind.trim() {
            "exact" => Index::Exact,
            "hnsw" => Index::Hnsw {
                m: take("m")?,
                ef: take("ef")?,
                build_threads: values.remove("build_threads").unwrap_or(1),
            },
            "ivf" => Index::Ivf {
                nlist: take("nlist")?,
                nprobe: take("nprobe")?,
            },
            other => return Err(format!("unknown index {other:?}; use {}", Index::FORMS)),
        };
        if let Some(extra) = values.keys().next() {
            return Err(format!(
                "{kind} takes no parameter {extra:?}; use {}",
                Index::FORMS
            ));
        }
        match index {
            Index::Hnsw { m, .. } if m < 2 => Err("hnsw needs m ≥ 2".into()),
            Index::Ivf { nlist, nprobe } if nprobe > nlist => Err(format!(
                "ivf nprobe = {nprobe} is more than nlist = {nlist}"
            )),
            i => Ok(i),
        }
    }
}

impl Index {
    /// Whether this build can search with the index: HNSW needs USearch (the `ann` feature).
    pub fn available(self) -> std::result::Result<(), String> {
        match self {
            Index::Hnsw { .. } if !cfg!(feature = "ann") => Err(
                "index hnsw needs USearch, which this build leaves out; rebuild with --features \
                 ann"
                .into(),
            ),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Index::Exact => f.write_str("exact"),
            Index::Hnsw {
                m,
                ef,
                build_threads,
            } => {
                write!(f, "hnsw:m={m},ef={ef}")?;
                match build_threads {
                    1 => Ok(()),
                    t => write!(f, ",build_threads={t}"),
                }
            }
            Index::Ivf { nlist, nprobe } => write!(f, "ivf:nlist={nlist},nprobe={nprobe}"),
        }
    }
}

impl Serialize for Index {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Index {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Index::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A two-tower run's retrieval levers: the item embeddings' precision and the index that
/// searches them. Runs of scenarios that sweep these carry it (and name it in their ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Retrieval {
    pub item_precision: Precision,
    pub index: Index,
}

impl Retrieval {
    /// Every item scored in fp32: what a run that names no retrieval lever does.
    pub const EXACT_FP32: Retrieval = Retrieval {
        item_precision: Precision::Fp32,
        index: Index::Exact,
    };
}

impl std::fmt::Display for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} items, {}", self.item_precision, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_allowed_lists_every_value() {
        for b in BackendKind::ALL {
            assert_eq!(BackendKind::parse(b.name()), Some(b));
        }
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()), Some(m));
        }
        for l in Load::ALL {
            assert_eq!(Load::parse(l.name()), Some(l));
        }
        assert_eq!(BackendKind::allowed(), "candle, onnx, torch");
        assert_eq!(Precision::allowed(), "fp32, bf16, fp16, int8");
        assert_eq!(Mode::allowed(), "two-tower, cross-encoder");
        assert_eq!(Load::allowed(), "offline, single-stream, server");
        assert_eq!(Precision::parse("f16"), Some(Precision::Fp16));
        assert_eq!(Device::parse("cuda:3"), Some(Device::Cuda(3)));
        assert_eq!(Device::parse("gpu"), None);
    }

    #[test]
    fn indexes_parse_from_their_display_form_and_bad_forms_say_why() {
        for i in [
            Index::Exact,
            Index::Hnsw {
                m: 16,
                ef: 64,
                build_threads: 1,
            },
            Index::Hnsw {
                m: 16,
                ef: 64,
                build_threads: 4,
            },
            Index::Ivf {
                nlist: 1024,
                nprobe: 16,
            },
        ] {
            assert_eq!(Index::parse(&i.to_string()), Ok(i));
            assert_eq!(serde_json::to_string(&i).unwrap(), format!("\"{i}\""));
        }
        assert_eq!(
            Index::parse("ivf:nprobe=4,nlist=64"),
            Ok(Index::Ivf {
                nlist: 64,
                nprobe: 4
            })
        );
        // One thread builds unless the scenario names more; a graph built by one thread
        // is written without the parameter, so results from before it read the same.
        assert_eq!(
            Index::parse("hnsw:m=16,ef=64"),
            Ok(Index::Hnsw {
                m: 16,
                ef: 64,
                build_threads: 1
            })
        );
        assert_eq!(
            Index::parse("hnsw:build_threads=2,ef=64,m=16")
                .unwrap()
                .to_string(),
            "hnsw:m=16,ef=64,build_threads=2"
        );
        for (bad, why) in [
            ("flat", "unknown index"),
            ("hnsw:m=16,ef=64,build_threads=0", "at least 1"),
            ("ivf:nlist=8,nprobe=4,build_threads=2", "no parameter"),
            ("hnsw:m=16", "needs ef"),
            ("hnsw:m=1,ef=8", "m ≥ 2"),
            ("ivf:nlist=8,nprobe=9", "more than nlist"),
            ("ivf:nlist=8,nprobe=0", "at least 1"),
            ("exact:k=3", "no parameter"),
        ] {
            let e = Index::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn serde_names_match_the_display_names() {
        for m in Mode::ALL {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        for l in Load::ALL {
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{l}\""));
        }
        for p in Precision::ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
    }
}
