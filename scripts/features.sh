# Sourced by the set-up scripts: the Cargo features this machine can build, and the
# environment those features need. Sets FEATURES (comma-separated, may be empty).
FEATURES="${RECBENCH_FEATURES-}"
export FEATURES
