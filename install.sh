#!/bin/sh
# Aether installer: the 'aether' binary, its man pages, a systemd unit and an env file; it joins
# a cluster when given AETHER_JOIN and a token, and it writes an uninstaller.
#
#   curl -fsSL https://get.aether.sh/install.sh | sudo sh
#   curl -fsSL https://get.aether.sh/install.sh | sudo AETHER_JOIN=10.0.0.1:7420 AETHER_TOKEN_FILE=/root/aether.token sh
#   sudo sh install.sh --uninstall [--purge]       (or: sudo aether-uninstall.sh [--purge])
#
# Settings, all from the environment, all optional:
#   AETHER_VERSION      version to install [latest]
#   AETHER_BASE_URL     release site: <base>/latest, <base>/<version>/aether-<arch>, <base>/<version>/SHA256SUMS
#   AETHER_ARTIFACT     artifact to install instead of the detected one (aether-x86_64,
#                       aether-x86_64-baseline, aether-aarch64)
#   AETHER_BINARY       install this local file instead of downloading (air-gapped hosts)
#   AETHER_SHA256       expected sha256 of the binary (checked when given; downloads are always
#                       checked against SHA256SUMS)
#   AETHER_NAME, AETHER_ADVERTISE, AETHER_JOIN   written to /etc/aether/aether.env (set one
#                       to the empty string to remove it; unset keeps what the file has)
#   AETHER_TOKEN or AETHER_TOKEN_FILE            the join token (a file keeps it out of `ps`
#                       and shell history); joining needs AETHER_JOIN and a token
#   AETHER_DRY_RUN=1    print what would be done and change nothing
#   AETHER_ROOT         prefix for every path written or read (tests, image builds) [/]
#   AETHER_CPUINFO      file read for the CPU's flags [/proc/cpuinfo]: x86_64 CPUs with avx2, fma,
#                       bmi1, bmi2, f16c, movbe and abm (x86-64-v3) get aether-x86_64, others
#                       aether-x86_64-baseline
#
# Everything below is definitions: the only command that runs is the last line, so a download
# cut off midway runs nothing.

# The release site (the one place to change it).
default_base_url=https://get.aether.sh/releases

say() { printf 'aether-install: %s\n' "$*"; }
warn() { printf 'aether-install: warning: %s\n' "$*" >&2; }
die() {
    printf 'aether-install: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    say "usage: sh install.sh [--uninstall [--purge]]; settings come from the environment (see the top of install.sh)"
}

# Removes what a failed or interrupted run left: the temp dir and half-written files.
cleanup() {
    if [ -n "${staged:-}" ]; then rm -f "$staged"; fi
    if [ -n "${staged_bin:-}" ]; then rm -f "$staged_bin"; fi
    if [ -n "${tmp_dir:-}" ]; then rm -rf "$tmp_dir"; fi
}

# flag NAME VALUE: true for 1/yes/true, false for unset/0/no/false.
flag() {
    case $2 in
        '' | 0 | no | false) return 1 ;;
        1 | yes | true) return 0 ;;
        *) die "$1='$2' is not 1 or 0: set $1=1, or leave it unset" ;;
    esac
}

# check_value NAME VALUE: a value the env file holds unquoted, safe for systemd and for `. file`.
check_value() {
    case $2 in
        *[!]A-Za-z0-9._~:,/@+=[-]*)
            die "$1='$2' has a character other than letters, digits and . _ ~ : , / @ + = [ ] -: remove it (addresses look like 10.0.0.1:7420 or [fd00::1]:7420)"
            ;;
    esac
}

# trim VALUE: without leading and trailing white space (builtins only: it handles the token).
trim() {
    t=$1
    t=${t%"${t##*[![:space:]]}"}
    t=${t#"${t%%[![:space:]]*}"}
    printf '%s' "$t"
}

# sha256_of FILE: its hex sha256 on stdout.
sha256_of() {
    if [ "$sha_tool" = sha256sum ]; then
        h=$(sha256sum <"$1") || return 1
    else
        h=$(shasum -a 256 <"$1") || return 1
    fi
    printf '%s' "${h%% *}"
}

lower() { printf '%s' "$1" | tr 'A-F' 'a-f'; }

# fetch URL OUT
fetch() {
    if [ "$downloader" = curl ]; then
        curl -fsSL --retry 3 --connect-timeout 30 -o "$2" "$1"
    else
        wget -q --tries=3 --timeout=30 -O "$2" "$1"
    fi
}

fetch_or_die() {
    fetch "$1" "$2" || die "download of '$1' failed ($downloader exit $?): check the network, AETHER_BASE_URL='$base' and AETHER_VERSION='$version_req'"
}

# act DESCRIPTION COMMAND...: runs it, or in a dry run says it would.
act() {
    d=$1
    shift
    if [ "$dry" = 1 ]; then
        say "would run: $d"
        return 0
    fi
    say "running: $d"
    "$@" </dev/null || die "'$d' failed (exit $?): $remedy"
}

# unwritable WHAT PATH: stops, saying WHAT (write, create) failed on PATH and the remedy.
unwritable() {
    die "cannot $1 '$2': the file system is read-only or you lack permission; run as root, or set AETHER_ROOT to a writable directory"
}

# put SRC DEST MODE: DEST gets SRC's content atomically (a temp file in DEST's dir, then mv).
put() {
    staged="${2%/*}/.${2##*/}.new.$$"
    if ! { cp "$1" "$staged" && chmod "$3" "$staged" && mv -f "$staged" "$2"; }; then
        unwritable write "$2"
    fi
    staged=
}

# place SRC DEST MODE DIRMODE: writes DEST (its dir made with DIRMODE) from SRC, or in a dry
# run says it would.
place() {
    if [ "$dry" = 1 ]; then
        say "would write $2 (mode $3)"
        return 0
    fi
    make_dir "$4" "${2%/*}"
    put "$1" "$2" "$3"
    say "wrote $2"
}

# make_dir MODE DIR: creates DIR if missing (parents too); MODE applies to DIR.
make_dir() {
    if [ ! -d "$2" ]; then
        if ! { mkdir -p "$2" && chmod "$1" "$2"; }; then
            unwritable create "$2"
        fi
    fi
}

unit_text() {
    cat <<'EOF'
# Written by install.sh; re-running it rewrites this file. Put local changes in a drop-in
# (systemctl edit aether).
[Unit]
Description=Aether cluster node
Documentation=man:aether(1)
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
EnvironmentFile=/etc/aether/aether.env
ExecStart=/usr/local/bin/aether node
Restart=on-failure
RestartSec=2s
WatchdogSec=30s
TimeoutStartSec=5min
TimeoutStopSec=90s
KillMode=mixed
# The node makes a cgroup per instance inside its own: systemd hands it that subtree.
Delegate=yes
LimitNOFILE=1048576
TasksMax=infinity

[Install]
WantedBy=multi-user.target
EOF
}

uninstaller_text() {
    cat <<'EOF'
#!/bin/sh
# Removes what install.sh installed: the aether service, binary, unit, env file and man pages,
# and this script. The data dir (cluster state, certificates, logs) and the 'aether' user stay unless
# given --purge. AETHER_ROOT prefixes every path, as for install.sh.
#
#   sudo aether-uninstall.sh [--purge]

say() { printf 'aether-uninstall: %s\n' "$*"; }
warn() { printf 'aether-uninstall: warning: %s\n' "$*" >&2; }
die() {
    printf 'aether-uninstall: error: %s\n' "$*" >&2
    exit 1
}

main() {
    set -u
    purge=0
    for arg in "$@"; do
        case $arg in
            --purge) purge=1 ;;
            -h | --help)
                say "usage: aether-uninstall.sh [--purge]   (--purge also removes the data dir and the 'aether' user)"
                exit 0
                ;;
            *) die "unknown argument '$arg': the only option is --purge" ;;
        esac
    done
    root=${AETHER_ROOT:-}
    root=${root%/}
    if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
        die "run as root: sudo sh /usr/local/bin/aether-uninstall.sh${1:+ $*}"
    fi
    bin=$root/usr/local/bin/aether
    unit=$root/etc/systemd/system/aether.service
    env_dir=$root/etc/aether
    env_file=$env_dir/aether.env
    self=$root/usr/local/bin/aether-uninstall.sh
    man_dir=$root/usr/local/share/man/man1

    data_dir=/var/lib/aether
    if [ -r "$env_file" ]; then
        while IFS= read -r line || [ -n "$line" ]; do
            case $line in AETHER_DATA_DIR=?*) data_dir=${line#*=} ;; esac
        done <"$env_file"
    fi
    case $data_dir in
        / | /bin | /boot | /dev | /etc | /home | /lib | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /var | /var/lib)
            if [ "$purge" = 1 ]; then
                die "refusing to purge the data dir '$data_dir' named in '$env_file': remove what you mean to by hand"
            fi
            ;;
        /*) ;;
        *) die "AETHER_DATA_DIR='$data_dir' in '$env_file' is not an absolute path: fix the file, then re-run" ;;
    esac

    systemd=0
    if [ -d "$root/run/systemd/system" ]; then systemd=1; fi
    if [ "$systemd" = 1 ] && [ -f "$unit" ]; then
        say "running: systemctl disable --now aether"
        systemctl disable --now aether </dev/null ||
            warn "'systemctl disable --now aether' failed: check 'systemctl status aether'; removing the files anyway"
    fi
    for f in "$bin" "$unit" "$env_file"; do
        if [ -e "$f" ]; then
            rm -f "$f" || die "cannot remove '$f': run as root"
            say "removed $f"
        fi
    done
    for f in "$man_dir/aether.1" "$man_dir"/aether-*.1; do
        if [ -e "$f" ]; then rm -f "$f" || die "cannot remove '$f': run as root"; fi
    done
    if [ -d "$env_dir" ] && ! rmdir "$env_dir" 2>/dev/null; then
        say "kept $env_dir: it holds files install.sh did not write"
    fi
    if [ "$systemd" = 1 ]; then
        say "running: systemctl daemon-reload"
        systemctl daemon-reload </dev/null || warn "'systemctl daemon-reload' failed: run it by hand"
    fi

    if [ "$purge" = 1 ]; then
        if [ -e "$root$data_dir" ]; then
            rm -rf "$root$data_dir" || die "cannot remove '$root$data_dir': run as root"
            say "removed $root$data_dir"
        fi
        if getent passwd aether >/dev/null 2>&1; then
            if command -v userdel >/dev/null 2>&1; then
                say "running: userdel aether"
                userdel aether </dev/null || warn "'userdel aether' failed: remove the user by hand"
            elif command -v deluser >/dev/null 2>&1; then
                say "running: deluser aether"
                deluser aether </dev/null || warn "'deluser aether' failed: remove the user by hand"
            else
                warn "neither userdel nor deluser is here: remove the user 'aether' by hand"
            fi
        fi
    elif [ -d "$root$data_dir" ]; then
        say "kept the data dir $root$data_dir (cluster state, certificates, logs) and the user 'aether': remove them with 'rm -rf $root$data_dir' and 'userdel aether'"
    fi
    rm -f "$self"
    say "aether is uninstalled. If this node was a cluster member, run 'aether remove <name>' on another member."
}

main "$@"
EOF
}

# The settings the env file already holds, so a re-run without them (an upgrade) keeps them.
read_env_file() {
    old_name='' old_advertise='' old_join='' old_token='' old_data_dir='' old_user=''
    [ -e "$env_file" ] || return 0
    [ -r "$env_file" ] || die "cannot read '$env_file': run as root: $sudo_hint"
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
            AETHER_NAME=*) old_name=${line#*=} ;;
            AETHER_ADVERTISE=*) old_advertise=${line#*=} ;;
            AETHER_JOIN=*) old_join=${line#*=} ;;
            AETHER_TOKEN=*) old_token=${line#*=} ;;
            AETHER_DATA_DIR=*) old_data_dir=${line#*=} ;;
            AETHER_DEPLOY_USER=*) old_user=${line#*=} ;;
        esac
    done <"$env_file"
}

env_header1="# aether node settings, read by aether.service (EnvironmentFile=), or by hand:"
env_header2="#   set -a; . /etc/aether/aether.env; set +a; /usr/local/bin/aether node"
env_header3="# install.sh rewrites the AETHER_ lines it manages and keeps any other line."

# write_env OUT: the env file's new content.
write_env() {
    {
        printf '%s\n%s\n%s\n' "$env_header1" "$env_header2" "$env_header3"
        printf 'AETHER_DATA_DIR=%s\n' "$data_dir"
        printf 'AETHER_DEPLOY_USER=%s\n' "$deploy_user"
        if [ -n "$name" ]; then printf 'AETHER_NAME=%s\n' "$name"; fi
        if [ -n "$advertise" ]; then printf 'AETHER_ADVERTISE=%s\n' "$advertise"; fi
        if [ -n "$join" ]; then printf 'AETHER_JOIN=%s\n' "$join"; fi
        if [ -n "$token" ]; then printf 'AETHER_TOKEN=%s\n' "$token"; fi
        if [ -e "$env_file" ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                case $line in
                    "$env_header1" | "$env_header2" | "$env_header3") ;;
                    AETHER_DATA_DIR=* | AETHER_DEPLOY_USER=* | AETHER_NAME=* | AETHER_ADVERTISE=*) ;;
                    AETHER_JOIN=* | AETHER_TOKEN=*) ;;
                    *) printf '%s\n' "$line" ;;
                esac
            done <"$env_file"
        fi
    } >"$1"
}

# show_env FILE: prints it with the token redacted (dry run).
show_env() {
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in
            AETHER_TOKEN=*) say "    AETHER_TOKEN=<redacted>" ;;
            *) say "    $line" ;;
        esac
    done <"$1"
}

uninstall() {
    tmp_dir=$(mktemp -d) || die "cannot create a temp dir: check TMPDIR and free space"
    uninstaller_text >"$tmp_dir/aether-uninstall.sh"
    sh "$tmp_dir/aether-uninstall.sh" "$@"
}

main() {
    set -u
    umask 022
    staged=
    staged_bin=
    tmp_dir=
    trap cleanup EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM

    sudo_hint="curl -fsSL ${default_base_url%/releases}/install.sh | sudo sh (or: sudo sh install.sh)"
    mode=install
    purge=
    for arg in "$@"; do
        case $arg in
            --uninstall) mode=uninstall ;;
            --purge) purge=--purge ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown argument '$arg': install.sh takes only --uninstall [--purge]; settings come from AETHER_* variables" ;;
        esac
    done
    if [ "$mode" = uninstall ]; then
        uninstall ${purge:+"$purge"}
        exit $?
    fi
    [ -z "$purge" ] || die "--purge goes with --uninstall: sh install.sh --uninstall --purge"

    dry=0
    if flag AETHER_DRY_RUN "${AETHER_DRY_RUN:-}"; then dry=1; fi
    root=${AETHER_ROOT:-}
    root=${root%/}
    if [ -n "$root" ] && [ ! -d "$root" ]; then
        die "AETHER_ROOT='$root' is not a directory: create it, or unset AETHER_ROOT to install into /"
    fi
    if [ -z "$root" ] && [ "$dry" = 0 ] && [ "$(id -u)" != 0 ]; then
        die "run as root: $sudo_hint"
    fi
    bin_dir=$root/usr/local/bin
    bin_path=$bin_dir/aether
    uninstaller_path=$bin_dir/aether-uninstall.sh
    env_dir=$root/etc/aether
    env_file=$env_dir/aether.env
    unit_path=$root/etc/systemd/system/aether.service
    man_dir=$root/usr/local/share/man/man1
    remedy="fix what it says, then re-run install.sh"

    # The platform.
    os=$(uname -s)
    [ "$os" = Linux ] || die "aether runs on Linux only, and this is '$os': install it on a Linux host (x86_64 or aarch64)"
    artifact=${AETHER_ARTIFACT:-}
    if [ -z "$artifact" ] && [ -z "${AETHER_BINARY:-}" ]; then
        machine=$(uname -m)
        case $machine in
            x86_64 | amd64)
                cpuinfo=${AETHER_CPUINFO:-/proc/cpuinfo}
                flags=
                if [ -r "$cpuinfo" ]; then
                    flags=$(grep -m1 '^flags' "$cpuinfo" | sed 's/^[^:]*://')
                else
                    warn "cannot read '$cpuinfo' to check the CPU's flags: assuming none"
                fi
                missing=
                # x86-64-v3 as the binary's own start-up check has it (abm is how cpuinfo names lzcnt).
                for f in avx2 fma bmi1 bmi2 f16c movbe abm; do
                    case " $flags " in
                        *[[:space:]]"$f"[[:space:]]*) ;;
                        *) missing="${missing:+$missing, }$f" ;;
                    esac
                done
                if [ -z "$missing" ]; then
                    artifact=aether-x86_64
                else
                    artifact=aether-x86_64-baseline
                    say "this CPU lacks $missing: installing the baseline build (the on-device model runs slower)"
                fi
                ;;
            aarch64 | arm64) artifact=aether-aarch64 ;;
            *) die "unsupported architecture '$machine': aether is built for x86_64 and aarch64 (AETHER_ARTIFACT picks a build by hand)" ;;
        esac
    fi
    case $artifact in
        *[!A-Za-z0-9._-]*) die "AETHER_ARTIFACT='$artifact' is not an artifact name: use aether-x86_64, aether-x86_64-baseline or aether-aarch64" ;;
    esac

    # The settings, checked before anything is fetched or changed.
    read_env_file
    if [ "${AETHER_NAME+set}" = set ]; then name=$AETHER_NAME; else name=$old_name; fi
    if [ "${AETHER_ADVERTISE+set}" = set ]; then advertise=$AETHER_ADVERTISE; else advertise=$old_advertise; fi
    if [ "${AETHER_JOIN+set}" = set ]; then join=$AETHER_JOIN; else join=$old_join; fi
    check_value AETHER_NAME "$name"
    check_value AETHER_ADVERTISE "$advertise"
    check_value AETHER_JOIN "$join"
    data_dir=${old_data_dir:-/var/lib/aether}
    deploy_user=${old_user:-aether}
    case $data_dir in
        /*) ;;
        *) die "AETHER_DATA_DIR='$data_dir' in '$env_file' is not an absolute path: fix the file, or remove the line" ;;
    esac
    check_value AETHER_DATA_DIR "$data_dir"
    check_value AETHER_DEPLOY_USER "$deploy_user"
    token_source=
    if [ -n "${AETHER_TOKEN_FILE:-}" ]; then
        [ -z "${AETHER_TOKEN:-}" ] || die "both AETHER_TOKEN and AETHER_TOKEN_FILE are set: keep one (the file keeps the token out of ps and shell history)"
        if [ ! -f "$AETHER_TOKEN_FILE" ] || [ ! -r "$AETHER_TOKEN_FILE" ]; then
            die "cannot read the token file AETHER_TOKEN_FILE='$AETHER_TOKEN_FILE': check the path (run as root if only root may read it)"
        fi
        token=
        IFS= read -r token <"$AETHER_TOKEN_FILE" || [ -n "$token" ] ||
            die "the token file '$AETHER_TOKEN_FILE' is empty: put the token printed by 'aether token create' in it"
        token=$(trim "$token")
        token_source="the token file '$AETHER_TOKEN_FILE'"
    elif [ "${AETHER_TOKEN+set}" = set ]; then
        token=$(trim "$AETHER_TOKEN")
        token_source=AETHER_TOKEN
    else
        # The stored token goes with the stored join address: clearing AETHER_JOIN drops it.
        token=$old_token
        if [ -z "$join" ]; then token=''; fi
        token_source="'$env_file'"
    fi
    case $token in
        *[!A-Za-z0-9._~:,/@+=-]*) die "the token from $token_source has a character a token does not have: copy the whole token printed by 'aether token create' (not shown here)" ;;
    esac
    if [ -n "$join" ] && [ -z "$token" ]; then
        die "AETHER_JOIN='$join' needs a join token: set AETHER_TOKEN_FILE to a file holding the token printed by 'aether token create' on a member (or AETHER_TOKEN)"
    fi
    if [ -z "$join" ] && [ -n "$token" ]; then
        die "a join token was given without AETHER_JOIN: set AETHER_JOIN to a member's address (host:7420), or drop the token to start a new cluster"
    fi
    if [ -n "${AETHER_JOIN:-}" ] && [ "$join" != "$old_join" ] && [ -e "$root$data_dir/raft.redb" ]; then
        warn "'$root$data_dir' already holds cluster state: AETHER_JOIN takes effect only with an empty data dir (uninstall with --purge first to join another cluster)"
    fi

    # Tools.
    if command -v sha256sum >/dev/null 2>&1; then
        sha_tool=sha256sum
    elif command -v shasum >/dev/null 2>&1; then
        sha_tool=shasum
    else
        die "no sha256 tool: install sha256sum (coreutils) or shasum (perl)"
    fi
    tmp_dir=$(mktemp -d) || die "cannot create a temp dir: check TMPDIR and free space"

    installed_sha=
    if [ -f "$bin_path" ]; then
        installed_sha=$(sha256_of "$bin_path") || die "cannot read '$bin_path': run as root: $sudo_hint"
    fi
    pinned=
    if [ -n "${AETHER_SHA256:-}" ]; then pinned=$(lower "$(trim "$AETHER_SHA256")"); fi

    # The binary: what it should be (its sha256), and where it comes from.
    new_bin=
    if [ -n "${AETHER_BINARY:-}" ]; then
        src=$AETHER_BINARY
        if [ ! -f "$src" ] || [ ! -r "$src" ]; then
            die "AETHER_BINARY='$src' is not a readable file: check the path"
        fi
        new_sha=$(sha256_of "$src") || die "cannot read AETHER_BINARY='$src'"
        if [ -n "$pinned" ] && [ "$pinned" != "$new_sha" ]; then
            die "checksum mismatch for '$src': expected '$pinned' (AETHER_SHA256), got '$new_sha'; nothing was changed. Copy the file again, or check AETHER_SHA256"
        fi
        version=unknown
        if [ -x "$src" ]; then
            v=$("$src" --version 2>/dev/null </dev/null) && version=${v#aether }
        fi
        new_bin=$src
        origin="'$src'"
    else
        if command -v curl >/dev/null 2>&1; then
            downloader=curl
        elif command -v wget >/dev/null 2>&1; then
            downloader=wget
        else
            die "no download tool: install curl or wget (apt-get install curl, dnf install curl, apk add curl), or copy the binary here and set AETHER_BINARY"
        fi
        base=${AETHER_BASE_URL:-$default_base_url}
        base=${base%/}
        case $base in
            https://*) ;;
            *) warn "AETHER_BASE_URL '$base' is not https: the checksums come from the same place as the binary, so they only catch a damaged download" ;;
        esac
        version_req=${AETHER_VERSION:-latest}
        if [ "$version_req" = latest ]; then
            fetch_or_die "$base/latest" "$tmp_dir/latest"
            version=
            IFS= read -r version <"$tmp_dir/latest" || [ -n "$version" ] ||
                die "'$base/latest' is empty: the release site is broken; set AETHER_VERSION to a version"
            version=$(trim "$version")
        else
            version=$version_req
        fi
        case $version in
            '' | *[!A-Za-z0-9.+_-]*) die "'$version' is not a version (from '$base/latest' or AETHER_VERSION): set AETHER_VERSION=0.1.0 or similar" ;;
        esac
        url=$base/$version/$artifact
        sums_url=$base/$version/SHA256SUMS
        fetch_or_die "$sums_url" "$tmp_dir/SHA256SUMS"
        new_sha=$(awk -v f="$artifact" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp_dir/SHA256SUMS")
        new_sha=$(lower "$new_sha")
        case $new_sha in
            '' | *[!0-9a-f]*) die "'$sums_url' has no sha256 for '$artifact': the release lacks this build; set AETHER_ARTIFACT or AETHER_VERSION" ;;
        esac
        if [ -n "$pinned" ] && [ "$pinned" != "$new_sha" ]; then
            die "checksum mismatch for '$url': expected '$pinned' (AETHER_SHA256), but '$sums_url' says '$new_sha'; nothing was changed"
        fi
        origin="'$url'"
        if [ "$new_sha" != "$installed_sha" ]; then
            if [ "$dry" = 1 ]; then
                say "would download $url and check it against $sums_url"
            else
                say "downloading $url"
                fetch_or_die "$url" "$tmp_dir/$artifact"
                got=$(sha256_of "$tmp_dir/$artifact") || die "cannot read the download in '$tmp_dir'"
                if [ "$got" != "$new_sha" ]; then
                    die "checksum mismatch for '$url': expected '$new_sha' (from '$sums_url'), got '$got'; nothing was changed. The download was damaged or tampered with: re-run, and report it if it persists"
                fi
                new_bin=$tmp_dir/$artifact
            fi
        fi
    fi

    # What changes.
    bin_changed=0
    if [ "$new_sha" != "$installed_sha" ]; then bin_changed=1; fi
    (
        umask 077
        write_env "$tmp_dir/aether.env"
    )
    env_changed=0
    if ! cmp -s "$tmp_dir/aether.env" "$env_file"; then env_changed=1; fi
    unit_text >"$tmp_dir/aether.service"
    unit_existed=0
    if [ -e "$unit_path" ]; then unit_existed=1; fi
    unit_changed=0
    if ! cmp -s "$tmp_dir/aether.service" "$unit_path"; then unit_changed=1; fi
    uninstaller_text >"$tmp_dir/aether-uninstall.sh"
    uninstaller_changed=0
    if ! cmp -s "$tmp_dir/aether-uninstall.sh" "$uninstaller_path"; then uninstaller_changed=1; fi
    data_missing=0
    if [ ! -d "$root$data_dir" ]; then data_missing=1; fi
    man_changed=0
    if [ "$bin_changed" = 1 ] || [ ! -f "$man_dir/aether.1" ]; then man_changed=1; fi
    user_missing=0
    if command -v getent >/dev/null 2>&1; then
        getent passwd "$deploy_user" >/dev/null 2>&1 || user_missing=1
    else
        grep -q "^$deploy_user:" /etc/passwd 2>/dev/null || user_missing=1
    fi
    systemd=0
    if [ -d "$root/run/systemd/system" ]; then systemd=1; fi

    if [ "$version" = unknown ] && [ "$bin_changed" = 0 ] && v=$("$bin_path" --version 2>/dev/null </dev/null); then
        version=${v#aether }
    fi
    if [ $((bin_changed + env_changed + unit_changed + uninstaller_changed + data_missing + user_missing + man_changed)) = 0 ]; then
        say "aether $version is already installed; nothing changed"
        exit 0
    fi
    if [ "$dry" = 1 ]; then say "dry run (AETHER_DRY_RUN=1): nothing will change"; fi

    # The new binary first: staged next to the old one and run, so a binary that does not run on
    # this host changes nothing.
    if [ "$bin_changed" = 1 ]; then
        if [ "$dry" = 1 ]; then
            say "would install $origin as $bin_path (mode 0755), after checking that it runs"
        else
            make_dir 0755 "$bin_dir"
            staged_bin=$bin_dir/.aether.new.$$
            if ! { cp "$new_bin" "$staged_bin" && chmod 0755 "$staged_bin"; }; then
                unwritable write "$staged_bin"
            fi
            out=$("$staged_bin" --version 2>&1 </dev/null) ||
                die "the new binary from $origin does not run on this host ('aether --version' said: $out); nothing was changed. Check the architecture, or set AETHER_ARTIFACT=aether-x86_64-baseline on an older x86_64 CPU"
            if [ "$version" = unknown ]; then version=${out#aether }; fi
        fi
    fi

    if [ "$user_missing" = 1 ]; then
        shell=/usr/sbin/nologin
        if [ ! -x "$shell" ] && [ -x /sbin/nologin ]; then shell=/sbin/nologin; fi
        remedy="create the user by hand (useradd --system --no-create-home --shell $shell $deploy_user), then re-run install.sh"
        if command -v useradd >/dev/null 2>&1; then
            act "useradd --system --no-create-home --shell $shell $deploy_user" \
                useradd --system --no-create-home --shell "$shell" "$deploy_user"
        elif command -v adduser >/dev/null 2>&1; then
            act "adduser -S -D -H -s $shell $deploy_user" adduser -S -D -H -s "$shell" "$deploy_user"
        else
            die "neither useradd nor adduser is here to create the user '$deploy_user' that workloads run as: $remedy"
        fi
    fi

    if [ "$env_changed" = 1 ]; then
        place "$tmp_dir/aether.env" "$env_file" 0600 0700
        if [ "$dry" = 1 ]; then show_env "$tmp_dir/aether.env"; fi
    fi
    if [ "$unit_changed" = 1 ]; then
        place "$tmp_dir/aether.service" "$unit_path" 0644 0755
    fi
    if [ "$data_missing" = 1 ]; then
        if [ "$dry" = 1 ]; then
            say "would create $root$data_dir (mode 0700)"
        else
            make_dir 0700 "$root$data_dir"
            say "created $root$data_dir"
        fi
    fi
    if [ "$bin_changed" = 1 ] && [ "$dry" = 0 ]; then
        mv -f "$staged_bin" "$bin_path" ||
            unwritable write "$bin_path"
        staged_bin=
        say "installed aether $version as $bin_path"
    fi
    if [ "$man_changed" = 1 ]; then
        if [ "$dry" = 1 ]; then
            say "would write the man pages (aether man) into $man_dir"
        else
            make_dir 0755 "$man_dir"
            # The pages of this version only: the old ones go first (a command may have gone).
            if "$bin_path" man "$tmp_dir/man" >/dev/null 2>&1 </dev/null && [ -f "$tmp_dir/man/aether.1" ]; then
                rm -f "$man_dir/aether.1" "$man_dir"/aether-*.1
                cp "$tmp_dir/man"/*.1 "$man_dir/" ||
                    unwritable "write into" "$man_dir"
                say "wrote the man pages into $man_dir (man aether)"
            else
                warn "'aether man' failed: no man pages installed; 'aether --help' has the same text"
            fi
        fi
    fi
    if [ "$uninstaller_changed" = 1 ]; then
        if [ "$dry" = 1 ]; then
            say "would write $uninstaller_path (mode 0755)"
        else
            make_dir 0755 "$bin_dir"
            put "$tmp_dir/aether-uninstall.sh" "$uninstaller_path" 0755
            say "wrote $uninstaller_path"
        fi
    fi

    if [ "$systemd" = 1 ]; then
        command -v systemctl >/dev/null 2>&1 ||
            die "systemd runs here but systemctl is missing: install it, or start the node by hand (see 'aether node --help')"
        remedy="see 'systemctl status aether' and 'journalctl -u aether -n 50'"
        if [ "$unit_existed" = 0 ]; then
            act "systemctl daemon-reload" systemctl daemon-reload
            remedy="$remedy; once fixed: systemctl enable --now aether"
            act "systemctl enable --now aether" systemctl enable --now aether
        else
            if [ "$unit_changed" = 1 ] || [ "$env_changed" = 1 ]; then
                act "systemctl daemon-reload" systemctl daemon-reload
            fi
            if [ $((bin_changed + unit_changed + env_changed)) != 0 ]; then
                act "systemctl restart aether" systemctl restart aether
            fi
        fi
    fi

    if [ "$dry" = 1 ]; then
        say "dry run done: nothing was changed"
        exit 0
    fi
    say "aether $version is installed (uninstall: $uninstaller_path [--purge])"
    if [ "$systemd" = 1 ]; then
        say "it runs as the systemd service 'aether': systemctl status aether; journalctl -u aether -f; aether status"
    else
        say "systemd is not running here: start the node by hand (as root) with"
        say "    set -a; . /etc/aether/aether.env; set +a; /usr/local/bin/aether node"
    fi
    if [ -z "$join" ]; then
        say "to add a node: run 'aether token create' here, put the token in a file on the new node, and there run"
        say "    curl -fsSL ${default_base_url%/releases}/install.sh | sudo AETHER_JOIN=<this node's address>:7420 AETHER_TOKEN_FILE=<file> sh"
    fi
}

main "$@"
