#!/usr/bin/env bash
# Run the test suite against the lowest versions pyproject.toml allows for azlift's own
# dependencies (scripts/lowest-constraints.txt), in a virtual environment of its own
# (.venv-lowest), so the lower bounds we publish are ones that were actually tested.
# Needs what scripts/setup.sh installs (qemu-utils, openssh-server, Azurite in .tools).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-python3}"
if [ ! -x .venv-lowest/bin/python ]; then
    "$PY" -m venv .venv-lowest
    .venv-lowest/bin/python -m pip install -q --upgrade pip
fi
.venv-lowest/bin/python -m pip install -q -e ".[test]" -c scripts/lowest-constraints.txt
.venv-lowest/bin/python -m pip freeze | grep -i -E "^($(sed -e 's/[<>=].*//' -e '/^#/d' -e '/^$/d' scripts/lowest-constraints.txt | paste -sd'|'))=" >&2
export PATH="$PWD/.venv-lowest/bin:$PATH"
exec .venv-lowest/bin/python -m pytest "$@"
