#!/usr/bin/env bash
# Measures, on this machine, how often `recbench compare` cries wolf and how often it catches a
# real slowdown, and writes the figures to docs/benchmarks/regression-gate-<host>.md.
#
# Three builds of this working tree:
#   base: as it is;
#   slow: the same source with one real code regression patched in: every token batch is padded
#         with 25% extra masked positions (TokenBatch::from_sequences). Embeddings, parity and
#         run ids are unchanged (the padding is masked), the encoder does ~25% more work: a
#         regression only a performance gate can see (about x1.2 measured);
#   slow8: the same with 1/12 more positions (64 -> 69 tokens), a regression of about 8%.
# Gating, as .github/workflows/perf-gate.yml runs it:
#   interleaved (pull requests): `run --interleave BASELINE_BIN --rounds R`, baseline and
#         candidate runs alternating on one machine, compare's intervals resampling the rounds
#         in pairs. N A/A comparisons (base vs a copy of base) judged at 10% and 3%, N padding
#         detections at 10%, N 8% detections at 3% with `--rounds auto`.
#   stored baseline (pushes): K=5 base sweeps stored in a folder, then N further base sweeps
#         (A/A) and N padding sweeps, each compared with the folder (`compare FOLDER FILE`).
# For every A/A comparison it also counts the metrics whose 90% interval (the two one-sided
# 95% bounds) excludes 1.0: honest intervals exclude it about 10% of the time.
# Usage: scripts/regression-proof.sh [N=20] [ROUNDS=3] [BUDGET_S=120] (the committed table:
# 20 3 120, about 70 minutes on 2 vCPUs; two rounds cannot pin a ×1.2 change at 10%)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
ROUNDS="${2:-3}"
BUDGET="${3:-120}"
START=$(date +%s)
scripts/fetch.sh >/dev/null
# The patched builds are compiled from a copy of the tree elsewhere, so the cache they would
# find next to their sources is not the set-up's: every binary gets this one.
export RECBENCH_CACHE="$(realpath "${RECBENCH_CACHE:-.cache}")"
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
# The 8% build: the same patch with a twelfth instead of a quarter.
sed -i 's|let seq_len = seq_len + seq_len / 4; // regression-proof: padding regression|let seq_len = seq_len + seq_len.div_ceil(12); // regression-proof: padding regression|' \
  "$WORK/slow-src/src/model/inputs.rs"
grep -q 'seq_len.div_ceil(12); // regression-proof' "$WORK/slow-src/src/model/inputs.rs" || {
  echo "regression-proof: the 8% patch did not apply" >&2
  exit 1
}
CARGO_TARGET_DIR="$PWD/target" cargo build --release --locked -q --manifest-path "$WORK/slow-src/Cargo.toml"
SLOW8="$WORK/slow8"
cp --remove-destination target/release/recbench "$SLOW8"
cp --remove-destination "$BASE" target/release/recbench

# compare BASELINE CANDIDATE THRESHOLD [extra…] -> "FAILED EXCLUDED METRICS": 1 when the gate
# fails, and how many interval metrics there were and how many of their 90% intervals exclude 1.
gate() {
  local a="$1" b="$2" thr="$3" out rc=0
  out=$("$BASE" compare "$a" "$b" --max-regression "$thr" --json) || rc=$?
  [ "$rc" -le 1 ] || { echo "regression-proof: compare exited $rc on $a $b" >&2; exit 1; }
  python3 -c '
import json, sys
v = json.load(sys.stdin)
ci = [m["ci"] for r in v["runs"] for m in r["metrics"] if m.get("ci")]
print(v["exit_code"], sum(1 for lo, hi in ci if lo > 1 or hi < 1), len(ci))' <<<"$out"
}
one() { ls "$1"/regression/*"$2" | head -n1; }
add() { # TOTALS_VAR "F E M" -> adds the three columns
  local -n t=$1; read -r f e m <<<"$2"; t=($((t[0] + f)) $((t[1] + e)) $((t[2] + m)))
}

aa10=(0 0 0); aa3=(0 0 0); pad=(0 0 0); p8=(0 0 0)
echo "proof: interleaved, $N times: A/A and padding with $ROUNDS rounds, 8% with --rounds auto" >&2
for i in $(seq 1 "$N"); do
  "$BASE" run scenarios/regression.toml --interleave "$WORK/base-copy" --rounds "$ROUNDS" \
    --out "$WORK/aa/$i" --quiet >/dev/null
  "$SLOW" run scenarios/regression.toml --interleave "$BASE" --rounds "$ROUNDS" \
    --out "$WORK/ab/$i" --quiet >/dev/null
  "$SLOW8" run scenarios/regression.toml --interleave "$BASE" --rounds auto --max-regression 3 \
    --budget-s "$BUDGET" --out "$WORK/a8/$i" --quiet >/dev/null
  A="$(one "$WORK/aa/$i" -baseline.json)"; B="$(one "$WORK/aa/$i" -candidate.json)"
  add aa10 "$(gate "$A" "$B" 10)"
  add aa3 "$(gate "$A" "$B" 3)"
  add pad "$(gate "$(one "$WORK/ab/$i" -baseline.json)" "$(one "$WORK/ab/$i" -candidate.json)" 10)"
  add p8 "$(gate "$(one "$WORK/a8/$i" -baseline.json)" "$(one "$WORK/a8/$i" -candidate.json)" 3)"
  echo "proof: interleaved $i/$N: A/A false alarms ${aa10[0]} at 10%, ${aa3[0]} at 3%; padding caught ${pad[0]}; 8% caught ${p8[0]}" >&2
done
ROUNDS8=$(python3 - "$WORK/a8" <<'PY'
import glob, json, re, statistics, sys
n = [len(r.get("rounds", [])) for f in glob.glob(sys.argv[1] + "/*/regression/*-candidate.json")
     for r in json.load(open(f))["runs"] if r["status"] == "ok"]
print(f"median {statistics.median(n):.0f}, range {min(n)}-{max(n)}" if n else "none")
PY
)

echo "proof: stored baseline, 5 stored sweeps, then $N A/A and $N padding sweeps" >&2
mkdir -p "$WORK/stored"
for k in 1 2 3 4 5; do
  "$BASE" run scenarios/regression.toml --out "$WORK/st/$k" --quiet >/dev/null
  cp "$(one "$WORK/st/$k" .json)" "$WORK/stored/$k.json"
done
sa=(0 0 0); sb=(0 0 0)
for i in $(seq 1 "$N"); do
  "$BASE" run scenarios/regression.toml --out "$WORK/sa/$i" --quiet >/dev/null
  "$SLOW" run scenarios/regression.toml --out "$WORK/sb/$i" --quiet >/dev/null
  add sa "$(gate "$WORK/stored" "$(one "$WORK/sa/$i" .json)" 10)"
  add sb "$(gate "$WORK/stored" "$(one "$WORK/sb/$i" .json)" 10)"
  echo "proof: stored $i/$N: A/A false alarms ${sa[0]}, padding caught ${sb[0]}" >&2
done

# The size of the injected slowdowns, from the interleaved pairs: per run, the median over the
# N comparisons of candidate/baseline mean iteration time.
size() {
  python3 - "$1" <<'PY'
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
}
pct() { python3 -c "print(f'{$1/max($2,1):.0%}')"; }
HOST=$("$BASE" hardware --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"])')
mkdir -p docs/benchmarks
OUTF="docs/benchmarks/regression-gate-$HOST.md"
{
  echo "# Regression gate: false alarms, interval coverage and detection, measured"
  echo
  echo "Produced by \`scripts/regression-proof.sh $N $ROUNDS $BUDGET\` on $(date -u +%Y-%m-%d) with recbench $("$BASE" --version | cut -d' ' -f2-),"
  echo "from $(date -u -d "@$START" +%H:%M) to $(date -u +%H:%M) UTC. Scenario: \`scenarios/regression.toml\`."
  echo
  echo "Machine (\`recbench hardware\`):"
  echo
  echo '```'
  "$BASE" hardware
  echo '```'
  echo
  echo "| gate | check | threshold | comparisons | gate failed | 90% intervals excluding 1.0 | target |"
  echo "|---|---|---:|---:|---:|---:|---|"
  echo "| interleaved, $ROUNDS rounds | A/A (base vs a copy of base) | 10% | $N | ${aa10[0]} | ${aa10[1]}/${aa10[2]} ($(pct "${aa10[1]}" "${aa10[2]}")) | <= 1 false alarm; about 10% of intervals |"
  echo "| interleaved, $ROUNDS rounds | A/A (base vs a copy of base) | 3% | $N | ${aa3[0]} | ${aa3[1]}/${aa3[2]} ($(pct "${aa3[1]}" "${aa3[2]}")) | <= 1 false alarm; <= 20% of intervals |"
  echo "| interleaved, $ROUNDS rounds | padding regression (slow vs base) | 10% | $N | ${pad[0]} | | >= 19 caught |"
  echo "| interleaved, --rounds auto (rounds used: $ROUNDS8) | 8% regression (slow8 vs base) | 3% | $N | ${p8[0]} | | >= 15 caught |"
  echo "| stored baseline, folder of 5 sweeps | A/A (a further base sweep) | 10% | $N | ${sa[0]} | ${sa[1]}/${sa[2]} ($(pct "${sa[1]}" "${sa[2]}")) | <= 1 false alarm |"
  echo "| stored baseline, folder of 5 sweeps | padding regression (a slow sweep) | 10% | $N | ${sb[0]} | | >= 19 caught |"
  echo
  echo "A regression needs the one-sided 95% bound of the slowdown beyond the threshold; the gate fails when any metric of any run regresses (an inconclusive one does not fail it)."
  echo
  echo "Measured size of the injected slowdowns (per run, median over the interleaved comparisons of candidate/baseline mean iteration time): padding $(size "$WORK/ab"); 8% patch $(size "$WORK/a8")."
} > "$OUTF"
cat "$OUTF"
