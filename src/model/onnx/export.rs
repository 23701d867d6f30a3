//! The ONNX exporter: BERT config + safetensors weights → an `.onnx` graph that computes exactly
//! what the candle backend computes (QKV fused in one projection, post-LayerNorm, GELU with erf,
//! masked mean pooling and L2 normalisation inside the graph; softmax, LayerNorm and pooling in
//! f32 whatever the precision).
//!
//! Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64 `[batch, seq]`); output
//! `embedding` (f32 `[batch, hidden]`). Opset 17 (21 for an int8 graph in the `tofloat` form),
//! plus `com.microsoft` 1 in the fused flavour and in int8 graphs.
//!
//! Precisions: fp32; fp16 (linear weights and the hidden states between layers in f16,
//! embeddings, softmax, LayerNorm and pooling in f32 as in candle); int8 (every linear layer
//! dynamically quantized: weights symmetric int8 with one scale per output channel; activations
//! with one scale per token, computed in the graph, stored as uint8 around a zero point of 128
//! by one QuantizeLinear per layer, then ONNX Runtime's MatMulIntegerToFloat (or MatMulInteger
//! and a rescale, in the older forms), the row scales and the bias ([`Int8Form`]); or, for the
//! layers of [`PerTensor`] (the QKV projection by default), one scale per tensor by ONNX
//! Runtime's DynamicQuantizeMatMul).
//!
//! Files are cached under `cache_dir()/onnx/` by a hash of the weight bytes, the flavour, the
//! precision, [`EXPORTER_VERSION`] and an int8 graph's [`Int8Scheme`].

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::proto::{
    attr_type, dtype, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use super::Flavour;
use crate::error::{Error, Result};
use crate::model::bert::{BertTensors, LayerTensors, Norm};
use crate::model::{cache_dir, BertConfig, ModelFiles};
use crate::spec::Precision;

/// Bumped whenever the emitted graph changes, so old cached files are never reused.
pub const EXPORTER_VERSION: u32 = 9;
/// Default-domain opset of the emitted graph.
pub const OPSET: i64 = 17;
/// Domain of ONNX Runtime's contrib operators.
pub const MS_DOMAIN: &str = "com.microsoft";

/// Returns the cached `.onnx` file of `files` in `flavour` and `precision`, exporting it first
/// if needed (atomically, so concurrent workers never see a torn file).
pub fn export_cached(
    files: &ModelFiles,
    flavour: Flavour,
    precision: Precision,
) -> Result<PathBuf> {
    let bytes = std::fs::read(&files.weights).map_err(|e| Error::io(&files.weights, e))?;
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(format!("|{flavour}|{precision}|v{EXPORTER_VERSION}").as_bytes());
    if precision == Precision::Int8 {
        h.update(format!("|{}", Int8Scheme::from_env()?).as_bytes());
    }
    let hash: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = cache_dir().join("onnx").join(format!(
        "{}-{flavour}-{precision}-{hash}.onnx",
        files.cache_key()
    ));
    if path.exists() {
        return Ok(path);
    }
    let model = export(&files.config, &bytes, &files.weights, flavour, precision)?;
    crate::util::files::write_atomic(&path, &prost::Message::encode_to_vec(&model))?;
    Ok(path)
}

/// Builds the ONNX model from safetensors `bytes` (read from `origin`, named in errors), an
/// int8 one in the scheme the environment selects ([`Int8Scheme::from_env`]).
pub fn export(
    cfg: &BertConfig,
    bytes: &[u8],
    origin: &Path,
    flavour: Flavour,
    precision: Precision,
) -> Result<ModelProto> {
    export_form(
        cfg,
        bytes,
        origin,
        flavour,
        precision,
        Int8Scheme::from_env()?,
    )
}

/// [`export`] with the int8 scheme given.
pub fn export_form(
    cfg: &BertConfig,
    bytes: &[u8],
    origin: &Path,
    flavour: Flavour,
    precision: Precision,
    int8: Int8Scheme,
) -> Result<ModelProto> {
    let tensors = crate::model::tensor_file::read_f32(cfg, bytes, origin)?;
    build(cfg, &tensors, flavour, precision, int8)
}

/// Builds the graph of the model with weights `bert`, an int8 one in the scheme `int8`.
pub fn build(
    cfg: &BertConfig,
    bert: &BertTensors<Vec<f32>>,
    flavour: Flavour,
    precision: Precision,
    int8: Int8Scheme,
) -> Result<ModelProto> {
    if precision == Precision::Bf16 {
        return Err(Error::Model(
            "the ONNX exporter has no bf16 graph: ONNX Runtime's CPU provider has no bf16 MatMul"
                .into(),
        ));
    }
    let mut g = Graph::new(precision);
    g.int8 = int8;

    // Masks: f32 [B,S] for pooling, additive f32 [B,1,1,S] for the plain attention, int32 [B,S]
    // for the contrib attention operators.
    let maskf = g.op(
        "Cast",
        &["attention_mask"],
        vec![attr_i("to", dtype::FLOAT as i64)],
    );

    let mut x = embeddings(&mut g, cfg, bert, flavour);
    if flavour == Flavour::Plain {
        let one = g.const_f32(&[], &[1.0]);
        let big = g.const_f32(&[], &[1e9]);
        let m1 = g.op("Sub", &[&maskf, &one], vec![]);
        let bias = g.op("Mul", &[&m1, &big], vec![]);
        let axes = g.const_i64(&[1, 2]);
        g.mask_bias = g.op("Unsqueeze", &[&bias, &axes], vec![]);
    }

    for (l, layer) in bert.layers.iter().enumerate() {
        x = encoder_layer(&mut g, cfg, l, layer, &x, flavour);
    }
    let out = pool(&mut g, &x, &maskf);
    g.nodes.push(NodeProto {
        input: vec![out],
        output: vec!["embedding".into()],
        name: "output".into(),
        op_type: "Identity".into(),
        ..Default::default()
    });
    Ok(model_proto(g, cfg, flavour, precision))
}

/// The embedding tables (the same initializers in both flavours), their sum and LayerNorm:
/// standard ops in the plain flavour, EmbedLayerNormalization in the fused one.
fn embeddings(
    g: &mut Graph,
    cfg: &BertConfig,
    bert: &BertTensors<Vec<f32>>,
    flavour: Flavour,
) -> String {
    let h = cfg.hidden_size;
    let eps = cfg.layer_norm_eps as f32;
    let word = g.init_f32("emb.word", &[cfg.vocab_size, h], &bert.embeddings.word);
    let pos = g.init_f32("emb.pos", &[cfg.max_position, h], &bert.embeddings.position);
    let typ = g.init_f32(
        "emb.type",
        &[cfg.type_vocab_size, h],
        &bert.embeddings.token_type,
    );
    match flavour {
        Flavour::Plain => {
            let w = g.op("Gather", &[&word, "input_ids"], vec![]);
            let seq = g.op(
                "Shape",
                &["input_ids"],
                vec![attr_i("start", 1), attr_i("end", 2)],
            );
            let zero = g.const_i64(&[0]);
            let p = g.op("Slice", &[&pos, &zero, &seq, &zero], vec![]);
            let t = g.op("Gather", &[&typ, "token_type_ids"], vec![]);
            let wp = g.op("Add", &[&w, &p], vec![]);
            let e = g.op("Add", &[&wp, &t], vec![]);
            let x = g.layer_norm_f32(&e, &bert.embeddings.norm, "emb.ln", eps);
            g.cast_act(&x)
        }
        Flavour::Fused => {
            let gamma = g.init_f32("emb.ln.w", &[h], &bert.embeddings.norm.weight);
            let beta = g.init_f32("emb.ln.b", &[h], &bert.embeddings.norm.bias);
            let to_i32 = vec![attr_i("to", dtype::INT32 as i64)];
            let ids = g.op("Cast", &["input_ids"], to_i32.clone());
            let types = g.op("Cast", &["token_type_ids"], to_i32.clone());
            let mask = g.op("Cast", &["attention_mask"], to_i32);
            g.mask_i32 = mask.clone();
            let out = g.op_n(
                "EmbedLayerNormalization",
                MS_DOMAIN,
                &[&ids, &types, &word, &pos, &typ, &gamma, &beta, &mask],
                2,
                vec![attr_f("epsilon", eps)],
            );
            g.cast_act(&out[0])
        }
    }
}

/// One post-LayerNorm encoder layer on `x`, in the flavour's operators.
fn encoder_layer(
    g: &mut Graph,
    cfg: &BertConfig,
    l: usize,
    layer: &LayerTensors<Vec<f32>>,
    x: &str,
    flavour: Flavour,
) -> String {
    // `a`, the attention width, is the hidden size unless heads were pruned.
    let (h, nh, a) = (cfg.hidden_size, cfg.num_heads, cfg.attention_width());
    let eps = cfg.layer_norm_eps as f32;
    let precision = g.precision;
    let qkv = layer
        .fused_qkv(|parts| Ok::<_, std::convert::Infallible>(parts.map(Vec::as_slice).concat()))
        .unwrap_or_else(|e| match e {});
    let (qkv_w, qkv_b) = (&qkv.weight, &qkv.bias);
    let (wo, bo) = (&layer.attn_out.weight, &layer.attn_out.bias);
    let (w1, b1) = (&layer.intermediate.weight, &layer.intermediate.bias);
    let (w2, b2) = (&layer.output.weight, &layer.output.bias);
    let i = cfg.intermediate_size;
    let name = |n: &str| format!("l{l}.{n}");
    match flavour {
        Flavour::Plain => {
            let qkv = g.linear(x, &name("qkv"), qkv_w, Some(qkv_b), h, 3 * a);
            let ctx = g.plain_attention(&qkv, cfg);
            let attn = g.linear(&ctx, &name("attn_out"), wo, Some(bo), a, h);
            let sum1 = g.op("Add", &[&attn, x], vec![]);
            let x1 = g.layer_norm_act(&sum1, &layer.attn_norm, &name("attn_ln"), eps);
            let inter = g.linear(&x1, &name("inter"), w1, Some(b1), h, i);
            let act = g.gelu_erf(&inter);
            let ffn = g.linear(&act, &name("out"), w2, Some(b2), i, h);
            let sum2 = g.op("Add", &[&ffn, &x1], vec![]);
            g.layer_norm_act(&sum2, &layer.out_norm, &name("out_ln"), eps)
        }
        Flavour::Fused => {
            let mask = g.mask_i32.clone();
            let heads = vec![attr_i("num_heads", nh as i64)];
            let ctx = if precision == Precision::Int8 {
                // Attention takes float weights; with quantized projections the packed
                // Q, K, V go to MultiHeadAttention instead.
                let qkv = g.linear(x, &name("qkv"), qkv_w, Some(qkv_b), h, 3 * a);
                let split = g.const_i64(&[a as i64, a as i64, a as i64]);
                let parts = g.op_n("Split", "", &[&qkv, &split], 3, vec![attr_i("axis", 2)]);
                g.op_n(
                    "MultiHeadAttention",
                    MS_DOMAIN,
                    &[&parts[0], &parts[1], &parts[2], "", &mask],
                    1,
                    heads,
                )
                .remove(0)
            } else {
                // Attention's weight is [input hidden, 3 × attention width]: the op takes the
                // head size from the latter, so a narrower attention needs nothing else.
                let w = g.weight(&name("qkv.w"), &transpose(qkv_w, 3 * a, h), &[h, 3 * a]);
                let b = g.vector_act(&name("qkv.b"), qkv_b);
                g.op_n("Attention", MS_DOMAIN, &[x, &w, &b, &mask], 1, heads)
                    .remove(0)
            };
            let attn = g.linear(&ctx, &name("attn_out"), wo, None, a, h);
            let x1 = g.skip_layer_norm(&attn, x, bo, &layer.attn_norm, &name("attn_ln"), eps);
            let inter = g.linear(&x1, &name("inter"), w1, None, h, i);
            let b1 = g.vector_act(&name("inter.b"), b1);
            let act = g
                .op_n("BiasGelu", MS_DOMAIN, &[&inter, &b1], 1, vec![])
                .remove(0);
            let ffn = g.linear(&act, &name("out"), w2, None, i, h);
            g.skip_layer_norm(&ffn, &x1, b2, &layer.out_norm, &name("out_ln"), eps)
        }
    }
}

/// Masked mean over tokens, then L2 normalisation, in f32.
fn pool(g: &mut Graph, x: &str, maskf: &str) -> String {
    let x = g.cast_f32(x);
    let axes2 = g.const_i64(&[2]);
    let m3 = g.op("Unsqueeze", &[maskf, &axes2], vec![]);
    let masked = g.op("Mul", &[&x, &m3], vec![]);
    let axes1 = g.const_i64(&[1]);
    let summed = g.op("ReduceSum", &[&masked, &axes1], vec![attr_i("keepdims", 0)]);
    let count = g.op("ReduceSum", &[maskf, &axes1], vec![attr_i("keepdims", 1)]);
    let one = g.const_f32(&[], &[1.0]);
    let count = g.op("Max", &[&count, &one], vec![]);
    let mean = g.op("Div", &[&summed, &count], vec![]);
    let sq = g.op("Mul", &[&mean, &mean], vec![]);
    let ss = g.op("ReduceSum", &[&sq, &axes1], vec![attr_i("keepdims", 1)]);
    let norm = g.op("Sqrt", &[&ss], vec![]);
    let tiny = g.const_f32(&[], &[1e-12]);
    let norm = g.op("Max", &[&norm, &tiny], vec![]);
    g.op("Div", &[&mean, &norm], vec![])
}

/// A named dimension (`batch`, `seq`).
fn sym(name: &str) -> Dimension {
    Dimension {
        dim_value: None,
        dim_param: Some(name.into()),
    }
}

/// A fixed dimension.
fn fixed(v: usize) -> Dimension {
    Dimension {
        dim_value: Some(v as i64),
        dim_param: None,
    }
}

/// A graph input or output: a tensor of `elem` with `dims`.
fn value(name: &str, elem: i32, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    }
}

/// The model around the graph: inputs, output, opsets.
fn model_proto(g: Graph, cfg: &BertConfig, flavour: Flavour, precision: Precision) -> ModelProto {
    let h = cfg.hidden_size;
    let contrib = g.nodes.iter().any(|n| n.domain == MS_DOMAIN);
    let opset = g.opset();
    let bs = || vec![sym("batch"), sym("seq")];
    let graph = GraphProto {
        node: g.nodes,
        name: format!("recbench-bert-{flavour}-{precision}"),
        initializer: g.inits,
        input: vec![
            value("input_ids", dtype::INT64, bs()),
            value("attention_mask", dtype::INT64, bs()),
            value("token_type_ids", dtype::INT64, bs()),
        ],
        output: vec![value(
            "embedding",
            dtype::FLOAT,
            vec![sym("batch"), fixed(h)],
        )],
        ..Default::default()
    };
    let mut opset_import = vec![OperatorSetIdProto {
        domain: String::new(),
        version: opset,
    }];
    if contrib {
        opset_import.push(OperatorSetIdProto {
            domain: MS_DOMAIN.into(),
            version: 1,
        });
    }
    ModelProto {
        // Opset 21 needs IR version 10.
        ir_version: if opset >= 21 { 10 } else { 8 },
        producer_name: "recbench".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        opset_import,
        ..Default::default()
    }
}

/// The scoring graph the onnx backend runs after the encoder, on the same execution provider:
/// inputs `user` (f32 `[batch, dim]`) and `k` (int64 `[1]`, at most the catalog size), the
/// catalog `items` as an initializer (`[dim, items]`, transposed, in f16 when `half`), `MatMul`
/// then `TopK` (largest, sorted) over the items; outputs `scores` (f32 `[batch, k]`) and `ids`
/// (int64 `[batch, k]`). Only these come back.
pub fn scoring_model(items: &[f32], dim: usize, half: bool) -> ModelProto {
    let n = items.len() / dim.max(1);
    let mut g = Graph::new(if half {
        Precision::Fp16
    } else {
        Precision::Fp32
    });
    let items_t = transpose(items, n, dim);
    let init = if half {
        g.init_f16("items", &[dim, n], &items_t)
    } else {
        g.init_f32("items", &[dim, n], &items_t)
    };
    let user = g.cast_act("user");
    let scores = g.op("MatMul", &[&user, &init], vec![]);
    let top = g.op_n(
        "TopK",
        "",
        &[&scores, "k"],
        2,
        vec![
            attr_i("axis", -1),
            attr_i("largest", 1),
            attr_i("sorted", 1),
        ],
    );
    let values = g.cast_f32(&top[0]);
    g.nodes.push(NodeProto {
        input: vec![values],
        output: vec!["scores".into()],
        name: "scores".into(),
        op_type: "Identity".into(),
        attribute: vec![],
        domain: String::new(),
    });
    g.nodes.push(NodeProto {
        input: vec![top[1].clone()],
        output: vec!["ids".into()],
        name: "ids".into(),
        op_type: "Identity".into(),
        attribute: vec![],
        domain: String::new(),
    });
    let dims = |last: Dimension| vec![sym("batch"), last];
    let graph = GraphProto {
        node: g.nodes,
        name: format!("recbench-scoring-{n}x{dim}"),
        initializer: g.inits,
        input: vec![
            value("user", dtype::FLOAT, dims(fixed(dim))),
            value("k", dtype::INT64, vec![fixed(1)]),
        ],
        output: vec![
            value("scores", dtype::FLOAT, dims(sym("k"))),
            value("ids", dtype::INT64, dims(sym("k"))),
        ],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        producer_name: "recbench".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        ..Default::default()
    }
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: Some(v),
        r#type: attr_type::INT,
        ..Default::default()
    }
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: Some(v),
        r#type: attr_type::FLOAT,
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attr_type::INTS,
        ..Default::default()
    }
}

/// `[rows, cols]` row-major → `[cols, rows]`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Graph under construction.
struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    next: usize,
    precision: Precision,
    /// Additive attention mask `[B,1,1,S]` (plain flavour).
    mask_bias: String,
    /// Attention mask as int32 `[B,S]` (fused flavour).
    mask_i32: String,
    int8: Int8Scheme,
}

impl Graph {
    fn new(precision: Precision) -> Graph {
        Graph {
            nodes: vec![],
            inits: vec![],
            next: 0,
            precision,
            // `build` sets the scheme it was given.
            int8: Int8Scheme::per_row(Int8Form::ToFloat),
            mask_bias: String::new(),
            mask_i32: String::new(),
        }
    }

    /// Element type of the hidden states between layers.
    fn act_type(&self) -> i32 {
        if self.precision == Precision::Fp16 {
            dtype::FLOAT16
        } else {
            dtype::FLOAT
        }
    }

    fn op_n(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        outputs: usize,
        attribute: Vec<AttributeProto>,
    ) -> Vec<String> {
        self.next += 1;
        let name = format!("{op}_{}", self.next);
        let output: Vec<String> = (0..outputs).map(|i| format!("{name}:{i}")).collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.clone(),
            name,
            op_type: op.into(),
            attribute,
            domain: domain.into(),
        });
        output
    }

    fn op(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>) -> String {
        self.op_n(op, "", inputs, 1, attribute).remove(0)
    }

    fn init(&mut self, name: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> String {
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.into(),
            raw_data,
        });
        name.into()
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(name, dims, dtype::FLOAT, raw)
    }

    fn init_f16(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        let raw = v
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect();
        self.init(name, dims, dtype::FLOAT16, raw)
    }

    /// A weight or bias in the activation type.
    fn weight(&mut self, name: &str, v: &[f32], dims: &[usize]) -> String {
        if self.act_type() == dtype::FLOAT16 {
            self.init_f16(name, dims, v)
        } else {
            self.init_f32(name, dims, v)
        }
    }

    fn vector_act(&mut self, name: &str, v: &[f32]) -> String {
        self.weight(name, v, &[v.len()])
    }

    fn const_i64(&mut self, v: &[i64]) -> String {
        self.next += 1;
        let name = format!("const_{}", self.next);
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(&name, &[v.len()], dtype::INT64, raw)
    }

    fn const_f32(&mut self, dims: &[usize], v: &[f32]) -> String {
        self.next += 1;
        let name = format!("const_{}", self.next);
        self.init_f32(&name, dims, v)
    }

    /// A scalar constant in the activation type.
    fn const_act(&mut self, v: f32) -> String {
        self.next += 1;
        let name = format!("const_{}", self.next);
        self.weight(&name, &[v], &[])
    }

    fn cast(&mut self, x: &str, to: i32) -> String {
        self.op("Cast", &[x], vec![attr_i("to", to as i64)])
    }

    fn cast_act(&mut self, x: &str) -> String {
        if self.act_type() == dtype::FLOAT16 {
            self.cast(x, dtype::FLOAT16)
        } else {
            x.to_string()
        }
    }

    fn cast_f32(&mut self, x: &str) -> String {
        if self.act_type() == dtype::FLOAT16 {
            self.cast(x, dtype::FLOAT)
        } else {
            x.to_string()
        }
    }

    /// LayerNormalization over the last axis of an f32 tensor.
    fn layer_norm_f32(&mut self, x: &str, n: &Norm<Vec<f32>>, name: &str, eps: f32) -> String {
        let h = n.weight.len();
        let w = self.init_f32(&format!("{name}.weight"), &[h], &n.weight);
        let b = self.init_f32(&format!("{name}.bias"), &[h], &n.bias);
        self.op(
            "LayerNormalization",
            &[x, &w, &b],
            vec![attr_i("axis", -1), attr_f("epsilon", eps)],
        )
    }

    /// LayerNormalization in f32 of a tensor in the activation type, back to the activation type.
    fn layer_norm_act(&mut self, x: &str, n: &Norm<Vec<f32>>, name: &str, eps: f32) -> String {
        let x = self.cast_f32(x);
        let y = self.layer_norm_f32(&x, n, name, eps);
        self.cast_act(&y)
    }

    /// SkipLayerNormalization(x + skip + bias) in the activation type (fused flavour).
    fn skip_layer_norm(
        &mut self,
        x: &str,
        skip: &str,
        bias: &[f32],
        n: &Norm<Vec<f32>>,
        name: &str,
        eps: f32,
    ) -> String {
        let h = n.weight.len();
        let w = self.weight(&format!("{name}.weight"), &n.weight, &[h]);
        let b = self.weight(&format!("{name}.bias"), &n.bias, &[h]);
        let bias = self.vector_act(&format!("{name}.skip_bias"), bias);
        self.op_n(
            "SkipLayerNormalization",
            MS_DOMAIN,
            &[x, skip, &w, &b, &bias],
            1,
            vec![attr_f("epsilon", eps)],
        )
        .remove(0)
    }

    /// `x · wᵀ (+ b)` for a `[out, inp]` weight, in the run's precision.
    fn linear(
        &mut self,
        x: &str,
        name: &str,
        w: &[f32],
        b: Option<&[f32]>,
        inp: usize,
        out: usize,
    ) -> String {
        if self.precision != Precision::Int8 {
            let wt = self.weight(&format!("{name}.w"), &transpose(w, out, inp), &[inp, out]);
            let y = self.op("MatMul", &[x, &wt], vec![]);
            let b = b.map(|b| self.vector_act(&format!("{name}.b"), b));
            return self.add_bias(y, b);
        }
        self.linear_int8(x, name, w, b, inp, out)
    }

    /// Scaled dot-product attention from a packed `[B,S,3H]` projection (plain flavour), with
    /// the softmax in f32. Returns the context `[B,S,A]` (A the attention width).
    fn plain_attention(&mut self, qkv: &str, cfg: &BertConfig) -> String {
        let (a, nh, hd) = (cfg.attention_width(), cfg.num_heads, cfg.head_dim());
        let split = self.const_i64(&[a as i64, a as i64, a as i64]);
        let parts = self.op_n("Split", "", &[qkv, &split], 3, vec![attr_i("axis", 2)]);
        let shape = self.const_i64(&[0, 0, nh as i64, hd as i64]);
        let heads = |this: &mut Graph, t: &str, perm: &[i64]| {
            let r = this.op("Reshape", &[t, &shape], vec![]);
            this.op("Transpose", &[&r], vec![attr_ints("perm", perm)])
        };
        let q = heads(self, &parts[0], &[0, 2, 1, 3]);
        let k = heads(self, &parts[1], &[0, 2, 3, 1]);
        let v = heads(self, &parts[2], &[0, 2, 1, 3]);
        let scores = self.op("MatMul", &[&q, &k], vec![]);
        let scale = self.const_act(1.0 / (hd as f32).sqrt());
        let scores = self.op("Mul", &[&scores, &scale], vec![]);
        let scores = self.cast_f32(&scores);
        let bias = self.mask_bias.clone();
        let scores = self.op("Add", &[&scores, &bias], vec![]);
        let probs = self.op("Softmax", &[&scores], vec![attr_i("axis", -1)]);
        let probs = self.cast_act(&probs);
        let ctx = self.op("MatMul", &[&probs, &v], vec![]);
        let ctx = self.op("Transpose", &[&ctx], vec![attr_ints("perm", &[0, 2, 1, 3])]);
        let shape = self.const_i64(&[0, 0, a as i64]);
        self.op("Reshape", &[&ctx, &shape], vec![])
    }

    /// GELU with erf, in the pattern ONNX Runtime's GeluFusion recognises:
    /// `(x · (erf(x / √2) + 1)) · 0.5`.
    fn gelu_erf(&mut self, x: &str) -> String {
        let sqrt2 = self.const_act(std::f32::consts::SQRT_2);
        let one = self.const_act(1.0);
        let half = self.const_act(0.5);
        let t = self.op("Div", &[x, &sqrt2], vec![]);
        let e = self.op("Erf", &[&t], vec![]);
        let a = self.op("Add", &[&e, &one], vec![]);
        let m = self.op("Mul", &[x, &a], vec![]);
        self.op("Mul", &[&m, &half], vec![])
    }
}

mod int8;
pub use int8::*;

#[cfg(test)]
mod tests;
