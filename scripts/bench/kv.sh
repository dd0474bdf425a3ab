#!/usr/bin/env bash
# Write benchmark: a 3-node Aether cluster against a 3-member etcd cluster, all on 127.0.0.1.
# Installs etcd (Debian package etcd-server) when it is missing, builds the release binary, runs
# benches/kv.rs and prints writes/s, p50/p99 latency and leader-failover times for both systems.
#
# usage: scripts/bench/kv.sh [bench options]   (scripts/bench/kv.sh --help lists them)
# e.g.   scripts/bench/kv.sh --puts 5000 --failover-rounds 10
set -euo pipefail

cd "$(dirname "$0")/../.."

# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_package "${ETCD_BIN:-etcd}" etcd-server etcd

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-$PWD/target/release/aether}"
cargo bench --bench kv -- "$@"
