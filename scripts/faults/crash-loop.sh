#!/usr/bin/env bash
# Single-node crash loop: start a one-node cluster, write under load (concurrent `aether kv put`),
# kill -9 the node while the writes run, restart it on the same data dir and check that every
# acknowledged write is there; N cycles. Prints cycles, acknowledged writes, lost writes (must be
# 0) and the restart time (spawn to the first committed write) p50/p99/max. Exits 1 on a lost
# write. Not part of CI: it takes about half a second per cycle.
#
# usage: scripts/faults/crash-loop.sh [--cycles N] [--writers N] [--keep]
#   --cycles N   crash cycles (default 1000)
#   --writers N  concurrent writers (default 4)
#   --keep       keep the work dir (data dir, node log, acknowledged keys) at the end
# Builds the release binary first; AETHER_BIN=PATH uses that binary instead (no build).
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/../.."

cycles=1000
writers=4
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --cycles)
        cycles=${2:?--cycles needs a number}
        shift 2
        ;;
    --writers)
        writers=${2:?--writers needs a number}
        shift 2
        ;;
    --keep)
        keep=1
        shift
        ;;
    -h | --help)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown option '$1' (see --help)" >&2
        exit 2
        ;;
    esac
done
case $cycles$writers in
*[!0-9]*)
    echo "--cycles and --writers take whole numbers" >&2
    exit 2
    ;;
esac

if [ -z "${AETHER_BIN:-}" ]; then
    cargo build --release --bin aether
    AETHER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/aether"
fi
bin=$AETHER_BIN
if [ ! -x "$bin" ]; then
    echo "aether binary '$bin' not found or not executable" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/aether-crash-loop.XXXXXX")
data=$work/data
log=$work/node.log
node_pid=
writer_pids=()

cleanup() {
    touch "$work/stop"
    if [ -n "$node_pid" ]; then
        { kill -9 "$node_pid" && wait "$node_pid"; } 2>/dev/null || true
    fi
    for p in "${writer_pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "$keep" = 1 ]; then
        echo "work dir kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

now_ms() {
    local t=${EPOCHREALTIME/./}
    echo $((t / 1000))
}

cli() {
    "$bin" --data-dir "$data" "$@"
}

# A port on 127.0.0.1 nothing listens on over TCP (best effort; the node fails loudly on a
# taken one).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}
quic=$(free_port)
http=$(free_port)

# Start the node and wait until a write commits; sets ready_ms (spawn to that write).
start_node() {
    "$bin" --data-dir "$data" node --name crash --listen "127.0.0.1:$quic" \
        --http "127.0.0.1:$http" >>"$log" 2>&1 &
    node_pid=$!
    local t0
    t0=$(now_ms)
    until cli kv put crash-loop-ready "$1" >/dev/null 2>&1; do
        if ! kill -0 "$node_pid" 2>/dev/null; then
            echo "the node exited in cycle $1; log tail:" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        if (($(now_ms) - t0 > 60000)); then
            echo "the node took no write within 60 s in cycle $1; log tail:" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        sleep 0.01
    done
    ready_ms=$(($(now_ms) - t0))
}

# Writer $1 of cycle $2: puts until the stop file exists; each acknowledged write (exit 0) is
# appended as "key<TAB>value" to its file.
writer() {
    local w=$1 c=$2 i=0 key
    while [ ! -e "$work/stop" ]; do
        i=$((i + 1))
        key=$(printf 'ck-%06d-w%d-%d' "$c" "$w" "$i")
        if cli kv put "$key" "v$i" >/dev/null 2>&1; then
            printf '%s\tv%d\n' "$key" "$i" >>"$work/acked.$c"
        fi
    done
}

percentile() {
    sort -n "$1" | awk -v p="$2" '{ a[NR] = $1 } END { i = int(NR * p + 0.999999); if (i < 1) i = 1; print a[i] }'
}

echo "crash loop: $cycles cycles, $writers writers, binary $bin, work dir $work"
start_node 0
acked=0
lost=0
unknown_total=0
: >"$work/restart_ms"
began=$(now_ms)
for ((c = 1; c <= cycles; c++)); do
    rm -f "$work/stop"
    : >"$work/acked.$c"
    writer_pids=()
    for ((w = 0; w < writers; w++)); do
        writer "$w" "$c" &
        writer_pids+=("$!")
    done
    # Let the writes run 0.2-0.7 s, then kill -9 in the middle of them.
    sleep "0.$((RANDOM % 500 + 200))"
    kill -9 "$node_pid"
    wait "$node_pid" 2>/dev/null || true
    node_pid=
    touch "$work/stop"
    for p in "${writer_pids[@]}"; do
        wait "$p"
    done
    writer_pids=()

    start_node "$c"
    echo "$ready_ms" >>"$work/restart_ms"

    # Every write acknowledged before the kill is there (a linearizable list).
    prefix=$(printf 'ck-%06d-' "$c")
    cli kv list "$prefix" --limit 1000000 >"$work/got" || {
        echo "kv list failed in cycle $c" >&2
        exit 1
    }
    n=$(wc -l <"$work/acked.$c")
    missing=$(grep -cvxFf "$work/got" "$work/acked.$c" || true)
    if [ "$missing" -gt 0 ]; then
        echo "cycle $c: $missing of $n acknowledged writes lost:" >&2
        grep -vxFf "$work/got" "$work/acked.$c" | head -n 10 >&2
    fi
    acked=$((acked + n))
    lost=$((lost + missing))
    # Writes that were not acknowledged (in flight at the kill) may or may not be there.
    unknown_total=$((unknown_total + $(wc -l <"$work/got") - n + missing))
    if ((c % 25 == 0 || c == cycles)); then
        echo "cycle $c: acked $acked, lost $lost, $(($(now_ms) - began)) ms so far"
    fi
done

# At the end, every write acknowledged in any cycle is still there.
cat "$work"/acked.* >"$work/acked.all"
cli kv list ck- --limit 100000000 >"$work/got"
final_missing=$(grep -cvxFf "$work/got" "$work/acked.all" || true)

elapsed=$(($(now_ms) - began))
echo
echo "cycles:                 $cycles"
echo "acknowledged writes:    $acked"
echo "lost writes:            $lost (at the end, over all cycles: $final_missing)"
echo "unacknowledged applied: $unknown_total (in flight at a kill and applied anyway: allowed)"
echo "restart to first write: p50 $(percentile "$work/restart_ms" 0.5) ms, p99 $(percentile "$work/restart_ms" 0.99) ms, max $(sort -n "$work/restart_ms" | tail -n 1) ms"
echo "wall clock:             $((elapsed / 1000)) s ($((elapsed / cycles)) ms per cycle)"
if [ "$lost" -gt 0 ] || [ "$final_missing" -gt 0 ]; then
    echo "FAILED: acknowledged writes were lost" >&2
    exit 1
fi
