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
# --ort-gpu adds ONNX Runtime's CUDA build: libonnxruntime, its shared-provider library and
# its CUDA execution provider from the onnxruntime-gpu wheel (ORT_GPU_VERSION, 1.30.0 by
# default: built for CUDA 13, whose libraries the GPU host's PyTorch brings), as one .tar.xz in
# pieces. The wheel is 247 MB, the CUDA provider alone 259 MiB unpacked; packed they take about
# five more folders.
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
ORT_GPU=0
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --wheels) WHEELS_TOO=1 ;;
    --no-weights) WEIGHTS=0 ;;
    --ort-gpu) ORT_GPU=1 ;;
    *) echo "gpu-bundle: unknown argument $arg (use --no-build, --wheels, --no-weights, --ort-gpu)" >&2; exit 2 ;;
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

# ONNX Runtime's CUDA libraries (--ort-gpu), packed once per version.
ORT_GPU_VERSION="${ORT_GPU_VERSION:-1.30.0}"
ORTG="$CACHE/ort-gpu-$ORT_GPU_VERSION"
if [ "$ORT_GPU" = 1 ] && [ ! -f "$ORTG/ort-gpu.tar.xz" ]; then
  rm -rf "$ORTG"
  mkdir -p "$ORTG/lib"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --dest "$ORTG" "onnxruntime-gpu==$ORT_GPU_VERSION"
  "$PY" - "$ORTG" <<'PY'
import glob, os, sys, zipfile
d = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(d, "onnxruntime_gpu-*.whl"))[0])
wanted = ("libonnxruntime.so", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so")
for name in wheel.namelist():
    base = os.path.basename(name)
    if name.startswith("onnxruntime/capi/") and base.startswith(wanted):
        with open(os.path.join(d, "lib", base), "wb") as f:
            f.write(wheel.read(name))
PY
  tar -C "$ORTG/lib" -cf - . | xz -T0 -6 >"$ORTG/ort-gpu.tar.xz.partial"
  mv "$ORTG/ort-gpu.tar.xz.partial" "$ORTG/ort-gpu.tar.xz"
  rm -rf "$ORTG/lib" "$ORTG"/*.whl
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
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Puts FILE as pieces NAME.part1, part2, ... that fill the current folder, then whole folders
# (gpu-check.sh joins them in piece order).
put_pieces() {
  local f="$1" name="$2" room=$((LIMIT - used)) base
  base=$(basename "$name")
  rm -f "$TMP/$base".part*
  head -c "$room" "$f" >"$TMP/$base.part01"
  tail -c +$((room + 1)) "$f" | split -b "$LIMIT" -d -a 2 --numeric-suffixes=2 - "$TMP/$base.part"
  for p in "$TMP/$base".part*; do
    if [ -s "$p" ]; then
      put "$p" "$(dirname "$name")/$(basename "$p" | sed 's/\.part0*\([0-9]\)/.part\1/')"
    fi
  done
}
# The weights (87 MiB) in pieces that fill the folders.
if [ "$WEIGHTS" = 1 ]; then put_pieces "$MINILM/model.safetensors" minilm/model.safetensors; fi
if [ "$ORT_GPU" = 1 ]; then put_pieces "$ORTG/ort-gpu.tar.xz" ort-gpu/ort-gpu.tar.xz; fi
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
