#!/usr/bin/env bash
# The side-by-side of docs/benchmarks/torch.md, interleaved so that both sides see the same
# background load: ROUNDS × (Python PyTorch eager, recbench torch backend), under OpenMP's
# default wait policy and under OMP_WAIT_POLICY=PASSIVE (what recbench's workers use).
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
    if [ "$policy" = PASSIVE ]; then export OMP_WAIT_POLICY=PASSIVE; else export OMP_WAIT_POLICY=; fi
    py=$("$PY" scripts/bench/torch_eager.py "$W" --batch 32 --seq 128 --threads 2 --repeats 20)
    echo "{\"round\":$round,\"policy\":\"$policy\",\"side\":\"python-eager\",\"result\":$py}"
    target/release/recbench run scenarios/torch-vs-eager.toml --quiet --out "$OUT/$round-$policy" >/dev/null
    jq -c "{round:$round, policy:\"$policy\", side:\"recbench-torch\", status: .runs[0].status,
            median_ms_per_batch: .runs[0].latency.p50_ms, count: .runs[0].latency.count,
            cv: .runs[0].latency.cv}" "$OUT/$round-$policy"/torch-vs-eager/*.json
  done
done
