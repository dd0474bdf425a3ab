# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run).

# ensure_package COMMAND PACKAGE SERVICE: install the Debian PACKAGE when COMMAND is missing, then
# stop the system SERVICE the package may start (the benchmarks run their own instance on other
# ports and data dirs; a system one would only share the CPU).
ensure_package() {
    local cmd=$1 package=$2 service=$3
    if command -v "$cmd" >/dev/null 2>&1; then
        return
    fi
    echo "$cmd not found: installing the $package package" >&2
    local sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo_cmd=(sudo)
    fi
    "${sudo_cmd[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y "$package"
    "${sudo_cmd[@]}" systemctl stop "$service" >/dev/null 2>&1 || true
}
