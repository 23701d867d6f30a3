#!/usr/bin/env python3
"""Times Python onnxruntime on the .onnx file and inputs written by `examples/onnx_bench.rs`
(docs/benchmarks/onnx.md). For this comparison only; recbench itself never uses Python.

usage: ort_python.py OUT_PREFIX BATCH SEQ THREADS OPT REPS
  OUT_PREFIX: the prefix given to onnx_bench (reads OUT_PREFIX.model, OUT_PREFIX.inputs.bin)
  OPT: disable | basic | extended | all
  Writes the graph after ONNX Runtime's optimiser to OUT_PREFIX.<opt>.optimized.onnx and prints
  its operator counts (what ORT's optimiser did to the graph).
"""
import collections, sys, time

import numpy as np
import onnx
import onnxruntime as ort

prefix, batch, seq, threads, opt, reps = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5], int(sys.argv[6])
model = open(prefix + ".model").read().strip()
raw = np.fromfile(prefix + ".inputs.bin", dtype="<i8").reshape(3, batch, seq)
feeds = {"input_ids": raw[0], "attention_mask": raw[1], "token_type_ids": raw[2]}
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.graph_optimization_level = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}[opt]
so.optimized_model_filepath = f"{prefix}.{opt}.optimized.onnx"
so.log_severity_level = 3
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
for _ in range(3):
    sess.run(None, feeds)
ms = []
for _ in range(reps):
    t = time.perf_counter()
    sess.run(None, feeds)
    ms.append((time.perf_counter() - t) * 1e3)
ms.sort()
ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
print(f"python-ort {ort.__version__} opt={opt} threads={threads} batch={batch} seq={seq} reps={reps} "
      f"median_ms={ms[len(ms) // 2]:.2f} min_ms={ms[0]:.2f}")
print("optimized ops:", dict(sorted(ops.items())))
