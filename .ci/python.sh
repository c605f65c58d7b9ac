#!/usr/bin/env bash
# The Python package (python/), as its README section installs it: a fresh virtual environment,
# `pip install maturin pytest numpy safetensors`, `pip install ./python` (maturin builds the
# bindings into the repository's shared target/, so the engine built by the steps before is
# reused), then pytest over python/tests. Exits non-zero when any of it fails; CI=true makes a
# GPU test without an adapter fail. Called by .ci/run; runs alone too: bash .ci/python.sh
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
venv="$(mktemp -d "${TMPDIR:-/tmp}/gpu-train-venv.XXXXXX")"
trap 'rm -rf "$venv"' EXIT
status=0
if ! python3 -m venv "$venv"; then
    echo "installing python3-venv for the Python package's tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv" || { echo "FAIL: cannot create a virtual environment"; exit 1; }
fi
"$venv/bin/pip" install -q maturin pytest numpy safetensors || status=1
"$venv/bin/pip" install -q ./python || status=1
# The chapter-loop test compares with the CLI that `cargo test --release` built.
export GPU_TRAIN_CLI="${GPU_TRAIN_CLI:-$PWD/target/release/gpu-train}"
if [ $status = 0 ]; then
    # From the repository root: python/ itself is not on sys.path, so the installed package
    # (with its compiled _native) is what the tests import.
    "$venv/bin/pytest" -q -rs python/tests || status=1
fi
echo "Python package: $(( $(date +%s) - started )) s, $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
