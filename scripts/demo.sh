#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the main job on the embedded default:
# a synthetic-world question set, its reference teacher's rationales under every
# perspective (verified, stored as shards), and the browse statistics.
# Output folder: $1 (default runs/demo). Re-running reuses finished shards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
PY="${MIND_VENV:-.venv}/bin/python"
OUT=${1:-runs/demo}
"$PY" -m pipeline.synthetic --out "$OUT"
"$PY" -m pipeline.browse "$OUT" stats
