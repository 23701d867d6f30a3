#!/usr/bin/env bash
# Builds recbench with CUDA (feature `cuda`, plus `nvml`) on any Linux x86-64 machine, with or
# without a GPU: every input comes from the package registries (scripts/fetch.sh for the
# runtimes and weights, scripts/fetch-cuda.sh for the CUDA 13.0 compiler and libraries).
#
#   scripts/build-gpu.sh [cargo build options]   # -> target/gpu/release/recbench, target/gpu/bundle/
#
# CUDA_COMPUTE_CAP picks the GPU generation candle's kernels are compiled for (there is no GPU
# here to ask): 90 (H100/H200, the default), 89 (L4, L40S), 86 (A10, A10G), 80 (A100).
# target/gpu/bundle/recbench is the stripped binary scripts/gpu-check.sh runs on a GPU host;
# recbench.xz beside it is what travels there (8 MB instead of 61).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${RECBENCH_CACHE:-.cache}"
scripts/fetch.sh
scripts/fetch-cuda.sh
# shellcheck source=scripts/features.sh
source scripts/features.sh

ROOT="$(cd "$CACHE/cuda-13.0/nvidia/cu13" && pwd -P)"
export PATH="$ROOT/bin:$PATH"
export NVCC="$ROOT/bin/nvcc"
export CUDA_HOME="$ROOT"
export CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# candle-kernels links libcudart.so.13; the rpath lets the binary start here too (on a GPU host,
# scripts/gpu-check.sh puts the host's own CUDA libraries first with LD_LIBRARY_PATH).
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-L native=$ROOT/lib -C link-arg=-Wl,-rpath,$ROOT/lib"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/gpu}"
FEATURES="${FEATURES:+$FEATURES,}cuda,nvml"

# candle-core asks cudarc to link the CUDA driver and libraries at build time, so its binary
# cannot even start on a host without an NVIDIA driver. The build uses a copy of candle-core
# whose only change is cudarc's `dynamic-loading` instead (the libraries are opened when a CUDA
# device is first used), so the same binary runs on CPU-only hosts and says why CUDA is not
# there. Cargo.lock is restored afterwards: the patch is this build's, not the repository's.
CANDLE_VERSION=$(grep -A1 '^name = "candle-core"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
CANDLE_SRC=$(cargo metadata --format-version 1 --features cuda | "${PYTHON:-python3}" -c '
import json, sys
meta = json.load(sys.stdin)
print(next(p["manifest_path"] for p in meta["packages"] if p["name"] == "candle-core").rsplit("/", 1)[0])')
mkdir -p "$CACHE/patched"
PATCHED="$(cd "$CACHE/patched" && pwd -P)/candle-core-$CANDLE_VERSION"
if [ ! -f "$PATCHED/.patched" ]; then
  rm -rf "$PATCHED"
  mkdir -p "$(dirname "$PATCHED")"
  cp -r "$CANDLE_SRC" "$PATCHED"
  grep -q '"dynamic-linking",' "$PATCHED/Cargo.toml" || {
    echo "build-gpu: candle-core $CANDLE_VERSION no longer asks cudarc for dynamic-linking; check the patch" >&2
    exit 1
  }
  sed -i 's/"dynamic-linking",/"dynamic-loading",/' "$PATCHED/Cargo.toml"
  touch "$PATCHED/.patched"
fi
mkdir -p "$CARGO_TARGET_DIR"
cp Cargo.lock "$CARGO_TARGET_DIR/Cargo.lock.orig"
trap 'cp "$CARGO_TARGET_DIR/Cargo.lock.orig" Cargo.lock' EXIT

echo "build-gpu: features $FEATURES, compute capability $CUDA_COMPUTE_CAP, nvcc $("$NVCC" --version | sed -n 's/.*, V\([0-9.]*\)$/\1/p')"
cargo build --release --features "$FEATURES" \
  --config "patch.crates-io.candle-core.path=\"$PATCHED\"" "$@"

BIN="$CARGO_TARGET_DIR/release/recbench"
BUNDLE="$CARGO_TARGET_DIR/bundle"
mkdir -p "$BUNDLE"
strip -o "$BUNDLE/recbench" "$BIN"
# What travels to a GPU host (at most 64 MiB with the tree): the stripped binary, xz-compressed;
# scripts/gpu-check.sh unpacks it.
xz -T0 -6 -c "$BUNDLE/recbench" >"$BUNDLE/recbench.xz"
printf 'features=%s\ncompute_cap=%s\ncuda=13.0\n' "$FEATURES" "$CUDA_COMPUTE_CAP" >"$BUNDLE/build-info"
echo "build-gpu: $BIN (stripped: $(du -h "$BUNDLE/recbench" | cut -f1), compressed to carry: $(du -h "$BUNDLE/recbench.xz" | cut -f1), in $BUNDLE)"
