#!/usr/bin/env bash
# Measures, on this machine, how often `recbench compare` cries wolf and how often it catches a
# real slowdown, and writes the figures to docs/benchmarks/regression-gate-<host>.md.
#
# Two builds of this working tree:
#   base: as it is;
#   slow: the same source with one real code regression patched in: every token batch is padded
#         with 25% extra masked positions (TokenBatch::from_sequences). Embeddings, parity and
#         run ids are unchanged (the padding is masked), the encoder does ~25% more work: a
#         regression only a performance gate can see.
# Two ways of gating, both as .github/workflows/perf-gate.yml runs them:
#   interleaved (pull requests): `run --interleave BASELINE_BIN --rounds R`, baseline and candidate
#         runs alternating on one machine; N A/A comparisons (base vs a copy of base) and N
#         detections (slow vs base).
#   stored baseline (pushes): separate sweeps, compared with an earlier one; N+1 base sweeps and N
#         slow sweeps alternating, each consecutive pair of base sweeps is one A/A comparison,
#         each slow sweep is compared with the base sweep before it.
# Usage: scripts/regression-proof.sh [N=20] [THRESHOLD_PCT=10] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
THR="${2:-10}"
ROUNDS="${3:-2}"
START=$(date +%s)
scripts/fetch.sh >/dev/null
cargo build --release --locked -q
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
BASE="$WORK/base"
# --remove-destination: target/release/recbench is a hard link into target/release/deps.
cp --remove-destination target/release/recbench "$BASE"
cp "$BASE" "$WORK/base-copy"

# The slow build: the tracked files of this working tree, patched, built into the same target
# directory (only recbench itself recompiles), then the base binary is put back.
mkdir "$WORK/slow-src"
git ls-files -z | xargs -0 cp --parents -t "$WORK/slow-src"
sed -i 's/^\(\s*\)let seq_len = seqs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);/&\n\1let seq_len = seq_len + seq_len \/ 4; \/\/ regression-proof: padding regression/' \
  "$WORK/slow-src/src/model/inputs.rs"
grep -q 'regression-proof: padding regression' "$WORK/slow-src/src/model/inputs.rs" || {
  echo "regression-proof: the padding patch no longer applies to src/model/inputs.rs" >&2
  exit 1
}
CARGO_TARGET_DIR="$PWD/target" cargo build --release --locked -q --manifest-path "$WORK/slow-src/Cargo.toml"
SLOW="$WORK/slow"
cp --remove-destination target/release/recbench "$SLOW"
cp --remove-destination "$BASE" target/release/recbench

gate() { # baseline candidate -> 1 when the gate fails
  if "$BASE" compare "$1" "$2" --max-regression "$THR" >/dev/null; then echo 0; else
    rc=$?
    [ "$rc" -eq 1 ] || { echo "regression-proof: compare exited $rc on $1 $2" >&2; exit 1; }
    echo 1
  fi
}
one() { ls "$1"/regression/*"$2" | head -n1; }

echo "proof: interleaved, $N A/A and $N slowed comparisons of $ROUNDS round(s) each" >&2
fp_i=0; det_i=0
for i in $(seq 1 "$N"); do
  "$BASE" run scenarios/regression.toml --interleave "$WORK/base-copy" --rounds "$ROUNDS" \
    --out "$WORK/aa/$i" --quiet >/dev/null
  "$SLOW" run scenarios/regression.toml --interleave "$BASE" --rounds "$ROUNDS" \
    --out "$WORK/ab/$i" --quiet >/dev/null
  fp_i=$((fp_i + $(gate "$(one "$WORK/aa/$i" -baseline.json)" "$(one "$WORK/aa/$i" -candidate.json)")))
  det_i=$((det_i + $(gate "$(one "$WORK/ab/$i" -baseline.json)" "$(one "$WORK/ab/$i" -candidate.json)")))
  echo "proof: interleaved $i/$N: false positives $fp_i, detected $det_i" >&2
done

echo "proof: stored baseline, $((N + 1)) base and $N slowed sweeps" >&2
for i in $(seq 0 "$N"); do
  "$BASE" run scenarios/regression.toml --out "$WORK/sa/$i" --quiet >/dev/null
  if [ "$i" -lt "$N" ]; then "$SLOW" run scenarios/regression.toml --out "$WORK/sb/$i" --quiet >/dev/null; fi
done
fp_s=0; det_s=0
for i in $(seq 0 $((N - 1))); do
  fp_s=$((fp_s + $(gate "$(one "$WORK/sa/$i" .json)" "$(one "$WORK/sa/$((i + 1))" .json)")))
  det_s=$((det_s + $(gate "$(one "$WORK/sa/$i" .json)" "$(one "$WORK/sb/$i" .json)")))
done

# The size of the injected slowdown, from the interleaved pairs: per run, the median over the N
# comparisons of candidate/baseline mean iteration time.
SLOWDOWN=$(python3 - "$WORK/ab" <<'PY'
import glob, json, statistics, sys
ratios = {}
for d in sorted(glob.glob(sys.argv[1] + "/*/regression")):
    side = lambda s: {r["spec"]["id"]: statistics.mean(r["samples_ms"])
                      for r in json.load(open(glob.glob(f"{d}/*-{s}.json")[0]))["runs"] if r["status"] == "ok"}
    a, b = side("baseline"), side("candidate")
    for k in a.keys() & b.keys():
        ratios.setdefault(k, []).append(b[k] / a[k])
print("; ".join(f"{k}: x{statistics.median(v):.3f} (range {min(v):.3f}-{max(v):.3f})" for k, v in sorted(ratios.items())))
PY
)
pct() { python3 -c "print(f'{$1/$2:.0%}')"; }
HOST=$("$BASE" hardware --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"])')
mkdir -p docs/benchmarks
OUTF="docs/benchmarks/regression-gate-$HOST.md"
{
  echo "# Regression gate: false positives and detection, measured"
  echo
  echo "Produced by \`scripts/regression-proof.sh $N $THR $ROUNDS\` on $(date -u +%Y-%m-%d) with recbench $("$BASE" --version | cut -d' ' -f2-),"
  echo "from $(date -u -d "@$START" +%H:%M) to $(date -u +%H:%M) UTC. Scenario: \`scenarios/regression.toml\`."
  echo
  echo "Machine (\`recbench hardware\`):"
  echo
  echo '```'
  "$BASE" hardware
  echo '```'
  echo
  echo "| gate | check | comparisons | gate failed | rate | target |"
  echo "|---|---|---:|---:|---:|---|"
  echo "| interleaved, $ROUNDS round(s) (\`run --interleave\`) | A/A (base vs a copy of base) | $N | $fp_i | $(pct $fp_i "$N") | <= 5% false positives |"
  echo "| interleaved, $ROUNDS round(s) (\`run --interleave\`) | padding regression (slow vs base) | $N | $det_i | $(pct $det_i "$N") | >= 95% detected |"
  echo "| stored baseline (separate sweeps) | A/A (consecutive base sweeps) | $N | $fp_s | $(pct $fp_s "$N") | <= 5% false positives |"
  echo "| stored baseline (separate sweeps) | padding regression (slow sweep vs the base sweep before it) | $N | $det_s | $(pct $det_s "$N") | >= 95% detected |"
  echo
  echo "Threshold: \`--max-regression $THR\` (a regression needs the one-sided 95% bootstrap bound of the slowdown above it)."
  echo "The gate fails when any metric of any run regresses."
  echo
  echo "Measured size of the injected slowdown (per run, median over the interleaved comparisons of candidate/baseline mean iteration time): $SLOWDOWN."
} > "$OUTF"
cat "$OUTF"
