#!/usr/bin/env bash
# One recbench configuration under two environments, side by side: odd rounds run side A
# first, even rounds second. MiniLM, 128 tokens, the anchors' scenario
# (scripts/bench/minilm_scenario.sh), 2 threads. Prints one line per run, then per batch the
# medians, their ratio B / A, each round's ratio, and the last round's notes on sub-batches and
# per-op times where the runs have them.
#
#   scripts/bench/env_ab.sh BACKEND PRECISION "A_ENV" "B_ENV" [ROUNDS]
#
# A_ENV and B_ENV are space-separated NAME=value lists, e.g.
#   RECBENCH_TORCH_OPS=1 scripts/bench/env_ab.sh torch int8 "" RECBENCH_TORCH_INT8_FUSE=0 3
#   scripts/bench/env_ab.sh torch int8 "" RECBENCH_SUB_BATCH=off 3
# (the rest of the environment goes to both sides). RECBENCH=path in a side's list runs that
# binary for the side, e.g. an earlier build against this one:
#   scripts/bench/env_ab.sh torch int8 RECBENCH=/tmp/recbench-before "" 3
# BATCHES="8 32" by default.
# Needs a release build with the backend's feature (scripts/quickstart.sh makes one).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 4 ] || { sed -n 2,17p "$0" >&2; exit 2; }
BACKEND=$1 PRECISION=$2 A_ENV=$3 B_ENV=$4 ROUNDS=${5:-3}
BATCHES=${BATCHES:-8 32}
BIN="${RECBENCH:-target/release/recbench}"
export RECBENCH_CACHE="${RECBENCH_CACHE:-$PWD/.cache}"
# shellcheck source=minilm_scenario.sh
source scripts/bench/minilm_scenario.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "side a: ${A_ENV:-(no change)}; side b: ${B_ENV:-(no change)}; $BACKEND $PRECISION, $ROUNDS rounds"
grep -m1 'model name' /proc/cpuinfo || true
echo "flags: $(grep -m1 -o -E 'avx512_vnni|avx512_bf16|amx_int8|amx_bf16|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
run() { # side batch round
  local tag="$1-$2-$3" vars
  [ "$1" = a ] && vars=$A_ENV || vars=$B_ENV
  local bin=$BIN v
  for v in $vars; do [[ $v == RECBENCH=* ]] && bin=${v#RECBENCH=}; done
  minilm_scenario ab "$BACKEND" "$PRECISION" "$2" 2 1 4 5 20 >"$WORK/$tag.toml"
  # shellcheck disable=SC2086
  env $vars "$bin" run "$WORK/$tag.toml" --quiet --out "$WORK/out-$tag" >/dev/null 2>"$WORK/err" ||
    { cat "$WORK/err" >&2; exit 1; }
  python3 - "$1" "$2" "$3" "$WORK"/out-"$tag"/ab/*.json >>"$WORK/lines" <<'PY'
import json, sys
side, batch, rnd, path = sys.argv[1:5]
r = json.load(open(path))["runs"][0]
if r["status"] != "ok":
    sys.exit(f"side {side}, batch {batch}, round {rnd}: {r['status']}: {r.get('reason')}")
q = r.get("quality") or {}
notes = [n for n in r["notes"] if n.startswith(("sub-batches", "torch per-op"))]
print(json.dumps({"side": side, "batch": int(batch), "round": int(rnd),
                  "ms_per_seq": r["latency"]["p50_ms"] / int(batch),
                  "top10": q.get("top10_overlap"), "notes": notes}))
PY
  tail -n1 "$WORK/lines" | python3 -c 'import json,sys; l=json.load(sys.stdin); print("round %d batch %2d side %s %.3f ms/seq  top-10 %s" % (l["round"], l["batch"], l["side"], l["ms_per_seq"], l["top10"]))'
}
for round in $(seq 1 "$ROUNDS"); do
  for b in $BATCHES; do
    if (( round % 2 )); then run a "$b" "$round"; run b "$b" "$round"
    else run b "$b" "$round"; run a "$b" "$round"; fi
  done
done
python3 - "$WORK/lines" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
for b in sorted({l["batch"] for l in lines}):
    at = {s: [l for l in lines if l["batch"] == b and l["side"] == s] for s in "ab"}
    med = {s: statistics.median(l["ms_per_seq"] for l in at[s]) for s in "ab"}
    rounds = [y["ms_per_seq"] / x["ms_per_seq"] for x, y in zip(at["a"], at["b"])]
    print(f"batch {b}: a {med['a']:.3f}, b {med['b']:.3f} ms per sequence (medians); "
          f"b / a = {med['b'] / med['a']:.3f}; per round {', '.join(f'{x:.3f}' for x in rounds)}")
    for s in "ab":
        for n in at[s][-1]["notes"]:
            print(f"  {s}: {n}")
PY
