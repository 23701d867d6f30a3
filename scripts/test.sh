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
# The report is checked in a real headless browser (tests/report.rs). Without one the suite
# stops and says how to get it, unless RECBENCH_SKIP_BROWSER=1 says to go on without that check
# (the summary at the end says it was skipped).
BROWSER_SKIPPED=""
if ! [ -x /usr/bin/chromium ] && ! [ -x /usr/bin/chromium-browser ]; then
  if [ -n "${RECBENCH_SKIP_BROWSER-}" ]; then
    BROWSER_SKIPPED=1
    echo "test: no Chromium and RECBENCH_SKIP_BROWSER is set: the report's browser check will be skipped"
  else
    echo "test: installing Debian's chromium (the report is checked in a real headless browser)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    if [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
      echo "test: FAILED: Chromium is missing and installing it needs root. Run" >&2
      echo "test:   sudo apt-get update && sudo apt-get install -y chromium" >&2
      echo "test: then this command again, or set RECBENCH_SKIP_BROWSER=1 to test without the browser check" >&2
      exit 1
    fi
    $SUDO apt-get install -y -q chromium >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; } || {
      echo "test: FAILED: could not install Chromium. Run: ${SUDO:+sudo }apt-get update && ${SUDO:+sudo }apt-get install -y chromium" >&2
      echo "test: or set RECBENCH_SKIP_BROWSER=1 to test without the report's browser check" >&2
      exit 1
    }
  fi
fi
export RECBENCH_SKIP_BROWSER="${BROWSER_SKIPPED}"

# The backends this set-up was meant to provide, unless told otherwise.
# RECBENCH_FEATURES set but empty builds no optional backend at all: that must be said, not
# slip through the missing-backend check below.
if [ -n "${RECBENCH_FEATURES+x}" ] && [ -z "$RECBENCH_FEATURES" ] && [ -z "${RECBENCH_SKIP_BACKENDS-}" ]; then
  echo "test: FAILED: RECBENCH_FEATURES is set but empty, so neither onnx nor torch would be tested; unset it, name the features, or set RECBENCH_SKIP_BACKENDS=1 to test candle alone" >&2
  exit 1
fi
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

# The tests run in an environment of their own: the user's recbench settings, thread knobs,
# ISA caps and glibc tunables are not passed on (each would change what the tests measure), and
# the cache is a fresh one for this run: the set-up's inputs (runtimes, weights, ONNX exports)
# linked from the real cache, with empty kernel decisions, embeddings and references, so no test
# reads what an earlier run or another recbench left there. Each test binary then starts its
# own empty kernel decisions on top (tests/common: isolate).
SCRUBBED=""
for v in $(compgen -e); do
  case "$v" in
    RECBENCH_CACHE|RECBENCH_SKIP_*|RECBENCH_FEATURES|RECBENCH_CUDA_BIN) ;;
    RECBENCH_*|OMP_*|GOMP_*|KMP_*|MKL_*|ONEDNN_*|DNNL_*|FBGEMM_*|ATEN_CPU_CAPABILITY|GLIBC_TUNABLES|RAYON_NUM_THREADS)
      SCRUBBED="$SCRUBBED $v"; unset "$v" ;;
  esac
done
[ -z "$SCRUBBED" ] || echo "test: not passed on to the tests:$SCRUBBED"
REAL_CACHE="$(realpath "${RECBENCH_CACHE:-.cache}")"
TEST_CACHE="$(mktemp -d -t recbench-test-cache.XXXXXX)"
for e in "$REAL_CACHE"/*; do
  [ -e "$e" ] || continue
  case "$(basename "$e")" in
    kernels|embeddings|reference) ;;
    *) ln -s "$e" "$TEST_CACHE/" ;;
  esac
done
export RECBENCH_CACHE="$TEST_CACHE"
echo "test: cache for this run: $TEST_CACHE (inputs linked from $REAL_CACHE; decisions, embeddings and references fresh)"

LOG="$(mktemp)"
trap 'rm -f "$LOG"; rm -rf "$TEST_CACHE"' EXIT
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

# The test files a build compiles out (`#![cfg(feature = "…")]` at their top), each named as
# skipped with the feature it needs.
compiled_out() {
  local features=",$1,"
  for f in tests/*.rs; do
    local need
    need=$(sed -n 's/^#!\[cfg(feature = "\(.*\)")\]$/\1/p' "$f" | head -n1)
    if [ -n "$need" ] && [[ "$features" != *",$need,"* ]]; then
      echo "test:   skipped $f: compiled out (needs --features $need)"
    fi
  done
}

echo "test: rustfmt"
cargo fmt --check
echo "test: clippy (default build)"
cargo clippy --locked --all-targets -- -D warnings
tests "cargo test (default build: candle only, no native library)" cargo test --locked
compiled_out ""
tests "injected faults (crash, abort, out of memory, hang, NaN)" cargo test --locked --features fault-injection --test faults
tests "criterion benches, once each (cargo test --benches)" cargo test --locked --benches
if [ -n "$FEATURES" ]; then
  echo "test: clippy --features $FEATURES"
  cargo clippy --locked --all-targets --features "$FEATURES" -- -D warnings
  tests "cargo test --features $FEATURES" cargo test --locked --features "$FEATURES"
  compiled_out "$FEATURES"
fi
# The CUDA build (every backend plus cuda and nvml, nvcc from PyPI), and what it says on this
# host, which has no NVIDIA driver: RECBENCH_SKIP_CUDA_BUILD=1 leaves it out (it is a second
# release build).
if [ -n "${RECBENCH_SKIP_CUDA_BUILD-}" ] || [[ ",$FEATURES," != *",onnx,"* ]] || [[ ",$FEATURES," != *",torch,"* ]]; then
  echo "test: skipped the CUDA build and its tests (RECBENCH_SKIP_CUDA_BUILD is set, or onnx or torch is not set up)"
else
  echo "test: the CUDA build (scripts/build-gpu.sh)"
  # Built from the real cache: its paths are baked into the binary (rpaths), and the tests'
  # cache is gone after this run.
  RECBENCH_CACHE="$REAL_CACHE" scripts/build-gpu.sh --quiet
  tests "the CUDA build on this host (tests/cuda_build.rs --ignored)" \
    env RECBENCH_CUDA_BIN="$PWD/target/gpu/bundle/recbench" cargo test --locked --test cuda_build -- --ignored
fi
if [ -n "$BROWSER_SKIPPED" ]; then
  echo "test: all passed, except the report's browser check, skipped (RECBENCH_SKIP_BROWSER=1, no Chromium)"
else
  echo "test: all passed"
fi
