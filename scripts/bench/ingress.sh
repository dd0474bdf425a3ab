#!/usr/bin/env bash
# Ingress benchmark (benches/ingress.rs): Aether's ingress against HAProxy proxying to the same
# backend instance, with the same load, on this machine's loopback:
#   1. saturation: wrk closed loop against the backend directly, HAProxy, Aether's ingress on the
#      instance's node (local) and on the other node (remote, through QUIC): requests/s, proxy
#      CPU cores, requests/s per proxy core, Aether / HAProxy per core;
#   2. fixed rate at half of HAProxy's maximum, open loop: p50/p99 and the latency each proxy adds
#      over the direct path; then the same at a light load (1,000 requests/s);
#   3. RSS of each proxy with 1,000 idle client connections.
# Installs haproxy and wrk (Debian) when they are missing and builds the release binary.
#
# usage: scripts/bench/ingress.sh [bench options]   (scripts/bench/ingress.sh --help lists them)
# e.g.   scripts/bench/ingress.sh --secs 10 --connections 64 --idle 2000
set -euo pipefail

cd "$(dirname "$0")/../.."

# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_package "${HAPROXY_BIN:-haproxy}" haproxy haproxy
ensure_package "${WRK_BIN:-wrk}" wrk wrk

# 1,000 idle client connections per proxy, and the proxies' ends of them.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/aether}"
cargo bench --bench ingress -- "$@"
