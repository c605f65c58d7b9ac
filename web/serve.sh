#!/usr/bin/env bash
# The page: builds it and serves it on 127.0.0.1.
#
#   bash web/serve.sh [PORT]        build, then serve web/dist on http://127.0.0.1:PORT/ (8000)
#   bash web/serve.sh --build-only  build web/dist and stop (CI; publishing the static files)
#
# The build: the web crate for wasm32-unknown-unknown (cargo; the target is added by rustup when
# missing), then wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in Cargo.lock,
# installed from crates.io into target/tools/ on first use (nothing is downloaded from anywhere
# else), then the static files and the embedded MNIST subset's four files beside them.
set -euo pipefail
cd "$(dirname "$0")/.."

port=8000
build_only=0
for arg in "$@"; do
    case "$arg" in
        --build-only) build_only=1 ;;
        -h|--help) sed -n 2,10p "$0"; exit 0 ;;
        *)
            if ! [[ "$arg" =~ ^[0-9]{1,5}$ ]] || [ "$arg" -lt 1 ] || [ "$arg" -gt 65535 ]; then
                echo "web/serve.sh: PORT must be a number from 1 to 65535, got '$arg'" >&2
                exit 2
            fi
            port="$arg" ;;
    esac
done

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [ -z "$version" ]; then
    echo "web/serve.sh: Cargo.lock names no wasm-bindgen version; run cargo build -p gpu-train-web once" >&2
    exit 1
fi
tools="target/tools/wasm-bindgen-$version"
bindgen="$tools/bin/wasm-bindgen"
if [ ! -x "$bindgen" ]; then
    echo "installing wasm-bindgen-cli $version from crates.io into $tools (once; a few minutes)"
    # No TLS: the CLI's download features are for its test runner, which the page does not use.
    cargo install --quiet --no-default-features --version "$version" wasm-bindgen-cli --root "$tools"
fi
if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    rustup target add wasm32-unknown-unknown
fi

# Not stripped: wasm-bindgen reads the target_features section (SIMD128) that strip removes.
CARGO_PROFILE_RELEASE_STRIP=false \
    cargo build --release --locked --target wasm32-unknown-unknown -p gpu-train-web
dist=web/dist
rm -rf "$dist"
mkdir -p "$dist/data"
"$bindgen" --target web --no-typescript --out-dir "$dist/pkg" \
    target/wasm32-unknown-unknown/release/gpu_train_web.wasm
cp web/static/* "$dist/"
cp src/data/mnist-subset/*-ubyte.gz "$dist/data/"
echo "built $dist ($(du -sh "$dist" | cut -f1)): publish it as static files from any web server"

if [ "$build_only" = 1 ]; then
    exit 0
fi
echo "serving http://127.0.0.1:$port/ (Ctrl-C stops)"
exec python3 web/server.py --port "$port" --directory "$dist"
