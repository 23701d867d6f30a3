#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library for the `onnx` backend from the PyPI `onnxruntime`
# wheel (which carries a standalone onnxruntime/capi/libonnxruntime.so.<version>) and extracts
# it into $RECBENCH_CACHE/onnxruntime/ (or .cache/onnxruntime/). recbench finds it there at run
# time (ORT_DYLIB_PATH overrides). Nothing is downloaded at build time, and nothing but the
# package registry is contacted. Safe to run again: it does nothing when the library is there.
# A failed download is an error (exit 1): the set-up promised the backend.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${RECBENCH_CACHE:-.cache}"
VERSION="${RECBENCH_ORT_RUNTIME_VERSION:-1.31.1}"
DEST="$CACHE/onnxruntime"
PY="${PYTHON:-python3}"

if [ -f "$DEST/libonnxruntime.so.$VERSION" ] && [ -f "$DEST/.extracted-$VERSION" ]; then
  echo "fetch: ONNX Runtime $VERSION already in $DEST"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64 | Linux-aarch64) ;;
  *) echo "fetch: no ONNX Runtime wheel handled for $(uname -s)-$(uname -m); set RECBENCH_SKIP_ONNX=1 to go on without the onnx backend" >&2; exit 1 ;;
esac
mkdir -p "$CACHE/wheels" "$DEST"
echo "fetch: downloading onnxruntime $VERSION (about 28 MB) ..."
if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$CACHE/wheels" "onnxruntime==$VERSION"; then
  echo "fetch: could not download onnxruntime $VERSION; set RECBENCH_SKIP_ONNX=1 to go on without the onnx backend" >&2
  exit 1
fi
WHEEL=$(ls "$CACHE"/wheels/onnxruntime-"$VERSION"-*.whl | head -n1)
"$PY" - "$WHEEL" "$DEST" "$VERSION" <<'PY'
import os, sys, zipfile
wheel, dest, version = sys.argv[1], sys.argv[2], sys.argv[3]
name = f"libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    data = z.read(f"onnxruntime/capi/{name}")
tmp = os.path.join(dest, name + ".tmp")
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, os.path.join(dest, name))
link = os.path.join(dest, "libonnxruntime.so")
if os.path.lexists(link):
    os.remove(link)
os.symlink(name, link)
PY
touch "$DEST/.extracted-$VERSION"
rm -f "$WHEEL"  # its library is in $DEST now; the wheel would only hold disk
echo "fetch: ONNX Runtime $VERSION in $DEST"
