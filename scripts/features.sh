# Sourced by the set-up scripts: the Cargo features this machine can build, and the
# environment those features need. Sets FEATURES (comma-separated, may be empty).
FEATURES="${RECBENCH_FEATURES-}"
# torch: libtorch 2.11.0 extracted by scripts/fetch-libtorch.sh (absolute path: build scripts
# run elsewhere). The binary gets an rpath to it, so running needs no LD_LIBRARY_PATH.
if [ -z "${LIBTORCH-}" ] && [ -f "${RECBENCH_CACHE:-.cache}/libtorch/.complete-2.11.0" ]; then
  LIBTORCH="$(cd "${RECBENCH_CACHE:-.cache}/libtorch/torch" && pwd)"
  export LIBTORCH
fi
if [ -z "${RECBENCH_FEATURES+x}" ] && [ -n "${LIBTORCH-}" ]; then
  FEATURES="${FEATURES:+$FEATURES,}torch"
fi
export FEATURES
