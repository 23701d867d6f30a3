#!/usr/bin/env python3
"""A process's first forwards with and without glibc's huge pages, on Python onnxruntime: what
the huge-page probes of recbench's workers (src/harness/hugepages.rs) must warm up past.
For exploration only; recbench itself never uses Python.

usage: ort_first_forwards.py ONNX_FILE BATCH [PAIRS]

Runs PAIRS (default 3) pairs of fresh processes, glibc's default then
GLIBC_TUNABLES=glibc.malloc.hugetlb=1, each opening a session (2 intra-op threads, 1 inter-op,
ORT_ENABLE_ALL, 128 tokens) and timing its first 16 forwards one by one. Prints one line per
process: the session's load time and every forward in ms.
"""
import os
import subprocess
import sys
import time


def child(path, batch):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    ids = np.random.default_rng(20240601).integers(1000, 29000, size=(batch, 128), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    names = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    times = []
    for _ in range(16):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    print(f"load {load_ms:.0f} ms; forwards " + " ".join(f"{x:.0f}" for x in times))


def main():
    if sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return
    path, batch = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    for _ in range(pairs):
        for huge in (False, True):
            env = dict(os.environ)
            env.pop("GLIBC_TUNABLES", None)
            if huge:
                env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
            out = subprocess.run([sys.executable, __file__, "--child", path, batch],
                                 env=env, capture_output=True, text=True, check=True).stdout
            print(("huge pages     " if huge else "glibc default  ") + out.strip(), flush=True)


if __name__ == "__main__":
    main()
