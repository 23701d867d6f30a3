#!/usr/bin/env python3
"""Times Python onnxruntime on one .onnx file under ONNX Runtime session options, to see whether
an option beats the defaults that recbench's onnx backend and scripts/bench/anchors.sh use.
For exploration only; recbench itself never uses Python.

usage: ort_options.py ONNX_FILE BATCH OPTIONS
  OPTIONS: "default", or comma-separated session config entries KEY=VALUE
           (e.g. session.set_denormal_as_zero=1,session.intra_op.allow_spinning=0);
           "pinafter" in the list pins the calling thread to CPU 0 once the session is open.
  2 intra-op threads, 1 inter-op, ORT_ENABLE_ALL, 128 tokens; 3 untimed calls, then at least
  4 s and 5 calls. Prints the median ms per sequence, the calls, and min / p10 / p90 ms per call.

Run the candidates in turn in separate processes, several rounds (A B A B ...): the option for
denormals sets the calling thread's state once per process, and a shared host drifts over
minutes. Process-wide settings go in the environment, e.g. GLIBC_TUNABLES=glibc.malloc.hugetlb=1.
"""
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

path, batch, options = sys.argv[1], int(sys.argv[2]), sys.argv[3]
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.log_severity_level = 3
entries = [o for o in options.split(",") if o not in ("default", "pinafter")]
for entry in entries:
    key, value = entry.split("=", 1)
    so.add_session_config_entry(key, value)
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
if "pinafter" in options.split(","):
    os.sched_setaffinity(0, {0})
rng = np.random.default_rng(20240601)
ids = rng.integers(1000, 29000, size=(batch, 128), dtype=np.int64)
feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
names = {i.name for i in sess.get_inputs()}
feeds = {k: v for k, v in feeds.items() if k in names}
for _ in range(3):
    sess.run(None, feeds)
ms = []
end = time.perf_counter() + 4
while time.perf_counter() < end or len(ms) < 5:
    t = time.perf_counter()
    sess.run(None, feeds)
    ms.append((time.perf_counter() - t) * 1e3)
q = sorted(ms)
n = len(q)
print(f"{options} b{batch} {statistics.median(ms) / batch:.3f} ms/seq n={n} "
      f"min {q[0]:.2f} p10 {q[n // 10]:.2f} p90 {q[n * 9 // 10]:.2f} ms/call")
