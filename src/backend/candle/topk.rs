//! Pooling and top-k on the device where the tensors are, with candle's ops only.

use candle_core::{DType, Tensor, D};

/// Attention-masked mean over tokens, then L2 normalisation: `x` is `[batch, seq, hidden]`
/// f32, `mask` is `[batch, seq]` f32 of 0/1. Returns `[batch, hidden]`.
pub fn mean_pool(x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let summed = x.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    let counts = mask.sum_keepdim(1)?.clamp(1.0, f64::INFINITY)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    mean.broadcast_div(&norm)
}

/// Columns of one row that candle's device argsort orders at a time in [`top_k_rows_chunked`]:
/// its bitonic sort keeps a row's indices in shared memory (16 KiB at 4,096).
pub const TOPK_CHUNK: usize = 4096;

/// The top `k` (column, score) of each row of `scores` (`[rows, n]`), best first, with candle's
/// ops only, so that it runs where the scores are: each row is cut into chunks of `chunk`
/// columns (the last one padded with -inf), every chunk sorted by candle's argsort and its best
/// `k` kept with their columns, and the survivors cut and sorted again until one chunk holds
/// them all. Exact: the best `k` of a row are among the best `k` of its chunks. Ties come in
/// the argsort's order, not by lower index. Returns `([rows, k]` u32 columns, `[rows, k]`
/// scores in `scores`' dtype).
pub fn top_k_rows_chunked(
    scores: &Tensor,
    k: usize,
    chunk: usize,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (rows, n) = scores.dims2()?;
    let k = k.min(n);
    let dev = scores.device();
    let chunk = chunk.max(2 * k).max(1);
    let mut vals = scores.contiguous()?;
    // The original column of each of `vals`' columns; `None` while they are the identity.
    let mut cols: Option<Tensor> = None;
    loop {
        let w = vals.dim(1)?;
        if w <= chunk {
            let order = vals
                .arg_sort_last_dim(false)?
                .narrow(1, 0, k)?
                .contiguous()?;
            let top = vals.gather(&order, 1)?;
            let ids = match cols {
                Some(c) => c.gather(&order, 1)?,
                None => order,
            };
            return Ok((ids, top));
        }
        let c = w.div_ceil(chunk);
        let pad = c * chunk - w;
        let padded = if pad > 0 {
            let fill = Tensor::full(f32::NEG_INFINITY, (rows, pad), dev)?.to_dtype(vals.dtype())?;
            Tensor::cat(&[&vals, &fill], 1)?
        } else {
            vals.clone()
        };
        let pieces = padded.reshape((rows * c, chunk))?;
        let order = pieces
            .arg_sort_last_dim(false)?
            .narrow(1, 0, k)?
            .contiguous()?;
        let top = pieces.gather(&order, 1)?.reshape((rows, c * k))?;
        // Column within the padded row: the chunk's first column + the column in the chunk.
        let starts: Vec<u32> = (0..rows * c).map(|r| ((r % c) * chunk) as u32).collect();
        let starts = Tensor::from_vec(starts, (rows * c, 1), dev)?;
        let at = order.broadcast_add(&starts)?.reshape((rows, c * k))?;
        cols = Some(match cols {
            Some(prev) => {
                let prev = if pad > 0 {
                    Tensor::cat(&[&prev, &Tensor::zeros((rows, pad), DType::U32, dev)?], 1)?
                } else {
                    prev
                };
                prev.gather(&at, 1)?
            }
            None => at,
        });
        vals = top;
    }
}
