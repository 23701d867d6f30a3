#!/usr/bin/env python3
"""The table of scripts/gpu-check.sh's anchors: recbench's torch and candle rows beside PyTorch
eager on the same GPU, round by round.

usage: gpu_anchor_table.py GPU_CHECK_DIR [--out FILE.md]

Reads GPU_CHECK_DIR/gpu-minilm*/*.json (round 1 of the recbench side, when present),
GPU_CHECK_DIR/gpu-anchors*/*.json (the later rounds, in file-name order: UTC timestamps) and
GPU_CHECK_DIR/anchors/eager-round*.jsonl. A recbench figure is its run's p50 iteration (encoder
+ scoring + top-k on the device + ids and scores to the host); an eager figure is the median of
its calls (the same work in PyTorch eager). Each ratio is recbench over eager fp16 in the same
round; the table gives the median over rounds and the range. The control row is eager fp16
timed a second time in the same process: ratios within its spread of 1.0 are ties.
"""
import argparse
import glob
import json
import os
import statistics
import sys


def gpu_header():
    """The GPU, driver and CUDA version the recbench results name (their host inventory, read
    with their runs), so that a table rebuilt on another machine still names the GPU it
    measured."""
    return next(iter(sorted(GPUS)), "no NVIDIA GPU in the results: a CPU dry run, not a GPU figure")


MODELS = set()
GPUS = set()


def recbench_rounds(root):
    rounds = []
    for f in sorted(glob.glob(os.path.join(root, "gpu-minilm*", "*.json"))):
        rounds.append(("gpu-minilm", f))
    for f in sorted(glob.glob(os.path.join(root, "gpu-anchors*", "*.json"))):
        rounds.append(("gpu-anchors", f))
    out = []
    for _, f in rounds:
        runs = {}
        results = json.load(open(f))
        for g in results.get("environment", {}).get("inventory", {}).get("gpus") or []:
            GPUS.add(f"{g['name']}, driver {g.get('driver', '?')}, CUDA {g.get('cuda_version', '?')}")
        for r in results["runs"]:
            if r["status"] != "ok" or not r.get("latency"):
                continue
            s = r["spec"]
            score = next((n for n in r.get("notes", []) if n.startswith("scoring:")), "")
            MODELS.add(s["model"])
            runs[(f"recbench {s['backend']}", s["precision"], s["batch"])] = {
                "ms": r["latency"]["p50_ms"], "scoring": score, "file": f}
        out.append(runs)
    return out


def eager_rounds(root):
    out = []
    for f in sorted(glob.glob(os.path.join(root, "anchors", "eager-round*.jsonl")),
                    key=lambda p: int(p.rsplit("round", 1)[1].split(".")[0])):
        runs = {}
        for line in open(f):
            if line.strip():
                x = json.loads(line)
                runs[(x["side"], x["precision"], x["batch"])] = {"ms": x["median_ms_per_batch"], "runtime": x["runtime"]}
        # A round whose file is empty (cut short, e.g. the device's time ran out) is not a
        # round: its recbench side would have no partner.
        if runs:
            out.append(runs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--out")
    a = ap.parse_args()
    rec, eag = recbench_rounds(a.root), eager_rounds(a.root)
    if not rec:
        print("gpu_anchor_table: no recbench results", file=sys.stderr)
        return 1
    if not eag:
        # The eager side did not run (no torch or transformers here): recbench's rows alone.
        print("gpu_anchor_table: no eager lines: the table has recbench's side only", file=sys.stderr)
    n = min(len(rec), len(eag)) if eag else len(rec)
    rounds = [{**rec[i], **(eag[i] if eag else {})} for i in range(n)]
    batches = sorted({k[2] for r in rounds for k in r})
    sides = sorted({k[:2] for r in rounds for k in r},
                   key=lambda s: (s[0].startswith("eager"), s[0], s[1]))
    runtime = next((v["runtime"] for r in eag for v in r.values()), "did not run (no torch or transformers)")
    lines = [
        f"# GPU anchors: {gpu_header()}",
        "",
        f"Model {', '.join(sorted(MODELS))}, {n} interleaved round(s) (recbench, then PyTorch eager, in each round); "
        f"eager side: {runtime}. One batch end to end: encoder, scoring against the catalog on the "
        "device, top-k, ids and scores to the host. Figures: median over rounds of each round's "
        "median ms per batch; ratio: that side over PyTorch eager fp16 in the same round, median "
        "over rounds [min–max]. Rows with fewer rounds than the table name them.",
        "",
        "| side | precision | " + " | ".join(f"batch {b}: ms | ratio" for b in batches) + " | rounds |",
        "|---|---|" + "---|---|" * len(batches) + "---|",
    ]
    for side, prec in sides:
        cells, used = [], 0
        for b in batches:
            ms = [r[(side, prec, b)]["ms"] for r in rounds if (side, prec, b) in r]
            ratios = [r[(side, prec, b)]["ms"] / r[("eager", "fp16", b)]["ms"]
                      for r in rounds if (side, prec, b) in r and ("eager", "fp16", b) in r]
            used = max(used, len(ms))
            if not ms:
                cells += ["", ""]
                continue
            ratio = (f"{statistics.median(ratios):.2f} [{min(ratios):.2f}–{max(ratios):.2f}]"
                     if ratios else "")
            cells += [f"{statistics.median(ms):.2f}", ratio]
        lines.append(f"| {side} | {prec} | " + " | ".join(cells) + f" | {used} |")
    lines += ["", "Scoring share of recbench's iterations (from each run's `scoring:` note, last round):", ""]
    last = rec[n - 1] if n else {}
    for k in sorted(last):
        if last[k]["scoring"]:
            lines.append(f"- {k[0]} {k[1]} batch {k[2]}: {last[k]['scoring']}")
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
