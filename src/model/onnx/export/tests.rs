//! Tests of the ONNX export: graphs, precisions, their outputs against candle.
use super::*;
use crate::model::Preset;
use std::collections::BTreeMap;

/// Deterministic small weights of the config's shapes.
fn fake(cfg: &BertConfig) -> BertTensors<Vec<f32>> {
    BertTensors::read(cfg, |_, shape| {
        let n: usize = shape.iter().product();
        Ok::<_, std::convert::Infallible>((0..n).map(|k| ((k % 7) as f32 - 3.0) * 0.01).collect())
    })
    .unwrap_or_else(|e| match e {})
}

fn op_counts(m: &ModelProto) -> BTreeMap<String, usize> {
    let mut c = BTreeMap::new();
    for n in &m.graph.as_ref().unwrap().node {
        *c.entry(n.op_type.clone()).or_insert(0) += 1;
    }
    c
}

fn model(flavour: Flavour, precision: Precision) -> ModelProto {
    let cfg = Preset::Tiny.config();
    build(
        &cfg,
        &fake(&cfg),
        flavour,
        precision,
        Int8Scheme::per_row(Int8Form::QuantizeLinear),
    )
    .unwrap()
}

#[test]
fn plain_fp32_uses_standard_ops_only_with_the_expected_counts() {
    let m = model(Flavour::Plain, Precision::Fp32);
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].version, OPSET);
    let g = m.graph.as_ref().unwrap();
    assert!(g.node.iter().all(|n| n.domain.is_empty()));
    let c = op_counts(&m);
    let layers = Preset::Tiny.config().num_layers;
    // 4 linear layers + 2 attention products per layer.
    assert_eq!(c["MatMul"], 6 * layers);
    assert_eq!(c["LayerNormalization"], 2 * layers + 1);
    assert_eq!(c["Softmax"], layers);
    assert_eq!(c["Erf"], layers);
    assert_eq!(c["Gather"], 2);
    assert_eq!(c["Cast"], 1, "only the mask is cast in fp32: {c:?}");
}

#[test]
fn fused_fp32_uses_contrib_ops() {
    let m = model(Flavour::Fused, Precision::Fp32);
    let c = op_counts(&m);
    let layers = Preset::Tiny.config().num_layers;
    assert_eq!(c["EmbedLayerNormalization"], 1);
    assert_eq!(c["Attention"], layers);
    assert_eq!(c["SkipLayerNormalization"], 2 * layers);
    assert_eq!(c["BiasGelu"], layers);
    assert_eq!(c["MatMul"], 3 * layers);
    assert!(!c.contains_key("Softmax") && !c.contains_key("LayerNormalization"));
    assert!(m.opset_import.iter().any(|o| o.domain == MS_DOMAIN));
}

#[test]
fn int8_quantizes_every_linear_layer() {
    let layers = Preset::Tiny.config().num_layers;
    let c = op_counts(&model(Flavour::Plain, Precision::Int8));
    assert_eq!(c["ReduceMax"], 4 * layers, "one activation scale per row");
    assert_eq!(c["MatMulInteger"], 4 * layers);
    assert_eq!(
        c["MatMul"],
        2 * layers,
        "only the attention products stay float"
    );
    let c = op_counts(&model(Flavour::Fused, Precision::Int8));
    assert_eq!(c["MatMulInteger"], 4 * layers);
    assert_eq!(c["MultiHeadAttention"], layers);
    assert!(!c.contains_key("MatMul"));
}

#[test]
fn the_tofloat_form_rescales_in_onnx_runtimes_integer_gemm() {
    let layers = Preset::Tiny.config().num_layers;
    let cfg = Preset::Tiny.config();
    let m = build(
        &cfg,
        &fake(&cfg),
        Flavour::Plain,
        Precision::Int8,
        Int8Scheme::per_row(Int8Form::ToFloat),
    )
    .unwrap();
    let c = op_counts(&m);
    assert_eq!(c["MatMulIntegerToFloat"], 4 * layers);
    assert_eq!(c["ReduceMin"], 4 * layers, "one activation scale per row");
    assert!(!c.contains_key("MatMulInteger") && !c.contains_key("Abs"));
    assert!(m.opset_import.iter().any(|o| o.domain == MS_DOMAIN));
    // One block per row: opset 21's QuantizeLinear, on the `[rows, in]` view's axis 1.
    assert_eq!(m.opset_import[0].version, 21);
    assert_eq!(m.ir_version, 10);
    for n in m.graph.as_ref().unwrap().node.iter() {
        if n.op_type == "QuantizeLinear" {
            let attr = |a: &str| n.attribute.iter().find(|x| x.name == a).and_then(|x| x.i);
            assert_eq!(attr("axis"), Some(1));
            assert_eq!(attr("block_size"), Some(cfg.hidden_size as i64));
            break;
        }
    }
}

#[test]
fn the_layers_chosen_per_tensor_run_onnx_runtimes_dynamic_quantize_matmul() {
    let layers = Preset::Tiny.config().num_layers;
    let cfg = Preset::Tiny.config();
    for flavour in Flavour::ALL {
        let int8 = Int8Scheme {
            form: Int8Form::ToFloat,
            per_tensor: PerTensor::DEFAULT,
        };
        let m = build(&cfg, &fake(&cfg), flavour, Precision::Int8, int8).unwrap();
        let c = op_counts(&m);
        assert_eq!(
            c["DynamicQuantizeMatMul"], layers,
            "{flavour}: the QKV projections"
        );
        assert_eq!(
            c["MatMulIntegerToFloat"],
            3 * layers,
            "{flavour}: the other three"
        );
        assert_eq!(c["ReduceMin"], 3 * layers, "{flavour}");
        let g = m.graph.as_ref().unwrap();
        let dq = g
            .node
            .iter()
            .find(|n| n.op_type == "DynamicQuantizeMatMul")
            .unwrap();
        assert_eq!(dq.input[1], "l0.qkv.wq");
        assert_eq!(dq.input[2], "l0.qkv.wscale");
        // The bias is added in the op's output pass (MultiHeadAttention takes none).
        assert_eq!(
            dq.input.get(4).map(String::as_str),
            Some("l0.qkv.b"),
            "{flavour}"
        );
    }
}

#[test]
fn per_tensor_layers_parse_and_name_themselves() {
    assert_eq!(PerTensor::parse("none").unwrap(), PerTensor::NONE);
    assert_eq!(PerTensor::parse("qkv").unwrap(), PerTensor::DEFAULT);
    let two = PerTensor::parse("out, qkv").unwrap();
    assert!(two.has("qkv") && two.has("out") && !two.has("inter"));
    assert_eq!(two.to_string(), "qkv,out");
    let err = PerTensor::parse("qkv,ffn").unwrap_err();
    assert!(err.contains("\"ffn\"") && err.contains("attn_out"), "{err}");
    let scheme = Int8Scheme {
        form: Int8Form::ToFloat,
        per_tensor: two,
    };
    assert_eq!(scheme.to_string(), "tofloat+qkv+out-per-tensor");
    assert_eq!(Int8Scheme::per_row(Int8Form::Divide).to_string(), "divide");
}

#[test]
fn fp16_stores_linear_weights_in_f16_and_keeps_embeddings_f32() {
    let m = model(Flavour::Plain, Precision::Fp16);
    let g = m.graph.as_ref().unwrap();
    let ty = |n: &str| {
        g.initializer
            .iter()
            .find(|t| t.name == n)
            .unwrap()
            .data_type
    };
    assert_eq!(ty("l0.qkv.w"), dtype::FLOAT16);
    assert_eq!(ty("l1.out.b"), dtype::FLOAT16);
    assert_eq!(ty("emb.word"), dtype::FLOAT);
    assert_eq!(ty("l0.out_ln.weight"), dtype::FLOAT);
}

#[test]
fn shapes_of_inputs_outputs_and_weights() {
    let cfg = Preset::Tiny.config();
    let m = model(Flavour::Plain, Precision::Fp32);
    let g = m.graph.as_ref().unwrap();
    let names: Vec<&str> = g.input.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
    let out = g.output[0]
        .r#type
        .as_ref()
        .unwrap()
        .tensor_type
        .as_ref()
        .unwrap();
    assert_eq!(out.elem_type, dtype::FLOAT);
    let dims = &out.shape.as_ref().unwrap().dim;
    assert_eq!(dims[0].dim_param.as_deref(), Some("batch"));
    assert_eq!(dims[1].dim_value, Some(cfg.hidden_size as i64));
    let qkv = g.initializer.iter().find(|t| t.name == "l0.qkv.w").unwrap();
    let h = cfg.hidden_size as i64;
    assert_eq!(qkv.dims, [h, 3 * h]);
    assert_eq!(qkv.raw_data.len() as i64, h * 3 * h * 4);
    // Every node input is a graph input, an initializer or an earlier node's output.
    let mut known: std::collections::HashSet<&str> = names
        .iter()
        .copied()
        .chain(g.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    known.insert("");
    for n in &g.node {
        for i in &n.input {
            assert!(known.contains(i.as_str()), "{} reads undefined {i}", n.name);
        }
        known.extend(n.output.iter().map(|s| s.as_str()));
    }
    assert!(known.contains("embedding"));
}

#[test]
fn per_channel_quantization_round_trips_within_half_a_step() {
    let w: Vec<f32> = (0..12)
        .map(|k| (k as f32 - 5.0) * if k < 6 { 0.1 } else { 3.0 })
        .collect();
    let (q, s) = quantize_per_channel(&w, 2, 6);
    assert_eq!(s.len(), 2);
    assert!(s[0] < s[1]);
    for o in 0..2 {
        for k in 0..6 {
            let back = q[k * 2 + o] as f32 * s[o];
            assert!((back - w[o * 6 + k]).abs() <= s[o] / 2.0 + 1e-6);
        }
    }
}
