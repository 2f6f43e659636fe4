"""The files a training run writes into its output folder: named once here, for the trainer that writes
them and for the web viewer and the benchmarks that read them (this floor imports nothing of the others)."""

from __future__ import annotations

MIND_SUMMARY = "mind_summary.json"  # per-view totals, the compute account, the history (distill.trainer)
MIND_STATE = "mind_state.pt"  # in every checkpoint-N folder: the trainer's and the strategy's state
TRAINER_STATE = "trainer_state.json"  # transformers' own: the logged metrics over steps
EVAL_RESULTS = "eval_results.json"  # accuracy and n per evaluated split (distill.train)
EVAL_DIR = "eval"  # per-question predictions, <split>.parquet
CURVE = "curve.json"  # accuracy along a FLOP grid (distill.curve)
STAGE0 = "stage0.json"  # a stage-0 student's own record (distill.pretrain)
