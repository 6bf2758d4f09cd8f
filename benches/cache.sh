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
TARGET='/origin?h=cache-control:max-age%3D86400'
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

cat >"$WORK/routes.toml" <<EOF
[functions.probe]
component = "$PROBE"
[[routes]]
function = "probe"
cache = true
EOF

start edge "$SERVER_CPU" "$EDGE_NODE" serve --routes "$WORK/routes.toml" --listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --log-format json
EDGE_URL=$URL$TARGET
status=$(curl -s -o /dev/null -D - "$EDGE_URL" | tr -d '\r' | sed -n 's/^cache-status: //Ip')
[[ $status == *stored* ]] || die "the first answer was not stored: $status"
status=$(curl -s -o /dev/null -D - "$EDGE_URL" | tr -d '\r' | sed -n 's/^cache-status: //Ip')
[[ $status == *hit* ]] || die "the second answer was no hit: $status"
start hyper "$SERVER_CPU" "$HYPER_HELLO"
HYPER_URL=$URL/

machine
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
compare "${hits[*]}" "${hypers[*]}" "cache hit" "hyper hello" req/s hit/hyper
