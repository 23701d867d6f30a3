#!/usr/bin/env bash
# The README's first command: fetch what recbench needs from the package registries, build it,
# show the machine and the compiled backends, run scenarios/quick.toml and print its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch.sh
source scripts/features.sh
echo "quickstart: building recbench (release${FEATURES:+, features $FEATURES}) ..."
cargo build --release --locked ${FEATURES:+--features "$FEATURES"}
BIN=target/release/recbench
"$BIN" hardware
echo
"$BIN" backends
echo
"$BIN" run scenarios/quick.toml
