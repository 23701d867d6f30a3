#!/usr/bin/env bash
# The README's second command (and CI's): fetch what the tests need, then formatting, lints and
# the whole test suite, first in the default build (no native library), then with every
# optional backend the set-up provides. It fails when a backend the set-up was meant to provide
# is missing (RECBENCH_SKIP_ONNX=1 / RECBENCH_SKIP_LIBTORCH=1 say not to expect one), and every
# test step prints how many tests ran and which were skipped, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch.sh
source scripts/features.sh
# One build of each kind, so incremental state (1.4 GB in the debug build) would only hold disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The offline Kubernetes schema check of deploy/k8s/ (tests/deploy.rs).
PYLIB="${RECBENCH_CACHE:-.cache}/pylib"
if ! [ -d "$PYLIB/kubernetes_validate" ]; then
  echo "test: installing kubernetes-validate 1.37.0 into $PYLIB (schemas for the manifest check)"
  "${PYTHON:-python3}" -m pip install --quiet --target "$PYLIB" "kubernetes-validate==1.37.0"
fi
if ! [ -x /usr/bin/chromium ]; then
  echo "test: installing Debian's chromium (the report is checked in a real headless browser)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q chromium >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi

# The backends this set-up was meant to provide, unless told otherwise.
if [ -z "${RECBENCH_FEATURES+x}" ]; then
  for b in onnx torch; do
    skip_var="RECBENCH_SKIP_$([ "$b" = onnx ] && echo ONNX || echo LIBTORCH)"
    if [ -z "${!skip_var-}" ] && [[ ",$FEATURES," != *",$b,"* ]]; then
      echo "test: FAILED: the $b backend was meant to be set up but is missing (scripts/fetch.sh did not provide its runtime); set $skip_var=1 to test without it" >&2
      exit 1
    fi
  done
fi
echo "test: backends under test: candle${FEATURES:+,$FEATURES}"

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
# Runs a cargo test command, then says how many tests passed and which were skipped, and why.
tests() {
  local name="$1"; shift
  echo "test: $name"
  if ! "$@" 2>&1 | tee "$LOG"; then
    echo "test: FAILED: $name" >&2
    exit 1
  fi
  local passed ignored
  passed=$(awk '/^test result: ok/ { for (i = 1; i <= NF; i++) if ($i == "passed;") s += $(i - 1) } END { print s + 0 }' "$LOG")
  ignored=$(grep -cE '^test .* \.\.\. ignored' "$LOG" || true)
  echo "test: $name: ${passed:-0} passed, $ignored skipped"
  grep -E '^test .* \.\.\. ignored' "$LOG" | sed -E 's/^test (.*) \.\.\. ignored,? ?(.*)/test:   skipped \1: \2/' || true
}

echo "test: rustfmt"
cargo fmt --check
echo "test: clippy (default build)"
cargo clippy --locked --all-targets -- -D warnings
tests "cargo test (default build: candle only, no native library)" cargo test --locked
tests "injected faults (crash, abort, out of memory, hang, NaN)" cargo test --locked --features fault-injection --test faults
tests "criterion benches, once each (cargo test --benches)" cargo test --locked --benches
if [ -n "$FEATURES" ]; then
  echo "test: clippy --features $FEATURES"
  cargo clippy --locked --all-targets --features "$FEATURES" -- -D warnings
  tests "cargo test --features $FEATURES" cargo test --locked --features "$FEATURES"
fi
# The CUDA build (every backend plus cuda and nvml, nvcc from PyPI), and what it says on this
# host, which has no NVIDIA driver: RECBENCH_SKIP_CUDA_BUILD=1 leaves it out (it is a second
# release build).
if [ -n "${RECBENCH_SKIP_CUDA_BUILD-}" ] || [[ ",$FEATURES," != *",onnx,"* ]] || [[ ",$FEATURES," != *",torch,"* ]]; then
  echo "test: skipped the CUDA build and its tests (RECBENCH_SKIP_CUDA_BUILD is set, or onnx or torch is not set up)"
else
  echo "test: the CUDA build (scripts/build-gpu.sh)"
  scripts/build-gpu.sh --quiet
  tests "the CUDA build on this host (tests/cuda_build.rs --ignored)" \
    env RECBENCH_CUDA_BIN="$PWD/target/gpu/bundle/recbench" cargo test --locked --test cuda_build -- --ignored
fi
echo "test: all passed"
