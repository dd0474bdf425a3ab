#!/usr/bin/env bash
# Write benchmark: a 3-node Aether cluster against a 3-member etcd cluster, all on 127.0.0.1.
# Installs etcd (Debian package etcd-server) when it is missing, builds the release binary, runs
# benches/kv.rs and prints writes/s, p50/p99 latency and leader-failover times for both systems.
#
# usage: scripts/bench/kv.sh [bench options]   (scripts/bench/kv.sh --help lists them)
# e.g.   scripts/bench/kv.sh --puts 5000 --failover-rounds 10
set -euo pipefail

cd "$(dirname "$0")/../.."

if ! command -v "${ETCD_BIN:-etcd}" >/dev/null 2>&1; then
    echo "etcd not found: installing the etcd-server package" >&2
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo_cmd=(sudo)
    fi
    "${sudo_cmd[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y etcd-server
    # The package may start a system etcd on the default ports; the bench uses its own ports and
    # data dirs, so it does not matter, but stop it when it can be stopped.
    "${sudo_cmd[@]}" systemctl stop etcd >/dev/null 2>&1 || true
fi

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-$PWD/target/release/aether}"
cargo bench --bench kv -- "$@"
