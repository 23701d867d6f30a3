//! How long libtorch's OpenMP threads spin between parallel regions, chosen by measurement on the
//! host that runs.
//!
//! The PyPI libtorch runs its intra-op parallel regions on libgomp. After each region a worker
//! thread spins `GOMP_SPINCOUNT` times before it sleeps on a futex (libgomp's default 300,000,
//! about 3 ms by its own estimate of 100,000 spins a millisecond; `OMP_WAIT_POLICY=PASSIVE`
//! makes it 0). Two costs pull against each other. Without a spin every region pays a futex
//! wake-up: libtorch runs a dozen regions per encoder layer, and on a 2-vCPU AMD EPYC VM one
//! per-row int8 quantization (6 small ops) took 0.35 ms passive against 0.04 ms spinning
//! (`scripts/bench/int8_ops.py`). With a
//! long spin the threads keep burning the cores after the forward pass while the rayon threads
//! score and rank (torch, tiny, two-tower, batch 8, 2 threads: p50 281 ms at the default spin
//! against 6.6 ms passive). Which spin wins depends on the host, the shape and the catalog, so
//! before the first torch run of a shape the parent times [`CANDIDATES`] in probe processes
//! (`recbench __openmp-probe`: a forward plus the run's scoring step, interleaved rounds), keeps
//! the fastest, remembers it per host (CPU model and flags), libtorch version, threads, precision
//! and shape in `<cache>/kernels/openmp.json`, and sets
//! `GOMP_SPINCOUNT` for the worker. A user's `OMP_WAIT_POLICY` or `GOMP_SPINCOUNT` is kept and
//! nothing is measured.
//!
//! The forward is a stand-in of the model's layers in fp32 (`torch::probe_forward`) for fp32
//! and fp16 runs, and the run's own encoder for int8 and bf16, whose parallel regions the
//! stand-in does not have: the int8 path runs recbench's per-row passes (torch_quant.cpp) as
//! OpenMP regions of their own. With the stand-in, the three spins of one int8 race on the AMX
//! VM timed within 0.3% of each other; the 1,000 it kept left MiniLM int8 at batch 8 at 4.9 ms
//! per sequence, against 3.1 ms under libgomp's default spin in the run before
//! (docs/benchmarks/anchors-vm-20261206T0529Z.jsonl, `…0157Z.jsonl`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::spec::RunSpec;
use crate::spec::{BackendKind, Device, Mode, Precision};
use crate::tuning::choices::Decided;

/// The spin counts raced: none (what `OMP_WAIT_POLICY=PASSIVE` gives), a short spin (about
/// 10 µs by libgomp's estimate) and libgomp's default (what PyTorch users get).
pub const CANDIDATES: [u64; 3] = [0, 1_000, 300_000];

/// Interleaved rounds of the candidates (A B C A B C …); each candidate keeps its best round.
const ROUNDS: usize = 2;

/// How long one probe process times its iterations (after one warm-up, at least 1 timed).
const PROBE_BUDGET: Duration = Duration::from_millis(250);

/// The environment variables through which a user forces the spin.
const USER_ENV: [&str; 2] = ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT"];

/// The spin a worker runs with and the note that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `GOMP_SPINCOUNT` for the worker; `None` leaves the user's environment as it is.
    pub spin: Option<u64>,
    pub note: String,
}

/// What a probe measures: the run's model, sequences per forward, tokens per sequence, threads,
/// and the items scored per forward (0: no catalog scoring, as in cross-encoder runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub model: crate::model::Preset,
    pub precision: Precision,
    pub sequences: usize,
    pub seq: usize,
    pub threads: usize,
    pub items: usize,
}

impl Shape {
    fn of(spec: &RunSpec) -> Shape {
        Shape {
            model: spec.model,
            precision: spec.precision,
            sequences: spec.sequences_per_batch(),
            seq: spec.seq_len,
            threads: spec.threads,
            items: if spec.mode == Mode::TwoTower {
                spec.catalog_items
            } else {
                0
            },
        }
    }

    /// Whether the probe runs the run's own encoder (its spec) rather than the fp32 stand-in.
    fn own_encoder(&self) -> bool {
        matches!(self.precision, Precision::Int8 | Precision::Bf16)
    }

    /// The forward the probe times: "int8 encoder" or "fp32 stand-in".
    fn forward(&self) -> String {
        if self.own_encoder() {
            format!("{} encoder", self.precision)
        } else {
            "fp32 stand-in".into()
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--model".into(),
            self.model.name().into(),
            "--sequences".into(),
            self.sequences.to_string(),
            "--seq".into(),
            self.seq.to_string(),
            "--threads".into(),
            self.threads.to_string(),
            "--items".into(),
            self.items.to_string(),
        ]
    }
}

/// The spin for the worker of `spec`: `None` for runs that do not load libtorch's OpenMP (other
/// backends, CUDA devices, builds without torch).
pub fn decide(exe: &Path, spec: &RunSpec, spec_path: &Path) -> Option<Decision> {
    if spec.backend != BackendKind::Torch || spec.device != Device::Cpu || !cfg!(feature = "torch")
    {
        return None;
    }
    let user = crate::tuning::set_in_env(&USER_ENV);
    if !user.is_empty() {
        return Some(Decision {
            spin: None,
            note: format!(
                "openmp: {} set by the user, kept (not measured)",
                user.join(", ")
            ),
        });
    }
    let shape = Shape::of(spec);
    let key = key(&shape);
    let decided = crate::tuning::choices::recall_or_measure(
        FILE,
        &key,
        |v| v.split_whitespace().next()?.parse().ok(),
        || {
            let times = race(exe, &shape, spec_path)?;
            let best = times
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| CANDIDATES[i])
                .expect("candidates");
            Ok::<_, String>((best, format!("{best} {}", timings(&times, &shape))))
        },
    );
    Some(match decided {
        Ok(d) => Decision {
            spin: Some(d.value),
            note: note(&d),
        },
        // A probe that cannot run leaves the worker on no spin, the setting that cannot
        // starve the scoring threads, and says so.
        Err(why) => Decision {
            spin: Some(0),
            note: format!("openmp: GOMP_SPINCOUNT=0 (not measured: {why})"),
        },
    })
}

const FILE: &str = "openmp";

fn key(s: &Shape) -> String {
    format!(
        "cpu {}, {}, {} threads, spins {:?}, {} {} {}x{} tokens, {} items",
        crate::tuning::choices::host(),
        BackendKind::Torch.runtime_version(),
        s.threads,
        CANDIDATES,
        s.model.name(),
        s.forward(),
        s.sequences,
        s.seq,
        s.items
    )
}

/// "(0: 12.10 ms, 1000: 9.80 ms, 300000: 10.31 ms per fp32 stand-in forward + scoring of 1 ×
/// 128 tokens)".
fn timings(times: &[f64], s: &Shape) -> String {
    let each: Vec<String> = CANDIDATES
        .iter()
        .zip(times)
        .map(|(c, t)| format!("{c}: {t:.2} ms"))
        .collect();
    format!(
        "({} per {} forward{} of {} × {} tokens)",
        each.join(", "),
        s.forward(),
        if s.items > 0 { " + scoring" } else { "" },
        s.sequences,
        s.seq
    )
}

/// The run's note from a decision remembered as "SPIN (timings)".
fn note(d: &Decided<u64>) -> String {
    let detail = d.how.split_once(' ').map_or("", |(_, t)| t);
    format!(
        "openmp: GOMP_SPINCOUNT={} {} {detail}",
        d.value,
        d.provenance()
    )
}

/// Each candidate's best over [`ROUNDS`] interleaved rounds of probe processes, in ms.
fn race(exe: &Path, shape: &Shape, spec_path: &Path) -> Result<Vec<f64>, String> {
    let mut best = vec![f64::INFINITY; CANDIDATES.len()];
    for _ in 0..ROUNDS {
        for (spin, b) in CANDIDATES.iter().zip(best.iter_mut()) {
            *b = b.min(probe_process(exe, shape, spec_path, *spin)?);
        }
    }
    Ok(best)
}

fn probe_process(exe: &Path, shape: &Shape, spec_path: &Path, spin: u64) -> Result<f64, String> {
    let threads = shape.threads.to_string();
    let mut cmd = Command::new(exe);
    cmd.arg("__openmp-probe").args(shape.args());
    if shape.own_encoder() {
        cmd.arg("--spec").arg(spec_path);
    }
    let out = cmd
        .env_remove("OMP_WAIT_POLICY")
        .env("GOMP_SPINCOUNT", spin.to_string())
        .env("OMP_NUM_THREADS", &threads)
        .env("RAYON_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("probe process: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "probe process failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    text.trim()
        .parse()
        .map_err(|_| format!("probe process printed {:?}", text.trim()))
}

/// The probe process: the median milliseconds of one stand-in forward pass of the model's layers
/// (`torch::probe_forward`) followed, for two-tower shapes, by scoring the forward's users
/// against `items` catalog rows with the worker's scoring code, over [`PROBE_BUDGET`].
pub fn probe(shape: &Shape) -> crate::error::Result<f64> {
    // As in the worker it stands in for.
    let _ = crate::tuning::malloc::keep_freed_memory();
    probe_with(shape, PROBE_BUDGET)
}

/// The probe process of a run whose own encoder is timed: the median milliseconds of its
/// forward (`worker::probe_forward_then_ms`), followed for two-tower runs by scoring the
/// forward's users against the catalog's number of rows.
pub fn probe_spec(spec_path: &Path) -> crate::error::Result<f64> {
    let spec = super::worker::read_spec(spec_path)?;
    let shape = Shape::of(&spec);
    let mut index: Option<crate::recommender::ItemIndex> = None;
    super::worker::probe_forward_then_ms(&spec, PROBE_BUDGET, |users| {
        if shape.items > 0 {
            let index = index.get_or_insert_with(|| crate::recommender::ItemIndex {
                dim: users.dim,
                data: vec![0.02; shape.items * users.dim],
            });
            std::hint::black_box(index.scores(users, shape.threads));
        }
    })
}

#[cfg(feature = "torch")]
fn probe_with(shape: &Shape, budget: Duration) -> crate::error::Result<f64> {
    let cfg = shape.model.config();
    let mut forward = crate::backend::probe_forward(
        BackendKind::Torch,
        &cfg,
        shape.sequences,
        shape.seq,
        shape.threads,
    )?;
    let users = crate::backend::Embeddings {
        rows: shape.sequences,
        dim: cfg.hidden_size,
        data: vec![0.01; shape.sequences * cfg.hidden_size],
    };
    let index = crate::recommender::ItemIndex {
        dim: cfg.hidden_size,
        data: vec![0.02; shape.items * cfg.hidden_size],
    };
    let mut step = || -> crate::error::Result<()> {
        forward()?;
        if shape.items > 0 {
            std::hint::black_box(index.scores(&users, shape.threads));
        }
        Ok(())
    };
    step()?;
    let start = std::time::Instant::now();
    let mut times = Vec::new();
    while times.is_empty() || (start.elapsed() < budget && times.len() < 1000) {
        let t = std::time::Instant::now();
        step()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(crate::stats::median(&times))
}

#[cfg(not(feature = "torch"))]
fn probe_with(_: &Shape, _: Duration) -> crate::error::Result<f64> {
    Err(crate::error::Error::backend(
        "torch",
        "the OpenMP probe needs the torch backend; rebuild with --features torch",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_decision_reads_back_as_its_spin_and_timings() {
        let s = Shape {
            model: crate::model::Preset::Tiny,
            precision: Precision::Fp32,
            sequences: 1,
            seq: 128,
            threads: 2,
            items: 64,
        };
        let mut d = Decided {
            value: 1000,
            how: format!("1000 {}", timings(&[12.1, 9.8, 10.3], &s)),
            remembered: false,
        };
        assert_eq!(
            note(&d),
            "openmp: GOMP_SPINCOUNT=1000 chosen by measurement (0: 12.10 ms, 1000: 9.80 ms, \
             300000: 10.30 ms per fp32 stand-in forward + scoring of 1 × 128 tokens)"
        );
        d.remembered = true;
        assert!(note(&d).starts_with(
            "openmp: GOMP_SPINCOUNT=1000 measured earlier on this host (0: 12.10 ms, "
        ));
    }
}
