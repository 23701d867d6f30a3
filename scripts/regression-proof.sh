#!/usr/bin/env bash
# Measures, on this machine, how often `recbench compare` cries wolf and how often it catches a
# real slowdown, and writes the figures to docs/benchmarks/regression-gate-<host>.md.
#
#   A/A:      N+1 sweeps of scenarios/regression.toml with the same build; each consecutive
#             pair is one A/A comparison (N of them). Any exit 1 is a false positive.
#   slowdown: N sweeps of the same scenario with seq_len 64 -> 80 (25% more tokens, ~27% more
#             encoder FLOPs: a real, measured slowdown of the same work), relabelled to the
#             baseline's run ids as a code change that slows the benchmark would be; each is
#             compared with one A sweep. Exit 1 is a detection.
# Usage: scripts/regression-proof.sh [N=20] [THRESHOLD_PCT=10]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
THR="${2:-10}"
scripts/fetch.sh >/dev/null
cargo build --release --locked -q
BIN=target/release/recbench
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
sed 's/^seq_len = 64/seq_len = 80/' scenarios/regression.toml > "$WORK/slow.toml"
grep -q '^seq_len = 80' "$WORK/slow.toml"

echo "proof: $((N + 1)) A sweeps and $N slowed sweeps; this takes a while" >&2
for i in $(seq 0 "$N"); do
  "$BIN" run scenarios/regression.toml --out "$WORK/a" --quiet >/dev/null
  if [ "$i" -lt "$N" ]; then "$BIN" run "$WORK/slow.toml" --out "$WORK/b" --quiet >/dev/null; fi
  echo "proof: round $i done" >&2
done
mapfile -t A < <(ls "$WORK"/a/regression/*.json | sort)
mapfile -t B < <(ls "$WORK"/b/regression/*.json | sort)
# Relabel the slowed runs with the baseline's ids (s80 -> s64).
for f in "${B[@]}"; do
  python3 - "$f" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for r in d["runs"]:
    r["spec"]["id"] = r["spec"]["id"].replace("/s80/", "/s64/")
    r["spec"]["seq_len"] = 64
json.dump(d, open(p, "w"))
PY
done
fp=0; det=0
for i in $(seq 0 $((N - 1))); do
  if ! "$BIN" compare "${A[$i]}" "${A[$((i + 1))]}" --max-regression "$THR" >/dev/null; then fp=$((fp + 1)); fi
  if ! "$BIN" compare "${A[$i]}" "${B[$i]}" --max-regression "$THR" >/dev/null; then det=$((det + 1)); fi
done
# The measured size of the slowdown: median over pairs of candidate/baseline mean iteration time.
SLOW=$(python3 - "${A[@]:0:$N}" -- "${B[@]}" <<'PY'
import json, sys, statistics
args = sys.argv[1:]; k = args.index("--"); a, b = args[:k], args[k + 1:]
def means(p):
    return {r["spec"]["id"]: statistics.mean(r["samples_ms"]) for r in json.load(open(p))["runs"] if r["status"] == "ok"}
ratios = {}
for pa, pb in zip(a, b):
    ma, mb = means(pa), means(pb)
    for i in ma:
        ratios.setdefault(i, []).append(mb[i] / ma[i])
print("; ".join(f"{i}: x{statistics.median(v):.3f}" for i, v in sorted(ratios.items())))
PY
)
HOST=$("$BIN" hardware --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"])')
mkdir -p docs/benchmarks
OUTF="docs/benchmarks/regression-gate-$HOST.md"
{
  echo "# Regression gate: false positives and detection, measured"
  echo
  echo "Produced by \`scripts/regression-proof.sh $N $THR\` on $(date -u +%Y-%m-%d) with recbench $("$BIN" --version | cut -d' ' -f2-)."
  echo
  echo "Machine (\`recbench hardware\`):"
  echo
  echo '```'
  "$BIN" hardware
  echo '```'
  echo
  echo "| check | comparisons | gate failed | rate | target |"
  echo "|---|---:|---:|---:|---|"
  echo "| A/A (same build, consecutive sweeps) | $N | $fp | $(python3 -c "print(f'{$fp/$N:.0%}')") | <= 5% false positives |"
  echo "| real slowdown (seq_len 64 -> 80) | $N | $det | $(python3 -c "print(f'{$det/$N:.0%}')") | >= 95% detected |"
  echo
  echo "Threshold: --max-regression $THR (a regression needs the one-sided 95% bootstrap bound of the slowdown above it)."
  echo "Measured size of the injected slowdown (median candidate/baseline mean iteration time): $SLOW."
} > "$OUTF"
cat "$OUTF"
