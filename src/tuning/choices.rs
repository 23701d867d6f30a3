//! Kernel choices measured on this host, remembered in `<cache>/kernels/<file>.json` so a
//! later run on the same host (CPU model and flags), build (commit), runtime and shape reuses them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn path(file: &str) -> PathBuf {
    crate::model::cache_dir()
        .join("kernels")
        .join(format!("{file}.json"))
}

fn read(path: &Path) -> BTreeMap<String, String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The runtimes' own caps on the vector ISA they use (ATen's kernels, oneDNN, MKL, FBGEMM):
/// set, they change every kernel's speed as a different CPU would.
pub const ISA_CAPS: [&str; 4] = [
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "FBGEMM_ENABLE_INSTRUCTIONS",
];

/// The [`ISA_CAPS`] set in this process, as `NAME=value`.
pub fn isa_caps() -> Vec<String> {
    super::set_in_env(&ISA_CAPS)
}

/// This host and build as kernel choices depend on them: a short hash of the CPU model,
/// signature and flags, of the [`isa_caps`] set, and of the commit this binary was built
/// from (a later commit may change a candidate kernel, or what runs around it, so it
/// measures afresh). Read once per process.
pub fn host() -> String {
    use sha2::{Digest, Sha256};
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let caps: String = isa_caps().iter().map(|c| format!("\n{c}")).collect();
        let h = Sha256::digest(format!(
            "{}{caps}\nrecbench {}",
            crate::telemetry::inventory::cpu_identity(),
            env!("RECBENCH_GIT_COMMIT")
        ));
        crate::util::hash::hex(&h[..6])
    })
    .clone()
}

/// A decision by measurement: the choice, the text remembered for it (the choice and the
/// timings behind it) and whether it was read back from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided<T> {
    pub value: T,
    pub how: String,
    pub remembered: bool,
}

impl<T> Decided<T> {
    /// Where the decision came from, as the run's notes say it.
    pub fn provenance(&self) -> &'static str {
        if self.remembered {
            "measured earlier on this host"
        } else {
            "chosen by measurement"
        }
    }

    /// `how` and where it came from: "plain/all (…), chosen by measurement".
    pub fn told(&self) -> String {
        format!("{}, {}", self.how, self.provenance())
    }
}

/// The decision remembered under `key` in `<cache>/kernels/<file>.json` when `parse` can
/// read it, else the one `measure` makes (the choice and the text to remember), remembered
/// there for the next run. A remembered text `parse` cannot read (written when other
/// candidates were raced) counts as none. When `measure` fails, nothing is remembered.
///
/// Every choice by measurement goes through here: candle's kernels and int8 layout, the ONNX
/// graph, torch's linear kernels, the OpenMP spin and the workers' huge pages (a race among named
/// candidates through [`recall_or_race`]: candle's int8 and bf16 layer layouts).
pub fn recall_or_measure<T, E>(
    file: &str,
    key: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    measure: impl FnOnce() -> Result<(T, String), E>,
) -> Result<Decided<T>, E> {
    recall_or_measure_at(&path(file), key, parse, measure)
}

/// [`recall_or_measure`] for a race among named candidates: `race` times each (milliseconds,
/// in its order) and the fastest is kept, the first among equals, remembered as
/// "<fastest>: <name> <ms> ms, <name> <ms> ms <suffix>" (the remembered choice is read back
/// from the text before ": " by `parse`). Returns the choice and its timings with where they
/// came from, as a run's notes give them: "<name> <ms> ms, … <suffix>, chosen by measurement".
pub fn recall_or_race<T: Copy, E>(
    file: &str,
    key: &str,
    suffix: &str,
    name: impl Fn(T) -> &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
    race: impl FnOnce() -> Result<Vec<(T, f64)>, E>,
) -> Result<(T, String), E> {
    let decided = recall_or_measure(
        file,
        key,
        |v| v.split_once(": ").and_then(|(d, _)| parse(d)),
        || {
            let timed = race()?;
            let mut best: Option<(T, f64)> = None;
            for &(c, ms) in &timed {
                if best.is_none_or(|(_, b)| ms < b) {
                    best = Some((c, ms));
                }
            }
            let times: Vec<String> = timed
                .iter()
                .map(|&(c, ms)| format!("{} {ms:.2} ms", name(c)))
                .collect();
            let best = best.expect("a race has candidates").0;
            Ok((
                best,
                format!("{}: {} {suffix}", name(best), times.join(", ")),
            ))
        },
    )?;
    let timings = decided.how.split_once(": ").map_or("", |(_, t)| t);
    Ok((
        decided.value,
        format!("{timings}, {}", decided.provenance()),
    ))
}

fn recall_or_measure_at<T, E>(
    path: &Path,
    key: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    measure: impl FnOnce() -> Result<(T, String), E>,
) -> Result<Decided<T>, E> {
    if let Some(how) = read(path).remove(key) {
        if let Some(value) = parse(&how) {
            return Ok(Decided {
                value,
                how,
                remembered: true,
            });
        }
    }
    let (value, how) = measure()?;
    // Best effort: a cache that cannot be written only costs a measurement next time.
    let mut all = read(path);
    all.insert(key.into(), how.clone());
    if let Ok(json) = serde_json::to_vec_pretty(&all) {
        let _ = crate::util::files::write_atomic(path, &json);
    }
    Ok(Decided {
        value,
        how,
        remembered: false,
    })
}

#[cfg(test)]
mod tests {
    use super::{recall_or_measure_at, Decided};

    /// The first call measures and remembers; the next reads it back without measuring; a
    /// remembered text the caller cannot read is measured afresh; a failed measurement
    /// leaves the cache as it was.
    #[test]
    fn a_decision_is_measured_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernels").join("k.json");
        let parse = |v: &str| v.split_whitespace().next()?.parse::<u32>().ok();
        let first = recall_or_measure_at::<_, ()>(&path, "a", parse, || Ok((7, "7 (7 ms)".into())));
        assert_eq!(
            first,
            Ok(Decided {
                value: 7,
                how: "7 (7 ms)".into(),
                remembered: false
            })
        );
        assert_eq!(first.unwrap().told(), "7 (7 ms), chosen by measurement");
        let again = recall_or_measure_at::<_, ()>(&path, "a", parse, || {
            panic!("a remembered decision is not measured again")
        })
        .unwrap();
        assert_eq!((again.value, again.remembered), (7, true));
        assert_eq!(again.told(), "7 (7 ms), measured earlier on this host");

        // A failed measurement remembers nothing; an unreadable text is measured again and
        // replaced.
        let failed = recall_or_measure_at(&path, "b", parse, || Err("no probe"));
        assert_eq!(failed, Err("no probe"));
        let unreadable = |_: &str| None::<u32>;
        let fresh = recall_or_measure_at::<_, ()>(&path, "a", unreadable, || Ok((9, "9".into())));
        assert!(!fresh.unwrap().remembered);
        let json = std::fs::read_to_string(&path).unwrap();
        assert!(
            json.contains(r#""a": "9""#) && !json.contains(r#""b""#),
            "{json}"
        );
    }
}
