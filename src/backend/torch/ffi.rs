//! PyTorch's dynamic int8 linear operators, FBGEMM's and oneDNN's int8 GEMMs and oneDNN's
//! prepacked fp32 linear, through src/backend/torch_quant.cpp (tch has no binding for them).

use std::ffi::{c_char, c_void, CStr};

use tch::{TchError, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn recbench_linear_prepack(
        qweight: *const C_tensor,
        bias: *const C_tensor,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn recbench_linear_dynamic(
        input: *const C_tensor,
        packed: *mut c_void,
        reduce_range: bool,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn recbench_linear_free(packed: *mut c_void);
    fn recbench_quantize_rows(
        x: *const C_tensor,
        q: *mut *mut C_tensor,
        s: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> i32;
    fn recbench_rows_support() -> i32;
    fn recbench_rows_prepack(
        wq: *const C_tensor,
        ws: *const C_tensor,
        b: *const C_tensor,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn recbench_rows_linear(
        x: *const C_tensor,
        handle: *mut c_void,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn recbench_rows_free(handle: *mut c_void);
    fn recbench_onednn_int8_prepack(
        wq: *const C_tensor,
        ws: *const C_tensor,
        b: *const C_tensor,
        rows: i64,
        err: *mut *mut c_char,
    ) -> *mut c_void;
    fn recbench_onednn_int8_linear(
        x: *const C_tensor,
        handle: *mut c_void,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn recbench_onednn_int8_free(handle: *mut c_void);
    fn recbench_int8_split(on: bool, ms: *mut f64);
    #[cfg(test)]
    fn recbench_parallel_threads() -> i64;
    fn recbench_quantize_rows_u8(
        x: *const C_tensor,
        q: *mut *mut C_tensor,
        sz: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> i32;
    fn recbench_onednn_int8_fused(
        q: *const C_tensor,
        sz: *const C_tensor,
        handle: *mut c_void,
        mode: i32,
        res: *const C_tensor,
        w: *const C_tensor,
        b: *const C_tensor,
        eps: f64,
        q_out: *mut *mut C_tensor,
        sz_out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn recbench_onednn_pack(w: *const C_tensor, rows: i64, err: *mut *mut c_char) -> *mut C_tensor;
    fn recbench_onednn_linear(
        x: *const C_tensor,
        packed: *const C_tensor,
        b: *const C_tensor,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
    fn recbench_int8_epilogue(
        acc: *const C_tensor,
        xs: *const C_tensor,
        ws: *const C_tensor,
        b: *const C_tensor,
        out: *const C_tensor,
        err: *mut *mut c_char,
    ) -> *mut C_tensor;
}

/// Symmetric per-row int8 of f32 `x` `[rows, k]` in one pass: (`[rows, k]` int8, `[rows, 1]`
/// f32 scale), the arithmetic of `super::quantize_rows`.
pub fn quantize_rows(x: &Tensor) -> Result<(Tensor, Tensor), TchError> {
    // SAFETY: `x` is live for the call.
    two_tensors(|q, s, err| unsafe { recbench_quantize_rows(x.as_ptr(), q, s, err) })
}

/// The two tensors a shim call that returns a status hands back through its out-pointers
/// (`call(first, second, err)`), now owned, or the error it reported.
fn two_tensors(
    call: impl FnOnce(*mut *mut C_tensor, *mut *mut C_tensor, *mut *mut c_char) -> i32,
) -> Result<(Tensor, Tensor), TchError> {
    let (mut a, mut b, mut err) = (
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    if call(&mut a, &mut b, &mut err) != 0 {
        return Err(take_error(err));
    }
    // SAFETY: on success the shim set both to new at::Tensor* that no one else owns.
    Ok(unsafe { (Tensor::from_ptr(a), Tensor::from_ptr(b)) })
}

/// Rows quantized to u8 each with its own scale and zero point (torch_quant.cpp's
/// `quantize_row_u8`): `q` `[rows, k]` u8 and `sz` `[2, rows]` f32, the scales then the zero
/// points. What [`RowsPacked::fused`] takes and may hand on.
pub struct QRows {
    pub q: Tensor,
    pub sz: Tensor,
}

/// f32 `x` `[rows, k]` quantized per row to u8 in one parallel pass.
pub fn quantize_rows_u8(x: &Tensor) -> Result<QRows, TchError> {
    // SAFETY: `x` is live for the call.
    let (q, sz) =
        two_tensors(|q, sz, err| unsafe { recbench_quantize_rows_u8(x.as_ptr(), q, sz, err) })?;
    Ok(QRows { q, sz })
}

/// What [`RowsPacked::fused`] does after the epilogue, on each row while it is in cache.
pub enum Finish<'a> {
    /// Nothing: `x · Wᵀ + b`.
    Plain,
    /// `LayerNorm(x · Wᵀ + b + residual)` with the norm's f32 weight, bias and epsilon.
    AddNorm {
        residual: &'a Tensor,
        weight: &'a Tensor,
        bias: &'a Tensor,
        eps: f64,
    },
    /// `GELU(x · Wᵀ + b)`: libtorch's exact (erf) GELU, to float rounding (see the shim's
    /// `gelu_row`).
    Gelu,
}

/// `acc · xs · ws + b` in f32 for the int32 product `acc` `[rows, n]`, in one pass: into
/// `out` (a contiguous f32 `[rows, n]`, returned) when given, else a new tensor.
pub fn epilogue(
    acc: &Tensor,
    xs: &Tensor,
    ws: &Tensor,
    b: &Tensor,
    out: Option<&Tensor>,
) -> Result<Tensor, TchError> {
    let mut err = std::ptr::null_mut();
    let out_ptr = out.map_or(std::ptr::null(), |o| o.as_ptr());
    // SAFETY: all tensors are live for the call; `out`, when given, is written in place.
    let y = unsafe {
        recbench_int8_epilogue(
            acc.as_ptr(),
            xs.as_ptr(),
            ws.as_ptr(),
            b.as_ptr(),
            out_ptr,
            &mut err,
        )
    };
    // SAFETY: the shim returns a new at::Tensor* (or null with `err`).
    unsafe { owned(y, err) }
}

/// The f32 weight `[out, in]` reordered once into oneDNN's blocked layout for products of
/// `rows` rows (any row count runs; that one runs fastest).
pub fn onednn_pack(w: &Tensor, rows: i64) -> Result<Tensor, TchError> {
    let mut err = std::ptr::null_mut();
    // SAFETY: `w` is live for the call; the shim returns a new at::Tensor* or null.
    unsafe { owned(recbench_onednn_pack(w.as_ptr(), rows, &mut err), err) }
}

/// `x · Wᵀ + b` for f32 `x` `[rows, in]` on a weight from [`onednn_pack`].
pub fn onednn_linear(x: &Tensor, packed: &Tensor, b: &Tensor) -> Result<Tensor, TchError> {
    let mut err = std::ptr::null_mut();
    // SAFETY: all tensors are live for the call; the shim returns a new tensor or null.
    unsafe {
        owned(
            recbench_onednn_linear(x.as_ptr(), packed.as_ptr(), b.as_ptr(), &mut err),
            err,
        )
    }
}

/// The tensor a shim call returned, now owned, or (null) the error it reported.
///
/// # Safety
/// `t` is null or a new `at::Tensor*` no one else owns; `err` as for [`take_error`].
pub(super) unsafe fn owned(t: *mut C_tensor, err: *mut c_char) -> Result<Tensor, TchError> {
    if t.is_null() {
        Err(take_error(err))
    } else {
        // SAFETY: per this function's contract.
        Ok(unsafe { Tensor::from_ptr(t) })
    }
}

/// The handle a shim's prepack returned, or (null) the error it reported.
pub(super) fn handle(p: *mut c_void, err: *mut c_char) -> Result<*mut c_void, TchError> {
    if p.is_null() {
        Err(take_error(err))
    } else {
        Ok(p)
    }
}

/// The C++ exception message the shim copied into `err`, as tch's error.
pub(super) fn take_error(err: *mut c_char) -> TchError {
    if err.is_null() {
        return TchError::Torch("quantized linear failed without a message".into());
    }
    // SAFETY: the shim set `err` to a NUL-terminated copy made with strdup, ours to free.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { libc::free(err.cast()) };
    TchError::Torch(msg)
}

/// A prepacked int8 weight with its bias, freed on drop.
pub struct Packed(*mut c_void);

// SAFETY: the packed parameters are never mutated after packing (linear_dynamic only reads
// them), and the handle is owned by exactly one `Packed`.
unsafe impl Send for Packed {}

impl Packed {
    /// `qweight`: qint8 `[out, in]`; `bias`: f32 `[out]`.
    pub fn new(qweight: &Tensor, bias: &Tensor) -> Result<Packed, TchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: both pointers are live tensors for the duration of the call.
        let p = unsafe { recbench_linear_prepack(qweight.as_ptr(), bias.as_ptr(), &mut err) };
        handle(p, err).map(Packed)
    }

    /// `x`: f32 `[rows, in]`, contiguous; returns f32 `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: `x` is live; `self.0` came from recbench_linear_prepack and is not freed.
        let t = unsafe { recbench_linear_dynamic(x.as_ptr(), self.0, true, &mut err) };
        // SAFETY: the shim returns a new at::Tensor* (or null with `err`).
        unsafe { owned(t, err) }
    }
}

impl Drop for Packed {
    fn drop(&mut self) {
        // SAFETY: the handle came from recbench_linear_prepack and is freed once.
        unsafe { recbench_linear_free(self.0) }
    }
}

/// Bits of the activations FBGEMM's per-row path quantizes to on this CPU (8 with VNNI, 7
/// with AVX2 alone), or `None` where FBGEMM does not run.
pub fn rows_bits() -> Option<u32> {
    // SAFETY: a query without arguments.
    match unsafe { recbench_rows_support() } {
        0 => None,
        b => Some(b as u32),
    }
}

/// Turns the split of `onednn_rows`' time on or off, and returns the ms it spent since the last
/// call quantizing activations, in oneDNN's matmul and in the epilogue (zero point, row scale,
/// bias), summed over its calls.
pub fn int8_split(on: bool) -> [f64; 3] {
    let mut ms = [0.0; 3];
    // SAFETY: the shim writes three doubles.
    unsafe { recbench_int8_split(on, ms.as_mut_ptr()) };
    ms
}

/// How many of libtorch's intra-op threads the shim's `at::parallel_for` passes run on (for
/// a 64-item loop; at most `tch::get_num_threads()`).
#[cfg(test)]
pub fn parallel_threads() -> usize {
    // SAFETY: a query without arguments.
    unsafe { recbench_parallel_threads() as usize }
}

/// An int8 weight prepacked by one of the shim's GEMMs, FBGEMM's or oneDNN's, run on
/// activations quantized per row (see torch_quant.cpp), freed on drop.
pub struct RowsPacked {
    handle: *mut c_void,
    forward: unsafe extern "C" fn(*const C_tensor, *mut c_void, *mut *mut c_char) -> *mut C_tensor,
    free: unsafe extern "C" fn(*mut c_void),
    /// Whether the weight is oneDNN's (which [`RowsPacked::fused`] runs).
    onednn: bool,
}

// SAFETY: the packed weight is only read after packing; one owner per handle.
unsafe impl Send for RowsPacked {}

impl RowsPacked {
    /// For FBGEMM. `wq`: int8 `[out, in]`, symmetric, with the f32 scale of each output `ws`
    /// `[out]`; `bias`: f32 `[out]`.
    pub fn fbgemm(wq: &Tensor, ws: &Tensor, bias: &Tensor) -> Result<RowsPacked, TchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: the three tensors are live for the call; the shim copies what it keeps.
        let p = unsafe { recbench_rows_prepack(wq.as_ptr(), ws.as_ptr(), bias.as_ptr(), &mut err) };
        Ok(RowsPacked {
            handle: handle(p, err)?,
            forward: recbench_rows_linear,
            free: recbench_rows_free,
            onednn: false,
        })
    }

    /// For oneDNN (`onednn::qlinear_pointwise`), in the layout it picks for `rows` rows; the
    /// arguments as for [`RowsPacked::fbgemm`].
    pub fn onednn(
        wq: &Tensor,
        ws: &Tensor,
        bias: &Tensor,
        rows: i64,
    ) -> Result<RowsPacked, TchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: the three tensors are live for the call; the shim keeps its own references.
        let p = unsafe {
            recbench_onednn_int8_prepack(wq.as_ptr(), ws.as_ptr(), bias.as_ptr(), rows, &mut err)
        };
        Ok(RowsPacked {
            handle: handle(p, err)?,
            forward: recbench_onednn_int8_linear,
            free: recbench_onednn_int8_free,
            onednn: true,
        })
    }

    /// Whether this is oneDNN's, which [`RowsPacked::fused`] runs.
    pub fn is_onednn(&self) -> bool {
        self.onednn
    }

    /// oneDNN's layer on rows quantized already, then `finish`, in one pass over the rows
    /// after the matmul; with `quantize_next`, also the result's rows quantized for the next
    /// layer in the same pass. Returns the f32 result `[rows, out]` (and those rows). Only for
    /// [`RowsPacked::onednn`].
    pub fn fused(
        &self,
        x: &QRows,
        finish: Finish,
        quantize_next: bool,
    ) -> Result<(Tensor, Option<QRows>), TchError> {
        if !self.is_onednn() {
            return Err(TchError::Torch(
                "the fused int8 layer needs oneDNN's packed weight".into(),
            ));
        }
        let null = std::ptr::null::<C_tensor>();
        let (mode, res, w, b, eps) = match finish {
            Finish::Plain => (0, null, null, null, 0.0),
            Finish::AddNorm {
                residual,
                weight,
                bias,
                eps,
            } => (1, residual.as_ptr(), weight.as_ptr(), bias.as_ptr(), eps),
            Finish::Gelu => (2, null, null, null, 0.0),
        };
        let (mut q, mut sz, mut err) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        let (q_out, sz_out): (*mut *mut C_tensor, *mut *mut C_tensor) = if quantize_next {
            (&mut q, &mut sz)
        } else {
            (std::ptr::null_mut(), std::ptr::null_mut())
        };
        // SAFETY: every tensor is live for the call (null where the mode needs none); the
        // handle is oneDNN's (checked above) and not freed; on success the shim sets `q` and
        // `sz`, when asked, to new tensors we own.
        let y = unsafe {
            recbench_onednn_int8_fused(
                x.q.as_ptr(),
                x.sz.as_ptr(),
                self.handle,
                mode,
                res,
                w,
                b,
                eps,
                q_out,
                sz_out,
                &mut err,
            )
        };
        // SAFETY: the shim returns a new at::Tensor* (or null with `err`).
        let y = unsafe { owned(y, err) }?;
        // SAFETY: on success with `quantize_next`, both are new at::Tensor*.
        let next = quantize_next.then(|| unsafe {
            QRows {
                q: Tensor::from_ptr(q),
                sz: Tensor::from_ptr(sz),
            }
        });
        Ok((y, next))
    }

    /// `x`: f32 `[rows, in]`; returns f32 `[rows, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut err = std::ptr::null_mut();
        // SAFETY: `x` is live; the handle came from the prepack `forward` belongs to and is
        // not freed.
        let t = unsafe { (self.forward)(x.as_ptr(), self.handle, &mut err) };
        // SAFETY: the shim returns a new at::Tensor* (or null with `err`).
        unsafe { owned(t, err) }
    }
}

impl Drop for RowsPacked {
    fn drop(&mut self) {
        // SAFETY: the handle came from the prepack `free` belongs to and is freed once.
        unsafe { (self.free)(self.handle) }
    }
}
