#!/usr/bin/env bash
# Set everything up, then run azlift's main job end to end on a sample disk it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python scripts/demo.py "$@"
