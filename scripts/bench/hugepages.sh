#!/usr/bin/env bash
# glibc's huge pages for recbench's worker, off against on, side by side on this host:
# `recbench run` of all-MiniLM-L6-v2, 128 tokens, the given backend and precision, batch 1, 8
# and 32, with RECBENCH_HUGEPAGES=off and =on in turn (off first in odd rounds, on first in even
# ones), ms per sequence (p50 per batch ÷ batch) and the ratio on ÷ off per round, then the
# medians. Every run warms up 1 s and is timed at least 4 s.
#
#   scripts/bench/hugepages.sh [ROUNDS]   # default 3; BACKEND (onnx), PRECISION (fp32),
#                                         # THREADS (2), BATCHES ("1 8 32")
#
# Prints a markdown table headed by this host's CPU model and ISA flags. Needs a release build
# with the backend's feature (scripts/quickstart.sh makes one). Nothing else may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/minilm_scenario.sh
ROUNDS="${1:-3}"
BACKEND="${BACKEND:-onnx}" PRECISION="${PRECISION:-fp32}" THREADS="${THREADS:-2}"
BATCHES="${BATCHES:-1 8 32}"
BIN="${RECBENCH:-target/release/recbench}"
[ -x "$BIN" ] || { echo "hugepages: no $BIN; build with: cargo build --release --features onnx,torch" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" hardware --json >"$WORK/hardware.json"

one() { # SETTING BATCH ROUND → a JSON line
  local setting=$1 b=$2 round=$3 tag="$1-$2-$3"
  minilm_scenario hugepages "$BACKEND" "$PRECISION" "$b" "$THREADS" 1 4 5 20 >"$WORK/$tag.toml"
  RECBENCH_HUGEPAGES=$setting "$BIN" run "$WORK/$tag.toml" --quiet --out "$WORK/out-$tag" >/dev/null 2>&1
  python3 - "$(ls "$WORK/out-$tag"/hugepages/*.json)" "$setting" "$b" "$round" <<'PY'
import json, sys
path, setting, b, round_ = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(path))["runs"][0]
ok = r["status"] == "ok"
print(json.dumps({"setting": setting, "batch": b, "round": round_, "status": r["status"],
    "ms_per_seq": r["latency"]["p50_ms"] / b if ok else None,
    "notes": [n for n in r["notes"] if n.startswith(("huge pages:", "malloc:"))]}))
PY
}

for round in $(seq 1 "$ROUNDS"); do
  for b in $BATCHES; do
    echo "hugepages: round $round/$ROUNDS, batch $b" >&2
    if (( round % 2 )); then one off "$b" "$round"; one on "$b" "$round"; else one on "$b" "$round"; one off "$b" "$round"; fi >>"$WORK/runs.jsonl"
  done
done

python3 - "$WORK/runs.jsonl" "$WORK/hardware.json" "$BACKEND" "$PRECISION" "$THREADS" "$(git rev-parse --short=12 HEAD)" <<'PY'
import collections, json, statistics, sys
runs, hw, backend, precision, threads, commit = sys.argv[1:]
hw = json.load(open(hw))
t = collections.defaultdict(dict)
for l in open(runs):
    r = json.loads(l)
    if r["ms_per_seq"] is None:
        sys.exit(f"hugepages: round {r['round']} batch {r['batch']} {r['setting']}: {r['status']}")
    t[(r["batch"], r["round"])][r["setting"]] = r["ms_per_seq"]
batches = sorted({b for b, _ in t})
sig = f" ({hw['cpu_signature']})" if hw.get("cpu_signature") else ""
print(f"# glibc huge pages for recbench's {backend} {precision} worker on {hw.get('cpu_model')}{sig}\n")
print(f"`scripts/bench/hugepages.sh` at commit {commit}: all-MiniLM-L6-v2, 128 tokens, {threads} threads, "
      f"`RECBENCH_HUGEPAGES=off` and `=on` in turn (off first in odd rounds). Host `{hw['host']}`, "
      f"{hw.get('physical_cores')} physical cores, flags: {' '.join(hw.get('cpu_flags', []))}. "
      f"ms per sequence, off / on, and on ÷ off per round; below 1 means huge pages were faster.\n")
print("| batch | rounds (off / on = ratio) | median ratio |")
print("|---|---|---|")
for b in batches:
    cells, ratios = [], []
    for (bb, rnd) in sorted(t):
        if bb == b:
            off, on = t[(bb, rnd)]["off"], t[(bb, rnd)]["on"]
            ratios.append(on / off)
            cells.append(f"{off:.2f} / {on:.2f} = {on / off:.3f}")
    print(f"| {b} | {'; '.join(cells)} | **{statistics.median(ratios):.3f}** |")
PY
