#!/usr/bin/env bash
# HTTP/3 against HTTP/1.1 with TLS: one edge-node (--self-signed) serving the `hello` example,
# loaded by oha over h1 (TLS, keep-alive) and over h3 (QUIC), alternately, in the same run.
#
#   benches/h3.sh                         # build, then ROUNDS rounds of h1 and h3
#   ROUNDS=5 DURATION=10s CONNECTIONS=32 benches/h3.sh
#
# oha must be built with HTTP/3: `cargo install oha --features http3` (OHA=PATH to use another).
# The node runs pinned to CPU SERVER_CPU, oha to LOAD_CPU. Traffic goes to 127.0.0.1 only; the
# node this script starts is stopped by its PID, also on exit.
#
# Environment: DURATION (10s) CONNECTIONS (32) WARMUP (2s) ROUNDS (3) SERVER_CPU (0) LOAD_CPU (1)
#              SKIP_BUILD=1 (use the binaries already built)  OHA (oha on PATH)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OHA=${OHA:-oha}
EDGE_NODE=$ROOT/target/release/edge-node
HELLO=$ROOT/examples/target/wasm32-wasip2/release/hello.wasm

die() { echo "h3.sh: $*" >&2; exit 1; }
command -v "$OHA" >/dev/null || die "no oha: cargo install oha --features http3 (or OHA=PATH)"
"$OHA" --help | grep -q -- '--http-version' || die "$OHA has no --http-version"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p edge-node) || die "building edge-node failed"
    cargo build --release --quiet --target wasm32-wasip2 \
        --manifest-path "$ROOT/examples/Cargo.toml" -p hello || die "building hello failed"
fi
[[ -x $EDGE_NODE && -f $HELLO ]] || die "build edge-node and examples/hello first (or drop SKIP_BUILD)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-h3.XXXXXX")
NODE_PID=
cleanup() {
    [[ -n $NODE_PID ]] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$EDGE_NODE" serve --component "$HELLO" --self-signed \
    --data-dir "$WORK/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --log-format json >"$WORK/stdout" 2>/dev/null &
NODE_PID=$!
for _ in $(seq 100); do
    grep -q '^HTTP/3 on UDP' "$WORK/stdout" 2>/dev/null && break
    sleep 0.1
done
grep -q '^HTTP/3 on UDP' "$WORK/stdout" || die "the node did not start: $(cat "$WORK/stdout")"
PORT=$(sed -n 's|^listening on https://127.0.0.1:\([0-9]*\)$|\1|p' "$WORK/stdout")
URL="https://127.0.0.1:$PORT/"

# One oha run; prints requests per second.
load() {
    local version=$1 duration=$2
    taskset -c "$LOAD_CPU" "$OHA" --no-tui --output-format json --insecure \
        --http-version "$version" -c "$CONNECTIONS" -z "$duration" "$URL" >"$WORK/oha.json" 2>"$WORK/oha.err" \
        || die "oha --http-version $version failed: $(cat "$WORK/oha.err")"
    python3 - "$WORK/oha.json" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
codes = summary.get("statusCodeDistribution", {})
bad = sum(n for code, n in codes.items() if code != "200")
# oha cuts the requests in flight when the time is up; those are not the server's errors.
errors = sum(n for error, n in summary.get("errorDistribution", {}).items()
             if error != "aborted due to deadline")
if bad or errors:
    sys.exit(f"non-200 answers: {codes}, errors: {summary.get('errorDistribution')}")
print(f"{summary['summary']['requestsPerSec']:.0f}")
EOF
}

echo "# edge-node $(git -C "$ROOT" describe --always --dirty 2>/dev/null) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs))"
echo "# server on CPU $SERVER_CPU, oha on CPU $LOAD_CPU, $CONNECTIONS connections, $DURATION per run, warm-up $WARMUP"
load 1.1 "$WARMUP" >/dev/null
load 3 "$WARMUP" >/dev/null
h1s=() h3s=()
for round in $(seq "$ROUNDS"); do
    h1=$(load 1.1 "$DURATION")
    h3=$(load 3 "$DURATION")
    h1s+=("$h1") h3s+=("$h3")
    printf 'round %d: HTTP/1.1+TLS %s req/s   HTTP/3 %s req/s   h3/h1 %s\n' "$round" "$h1" "$h3" \
        "$(python3 -c "print(f'{$h3/$h1:.2f}')")"
done
python3 - "${h1s[*]}" "${h3s[*]}" <<'EOF'
import statistics, sys
h1 = [float(x) for x in sys.argv[1].split()]
h3 = [float(x) for x in sys.argv[2].split()]
m1, m3 = statistics.median(h1), statistics.median(h3)
print(f"median: HTTP/1.1+TLS {m1:.0f} req/s ({min(h1):.0f}-{max(h1):.0f})   "
      f"HTTP/3 {m3:.0f} req/s ({min(h3):.0f}-{max(h3):.0f})   h3/h1 {m3/m1:.2f}")
EOF
