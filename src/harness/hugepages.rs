//! Whether glibc's malloc asks for transparent huge pages in a worker, chosen by measurement on
//! the host that runs.
//!
//! An encoder streams its weights through every forward: MiniLM-L6's layers hold 42 MB in fp32,
//! which on 4 KiB pages is 10,000 pages, several times what a core's TLB holds. With
//! `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc 2.35 and later) malloc marks the memory it maps
//! `MADV_HUGEPAGE`, and where the kernel's transparent huge pages are in `madvise` mode (the
//! common default) the kernel backs it with 2 MiB pages. Whether that pays depends on the host,
//! the runtime and the shape. On the 2-vCPU AMD EPYC VM of docs/benchmarks/
//! (`scripts/bench/hugepages.sh`, MiniLM-L6, fp32, 128 tokens, 3 interleaved rounds), time per
//! sequence with huge pages ÷ without, medians at batch 1 / 8 / 32: ONNX Runtime 0.73 / 1.01 /
//! 0.98, libtorch 1.01 / 0.95 / 0.98, candle 1.01 / 1.02 / 0.99, single rounds from 0.71 to
//! 1.25 (`hugepages-vm-*-20261201T06*.md`): mostly within that host's noise, now and then a
//! clear gain, no answer that holds everywhere. A tunable is read when a process starts, so
//! before the first run of a shape the parent times both in probe processes
//! (`recbench __hugepage-probe`: the run's encoder on the run's batch, opened as the worker
//! opens it; [`ROUNDS`] rounds, order A B B A B A A B), keeps huge pages when the median of the
//! rounds' ratios (huge pages ÷ glibc's default) is below 1, remembers the choice per host
//! (CPU model and flags), runtime, precision, model, threads and shape in
//! `<cache>/kernels/hugepages.json`, and sets the tunable for the worker or not.
//!
//! Why warmed-up probes and a median of 4 rounds: a process's first two forwards with huge
//! pages are slow (on the Zen 5 VM, MiniLM at batch 32: 406–479 ms against 312–365 without,
//! then alike; `docs/benchmarks/hugepages-vm-first-forwards-20261201T1503Z.md`), and probes
//! timed from their second forward measured that start (see `worker::probe_forward_ms`).
//! Single probes of 300 ms differ by up to 15% on that host; with 4 rounds and the median, one
//! round caught in a slow spell no longer decides, and where the effect is nil (whole runs
//! there: 0.99 / 1.03 / 0.95 at batch 1 / 8 / 32, `hugepages-vm-onnx-20261201T1504Z.md`)
//! either choice costs nothing.
//!
//! Nothing is measured, and the worker runs as it would have, where the choice cannot matter or
//! is not recbench's: a user's own malloc tunables are kept; `RECBENCH_HUGEPAGES=on|off` forces
//! it; transparent huge pages off (`never`) or always on; a glibc without the tunable; a model
//! whose layers hold less than [`MIN_WEIGHT_BYTES`] (a few TLB entries' worth of 2 MiB pages);
//! GPU devices.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::spec::RunSpec;
use crate::spec::{Device, Precision};
use crate::tuning::choices::Decided;
use crate::tuning::malloc::{HUGETLB_CHOSEN_ENV, HUGETLB_TUNABLE};

/// Forces the choice: `on` or `off`.
pub const FORCE_ENV: &str = "RECBENCH_HUGEPAGES";

/// Rounds of the two candidates (A B B A B A A B).
const ROUNDS: usize = 4;

/// How long one probe process times its forwards, after its warm-up (at least 3 timed; see
/// `worker::probe_forward_ms`).
const PROBE_BUDGET: Duration = Duration::from_millis(300);

/// Below this much weight in the encoder's layers nothing is measured: 4 KiB pages cover it in
/// a TLB of 2,048 entries, which cores have had since about 2013.
pub const MIN_WEIGHT_BYTES: u64 = 8 << 20;

/// What a worker runs with, and the note that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `Some(true)`: the worker gets `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`; `Some(false)`:
    /// glibc's default; `None`: the environment is left as the user set it.
    pub on: Option<bool>,
    pub note: String,
}

impl Decision {
    /// The environment a worker (or probe) gets for this decision.
    pub fn env(&self) -> Vec<(&'static str, &'static str)> {
        match self.on {
            Some(true) => vec![
                ("GLIBC_TUNABLES", HUGETLB_TUNABLE),
                (HUGETLB_CHOSEN_ENV, "1"),
            ],
            _ => Vec::new(),
        }
    }

    fn kept(note: String) -> Decision {
        Decision { on: None, note }
    }
}

/// What `RECBENCH_HUGEPAGES` forces, if it is set; an error names it when it is neither `on`
/// nor `off`.
pub fn forced() -> crate::error::Result<Option<bool>> {
    match std::env::var(FORCE_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v == "on" => Ok(Some(true)),
        Ok(v) if v == "off" => Ok(Some(false)),
        Ok(v) => Err(crate::error::Error::input(
            "<environment>",
            None,
            FORCE_ENV,
            format!("{v:?} is neither on nor off"),
        )),
    }
}

/// The decision for the worker of `spec`, whose spec is written at `spec_path`; `env` is the
/// rest of the worker's environment (threads, OpenMP spin), which the probes get too. An error
/// is a bad `RECBENCH_HUGEPAGES`.
pub fn decide(
    exe: &Path,
    spec: &RunSpec,
    spec_path: &Path,
    env: &[(&str, String)],
) -> crate::error::Result<Option<Decision>> {
    if spec.device != Device::Cpu || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Ok(None);
    }
    if let Some(user) = crate::tuning::malloc::user_tunables() {
        return Ok(Some(Decision::kept(format!(
            "huge pages: {user} set by the user, kept (not measured)"
        ))));
    }
    if let Some(on) = forced()? {
        return Ok(Some(Decision {
            on: Some(on),
            note: format!(
                "huge pages: {}, forced by {FORCE_ENV}={}",
                what(on),
                if on { "on" } else { "off" }
            ),
        }));
    }
    if let Some(why) = not_measured(spec) {
        return Ok(Some(Decision::kept(format!(
            "huge pages: glibc's default (not measured: {why})"
        ))));
    }
    let timeout = Duration::from_secs_f64(spec.timeout_s);
    let decided = crate::tuning::choices::recall_or_measure(
        FILE,
        &key(spec),
        |v| v.split_whitespace().next()?.parse().ok(),
        || {
            let rounds = race(exe, spec_path, env, timeout)?;
            let best = keep_huge(&rounds);
            Ok::<_, String>((best, format!("{best} {}", timings(&rounds, spec))))
        },
    );
    Ok(Some(match decided {
        Ok(d) => Decision {
            on: Some(d.value),
            note: note(&d),
        },
        Err(why) => Decision {
            on: Some(false),
            note: format!("huge pages: glibc's default (not measured: {why})"),
        },
    }))
}

const FILE: &str = "hugepages";

fn what(on: bool) -> String {
    if on {
        format!("malloc asks for transparent huge pages (GLIBC_TUNABLES={HUGETLB_TUNABLE})")
    } else {
        "glibc's default (4 KiB pages unless the kernel merges them)".into()
    }
}

/// Why a choice cannot matter here, if it cannot.
fn not_measured(spec: &RunSpec) -> Option<String> {
    let weights = layer_weight_bytes(spec);
    if weights < MIN_WEIGHT_BYTES {
        return Some(format!(
            "the encoder's layers hold {:.1} MiB of weights, under the {} MiB that 4 KiB pages \
             cover in a 2,048-entry TLB",
            weights as f64 / (1 << 20) as f64,
            MIN_WEIGHT_BYTES >> 20
        ));
    }
    host_unsuited()
}

/// Why malloc's huge pages cannot be chosen on this host, if they cannot: the kernel's
/// transparent huge pages are not in `madvise` mode, or glibc has no tunable for them.
pub fn host_unsuited() -> Option<String> {
    match thp_mode().as_deref() {
        Some("madvise") => {}
        Some("always") => {
            return Some(
                "transparent huge pages are always on here: the kernel backs large blocks with \
                 them unasked"
                    .into(),
            )
        }
        Some(m) => return Some(format!("transparent huge pages are {m} on this host")),
        None => return Some(format!("{THP_ENABLED} cannot be read")),
    }
    match glibc_version() {
        Some((major, minor)) if (major, minor) >= (2, 35) => None,
        Some((major, minor)) => Some(format!(
            "glibc {major}.{minor} has no malloc.hugetlb tunable (2.35 and later)"
        )),
        None => Some("the C library's version is unknown".into()),
    }
}

/// The weights of the encoder's layers (not the embedding tables, of which a forward reads a
/// few rows) at the run's precision.
fn layer_weight_bytes(spec: &RunSpec) -> u64 {
    let full = spec.model.config();
    let mut c = spec.prune.apply(&full).unwrap_or(full);
    let all = c.parameters();
    c.num_layers = 0;
    let bytes = match spec.precision {
        Precision::Fp32 => 4,
        Precision::Bf16 | Precision::Fp16 => 2,
        Precision::Int8 => 1,
    };
    (all - c.parameters()) * bytes
}

const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// The kernel's transparent huge page mode: the bracketed word of "always [madvise] never".
fn thp_mode() -> Option<String> {
    let text = std::fs::read_to_string(THP_ENABLED).ok()?;
    parse_thp_mode(&text)
}

fn parse_thp_mode(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    Some(text[start..start + len].to_string())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> Option<(u32, u32)> {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    let mut parts = v.to_str().ok()?.split('.').map(|p| p.parse().ok());
    Some((parts.next()??, parts.next()??))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<(u32, u32)> {
    None
}

fn key(spec: &RunSpec) -> String {
    format!(
        "cpu {}, {} {}, {}, {} threads, {} {}, {}x{} tokens",
        crate::tuning::choices::host(),
        spec.backend.name(),
        spec.backend.runtime_version(),
        spec.precision,
        spec.threads,
        spec.model.name(),
        spec.prune,
        spec.sequences_per_batch(),
        spec.seq_len
    )
}

/// Huge pages when the median of the rounds' ratios, huge pages ÷ glibc's default, is below 1.
fn keep_huge(rounds: &[[f64; 2]]) -> bool {
    let ratios: Vec<f64> = rounds.iter().map(|[off, on]| on / off).collect();
    crate::stats::median(&ratios) < 1.0
}

/// "(glibc's default: 136.20, 133.10 ms; huge pages: 131.02, 134.00 ms per forward of 8 × 128
/// tokens, round by round, A B B A …)".
fn timings(rounds: &[[f64; 2]], spec: &RunSpec) -> String {
    let each = |i: usize| {
        let t: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r[i])).collect();
        t.join(", ")
    };
    format!(
        "(glibc's default: {} ms; huge pages: {} ms per forward of {} × {} tokens, round by \
         round, A B B A B A A B; huge pages are kept when the median of the rounds' ratios is \
         below 1)",
        each(0),
        each(1),
        spec.sequences_per_batch(),
        spec.seq_len
    )
}

/// The run's note from a decision remembered as "BOOL (timings)".
fn note(d: &Decided<bool>) -> String {
    let detail = d.how.split_once(' ').map_or("", |(_, t)| t);
    format!("huge pages: {}, {} {detail}", what(d.value), d.provenance())
}

/// The median ms per forward of each probe process, `[glibc's default, huge pages]` per round;
/// the order alternates (A B B A B A A B), so a drift in the host's speed favours neither.
fn race(
    exe: &Path,
    spec_path: &Path,
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<Vec<[f64; 2]>, String> {
    let mut rounds = vec![[0.0; 2]; ROUNDS];
    for (n, round) in rounds.iter_mut().enumerate() {
        let order = if matches!(n % 4, 0 | 3) {
            [0, 1]
        } else {
            [1, 0]
        };
        for i in order {
            round[i] = probe_process(exe, spec_path, env, i == 1, timeout)?;
        }
    }
    Ok(rounds)
}

fn probe_process(
    exe: &Path,
    spec_path: &Path,
    env: &[(&str, String)],
    on: bool,
    timeout: Duration,
) -> Result<f64, String> {
    // Output to files beside the spec: nothing to drain while the probe runs.
    let file = |ext: &str| spec_path.with_file_name(format!("hugepage-probe-{on}.{ext}"));
    let (out_path, err_path) = (file("out"), file("err"));
    let create = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cmd = Command::new(exe);
    cmd.arg("__hugepage-probe")
        .arg("--spec")
        .arg(spec_path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("GLIBC_TUNABLES")
        .env_remove(HUGETLB_CHOSEN_ENV);
    let d = Decision {
        on: Some(on),
        note: String::new(),
    };
    cmd.envs(d.env())
        .stdin(Stdio::null())
        .stdout(create(&out_path)?)
        .stderr(create(&err_path)?);
    super::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("probe process: {e}"))?;
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "probe process timed out after {:.0} s (measure.timeout_s)",
                    timeout.as_secs_f64()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("probe process: {e}")),
        }
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        return Err(format!(
            "probe process failed ({status}): {}",
            err.trim().lines().last().unwrap_or("")
        ));
    }
    text.trim()
        .parse()
        .map_err(|_| format!("probe process printed {:?}", text.trim()))
}

/// The probe process: the median ms of the run's forward (see `worker::probe_forward_ms`).
pub fn probe(spec_path: &Path) -> crate::error::Result<f64> {
    let spec = super::worker::read_spec(spec_path)?;
    super::worker::probe_forward_ms(&spec, PROBE_BUDGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracketed_word_is_the_mode() {
        assert_eq!(
            parse_thp_mode("always [madvise] never\n").as_deref(),
            Some("madvise")
        );
        assert_eq!(
            parse_thp_mode("[always] madvise never").as_deref(),
            Some("always")
        );
        assert_eq!(parse_thp_mode("always madvise never"), None);
    }

    #[test]
    fn minilm_is_measured_and_the_tiny_model_is_not() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let mut spec = crate::results::ResultsFile::load(&p).unwrap().runs[0]
            .spec
            .clone();
        spec.precision = Precision::Fp32;
        spec.model = crate::model::Preset::Tiny;
        assert!(layer_weight_bytes(&spec) < MIN_WEIGHT_BYTES);
        spec.model = crate::model::Preset::parse("minilm-l6").unwrap();
        // 6 layers of 1.77 M parameters, in fp32.
        let b = layer_weight_bytes(&spec);
        assert!((42_000_000..43_000_000).contains(&b), "{b}");
        spec.precision = Precision::Int8;
        assert_eq!(layer_weight_bytes(&spec), b / 4);
    }

    #[test]
    fn huge_pages_are_kept_when_the_median_ratio_is_below_one() {
        // Faster in 3 rounds of 4, the slow one caught in a slow spell: kept.
        assert!(keep_huge(&[
            [10.0, 9.6],
            [10.0, 9.7],
            [9.0, 10.5],
            [10.0, 9.5]
        ]));
        // Faster in 2 rounds by little, slower in 2 by more: the median ratio is above 1.
        assert!(!keep_huge(&[
            [10.0, 9.9],
            [10.0, 11.0],
            [10.0, 9.95],
            [10.0, 11.5]
        ]));
        // Equal: glibc's default stays.
        assert!(!keep_huge(&[[10.0, 10.0]; 4]));
        // Slower in every round.
        assert!(!keep_huge(&[[9.0, 10.0]; 4]));
    }

    #[test]
    fn a_remembered_decision_reads_back_as_its_choice_and_timings() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/reference/quick/20261128T040112Z-vm.json");
        let spec = crate::results::ResultsFile::load(&p).unwrap().runs[0]
            .spec
            .clone();
        let d = Decided {
            value: true,
            how: format!(
                "true {}",
                timings(&[[136.2, 131.02], [133.1, 132.0]], &spec)
            ),
            remembered: false,
        };
        let n = note(&d);
        let earlier = note(&Decided {
            remembered: true,
            ..d
        });
        assert!(
            earlier.contains(", measured earlier on this host (glibc's default: 136.20"),
            "{earlier}"
        );
        assert!(n.starts_with("huge pages: malloc asks for transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), chosen by measurement (glibc's default: 136.20, 133.10 ms; huge pages: 131.02, 132.00 ms per forward of"), "{n}");
        assert_eq!(
            Decision {
                on: Some(true),
                note: n
            }
            .env(),
            vec![
                ("GLIBC_TUNABLES", HUGETLB_TUNABLE),
                (HUGETLB_CHOSEN_ENV, "1")
            ]
        );
    }
}
