#!/usr/bin/env bash
# Workload benchmark (benches/deploy.rs) on 3 real nodes over 127.0.0.1: time from
# 'aether blueprint apply' to every instance active (HTTP health check passing) for 100
# instances of a tiny HTTP server, and from 'aether blueprint rm' to every process gone;
# then the placement benchmark (1,000 nodes x 10,000 instances).
#
# usage: scripts/bench/deploy.sh [bench options]   (scripts/bench/deploy.sh --help lists them)
# e.g.   scripts/bench/deploy.sh --instances 200 --rounds 5
set -euo pipefail

cd "$(dirname "$0")/../.."

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/aether}"
cargo bench --bench deploy -- "$@"
if [ "${1:-}" != "--help" ] && [ "${1:-}" != "-h" ]; then
    cargo bench --bench placement
fi
