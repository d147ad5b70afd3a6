#!/usr/bin/env bash
# Set up everything azlift and its tests need, inside the project folder:
#   .venv/          Python virtual environment with azlift installed (editable) + test extras
#   .tools/         Azurite (storage emulator) from npm
# System packages (qemu-utils, openssh-server, busybox-static, python3-vmdkstream, xfsprogs
# and e2fsprogs for the reflink tests) come from apt when missing
# and when we are root (or have sudo). Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

need_apt=()
command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need_apt+=(busybox-static)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || need_apt+=(xfsprogs)
command -v filefrag >/dev/null 2>&1 || [ -x /usr/sbin/filefrag ] || need_apt+=(e2fsprogs)
# VMware's stream-optimized layout (grain directory at the end) for the VMDK tests only:
# qemu-img cannot write it; Debian's VMDKstream runs with the system python3.
/usr/bin/python3 -c "import VMDKstream" >/dev/null 2>&1 || need_apt+=(python3-vmdkstream)
# The reflink tests loop-mount a small XFS: load the loop driver if it is not there yet.
[ -e /dev/loop-control ] || { [ "$(id -u)" -eq 0 ] && modprobe loop 2>/dev/null; } || true
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "setup: missing ${need_apt[*]} and not root; install them and rerun" >&2; exit 1
        fi
    fi
    echo "setup: installing ${need_apt[*]} (apt)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=".venv/.azlift-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing azlift and test dependencies into .venv" >&2
    if ! .venv/bin/python -m pip install -q -e ".[test]" >.venv/pip-install.log 2>&1; then
        cat .venv/pip-install.log >&2
        echo "setup: pip install failed (log above, kept in .venv/pip-install.log)" >&2
        exit 1
    fi
    touch "$stamp"
fi

if [ ! -x .tools/node_modules/.bin/azurite-blob ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "setup: npm missing; installing nodejs and npm (apt)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    echo "setup: installing Azurite into .tools (npm)" >&2
    mkdir -p .tools
    (cd .tools && npm install --no-audit --no-fund --loglevel=error azurite@3 >/dev/null)
fi
echo "setup: ready ($ROOT)" >&2
