//! The int8 linear layer of the exporter and the choices that shape it: the form of the layers
//! quantized per row ([`Int8Form`]) and the layers quantized per tensor ([`PerTensor`]).

use super::{attr_i, dtype, Graph, MS_DOMAIN, OPSET};
use crate::error::{Error, Result};
use crate::spec::Precision;

/// Selects how an int8 graph quantizes a linear layer's input rows (`int8_form`).
pub const INT8_FORM_ENV: &str = "RECBENCH_ONNX_INT8_FORM";
/// Selects the linear layers quantized with one scale per tensor (`per_tensor`).
pub const PER_TENSOR_ENV: &str = "RECBENCH_ONNX_INT8_PER_TENSOR";

/// How an int8 linear layer turns its input rows into uint8 and its int32 product back into
/// f32 (the scale per row is the same in all three). `ToFloat`, the default: the row's largest
/// magnitude from `ReduceMax` and `ReduceMin` (no `Abs` of the whole input), one
/// `QuantizeLinear` with a block the width of a row (opset 21: ONNX Runtime's blocked
/// quantizer; opset 17's per-axis one took 1.9–2.8× its time on MiniLM's layer inputs at
/// batch 8 and 32 on the AMX VM, docs/benchmarks/ort-quantize-rows-vm-20261206T0605Z.txt),
/// and ONNX Runtime's
/// `MatMulIntegerToFloat` (com.microsoft), which applies the weight's column scales in the
/// GEMM's output pass (0.81–0.83 of `QuantizeLinear`'s time on the AMX VM,
/// docs/benchmarks/onnx-int8-tofloat-vm-20261206T0215Z.txt). `QuantizeLinear`, the form
/// before it (opset 17): an `Abs`, the per-axis `QuantizeLinear`, then `MatMulInteger`, `Cast`
/// and two `Mul`s. `Divide`: `Div`, `Round`, `Add` and `Cast` instead of `QuantizeLinear`
/// (kept for `scripts/bench/onnx_int8_forms.sh`). All three round half to even and give the
/// same bytes to the GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Form {
    QuantizeLinear,
    Divide,
    ToFloat,
}

impl std::fmt::Display for Int8Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Int8Form::QuantizeLinear => "quantizelinear",
            Int8Form::Divide => "divide",
            Int8Form::ToFloat => "tofloat",
        })
    }
}

/// The form `RECBENCH_ONNX_INT8_FORM` selects: `tofloat` (or unset), `quantizelinear` or
/// `divide`.
pub fn int8_form() -> Result<Int8Form> {
    match std::env::var(INT8_FORM_ENV).as_deref() {
        Err(_) | Ok("") | Ok("tofloat") => Ok(Int8Form::ToFloat),
        Ok("quantizelinear") => Ok(Int8Form::QuantizeLinear),
        Ok("divide") => Ok(Int8Form::Divide),
        Ok(other) => Err(env_error(
            INT8_FORM_ENV,
            format!("unknown int8 form {other:?}; allowed: quantizelinear, divide, tofloat"),
        )),
    }
}

fn env_error(var: &str, message: String) -> Error {
    Error::input("<environment>", None, var, message)
}

/// The linear layers of each encoder layer whose input is quantized with one scale for the
/// whole tensor, by ONNX Runtime's `DynamicQuantizeMatMul` (asymmetric uint8 from the tensor's
/// minimum and maximum, the weight's column scales and the bias in the GEMM's output pass: the
/// op `quantize_dynamic`'s graphs run), instead of one scale per row. The default is the QKV
/// projection alone: on MiniLM against candle fp32 it gave min probe cosine 0.9968 and top-10
/// overlap 0.98 / 0.97 (plain / fused flavour), every layer per row 0.9967 and 0.95 / 0.96;
/// the attention output per tensor 0.94 in the fused flavour, the intermediate 0.91 / 0.92, the
/// output 0.93, and every layer per tensor failed parity (min cosine 0.9897)
/// (docs/benchmarks/onnx-int8-per-tensor-vm-20261206T0607Z.txt,
/// `scripts/bench/onnx_int8_per_tensor.sh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerTensor(u8);

impl PerTensor {
    /// The linear layers of an encoder layer, as the exporter names them.
    pub const KINDS: [&'static str; 4] = ["qkv", "attn_out", "inter", "out"];
    /// Every layer per row.
    pub const NONE: PerTensor = PerTensor(0);
    /// The QKV projection per tensor, the others per row.
    pub const DEFAULT: PerTensor = PerTensor(1);

    /// Whether the layer `kind` (one of [`Self::KINDS`]) is quantized per tensor.
    pub fn has(self, kind: &str) -> bool {
        Self::KINDS
            .iter()
            .position(|k| *k == kind)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    /// Parses `none` or a comma-separated list of [`Self::KINDS`].
    pub fn parse(s: &str) -> std::result::Result<PerTensor, String> {
        if s.trim() == "none" {
            return Ok(PerTensor::NONE);
        }
        let mut bits = 0;
        for kind in s.split(',').map(str::trim) {
            match Self::KINDS.iter().position(|k| *k == kind) {
                Some(i) => bits |= 1 << i,
                None => {
                    return Err(format!(
                        "unknown linear layer {kind:?}; allowed: none, or a comma-separated \
                         list of {}",
                        Self::KINDS.join(", ")
                    ))
                }
            }
        }
        Ok(PerTensor(bits))
    }
}

impl std::fmt::Display for PerTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<&str> = Self::KINDS
            .iter()
            .copied()
            .filter(|k| self.has(k))
            .collect();
        if kinds.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&kinds.join(","))
        }
    }
}

/// The layers `RECBENCH_ONNX_INT8_PER_TENSOR` selects ([`PerTensor::DEFAULT`] when unset).
pub fn per_tensor() -> Result<PerTensor> {
    match std::env::var(PER_TENSOR_ENV).as_deref() {
        Err(_) | Ok("") => Ok(PerTensor::DEFAULT),
        Ok(s) => PerTensor::parse(s).map_err(|m| env_error(PER_TENSOR_ENV, m)),
    }
}

/// How an int8 graph is built: the form of its per-row layers and its per-tensor layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Scheme {
    pub form: Int8Form,
    pub per_tensor: PerTensor,
}

impl Int8Scheme {
    /// The scheme the environment selects ([`int8_form`], [`per_tensor`]).
    pub fn from_env() -> Result<Int8Scheme> {
        Ok(Int8Scheme {
            form: int8_form()?,
            per_tensor: per_tensor()?,
        })
    }

    /// Every layer per row, in `form`.
    pub fn per_row(form: Int8Form) -> Int8Scheme {
        Int8Scheme {
            form,
            per_tensor: PerTensor::NONE,
        }
    }
}

/// `tofloat` with every layer per row; `tofloat+qkv-per-tensor` with the QKV projection per
/// tensor (cache tags and file names).
impl std::fmt::Display for Int8Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per_tensor {
            PerTensor::NONE => write!(f, "{}", self.form),
            p => write!(
                f,
                "{}+{}-per-tensor",
                self.form,
                p.to_string().replace(',', "+")
            ),
        }
    }
}

/// Symmetric per-output-channel int8 quantization of a `[out, in]` weight. Returns the weight
/// transposed to `[in, out]` as int8 and one scale per output channel.
pub fn quantize_per_channel(w: &[f32], out: usize, inp: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; w.len()];
    let mut scales = Vec::with_capacity(out);
    for o in 0..out {
        let row = &w[o * inp..(o + 1) * inp];
        let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        for (k, v) in row.iter().enumerate() {
            q[k * out + o] = (v / s).round().clamp(-127.0, 127.0) as i8;
        }
        scales.push(s);
    }
    (q, scales)
}

impl Graph {
    /// Default-domain opset: 21 for an int8 graph in the `tofloat` form (its `QuantizeLinear`
    /// takes a block size), else [`OPSET`].
    pub(super) fn opset(&self) -> i64 {
        if self.precision == Precision::Int8 && self.int8.form == Int8Form::ToFloat {
            21
        } else {
            OPSET
        }
    }

    /// `x · wᵀ (+ b)` for a `[out, inp]` weight in int8: weights symmetric with one scale per
    /// output channel; activations with one scale per row (token), or per tensor for the
    /// layers of [`PerTensor`]. `name` is `l<layer>.<kind>`.
    pub(super) fn linear_int8(
        &mut self,
        x: &str,
        name: &str,
        w: &[f32],
        b: Option<&[f32]>,
        inp: usize,
        out: usize,
    ) -> String {
        let (q, scales) = quantize_per_channel(w, out, inp);
        let wq = self.init(
            &format!("{name}.wq"),
            &[inp, out],
            dtype::INT8,
            q.iter().map(|v| *v as u8).collect(),
        );
        let ws = self.init_f32(&format!("{name}.wscale"), &[out], &scales);
        let bias = b.map(|b| self.init_f32(&format!("{name}.b"), &[out], b));
        let kind = name.split_once('.').map_or(name, |(_, k)| k);
        if self.int8.per_tensor.has(kind) {
            let inputs = [x, &wq, &ws, "", bias.as_deref().unwrap_or("")];
            let n = if bias.is_some() { 5 } else { 3 };
            return self
                .op_n("DynamicQuantizeMatMul", MS_DOMAIN, &inputs[..n], 1, vec![])
                .remove(0);
        }
        // Per row: a single scale per tensor let the outliers of MiniLM's GELU outputs cost
        // too much (see `PerTensor`).
        let form = self.int8.form;
        let max = if form == Int8Form::ToFloat {
            // max |x| = max(max x, −min x), without writing |x| out. Opset 21: axes as input.
            let axes = self.const_i64(&[-1]);
            let keep = || vec![attr_i("keepdims", 1)];
            let hi = self.op("ReduceMax", &[x, &axes], keep());
            let lo = self.op("ReduceMin", &[x, &axes], keep());
            let neg = self.op("Neg", &[&lo], vec![]);
            self.op("Max", &[&hi, &neg], vec![])
        } else {
            let abs = self.op("Abs", &[x], vec![]);
            let row = vec![super::attr_ints("axes", &[-1]), attr_i("keepdims", 1)];
            self.op("ReduceMax", &[&abs], row)
        };
        let c127 = self.const_f32(&[], &[1.0 / 127.0]);
        let s = self.op("Mul", &[&max, &c127], vec![]);
        let floor = self.const_f32(&[], &[1e-12]);
        let s = self.op("Max", &[&s, &floor], vec![]);
        // Stored as uint8 around a zero point of 128: u8×s8 is MLAS's fast integer GEMM
        // (s8×s8 measured 3.5× slower than fp32 on minilm-l6).
        let zp = self.const_u8(128);
        if form == Int8Form::Divide {
            let xs = self.op("Div", &[x, &s], vec![]);
            let xr = self.op("Round", &[&xs], vec![]);
            let c128 = self.const_f32(&[], &[128.0]);
            let xu = self.op("Add", &[&xr, &c128], vec![]);
            let xq = self.cast(&xu, dtype::UINT8);
            let acc = self.op("MatMulInteger", &[&xq, &wq, &zp], vec![]);
            let y = self.rescale(&acc, &s, &ws);
            return self.add_bias(y, bias);
        }
        // One QuantizeLinear pass over the `[rows, in]` view with a scale per row: the same
        // arithmetic as the divide form (x / s rounded half to even, plus 128, saturated to
        // uint8) in one pass over the activations instead of four.
        let rows2 = self.const_i64(&[-1, inp as i64]);
        let x2 = self.op("Reshape", &[x, &rows2], vec![]);
        let col = self.const_i64(&[-1, 1]);
        let s2 = self.op("Reshape", &[&s, &col], vec![]);
        let y = if form == Int8Form::ToFloat {
            // A block of `inp`: one scale per row of `[rows, in]`, on axis 1.
            let n = self.op("Shape", &[&s2], vec![]);
            let zps = self.op("Expand", &[&zp, &n], vec![]);
            let at = vec![attr_i("axis", 1), attr_i("block_size", inp as i64)];
            let xq = self.op("QuantizeLinear", &[&x2, &s2, &zps], at);
            // (xq − 128) · wq · 1 · ws[col], in f32; then the row scales.
            let one = self.const_f32(&[], &[1.0]);
            let inputs = [xq.as_str(), &wq, &one, &ws, &zp];
            let acc = self
                .op_n("MatMulIntegerToFloat", MS_DOMAIN, &inputs, 1, vec![])
                .remove(0);
            self.op("Mul", &[&acc, &s2], vec![])
        } else {
            let flat = self.const_i64(&[-1]);
            let s1 = self.op("Reshape", &[&s, &flat], vec![]);
            let n = self.op("Shape", &[&s1], vec![]);
            let zps = self.op("Expand", &[&zp, &n], vec![]);
            let xq = self.op("QuantizeLinear", &[&x2, &s1, &zps], vec![attr_i("axis", 0)]);
            let acc = self.op("MatMulInteger", &[&xq, &wq, &zp], vec![]);
            self.rescale(&acc, &s2, &ws)
        };
        let y = self.add_bias(y, bias);
        // Back to the input's leading dimensions.
        let shape = self.op("Shape", &[x], vec![]);
        let (st, en) = (self.const_i64(&[0]), self.const_i64(&[-1]));
        let lead = self.op("Slice", &[&shape, &st, &en], vec![]);
        let o = self.const_i64(&[out as i64]);
        let to = self.op("Concat", &[&lead, &o], vec![attr_i("axis", 0)]);
        self.op("Reshape", &[&y, &to], vec![])
    }

    /// An int32 product back in f32: times the row scales and the weight's column scales.
    fn rescale(&mut self, acc: &str, row_scale: &str, ws: &str) -> String {
        let accf = self.cast(acc, dtype::FLOAT);
        let y = self.op("Mul", &[&accf, row_scale], vec![]);
        self.op("Mul", &[&y, ws], vec![])
    }

    /// `y + bias`, where there is a bias (an initializer's name).
    pub(super) fn add_bias(&mut self, y: String, bias: Option<String>) -> String {
        match bias {
            Some(b) => self.op("Add", &[&y, &b], vec![]),
            None => y,
        }
    }

    /// A uint8 scalar constant.
    fn const_u8(&mut self, v: u8) -> String {
        self.next += 1;
        let name = format!("const_{}", self.next);
        self.init(&name, &[], dtype::UINT8, vec![v])
    }
}
