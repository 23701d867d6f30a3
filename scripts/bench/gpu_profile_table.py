#!/usr/bin/env python3
"""Sums an Nsight Compute CSV (--metrics gpu__time_duration.sum --csv) by kernel name: total
GPU time, share and launches per kernel, largest first, as a Markdown table.

    python3 scripts/bench/gpu_profile_table.py ncu.csv
"""
import collections
import csv
import sys

UNIT_NS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}


def main(path):
    rows = list(csv.reader(line for line in open(path) if line.startswith('"')))
    if not rows:
        print(f"gpu_profile_table: no kernel rows in {path}", file=sys.stderr)
        return 1
    head = rows[0]
    name_i, unit_i, value_i = (head.index(c) for c in ("Kernel Name", "Metric Unit", "Metric Value"))
    total = collections.defaultdict(lambda: [0, 0.0])
    for r in rows[1:]:
        ns = float(r[value_i].replace(",", "")) * UNIT_NS[r[unit_i]]
        k = total[r[name_i].split("(")[0]]
        k[0] += 1
        k[1] += ns
    all_ns = sum(ns for _, ns in total.values())
    print(f"{len(rows) - 1} kernel launches, {all_ns / 1e6:.2f} ms of GPU time in all\n")
    print("| kernel | GPU ms | share | launches |")
    print("|---|---|---|---|")
    for name, (n, ns) in sorted(total.items(), key=lambda kv: -kv[1][1]):
        print(f"| `{name}` | {ns / 1e6:.3f} | {100 * ns / all_ns:.1f}% | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
