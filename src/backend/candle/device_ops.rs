//! A BERT layer's element-wise steps on CUDA with recbench's kernels
//! (src/backend/candle_layers.cu, compiled to PTX by build.rs), as candle custom ops: a linear's
//! bias with GELU or the residual in the same pass, and the attention heads split and merged in
//! one pass each. On an H200 (MiniLM fp16, batch 256, Nsight Compute) candle's broadcast add
//! of the biases took 48% of the GPU's time and its strided copies of the heads 17%.
//!
//! Inputs must be contiguous (they are: each comes from a matmul or a previous op here).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDType, CudaStorage, WrapErr};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType,
};
use half::{bf16, f16};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/candle_layers.ptx"));
const MODULE: &str = "recbench_candle_layers";

/// `act(y + bias) + res`: `y` and `res` `[rows, n]`, `bias` `[n]`, all in one dtype; `act` is
/// GELU (erf form) when `gelu`, else the identity. `res` is optional.
pub fn bias_act(y: &Tensor, bias: &Tensor, gelu: bool, res: Option<&Tensor>) -> Result<Tensor> {
    // Without a residual, `y` stands in for it and the kernel is told there is none.
    y.apply_op3_no_bwd(
        bias,
        res.unwrap_or(y),
        &BiasAct {
            gelu,
            residual: res.is_some(),
        },
    )
}

/// The fused projection `qkv` (`[batch·seq, 3·heads·width]`) as Q (times `scale`), K and V,
/// each `[batch, heads, seq, width]` and contiguous.
pub fn split_heads(
    qkv: &Tensor,
    (b, s): (usize, usize),
    (nh, hd): (usize, usize),
    scale: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let all = qkv.apply_op1_no_bwd(&Heads {
        split: true,
        dims: [b, s, nh, hd],
        scale,
    })?;
    Ok((all.get(0)?, all.get(1)?, all.get(2)?))
}

/// The attention context `[batch, heads, seq, width]` as `[batch·seq, heads·width]`.
pub fn merge_heads(ctx: &Tensor) -> Result<Tensor> {
    let (b, nh, s, hd) = ctx.dims4()?;
    ctx.apply_op1_no_bwd(&Heads {
        split: false,
        dims: [b, s, nh, hd],
        scale: 1.0,
    })?
    .reshape((b * s, nh * hd))
}

fn suffix(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        d => candle_core::bail!("recbench's layer kernels take f32, f16 or bf16, not {d:?}"),
    })
}

fn config(count: usize) -> LaunchConfig {
    const THREADS: usize = 256;
    LaunchConfig {
        grid_dim: (count.div_ceil(THREADS).clamp(1, 1 << 16) as u32, 1, 1),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn contiguous_start(l: &Layout, what: &str) -> Result<usize> {
    match l.contiguous_offsets() {
        Some((start, _)) => Ok(start),
        None => candle_core::bail!("recbench's {what} kernel needs contiguous inputs"),
    }
}

struct BiasAct {
    gelu: bool,
    residual: bool,
}

impl BiasAct {
    fn run<T: CudaDType + DeviceRepr + WithDType>(
        &self,
        (y, ly): (&CudaStorage, &Layout),
        (b, lb): (&CudaStorage, &Layout),
        (r, lr): (&CudaStorage, &Layout),
    ) -> Result<CudaStorage> {
        let dev = y.device().clone();
        let n = lb.shape().elem_count();
        let count = ly.shape().elem_count();
        if ly.dims().last() != Some(&n) || (self.residual && lr.shape() != ly.shape()) {
            candle_core::bail!(
                "bias_act: y {:?}, bias {:?}, residual {:?}",
                ly.dims(),
                lb.dims(),
                lr.dims()
            );
        }
        let ys = y
            .as_cuda_slice::<T>()?
            .slice(contiguous_start(ly, "bias")?..);
        let bs = b
            .as_cuda_slice::<T>()?
            .slice(contiguous_start(lb, "bias")?..);
        let rs = r
            .as_cuda_slice::<T>()?
            .slice(contiguous_start(lr, "bias")?..);
        let func =
            dev.get_or_load_custom_func(&format!("bias_act_{}", suffix(T::DTYPE)?), MODULE, PTX)?;
        // SAFETY: the kernel writes every one of the `count` outputs.
        let out: CudaSlice<T> = unsafe { dev.alloc::<T>(count)? };
        let (count64, n32, gelu) = (count as u64, n as u32, u32::from(self.gelu));
        let mut builder = func.builder();
        builder.arg(&ys);
        builder.arg(&bs);
        if self.residual {
            builder.arg(&rs);
        } else {
            builder.arg(&0u64);
        }
        builder.arg(&out);
        builder.arg(&count64);
        builder.arg(&n32);
        builder.arg(&gelu);
        // SAFETY: the arguments match bias_act_*'s (const T*, const T*, const T* or null, T*,
        // size_t, u32, u32) and every slice holds the elements the shapes above say.
        unsafe { builder.launch(config(count)) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev))
    }
}

impl CustomOp3 for BiasAct {
    fn name(&self) -> &'static str {
        "recbench-bias-act"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("recbench-bias-act runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        y: &CudaStorage,
        ly: &Layout,
        b: &CudaStorage,
        lb: &Layout,
        r: &CudaStorage,
        lr: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let args = ((y, ly), (b, lb), (r, lr));
        let out = match y.dtype() {
            DType::F32 => self.run::<f32>(args.0, args.1, args.2)?,
            DType::F16 => self.run::<f16>(args.0, args.1, args.2)?,
            DType::BF16 => self.run::<bf16>(args.0, args.1, args.2)?,
            d => candle_core::bail!("recbench-bias-act: no kernel for {d:?}"),
        };
        Ok((out, ly.shape().clone()))
    }
}

/// Splits (`split`) the fused projection into heads, or merges the heads back; `dims` is
/// `[batch, seq, heads, width]`.
struct Heads {
    split: bool,
    dims: [usize; 4],
    scale: f32,
}

impl Heads {
    fn run<T: CudaDType + DeviceRepr + WithDType>(
        &self,
        x: &CudaStorage,
        l: &Layout,
    ) -> Result<CudaStorage> {
        let dev = x.device().clone();
        let [b, s, nh, hd] = self.dims;
        let count = l.shape().elem_count();
        let want = if self.split { 3 } else { 1 } * b * s * nh * hd;
        if count != want {
            candle_core::bail!(
                "recbench-heads: {:?} does not hold {:?}",
                l.dims(),
                self.dims
            );
        }
        let xs = x
            .as_cuda_slice::<T>()?
            .slice(contiguous_start(l, "heads")?..);
        let name = if self.split {
            "split_heads"
        } else {
            "merge_heads"
        };
        let func =
            dev.get_or_load_custom_func(&format!("{name}_{}", suffix(T::DTYPE)?), MODULE, PTX)?;
        // SAFETY: the kernel writes every one of the `count` outputs.
        let out: CudaSlice<T> = unsafe { dev.alloc::<T>(count)? };
        let [b, s, nh, hd] = [b as u32, s as u32, nh as u32, hd as u32];
        let mut builder = func.builder();
        builder.arg(&xs);
        builder.arg(&out);
        builder.arg(&b);
        builder.arg(&s);
        builder.arg(&nh);
        builder.arg(&hd);
        if self.split {
            builder.arg(&self.scale);
        }
        // SAFETY: the arguments match split_heads_* (const T*, T*, u32 ×4, float) or
        // merge_heads_* (const T*, T*, u32 ×4), and both slices hold `count` elements.
        unsafe { builder.launch(config(count)) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev))
    }
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        "recbench-heads"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("recbench-heads runs on CUDA only")
    }

    fn cuda_fwd(&self, x: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let out = match x.dtype() {
            DType::F32 => self.run::<f32>(x, l)?,
            DType::F16 => self.run::<f16>(x, l)?,
            DType::BF16 => self.run::<bf16>(x, l)?,
            d => candle_core::bail!("recbench-heads: no kernel for {d:?}"),
        };
        let [b, s, nh, hd] = self.dims;
        let shape = if self.split {
            Shape::from((3, b, nh, s, hd))
        } else {
            Shape::from((b, s, nh, hd))
        };
        Ok((out, shape))
    }
}
