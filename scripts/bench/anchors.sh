#!/usr/bin/env bash
# recbench beside what users of the Python runtimes get, on whatever host this runs on:
# all-MiniLM-L6-v2, 128 tokens, batch 1, 8 and 32, the same thread count, interleaved rounds
# (every contender once per round and batch, in turn), time ratios from the medians of the rounds.
# Odd rounds run recbench before its anchor and even rounds after it, so a drift in the machine's
# speed within a round does not favour one side. Both sides time the same window: calls untimed
# for WARMUP_S, then timed until MIN_S and MIN_CALLS are both reached (or MAX_S), the median.
#
#   recbench onnx fp32   vs Python onnxruntime on recbench's own .onnx, and on a Hugging Face export
#   control              Python onnxruntime on recbench's .onnx against itself, run again: the
#                        spread two equal contenders show on this host under this protocol
#   recbench torch fp32  vs PyTorch eager (transformers BertModel, sdpa)
#   recbench torch int8  vs PyTorch quantize_dynamic (x86 engine)
#   recbench candle fp32 vs Python onnxruntime on the Hugging Face export, and vs
#                        candle-transformers' stock BertModel (examples/stock_bert.rs: the BERT a
#                        candle user would pick, same inputs, threads and window)
#   recbench candle int8 (for the record: its ratio to candle fp32)
#   recbench onnx int8   vs Python onnxruntime on recbench's plain fp32 graph after ONNX Runtime's
#                        own quantize_dynamic (QInt8 weights), with its control (the anchor
#                        against itself, run again), and vs Python onnxruntime on recbench's own
#                        int8 graph (is a difference the graph's or recbench's process's?)
#   recbench torch bf16  vs PyTorch eager in bf16 (model.to(bfloat16)); recbench candle bf16 and
#                        onnx bf16 on their own (a backend that does not run bf16 on this host
#                        says why, in the table)
#
# A second table gives, per backend, the speed-up of its int8 and bf16 sides over the best fp32
# side of the same round and batch (the fastest of every fp32 side timed, recbench's and the
# Python anchors'), with the issue's bars: torch int8 ≥ 2.5, candle int8 ≥ 2.0, bf16 > 1.
#
#   scripts/bench/anchors.sh [ROUNDS]     # default 3; THREADS (default 2), BATCHES ("1 8 32"),
#                                         # WARMUP_S, MIN_S, MIN_CALLS, MAX_S (1, 4, 5, 20),
#                                         # ONLY (a subset of "onnx torch int8 candle
#                                         # stock onnx8 bf16"; `stock` alone needs no Python,
#                                         # `onnx8` and `stock` no PyTorch)
#
# ISA=avx2 caps the vector ISA, on both sides alike, of every library that has a cap: ATen's
# own kernels (ATEN_CPU_CAPABILITY), oneDNN (ONEDNN_MAX_CPU_ISA), MKL (MKL_ENABLE_INSTRUCTIONS)
# and FBGEMM (FBGEMM_ENABLE_INSTRUCTIONS). The torch rows then show what an AVX2-only host runs,
# on this host's cores and caches. ONNX Runtime's MLAS, candle, the gemm crate and recbench's
# own int8 row loops (torch_quant.cpp) have no cap and keep this host's widest ISA; the table
# says so.
#
# Needs a release build with --features onnx,torch (scripts/quickstart.sh makes one), and a
# Python venv at $RECBENCH_CACHE/bench-venv with torch 2.11.0, transformers, onnxruntime 1.31.1,
# onnx and numpy (this script creates it when missing, from PyPI). Writes
# docs/benchmarks/anchors-<host>-<utc>.jsonl (every measurement) and .md (the table, headed by
# this host's CPU model and ISA flags). Run it on a quiet machine: nothing else may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/minilm_scenario.sh
CACHE="${RECBENCH_CACHE:-.cache}"
ROUNDS="${1:-3}"
THREADS="${THREADS:-2}"
BATCHES="${BATCHES:-1 8 32}"
BIN="${RECBENCH:-target/release/recbench}"
ONLY="${ONLY:-onnx torch int8 candle stock onnx8 bf16}"
ISA="${ISA:-}"
# The measurement window of every side: recbench's [measure] and the Python anchors' alike.
WARMUP_S=${WARMUP_S:-1} MIN_S=${MIN_S:-4} MIN_CALLS=${MIN_CALLS:-5} MAX_S=${MAX_S:-20}
WINDOW="$WARMUP_S,$MIN_S,$MIN_CALLS,$MAX_S"
case "$ISA" in
  "") ;;
  avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 ;;
  *) echo "anchors: ISA=$ISA: only avx2 is known" >&2; exit 2 ;;
esac
want() { [[ " $ONLY " == *" $1 "* ]]; }
VENV="$CACHE/bench-venv"
PY="$VENV/bin/python"
MODEL="$CACHE/models/minilm-l6"

[ -x "$BIN" ] || { echo "anchors: no $BIN; build with: cargo build --release --features onnx,torch" >&2; exit 2; }
STOCK=target/release/examples/stock_bert
if want stock; then cargo build --release --locked -q --example stock_bert; fi
# PyTorch is needed by the torch sides and by the Hugging Face export (onnx, candle).
if want onnx || want torch || want int8 || want candle || want bf16; then
  if ! "$PY" -c 'import torch, transformers, onnxruntime, onnx' 2>/dev/null; then
    echo "anchors: creating $VENV (torch 2.11.0, transformers, onnxruntime 1.31.1, onnx, numpy)"
    python3 -m venv "$VENV"
    "$PY" -m pip install --quiet torch==2.11.0 transformers onnxruntime==1.31.1 onnx numpy
  fi
elif want onnx8 && ! "$PY" -c 'import onnxruntime, onnx' 2>/dev/null; then
  echo "anchors: creating $VENV (onnxruntime 1.31.1, onnx, numpy)"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet onnxruntime==1.31.1 onnx numpy
fi
UTC=$(date -u +%Y%m%dT%H%MZ)
HOST=$("$BIN" hardware --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["host"])')
STEM="docs/benchmarks/anchors-$HOST${ISA:+-$ISA}-$UTC"
JSONL="$STEM.jsonl"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN" hardware --json >"$WORK/hardware.json"

HF_ONNX="$CACHE/onnx/hf-minilm-l6.onnx"
if want onnx || want candle; then
  [ -f "$HF_ONNX" ] || "$PY" scripts/bench/anchors.py export "$MODEL" "$HF_ONNX" >/dev/null
fi

# One recbench run: backend, precision, batch → its results file.
recbench_run() {
  local backend=$1 precision=$2 batch=$3 tag=$4
  minilm_scenario anchor "$backend" "$precision" "$batch" "$THREADS" "$WARMUP_S" "$MIN_S" "$MIN_CALLS" "$MAX_S" >"$WORK/$tag.toml"
  rm -rf "$WORK/out-$tag"
  "$BIN" run "$WORK/$tag.toml" --quiet --out "$WORK/out-$tag" >/dev/null
  ls "$WORK/out-$tag"/anchor/*.json
}

# A recbench measurement as one JSON line (ms per sequence = p50 per batch / batch).
recbench_line() {
  local round=$1 batch=$2 side=$3 file=$4
  python3 - "$round" "$batch" "$side" "$file" <<'PY'
import json, sys
round_, batch, side, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.load(open(path))["runs"][0]
lat = r.get("latency") or {}
print(json.dumps({"round": int(round_), "batch": batch, "side": side, "status": r["status"],
    "ms_per_seq": lat["p50_ms"] / batch if r["status"] == "ok" else None,
    "samples": lat.get("count"), "cv": lat.get("cv"),
    "top10_vs_fp32": (r.get("quality") or {}).get("top10_overlap"),
    "parity": (r.get("parity") or {}).get("passed"),
    "kernels": [n for n in r.get("notes", []) if n.startswith(("kernels:", "openmp:", "huge pages:", "isa cap:", "sub-batches:"))],
    "reason": r.get("reason")}))
PY
}

python_line() {
  local round=$1 batch=$2 side=$3 json=$4
  python3 - "$round" "$batch" "$side" "$json" <<'PY'
import json, sys
round_, batch, side, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
print(json.dumps({"round": int(round_), "batch": batch, "side": side, "status": "ok",
    "ms_per_seq": raw["median_ms_per_batch"] / batch, "samples": len(raw["samples_ms"]),
    "runtime": raw["runtime"]}))
PY
}

# One side of a pair, for the current $round and $b.
recbench_side() { # BACKEND PRECISION SIDE TAG
  recbench_line "$round" "$b" "$3" "$(recbench_run "$1" "$2" "$b" "$4-$round-$b")" >>"$JSONL"
}
python_side() { # MODE PATH SIDE
  python_line "$round" "$b" "$3" "$("$PY" scripts/bench/anchors.py "$1" "$2" "$b" 128 "$THREADS" "$WINDOW")" >>"$JSONL"
}
# recbench's onnx run, and the graph it chose, for Python onnxruntime on the very same file.
declare -A GRAPH
onnx_recbench() {
  local f graph
  f=$(recbench_run onnx fp32 "$b" "onnx-$round-$b")
  recbench_line "$round" "$b" recbench-onnx-fp32 "$f" >>"$JSONL"
  graph=$(python3 -c 'import json,re,sys; n=[x for x in json.load(open(sys.argv[1]))["runs"][0]["notes"] if x.startswith("kernels:")][0]; print(re.search(r"graph (\S+)", n).group(1))' "$f")
  if [ -n "${GRAPH[$b]:-}" ] && [ "${GRAPH[$b]}" != "$graph" ]; then
    echo "anchors: warning: round $round, batch $b: recbench ran $graph, the round before ${GRAPH[$b]} (an even round's Python onnxruntime, which runs first, timed the earlier file)" >&2
  fi
  GRAPH[$b]=$graph
}
graph_file() { ls "$CACHE"/onnx/*/"${GRAPH[$b]}" "$CACHE"/onnx/"${GRAPH[$b]}" 2>/dev/null | head -n1; }
onnx_python() { python_side ort "$(graph_file)" python-ort-recbench-graph; }
# The control: Python onnxruntime on the same file once more, a contender equal to the anchor by
# construction. Its ratio to the anchor is the spread two equal sides show on this host.
onnx_python_again() { python_side ort "$(graph_file)" python-ort-recbench-graph-again; }
# Runs recbench's side ($1) and its anchor ($2): recbench first in odd rounds, second in even.
pair() {
  if (( round % 2 )); then "$1"; "$2"; else "$2"; "$1"; fi
}
candle_fp32() { recbench_side candle fp32 recbench-candle-fp32 candle; }
# recbench's candle fp32 once more, beside the stock BERT: the pair runs back to back.
candle_fp32_again() { recbench_side candle fp32 recbench-candle-fp32-again candle; }
ort_hf() { python_side ort "$HF_ONNX" python-ort-hf-export; }
stock_candle() {
  python_line "$round" "$b" candle-transformers-fp32 \
    "$(RAYON_NUM_THREADS="$THREADS" "$STOCK" "$MODEL" "$b" 128 "$WINDOW")" >>"$JSONL"
}
torch_fp32() { recbench_side torch fp32 recbench-torch-fp32 torch; }
eager_fp32() { python_side eager "$MODEL" python-torch-eager-fp32; }
torch_int8() { recbench_side torch int8 recbench-torch-int8 torch8; }
dynamic_int8() { python_side int8 "$MODEL" python-torch-dynamic-int8; }
# recbench's onnx int8 run, and the graph it chose, for Python onnxruntime on the very same file.
onnx_int8() {
  local f
  f=$(recbench_run onnx int8 "$b" "onnx8-$round-$b")
  recbench_line "$round" "$b" recbench-onnx-int8 "$f" >>"$JSONL"
  GRAPH8[$b]=$(python3 -c 'import json,re,sys; n=[x for x in json.load(open(sys.argv[1]))["runs"][0]["notes"] if x.startswith("kernels:")][0]; print(re.search(r"graph (\S+)", n).group(1))' "$f")
}
declare -A GRAPH8
# Python onnxruntime on recbench's own int8 graph: whether a difference lies in the graph or in
# recbench's process. Runs after recbench's side, whose graph it needs.
ort_recbench_int8() {
  python_side ort "$(ls "$CACHE"/onnx/*/"${GRAPH8[$b]}" "$CACHE"/onnx/"${GRAPH8[$b]}" 2>/dev/null | head -n1)" python-ort-recbench-int8-graph
}
ort_int8() { python_side ort-int8 "$FP32_GRAPH" python-ort-dynamic-int8; }
ort_int8_again() { python_side ort-int8 "$FP32_GRAPH" python-ort-dynamic-int8-again; }
torch_bf16() { recbench_side torch bf16 recbench-torch-bf16 torch16; }
eager_bf16() { python_side eager-bf16 "$MODEL" python-torch-eager-bf16; }
# ONNX Runtime's quantizer starts from recbench's plain fp32 graph (standard ops, as an export
# has): one untimed recbench run with that flavour exports it (or finds it in the cache), and the
# newest such file is this exporter's.
if want onnx8; then
  RECBENCH_ONNX_FLAVOUR=plain recbench_run onnx fp32 1 export >/dev/null
  FP32_GRAPH=$(ls -t "$CACHE"/onnx/minilm-l6-plain-fp32-*.onnx | grep -v -- -ort- | head -n1)
fi

for round in $(seq 1 "$ROUNDS"); do
  for b in $BATCHES; do
    echo "anchors: round $round/$ROUNDS, batch $b" >&2
    if want onnx; then
      # Python's side needs the graph recbench chose: round 1 runs recbench first. recbench and
      # the control each run before the anchor in one parity of rounds and after it in the other.
      if (( round % 2 )); then onnx_recbench; onnx_python; onnx_python_again
      else onnx_python_again; onnx_python; onnx_recbench; fi
    fi
    if want candle; then
      pair candle_fp32 ort_hf
      recbench_side candle int8 recbench-candle-int8 candle8
    elif want onnx; then
      ort_hf
    fi
    if want stock; then pair candle_fp32_again stock_candle; fi
    if want torch; then pair torch_fp32 eager_fp32; fi
    if want int8; then pair torch_int8 dynamic_int8; fi
    if want onnx8; then
      # recbench and the control each run before the anchor in one parity of rounds.
      if (( round % 2 )); then onnx_int8; ort_int8; ort_int8_again
      else ort_int8_again; ort_int8; onnx_int8; fi
      ort_recbench_int8
    fi
    if want bf16; then
      pair torch_bf16 eager_bf16
      recbench_side candle bf16 recbench-candle-bf16 candle16
      recbench_side onnx bf16 recbench-onnx-bf16 onnx16
    fi
  done
done

python3 - "$JSONL" "$WORK/hardware.json" "$THREADS" "$STEM.md" "$(git rev-parse --short=12 HEAD)" "$ISA" "$WINDOW" <<'PY'
import collections, json, statistics, sys
jsonl, hw_path, threads, md, commit, isa, window = sys.argv[1:]
window = window.split(",")
hw = json.load(open(hw_path))
rows = [json.loads(l) for l in open(jsonl)]
by = collections.defaultdict(dict)  # (round, batch) -> side -> ms/seq
for r in rows:
    if r["ms_per_seq"] is not None:
        by[(r["round"], r["batch"])][r["side"]] = r["ms_per_seq"]
pairs = [
    ("onnx fp32 ÷ Python ORT, same graph", "recbench-onnx-fp32", "python-ort-recbench-graph", "≤ 1.0"),
    ("control: Python ORT ÷ itself, same graph, run again", "python-ort-recbench-graph-again", "python-ort-recbench-graph", ""),
    ("onnx fp32 ÷ Python ORT, HF export", "recbench-onnx-fp32", "python-ort-hf-export", ""),
    ("torch fp32 ÷ PyTorch eager", "recbench-torch-fp32", "python-torch-eager-fp32", "≤ 1.0"),
    ("torch int8 ÷ PyTorch dynamic int8", "recbench-torch-int8", "python-torch-dynamic-int8", "≤ 1.0"),
    ("torch bf16 ÷ PyTorch eager bf16", "recbench-torch-bf16", "python-torch-eager-bf16", "≤ 1.0"),
    ("candle fp32 ÷ Python ORT, HF export", "recbench-candle-fp32", "python-ort-hf-export", "≤ 1.5"),
    ("candle fp32 ÷ candle-transformers fp32", "recbench-candle-fp32-again", "candle-transformers-fp32", "≤ 1.0"),
    ("candle int8 ÷ candle fp32", "recbench-candle-int8", "recbench-candle-fp32", ""),
    ("onnx int8 ÷ Python ORT quantize_dynamic int8, same fp32 graph", "recbench-onnx-int8", "python-ort-dynamic-int8", "≤ control"),
    ("control: Python ORT dynamic int8 ÷ itself, run again", "python-ort-dynamic-int8-again", "python-ort-dynamic-int8", ""),
    ("onnx int8 ÷ onnx fp32", "recbench-onnx-int8", "recbench-onnx-fp32", ""),
    ("onnx int8 ÷ Python ORT, same int8 graph", "recbench-onnx-int8", "python-ort-recbench-int8-graph", ""),
    ("Python ORT on recbench's int8 graph ÷ Python ORT quantize_dynamic int8", "python-ort-recbench-int8-graph", "python-ort-dynamic-int8", ""),
]
batches = sorted({b for (_, b) in by})
out = []
sig = f" ({hw['cpu_signature']})" if hw.get("cpu_signature") else ""
out.append(f"# recbench beside the Python runtimes on {hw.get('cpu_model') or 'unknown CPU'}{sig}\n")
out.append(f"Measured by `scripts/bench/anchors.sh` at commit {commit}: all-MiniLM-L6-v2, 128 tokens, "
           f"{threads} threads, {max(r['round'] for r in rows)} interleaved rounds (recbench before its anchor in odd rounds, "
           f"after it in even ones; every side warmed up for {window[0]} s, then timed for at least {window[1]} s "
           f"and {window[2]} calls). Host `{hw['host']}`, "
           f"{hw.get('physical_cores')} physical cores, flags: {' '.join(hw.get('cpu_flags', []))}. "
           f"Each cell is the median over rounds of (recbench's time ÷ the anchor's time) per sequence, "
           f"with the per-round ratios in brackets; below 1 means recbench is faster. "
           f"The control row times Python onnxruntime against itself on the same file (run again, "
           f"before the anchor in even rounds and after it in odd ones): the spread of two equal sides. "
           f"Raw measurements: `{jsonl.split('/')[-1]}`.\n")
if isa:
    out.append(f"**ISA capped at {isa.upper()}** on both sides for ATen's kernels, oneDNN, MKL and FBGEMM "
               f"(ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, FBGEMM_ENABLE_INSTRUCTIONS): "
               f"the torch fp32 row is what an {isa.upper()}-only host runs, on this host's cores and caches. "
               f"ONNX Runtime's MLAS, candle, the gemm crate and recbench's own int8 row loops have no cap "
               f"and ran this host's widest ISA, so the other rows do not stand for such a host.\n")
out.append("| ratio | bar | " + " | ".join(f"batch {b}" for b in batches) + " |")
out.append("|---|---|" + "---|" * len(batches))
for name, a, b_, bar in pairs:
    cells = []
    for b in batches:
        ratios = [by[(r, b)][a] / by[(r, b)][b_] for (r, bb) in sorted(by) if bb == b and a in by[(r, b)] and b_ in by[(r, b)]]
        cells.append(f"**{statistics.median(ratios):.2f}** ({', '.join(f'{x:.2f}' for x in ratios)})" if ratios else "–")
    out.append(f"| {name} | {bar} | " + " | ".join(cells) + " |")
out.append("\nms per sequence, median over rounds:\n")
sides = sorted({r["side"] for r in rows})
out.append("| side | " + " | ".join(f"batch {b}" for b in batches) + " |")
out.append("|---|" + "---|" * len(batches))
for s in sides:
    cells = []
    for b in batches:
        v = [by[(r, b)][s] for (r, bb) in sorted(by) if bb == b and s in by[(r, b)]]
        cells.append(f"{statistics.median(v):.2f}" if v else "–")
    out.append(f"| {s} | " + " | ".join(cells) + " |")
# Speed-up of each low-precision side over the best fp32 side of its round and batch.
fp32_sides = [s for s in sides if "int8" not in s and "bf16" not in s]
low = [s for s in sides if s.startswith("recbench-") and ("int8" in s or "bf16" in s)]
bars = {"recbench-torch-int8": "≥ 2.5", "recbench-candle-int8": "≥ 2.0"}
if low and fp32_sides:
    out.append("\nSpeed-up over the best fp32 side (its time ÷ this side's, per round; the best fp32 side "
               "is the fastest of " + ", ".join(fp32_sides) + " in the same round and batch, named below "
               "with how many rounds it was the best). Above 1 means faster than every fp32 side:\n")
    flags = set(hw.get("cpu_flags", []))
    has = lambda *f: [x for x in f if x in flags]
    vnni, bf16, amx = has("avx512_vnni", "avx_vnni"), has("avx512_bf16"), has("amx_int8", "amx_bf16")
    out.append("This host's instructions for low precision: int8 dot products "
               + (", ".join(vnni) if vnni else "none (no AVX-512 VNNI or AVX-VNNI: the int8 rows ran without them)")
               + "; bf16 dot products " + (", ".join(bf16) if bf16 else "none (no AVX-512 BF16: the bf16 rows ran without it)")
               + "; AMX " + (", ".join(amx) if amx else "none") + ".\n")
    out.append("| side | bar | " + " | ".join(f"batch {b}" for b in batches) + " |")
    out.append("|---|---|" + "---|" * len(batches))
    for s in low:
        cells = []
        for b in batches:
            ups, best_by = [], collections.Counter()
            for (r, bb) in sorted(by):
                here = by[(r, bb)]
                fp32 = {f: here[f] for f in fp32_sides if f in here}
                if bb != b or s not in here or not fp32:
                    continue
                best = min(fp32, key=fp32.get)
                best_by[best] += 1
                ups.append(fp32[best] / here[s])
            if ups:
                named = ", ".join(f"{f} ×{n}" for f, n in best_by.most_common())
                cells.append(f"**{statistics.median(ups):.2f}** ({', '.join(f'{x:.2f}' for x in ups)}; best fp32: {named})")
            else:
                why = [r for r in rows if r["side"] == s and r["batch"] == b and r["ms_per_seq"] is None]
                cells.append(f"– ({why[0]['status']}: {why[0].get('reason')})" if why else "–")
        bar = bars.get(s, "> 1" if "bf16" in s else "")
        out.append(f"| {s} | {bar} | " + " | ".join(cells) + " |")
failed = [r for r in rows if r["ms_per_seq"] is None]
if failed:
    out.append("\nRuns without a time: " + "; ".join(f"round {r['round']} batch {r['batch']} {r['side']}: {r['status']} ({r.get('reason')})" for r in failed))
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "anchors: $JSONL and $STEM.md" >&2
