#!/usr/bin/env bash
# recbench beside what users of the Python runtimes get, on whatever host this runs on:
# all-MiniLM-L6-v2, 128 tokens, batch 1, 8 and 32, the same thread count, interleaved rounds
# (every contender once per round and batch, in turn), time ratios from the medians of the rounds.
#
#   recbench onnx fp32   vs Python onnxruntime on recbench's own .onnx, and on a Hugging Face export
#   recbench torch fp32  vs PyTorch eager (transformers BertModel, sdpa)
#   recbench torch int8  vs PyTorch quantize_dynamic (x86 engine)
#   recbench candle fp32 vs Python onnxruntime on the Hugging Face export
#   recbench candle int8 (for the record: its ratio to candle fp32)
#
#   scripts/bench/anchors.sh [ROUNDS]     # default 3; THREADS (default 2), BATCHES ("1 8 32"),
#                                         # ONLY (a subset of "onnx torch int8 candle")
#
# ISA=avx2 caps the vector ISA, on both sides alike, of every library that has a cap: ATen's
# own kernels (ATEN_CPU_CAPABILITY), oneDNN (ONEDNN_MAX_CPU_ISA), MKL (MKL_ENABLE_INSTRUCTIONS)
# and FBGEMM (FBGEMM_ENABLE_INSTRUCTIONS). The torch rows then show what an AVX2-only host runs,
# on this host's cores and caches. ONNX Runtime's MLAS, candle, the gemm crate and recbench's
# own int8 row loops (torch_quant.cpp) have no cap and keep this host's widest ISA; the table
# says so.
#
# Needs a release build with --features onnx,torch (scripts/quickstart.sh makes one), and a
# Python venv at $RECBENCH_CACHE/bench-venv with torch 2.11.0, transformers, onnxruntime 1.31.1,
# onnx and numpy (this script creates it when missing, from PyPI). Writes
# docs/benchmarks/anchors-<host>-<utc>.jsonl (every measurement) and .md (the table, headed by
# this host's CPU model and ISA flags). Run it on a quiet machine: nothing else may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${RECBENCH_CACHE:-.cache}"
ROUNDS="${1:-3}"
THREADS="${THREADS:-2}"
BATCHES="${BATCHES:-1 8 32}"
BIN="${RECBENCH:-target/release/recbench}"
ONLY="${ONLY:-onnx torch int8 candle}"
ISA="${ISA:-}"
case "$ISA" in
  "") ;;
  avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 ;;
  *) echo "anchors: ISA=$ISA: only avx2 is known" >&2; exit 2 ;;
esac
want() { [[ " $ONLY " == *" $1 "* ]]; }
VENV="$CACHE/bench-venv"
PY="$VENV/bin/python"
MODEL="$CACHE/models/minilm-l6"

[ -x "$BIN" ] || { echo "anchors: no $BIN; build with: cargo build --release --features onnx,torch" >&2; exit 2; }
if ! "$PY" -c 'import torch, transformers, onnxruntime, onnx' 2>/dev/null; then
  echo "anchors: creating $VENV (torch 2.11.0, transformers, onnxruntime 1.31.1, onnx, numpy)"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet torch==2.11.0 transformers onnxruntime==1.31.1 onnx numpy
fi
UTC=$(date -u +%Y%m%dT%H%MZ)
HOST=$("$BIN" hardware --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"])')
STEM="docs/benchmarks/anchors-$HOST${ISA:+-$ISA}-$UTC"
JSONL="$STEM.jsonl"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" hardware --json >"$WORK/hardware.json"

HF_ONNX="$CACHE/onnx/hf-minilm-l6.onnx"
[ -f "$HF_ONNX" ] || "$PY" scripts/bench/anchors.py export "$MODEL" "$HF_ONNX" >/dev/null

# One recbench run: backend, precision, batch → its results file.
recbench_run() {
  local backend=$1 precision=$2 batch=$3 tag=$4
  cat >"$WORK/$tag.toml" <<EOF
name = "anchor"
[model]
presets = ["minilm-l6"]
[workload]
mode = "two-tower"
batch = $batch
seq_len = 128
precision = ["$precision"]
[matrix]
backends = ["$backend"]
devices = ["cpu"]
threads = $THREADS
[measure]
warmup_s = 1
min_s = 4
min_queries = 5
max_s = 20
load = "offline"
sla_p99_ms = 100000
[recommender]
top_k = 10
catalog_items = 64
EOF
  rm -rf "$WORK/out-$tag"
  "$BIN" run "$WORK/$tag.toml" --quiet --out "$WORK/out-$tag" >/dev/null
  ls "$WORK/out-$tag"/anchor/*.json
}

# A recbench measurement as one JSON line (ms per sequence = p50 per batch / batch).
recbench_line() {
  local round=$1 batch=$2 side=$3 file=$4
  python3 - "$round" "$batch" "$side" "$file" <<'PY'
import json, sys
round_, batch, side, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.load(open(path))["runs"][0]
lat = r.get("latency") or {}
print(json.dumps({"round": int(round_), "batch": batch, "side": side, "status": r["status"],
    "ms_per_seq": lat["p50_ms"] / batch if r["status"] == "ok" else None,
    "samples": lat.get("count"), "cv": lat.get("cv"),
    "kernels": [n for n in r.get("notes", []) if n.startswith(("kernels:", "openmp:", "isa cap:"))],
    "reason": r.get("reason")}))
PY
}

python_line() {
  local round=$1 batch=$2 side=$3 json=$4
  python3 - "$round" "$batch" "$side" "$json" <<'PY'
import json, sys
round_, batch, side, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
print(json.dumps({"round": int(round_), "batch": batch, "side": side, "status": "ok",
    "ms_per_seq": raw["median_ms_per_batch"] / batch, "samples": len(raw["samples_ms"]),
    "runtime": raw["runtime"]}))
PY
}

reps() { case "$1" in 1) echo 40 ;; 8) echo 12 ;; *) echo 5 ;; esac; }

for round in $(seq 1 "$ROUNDS"); do
  for b in $BATCHES; do
    echo "anchors: round $round/$ROUNDS, batch $b" >&2
    if want onnx || want candle; then
      python_line "$round" "$b" python-ort-hf-export \
        "$("$PY" scripts/bench/anchors.py ort "$HF_ONNX" "$b" 128 "$THREADS" "$(reps "$b")")" >>"$JSONL"
    fi
    if want onnx; then
      f=$(recbench_run onnx fp32 "$b" "onnx-$round-$b")
      recbench_line "$round" "$b" recbench-onnx-fp32 "$f" >>"$JSONL"
      # The graph that run chose, for Python onnxruntime on the very same file.
      graph=$(python3 -c 'import json,re,sys; n=[x for x in json.load(open(sys.argv[1]))["runs"][0]["notes"] if x.startswith("kernels:")][0]; print(re.search(r"graph (\S+)", n).group(1))' "$f")
      python_line "$round" "$b" python-ort-recbench-graph \
        "$("$PY" scripts/bench/anchors.py ort "$(ls "$CACHE"/onnx/*/"$graph" "$CACHE"/onnx/"$graph" 2>/dev/null | head -n1)" "$b" 128 "$THREADS" "$(reps "$b")")" >>"$JSONL"
    fi
    if want torch; then
      recbench_line "$round" "$b" recbench-torch-fp32 "$(recbench_run torch fp32 "$b" "torch-$round-$b")" >>"$JSONL"
      python_line "$round" "$b" python-torch-eager-fp32 \
        "$("$PY" scripts/bench/anchors.py eager "$MODEL" "$b" 128 "$THREADS" "$(reps "$b")")" >>"$JSONL"
    fi
    if want int8; then
      recbench_line "$round" "$b" recbench-torch-int8 "$(recbench_run torch int8 "$b" "torch8-$round-$b")" >>"$JSONL"
      python_line "$round" "$b" python-torch-dynamic-int8 \
        "$("$PY" scripts/bench/anchors.py int8 "$MODEL" "$b" 128 "$THREADS" "$(reps "$b")")" >>"$JSONL"
    fi
    if want candle; then
      recbench_line "$round" "$b" recbench-candle-fp32 "$(recbench_run candle fp32 "$b" "candle-$round-$b")" >>"$JSONL"
      recbench_line "$round" "$b" recbench-candle-int8 "$(recbench_run candle int8 "$b" "candle8-$round-$b")" >>"$JSONL"
    fi
  done
done

python3 - "$JSONL" "$WORK/hardware.json" "$THREADS" "$STEM.md" "$(git rev-parse --short=12 HEAD)" "$ISA" <<'PY'
import collections, json, statistics, sys
jsonl, hw_path, threads, md, commit, isa = sys.argv[1:]
hw = json.load(open(hw_path))
rows = [json.loads(l) for l in open(jsonl)]
by = collections.defaultdict(dict)  # (round, batch) -> side -> ms/seq
for r in rows:
    if r["ms_per_seq"] is not None:
        by[(r["round"], r["batch"])][r["side"]] = r["ms_per_seq"]
pairs = [
    ("onnx fp32 ÷ Python ORT, same graph", "recbench-onnx-fp32", "python-ort-recbench-graph", "≤ 1.0"),
    ("onnx fp32 ÷ Python ORT, HF export", "recbench-onnx-fp32", "python-ort-hf-export", ""),
    ("torch fp32 ÷ PyTorch eager", "recbench-torch-fp32", "python-torch-eager-fp32", "≤ 1.0"),
    ("torch int8 ÷ PyTorch dynamic int8", "recbench-torch-int8", "python-torch-dynamic-int8", "≤ 1.0"),
    ("candle fp32 ÷ Python ORT, HF export", "recbench-candle-fp32", "python-ort-hf-export", "≤ 1.5"),
    ("candle int8 ÷ candle fp32", "recbench-candle-int8", "recbench-candle-fp32", ""),
]
batches = sorted({b for (_, b) in by})
out = []
out.append(f"# recbench beside the Python runtimes on {hw.get('cpu_model') or 'unknown CPU'}\n")
out.append(f"Measured by `scripts/bench/anchors.sh` at commit {commit}: all-MiniLM-L6-v2, 128 tokens, "
           f"{threads} threads, {max(r['round'] for r in rows)} interleaved rounds. Host `{hw['host']}`, "
           f"{hw.get('physical_cores')} physical cores, flags: {' '.join(hw.get('cpu_flags', []))}. "
           f"Each cell is the median over rounds of (recbench's time ÷ the anchor's time) per sequence, "
           f"with the per-round ratios in brackets; below 1 means recbench is faster. "
           f"Raw measurements: `{jsonl.split('/')[-1]}`.\n")
if isa:
    out.append(f"**ISA capped at {isa.upper()}** on both sides for ATen's kernels, oneDNN, MKL and FBGEMM "
               f"(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, FBGEMM_ENABLE_INSTRUCTIONS): "
               f"the torch fp32 row is what an {isa.upper()}-only host runs, on this host's cores and caches. "
               f"ONNX Runtime's MLAS, candle, the gemm crate and recbench's own int8 row loops have no cap "
               f"and ran this host's widest ISA, so the other rows do not stand for such a host.\n")
out.append("| ratio | bar | " + " | ".join(f"batch {b}" for b in batches) + " |")
out.append("|---|---|" + "---|" * len(batches))
for name, a, b_, bar in pairs:
    cells = []
    for b in batches:
        ratios = [by[(r, b)][a] / by[(r, b)][b_] for (r, bb) in sorted(by) if bb == b and a in by[(r, b)] and b_ in by[(r, b)]]
        cells.append(f"**{statistics.median(ratios):.2f}** ({', '.join(f'{x:.2f}' for x in ratios)})" if ratios else "–")
    out.append(f"| {name} | {bar} | " + " | ".join(cells) + " |")
out.append("\nms per sequence, median over rounds:\n")
sides = sorted({r["side"] for r in rows})
out.append("| side | " + " | ".join(f"batch {b}" for b in batches) + " |")
out.append("|---|" + "---|" * len(batches))
for s in sides:
    cells = []
    for b in batches:
        v = [by[(r, b)][s] for (r, bb) in sorted(by) if bb == b and s in by[(r, b)]]
        cells.append(f"{statistics.median(v):.2f}" if v else "–")
    out.append(f"| {s} | " + " | ".join(cells) + " |")
failed = [r for r in rows if r["ms_per_seq"] is None]
if failed:
    out.append("\nRuns without a time: " + "; ".join(f"round {r['round']} batch {r['batch']} {r['side']}: {r['status']} ({r.get('reason')})" for r in failed))
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "anchors: $JSONL and $STEM.md" >&2
