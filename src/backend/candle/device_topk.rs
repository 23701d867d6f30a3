//! Top-k on CUDA with recbench's own kernel (src/backend/candle_topk.cu, compiled to PTX by
//! build.rs): candle has no top-k, and its argsort sorts whole rows (the chunked argsort in
//! [`super::top_k_rows_chunked`] took 22–25% of an H200 iteration at MiniLM batch 256).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, CudaStorage, WrapErr};
use candle_core::{DType, Layout, Storage, Tensor};
use half::{bf16, f16};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/candle_topk.ptx"));
const MODULE: &str = "recbench_candle_topk";

/// The largest `k` the kernel keeps per thread (`TOPK_MAX` in the kernel).
pub const MAX_K: usize = 32;
/// Threads per row; a multiple of 32 (the kernel's warp shuffles take every lane).
const THREADS: u32 = 256;

/// Each row's best `k` (column, score) of `scores` (`[rows, n]` on a CUDA device, f32, f16 or
/// bf16), best first (ties by lower column), scores in f32, copied to the host. `Ok(None)`
/// where the kernel does not apply: not on CUDA, another dtype, or `k` outside
/// 1..=min(n, [`MAX_K`]).
pub fn top_k_rows(
    scores: &Tensor,
    k: usize,
) -> candle_core::Result<Option<Vec<Vec<(usize, f32)>>>> {
    let (rows, n) = scores.dims2()?;
    if k == 0 || k > MAX_K || k > n || rows == 0 {
        return Ok(None);
    }
    let scores = scores.contiguous()?;
    let (storage, layout) = scores.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        return Ok(None);
    };
    let (name, out) = match scores.dtype() {
        DType::F32 => (
            "top_k_rows_f32",
            launch::<f32>(cs, layout, rows, n, k, "top_k_rows_f32"),
        ),
        DType::F16 => (
            "top_k_rows_f16",
            launch::<f16>(cs, layout, rows, n, k, "top_k_rows_f16"),
        ),
        DType::BF16 => (
            "top_k_rows_bf16",
            launch::<bf16>(cs, layout, rows, n, k, "top_k_rows_bf16"),
        ),
        _ => return Ok(None),
    };
    let (cols, vals) =
        out.map_err(|e| candle_core::Error::Msg(format!("{MODULE}::{name}: {e}")))?;
    let cols: Vec<i64> = cols.into_iter().map(i64::from).collect();
    Ok(Some(crate::backend::Ranked::rows_of(&cols, &vals, rows, k)))
}

fn launch<T: CudaDType + DeviceRepr>(
    cs: &CudaStorage,
    layout: &Layout,
    rows: usize,
    n: usize,
    k: usize,
    name: &str,
) -> candle_core::Result<(Vec<u32>, Vec<f32>)> {
    let dev = cs.device();
    let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    let src = cs.as_cuda_slice::<T>()?.slice(layout.start_offset()..);
    // SAFETY: the kernel writes every one of the rows × k outputs.
    let cols = unsafe { dev.alloc::<u32>(rows * k)? };
    let vals = unsafe { dev.alloc::<f32>(rows * k)? };
    let (n32, k32) = (n as u32, k as u32);
    let mut b = func.builder();
    b.arg(&src);
    b.arg(&n32);
    b.arg(&k32);
    b.arg(&cols);
    b.arg(&vals);
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the arguments match the kernel's (const T*, u32, u32, u32*, float*), `src` holds
    // rows × n values from the layout's start, and the block size is a multiple of 32.
    unsafe { b.launch(cfg) }.w()?;
    Ok((dev.clone_dtoh(&cols)?, dev.clone_dtoh(&vals)?))
}
