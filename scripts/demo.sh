#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the main job on the embedded default:
# the Prefect `synthesize` flow (in-process) has the synthetic world's reference teacher write
# 200 train questions under six perspectives, two samples each, verified and stored as shards;
# then the browse statistics. Output folder: $1 (default runs/demo). Re-running reuses
# finished shards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
PY="${MIND_VENV:-.venv}/bin/python"
OUT=${1:-runs/demo}
"$PY" -m flows.synthesize --out "$OUT" --num-questions 200
"$PY" -m pipeline.browse "$OUT" stats
