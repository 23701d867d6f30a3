#!/usr/bin/env bash
# recbench torch int8 with its fused layer (the default where onednn_rows runs every linear
# layer) against the same build with RECBENCH_TORCH_INT8_FUSE=0, side by side: odd rounds run
# the fused side first, even rounds second. MiniLM, 128 tokens, the anchors' scenario, 2
# threads. Prints one line per run, then the medians and their ratio per batch, and the
# per-op times of the last round (RECBENCH_TORCH_OPS=1 on every run: a clock read around
# each op, on both sides alike).
#
#   scripts/bench/torch_int8_fused.sh [ROUNDS]      (BATCHES="8 32" by default)
#
# Needs a release build with --features torch (scripts/quickstart.sh makes one).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
BATCHES=${BATCHES:-8 32}
BIN="${RECBENCH:-target/release/recbench}"
export RECBENCH_CACHE="${RECBENCH_CACHE:-$PWD/.cache}" RECBENCH_TORCH_OPS=1
# shellcheck source=minilm_scenario.sh
source scripts/bench/minilm_scenario.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" hardware --json | python3 -c 'import json,sys; h=json.load(sys.stdin); print("host:", h["host"])' || true
grep -m1 'model name' /proc/cpuinfo || true
run() { # side fuse batch round
  local tag="$1-$3-$4"
  minilm_scenario fused torch int8 "$3" 2 1 4 5 20 >"$WORK/$tag.toml"
  RECBENCH_TORCH_INT8_FUSE=$2 "$BIN" run "$WORK/$tag.toml" --quiet --out "$WORK/out-$tag" >/dev/null 2>"$WORK/err" ||
    { cat "$WORK/err" >&2; exit 1; }
  python3 - "$1" "$3" "$4" "$WORK"/out-"$tag"/fused/*.json >>"$WORK/lines" <<'PY'
import json, sys
side, batch, rnd, path = sys.argv[1:5]
r = json.load(open(path))["runs"][0]
lat, q = r["latency"], r.get("quality") or {}
ops = next((n for n in r["notes"] if n.startswith("torch per-op")), "")
print(json.dumps({"side": side, "batch": int(batch), "round": int(rnd),
                  "ms_per_seq": lat["p50_ms"] / int(batch), "top10": q.get("top10_overlap"),
                  "ops": ops}))
PY
  tail -n1 "$WORK/lines" | python3 -c 'import json,sys; l=json.load(sys.stdin); print("round %d batch %2d %-8s %.3f ms/seq  top-10 %s" % (l["round"], l["batch"], l["side"], l["ms_per_seq"], l["top10"]))'
}
for round in $(seq 1 "$ROUNDS"); do
  for b in $BATCHES; do
    if (( round % 2 )); then run fused 1 "$b" "$round"; run unfused 0 "$b" "$round"
    else run unfused 0 "$b" "$round"; run fused 1 "$b" "$round"; fi
  done
done
python3 - "$WORK/lines" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
for b in sorted({l["batch"] for l in lines}):
    med = {s: statistics.median(l["ms_per_seq"] for l in lines if l["batch"] == b and l["side"] == s)
           for s in ("fused", "unfused")}
    print(f"batch {b}: fused {med['fused']:.3f}, unfused {med['unfused']:.3f} ms per sequence "
          f"(medians); unfused / fused = {med['unfused'] / med['fused']:.3f}")
    for s in ("fused", "unfused"):
        last = [l for l in lines if l["batch"] == b and l["side"] == s][-1]
        print(f"  {s}: {last['ops']}")
PY
