#!/usr/bin/env bash
# Failover as an operator sees it, on a 3-node cluster on 127.0.0.1 (real `aether node`
# processes, the CLI for every request):
#   kill   - the leader is killed with SIGKILL: how long until a `kv put` run through the CLI on
#            a survivor succeeds (the first one is started right after the kill), how long
#            `status` started at the same time on the other survivor takes and whom it names
#            leader; then the node restarts on its data dir and rejoins;
#   freeze - the leader is frozen (SIGSTOP) for 3-5 s, then resumed;
#   follower - a follower is frozen for 3 s, then resumed; then killed and restarted.
# After each fault and after each return it watches the terms for WATCH seconds and counts how
# many terms each fault cost (goal: 1 per leader failure, 0 for a follower's return).
#
# usage: scripts/bench/failover.sh [--rounds N] [--bin PATH]     (defaults: 10, target/release/aether)
# env: WATCH=seconds to watch the terms [3], KEEP=1 keeps the data dirs and logs
set -euo pipefail

cd "$(dirname "$0")/../.."
ROUNDS=10
BIN=""
WATCH=${WATCH:-3}
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN" ]; then
    cargo build --release --bin aether
    BIN=$PWD/target/release/aether
fi

D=$(mktemp -d)
declare -A PID PORT
PORT=([n1]=27420 [n2]=27430 [n3]=27440)
cleanup() {
    exec 2>/dev/null   # no "Killed" notes for the nodes stopped here
    for n in n1 n2 n3; do
        if [ -n "${PID[$n]:-}" ]; then
            kill -CONT "${PID[$n]}" 2>/dev/null || true
            kill -KILL "${PID[$n]}" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "logs kept in $D" >&2; else rm -rf "$D"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
ms_since() { echo "$(now) $1" | awk '{printf "%d", ($1 - $2) * 1000}'; }
cli() { local n=$1; shift; "$BIN" --data-dir "$D/$n" "$@"; }

start() {
    local n=$1; shift
    "$BIN" node --data-dir "$D/$n" --name "$n" --listen "127.0.0.1:${PORT[$n]}" \
        --http "127.0.0.1:$((PORT[$n] + 1))" "$@" >>"$D/$n.log" 2>&1 &
    PID[$n]=$!
}

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND until it succeeds, or fail naming it.
wait_until() {
    local limit=$1 what=$2; shift 2
    local t0; t0=$(now)
    until "$@" >/dev/null 2>&1; do
        if [ "$(ms_since "$t0")" -gt $((limit * 1000)) ]; then
            echo "timed out after ${limit}s waiting for: $what" >&2
            exit 1
        fi
        sleep 0.05
    done
}

# field NODE EXPR: a field of NODE's `status --output json` (jq syntax).
field() { cli "$1" status --output json 2>/dev/null | jq -r "$2"; }
leader() { field "$1" '.leader.name // empty'; }
term() { field "$1" '.node.term'; }
all_ready() {
    for n in n1 n2 n3; do
        [ "$(field "$n" '[.members[] | select(.role == "voter" and .health == "ready")] | length')" = 3 ] || return 1
        [ -n "$(leader "$n")" ] || return 1
    done
}

# max_term over the running nodes
max_term() {
    local m=0 t
    for n in n1 n2 n3; do
        t=$(term "$n" || true)
        if [ -n "$t" ] && [ "$t" != null ] && [ "$t" -gt "$m" ]; then m=$t; fi
    done
    echo "$m"
}

start n1
wait_until 20 "n1 to answer" cli n1 status
TOKEN=$(cli n1 token create --uses 2 --ttl 1h)
start n2 --join "127.0.0.1:${PORT[n1]}" --token "$TOKEN"
start n3 --join "127.0.0.1:${PORT[n1]}" --token "$TOKEN"
wait_until 60 "3 ready voters and a leader" all_ready
echo "== failover: 3 nodes, $ROUNDS rounds of each fault, terms watched ${WATCH}s after each =="

PUT_MS=() STATUS_MS=() STATUS_DEAD=0 KILL_TERMS=() BACK_TERMS=() FREEZE_TERMS=() FOLLOWER_TERMS=()
# the first node that is not $1
other_than() { for n in n1 n2 n3; do if [ "$n" != "$1" ]; then echo "$n"; return; fi; done; }

for r in $(seq "$ROUNDS"); do
    # kill -9 the leader
    L=$(leader n1); S=$(other_than "$L"); t0=$(max_term)
    kill -KILL "${PID[$L]}"; wait "${PID[$L]}" 2>/dev/null || true; k=$(now)
    # `status` on another survivor at the same time as the puts
    O=$(for n in n1 n2 n3; do if [ "$n" != "$L" ] && [ "$n" != "$S" ]; then echo "$n"; fi; done)
    # whom it names leader, and whether it says that one is reachable
    # shellcheck disable=SC2016  # a jq program, not shell
    ( s0=$(now); n=$(field "$O" '(.leader.id as $l | [.members[] | select(.id == $l) | .reachable][0]) as $r | "\(.leader.name // "none") \($r)"')
      echo "$(ms_since "$s0") $n" >"$D/status.$r" ) &
    STATUS_JOB=$!
    tries=0
    until cli "$S" kv put "failover-$r" "v$r" >>"$D/puts.log" 2>&1; do
        tries=$((tries + 1))
        [ "$(ms_since "$k")" -lt 30000 ] || { echo "no kv put succeeded within 30 s of the kill" >&2; exit 1; }
    done
    PUT_MS+=("$(ms_since "$k")")
    wait "$STATUS_JOB"
    read -r sms named reachable <"$D/status.$r"
    STATUS_MS+=("$sms")
    if [ "$named" = "$L" ] && [ "$reachable" != false ]; then STATUS_DEAD=$((STATUS_DEAD + 1)); fi
    sleep "$WATCH"; t1=$(max_term); KILL_TERMS+=($((t1 - t0)))
    start "$L"
    wait_until 60 "$L to rejoin" all_ready
    sleep "$WATCH"; t2=$(max_term); BACK_TERMS+=($((t2 - t1)))

    # freeze the leader 3-5 s
    L=$(leader n1); t0=$(max_term)
    kill -STOP "${PID[$L]}"; sleep $((3 + r % 3)); kill -CONT "${PID[$L]}"
    wait_until 60 "all ready after $L resumed" all_ready
    sleep "$WATCH"; t1=$(max_term); FREEZE_TERMS+=($((t1 - t0)))

    # freeze a follower 3 s, then kill and restart it
    L=$(leader n1); F=$(other_than "$L"); t0=$(max_term)
    kill -STOP "${PID[$F]}"; sleep 3; kill -CONT "${PID[$F]}"
    wait_until 60 "all ready after $F resumed" all_ready
    kill -KILL "${PID[$F]}"; wait "${PID[$F]}" 2>/dev/null || true
    start "$F"
    wait_until 60 "$F to rejoin" all_ready
    sleep "$WATCH"; t1=$(max_term); FOLLOWER_TERMS+=($((t1 - t0)))
    echo "round $r: put after kill ${PUT_MS[-1]} ms ($tries failed first), status ${STATUS_MS[-1]} ms (leader '$named', reachable: $reachable), terms: kill +${KILL_TERMS[-1]}, return +${BACK_TERMS[-1]}, freeze +${FREEZE_TERMS[-1]}, follower +${FOLLOWER_TERMS[-1]}"
done

stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "p50 %d ms, p90 %d ms, max %d ms", a[int((NR+1)/2)], a[int(NR*0.9+0.999)], a[NR]}'; }
sum() { local s=0 x; for x in "$@"; do s=$((s + x)); done; echo "$s"; }
echo
echo "CLI kv put after the leader's kill -9: $(stats "${PUT_MS[@]}")"
echo "CLI status right after the kill:      $(stats "${STATUS_MS[@]}"); called the dead leader reachable $STATUS_DEAD of $ROUNDS times"
echo "terms per leader kill:                 $(sum "${KILL_TERMS[@]}") in $ROUNDS (goal $ROUNDS)"
echo "terms per killed leader's return:      $(sum "${BACK_TERMS[@]}") in $ROUNDS (goal 0)"
echo "terms per leader freeze and resume:    $(sum "${FREEZE_TERMS[@]}") in $ROUNDS (goal $ROUNDS)"
echo "terms per follower freeze/kill/return: $(sum "${FOLLOWER_TERMS[@]}") in $ROUNDS (goal 0)"
