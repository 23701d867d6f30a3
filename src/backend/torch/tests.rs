//! Unit tests of the torch backend.
use super::*;

/// The one-pass quantize and epilogue of torch_quant.cpp compute exactly what the ATen
/// chains they replace compute (same rounding: half to even; same multiplication order),
/// including rows of zeros and values on the rounding boundary.
#[test]
fn one_pass_quantize_and_epilogue_equal_the_aten_chains() {
    let _guard = tch::no_grad_guard();
    tch::manual_seed(11);
    let opts = (Kind::Float, tch::Device::Cpu);
    let x = Tensor::randn([37, 300], opts) * 3.0;
    // A zero row, and a row of k / 254 with maximum 1, which lands on k / 2 after scaling.
    let _ = x.get(3).fill_(0.0);
    let halves = Tensor::arange(300, opts).remainder(255.0) * (1.0 / 254.0);
    x.get(5).copy_(&halves);
    let (q1, s1) = quant::quantize_rows(&x).unwrap();
    let (q2, s2) = quantize_rows(&x).unwrap();
    assert_eq!(q1.kind(), Kind::Int8);
    assert!(q1.equal(&q2), "quantized values differ");
    assert!(s1.equal(&s2), "scales differ");
    let w = Tensor::randn([64, 300], opts);
    let (w_t, ws) = quantize_weight(&w).unwrap();
    let b = Tensor::randn([64], opts);
    let acc = q1.internal_int_mm(&w_t);
    let chain = acc.to_kind(Kind::Float) * &s1 * &ws + &b;
    assert!(quant::epilogue(&acc, &s1, &ws, &b, None)
        .unwrap()
        .equal(&chain));
    // Into a row block of a larger output: those rows only.
    let y = Tensor::zeros([50, 64], opts);
    let block = y.narrow(0, 10, 37);
    let _ = quant::epilogue(&acc, &s1, &ws, &b, Some(&block)).unwrap();
    assert!(y.narrow(0, 10, 37).equal(&chain));
    assert_eq!(
        f64::try_from(y.narrow(0, 0, 10).abs().sum(Kind::Double)).unwrap(),
        0.0
    );
}

/// Blocks of rows change nothing but the memory traffic: activations are quantized per
/// row, so the blocked kernel's output equals the whole-input kernel's exactly, across a
/// partial last block.
#[test]
fn blocked_int_mm_equals_int_mm() {
    let _guard = tch::no_grad_guard();
    tch::manual_seed(5);
    let opts = (Kind::Float, tch::Device::Cpu);
    let w = Tensor::randn([48, 32], opts);
    let b = Tensor::randn([48], opts);
    let x = Tensor::randn([2 * INT8_BLOCK_ROWS + 77, 32], opts);
    let whole = Linear::new(&w, &b, Precision::Int8, Kind::Float, 0, 64).unwrap();
    let blocked = Linear::new(&w, &b, Precision::Int8, Kind::Float, 2, 64).unwrap();
    assert!(matches!(blocked, Linear::Int8 { block: Some(_), .. }));
    assert!(whole
        .forward(&x)
        .unwrap()
        .equal(&blocked.forward(&x).unwrap()));
}

/// FBGEMM on per-row activations computes what `_int_mm` does (with 8-bit activations the
/// same integer products; only the order of the float rescaling differs) over several row
/// blocks, the last one partial; with 7-bit activations it stays close to the fp32 layer.
#[test]
fn fbgemm_rows_matches_int_mm_across_row_blocks() {
    let Some(bits) = quant::rows_bits() else {
        eprintln!("skipped: FBGEMM does not run on this CPU");
        return;
    };
    let _guard = tch::no_grad_guard();
    tch::manual_seed(5);
    let opts = (Kind::Float, tch::Device::Cpu);
    let w = Tensor::randn([200, 384], opts) * 0.05;
    let b = Tensor::randn([200], opts);
    let x = Tensor::randn([150, 384], opts) * 2.0;
    let (got, int_mm) = (
        run_int8(&w, &b, "fbgemm_rows", 64, &x),
        run_int8(&w, &b, "int_mm", 64, &x),
    );
    let scale = max_abs(&int_mm);
    let diff = max_abs(&(&got - &int_mm));
    if bits == 8 {
        assert!(diff <= 1e-5 * scale, "max diff {diff} of {scale}");
    } else {
        let exact = x.linear(&w, Some(&b));
        let err = max_abs(&(&got - &exact));
        assert!(err <= 0.05 * scale, "7-bit: max diff {err} of {scale}");
    }
}

/// The int8 kernel `name` on a layer packed for `packed_rows` rows, applied to `x`.
fn run_int8(w: &Tensor, b: &Tensor, name: &str, packed_rows: i64, x: &Tensor) -> Tensor {
    let k = INT8_KERNELS.iter().position(|n| *n == name).unwrap();
    Linear::new(w, b, Precision::Int8, Kind::Float, k, packed_rows)
        .unwrap()
        .forward(x)
        .unwrap()
}

/// The RMS of `y − exact` over the RMS of `exact`.
fn rel_rms(y: &Tensor, exact: &Tensor) -> f64 {
    let e = f64::try_from((y - exact).square().mean(Kind::Double).sqrt()).unwrap();
    e / f64::try_from(exact.square().mean(Kind::Double).sqrt()).unwrap()
}

/// oneDNN's int8 linear on u8 per-row activations with a zero point: near the fp32 layer at
/// the row count it was packed for and at others, and on one-sided rows (GELU's outputs,
/// which the next layer of a BERT reads) nearer than `_int_mm`'s symmetric int8, as a zero
/// point earns; a zero point one step off fails it.
#[test]
fn onednn_rows_is_near_fp32_and_keeps_the_levels_of_one_sided_rows() {
    let _guard = tch::no_grad_guard();
    tch::manual_seed(9);
    let opts = (Kind::Float, tch::Device::Cpu);
    let w = Tensor::randn([200, 384], opts) * 0.05;
    let b = Tensor::randn([200], opts);
    for rows in [150, 37, 1] {
        let x = Tensor::randn([rows, 384], opts) * 2.0;
        let err = rel_rms(
            &run_int8(&w, &b, "onednn_rows", 150, &x),
            &x.linear(&w, Some(&b)),
        );
        assert!(err < 0.01, "{rows} rows: relative RMS error {err}");
    }
    let x = (Tensor::randn([150, 384], opts) * 2.0).gelu("none");
    let exact = x.linear(&w, Some(&b));
    let onednn = rel_rms(&run_int8(&w, &b, "onednn_rows", 150, &x), &exact);
    let int_mm = rel_rms(&run_int8(&w, &b, "int_mm", 150, &x), &exact);
    assert!(
        onednn < 0.75 * int_mm,
        "one-sided rows: {onednn} against _int_mm's {int_mm}"
    );
}

/// A C++ exception in the shim comes back as an error with its message, for a helper that
/// returns a status and for one that returns a tensor.
#[test]
fn shim_errors_reach_rust_as_errors() {
    let ints = Tensor::zeros([4, 8], (Kind::Int, tch::Device::Cpu));
    let e = quant::quantize_rows(&ints).unwrap_err().to_string();
    assert!(e.contains("expected f32"), "{e}");
    let f = Tensor::zeros([4, 8], (Kind::Float, tch::Device::Cpu));
    let e = quant::epilogue(&f, &f, &f, &f, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected int32"), "{e}");
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

/// A random 64 → 96 layer's weight and bias, from `seed`.
fn random_layer(seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let opts = (Kind::Float, tch::Device::Cpu);
    (
        Tensor::randn([96, 64], opts) * 0.1,
        Tensor::randn([96], opts),
    )
}

/// The fp32 kernels compute the same layer to float rounding, oneDNN on a prepacked weight
/// included, at the row count it was packed for and at others (a server batch may be
/// smaller than the run's largest).
#[test]
fn fp32_kernels_agree_at_any_row_count() {
    let _guard = tch::no_grad_guard();
    let (w, b) = random_layer(3);
    let opts = (Kind::Float, tch::Device::Cpu);
    let packed = Linear::new(&w, &b, Precision::Fp32, Kind::Float, 2, 256).unwrap();
    assert!(matches!(packed, Linear::DensePacked { .. }));
    for rows in [256, 37, 1] {
        let x = Tensor::randn([rows, 64], opts);
        let exact = x.linear(&w, Some(&b));
        for (k, name) in FP32_KERNELS.iter().enumerate() {
            let y = match k {
                2 => packed.forward(&x),
                _ => Linear::new(&w, &b, Precision::Fp32, Kind::Float, k, 256)
                    .unwrap()
                    .forward(&x),
            }
            .unwrap();
            assert_eq!(y.size(), exact.size());
            let diff = max_abs(&(&y - &exact));
            assert!(diff <= 1e-5, "{name} at {rows} rows: {diff}");
        }
    }
}

/// Each int8 kernel computes the fp32 layer up to int8 rounding: close to it (cosine of the
/// outputs), not equal to it (it really is quantized), with the bias applied.
#[test]
fn every_int8_kernel_approximates_the_fp32_layer() {
    let _guard = tch::no_grad_guard();
    let (w, b) = random_layer(7);
    let x = Tensor::randn([40, 64], (Kind::Float, tch::Device::Cpu));
    let exact = Linear::new(&w, &b, Precision::Fp32, Kind::Float, 0, 64)
        .unwrap()
        .forward(&x)
        .unwrap();
    for (k, name) in INT8_KERNELS.iter().enumerate() {
        let y = Linear::new(&w, &b, Precision::Int8, Kind::Float, k, 64)
            .unwrap()
            .forward(&x)
            .unwrap();
        assert_eq!(y.size(), exact.size(), "{name}");
        let cos =
            f64::try_from((&y * &exact).sum(Kind::Double) / (y.norm() * exact.norm())).unwrap();
        let max_diff = max_abs(&(&y - &exact));
        assert!(cos > 0.999, "{name}: cosine {cos}");
        assert!(
            max_diff > 1e-6 && max_diff < 0.2,
            "{name}: max diff {max_diff}"
        );
    }
}

/// The fused int8 layer computes what the unfused ops compute on the same quantized rows:
/// the plain layer equals `onednn_rows`' forward; with the residual add and LayerNorm it is
/// within float rounding of libtorch's `add` + `layer_norm` on that forward's output; and the
/// rows it quantizes for the next layer are the ones the standalone quantizer makes of its
/// result; with GELU it is within float rounding of libtorch's exact GELU, over ±12 and near 0.
/// A wrong epsilon, a dropped residual or a wrong erf coefficient fails it.
#[test]
fn the_fused_int8_layer_equals_the_ops_it_fuses() {
    use crate::backend::torch::ffi::Finish;
    let _guard = tch::no_grad_guard();
    tch::manual_seed(12);
    let opts = (Kind::Float, tch::Device::Cpu);
    let (w, b) = (
        Tensor::randn([384, 384], opts) * 0.05,
        Tensor::randn([384], opts),
    );
    let (q, scale) = quantize_rows(&w).unwrap();
    let packed = quant::RowsPacked::onednn(&q, &scale.reshape([-1]), &b, 64).unwrap();
    let x = Tensor::randn([37, 384], opts) * 2.0;
    let (res, nw, nb) = (
        Tensor::randn([37, 384], opts),
        Tensor::randn([384], opts),
        Tensor::randn([384], opts),
    );
    let xq = quant::quantize_rows_u8(&x).unwrap();
    let unfused = packed.forward(&x).unwrap();
    let close = |got: &Tensor, want: &Tensor, what: &str| {
        let err = max_abs(&(got - want)) / max_abs(want);
        assert!(err < 2e-6, "{what}: max error {err} of the largest value");
    };

    let (plain, none) = packed.fused(&xq, Finish::Plain, false).unwrap();
    assert!(none.is_none());
    assert!(plain.equal(&unfused), "the plain fused layer differs");

    let eps = 1e-2;
    let finish = Finish::AddNorm {
        residual: &res,
        weight: &nw,
        bias: &nb,
        eps,
    };
    let (normed, next) = packed.fused(&xq, finish, true).unwrap();
    let want = (&unfused + &res).layer_norm([384].as_slice(), Some(&nw), Some(&nb), eps, false);
    close(&normed, &want, "add + LayerNorm");
    let next = next.expect("asked for");
    let again = quant::quantize_rows_u8(&normed).unwrap();
    assert!(
        next.q.equal(&again.q) && next.sz.equal(&again.sz),
        "next rows differ"
    );

    // GELU over the whole range its erf approximation covers, the tails included.
    let wide = Tensor::linspace(-12.0, 12.0, 37 * 384, opts).reshape([37, 384]);
    let b0 = Tensor::zeros([384], opts);
    let eye = quantize_rows(&Tensor::eye(384, opts)).unwrap();
    let ident = quant::RowsPacked::onednn(&eye.0, &eye.1.reshape([-1]), &b0, 64).unwrap();
    let wq = quant::quantize_rows_u8(&wide).unwrap();
    let (linear, _) = ident.fused(&wq, Finish::Plain, false).unwrap();
    let (gelu, next) = ident.fused(&wq, Finish::Gelu, true).unwrap();
    close(&gelu, &linear.gelu("none"), "GELU");
    let near_zero = linear.abs().le(0.5);
    let small = |t: &Tensor| t.masked_select(&near_zero);
    close(&small(&gelu), &small(&linear.gelu("none")), "GELU near 0");
    let (gelu_x, _) = packed.fused(&xq, Finish::Gelu, false).unwrap();
    close(&gelu_x, &unfused.gelu("none"), "GELU of the layer");
    let next = next.expect("asked for");
    let again = quant::quantize_rows_u8(&gelu).unwrap();
    assert!(
        next.q.equal(&again.q) && next.sz.equal(&again.sz),
        "next rows after GELU differ"
    );
}

/// The shim's per-row passes (quantizing, epilogues, the fused layer, FBGEMM's row blocks) run
/// on libtorch's intra-op threads: `at::parallel_for` is an OpenMP pragma compiled into the shim
/// itself, which without `-fopenmp` (build.rs) runs every pass on the calling thread alone.
#[test]
fn the_shims_parallel_passes_use_the_intra_op_threads() {
    tch::set_num_threads(2);
    assert_eq!(
        quant::parallel_threads(),
        2,
        "the shim's parallel_for ran on"
    );
}
