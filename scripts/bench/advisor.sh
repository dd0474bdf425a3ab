#!/usr/bin/env bash
# The strategic layer against a real OpenAI-compatible server: llama-cpp-python's
# (`pip install 'llama-cpp-python[server]'`, into $LLAMA_SERVER_VENV, default
# /tmp/llama-server-venv, made here when missing: 5 minutes on an idle 2-core machine, 35 on a busy one) serving SmolLM2
# ($MODEL, default ~/.cache/aether/SmolLM2-135M-Instruct.Q4_1.gguf) on 127.0.0.1. One node with
# a small blueprint asks it every $INTERVAL for $ROUNDS answers, then this prints the latency
# (p50, max) of the valid answers at the node and of every answer at the server, how many answers
# were valid, invalid, failed or too slow, the last advice and the last error. Nothing leaves the
# host.
#
# usage: scripts/bench/advisor.sh [ROUNDS]
#        (env: INTERVAL=30s BUDGET=30s PORT=18080 AETHER_BIN=path/to/aether)
set -euo pipefail

cd "$(dirname "$0")/../.."
ROUNDS="${1:-5}"
INTERVAL="${INTERVAL:-30s}"
BUDGET="${BUDGET:-30s}"
PORT="${PORT:-18080}"
VENV="${LLAMA_SERVER_VENV:-/tmp/llama-server-venv}"
MODEL="${MODEL:-$HOME/.cache/aether/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$MODEL" ] || { echo "no model file at '$MODEL': set MODEL to a SmolLM2 GGUF" >&2; exit 2; }

if ! "$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "== building llama-cpp-python's server into $VENV (minutes) =="
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'llama-cpp-python[server]'
fi

# AETHER_BIN: a binary already built (the figures are the endpoint's, not the node's).
if [ -n "${AETHER_BIN:-}" ]; then
  BIN="$AETHER_BIN"
else
  cargo build --release --locked --bin aether
  BIN="${CARGO_TARGET_DIR:-target}/release/aether"
fi
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --model_alias smollm2 \
  --host 127.0.0.1 --port "$PORT" --n_ctx 4096 --n_threads 1 >"$TMP/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null \
  || { echo "the server did not come up:"; tail -20 "$TMP/server.log"; exit 1; }

cat >"$TMP/bench.toml" <<'TOML'
name = "bench"

[[slices]]
name = "web"
command = ["sleep", "3600"]
instances = 1
min = 1
max = 3
resources = { cpu = 0.02, memory = "16MiB" }
TOML

AETHER_CONTROLLER_MODEL_ENABLED=false \
AETHER_CONTROLLER_ADVISOR_ENABLED=true \
AETHER_CONTROLLER_ADVISOR_URL="http://127.0.0.1:$PORT/v1" \
AETHER_CONTROLLER_ADVISOR_MODEL=smollm2 \
AETHER_CONTROLLER_ADVISOR_RESPONSE_FORMAT=json_object \
AETHER_CONTROLLER_ADVISOR_INTERVAL="$INTERVAL" \
AETHER_CONTROLLER_ADVISOR_BUDGET="$BUDGET" \
  "$BIN" node --data-dir "$TMP/n1" --name n1 --listen "127.0.0.1:$((PORT + 1))" --http "127.0.0.1:$((PORT + 2))" \
  >"$TMP/node.log" 2>&1 &
PIDS+=($!)
CLI=("$BIN" --data-dir "$TMP/n1")
for _ in $(seq 1 60); do
  "${CLI[@]}" status >/dev/null 2>&1 && break
  sleep 1
done
"${CLI[@]}" blueprint apply "$TMP/bench.toml" >/dev/null

echo "== $ROUNDS answers from SmolLM2 via llama-cpp-python, every $INTERVAL (budget $BUDGET) =="
python3 - "$ROUNDS" "$TMP/server.log" "${CLI[@]}" <<'PY'
import json, re, subprocess, sys, time
rounds, server_log, cli = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def advice():
    out = subprocess.run(cli + ["advice", "--output", "json"], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None
latencies, seen_at, a = [], None, None
deadline = time.time() + 3600
while time.time() < deadline:
    a = advice()
    if a and a.get("at") and a["at"] != seen_at:
        seen_at = a["at"]
        latencies.append(a["latency_ms"])
    if a and a["requests"] >= rounds:
        break
    time.sleep(1)
if not a:
    sys.exit("no advice: is the advisor enabled? see the node's log")
def p50(v):
    v = sorted(v)
    return round(v[len(v) // 2]) if v else None
# Every answer's time as the server measured it (llama.cpp's per-request perf line).
served = [float(x) for x in re.findall(r"total time =\s*([0-9.]+) ms", open(server_log).read())]
print(f"requests {a['requests']}: valid {a['ok']}, invalid {a['invalid']}, "
      f"failed {a['failed']}, timeouts {a['timeouts']}")
print(f"latency of valid answers at the node (ms): p50 {p50(latencies)}, "
      f"max {max(latencies) if latencies else None}")
print(f"latency of every answer at the server (ms): p50 {p50(served)}, "
      f"max {round(max(served)) if served else None} ({len(served)} answers)")
print("last advice:", json.dumps(a["items"]))
print("last error:", a.get("last_error"))
PY
