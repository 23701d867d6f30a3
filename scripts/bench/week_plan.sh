#!/usr/bin/env bash
# How long `recbench plan --trace` takes on a week of demand at one-second resolution
# (604,800 rows): the trace is written from the same seeded synthetic day `--diurnal 800:100`
# uses, repeated over 7 days, and the plan of the committed server-load results is timed
# ROUNDS times (default 5), end to end (process start to exit). Prints each time, the median,
# and the host's CPU model and ISA flags. Needs a release build (this script builds it).
#
#   scripts/bench/week_plan.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-5}"
cargo build --release --quiet
BIN=target/release/recbench
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
python3 - "$TMP/week.csv" <<'PY'
import math, random, sys
random.seed(7)
with open(sys.argv[1], "w") as f:
    f.write("timestamp,qps\n")
    for t in range(7 * 86400):
        day = (t % 86400) / 86400
        mean = 100 + (800 - 100) * (1 - math.cos(2 * math.pi * day)) / 2
        f.write(f"{t},{max(0.0, random.gauss(mean, math.sqrt(mean))):.3f}\n")
PY
echo "week_plan: $(wc -l < "$TMP/week.csv") lines, $(du -h "$TMP/week.csv" | cut -f1)"
times=()
for r in $(seq 1 "$ROUNDS"); do
  s=$(date +%s.%N)
  "$BIN" plan results/reference/server/*.json --p99-ms 100 --map vm=aws-m7i-large \
    --trace "$TMP/week.csv" > "$TMP/plan.txt"
  e=$(date +%s.%N)
  t=$(python3 -c "print(f'{$e - $s:.3f}')"); times+=("$t"); echo "round $r: $t s"
done
python3 - "${times[@]}" <<'PY'
import statistics, sys, re
ts = [float(x) for x in sys.argv[1:]]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
isa = " ".join(f for f in flags if re.match(r"(avx|fma|amx)", f))
print(f"median {statistics.median(ts):.3f} s over {len(ts)} rounds; host: {cpu}; ISA flags: {isa}")
PY
head -3 "$TMP/plan.txt"
