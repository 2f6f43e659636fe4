"""Evaluation records: the predictions file's schema, accuracy figures of a set of predictions, and one
split's result (:class:`EvalResult`) with its writer. Shared by the decoders (:mod:`distill.eval_decode`) and
the suites (:mod:`distill.suites`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.verify import verify

#: Columns of the predictions file, one row per (question, sample).
PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("gold_answer", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("sample_index", pa.int32(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("prediction", pa.string(), nullable=False),
        pa.field("predicted_answer", pa.string()),
        pa.field("is_correct", pa.bool_()),
        pa.field("num_tokens", pa.int32()),
        pa.field("finish_reason", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ]
)

# ---------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Scores:
    """Accuracy figures of a set of prediction rows (see :func:`score_predictions`)."""

    n: int  # questions
    samples: int  # predictions
    k: int  # most samples of one question
    accuracy: float  # mean over predictions; unjudged = wrong
    judged: int  # predictions with a verdict (is_correct not null)
    pass_at_k: float  # questions with at least one correct sample
    majority_accuracy: float  # questions whose majority-vote answer is correct
    errors: int  # predictions whose generation failed
    finish_reasons: dict[str, int]
    mean_tokens: float


def score_predictions(rows: Sequence[dict[str, Any]], *, reverify: bool = True) -> Scores:
    """Judge each row's ``prediction`` against its ``gold_answer`` for its ``task`` with the
    synthesis verifier (setting ``predicted_answer`` and ``is_correct`` in place; with
    ``reverify=False`` rows that already have ``is_correct`` keep it) and return the scores.

    Rows are grouped into questions by ``question_id``. Majority vote: the most frequent
    extracted answer among a question's samples (ties: the earliest sample) must be correct;
    a question without any extracted answer counts as wrong.
    """
    for row in rows:
        if reverify or "is_correct" not in row:
            verdict = verify(row.get("prediction") or "", str(row["gold_answer"]), row["task"])
            row["predicted_answer"], row["is_correct"] = verdict.predicted_answer, verdict.is_correct
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["question_id"]), []).append(row)
    correct = sum(row["is_correct"] is True for row in rows)
    passed = majority = 0
    for group in groups.values():
        passed += any(r["is_correct"] is True for r in group)
        ordered = sorted(group, key=lambda r: r.get("sample_index", 0))
        answers = [r for r in ordered if r["predicted_answer"] is not None]
        if answers:
            counts = Counter(r["predicted_answer"] for r in answers)
            top = max(counts.values())
            winner = next(r for r in answers if counts[r["predicted_answer"]] == top)
            majority += winner["is_correct"] is True
    tokens = [r["num_tokens"] for r in rows if r.get("num_tokens") is not None]
    n = len(groups)
    return Scores(
        n=n,
        samples=len(rows),
        k=max((len(g) for g in groups.values()), default=0),
        accuracy=correct / len(rows) if rows else 0.0,
        judged=sum(row["is_correct"] is not None for row in rows),
        pass_at_k=passed / n if n else 0.0,
        majority_accuracy=majority / n if n else 0.0,
        errors=sum(r.get("finish_reason") == "error" for r in rows),
        finish_reasons=dict(Counter(str(r.get("finish_reason")) for r in rows)),
        mean_tokens=sum(tokens) / len(tokens) if tokens else 0.0,
    )


@dataclass
class EvalResult:
    """Predictions of one split and their scores."""

    split: str
    scores: Scores
    rows: list[dict[str, Any]] = field(repr=False)
    seconds: float = 0.0
    prompt_style: str = "plain"

    @property
    def accuracy(self) -> float:
        return self.scores.accuracy

    @property
    def n(self) -> int:
        return self.scores.n

    def summary(self) -> dict[str, Any]:
        """Everything but the rows, JSON-ready."""
        s = self.scores
        return {
            "split": self.split,
            "n": s.n,
            "samples": s.samples,
            "k": s.k,
            "accuracy": s.accuracy,
            "judged": s.judged,
            "pass_at_k": s.pass_at_k,
            "majority_accuracy": s.majority_accuracy,
            "errors": s.errors,
            "finish_reasons": s.finish_reasons,
            "mean_tokens": round(s.mean_tokens, 2),
            "seconds": round(self.seconds, 3),
            "prompt_style": self.prompt_style,
        }

    def to_table(self) -> pa.Table:
        return pa.Table.from_pylist(
            [{name: row.get(name) for name in PREDICTION_SCHEMA.names} for row in self.rows], schema=PREDICTION_SCHEMA
        )


def write_predictions(result: EvalResult, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``result.rows`` to Parquet atomically; the summary (and ``extra``) go in the
    file's schema metadata under ``mind.eval``."""
    from data_schemas import write_parquet_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {**result.summary(), **(extra or {})}
    table = result.to_table()
    table = table.replace_schema_metadata({b"mind.eval": json.dumps(summary, default=str).encode()})
    write_parquet_atomic(table, path)
    return path


# ---------------------------------------------------------------- generation
