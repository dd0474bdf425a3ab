#!/usr/bin/env bash
# Metrics pipeline benchmark (benches/metrics.rs), all on 127.0.0.1:
#   1. agent cost: an idle 3-node Aether cluster against prometheus-node-exporter scraped every
#      second, for the same minute: CPU seconds, peak RSS, ratios;
#   2. leader scale: one real leader and 1,000 simulated nodes pushing updates at 1 Hz: leader
#      CPU, bytes per node per second on the wire, snapshot size, history memory.
# Installs prometheus-node-exporter (Debian) when it is missing and builds the release binary.
#
# usage: scripts/bench/metrics.sh [bench options]   (scripts/bench/metrics.sh --help lists them)
# e.g.   scripts/bench/metrics.sh --agent-secs 120 --nodes 500
set -euo pipefail

cd "$(dirname "$0")/../.."

if ! command -v "${EXPORTER_BIN:-prometheus-node-exporter}" >/dev/null 2>&1; then
    echo "prometheus-node-exporter not found: installing it" >&2
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo_cmd=(sudo)
    fi
    "${sudo_cmd[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y prometheus-node-exporter
    # The package may start a system exporter on :9100; the bench runs its own on another port.
    # Stop the system one so it does not share the CPU during the measurement.
    "${sudo_cmd[@]}" systemctl stop prometheus-node-exporter >/dev/null 2>&1 || true
fi

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-$PWD/target/release/aether}"
cargo bench --bench metrics -- "$@"
