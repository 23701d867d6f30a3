#!/usr/bin/env bash
# Quality of recbench's onnx int8 graph with each choice of layers quantized per tensor
# (src/model/onnx/export/int8.rs, RECBENCH_ONNX_INT8_PER_TENSOR): `recbench parity` of MiniLM
# int8 on the onnx backend (min and mean probe cosine and top-10 overlap against candle fp32),
# in both graph flavours. No timing: the numbers do not depend on the host's speed.
#
#   scripts/bench/onnx_int8_per_tensor.sh [CHOICE...]   # default: none, each layer alone, all
#
# Needs a release build with --features onnx. Prints one line per choice and flavour, headed by
# this host's CPU (ONNX Runtime's kernels may round differently on other instruction sets).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${RECBENCH:-target/release/recbench}"
[ -x "$BIN" ] || { echo "onnx-int8-per-tensor: no $BIN; build with: cargo build --release --features onnx" >&2; exit 2; }
CHOICES=("$@")
[ ${#CHOICES[@]} -gt 0 ] || CHOICES=(none qkv attn_out inter out qkv,attn_out,inter qkv,attn_out,inter,out)
"$BIN" hardware --json | python3 -c 'import json,sys; h=json.load(sys.stdin); print("#", h["cpu_model"], h["cpu_signature"], "|", " ".join(h["cpu_flags"]))'
echo "# per tensor | flavour | max abs diff | min cosine | mean cosine | top-10 | verdict"
for choice in "${CHOICES[@]}"; do
  for flavour in plain fused; do
    line=$(RECBENCH_ONNX_INT8_PER_TENSOR=$choice RECBENCH_ONNX_FLAVOUR=$flavour \
      "$BIN" parity --quiet --backend onnx scenarios/parity-minilm.toml 2>&1 | grep -E '^minilm-l6 +onnx +cpu +int8' || true)
    read -r _ _ _ _ diff mincos meancos top10 verdict <<<"$line"
    echo "$choice | $flavour | ${diff:-?} | ${mincos:-?} | ${meancos:-?} | ${top10:-?} | ${verdict:-no result}"
  done
done
