//! The candle-transformers anchor of `scripts/bench/anchors.sh`: times candle-transformers'
//! stock `BertModel` (the BERT a candle user would pick) on a model folder's `config.json` and
//! `model.safetensors`, in fp32 on the CPU, with the window and inputs of the Python anchors
//! (`scripts/bench/anchors.py`): random token ids in [1000, 29000) framed by [CLS] … [SEP], full
//! attention mask, the last hidden state mean-pooled and L2-normalised as recbench pools. Threads
//! come from `RAYON_NUM_THREADS`, as recbench's workers set it. Prints one JSON object:
//! `median_ms_per_batch`, `samples_ms`, `runtime`.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example stock_bert -- \
//!     .cache/models/minilm-l6 8 128 1,4,5,20
//! ```

#[cfg(feature = "candle")]
fn main() -> anyhow::Result<()> {
    use std::time::Instant;

    use anyhow::Context;
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::bert::{BertModel, Config};
    use recbench::util::rand::SplitMix64;

    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: stock_bert MODEL_DIR BATCH SEQ WARMUP_S,MIN_S,MIN_CALLS,MAX_S";
    let dir = std::path::PathBuf::from(a.first().context(usage)?);
    let batch: usize = a.get(1).context(usage)?.parse()?;
    let seq: usize = a.get(2).context(usage)?.parse()?;
    let w: Vec<f64> = a
        .get(3)
        .context(usage)?
        .split(',')
        .map(|x| x.parse())
        .collect::<Result<_, _>>()?;
    let [warmup_s, min_s, min_calls, max_s] = w[..] else {
        anyhow::bail!(usage)
    };
    let cfg: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    // SAFETY: the set-up's cached weights, not written while mapped.
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )?
    };
    let model = BertModel::load(vb, &cfg)?;
    let mut rng = SplitMix64::new(20240601);
    let mut ids: Vec<u32> = (0..batch * seq)
        .map(|_| 1000 + (rng.next_u64() % 28000) as u32)
        .collect();
    for r in 0..batch {
        ids[r * seq] = 101;
        ids[r * seq + seq - 1] = 102;
    }
    let ids = Tensor::from_vec(ids, (batch, seq), &Device::Cpu)?;
    let types = ids.zeros_like()?;
    let mask = ids.ones_like()?;
    let mask_f = mask.to_dtype(DType::F32)?;
    let call = || -> anyhow::Result<Tensor> {
        let h = model.forward(&ids, &types, Some(&mask))?;
        Ok(recbench::backend::candle::mean_pool(&h, &mask_f)?)
    };
    let start = Instant::now();
    call()?;
    while start.elapsed().as_secs_f64() < warmup_s {
        call()?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    loop {
        let t = Instant::now();
        call()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        let elapsed = start.elapsed().as_secs_f64();
        if (elapsed >= min_s && samples.len() as f64 >= min_calls) || elapsed >= max_s {
            break;
        }
    }
    let median = recbench::stats::median(&samples);
    println!(
        "{}",
        serde_json::json!({
            "median_ms_per_batch": median,
            "samples_ms": samples,
            "runtime": format!(
                "candle-transformers {} BertModel, candle-core {}, {} threads",
                "0.11",
                recbench::backend::candle::runtime_version(),
                std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
            ),
        })
    );
    Ok(())
}

#[cfg(not(feature = "candle"))]
fn main() {
    eprintln!("stock_bert needs the candle feature");
    std::process::exit(2);
}
