"""Accuracy recounted from a predictions file, independently of the code that wrote it: every row's
prediction is judged again with the verifier and the correct ones counted. Tests compare a reported
accuracy against this instead of checking only that it lies in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from pipeline.verify import verify


def recounted_accuracy(path: Path) -> float:
    """Correct predictions over all predictions of the file at ``path`` (unjudged = wrong)."""
    rows = pq.read_table(path).to_pylist()
    assert rows, f"{path} has no predictions"
    verdicts = [verify(r["prediction"], r["gold_answer"], r["task"]).is_correct is True for r in rows]
    assert verdicts == [r["is_correct"] is True for r in rows], f"{path}: is_correct disagrees with the verifier"
    return sum(verdicts) / len(rows)
