#!/usr/bin/env bash
# GPU time per kernel of candle's MiniLM fp16 forward at batch 256 (scenarios/gpu-profile.toml),
# under Nsight Compute on a GPU host that has it (/usr/local/cuda/bin/ncu or NCU=path), after
# scripts/gpu-check.sh has put the binary and MiniLM in place (or RECBENCH=path):
#
#   scripts/bench/gpu_profile.sh OUT_DIR    # -> OUT_DIR/ncu.csv and OUT_DIR/kernels.md
#
# 400 kernel launches are timed after the first 400 (loading, the check batches and warm-up),
# which covers a few whole iterations; kernels.md sums them by kernel name.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:?usage: scripts/bench/gpu_profile.sh OUT_DIR}"
mkdir -p "$OUT"
NCU="${NCU:-/usr/local/cuda/bin/ncu}"
BIN="${RECBENCH:-target/gpu/bundle/recbench}"
PY="${PYTHON:-python3}"
# libtorch and the CUDA libraries from the host's Python PyTorch, as gpu-check.sh finds them.
TORCHLIB=$("$PY" -c "import torch, os; print(os.path.dirname(torch.__file__) + '/lib')")
CUDALIB=$("$PY" -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))")/nvidia/cu13/lib
export LD_LIBRARY_PATH="$TORCHLIB:$CUDALIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$NCU" --target-processes all --launch-skip 400 --launch-count 400 \
  --metrics gpu__time_duration.sum --csv \
  "$BIN" run scenarios/gpu-profile.toml --out "$OUT/run" --quiet >"$OUT/ncu.csv" 2>"$OUT/ncu.err"
"$PY" scripts/bench/gpu_profile_table.py "$OUT/ncu.csv" >"$OUT/kernels.md"
cat "$OUT/kernels.md"
