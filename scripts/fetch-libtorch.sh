#!/usr/bin/env bash
# Fetches libtorch for the `torch` backend (tch 0.24.0 pairs with PyTorch 2.11.0) from PyPI,
# into the git-ignored cache (.cache/ or $RECBENCH_CACHE): the torch 2.11.0 Linux x86-64 wheel
# without its dependencies, plus the two CUDA runtime libraries libtorch_cpu.so links
# (libcudart and libcupti, at the versions torch's metadata pins through cuda-toolkit 13.0.2).
# The wheels are extracted side by side into $CACHE/libtorch/ so that the wheel's own rpaths
# ($ORIGIN/../../nvidia/cu13/lib) resolve, and `LIBTORCH=$CACHE/libtorch/torch` builds tch.
# Safe to run again: it does nothing once the extraction is complete and checked with ldd.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${RECBENCH_CACHE:-.cache}"
DEST="$CACHE/libtorch"
PY="${PYTHON:-python3}"
TORCH_VERSION=2.11.0
# Pinned by torch 2.11.0's `cuda-toolkit[cudart,cupti]==13.0.2` requirement.
CUDART="nvidia-cuda-runtime==13.0.96"
CUPTI="nvidia-cuda-cupti==13.0.85"

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "fetch-libtorch: only Linux x86-64 is set up here; set RECBENCH_SKIP_LIBTORCH=1 to go on without the torch backend" >&2
  exit 1
fi
if [ -f "$DEST/.complete-$TORCH_VERSION" ]; then
  echo "fetch-libtorch: libtorch $TORCH_VERSION already in $DEST"
  exit 0
fi
mkdir -p "$CACHE/wheels" "$DEST"
echo "fetch-libtorch: downloading torch $TORCH_VERSION (about 530 MB) and the CUDA runtime wheels ..."
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$CACHE/wheels" \
  "torch==$TORCH_VERSION" "$CUDART" "$CUPTI"
# The torch wheel is per Python version; the libtorch inside is the same for all of them.
TORCH_WHEEL=$(ls "$CACHE"/wheels/torch-$TORCH_VERSION-*manylinux*x86_64.whl | head -n1)
CUDART_WHEEL=$(ls "$CACHE"/wheels/nvidia_cuda_runtime-13.0.96-*.whl | head -n1)
CUPTI_WHEEL=$(ls "$CACHE"/wheels/nvidia_cuda_cupti-13.0.85-*.whl | head -n1)
echo "fetch-libtorch: extracting into $DEST ..."
"$PY" scripts/extract-wheels.py "$DEST" "$TORCH_WHEEL" "$CUDART_WHEEL" "$CUPTI_WHEEL"
LIB="$DEST/torch/lib"
if ldd "$LIB/libtorch_cpu.so" | grep -q "not found"; then
  echo "fetch-libtorch: libtorch_cpu.so has unresolved libraries:" >&2
  ldd "$LIB/libtorch_cpu.so" | grep "not found" >&2
  exit 1
fi
touch "$DEST/.complete-$TORCH_VERSION"
rm -f "$TORCH_WHEEL" "$CUDART_WHEEL" "$CUPTI_WHEEL"  # extracted into $DEST; 530 MB of disk otherwise
echo "fetch-libtorch: libtorch $TORCH_VERSION ready; LIBTORCH=$DEST/torch"
