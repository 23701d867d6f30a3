#!/usr/bin/env bash
# Regenerates reports/example/ from one CPU sweep on this machine at this commit, the GPU
# results committed under results/reference/gpu/ (measured on a GPU host by scripts/gpu-check.sh,
# at their own commit: the report lists each machine with its build) and the retrieval sweep in
# results/reference/retrieval/ (scenarios/retrieval.toml, its own commit and host).
#
#   scripts/example-report.sh           # run scenarios/quick, server and levers here (about
#                                       # 30 min on 2 vCPUs), then the report
#   scripts/example-report.sh --reuse   # the report from the sweep already in
#                                       # results/reference/example/
#
# The measuring machine so far is a 2-vCPU AMD EPYC VM whose CPU model string the hypervisor
# masks, so no catalog entry matches it automatically; it is priced as aws-m7i-large (2 vCPU
# x86-64 with AVX-512) by explicit assertion (--map), which the report states. It is not that
# instance: replace the mapping with your own machine's entry.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${RECBENCH-}" ]; then
  scripts/fetch.sh
  # shellcheck source=scripts/features.sh
  source scripts/features.sh
  cargo build --release --locked ${FEATURES:+--features "$FEATURES"}
fi
BIN="${RECBENCH:-target/release/recbench}"
EXAMPLE=results/reference/example
if [ "${1-}" != "--reuse" ]; then
  if ! git diff --quiet HEAD -- src Cargo.toml Cargo.lock build.rs 2>/dev/null; then
    echo "example-report: the source differs from its commit: the results will name a -dirty build" >&2
  fi
  rm -rf "$EXAMPLE"
  for s in quick server levers; do
    "$BIN" run "scenarios/$s.toml" --out "$EXAMPLE"
  done
fi
rm -rf reports/example
# Judged at the question the report answers: 500 requests/s at p99 <= 100 ms, recommending
# nearly what the full model does (top-10 overlap >= 0.9: int8 passes, the pruned models of
# scenarios/levers.toml do not; the cost-quality section shows what they would save).
# A GPU is priced by its catalog entry automatically. The section "Over a day" follows a seeded
# synthetic day peaking near 800 requests/s (bursts above it), as `plan --diurnal 800:100` does.
shopt -s nullglob
FILES=("$EXAMPLE"/*/*.json results/reference/gpu/gpu-*/*.json results/reference/retrieval/*.json)
"$BIN" report "${FILES[@]}" --out reports/example --map vm=aws-m7i-large --qps 500 --p99-ms 100 \
  --min-quality 0.9 --diurnal 800:100
"$BIN" plan "${FILES[@]}" --qps 500 --p99-ms 100 --min-quality 0.9 --map vm=aws-m7i-large \
  >reports/example/plan-500qps-p99-100ms.txt
"$BIN" plan "${FILES[@]}" --diurnal 800:100 --p99-ms 100 --min-quality 0.9 --map vm=aws-m7i-large \
  >reports/example/plan-diurnal-800-100-p99-100ms.txt
# What a reader sees first: the top of the page in headless Chromium (Debian's package), at
# the example's budget and at two stricter ones (those reports are not kept, only their tops).
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ]; then
  shot() { # PAGE PNG
    local profile
    profile=$(mktemp -d)
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
      --disable-background-networking --user-data-dir="$profile" --hide-scrollbars \
      --window-size=1280,1400 --screenshot="$PWD/$2" "file://$1" 2>/dev/null
    rm -rf "$profile"
    echo "screenshot of the top of the page in $2"
  }
  shot "$PWD/reports/example/index.html" docs/report-example-top.png
  STRICT=$(mktemp -d)
  for ms in 50 20; do
    "$BIN" report "${FILES[@]}" --out "$STRICT/p99-$ms" --map vm=aws-m7i-large --qps 500 \
      --p99-ms "$ms" --min-quality 0.9 >/dev/null
    shot "$STRICT/p99-$ms/index.html" "docs/report-example-top-p99-${ms}ms.png"
  done
  rm -rf "$STRICT"
  # The Retrieval and Over-a-day sections alone (the page's head and that section).
  SECTION=$(mktemp -d)
  for id in retrieval day; do
    python3 - reports/example/index.html "$SECTION/$id.html" "$id" <<'PY'
import sys
page, out, id = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
start = page.find(f'<h2 id="{id}">')
if start < 0:
    sys.exit(f"example-report: the report has no section {id}")
end = page.find("<h2", start + 4)
open(out, "w").write(page[:page.find("<body")] + "<body>" + page[start:end] + "</body></html>")
PY
    shot "$SECTION/$id.html" "docs/report-example-$id.png"
  done
  rm -rf "$SECTION"
fi
echo "example report in reports/example/"
