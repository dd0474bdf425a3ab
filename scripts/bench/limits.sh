#!/usr/bin/env bash
# Isolation benchmark (benches/limits.rs): the node's cost of a cgroup per instance (issue 18).
# One real Aether node runs 100 idle instances (/bin/sleep 3600), twice in the same run: with
# limits on (a cgroup per instance: CPU quota and memory limit) and with
# AETHER_DEPLOY_LIMITS=false. Per mode: apply to all active, the node's CPU time during the
# start-up and over a 10 s steady window, its RSS, the instance cgroups under
# /sys/fs/cgroup/memory/aether/ while running and after 'blueprint rm'; then on − off per
# instance. Limits need root and a writable cgroup filesystem (v1 here).
# Builds the release binary first. A run takes about 30 s after the build.
#
# usage: scripts/bench/limits.sh [bench options]   (scripts/bench/limits.sh --help lists them)
# e.g.   scripts/bench/limits.sh --instances 200 --steady 20
set -euo pipefail

cd "$(dirname "$0")/../.."

cargo build --release --bin aether
export AETHER_BIN="${AETHER_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/aether}"
cargo bench --bench limits -- "$@"
