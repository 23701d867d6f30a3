//! Benchmark inputs: real catalog text cut into sequences of exactly `seq_len` tokens.
//!
//! Every sequence is full length (no padding), so every run pays for the sequence length it
//! names; two-tower requests are `[CLS] text [SEP]`, cross-encoder requests are
//! `[CLS] user [SEP] item [SEP]` pairs with the user and item halves drawn from different places.

use crate::error::{Error, Result};
use crate::model::{TokenBatch, Tokenizer};
use crate::recommender::Item;
use crate::spec::Mode;

/// Word pieces of the whole catalog, concatenated.
pub fn token_stream(tok: &Tokenizer, items: &[Item]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for it in items {
        out.extend(tok.word_pieces(&it.text())?);
    }
    Ok(out)
}

fn window(stream: &[u32], start: usize, len: usize) -> Vec<u32> {
    (0..len)
        .map(|i| stream[(start + i) % stream.len()])
        .collect()
}

/// A batch of `requests` requests (× `candidates` sequences in cross-encoder mode).
pub fn bench_batch(
    tok: &Tokenizer,
    stream: &[u32],
    mode: Mode,
    requests: usize,
    candidates: usize,
    seq_len: usize,
) -> Result<TokenBatch> {
    if stream.is_empty() {
        return Err(Error::Measure("no text to build inputs from".into()));
    }
    let stride = 7919; // prime: requests start at spread-out places in the catalog text
    let mut seqs = Vec::new();
    for r in 0..requests {
        match mode {
            Mode::TwoTower => {
                seqs.push(tok.single(&window(stream, r * stride, seq_len - 2), seq_len))
            }
            Mode::CrossEncoder => {
                let a = (seq_len - 3) / 2;
                let user = window(stream, r * stride, a);
                for c in 0..candidates {
                    let item = window(stream, (r * candidates + c) * 104_729 + 13, seq_len - 3 - a);
                    seqs.push(tok.pair(&user, &item, seq_len));
                }
            }
        }
    }
    let batch = TokenBatch::from_sequences(seqs);
    debug_assert_eq!(batch.seq_len, seq_len);
    Ok(batch)
}
