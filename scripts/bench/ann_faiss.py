"""FAISS's side of the ANN anchor (scripts/bench/ann_anchor.sh), on the files that
`ann_anchor export` wrote: IndexHNSWFlat with the inner-product metric, the same M and
efConstruction (128) as recbench's USearch index, built with THREADS threads; then for each
efSearch all queries searched in one call with THREADS threads for at least MIN_S seconds (at
least 3 passes). Prints one JSON line per efSearch: build seconds, queries per second (the median
pass), recall@10 against the exact top-10 of the export.

    python ann_faiss.py DIR M EF,EF,... THREADS MIN_S
"""
import json
import sys
import time

import faiss
import numpy as np


def main():
    d, m, efs, threads, min_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    meta = json.load(open(f"{d}/meta.json"))
    dim, k = meta["dim"], meta["k"]
    xb = np.fromfile(f"{d}/catalog.f32", dtype="<f4").reshape(-1, dim)
    xq = np.fromfile(f"{d}/queries.f32", dtype="<f4").reshape(-1, dim)
    exact = np.fromfile(f"{d}/exact.u32", dtype="<u4").reshape(-1, k)
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    t = time.perf_counter()
    index.add(xb)
    build_s = time.perf_counter() - t
    for ef in [int(x) for x in efs.split(",")]:
        index.hnsw.efSearch = ef
        _, ids = index.search(xq, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids.tolist(), exact.tolist())]))
        passes = []
        start = time.perf_counter()
        while len(passes) < 3 or time.perf_counter() - start < min_s:
            t = time.perf_counter()
            index.search(xq, k)
            passes.append(time.perf_counter() - t)
        passes.sort()
        print(json.dumps({
            "side": f"FAISS {faiss.__version__} IndexHNSWFlat", "m": m, "ef_construction": 128,
            "ef": ef, "threads": threads, "build_s": build_s, "qps": len(xq) / passes[len(passes) // 2],
            "recall_at_10": recall, "passes": len(passes),
        }), flush=True)


if __name__ == "__main__":
    main()
