#!/usr/bin/env bash
# Cache hits against a plain hyper hello server: edge-node answering a stored response from its
# cache (no instance), and benches/src/bin/hyper-hello (no WebAssembly, no cache, no routing),
# loaded by wrk alternately in the same run.
#
#   benches/cache.sh                       # build, then ROUNDS rounds of both
#   ROUNDS=5 DURATION=10s CONNECTIONS=32 benches/cache.sh
#
# The server runs pinned to CPU SERVER_CPU, wrk (one thread) to LOAD_CPU; the node's access log
# is on (to /dev/null), as in production. Traffic goes to 127.0.0.1 only; the servers this
# script starts are stopped by their PIDs, also on exit.
#
# Environment: DURATION (10s) CONNECTIONS (32) WARMUP (2s) ROUNDS (3) SERVER_CPU (0)
#              LOAD_CPU (1) SKIP_BUILD=1 (use the binaries already built)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
EDGE_NODE=$ROOT/target/release/edge-node
HYPER_HELLO=$ROOT/target/release/hyper-hello
PROBE=$ROOT/tests/guests/target/wasm32-wasip2/release/probe.wasm
TARGET='/origin?h=cache-control:max-age%3D86400'

die() { echo "cache.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "no wrk: apt-get install wrk"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p edge-node -p edge-benches --bin hyper-hello) \
        || die "building edge-node and hyper-hello failed"
    cargo build --release --quiet --target wasm32-wasip2 \
        --manifest-path "$ROOT/tests/guests/Cargo.toml" -p probe || die "building the probe failed"
fi
[[ -x $EDGE_NODE && -x $HYPER_HELLO && -f $PROBE ]] || die "build first (or drop SKIP_BUILD)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-cache.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/routes.toml" <<EOF
[functions.probe]
component = "$PROBE"
[[routes]]
function = "probe"
cache = true
EOF

# Starts a server pinned to SERVER_CPU; sets URL from its `listening on` line.
start() {
    local out=$WORK/$1.out
    shift
    taskset -c "$SERVER_CPU" "$@" >"$out" 2>/dev/null &
    PIDS+=("$!")
    for _ in $(seq 100); do
        URL=$(sed -n 's|^listening on \(http://[0-9.:]*\)$|\1|p' "$out" | head -1)
        [[ -n $URL ]] && return
        sleep 0.1
    done
    die "$1 did not start"
}

# One wrk run against $1; prints requests per second; fails on any non-2xx answer.
load() {
    local url=$1 duration=$2
    taskset -c "$LOAD_CPU" wrk -t1 -c "$CONNECTIONS" -d "$duration" "$url" >"$WORK/wrk.txt" \
        || die "wrk failed: $(cat "$WORK/wrk.txt")"
    grep -q 'Non-2xx' "$WORK/wrk.txt" && die "non-2xx answers: $(cat "$WORK/wrk.txt")"
    awk '/^Requests\/sec/ {printf "%.0f\n", $2}' "$WORK/wrk.txt"
}

start edge "$EDGE_NODE" serve --routes "$WORK/routes.toml" --listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --log-format json
EDGE_URL=$URL$TARGET
status=$(curl -s -o /dev/null -D - "$EDGE_URL" | tr -d '\r' | sed -n 's/^cache-status: //Ip')
[[ $status == *stored* ]] || die "the first answer was not stored: $status"
status=$(curl -s -o /dev/null -D - "$EDGE_URL" | tr -d '\r' | sed -n 's/^cache-status: //Ip')
[[ $status == *hit* ]] || die "the second answer was no hit: $status"
start hyper "$HYPER_HELLO"
HYPER_URL=$URL/

echo "# edge-node $(git -C "$ROOT" describe --always --dirty 2>/dev/null) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs))"
echo "# servers on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU, $CONNECTIONS connections, $DURATION per run, warm-up $WARMUP"
load "$EDGE_URL" "$WARMUP" >/dev/null
load "$HYPER_URL" "$WARMUP" >/dev/null
hits=() hypers=()
for round in $(seq "$ROUNDS"); do
    hit=$(load "$EDGE_URL" "$DURATION")
    hyper=$(load "$HYPER_URL" "$DURATION")
    hits+=("$hit") hypers+=("$hyper")
    printf 'round %d: edge-node cache hit %s req/s   hyper hello %s req/s   hit/hyper %s\n' \
        "$round" "$hit" "$hyper" "$(python3 -c "print(f'{$hit/$hyper:.2f}')")"
done
python3 - "${hits[*]}" "${hypers[*]}" <<'EOF'
import statistics, sys
hit = [float(x) for x in sys.argv[1].split()]
hyper = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(hit), statistics.median(hyper)
print(f"median: cache hit {a:.0f} req/s ({min(hit):.0f}-{max(hit):.0f})   "
      f"hyper hello {b:.0f} req/s ({min(hyper):.0f}-{max(hyper):.0f})   hit/hyper {a/b:.2f}")
EOF
