#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (Python 3.11):
#   redis-server and valkey-server (apt), .venv (VENV=dir picks another), editable install with the dev extra.
# Quiet on success; loud and non-zero on failure.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LOG="$(mktemp -t clusterpool-bootstrap.XXXXXX)"
trap 'echo "bootstrap: command failed (line $LINENO): $BASH_COMMAND" >>"$LOG"' ERR
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "bootstrap FAILED (exit $rc); log follows:" >&2; cat "$LOG" >&2; fi; rm -f "$LOG"' EXIT

die() { echo "bootstrap: $*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    fi
fi

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
    if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        die "need root or sudo to apt-get install $*"
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >>"$LOG" 2>&1
        APT_UPDATED=1
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >>"$LOG" 2>&1
}

# 1. redis-server
if [ -z "${REDIS_SERVER:-}" ] && ! command -v redis-server >/dev/null 2>&1 \
        && [ ! -x /usr/bin/redis-server ]; then
    apt_install redis-server
    # the package may start a system instance on 6379; the tests don't need it
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        "${SUDO[@]}" systemctl disable --now redis-server >>"$LOG" 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        "${SUDO[@]}" service redis-server stop >>"$LOG" 2>&1 || true
    fi
fi

# 1b. valkey-server (Valkey 8.0 from bookworm-backports): the second server the tests run against,
#     and the one that reports each node's availability zone (VALKEY_SERVER=path skips this)
BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources
if [ -z "${VALKEY_SERVER:-}" ] && ! command -v valkey-server >/dev/null 2>&1 \
        && [ ! -x /usr/bin/valkey-server ]; then
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
            die "need root or sudo to add bookworm-backports for valkey-server"
        fi
        printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
            'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
            | "${SUDO[@]}" tee "$BACKPORTS" >>"$LOG"
        APT_UPDATED=0
    fi
    apt_install -t bookworm-backports valkey-server
    command -v valkey-server >/dev/null 2>&1 || die "valkey-server not on PATH after apt-get install"
    # like redis-server, the package may start a system instance on 6379
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        "${SUDO[@]}" systemctl disable --now valkey-server >>"$LOG" 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        "${SUDO[@]}" service valkey-server stop >>"$LOG" 2>&1 || true
    fi
fi

# 2. virtualenv
PY="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
command -v "$PY" >/dev/null 2>&1 || die "$PY not found"
if [ ! -x "$VENV"/bin/python ] || ! "$VENV"/bin/python -m pip --version >>"$LOG" 2>&1; then
    rm -rf "$VENV"
    if ! "$PY" -m venv "$VENV" >>"$LOG" 2>&1; then
        # Debian ships ensurepip separately
        rm -rf "$VENV"
        pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        apt_install python3-venv "python${pyver}-venv" \
            || apt_install python3-venv
        "$PY" -m venv "$VENV" >>"$LOG" 2>&1 || die "python3 -m venv failed"
    fi
fi

# 3. the project with its dev extra, resolved afresh: the newest releases pyproject.toml's ranges
#    allow, not whatever an older run left in the venv (EXTRA_PIP_ARGS pins a matrix leg's versions).
#    A venv from before the rename to redis-clusterpool still holds the old 'clusterpool'
#    distribution: remove it (and its egg-info) so one distribution owns the package.
"$VENV"/bin/pip uninstall -q -y clusterpool >>"$LOG" 2>&1 || true
rm -rf clusterpool.egg-info
"$VENV"/bin/pip install -q --upgrade --upgrade-strategy eager -e '.[dev]' ${EXTRA_PIP_ARGS:-} >>"$LOG" 2>&1
"$VENV"/bin/python -c 'import redis, clusterpool.asyncio; print("bootstrap: redis-py", redis.__version__, "in", __import__("sys").prefix)' \
    || die "import clusterpool failed in .venv"
