#!/usr/bin/env bash
# Terminal console benchmark (benches/tui.rs): 'aether tui' side by side with btop (Debian), both
# in tmux at 160x48 with a 1 s refresh, against a 3-node Aether cluster on 127.0.0.1:
#   1. first frame: time from launching the pane to the first full frame, several launches each
#      (min/median/max);
#   2. the same minute side by side: CPU seconds and peak RSS of each, and the ratios.
# Installs btop and tmux (Debian) when they are missing and builds the release binary.
#
# usage: scripts/bench/tui.sh [bench options]   (scripts/bench/tui.sh --help lists them)
# e.g.   scripts/bench/tui.sh --secs 120 --runs 10
set -euo pipefail

cd "$(dirname "$0")/../.."

# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_package "${BTOP_BIN:-btop}" btop btop
ensure_package "${TMUX_BIN:-tmux}" tmux tmux

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/aether}"
cargo bench --bench tui -- "$@"
