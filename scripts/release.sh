#!/usr/bin/env bash
# Build the release artifacts: static, stripped `aether` binaries for Linux, laid out as the
# download site serves them, which is what install.sh reads:
#
#   OUT/latest                          the version, one line
#   OUT/<version>/aether-x86_64         x86-64-v3 (AVX2 …: Haswell 2013 and later); refuses an
#                                       older CPU at start with a message
#   OUT/<version>/aether-x86_64-baseline  any x86-64 CPU (the model runs slower)
#   OUT/<version>/aether-aarch64        armv8-a
#   OUT/<version>/SHA256SUMS
#
# Usage: scripts/release.sh [OUT]        (OUT defaults to dist/)
# Env:   ARCHES="x86_64 x86_64-baseline aarch64" (a subset builds fewer)
#        AETHER_RELEASE_TARGET=<dir>     cargo target dirs, one per artifact [target/release-artifacts]
#
# Needs: rustup targets x86_64-unknown-linux-gnu and aarch64-unknown-linux-gnu, and for aarch64
# Debian's gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (the C parts: ring, the linker).
# qemu-user, when present, runs the aarch64 artifact's `version` here.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-dist}
ARCHES=${ARCHES:-"x86_64 x86_64-baseline aarch64"}
TROOT=${AETHER_RELEASE_TARGET:-target/release-artifacts}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
COMMIT=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$COMMIT" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then
    COMMIT="$COMMIT-dirty"
fi
export AETHER_COMMIT=$COMMIT

die() {
    echo "release: $*" >&2
    exit 1
}

need_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$1" ||
        die "the rust target '$1' is missing: rustup target add $1"
}

# A static binary has no program interpreter and no shared libraries.
check_static() {
    local f=$1 dyn
    if readelf -lW "$f" | grep -q 'Requesting program interpreter'; then
        die "'$f' asks for a program interpreter: it is not static"
    fi
    dyn=$(readelf -dW "$f" | grep '(NEEDED)' || true)
    [ -z "$dyn" ] || die "'$f' needs shared libraries: $dyn"
}

build() {
    local arch=$1 dir=$1 triple flags start
    case $arch in
    x86_64)
        dir=x86_64-v3
        triple=x86_64-unknown-linux-gnu
        flags="-C target-cpu=x86-64-v3 -C target-feature=+crt-static"
        ;;
    x86_64-baseline)
        triple=x86_64-unknown-linux-gnu
        flags="-C target-cpu=x86-64 -C target-feature=+crt-static"
        ;;
    aarch64)
        triple=aarch64-unknown-linux-gnu
        flags="-C target-feature=+crt-static"
        command -v aarch64-linux-gnu-gcc >/dev/null ||
            die "aarch64-linux-gnu-gcc is missing: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        ;;
    *) die "unknown artifact '$arch': expected x86_64, x86_64-baseline or aarch64" ;;
    esac
    need_target "$triple"
    start=$(date +%s)
    # RUSTFLAGS replaces .cargo/config.toml's target-cpu; one target dir per artifact keeps
    # each build's cache apart (the flags differ).
    RUSTFLAGS="$flags" CARGO_TARGET_DIR="$TROOT/$dir" \
        cargo build --locked --profile dist --target "$triple" --bin aether
    cp "$TROOT/$dir/$triple/dist/aether" "$OUT/$VERSION/aether-$arch.tmp"
    mv "$OUT/$VERSION/aether-$arch.tmp" "$OUT/$VERSION/aether-$arch"
    check_static "$OUT/$VERSION/aether-$arch"
    echo "release: aether-$arch built in $(($(date +%s) - start)) s" >&2
}

mkdir -p "$OUT/$VERSION"
total_start=$(date +%s)
for a in $ARCHES; do
    build "$a"
done

(
    cd "$OUT/$VERSION"
    rm -f SHA256SUMS
    # Every artifact in the directory (a build of a subset keeps the others' lines).
    sha256sum aether-* >SHA256SUMS.tmp
    mv SHA256SUMS.tmp SHA256SUMS
)
echo "$VERSION" >"$OUT/latest"

# A single-node cluster on the artifact (under qemu-aarch64 for aarch64 on x86_64): ready,
# a write and its read back. Prints the milliseconds from exec to /readyz.
smoke() {
    local f=$1 tmp pid t0 ready="" got
    shift
    tmp=$(mktemp -d)
    t0=$(date +%s%3N)
    "$@" "$f" node --data-dir "$tmp/d" --name smoke --listen 127.0.0.1:7480 \
        --http 127.0.0.1:7481 2>"$tmp/log" &
    pid=$!
    for _ in $(seq 1 600); do
        if curl -fs http://127.0.0.1:7481/readyz >/dev/null 2>&1; then
            ready=$(($(date +%s%3N) - t0))
            break
        fi
        sleep 0.1
    done
    if [ -n "$ready" ]; then
        "$@" "$f" --data-dir "$tmp/d" kv put release-smoke ok >/dev/null
        got=$("$@" "$f" --data-dir "$tmp/d" kv get release-smoke)
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -z "$ready" ] || [ "$got" != ok ]; then
        cat "$tmp/log" >&2
        rm -rf "$tmp"
        die "'$f' did not run a single-node cluster (log above)"
    fi
    rm -rf "$tmp"
    echo "$ready"
}

# What was built, and that each runs.
host=$(uname -m)
printf '%-24s %10s %9s  %s\n' artifact bytes ready_ms "aether version" >&2
for a in $ARCHES; do
    f="$OUT/$VERSION/aether-$a"
    runner=()
    case "$a/$host" in
    x86_64*/x86_64 | aarch64/aarch64) ;;
    aarch64/*)
        if command -v qemu-aarch64 >/dev/null; then
            runner=(qemu-aarch64)
        else
            printf '%-24s %10s  %s\n' "aether-$a" "$(stat -c %s "$f")" \
                "(not run: install qemu-user to run it here)" >&2
            continue
        fi
        ;;
    *)
        printf '%-24s %10s  (not run on %s)\n' "aether-$a" "$(stat -c %s "$f")" "$host" >&2
        continue
        ;;
    esac
    ran=$("${runner[@]}" "$f" version | tr -s ' \n' ' ')
    ready=$(smoke "$f" "${runner[@]}")
    printf '%-24s %10s %9s  %s\n' "aether-$a" "$(stat -c %s "$f")" "$ready" "$ran" >&2
done
echo "release: $OUT/$VERSION (commit $COMMIT) in $(($(date +%s) - total_start)) s" >&2
