//! Side-by-side timing of the onnx backend (docs/benchmarks/onnx.md): encodes one fixed batch of
//! `batch` × `seq` tokens of catalog text with a given graph flavour, precision, optimisation
//! level and thread count, and prints the median latency of `reps` repetitions after warm-up.
//! It also writes the batch (`<out>.inputs.bin`) and the `.onnx` path so that
//! `scripts/bench/ort_python.py` can time Python onnxruntime on the very same file and inputs.
//!
//! ```text
//! cargo run --release --features onnx --example onnx_bench -- \
//!     minilm-l6 plain fp32 all 2 32 128 30 [OUT]
//! ```

#[cfg(feature = "onnx")]
fn main() -> anyhow::Result<()> {
    use std::time::Instant;

    use ort::session::builder::GraphOptimizationLevel as L;
    use recbench::backend::onnx::OnnxBert;
    use recbench::backend::{Device, Encoder, Precision};
    use recbench::harness::inputs::bench_batch;
    use recbench::model::onnx::{export, Flavour};
    use recbench::model::{ModelFiles, Preset, Tokenizer};
    use recbench::spec::Mode;

    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let preset = Preset::parse(&arg(0, "minilm-l6")).ok_or_else(|| anyhow::anyhow!("preset"))?;
    let flavour = Flavour::parse(&arg(1, "plain")).ok_or_else(|| anyhow::anyhow!("flavour"))?;
    let precision =
        Precision::parse(&arg(2, "fp32")).ok_or_else(|| anyhow::anyhow!("precision"))?;
    let level = match arg(3, "all").as_str() {
        "disable" => L::Disable,
        "basic" => L::Level1,
        "extended" => L::Level2,
        _ => L::All,
    };
    let threads: usize = arg(4, "2").parse()?;
    let batch: usize = arg(5, "32").parse()?;
    let seq: usize = arg(6, "128").parse()?;
    let reps: usize = arg(7, "30").parse()?;

    let files = ModelFiles::resolve(preset, recbench::model::weights::DEFAULT_SEED)?;
    let tok = Tokenizer::load(&files.tokenizer)?;
    let stream =
        recbench::harness::inputs::token_stream(&tok, &recbench::recommender::bundled_items())?;
    let b = bench_batch(&tok, &stream, Mode::TwoTower, batch, 1, seq)?;
    let path = export::export_cached(&files, flavour, precision)?;
    if let Some(out) = a.get(8) {
        let mut bytes = Vec::new();
        for v in [&b.input_ids, &b.attention_mask, &b.type_ids] {
            bytes.extend(v.iter().flat_map(|x| (*x as i64).to_le_bytes()));
        }
        std::fs::write(format!("{out}.inputs.bin"), bytes)?;
        std::fs::write(format!("{out}.model"), path.to_string_lossy().as_bytes())?;
    }
    let mut enc =
        OnnxBert::load_file(&path, files.config.hidden_size, threads, level, Device::Cpu)?;
    for _ in 0..3 {
        enc.encode(&b)?;
    }
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            enc.encode(&b).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    ms.sort_by(f64::total_cmp);
    println!(
        "rust-ort {preset} {flavour} {precision} opt={} threads={threads} batch={batch} seq={seq} reps={reps} median_ms={:.2} min_ms={:.2} model={}",
        arg(3, "all"),
        ms[ms.len() / 2],
        ms[0],
        path.display()
    );
    Ok(())
}

#[cfg(not(feature = "onnx"))]
fn main() {
    eprintln!("onnx_bench needs the onnx backend: rebuild with --features onnx");
    std::process::exit(2);
}
