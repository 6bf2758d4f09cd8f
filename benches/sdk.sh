#!/usr/bin/env bash
# What a function's language and SDK cost: the hello example built with the SDK
# (examples/hello, `fn hello() -> Response`) against the same function on the raw wasi:http
# bindings (examples/hello-raw), the same hello taking the request it ignores
# (`fn hello(_: Request)`, built here into target/bench-sdk-request: the SDK then reads the
# request from the node, as most functions need), and with JS=path/to/component.wasm a
# JavaScript function too (the
# `edge new --lang js` template, built with `edge build`), served by one release edge-node
# build, alternating, under wrk. Prints req/s and p99 per run, medians and their ratios, each
# component's size, and the time the node took to compile it (Cranelift, no cache).
#   bash benches/sdk.sh
#   ROUNDS=5 DURATION=10s JS=/tmp/fn/target/edge/fn.wasm bash benches/sdk.sh
#   EDGE_NODE=path/to/edge-node SKIP_BUILD=1 bash benches/sdk.sh
# Layout as load.sh: the node pinned to CPU 0, wrk (one thread) to CPU 1, 127.0.0.1 only; only
# the processes started here are stopped, by PID.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
EDGE_NODE=${EDGE_NODE:-$ROOT/target/release/edge-node}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --target wasm32-wasip2 --manifest-path "$ROOT/examples/Cargo.toml" >&2
    cargo build --release -p edge-node --manifest-path "$ROOT/Cargo.toml" >&2
fi
WASM=$ROOT/examples/target/wasm32-wasip2/release
# The hello that takes the request: a crate of its own, generated, so that no example exists
# only for this.
REQ=$ROOT/target/bench-sdk-request
REQ_WASM=$REQ/target/wasm32-wasip2/release/hello_request.wasm
if [ "${SKIP_BUILD:-0}" != 1 ] || [ ! -f "$REQ_WASM" ]; then
    mkdir -p "$REQ/src"
    cat >"$REQ/Cargo.toml" <<EOF
[package]
name = "hello-request"
version = "0.0.0"
edition = "2024"
publish = false
[lib]
crate-type = ["cdylib"]
[dependencies]
edge-sdk = { path = "$ROOT/sdk" }
[profile.release]
strip = true
lto = true
codegen-units = 1
[workspace]
EOF
    cat >"$REQ/src/lib.rs" <<'EOF'
use edge::{Request, Response};

fn hello(_request: Request) -> Response {
    edge::text("hello from the edge\n")
}

edge::export!(hello);
EOF
    cargo build --release --target wasm32-wasip2 --manifest-path "$REQ/Cargo.toml" >&2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-sdk.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

run() { # component -> "req/s p99_ms"
    local out="$WORK/node.out"
    taskset -c 0 "$EDGE_NODE" serve --component "$1" --listen 127.0.0.1:0 \
        --admin-listen 127.0.0.1:0 --log info,edge_node::access=off --log-format json \
        >"$out" 2>"$WORK/node.err" &
    PID=$!
    local url=
    for _ in $(seq 600); do
        url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$out" | head -1)
        [ -n "$url" ] && break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "edge-node did not start" >&2; exit 1; }
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "$url/" >/dev/null
    local result
    result=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url/")
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
    local rps p99
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$result")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$result")
    compile=$(grep -o '"elapsed_ms":[0-9]*' "$WORK/node.err" | head -1 | cut -d: -f2)
    echo "$rps $p99 $compile"
}

NAMES=(raw sdk req)
declare -A FILE=([raw]=$WASM/hello_raw.wasm [sdk]=$WASM/hello.wasm [req]=$REQ_WASM)
if [ -n "${JS:-}" ]; then NAMES+=(js); FILE[js]=$JS; fi
declare -A RPS COMPILE
for round in $(seq "$ROUNDS"); do
    for which in "${NAMES[@]}"; do
        read -r rps p99 compile <<<"$(run "${FILE[$which]}")"
        printf 'round %s %-4s %10s req/s  p99 %-8s compile %s ms\n' "$round" "$which" "$rps" "$p99" "$compile"
        RPS[$which]+="$rps "
        COMPILE[$which]+="$compile "
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# shellcheck disable=SC2086
raw=$(median ${RPS[raw]})
for which in "${NAMES[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${RPS[$which]}); c=$(median ${COMPILE[$which]})
    printf 'median %-4s %10s req/s (%.3f x raw), compile %s ms, size %s bytes\n' "$which" "$m" \
        "$(awk -v a="$m" -v b="$raw" 'BEGIN {print a / b}')" "$c" "$(stat -c %s "${FILE[$which]}")"
done
