#!/usr/bin/env python3
"""Times ONNX Runtime's two ways of quantizing a linear layer's input with one scale per row, as
recbench's int8 graphs do (src/model/onnx/export/int8.rs): opset 17's per-axis QuantizeLinear
(axis 0 of the `[rows, in]` view, a `[rows]` scale) against opset 21's blocked one (axis 1, a
block the width of a row, a `[rows, 1]` scale). Both give the same bytes (checked). Interleaved
rounds, medians; one session per side, `THREADS` intra-op threads.

usage: ort_quantize_rows.py ROUNDS THREADS   (e.g. via .cache/bench-venv/bin/python)
Prints one line per shape (the `[rows, in]` inputs of MiniLM's layers at batch 8 and 32 × 128
tokens) with each round's ratio blocked ÷ per-axis.
"""
import platform
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def model(rows, width, blocked):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])
    shape = [None, 1] if blocked else [None]
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, shape)
    zp = numpy_helper.from_array(np.full([rows, 1] if blocked else [rows], 128, np.uint8), "zp")
    attrs = {"axis": 1, "block_size": width} if blocked else {"axis": 0}
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], **attrs)
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, None)
    graph = helper.make_graph([node], "q", [x, s], [y], [zp])
    opset = 21 if blocked else 17
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                             ir_version=10 if blocked else 8)


def session(m, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def timed(sess, feeds, seconds=0.5):
    for _ in range(5):
        sess.run(None, feeds)
    samples, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        sess.run(None, feeds)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e3


def main():
    rounds, threads = int(sys.argv[1]), int(sys.argv[2])
    flags = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                want = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")
                flags = " ".join(f for f in line.split(":", 1)[1].split() if f in want)
                break
    except OSError:
        cpu = platform.processor()
    print(f"# onnxruntime {ort.__version__}, {threads} threads, {rounds} rounds; host {cpu} ({flags})")
    rng = np.random.default_rng(20240601)
    for rows in (1024, 4096):
        for width in (384, 1536):
            x = rng.standard_normal((rows, width)).astype(np.float32)
            s = np.maximum(np.abs(x).max(1, keepdims=True) / 127, 1e-12).astype(np.float32)
            per_axis = session(model(rows, width, False), threads)
            blocked = session(model(rows, width, True), threads)
            fa, fb = {"x": x, "s": s.reshape(-1)}, {"x": x, "s": s}
            same = np.array_equal(per_axis.run(None, fa)[0], blocked.run(None, fb)[0])
            a, b = [], []
            for r in range(rounds):
                if r % 2:
                    b.append(timed(blocked, fb)); a.append(timed(per_axis, fa))
                else:
                    a.append(timed(per_axis, fa)); b.append(timed(blocked, fb))
            ratios = [y / z for y, z in zip(b, a)]
            print(f"[{rows}, {width}]: per-axis {statistics.median(a):.3f} ms, blocked "
                  f"{statistics.median(b):.3f} ms, blocked ÷ per-axis {statistics.median(ratios):.2f} "
                  f"(rounds {', '.join(f'{q:.2f}' for q in ratios)}); same bytes: {same}")


if __name__ == "__main__":
    main()
