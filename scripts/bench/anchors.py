#!/usr/bin/env python3
"""The Python anchors of scripts/bench/anchors.sh: what a user of PyTorch or ONNX Runtime gets
for the same BERT encoder, on the same machine, with the same threads. For comparison only;
recbench itself never uses Python.

usage:
  anchors.py eager   MODEL_DIR BATCH SEQ THREADS WINDOW   # transformers BertModel (sdpa), fp32
  anchors.py int8    MODEL_DIR BATCH SEQ THREADS WINDOW   # the same after torch quantize_dynamic (x86)
  anchors.py eager-bf16 MODEL_DIR BATCH SEQ THREADS WINDOW # the same in bf16 (model.to(bfloat16)),
                                                         # pooled in fp32
  anchors.py ort     ONNX_FILE BATCH SEQ THREADS WINDOW   # onnxruntime, ORT_ENABLE_ALL, CPU provider
  anchors.py ort-int8 ONNX_FILE BATCH SEQ THREADS WINDOW  # the fp32 file after ONNX Runtime's own
                                                         # quantize_dynamic (QInt8 weights), the same
  anchors.py export  MODEL_DIR ONNX_FILE                  # BertModel → ONNX (torch.onnx, opset 17)

WINDOW is "WARMUP_S,MIN_S,MIN_CALLS,MAX_S", the measurement window of the recbench runs it sits
beside (their [measure] warmup_s, min_s, min_queries and max_s): calls untimed for WARMUP_S
(at least one), then timed until MIN_S and MIN_CALLS are both reached, or MAX_S.

Every timed call encodes BATCH sequences of SEQ real token ids (no padding) and pools them
(masked mean, L2 norm), as recbench's two-tower encoder does. Prints one JSON object: the
median and every sample in ms per batch.
"""
import json
import os
import statistics
import sys
import time


def inputs(batch, seq):
    import numpy as np

    rng = np.random.default_rng(20240601)
    ids = rng.integers(1000, 29000, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] … [SEP]
    return ids, np.ones_like(ids), np.zeros_like(ids)


def timed(call, window):
    warmup_s, min_s, min_calls, max_s = window
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < warmup_s:
        call()
    samples = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1e3)
        elapsed = time.perf_counter() - start
        if (elapsed >= min_s and len(samples) >= min_calls) or elapsed >= max_s:
            break
    return {"median_ms_per_batch": statistics.median(samples), "samples_ms": samples}


def torch_model(model_dir, threads, precision):
    import torch
    from transformers import BertModel

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    model = BertModel.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    if precision == "int8":
        torch.backends.quantized.engine = "x86"
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif precision == "bf16":
        model = model.to(torch.bfloat16)
    return torch, model


def torch_anchor(model_dir, batch, seq, threads, window, precision):
    torch, model = torch_model(model_dir, threads, precision)
    ids, mask, types = (torch.from_numpy(a) for a in inputs(batch, seq))

    def call():
        with torch.inference_mode():
            h = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state.float()
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1)

    out = timed(call, window)
    engine = f"engine {torch.backends.quantized.engine}" if precision == "int8" else precision
    out["runtime"] = f"torch {torch.__version__}, {engine}"
    return out


def ort_anchor(onnx_file, batch, seq, threads, window):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_file, so, providers=["CPUExecutionProvider"])
    ids, mask, types = inputs(batch, seq)
    names = {i.name for i in sess.get_inputs()}
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    feeds = {k: v for k, v in feeds.items() if k in names}
    pooled_by_graph = any(o.name == "embedding" for o in sess.get_outputs())

    def call():
        out = sess.run(None, feeds)[0]
        if not pooled_by_graph:  # an HF export returns the hidden states: pool as recbench does
            m = mask[..., None].astype(out.dtype)
            pooled = (out * m).sum(1) / np.maximum(m.sum(1), 1)
            out = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)
        return out

    out = timed(call, window)
    out["runtime"] = f"onnxruntime {ort.__version__}"
    return out


def ort_dynamic_int8(onnx_file):
    """The fp32 graph `onnx_file` quantized by ONNX Runtime's own `quantize_dynamic` with int8
    weights (QInt8, one scale per tensor: its defaults otherwise); activations are quantized per
    tensor at run time (DynamicQuantizeLinear, MatMulInteger). Kept beside the file."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = onnx_file[: -len(".onnx")] + "-ort-dynamic-int8.onnx"
    if not os.path.exists(out):
        tmp = out + ".partial.onnx"
        quantize_dynamic(onnx_file, tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, out)
    return out


def export(model_dir, onnx_file):
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class HiddenStates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    ids, mask, types = (torch.from_numpy(a) for a in inputs(2, 16))
    os.makedirs(os.path.dirname(onnx_file) or ".", exist_ok=True)
    tmp = onnx_file + ".partial"
    torch.onnx.export(
        HiddenStates().eval(),
        (ids, mask, types),
        tmp,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]},
        opset_version=17,
        dynamo=False,
    )
    os.replace(tmp, onnx_file)
    return {"exported": onnx_file}


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "export":
        result = export(*args)
    else:
        path, batch, seq, threads = args[0], *map(int, args[1:4])
        warmup_s, min_s, min_calls, max_s = args[4].split(",")
        window = (float(warmup_s), float(min_s), int(min_calls), float(max_s))
        if mode == "ort":
            result = ort_anchor(path, batch, seq, threads, window)
        elif mode == "ort-int8":
            result = ort_anchor(ort_dynamic_int8(path), batch, seq, threads, window)
            result["runtime"] += " (quantize_dynamic, QInt8)"
        else:
            precision = {"eager": "fp32", "int8": "int8", "eager-bf16": "bf16"}[mode]
            result = torch_anchor(path, batch, seq, threads, window, precision)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
