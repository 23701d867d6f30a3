#!/usr/bin/env bash
# Two forms of recbench's onnx int8 graph side by side (src/model/onnx/export.rs,
# RECBENCH_ONNX_INT8_FORM): `quantizelinear` (each linear layer's input rows quantized by one
# QuantizeLinear) and `divide` (Div, Round, Add and Cast, the form before it). Both
# give the same bytes; the question is only speed. MiniLM, 128 tokens, THREADS (2) threads,
# BATCHES ("8 32"), in ROUNDS interleaved rounds; each round and batch runs `divide`,
# `quantizelinear` and `divide` again (the control: the same side twice), in reverse order in
# even rounds. Ratios are of ms per sequence (p50 per batch ÷ batch), medians over rounds.
#
#   scripts/bench/onnx_int8_forms.sh [ROUNDS]   # default 3
#
# Needs a release build with --features onnx. Writes docs/benchmarks/onnx-int8-forms-<host>-<utc>
# .jsonl (every run) and .md (the table, headed by this host's CPU model and ISA flags). Run it on
# a quiet machine: nothing else may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/minilm_scenario.sh
ROUNDS="${1:-3}" THREADS="${THREADS:-2}" BATCHES="${BATCHES:-8 32}"
BIN="${RECBENCH:-target/release/recbench}"
[ -x "$BIN" ] || { echo "onnx-int8-forms: no $BIN; build with: cargo build --release --features onnx" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" hardware --json >"$WORK/hardware.json"
HOST=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["host"])' "$WORK/hardware.json")
STEM="docs/benchmarks/onnx-int8-forms-$HOST-$(date -u +%Y%m%dT%H%MZ)"
: >"$STEM.jsonl"
side() { # FORM SIDE
  minilm_scenario forms onnx int8 "$b" "$THREADS" 1 4 5 20 >"$WORK/s.toml"
  rm -rf "$WORK/out"
  RECBENCH_ONNX_INT8_FORM=$1 "$BIN" run "$WORK/s.toml" --quiet --out "$WORK/out" >/dev/null
  python3 - "$WORK/out" "$round" "$b" "$2" >>"$STEM.jsonl" <<'PY'
import glob, json, sys
out, round_, batch, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = json.load(open(glob.glob(out + "/forms/*.json")[0]))["runs"][0]
ms = r["latency"]["p50_ms"] / batch if r["status"] == "ok" else None
print(json.dumps({"round": round_, "batch": batch, "side": side, "status": r["status"], "ms_per_seq": ms}))
PY
}
for round in $(seq 1 "$ROUNDS"); do
  for b in $BATCHES; do
    echo "onnx-int8-forms: round $round/$ROUNDS, batch $b" >&2
    if (( round % 2 )); then side divide divide; side quantizelinear quantizelinear; side divide divide-again
    else side divide divide-again; side quantizelinear quantizelinear; side divide divide; fi
  done
done
python3 - "$STEM.jsonl" "$WORK/hardware.json" "$STEM.md" "$(git rev-parse --short=12 HEAD)" "$THREADS" <<'PY'
import collections, json, statistics, sys
path, hw_path, md, commit, threads = sys.argv[1:]
hw = json.load(open(hw_path))
rows = [json.loads(l) for l in open(path)]
by = collections.defaultdict(dict)
for r in rows:
    if r["ms_per_seq"] is not None:
        by[(r["round"], r["batch"])][r["side"]] = r["ms_per_seq"]
batches = sorted({b for (_, b) in by})
out = [f"# recbench's onnx int8 graph: QuantizeLinear against Div/Round/Add/Cast, on {hw.get('cpu_model') or 'unknown CPU'}",
       "", f"`scripts/bench/onnx_int8_forms.sh` at commit {commit}: all-MiniLM-L6-v2, 128 tokens, {threads} threads, "
       f"{max(r['round'] for r in rows)} interleaved rounds. Host `{hw['host']}`, flags: {' '.join(hw.get('cpu_flags', []))}. "
       "Each cell: the median over rounds of the ratio of ms per sequence, per-round ratios in brackets. "
       "The control times the divide form against itself (run again): the spread two equal sides show here.", "",
       "| ratio | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
for name, a, b_ in [("quantizelinear ÷ divide", "quantizelinear", "divide"),
                    ("control: divide ÷ divide, run again", "divide-again", "divide")]:
    cells = []
    for b in batches:
        x = [by[k][a] / by[k][b_] for k in sorted(by) if k[1] == b and a in by[k] and b_ in by[k]]
        cells.append(f"**{statistics.median(x):.2f}** ({', '.join(f'{v:.2f}' for v in x)})" if x else "–")
    out.append(f"| {name} | " + " | ".join(cells) + " |")
out += ["", "ms per sequence, median over rounds:", "", "| side | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]
for s in ["divide", "quantizelinear", "divide-again"]:
    cells = []
    for b in batches:
        v = [by[k][s] for k in sorted(by) if k[1] == b and s in by[k]]
        cells.append(f"{statistics.median(v):.2f}" if v else "–")
    out.append(f"| {s} | " + " | ".join(cells) + " |")
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "onnx-int8-forms: $STEM.jsonl and $STEM.md" >&2
