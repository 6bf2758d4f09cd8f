#!/usr/bin/env bash
# Functions' outbound fetches through the node's pooled client against the same node with
# pooling off (--outbound-pool-idle-per-host 0: a new TCP connection per request, what
# wasi-http's default sender does). The probe function fetches a local hyper origin
# (benches/src/bin/hyper-hello, whose answers are not cacheable) FETCHES times per request, so
# the fetch dominates; wrk loads each node in turn, alternating, in the same run.
#
#   benches/outbound.sh
#   ROUNDS=5 DURATION=10s FETCHES=10 benches/outbound.sh
#
# The nodes run pinned to CPU SERVER_CPU, the origin and wrk (one thread) to LOAD_CPU. Traffic
# goes to 127.0.0.1 only; the processes this script starts are stopped by their PIDs, also on
# exit.
#
# Environment: DURATION (5s) CONNECTIONS (16) WARMUP (2s) ROUNDS (3) FETCHES (10)
#              SERVER_CPU (0) LOAD_CPU (1) SKIP_BUILD=1 (use the binaries already built)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-16}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
FETCHES=${FETCHES:-10}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
EDGE_NODE=$ROOT/target/release/edge-node
HYPER_HELLO=$ROOT/target/release/hyper-hello
PROBE=$ROOT/tests/guests/target/wasm32-wasip2/release/probe.wasm

die() { echo "outbound.sh: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "no wrk: apt-get install wrk"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p edge-node -p edge-benches --bin hyper-hello) \
        || die "building edge-node and hyper-hello failed"
    cargo build --release --quiet --target wasm32-wasip2 \
        --manifest-path "$ROOT/tests/guests/Cargo.toml" -p probe || die "building the probe failed"
fi
[[ -x $EDGE_NODE && -x $HYPER_HELLO && -f $PROBE ]] || die "build first (or drop SKIP_BUILD)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-outbound.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts a server pinned to CPU $2; sets URL from its `listening on` line.
start() {
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$WORK/$name.out" 2>/dev/null &
    PIDS+=("$!")
    for _ in $(seq 100); do
        URL=$(sed -n 's|^listening on \(http://[0-9.:]*\)$|\1|p' "$WORK/$name.out" | head -1)
        [[ -n $URL ]] && return
        sleep 0.1
    done
    die "$name did not start"
}

# One wrk run against $1; prints fetches per second (requests x FETCHES); fails on errors.
load() {
    local url=$1 duration=$2
    taskset -c "$LOAD_CPU" wrk -t1 -c "$CONNECTIONS" -d "$duration" "$url" >"$WORK/wrk.txt" \
        || die "wrk failed: $(cat "$WORK/wrk.txt")"
    grep -q 'Non-2xx' "$WORK/wrk.txt" && die "failed requests: $(cat "$WORK/wrk.txt")"
    awk -v n="$FETCHES" '/^Requests\/sec/ {printf "%.0f\n", $2 * n}' "$WORK/wrk.txt"
}

start origin "$LOAD_CPU" "$HYPER_HELLO"
ORIGIN=$URL
cat >"$WORK/routes.toml" <<EOF
[functions.probe]
component = "$PROBE"
outbound = ["$ORIGIN"]
[[routes]]
function = "probe"
EOF
TARGET="/fetch?n=$FETCHES&url=$(python3 -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1], safe=''))" "$ORIGIN/")"
start pooled "$SERVER_CPU" "$EDGE_NODE" serve --routes "$WORK/routes.toml" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json
POOLED=$URL$TARGET
start unpooled "$SERVER_CPU" "$EDGE_NODE" serve --routes "$WORK/routes.toml" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log-format json \
    --outbound-pool-idle-per-host 0
UNPOOLED=$URL$TARGET
for url in "$POOLED" "$UNPOOLED"; do
    body=$(curl -s "$url")
    [[ $body == *"status: 200"* ]] || die "the probe's fetch failed: $body"
done

echo "# edge-node $(git -C "$ROOT" describe --always --dirty 2>/dev/null) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs))"
echo "# nodes on CPU $SERVER_CPU, origin and wrk on CPU $LOAD_CPU, $CONNECTIONS connections, $FETCHES fetches per request, $DURATION per run"
load "$POOLED" "$WARMUP" >/dev/null
load "$UNPOOLED" "$WARMUP" >/dev/null
pooled=() unpooled=()
for round in $(seq "$ROUNDS"); do
    p=$(load "$POOLED" "$DURATION")
    u=$(load "$UNPOOLED" "$DURATION")
    pooled+=("$p") unpooled+=("$u")
    printf 'round %d: pooled %s fetches/s   connection per request %s fetches/s   ratio %s\n' \
        "$round" "$p" "$u" "$(python3 -c "print(f'{$p/$u:.2f}')")"
done
echo "# TIME_WAIT sockets now: $(ss -tan state time-wait | tail -n +2 | wc -l)"
python3 - "${pooled[*]}" "${unpooled[*]}" <<'EOF'
import statistics, sys
p = [float(x) for x in sys.argv[1].split()]
u = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(p), statistics.median(u)
print(f"median: pooled {a:.0f} fetches/s ({min(p):.0f}-{max(p):.0f})   "
      f"connection per request {b:.0f} fetches/s ({min(u):.0f}-{max(u):.0f})   pooled/unpooled {a/b:.2f}")
EOF
