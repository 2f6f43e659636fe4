#!/usr/bin/env bash
# Set everything up (scripts/setup.sh) and run the main job on the embedded default, end to end
# on a CPU:
#   1. synthesize: the Prefect `synthesize` flow (in-process) has the reference teacher of the
#      calibrated synthetic world (configs/synthesize/demo.yaml: the quality benchmark's world)
#      write 400 train questions under six perspectives, two samples each, verified and stored as
#      shards;
#   2. distill: `distill.train` trains the embedded default student (a tiny Llama, pretrained on
#      the world's retention task in a stage 0 that runs once, ~3 CPU minutes, and is cached under
#      runs/students/) with the MIND trainer, then evaluates it in-distribution (test) and
#      out-of-distribution (ood_steps, ood_template) and on the retention task.
# Output folder: $1 (default runs/demo). Re-running reuses finished shards and the stage-0 student.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
PY="${MIND_VENV:-.venv}/bin/python"
OUT=${1:-runs/demo}
"$PY" -m flows.synthesize --out "$OUT/rationales" --config configs/synthesize/demo.yaml
"$PY" -m pipeline.browse "$OUT/rationales" stats
"$PY" -m distill.train --config configs/train/demo.yaml --data "$OUT/rationales" --output_dir "$OUT/student-mind"
