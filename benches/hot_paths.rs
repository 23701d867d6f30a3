//! Criterion benchmarks of the hot paths: tokenisation, pooling, scoring + top-k over 100k item
//! embeddings, candle's GELU against the fused kernels' bias + GELU, the fused f32 linear against
//! recbench's int8 and bf16 GEMMs on MiniLM's FFN product, each compiled backend's
//! forward pass on `tiny`, and the day plan's work on a week's trace at one-second resolution
//! (reading the CSV, then the autoscaler over it).
//!
//! `cargo bench` measures; `cargo test --benches` runs each once as a smoke test. Needs the
//! MiniLM tokenizer fetched by `scripts/fetch.sh`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use recbench::backend::{self, BackendKind, Device, Embeddings, EncoderOptions, Precision};
use recbench::model::{ModelFiles, Preset, Tokenizer};
use recbench::recommender::{self, ItemIndex};

fn tokenisation(c: &mut Criterion) {
    let files = ModelFiles::resolve(Preset::MiniLmL6, 0).expect("run scripts/fetch.sh first");
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let items = recommender::bundled_items();
    let texts: Vec<String> = items.iter().take(32).map(|i| i.text()).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    c.bench_function("tokenise 32 catalog texts", |b| {
        b.iter(|| black_box(tok.batch(&refs, 128).unwrap()))
    });
}

fn pooling(c: &mut Criterion) {
    use candle_core::{Device as D, Tensor};
    let x = Tensor::randn(0f32, 1.0, (32, 128, 384), &D::Cpu).unwrap();
    let mask = Tensor::ones((32, 128), candle_core::DType::F32, &D::Cpu).unwrap();
    c.bench_function("masked mean pool + L2 norm [32, 128, 384]", |b| {
        b.iter(|| black_box(backend::candle::mean_pool(&x, &mask).unwrap()))
    });
}

fn scoring(c: &mut Criterion) {
    let dim = 384;
    let n = 100_000;
    let mut rng = recbench::util::rand::SplitMix64::new(1);
    let items = ItemIndex {
        dim,
        data: (0..n * dim).map(|_| rng.next_normal() as f32).collect(),
    };
    let user = Embeddings {
        rows: 1,
        dim,
        data: (0..dim).map(|_| rng.next_normal() as f32).collect(),
    };
    let threads = recbench::telemetry::inventory::default_threads();
    // A whole host-side scoring step per batch size, GEMM and top-k: batch 1 must cost no more
    // per batch than batch 8 (the items are split over the threads, not the users).
    for rows in [1, 8, 256] {
        let users = Embeddings {
            rows,
            dim,
            data: (0..rows * dim).map(|_| rng.next_normal() as f32).collect(),
        };
        c.bench_function(
            &format!("host scoring: 100k items + top-10, {rows} user(s)"),
            |b| {
                b.iter(|| {
                    let s = items.scores(&users, threads);
                    black_box(recommender::top_k_rows(&s, n, 10, threads))
                })
            },
        );
    }
    let s = items.scores(&user, threads);
    c.bench_function("top-10 of 100k scores", |b| {
        b.iter(|| black_box(recommender::top_k(&s, 10)))
    });
}

/// One MiniLM FFN activation at batch 1 (128 × 1,536): candle's `gelu_erf` (libm's `erff` per
/// value) against the fused kernels' bias + GELU (a rational erf that vectorises).
fn gelu(c: &mut Criterion) {
    use candle_core::{Device as D, Tensor};
    let x = Tensor::randn(0f32, 1.0, (128, 1536), &D::Cpu).unwrap();
    let b = Tensor::zeros(1536, candle_core::DType::F32, &D::Cpu).unwrap();
    c.bench_function("GELU [128, 1536]: candle gelu_erf", |bn| {
        bn.iter(|| black_box(x.gelu_erf().unwrap()))
    });
    c.bench_function("GELU [128, 1536]: fused bias + GELU", |bn| {
        bn.iter(|| black_box(backend::candle::fused::bias(&x, &b, true).unwrap()))
    });
}

/// One MiniLM FFN product (hidden 384 → intermediate 1,536) at batch 8 and 32 of 128 tokens:
/// the fused kernels' f32 linear against recbench's int8 GEMM (activations quantized per row in
/// the same call; AVX-512 VNNI where the CPU has it, else the portable loop) and its bf16 GEMM
/// (activations rounded to bf16 in the same call; AVX-512 BF16, else the portable loop).
fn int8_gemm(c: &mut Criterion) {
    use backend::candle::{bgemm, fused, qgemm};
    use candle_core::{Device as D, Tensor};
    let threads = recbench::telemetry::inventory::default_threads();
    let w = Tensor::randn(0f32, 0.05, (1536, 384), &D::Cpu).unwrap();
    let w_t = w.t().unwrap().contiguous().unwrap();
    let b = Tensor::zeros(1536, candle_core::DType::F32, &D::Cpu).unwrap();
    let q = qgemm::QWeight::new(&w, &b).unwrap();
    let h = bgemm::BWeight::new(&w, &b).unwrap();
    for rows in [1024, 4096] {
        let x = Tensor::randn(0f32, 1.0, (rows, 384), &D::Cpu).unwrap();
        c.bench_function(
            &format!("FFN [{rows}, 384→1536]: f32 fused linear"),
            |bn| bn.iter(|| black_box(fused::linear(&x, &w_t, &b, false, threads).unwrap())),
        );
        let name = format!(
            "FFN [{rows}, 384→1536]: int8 GEMM ({})",
            qgemm::Kernel::best().name()
        );
        c.bench_function(&name, |bn| {
            bn.iter(|| black_box(qgemm::linear(&x, &q, false).unwrap()))
        });
        let name = format!(
            "FFN [{rows}, 384→1536]: bf16 GEMM ({})",
            bgemm::Kernel::best().name()
        );
        c.bench_function(&name, |bn| {
            bn.iter(|| black_box(bgemm::linear(&x, &h, false).unwrap()))
        });
    }
}

fn forward_tiny(c: &mut Criterion) {
    let files = ModelFiles::resolve(Preset::Tiny, recbench::model::weights::DEFAULT_SEED).unwrap();
    let tok = Tokenizer::load(&files.tokenizer).unwrap();
    let texts: Vec<String> = recommender::bundled_items()
        .iter()
        .take(8)
        .map(|i| i.text())
        .collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let batch = tok.batch(&refs, 64).unwrap();
    let threads = recbench::telemetry::inventory::default_threads();
    for kind in BackendKind::ALL.into_iter().filter(|b| b.compiled()) {
        let opts = EncoderOptions {
            device: Device::Cpu,
            precision: Precision::Fp32,
            threads,
            shape_hint: None,
        };
        let mut enc = backend::open(kind, &files, opts).unwrap();
        c.bench_function(&format!("{kind} forward tiny fp32, 8 sequences"), |b| {
            b.iter(|| black_box(enc.encode(&batch).unwrap()))
        });
    }
}

/// A week of demand at one-second resolution (604,800 rows): `recbench plan --trace` reads it
/// and simulates each option's autoscaler over it.
fn week_trace(c: &mut Criterion) {
    use recbench::cost::day::{diurnal, parse_trace, Autoscaler};
    let week = 7.0 * 86_400.0;
    let t = diurnal(800.0, 100.0, 86_400.0, week, 7);
    let mut csv = String::from("timestamp,qps\n");
    for (i, q) in t.qps.iter().enumerate() {
        csv.push_str(&format!("{i},{q:.3}\n"));
    }
    let path = std::path::Path::new("week.csv");
    c.bench_function("read a week's trace (604,800 rows)", |b| {
        b.iter(|| black_box(parse_trace(path, &csv).unwrap()))
    });
    let trace = parse_trace(path, &csv).unwrap();
    let scaler = Autoscaler {
        capacity_qps: 90.0,
        target: 1.0 / 1.3,
        scale_up_delay_s: 30.0,
        scale_down_delay_s: 300.0,
        cold_start_s: 60.0,
        min_replicas: 1,
    };
    c.bench_function("autoscale one option over a week's trace", |b| {
        b.iter(|| black_box(scaler.simulate(&trace)))
    });
}

criterion_group!(
    benches,
    tokenisation,
    pooling,
    scoring,
    gelu,
    int8_gemm,
    forward_tiny,
    week_trace
);
criterion_main!(benches);
