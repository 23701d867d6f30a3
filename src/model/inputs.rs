//! Tokenisation and the token batch every backend consumes.
//!
//! Inputs are tokenised once, before any timing, with the `tokenizers` crate from the model's
//! `tokenizer.json`. Special tokens are added here rather than by the tokenizer's template so
//! that single texts, (user, item) pairs and fixed-length benchmark inputs share one code path.

use std::path::Path;

use crate::error::{Error, Result};

/// A padded batch of token sequences, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub batch: usize,
    pub seq_len: usize,
    pub input_ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
}

impl TokenBatch {
    /// Pads sequences of (ids, type ids) to the longest one.
    pub fn from_sequences(seqs: Vec<(Vec<u32>, Vec<u32>)>) -> TokenBatch {
        let seq_len = seqs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let batch = seqs.len();
        let mut out = TokenBatch {
            batch,
            seq_len,
            input_ids: vec![0; batch * seq_len],
            type_ids: vec![0; batch * seq_len],
            attention_mask: vec![0; batch * seq_len],
        };
        for (b, (ids, types)) in seqs.into_iter().enumerate() {
            let row = b * seq_len;
            out.input_ids[row..row + ids.len()].copy_from_slice(&ids);
            out.type_ids[row..row + types.len()].copy_from_slice(&types);
            out.attention_mask[row..row + ids.len()].fill(1);
        }
        out
    }

    /// Rows `start..start + n` as a new batch.
    pub fn rows(&self, start: usize, n: usize) -> TokenBatch {
        let r = start * self.seq_len..(start + n) * self.seq_len;
        TokenBatch {
            batch: n,
            seq_len: self.seq_len,
            input_ids: self.input_ids[r.clone()].to_vec(),
            type_ids: self.type_ids[r.clone()].to_vec(),
            attention_mask: self.attention_mask[r].to_vec(),
        }
    }

    /// Number of real (unpadded) tokens.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }
}

/// A BERT WordPiece tokenizer loaded from `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    cls: u32,
    sep: u32,
}

impl Tokenizer {
    /// Loads a tokenizer and looks up its `[CLS]` and `[SEP]` tokens.
    pub fn load(path: &Path) -> Result<Tokenizer> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Model(format!("{}: cannot load tokenizer: {e}", path.display())))?;
        // all-MiniLM's tokenizer.json pads every text to 128 tokens and truncates there; padding
        // and truncation are done here instead, explicitly.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let id = |t: &str| {
            inner.token_to_id(t).ok_or_else(|| {
                Error::Model(format!("{}: tokenizer has no {t} token", path.display()))
            })
        };
        Ok(Tokenizer {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            inner,
        })
    }

    /// Word-piece ids of `text` without special tokens.
    pub fn word_pieces(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Model(format!("tokenising {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `[CLS] a [SEP]`, truncated to `max_len` tokens.
    pub fn single(&self, a: &[u32], max_len: usize) -> (Vec<u32>, Vec<u32>) {
        let a = &a[..a.len().min(max_len.saturating_sub(2))];
        let mut ids = Vec::with_capacity(a.len() + 2);
        ids.push(self.cls);
        ids.extend_from_slice(a);
        ids.push(self.sep);
        let types = vec![0; ids.len()];
        (ids, types)
    }

    /// `[CLS] a [SEP] b [SEP]` with type ids 0 then 1, truncated longest-first to `max_len`.
    pub fn pair(&self, a: &[u32], b: &[u32], max_len: usize) -> (Vec<u32>, Vec<u32>) {
        let budget = max_len.saturating_sub(3);
        let (mut la, mut lb) = (a.len(), b.len());
        while la + lb > budget {
            if la >= lb {
                la -= 1
            } else {
                lb -= 1
            }
        }
        let mut ids = Vec::with_capacity(la + lb + 3);
        ids.push(self.cls);
        ids.extend_from_slice(&a[..la]);
        ids.push(self.sep);
        let first = ids.len();
        ids.extend_from_slice(&b[..lb]);
        ids.push(self.sep);
        let mut types = vec![0; first];
        types.resize(ids.len(), 1);
        (ids, types)
    }

    /// Tokenises texts with special tokens, truncated to `max_len`, padded to the longest.
    pub fn batch(&self, texts: &[&str], max_len: usize) -> Result<TokenBatch> {
        let seqs = texts
            .iter()
            .map(|t| Ok(self.single(&self.word_pieces(t)?, max_len)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TokenBatch::from_sequences(seqs))
    }

    /// Tokenises (a, b) pairs, truncated to `max_len`, padded to the longest.
    pub fn pair_batch(&self, pairs: &[(&str, &str)], max_len: usize) -> Result<TokenBatch> {
        let seqs = pairs
            .iter()
            .map(|(a, b)| Ok(self.pair(&self.word_pieces(a)?, &self.word_pieces(b)?, max_len)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TokenBatch::from_sequences(seqs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_and_mask() {
        let b = TokenBatch::from_sequences(vec![(vec![1, 2, 3], vec![0; 3]), (vec![4], vec![0])]);
        assert_eq!((b.batch, b.seq_len), (2, 3));
        assert_eq!(b.input_ids, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(b.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(b.tokens(), 4);
        assert_eq!(b.rows(1, 1).input_ids, vec![4, 0, 0]);
    }
}
