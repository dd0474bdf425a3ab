#!/usr/bin/env bash
# Metrics pipeline benchmark (benches/metrics.rs), all on 127.0.0.1:
#   1. agent cost: an idle 3-node Aether cluster against prometheus-node-exporter scraped every
#      second, for the same minute: CPU seconds, peak RSS, ratios;
#   2. leader scale: one real leader and 1,000 simulated nodes pushing updates at 1 Hz and
#      receiving the view (deltas, relays, full views on a gap): leader CPU, the leader's bytes
#      sent per second, bytes per node, view age p50/p99 on the simulated nodes, snapshot and
#      delta size, history memory.
# Installs prometheus-node-exporter (Debian) when it is missing and builds the release binary.
#
# usage: scripts/bench/metrics.sh [bench options]   (scripts/bench/metrics.sh --help lists them)
# e.g.   scripts/bench/metrics.sh --agent-secs 120 --nodes 500
set -euo pipefail

cd "$(dirname "$0")/../.."

# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_package "${EXPORTER_BIN:-prometheus-node-exporter}" prometheus-node-exporter prometheus-node-exporter

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-$PWD/target/release/aether}"
cargo bench --bench metrics -- "$@"
