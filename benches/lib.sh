# Shared by the wrk benchmarks that compare two servers in one run (cache.sh, outbound.sh).
# Source it after setting ROOT; it defines the binaries, the build, a work directory whose
# servers are stopped by PID on exit, `start`, `load` and `compare`.
#
# Environment: DURATION CONNECTIONS WARMUP ROUNDS SERVER_CPU (0) LOAD_CPU (1)
#              SKIP_BUILD=1 (use the binaries already built)

BENCH=$(basename "$0")
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
EDGE_NODE=$ROOT/target/release/edge-node
HYPER_HELLO=$ROOT/target/release/hyper-hello
PROBE=$ROOT/tests/guests/target/wasm32-wasip2/release/probe.wasm

die() { echo "$BENCH: $*" >&2; exit 1; }
command -v wrk >/dev/null || die "no wrk: apt-get install wrk"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p edge-node -p edge-benches --bin hyper-hello) \
        || die "building edge-node and hyper-hello failed"
    cargo build --release --quiet --target wasm32-wasip2 \
        --manifest-path "$ROOT/tests/guests/Cargo.toml" -p probe || die "building the probe failed"
fi
[[ -x $EDGE_NODE && -x $HYPER_HELLO && -f $PROBE ]] || die "build first (or drop SKIP_BUILD)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-bench.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME CPU COMMAND...: runs a server pinned to CPU; sets URL from its `listening on` line.
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

# load URL DURATION [TIMES]: one wrk run (one thread, on LOAD_CPU); prints requests per second
# times TIMES (1); fails on any non-2xx answer.
load() {
    local url=$1 duration=$2 times=${3:-1}
    taskset -c "$LOAD_CPU" wrk -t1 -c "$CONNECTIONS" -d "$duration" "$url" >"$WORK/wrk.txt" \
        || die "wrk failed: $(cat "$WORK/wrk.txt")"
    grep -q 'Non-2xx' "$WORK/wrk.txt" && die "non-2xx answers: $(cat "$WORK/wrk.txt")"
    awk -v n="$times" '/^Requests\/sec/ {printf "%.0f\n", $2 * n}' "$WORK/wrk.txt"
}

# machine: the header line naming the build and the CPU.
machine() {
    echo "# edge-node $(git -C "$ROOT" describe --always --dirty 2>/dev/null) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs))"
}

# compare "A1 A2 ..." "B1 B2 ..." NAME_A NAME_B UNIT RATIO: medians, ranges and the ratio A/B.
compare() {
    python3 - "$@" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
name_a, name_b, unit, ratio = sys.argv[3:7]
ma, mb = statistics.median(a), statistics.median(b)
print(f"median: {name_a} {ma:.0f} {unit} ({min(a):.0f}-{max(a):.0f})   "
      f"{name_b} {mb:.0f} {unit} ({min(b):.0f}-{max(b):.0f})   {ratio} {ma/mb:.2f}")
PY
}
