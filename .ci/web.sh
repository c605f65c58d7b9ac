#!/usr/bin/env bash
# The page (web/) in CI: the settings parser's unit tests; the page built the documented way
# (web/serve.sh --build-only: the web crate for wasm32 with no warnings, wasm-bindgen-cli at
# Cargo.lock's version from crates.io); Debian's Chromium from apt and playwright-core from npm
# (no browser download); then web/test/browser.test.mjs, which serves the page on 127.0.0.1 and
# trains it on WebGPU (SwiftShader), on the wasm CPU path, and through a failing device.
# Screenshots go to $GPU_TRAIN_ARTIFACTS (default target/ci-artifacts). Called by .ci/run;
# runs alone too: bash .ci/web.sh
set -uo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
status=0
step() { echo "web: $1 ($(( $(date +%s) - started )) s)"; }

cargo test --release --locked -p gpu-train-web --lib -q || status=1
step "building the page"
# -D warnings: the page and the library build for the browser without a warning.
RUSTFLAGS="-D warnings -C target-feature=+simd128" bash web/serve.sh --build-only \
    || { echo "FAIL: the page does not build"; status=1; }
if ! command -v chromium >/dev/null 2>&1; then
    step "installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
        || { echo "FAIL: could not install chromium from apt"; status=1; }
fi
step "installing playwright-core (npm ci)"
(cd web/test && npm ci --no-audit --no-fund --loglevel=error) || { echo "FAIL: npm ci in web/test"; status=1; }
# The native CLI the browser's losses are compared with (built by cargo test --release).
cargo build --release --locked -q || status=1
if [ $status = 0 ]; then
    step "browser tests"
    export GPU_TRAIN_ARTIFACTS="${GPU_TRAIN_ARTIFACTS:-$PWD/target/ci-artifacts}"
    node web/test/browser.test.mjs || status=1
fi
echo "The page: $(( $(date +%s) - started )) s, $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
