//! Parity: does this run compute the same model as the reference?
//!
//! The reference is candle in fp32 on the CPU. For each model it encodes a fixed probe set of
//! user queries and the demo catalog once, and caches both. Every run encodes the same probes
//! (and the catalog, cached per backend and precision) and is compared on: the largest absolute
//! difference of any embedding component, the cosine of each probe embedding, and the overlap of
//! the top-10 catalog items each probe retrieves.
//!
//! Parity asks "does this backend compute this model?", so a pruned model is checked against
//! candle fp32 of the same pruned weights. [`quality`] asks "what does this configuration cost
//! in recommendations?": every run, quantised or pruned, against the full model in fp32.

use crate::backend::{self, BackendKind, Device, Embeddings, EncoderOptions, Precision};
use crate::error::{Error, Result};
use crate::model::{cache_dir, ModelFiles, Tokenizer};
use crate::recommender::{self, ItemIndex, TEXT_MAX_TOKENS};
use crate::results::Parity;

/// Fixed user queries of varied length (so padding and masking are exercised).
pub const PROBES: [&str; 16] = [
    "I love space exploration and science-fiction films.",
    "Something cosy to read on a rainy weekend.",
    "A gift for someone who enjoys cooking Italian food at home.",
    "Gear for a week of backpacking in the mountains.",
    "Historical dramas about the Second World War.",
    "Funny animated movies the whole family can watch together.",
    "Books that explain how computers and programming work.",
    "Thrillers with a detective solving a murder.",
    "Jazz",
    "Equipment for a home gym with little space.",
    "Epic fantasy with dragons, magic and a long quest across kingdoms, ideally the first book of a series so I can keep reading for months.",
    "Documentaries about nature and wildlife.",
    "Romantic comedies set in New York.",
    "A telescope for a beginner who wants to look at planets.",
    "Strategy games that take many hours to master.",
    "Podcasts about economics and business.",
];

/// The reference embeddings of one model.
pub struct Reference {
    pub probes: Embeddings,
    pub items: ItemIndex,
}

/// Cache key of item embeddings for a model on a backend at a precision, with the backend's own
/// cache tag (onnx: the graph flavour; torch fp32: the linear kernel), so different graphs or
/// kernels never share embeddings.
pub fn item_key(files: &ModelFiles, backend: BackendKind, precision: Precision) -> String {
    let key = base_key(files, backend, precision);
    match backend.cache_tag(precision) {
        Some(tag) => format!("{key}-{tag}"),
        None => key,
    }
}

/// As [`item_key`], for a loaded encoder: its own cache tag when it made a choice at load.
pub fn item_key_of(
    files: &ModelFiles,
    backend: BackendKind,
    precision: Precision,
    enc: &dyn backend::Encoder,
) -> String {
    match enc.cache_tag() {
        Some(tag) => format!("{}-{tag}", base_key(files, backend, precision)),
        None => item_key(files, backend, precision),
    }
}

/// Revision of candle's forward numerics, in every cache key of embeddings candle computed (the
/// reference's among them): a change that alters its float results bumps it, so embeddings an
/// older recbench cached are computed again instead of read back as this one's. r2
/// (2026-12-04): a mask of -1e4 and none without padding; on CUDA, Q scaled before Q·Kᵀ,
/// softmax and LayerNorm in the activations' dtype, and the layer kernels. r3: on the CPU the
/// scores are scaled again instead of Q (r2 caches scaled Q there).
const CANDLE_REVISION: &str = "r3";

/// `model-backend-precision`, with candle's revision after `candle`.
fn base_key(files: &ModelFiles, backend: BackendKind, precision: Precision) -> String {
    let rev = match backend {
        BackendKind::Candle => format!("-{CANDLE_REVISION}"),
        _ => String::new(),
    };
    format!("{}-{backend}{rev}-{precision}", files.cache_key())
}

fn probe_path(files: &ModelFiles) -> std::path::PathBuf {
    cache_dir().join("reference").join(format!(
        "{}-candle-{CANDLE_REVISION}-probes.f32",
        files.cache_key()
    ))
}

/// Encodes the probe set.
pub fn encode_probes(enc: &mut dyn backend::Encoder, tok: &Tokenizer) -> Result<Embeddings> {
    enc.encode(&tok.batch(&PROBES, TEXT_MAX_TOKENS)?)
}

/// Loads the reference of `files` from the cache, computing and caching it first if needed.
pub fn reference(files: &ModelFiles, tok: &Tokenizer) -> Result<Reference> {
    let path = probe_path(files);
    let items = recommender::bundled_items();
    let cached = std::fs::read(&path).ok().and_then(|b| {
        let dim = files.config.hidden_size;
        let data: Vec<f32> = b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (data.len() == dim * PROBES.len()).then_some(Embeddings {
            rows: PROBES.len(),
            dim,
            data,
        })
    });
    let key = item_key(files, BackendKind::Candle, Precision::Fp32);
    let opts = EncoderOptions {
        device: Device::Cpu,
        precision: Precision::Fp32,
        threads: crate::telemetry::inventory::default_threads(),
        shape_hint: None,
    };
    match cached {
        Some(probes) => {
            // The item cache is normally warm too; if not, it needs the encoder.
            let mut lazy: Option<Box<dyn backend::Encoder>> = None;
            let items = match recommender::cached_item_index(&items, &key) {
                Some(ix) => ix,
                None => {
                    let enc = lazy.insert(backend::open(BackendKind::Candle, files, opts)?);
                    recommender::item_index(enc.as_mut(), tok, &items, &key)?
                }
            };
            Ok(Reference { probes, items })
        }
        None => {
            let mut enc = backend::open(BackendKind::Candle, files, opts)?;
            let probes = encode_probes(enc.as_mut(), tok)?;
            if !probes.all_finite() {
                return Err(Error::Model(format!(
                    "reference embeddings of {} are not finite",
                    files.preset
                )));
            }
            let bytes: Vec<u8> = probes.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            crate::util::files::write_atomic(&path, &bytes)?;
            let items = recommender::item_index(enc.as_mut(), tok, &items, &key)?;
            Ok(Reference { probes, items })
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

/// The cosine of each probe embedding with the reference's.
fn cosines(probes: &Embeddings, reference: &Reference) -> Vec<f64> {
    (0..probes.rows)
        .map(|i| cosine(probes.row(i), reference.probes.row(i)))
        .collect()
}

/// The item scores of every probe, `[probe][item]`, ours and the reference's.
fn item_scores(
    probes: &Embeddings,
    items: &ItemIndex,
    reference: &Reference,
) -> (Vec<f32>, Vec<f32>) {
    (
        items.scores(probes, 1),
        reference.items.scores(&reference.probes, 1),
    )
}

/// Mean overlap of the top-10 catalog items each probe retrieves, ours against the reference's.
fn top10_overlap(probes: &Embeddings, items: &ItemIndex, reference: &Reference) -> f64 {
    let n = items.len();
    let (ours, theirs) = item_scores(probes, items, reference);
    let top =
        |s: &[f32]| -> Vec<usize> { recommender::top_k(s, 10).into_iter().map(|x| x.0).collect() };
    (0..probes.rows)
        .map(|i| {
            let (a, b) = (
                top(&ours[i * n..(i + 1) * n]),
                top(&theirs[i * n..(i + 1) * n]),
            );
            a.iter().filter(|x| b.contains(x)).count() as f64 / 10.0
        })
        .sum::<f64>()
        / probes.rows as f64
}

/// Ranks of `v` from 1, ties sharing their mean rank.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of two score lists of equal length.
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - mean) * (y - mean);
        saa += (x - mean).powi(2);
        sbb += (y - mean).powi(2);
    }
    sab / (saa * sbb).sqrt().max(1e-30)
}

/// Recommendation quality of a run against the **full** (unpruned) model in fp32: the same
/// probes and catalog as parity, so pruning and precision are judged on one scale. `full` is
/// the reference of the unpruned model; `what` names it.
pub fn quality(
    probes: &Embeddings,
    items: &ItemIndex,
    full: &Reference,
    what: String,
) -> crate::results::Quality {
    let n = items.len();
    let cos = cosines(probes, full);
    let (ours, theirs) = item_scores(probes, items, full);
    let rank = (0..probes.rows)
        .map(|i| spearman(&ours[i * n..(i + 1) * n], &theirs[i * n..(i + 1) * n]))
        .sum::<f64>()
        / probes.rows as f64;
    let clean = |x: f64| if x.is_finite() { x } else { -1.0 };
    crate::results::Quality {
        reference: what,
        top10_overlap: top10_overlap(probes, items, full),
        mean_cosine: clean(cos.iter().sum::<f64>() / cos.len() as f64),
        score_rank_correlation: clean(rank),
    }
}

/// Tolerance of a precision, as (description, check).
pub fn tolerance(precision: Precision) -> &'static str {
    match precision {
        Precision::Fp32 => "max abs diff <= 1e-4",
        Precision::Fp16 | Precision::Bf16 => "min cosine >= 0.999",
        Precision::Int8 => "min cosine >= 0.99 and top-10 overlap >= 0.9",
    }
}

/// Compares a run's probe and item embeddings with the reference.
pub fn compare(
    precision: Precision,
    probes: &Embeddings,
    items: &ItemIndex,
    reference: &Reference,
) -> Parity {
    let finite = probes.all_finite() && items.data.iter().all(|v| v.is_finite());
    let max_abs_diff = probes
        .data
        .iter()
        .zip(&reference.probes.data)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max);
    let cos = cosines(probes, reference);
    let min_cosine = cos.iter().cloned().fold(f64::INFINITY, f64::min);
    let mean_cosine = cos.iter().sum::<f64>() / cos.len() as f64;
    let overlap = top10_overlap(probes, items, reference);
    let passed = finite
        && match precision {
            Precision::Fp32 => max_abs_diff <= 1e-4,
            Precision::Fp16 | Precision::Bf16 => min_cosine >= 0.999,
            Precision::Int8 => min_cosine >= 0.99 && overlap >= 0.9,
        };
    let nan_safe = |x: f64| if x.is_finite() { x } else { -1.0 };
    Parity {
        reference: "candle fp32 on cpu".into(),
        probes: probes.rows,
        max_abs_diff: nan_safe(max_abs_diff),
        min_cosine: nan_safe(min_cosine),
        mean_cosine: nan_safe(mean_cosine),
        top10_overlap: overlap,
        tolerance: if finite {
            tolerance(precision).into()
        } else {
            format!("{} (outputs contain NaN or inf)", tolerance(precision))
        },
        passed,
    }
}

/// One line of `recbench parity`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParityRow {
    pub backend: BackendKind,
    pub device: Device,
    pub precision: Precision,
    pub model: crate::model::Preset,
    /// `None` when the backend could not be loaded (the reason is in `error`).
    pub parity: Option<Parity>,
    pub error: Option<String>,
}

/// Checks every (model, backend, device, precision) of a scenario against the reference, in
/// this process. Combinations the build cannot run are reported with the reason, not checked.
pub fn check_scenario(
    scenario: &crate::scenario::Scenario,
    backends: &[BackendKind],
    display: super::progress::Display,
) -> Result<Vec<ParityRow>> {
    let threads = crate::telemetry::inventory::default_threads();
    let items = recommender::bundled_items();
    let mut rows = Vec::new();
    let chosen = |b: &&BackendKind| backends.is_empty() || backends.contains(b);
    let per_model = scenario.backends.iter().filter(chosen).count()
        * scenario.devices.len()
        * scenario.precisions.len();
    // Each check encodes the probes and the catalog: its cost grows with the model's size.
    let weight = |m: crate::model::Preset| m.config().parameters() as f64;
    let mut progress = super::progress::Progress::new(
        display,
        per_model * scenario.presets.len(),
        scenario.presets.iter().map(|m| weight(*m)).sum::<f64>() * per_model as f64,
    );
    for &model in &scenario.presets {
        let files = ModelFiles::resolve(model, scenario.seed)?;
        let tok = Tokenizer::load(&files.tokenizer)?;
        let reference = reference(&files, &tok)?;
        for &backend in scenario.backends.iter().filter(chosen) {
            for &device in &scenario.devices {
                for &precision in &scenario.precisions {
                    let mut row = ParityRow {
                        backend,
                        device,
                        precision,
                        model,
                        parity: None,
                        error: None,
                    };
                    let opts = EncoderOptions {
                        device,
                        precision,
                        threads,
                        shape_hint: None,
                    };
                    let label = format!("{model}/{backend}/{device}/{precision}");
                    progress.start(&label);
                    let checked = backend
                        .supports(device, precision)
                        .map_err(Error::Measure)
                        .and_then(|_| backend::open(backend, &files, opts))
                        .and_then(|mut enc| {
                            let mut probes = encode_probes(enc.as_mut(), &tok)?;
                            super::worker::inject_drift(&label, &mut probes);
                            let key = item_key_of(&files, backend, precision, enc.as_ref());
                            let ix = recommender::item_index(enc.as_mut(), &tok, &items, &key)?;
                            Ok(compare(precision, &probes, &ix, &reference))
                        });
                    match checked {
                        Ok(p) => {
                            let verdict = if p.passed { "pass" } else { "FAIL" };
                            progress.finish(&label, weight(model), verdict);
                            row.parity = Some(p);
                        }
                        Err(e) => {
                            progress.finish(&label, 0.0, "not checked");
                            row.error = Some(e.to_string());
                        }
                    }
                    rows.push(row);
                }
            }
        }
    }
    progress.done();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Preset;

    /// Embeddings candle computed (the reference's probes, any candle run's items) carry its
    /// revision in their cache key, so a change of its numerics is not read back from an older
    /// recbench's cache; other backends' keys do not.
    #[test]
    fn candle_embeddings_are_keyed_by_its_revision() {
        let files = ModelFiles::resolve(Preset::Tiny, 7).unwrap();
        let rev = format!("-candle-{CANDLE_REVISION}-");
        assert!(
            probe_path(&files).to_string_lossy().contains(&rev),
            "{}",
            probe_path(&files).display()
        );
        for p in [Precision::Fp32, Precision::Fp16] {
            assert!(item_key(&files, BackendKind::Candle, p).contains(&rev));
            assert!(!item_key(&files, BackendKind::Onnx, p).contains(CANDLE_REVISION));
        }
    }
}
