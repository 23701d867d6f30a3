#!/usr/bin/env bash
# The one command for a GPU host. It runs a recbench built elsewhere (scripts/build-gpu.sh; the
# GPU host needs no Rust toolchain and no network), finds libtorch and the CUDA libraries there,
# prints the host's hardware and what each backend can run, and then, comparable steps first:
#   minilm   scenarios/gpu-minilm.toml: MiniLM (real weights), every backend and precision,
#            batch 1/64/256, scoring on the device (round 1 of the anchors' recbench side);
#   anchors  PyTorch eager (transformers BertModel, sdpa) fp16/bf16/fp32 + torch.mm/topk on the
#            device, interleaved with recbench torch and candle fp16 (ANCHOR_ROUNDS rounds, 3 by
#            default), and the table of their medians (DIR/anchors.md);
#   server   scenarios/gpu-server.toml: BERT-base fp16 offline and under server load;
#   parity   recbench parity on CUDA (tiny and base; every run checks its own parity too);
#   gpu      scenarios/gpu.toml: synthetic BERT-base and BERT-large, every precision.
# and writes a report that sets the GPU results beside the committed CPU reference results.
#
#   scripts/gpu-check.sh [--out DIR]    # on the GPU host; everything lands in DIR (default results/gpu-check)
#   scripts/gpu-check.sh --dry-run      # every part on this host's CPU, shrunk (a test runs it)
#   scripts/gpu-check.sh --only minilm,server   # some of the parts (default minilm,anchors,server)
#
# What it needs on the GPU host, all in this repository's tree: the folders of
# scripts/gpu-bundle.sh (target/gpu/carry/N: the binary, the MiniLM files in pieces, with
# --wheels the anchor's wheels, each folder with its SHA-256 sums; checked, joined and unpacked
# here first), or target/gpu/bundle/recbench(.xz) and .cache/models/minilm-l6 already in place (or
# RECBENCH=path, RECBENCH_CACHE). libtorch comes from LIBTORCH or RECBENCH_LIBTORCH, else from
# the host's Python PyTorch installation; ONNX Runtime from ORT_DYLIB_PATH, else from the
# host's Python onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
OUT_DIR=results/gpu-check
ONLY=
ROUNDS="${ANCHOR_ROUNDS:-3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT_DIR="$2"; shift ;;
    --only)
      ONLY="$2"; shift
      for part in ${ONLY//,/ }; do
        case "$part" in
          parity | minilm | anchors | server | gpu) ;;
          *) echo "gpu-check: --only $ONLY: unknown part $part (parts: parity, minilm, anchors, server, gpu)" >&2; exit 2 ;;
        esac
      done ;;
    *) echo "gpu-check: unknown argument $1 (use --dry-run, --out DIR, --only PARTS)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python3}"
# By default the comparable parts on a GPU host (parity and the synthetic sweep on asking), and
# every part in a dry run.
if [ -z "$ONLY" ]; then
  if [ "$DRY" = 1 ]; then ONLY=minilm,anchors,server,parity,gpu; else ONLY=minilm,anchors,server; fi
fi
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
  set +e
  "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    say "step failed with exit code $rc: $*"
    FAILED=$rc
  fi
}

# The folders of scripts/gpu-bundle.sh: every file checked against its folder's SHA-256 sums,
# then the binary and MiniLM files put in place and the anchor's wheels (if carried) unpacked.
CARRY=target/gpu/carry
# Where a carried ONNX Runtime CUDA build is unpacked.
ORTG="${RECBENCH_CACHE:-.cache}/ort-gpu"
if [ -d "$CARRY" ]; then
  for d in "$CARRY"/*/; do
    (cd "$d" && sha256sum --check --quiet SHA256SUMS) || {
      say "$d: a file is missing or differs from its SHA-256 (carry that folder again)"
      exit 1
    }
  done
  mkdir -p target/gpu/bundle
  for f in "$CARRY"/*/recbench.xz; do [ -f "$f" ] && cp "$f" target/gpu/bundle/recbench.xz && rm -f target/gpu/bundle/recbench; done
  DEST="${RECBENCH_CACHE:-.cache}/models/minilm-l6"
  mkdir -p "$DEST"
  for f in tokenizer.json config.json; do
    for src in "$CARRY"/*/minilm/$f; do [ -f "$src" ] && cp "$src" "$DEST/$f"; done
  done
  # Joins the carried pieces NAME.part1, part2, ... (in piece order, whatever folder each came
  # in) into OUT; says how many there were (0: none carried).
  join_pieces() {
    local name="$1" out="$2" pieces
    mapfile -t pieces < <(ls "$CARRY"/*/"$name".part* 2>/dev/null | while read -r p; do echo "${p##*part} $p"; done | sort -n | cut -d' ' -f2)
    [ "${#pieces[@]}" -gt 0 ] || { echo 0; return; }
    cat "${pieces[@]}" >"$out.partial"
    mv "$out.partial" "$out"
    echo "${#pieces[@]}"
  }
  n=$(join_pieces minilm/model.safetensors "$DEST/model.safetensors")
  [ "$n" = 0 ] || say "MiniLM joined from $n pieces (recbench checks its pinned SHA-256 when it loads it)"
  # ONNX Runtime's CUDA build (gpu-bundle.sh --ort-gpu), unpacked for the choice below.
  mkdir -p "$ORTG"
  n=$(join_pieces ort-gpu/ort-gpu.tar.xz "$ORTG/ort-gpu.tar.xz")
  if [ "$n" -gt 0 ]; then
    "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2], filter="data")' \
      "$ORTG/ort-gpu.tar.xz" "$ORTG"
    rm -f "$ORTG/ort-gpu.tar.xz"
    say "ONNX Runtime's CUDA build joined from $n pieces into $ORTG"
  fi
  if ls "$CARRY"/*/wheels/*.whl >/dev/null 2>&1; then
    # Unpacked, not pip-installed: the host's Python may refuse pip (externally managed).
    "$PY" scripts/extract-wheels.py "${RECBENCH_CACHE:-.cache}/anchor-pylib" "$CARRY"/*/wheels/*.whl
    say "anchor wheels unpacked into ${RECBENCH_CACHE:-.cache}/anchor-pylib"
  fi
fi
ANCHOR_PYLIB="${RECBENCH_CACHE:-.cache}/anchor-pylib"

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
# ONNX Runtime: ORT_DYLIB_PATH, else the carried CUDA build (gpu-bundle.sh --ort-gpu, unpacked
# above), else the host's Python onnxruntime (CPU-only there: onnx on CUDA is then skipped,
# saying the CUDA provider library is missing).
if [ -z "${ORT_DYLIB_PATH:-}" ] && ls "$ORTG"/libonnxruntime.so.* >/dev/null 2>&1; then
  export ORT_DYLIB_PATH
  ORT_DYLIB_PATH=$(ls "$ORTG"/libonnxruntime.so.* | head -1)
  say "ONNX Runtime from $ORT_DYLIB_PATH (with its CUDA provider)"
fi
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
  for f in gpu gpu-minilm gpu-anchors gpu-server parity-gpu; do
    sed -e 's/^devices = \["cuda"\]/devices = ["cpu"]/' \
      -e 's/^presets = .*/presets = ["tiny"]/' \
      -e 's/^batch = \[1, 256\]/batch = [1, 8]/' \
      -e 's/^batch = \[1, 64, 256\]/batch = [1, 8]/' \
      -e 's/^batch = 64/batch = 8/' \
      -e 's/^catalog_items = .*/catalog_items = 2000/' \
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
# MiniLM first: it is the model the committed CPU reference results ran, so its runs are the ones
# the report can set beside the CPU's cost per 1k. On a time-limited GPU host (a run cut short
# still leaves every finished run in its results file) they must not wait behind the synthetic
# presets.
MODEL_DIR="${RECBENCH_CACHE:-.cache}/models/minilm-l6"
HAVE_MINILM=0
[ -f "$MODEL_DIR/model.safetensors" ] && HAVE_MINILM=1
# The eager anchor's window is the anchor scenario's [measure] (warmup_s, min_s, min_queries,
# max_s), so both sides are timed alike.
window() { "$PY" -c 'import sys, tomllib; m = tomllib.load(open(sys.argv[1], "rb"))["measure"]; print(",".join(str(m[k]) for k in ("warmup_s", "min_s", "min_queries", "max_s")))' "$1"; }
PYTHONPATH_ANCHOR="${PYTHONPATH:-}"
[ -d "$ANCHOR_PYLIB" ] && PYTHONPATH_ANCHOR="$(cd "$ANCHOR_PYLIB" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
ANCHOR_DEV=cuda
[ "$DRY" = 1 ] && ANCHOR_DEV=cpu
# One round of the eager anchor, after the recbench side of the same round.
eager() {
  local round="$1" batches items
  batches=$(sed -n 's/^batch = \[\(.*\)\]/\1/p' "$SCEN/gpu-anchors.toml" | tr -d ' ')
  items=$(sed -n 's/^catalog_items = //p' "$SCEN/gpu-anchors.toml")
  say "anchors round $round: PyTorch eager"
  local path="$PYTHONPATH_ANCHOR"
  if ! PYTHONPATH="$path" "$PY" -c 'import torch, transformers' 2>>"$LOG"; then
    say "anchors round $round: skipped the PyTorch eager side: this Python lacks torch or transformers (on a GPU host, scripts/gpu-bundle.sh carries transformers; on a CPU, scripts/bench/anchors.sh's venv has both: PYTHON=.cache/bench-venv/bin/python3)"
    [ "$DRY" = 1 ] || FAILED=1
    return
  fi
  PYTHONPATH="$path" "$PY" scripts/bench/gpu_anchors.py "$MODEL_DIR" --batches "$batches" \
    --seq "$(sed -n 's/^seq_len = //p' "$SCEN/gpu-anchors.toml")" --items "$items" \
    --precisions fp16,bf16,fp32 --control fp16 --window "$(window "$SCEN/gpu-anchors.toml")" \
    --device "$ANCHOR_DEV" >"$OUT_DIR/anchors/eager-round$round.jsonl" 2>>"$LOG" || {
    say "the eager anchor failed in round $round (its error is in $LOG)"
    FAILED=1
  }
}
if want minilm; then
  if [ "$HAVE_MINILM" = 1 ] || [ "$DRY" = 1 ]; then
    step "$BIN" run "$SCEN/gpu-minilm.toml" "${RUN_ARGS[@]}"
  else
    say "MiniLM weights not in $MODEL_DIR: gpu-minilm.toml not run (carry them: scripts/gpu-bundle.sh)"
  fi
fi
if want anchors; then
  if [ "$HAVE_MINILM" = 1 ]; then
    mkdir -p "$OUT_DIR/anchors"
    # Round 1's recbench side is gpu-minilm.toml's fp16 runs when it ran; rounds after it run
    # gpu-anchors.toml (the same runs) between the eager rounds: A B A B ...
    if ! want minilm; then
      step "$BIN" run "$SCEN/gpu-anchors.toml" "${RUN_ARGS[@]}"
    fi
    eager 1
    for round in $(seq 2 "$ROUNDS"); do
      step "$BIN" run "$SCEN/gpu-anchors.toml" "${RUN_ARGS[@]}"
      eager "$round"
    done
    step "$PY" scripts/bench/gpu_anchor_table.py "$OUT_DIR" --out "$OUT_DIR/anchors.md"
  else
    say "MiniLM weights not in $MODEL_DIR: no anchors"
  fi
fi
want server && step "$BIN" run "$SCEN/gpu-server.toml" "${RUN_ARGS[@]}"
want parity && step "$BIN" parity "$SCEN/parity-gpu.toml" --quiet
want gpu && step "$BIN" run "$SCEN/gpu.toml" "${RUN_ARGS[@]}"

# The report: these GPU results beside the committed CPU reference results (the reference VM is
# priced as a 2-vCPU cloud instance by explicit assertion, as in reports/example).
# (The anchors' later rounds repeat gpu-minilm's fp16 runs: they stay out of the report.)
mapfile -t GPU_RESULTS < <(ls "$OUT_DIR"/gpu-minilm*/*.json "$OUT_DIR"/gpu-server*/*.json "$OUT_DIR"/gpu/*.json "$OUT_DIR"/gpu-dry-run/*.json 2>/dev/null)
step "$BIN" report "${GPU_RESULTS[@]}" results/reference/quick/*.json results/reference/server/*.json \
  --out "$OUT_DIR/report" --map vm=aws-m7i-large --qps 500 --p99-ms 100
say "done: results in $OUT_DIR/gpu*/, report in $OUT_DIR/report/index.html, log in $LOG"
exit "$FAILED"
