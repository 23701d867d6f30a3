#!/usr/bin/env bash
# Regenerates reports/example/ from the committed reference results (results/reference/): the
# quick and server sweeps measured on the machine each file's environment names.
#
# The measuring machine is a 2-vCPU AMD EPYC VM whose CPU model string the hypervisor masks, so
# no catalog entry matches it automatically; it is priced as aws-m7i-large (2 vCPU x86-64 with
# AVX-512) by explicit assertion (--map), which the report states. It is not that instance:
# replace the mapping with your own machine's entry.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${RECBENCH:-target/release/recbench}"
[ -x "$BIN" ] || cargo build --release --locked
rm -rf reports/example
"$BIN" report results/reference/quick/*.json results/reference/server/*.json \
  --out reports/example --map vm=aws-m7i-large
"$BIN" plan results/reference/server/*.json --qps 500 --p99-ms 100 --map vm=aws-m7i-large \
  > reports/example/plan-500qps-p99-100ms.txt
echo "example report in reports/example/"
