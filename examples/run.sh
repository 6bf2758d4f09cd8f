#!/usr/bin/env bash
# Runs the platform locally with the examples deployed: builds the example functions for
# wasm32-wasip2 and the edge node, then serves examples/routes.toml on 127.0.0.1:8080
# (admin on 127.0.0.1:9090). Ctrl-C stops it. Flags after the script's name go to
# `edge-node serve`, e.g. `bash examples/run.sh --listen 127.0.0.1:0`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 target with rustup"
    rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2 --manifest-path "$here/Cargo.toml"
cargo build --release -p edge-node --manifest-path "$here/../Cargo.toml"
exec "$here/../target/release/edge-node" serve --routes "$here/routes.toml" \
    --data-dir "$here/../target/edge-data" "$@"
