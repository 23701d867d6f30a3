#!/usr/bin/env bash
# Fetches what building the `cuda` feature needs on a machine without a GPU or a CUDA install,
# from PyPI only, into the git-ignored cache (.cache/ or $RECBENCH_CACHE):
#   - the CUDA 13.0 compiler (nvcc, its crt headers, nvvm/cicc and the CCCL headers) that
#     candle-kernels compiles its kernels with. Pinned to 13.0.x: a GPU host with driver 580
#     runs CUDA 13.0, and PTX from a newer nvcc does not load there.
#   - the CUDA runtime library candle-kernels links (the 13.0.96 that PyTorch 2.11.0 pins
#     through cuda-toolkit 13.0.2). Everything else CUDA (the driver, cuBLAS, cuRAND, NVRTC,
#     cuDNN) is opened at run time on the GPU host, from its driver and PyTorch installation.
# Safe to run again: it does nothing once the extraction is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${RECBENCH_CACHE:-.cache}"
DEST="$CACHE/cuda-13.0"
PY="${PYTHON:-python3}"
WHEELS=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-cccl==13.0.85"
  "nvidia-cuda-runtime==13.0.96"
)

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "fetch-cuda: only Linux x86-64 is set up here" >&2
  exit 1
fi
if [ -f "$DEST/.complete" ]; then
  echo "fetch-cuda: CUDA 13.0 build tools already in $DEST"
  exit 0
fi
mkdir -p "$CACHE/wheels"
echo "fetch-cuda: downloading the CUDA 13.0 compiler and libraries (about 100 MB) ..."
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$CACHE/wheels" "${WHEELS[@]}"
files=()
for spec in "${WHEELS[@]}"; do
  name="${spec%%==*}"
  version="${spec##*==}"
  files+=("$(ls "$CACHE"/wheels/"${name//-/_}"-"$version"-*.whl | head -n1)")
done
echo "fetch-cuda: extracting into $DEST ..."
"$PY" scripts/extract-wheels.py "$DEST" "${files[@]}"
ROOT="$DEST/nvidia/cu13"
chmod +x "$ROOT"/bin/* "$ROOT"/nvvm/bin/* 2>/dev/null || true
"$ROOT/bin/nvcc" --version | grep -q "release 13.0" || {
  echo "fetch-cuda: $ROOT/bin/nvcc is not CUDA 13.0" >&2
  exit 1
}

# The unversioned name the linker looks for (-lcudart, from candle-kernels), beside the real one.
ln -sf libcudart.so.13 "$ROOT/lib/libcudart.so"
touch "$DEST/.complete"
rm -f "${files[@]}"  # extracted into $DEST; the wheels would only hold disk
echo "fetch-cuda: CUDA 13.0 build tools ready in $DEST"
