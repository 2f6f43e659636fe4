#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the test suite in MIND_TEST_WORKERS pytest-xdist worker
# processes (default 2; 0 runs it in this process). Extra arguments go to pytest (a later -n wins).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec "${MIND_VENV:-.venv}/bin/python" -m pytest -n "${MIND_TEST_WORKERS:-2}" "$@"
