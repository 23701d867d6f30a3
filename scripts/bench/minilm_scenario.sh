# Sourced by scripts/bench/anchors.sh and hugepages.sh: the scenario both time recbench with.
#
#   minilm_scenario NAME BACKEND PRECISION BATCH THREADS WARMUP_S MIN_S MIN_CALLS MAX_S > FILE
#
# all-MiniLM-L6-v2, two-tower, 128 tokens, one CPU run, offline load (back-to-back batches),
# scoring against 64 catalog items.
minilm_scenario() {
  cat <<EOF2
name = "$1"
[model]
presets = ["minilm-l6"]
[workload]
mode = "two-tower"
batch = $4
seq_len = 128
precision = ["$3"]
[matrix]
backends = ["$2"]
devices = ["cpu"]
threads = $5
[measure]
warmup_s = $6
min_s = $7
min_queries = $8
max_s = $9
load = "offline"
sla_p99_ms = 100000
[recommender]
top_k = 10
catalog_items = 64
EOF2
}
