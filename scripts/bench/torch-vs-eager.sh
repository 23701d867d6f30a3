#!/usr/bin/env bash
# The side-by-side of docs/benchmarks/torch.md, interleaved so that both sides see the same
# background load: ROUNDS × (Python PyTorch eager, recbench torch backend), under OpenMP's
# default wait policy and under OMP_WAIT_POLICY=PASSIVE (what recbench's workers use).
# recbench runs twice per round: with its default fp32 linear kernel (oneDNN) and with
# RECBENCH_TORCH_LINEAR=aten, the kernel Python eager's F.linear uses.
# Needs: a release build with --features torch, scripts/fetch.sh done, and a Python with the
# same torch 2.11.0 (PYTHON, e.g. a venv with `pip install torch==2.11.0`).
# Prints one JSON line per measurement; docs/benchmarks/torch.md quotes their medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${RECBENCH_CACHE:-.cache}"
PY="${PYTHON:-python3}"
ROUNDS="${ROUNDS:-3}"
W="$CACHE/models/minilm-l6/model.safetensors"
OUT=$(mktemp -d)
for round in $(seq 1 "$ROUNDS"); do
  for policy in default PASSIVE; do
    # "default" leaves OMP_WAIT_POLICY unset (libgomp's default); recbench's workers then set
    # PASSIVE themselves, so recbench runs under PASSIVE in both rows.
    if [ "$policy" = PASSIVE ]; then export OMP_WAIT_POLICY=PASSIVE; else unset OMP_WAIT_POLICY; fi
    py=$("$PY" scripts/bench/torch_eager.py "$W" --batch 32 --seq 128 --threads 2 --repeats 20)
    echo "{\"round\":$round,\"policy\":\"$policy\",\"side\":\"python-eager\",\"result\":$py}"
    # recbench twice: its default fp32 linear kernel (oneDNN) and the one PyTorch eager uses (aten).
    for linear in onednn aten; do
      RECBENCH_TORCH_LINEAR=$linear target/release/recbench run scenarios/torch-vs-eager.toml \
        --quiet --out "$OUT/$round-$policy-$linear" >/dev/null
      jq -c "{round:$round, policy:\"$policy\", side:\"recbench-torch-$linear\", status: .runs[0].status,
              median_ms_per_batch: .runs[0].latency.p50_ms, count: .runs[0].latency.count,
              cv: .runs[0].latency.cv, kernels: .runs[0].notes[0]}" "$OUT/$round-$policy-$linear"/torch-vs-eager/*.json
    done
  done
done
