//! `recbench recommend`: the demo catalog's top items for one user's text, on a backend and
//! precision, scored as a two-tower run scores (the catalog's embeddings cached per model,
//! backend and precision, as parity caches them).

use crate::backend::{self, BackendKind, Device, EncoderOptions, Precision};
use crate::error::Result;
use crate::model::{ModelFiles, Preset, Tokenizer};
use crate::recommender::{self, Item};

/// Ranked (catalog row, score) pairs, best first.
pub type Ranking = Vec<(usize, f32)>;

/// The `top` demo items for `user`, best first, and the catalog they index.
pub fn top_items(
    user: &str,
    top: usize,
    kind: BackendKind,
    precision: Precision,
    preset: Preset,
) -> Result<(Ranking, Vec<Item>)> {
    let files = ModelFiles::resolve(preset, crate::model::weights::DEFAULT_SEED)?;
    let tok = Tokenizer::load(&files.tokenizer)?;
    let threads = crate::telemetry::inventory::default_threads();
    let mut enc = backend::open(
        kind,
        &files,
        EncoderOptions {
            device: Device::Cpu,
            precision,
            threads,
            shape_hint: None,
        },
    )?;
    let items = recommender::bundled_items();
    let key = super::parity::item_key_of(&files, kind, precision, enc.as_ref());
    let index = recommender::item_index(enc.as_mut(), &tok, &items, &key)?;
    let u = enc.encode(&tok.batch(&[user], recommender::TEXT_MAX_TOKENS)?)?;
    let scores = index.scores(&u, threads);
    Ok((recommender::top_k(&scores, top), items))
}
