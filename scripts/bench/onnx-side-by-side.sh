#!/usr/bin/env bash
# The measurements behind docs/benchmarks/onnx.md: minilm-l6, seq 128, batch 32, 2 threads.
# Rounds of interleaved runs (recbench's onnx backend through examples/onnx_bench.rs, and Python
# onnxruntime on the same .onnx file and inputs through scripts/bench/ort_python.py); each line
# is the median of REPS timed encodes after 3 warm-up encodes.
#   usage: scripts/bench/onnx-side-by-side.sh [ROUNDS] [REPS]
# Needs: scripts/fetch.sh done, and a venv with onnxruntime, onnx and numpy at
# $RECBENCH_CACHE/bench-venv (python3 -m venv ...; pip install onnxruntime==1.31.1 onnx numpy).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${RECBENCH_CACHE:-.cache}"
ROUNDS="${1:-3}"
REPS="${2:-20}"
PY="$CACHE/bench-venv/bin/python"
OUT="${TMPDIR:-/tmp}/recbench-onnx-bench"
mkdir -p "$OUT"
cargo build --features onnx --example onnx_bench --quiet
BENCH=target/debug/examples/onnx_bench # the hot path is in ONNX Runtime; deps are -O3 in dev
for r in $(seq "$ROUNDS"); do
  echo "# round $r"
  for f in plain fused; do
    for opt in basic all; do
      "$BENCH" minilm-l6 "$f" fp32 "$opt" 2 32 128 "$REPS" "$OUT/minilm-$f-fp32"
      "$PY" scripts/bench/ort_python.py "$OUT/minilm-$f-fp32" 32 128 2 "$opt" "$REPS"
    done
  done
  for p in fp16 int8; do
    for f in plain fused; do
      "$BENCH" minilm-l6 "$f" "$p" all 2 32 128 "$REPS"
    done
  done
done
