#!/usr/bin/env bash
# recbench's HNSW beside FAISS's on the same vectors, in interleaved rounds, drawn as
# ann-benchmarks draws it: recall@10 against queries per second, one point per efSearch.
#
#   scripts/bench/ann_anchor.sh [ROUNDS]   # default 3; ITEMS (100000), QUERIES (1000), M (16),
#                                          # EFS ("16,32,64,128,256,512"), THREADS (2), MIN_S (2),
#                                          # BUILD_THREADS (recbench's graph; 1, as its runs build it)
#   scripts/bench/ann_anchor.sh --table FILE.jsonl   # rewrites FILE.md from its measurements
#
# The vectors: a catalog of ITEMS items shaped as recbench's retrieval runs shape it (the demo
# items' MiniLM embeddings as cluster centres) and QUERIES queries around the same centres, with
# their exact top-10 (examples/ann_anchor.rs `export`). Each round builds both indexes (M links,
# efConstruction 128, fp32 vectors, inner product; FAISS's with THREADS threads, recbench's
# with BUILD_THREADS) and times every efSearch on both, searching with THREADS threads; odd rounds run recbench first, even rounds FAISS first. Ratios are of the rounds'
# medians. Needs a release build of the example (this script builds it) and a Python venv at
# $RECBENCH_CACHE/ann-venv with faiss-cpu and numpy from PyPI (created when missing). Writes
# docs/benchmarks/ann-anchor-<host>-<utc>.jsonl (every measurement) and .md (the table, headed
# by this host's CPU model and ISA flags). Run it on a quiet machine: nothing else may run.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${RECBENCH_CACHE:-.cache}"
ROUNDS="${1:-3}"
ITEMS="${ITEMS:-100000}" QUERIES="${QUERIES:-1000}" M="${M:-16}"
EFS="${EFS:-16,32,64,128,256,512}" THREADS="${THREADS:-2}" MIN_S="${MIN_S:-2}"
BUILD_THREADS="${BUILD_THREADS:-1}"
VENV="$CACHE/ann-venv"
table() { # table JSONL: writes JSONL's .md beside it (the table below), from its measurements
python3 - "$1" "${1%.jsonl}.md" "$ITEMS" "$QUERIES" <<'PY'
import json, statistics, sys, re
path, md, items, queries = sys.argv[1:]
rows = [json.loads(l) for l in open(path)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
isa = " ".join(f for f in flags if re.match(r"(avx|fma|f16c|amx|sse4_2)", f))
sides = sorted({r["side"] for r in rows})
rec = next(s for s in sides if s.startswith("recbench"))
fai = next(s for s in sides if s.startswith("FAISS"))
efs = sorted({r["ef"] for r in rows})
rounds = sorted({r["round"] for r in rows})
m, threads = rows[0]["m"], rows[0]["threads"]
build = next((r.get("build_threads") for r in rows if r["side"] == rec and r.get("build_threads")), threads)
med = lambda side, ef, key: statistics.median(r[key] for r in rows if r["side"] == side and r["ef"] == ef)
def at_recall(rnd, recall):
    """recbench's q/s at `recall` in round `rnd`: linear between the two efSearch points around
    it; its lowest ef's q/s where that already reaches it; None where no ef reaches it."""
    pts = sorted((r["ef"], r["recall_at_10"], r["qps"]) for r in rows if r["side"] == rec and r["round"] == rnd)
    if recall <= pts[0][1]:
        return pts[0][2]
    for (_, r0, q0), (_, r1, q1) in zip(pts, pts[1:]):
        if r0 < recall <= r1:
            return q0 + (q1 - q0) * (recall - r0) / (r1 - r0)
    return None
def equal(ef):
    ratios = []
    for rnd in rounds:
        f = next(r for r in rows if r["side"] == fai and r["round"] == rnd and r["ef"] == ef)
        q = at_recall(rnd, f["recall_at_10"])
        ratios.append(None if q is None else f["qps"] / q)
    got = [x for x in ratios if x is not None]
    if len(got) < len(ratios):
        return f"not reached in {len(ratios) - len(got)} of {len(ratios)} rounds" + (f"; {statistics.median(got):.2f} in the others" if got else "")
    return f"{statistics.median(got):.2f}"
out = [f"# recbench HNSW (USearch) beside FAISS HNSW, {int(items):,} items, {int(queries):,} queries",
       "", f"Host: {cpu}; ISA flags: {isa}; {threads} threads searching; graphs built by {threads} threads (FAISS) and {build} (recbench); {len(rounds)} interleaved rounds (medians).",
       f"Vectors: `examples/ann_anchor.rs export` (the demo items' MiniLM embeddings as cluster centres); M = {m}, efConstruction = 128, fp32, inner product.",
       f"Reproduce: `THREADS={threads} BUILD_THREADS={build} scripts/bench/ann_anchor.sh {len(rounds)}`; every measurement: `{path.split('/')[-1]}`; this table: `scripts/bench/ann_anchor.sh --table {path.split('/')[-1]}`.", "",
       "The last column compares at equal recall, as ann-benchmarks does: in each round, FAISS's q/s at that efSearch against recbench's q/s at FAISS's recall (interpolated between recbench's two efSearch points around it), then the median over rounds.", "",
       "| efSearch | recbench recall@10 | recbench q/s | FAISS recall@10 | FAISS q/s | FAISS ÷ recbench q/s, same ef | FAISS ÷ recbench q/s, equal recall |",
       "|---:|---:|---:|---:|---:|---:|---:|"]
for ef in efs:
    rq, fq = med(rec, ef, "qps"), med(fai, ef, "qps")
    out.append(f"| {ef} | {med(rec, ef, 'recall_at_10'):.3f} | {rq:,.0f} | {med(fai, ef, 'recall_at_10'):.3f} | {fq:,.0f} | {fq / rq:.2f} | {equal(ef)} |")
out += ["", f"Build (median of rounds): recbench {statistics.median(r['build_s'] for r in rows if r['side'] == rec):.1f} s, FAISS {statistics.median(r['build_s'] for r in rows if r['side'] == fai):.1f} s."]
kernels = sorted({re.sub(r"[0-9.]+ ms", "… ms", r["search"].split("distances by ")[1].split(",")[0]) for r in rows if "distances by " in r.get("search", "")})
if kernels:
    out += [f"recbench's distance kernel, chosen by measurement at each build: {'; '.join(kernels)}."]
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
}
if [ "${1:-}" = --table ]; then
  f="$2"; [ -f "$f" ] || f="docs/benchmarks/$2"
  table "$f"; exit
fi
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import faiss, numpy" 2>/dev/null; then
  echo "ann-anchor: creating $VENV (faiss-cpu 1.15.1, numpy)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "faiss-cpu==1.15.1" numpy
fi
cargo build --release --quiet --features ann --example ann_anchor
BIN=target/release/examples/ann_anchor
DIR="$CACHE/ann-anchor/items$ITEMS-q$QUERIES"
[ -f "$DIR/meta.json" ] || "$BIN" export "$ITEMS" "$QUERIES" "$DIR"
HOST="$(hostname -s)"; UTC="$(date -u +%Y%m%dT%H%MZ)"
OUT="docs/benchmarks/ann-anchor-$HOST-$UTC"
: > "$OUT.jsonl"
side() { # side NAME ROUND
  if [ "$1" = recbench ]; then "$BIN" bench "$DIR" "$M" "$EFS" "$THREADS" "$MIN_S" "$BUILD_THREADS"
  else OMP_NUM_THREADS="$THREADS" "$VENV/bin/python" scripts/bench/ann_faiss.py "$DIR" "$M" "$EFS" "$THREADS" "$MIN_S"
  fi | while read -r line; do echo "{\"round\": $2, ${line#\{}"; done >> "$OUT.jsonl"
}
for r in $(seq 1 "$ROUNDS"); do
  echo "ann-anchor: round $r of $ROUNDS"
  if [ $((r % 2)) = 1 ]; then side recbench "$r"; side faiss "$r"; else side faiss "$r"; side recbench "$r"; fi
done
table "$OUT.jsonl"
echo "ann-anchor: wrote $OUT.md and $OUT.jsonl"
