# Sourced by the set-up scripts: the Cargo features this machine can build, and the
# environment those features need. Sets FEATURES (comma-separated, may be empty).
FEATURES="${RECBENCH_FEATURES-}"
# onnx: when scripts/fetch-onnxruntime.sh has extracted the runtime library (or ORT_DYLIB_PATH
# names one), unless RECBENCH_FEATURES was given explicitly.
if [ -z "${RECBENCH_FEATURES+x}" ] && { [ -e "${RECBENCH_CACHE:-.cache}/onnxruntime/libonnxruntime.so" ] || [ -n "${ORT_DYLIB_PATH-}" ]; }; then
  FEATURES="${FEATURES:+$FEATURES,}onnx"
fi
export FEATURES
