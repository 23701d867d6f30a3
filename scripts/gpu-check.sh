#!/usr/bin/env bash
# The one command for a GPU host. It runs a recbench built elsewhere (scripts/build-gpu.sh; the
# GPU host needs no Rust toolchain and no network), finds libtorch and the CUDA libraries there,
# prints the host's hardware and what each backend can run, checks parity on CUDA, runs
# scenarios/gpu.toml (and gpu-minilm.toml when the MiniLM weights are in the cache) and
# scenarios/gpu-server.toml, and writes a report that sets the GPU results beside the committed
# CPU reference results.
#
#   scripts/gpu-check.sh [--out DIR]    # on the GPU host; everything lands in DIR (default results/gpu-check)
#   scripts/gpu-check.sh --dry-run      # every step on this host's CPU, shrunk (a test runs it)
#   scripts/gpu-check.sh --only minilm,server   # some of: parity, minilm, server, gpu (default all)
#
# What it needs on the GPU host, all in this repository's tree (at most 64 MiB to copy):
# target/gpu/bundle/recbench.xz (or the unpacked recbench, or RECBENCH=path),
# .cache/models/minilm-l6/{tokenizer,config}.json
# (or RECBENCH_CACHE), the catalog and scenarios. libtorch comes from LIBTORCH or
# RECBENCH_LIBTORCH, else from the host's Python PyTorch installation; ONNX Runtime from
# ORT_DYLIB_PATH, else from the host's Python onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
OUT_DIR=results/gpu-check
ONLY=parity,minilm,server,gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT_DIR="$2"; shift ;;
    --only)
      ONLY="$2"; shift
      for part in ${ONLY//,/ }; do
        case "$part" in
          parity | minilm | server | gpu) ;;
          *) echo "gpu-check: --only $ONLY: unknown part $part (parts: parity, minilm, server, gpu)" >&2; exit 2 ;;
        esac
      done ;;
    *) echo "gpu-check: unknown argument $1 (use --dry-run, --out DIR, --only PARTS)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
LOG="$OUT_DIR/gpu-check.log"
: >"$LOG"
say() { echo "gpu-check: $*" | tee -a "$LOG" >&2; }
# Runs a step, its output both on the terminal and in the log. A failing step is logged and
# the check goes on (GPU time is scarce: a parity failure must not cost the sweep, whose own
# runs are then `invalid`); the script's exit code is the last failure's.
FAILED=0
step() {
  say "\$ $*"
  "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    say "step failed with exit code $rc: $*"
    FAILED=$rc
  fi
}

BIN="${RECBENCH:-}"
# The bundle travels compressed (scripts/build-gpu.sh): unpack it once.
if [ -z "$BIN" ] && [ ! -x target/gpu/bundle/recbench ] && [ -f target/gpu/bundle/recbench.xz ]; then
  if command -v xz >/dev/null; then
    xz -dc target/gpu/bundle/recbench.xz >target/gpu/bundle/recbench.partial
  else # Python's lzma reads the same format
    "${PYTHON:-python3}" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
      target/gpu/bundle/recbench.xz target/gpu/bundle/recbench.partial
  fi
  chmod +x target/gpu/bundle/recbench.partial
  mv target/gpu/bundle/recbench.partial target/gpu/bundle/recbench
fi
if [ -z "$BIN" ]; then
  for b in target/gpu/bundle/recbench target/gpu/release/recbench; do
    [ -x "$b" ] && { BIN="$b"; break; }
  done
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || {
  say "no recbench binary: build one with scripts/build-gpu.sh (or set RECBENCH=path)"
  exit 2
}

# libtorch: LIBTORCH / RECBENCH_LIBTORCH, else the host's Python PyTorch (the CUDA libraries it
# uses sit beside it, in site-packages/nvidia/*/lib).
TORCH_DIR="${RECBENCH_LIBTORCH:-${LIBTORCH:-}}"
if [ -z "$TORCH_DIR" ]; then
  TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null || true)
fi
if [ -n "$TORCH_DIR" ] && [ -d "$TORCH_DIR/lib" ]; then
  libs="$TORCH_DIR/lib"
  for d in "$(dirname "$TORCH_DIR")"/nvidia/*/lib; do
    [ -d "$d" ] && libs="$libs:$d"
  done
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "libtorch from $TORCH_DIR"
else
  say "no libtorch found on this host (LIBTORCH, RECBENCH_LIBTORCH, Python torch): the binary's own rpath decides"
fi
# ONNX Runtime: ORT_DYLIB_PATH, else the host's Python onnxruntime (CPU-only there: onnx on CUDA
# is then skipped, saying the CUDA provider library is missing).
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT=$("$PY" -c 'import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[0])' 2>/dev/null || true)
  if [ -n "$ORT" ]; then
    export ORT_DYLIB_PATH="$ORT"
    say "ONNX Runtime from $ORT"
  fi
fi

SCEN=scenarios
RUN_ARGS=(--out "$OUT_DIR" --quiet)
if [ "$DRY" = 1 ]; then
  # The same scenarios on the CPU, shrunk: the synthetic tiny model, batches 1 and 8, --quick.
  SCEN="$OUT_DIR/dry-run-scenarios"
  mkdir -p "$SCEN"
  for f in gpu gpu-minilm gpu-server parity-gpu; do
    sed -e 's/^devices = \["cuda"\]/devices = ["cpu"]/' \
      -e 's/^presets = .*/presets = ["tiny"]/' \
      -e 's/^batch = \[1, 256\]/batch = [1, 8]/' \
      -e 's/^batch = 64/batch = 8/' \
      -e 's/^name = "\(.*\)"/name = "\1-dry-run"/' \
      "scenarios/$f.toml" >"$SCEN/$f.toml"
    if grep -q '^devices = .*cuda' "$SCEN/$f.toml"; then
      say "dry run: $f.toml still names cuda after the rewrite"
      exit 1
    fi
  done
  RUN_ARGS+=(--quick)
  say "dry run: the GPU scenarios on the CPU, shrunk, in $SCEN"
fi

step "$BIN" --version
[ "$FAILED" = 0 ] || exit "$FAILED" # the binary does not start here: nothing else can run
step "$BIN" hardware
step "$BIN" backends
# Whether a part was asked for (--only).
want() { [[ ",$ONLY," == *",$1,"* ]]; }
want parity && step "$BIN" parity "$SCEN/parity-gpu.toml" --quiet
# MiniLM first: it is the model the committed CPU reference results ran, so its runs are the ones
# the report can set beside the CPU's cost per 1k. On a time-limited GPU host (a run cut short
# still leaves every finished run in its results file) they must not wait behind the synthetic
# presets.
if ! want minilm; then
  :
elif [ "$DRY" = 1 ]; then
  # Shrunk to the tiny model it would repeat gpu.toml's runs: checked, not run.
  step "$BIN" validate "$SCEN/gpu-minilm.toml"
elif [ -f "${RECBENCH_CACHE:-.cache}/models/minilm-l6/model.safetensors" ]; then
  step "$BIN" run "$SCEN/gpu-minilm.toml" "${RUN_ARGS[@]}"
else
  say "MiniLM weights not in ${RECBENCH_CACHE:-.cache}/models/minilm-l6: gpu-minilm.toml not run (synthetic base and large only)"
fi
want server && step "$BIN" run "$SCEN/gpu-server.toml" "${RUN_ARGS[@]}"
want gpu && step "$BIN" run "$SCEN/gpu.toml" "${RUN_ARGS[@]}"

# The report: these GPU results beside the committed CPU reference results (the reference VM is
# priced as a 2-vCPU cloud instance by explicit assertion, as in reports/example).
mapfile -t GPU_RESULTS < <(ls "$OUT_DIR"/gpu*/*.json 2>/dev/null)
step "$BIN" report "${GPU_RESULTS[@]}" results/reference/quick/*.json results/reference/server/*.json \
  --out "$OUT_DIR/report" --map vm=aws-m7i-large --qps 500 --p99-ms 100
say "done: results in $OUT_DIR/gpu*/, report in $OUT_DIR/report/index.html, log in $LOG"
exit "$FAILED"
