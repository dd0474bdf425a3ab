#!/usr/bin/env bash
# Rollout benchmark (benches/rollout.rs): 3 real Aether nodes on this machine's loopback, each
# binding service ports on its own address (127.0.0.51–53), steady HTTP load through their
# ingresses from keep-alive connections in the bench (every non-200 answer or transport error
# counts as failed), and instances that are the bench binary itself in backend mode:
#   1. a rolling update of 12 copies (max_parallel 2, min_healthy_time 2 s): its duration
#      against the floor (instance start-up + min_healthy_time) x batches, and the requests
#      sent and failed during it (goal: none failed);
#   2. a bad canary (v2 fails 20 % of requests; 20 % of the traffic; analysis every 10 s,
#      min_requests 50, max_error_rate 1 %): the time from its first error to the rollout
#      rolled back with every answer from v1 (goal: one interval + 2 s), the reason it
#      recorded, the failures the client saw and what the analysis counted.
# Builds the release binary first. A run takes about 40 s after the build.
#
# usage: scripts/bench/rollout.sh [bench options]   (scripts/bench/rollout.sh --help lists them)
# e.g.   scripts/bench/rollout.sh --max-parallel 3 --min-healthy-ms 1000 --rate 400
set -euo pipefail

cd "$(dirname "$0")/../.."

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/aether}"
cargo bench --bench rollout -- "$@"
