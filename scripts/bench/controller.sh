#!/usr/bin/env bash
# Controller simulator (benches/controller.rs): does prediction pay? Replays load traces (a daily
# sinusoid, a flash spike, a step, noise) one simulated second at a time through the controller's
# real pure core (brain rules + forecast, safety bounds; mode auto) and through a Kubernetes-HPA
# style reactive baseline, on a fluid-queue model of instances with a start-up delay; prints
# SLO-violation seconds, instance-seconds, slack and actions for both, the ratios, the verdict
# against the goal, and variants of Aether's knobs. No cluster, no network; about a minute.
#
# usage: scripts/bench/controller.sh [bench options]   (scripts/bench/controller.sh --help lists them)
# e.g.   scripts/bench/controller.sh --trace spike --startup 40 --target 0.7
set -euo pipefail

cd "$(dirname "$0")/../.."

cargo bench --bench controller -- "$@"
