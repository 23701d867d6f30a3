#!/usr/bin/env bash
# The README's second command (and CI's): fetch what the tests need, then formatting, lints and
# the whole test suite, first in the default build (no native library), then with every
# optional backend this machine has set up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch.sh
source scripts/features.sh
if ! [ -x /usr/bin/chromium ]; then
  echo "test: installing Debian's chromium (the report is checked in a real headless browser)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q chromium >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi
echo "test: rustfmt"
cargo fmt --check
echo "test: clippy (default build)"
cargo clippy --locked --all-targets -- -D warnings
echo "test: cargo test (default build: candle only, no native library)"
cargo test --locked
echo "test: injected faults (crash, abort, out of memory, hang, NaN)"
cargo test --locked --features fault-injection --test faults
echo "test: criterion benches, once each (cargo test --benches)"
cargo test --locked --benches
if [ -n "$FEATURES" ]; then
  echo "test: clippy + cargo test --features $FEATURES"
  cargo clippy --locked --all-targets --features "$FEATURES" -- -D warnings
  cargo test --locked --features "$FEATURES"
fi
echo "test: all passed"
