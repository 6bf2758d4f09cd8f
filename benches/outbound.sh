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
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

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

machine
echo "# nodes on CPU $SERVER_CPU, origin and wrk on CPU $LOAD_CPU, $CONNECTIONS connections, $FETCHES fetches per request, $DURATION per run"
load "$POOLED" "$WARMUP" "$FETCHES" >/dev/null
load "$UNPOOLED" "$WARMUP" "$FETCHES" >/dev/null
pooled=() unpooled=()
for round in $(seq "$ROUNDS"); do
    p=$(load "$POOLED" "$DURATION" "$FETCHES")
    u=$(load "$UNPOOLED" "$DURATION" "$FETCHES")
    pooled+=("$p") unpooled+=("$u")
    printf 'round %d: pooled %s fetches/s   connection per request %s fetches/s   ratio %s\n' \
        "$round" "$p" "$u" "$(python3 -c "print(f'{$p/$u:.2f}')")"
done
echo "# TIME_WAIT sockets now: $(ss -tan state time-wait | tail -n +2 | wc -l)"
compare "${pooled[*]}" "${unpooled[*]}" pooled "connection per request" fetches/s pooled/unpooled
