#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec "${MIND_VENV:-.venv}/bin/python" -m pytest "$@"
