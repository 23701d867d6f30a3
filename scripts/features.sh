# Sourced by the set-up scripts: the Cargo features this machine can build, and the
# environment those features need. Sets FEATURES (comma-separated, may be empty).
FEATURES="${RECBENCH_FEATURES-}"
# onnx: when scripts/fetch-onnxruntime.sh has extracted the runtime library (or ORT_DYLIB_PATH
# names one), unless RECBENCH_FEATURES was given explicitly.
if [ -z "${RECBENCH_FEATURES+x}" ] && { [ -e "${RECBENCH_CACHE:-.cache}/onnxruntime/libonnxruntime.so" ] || [ -n "${ORT_DYLIB_PATH-}" ]; }; then
  FEATURES="${FEATURES:+$FEATURES,}onnx"
fi
# torch: libtorch 2.11.0 extracted by scripts/fetch-libtorch.sh (absolute path: build scripts
# run elsewhere). The binary gets an rpath to it, so running needs no LD_LIBRARY_PATH.
if [ -z "${LIBTORCH-}" ] && [ -f "${RECBENCH_CACHE:-.cache}/libtorch/.complete-2.11.0" ]; then
  LIBTORCH="$(cd "${RECBENCH_CACHE:-.cache}/libtorch/torch" && pwd -P)"
  export LIBTORCH
fi
if [ -z "${RECBENCH_FEATURES+x}" ] && [ -n "${LIBTORCH-}" ]; then
  FEATURES="${FEATURES:+$FEATURES,}torch"
fi
# ann: USearch's HNSW, compiled from its crate's C++ sources, when a C++ compiler is present.
if [ -z "${RECBENCH_FEATURES+x}" ] && command -v "${CXX:-c++}" >/dev/null 2>&1; then
  FEATURES="${FEATURES:+$FEATURES,}ann"
fi
export FEATURES
