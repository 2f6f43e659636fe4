"""Arrow schemas of the data contract (docs/design.md): question rows and rationale rows.

A column is *required* when every writer must fill it (nulls allowed only where the
contract says so); *optional* columns may be missing from a file and are then read as
null. Never rename a required column without bumping ``SCHEMA_VERSION`` and adding a
reader for the old version in :mod:`data_schemas.io`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .light import SCHEMA_VERSION


@dataclass(frozen=True)
class Column:
    """One column of the contract."""

    name: str
    type: pa.DataType
    nullable: bool
    required: bool
    doc: str

    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


RATIONALE_COLUMNS: tuple[Column, ...] = (
    Column("question_id", pa.string(), False, True, "stable id: source + index, or a content hash"),
    Column("question", pa.string(), False, True, "question text as given to the teacher"),
    Column("gold_answer", pa.string(), False, True, "normalised gold answer"),
    Column("task", pa.string(), False, True, "task name; selects the verifier"),
    Column("perspective", pa.string(), False, True, "perspective (reasoning style) name"),
    Column("teacher", pa.string(), False, True, "teacher model id, synthetic/<name>, human, import/<source>"),
    Column("sample_index", pa.int32(), False, True, "k-th sample for (question, perspective, teacher)"),
    Column("rationale", pa.string(), False, True, "the teacher's full output"),
    Column("predicted_answer", pa.string(), True, True, "answer extracted from the rationale; null if none"),
    Column("is_correct", pa.bool_(), True, True, "final verdict (rule verifier, or a judge: judge_*); null if not judged"),
    Column("finish_reason", pa.string(), False, True, "stop, length, error, ..."),
    Column("num_tokens", pa.int32(), True, True, "generated tokens"),
    Column("seed", pa.int64(), False, True, "per-sample seed actually used"),
    Column("run_id", pa.string(), False, True, "synthesis run that produced the row"),
    Column("schema_version", pa.int16(), False, True, "contract version of the row"),
    # optional: sampling parameters, provenance, timing
    Column("source", pa.string(), True, False, "question source name (e.g. gsm8k, synthetic)"),
    Column("split", pa.string(), True, False, "split of the question in its source"),
    Column("temperature", pa.float32(), True, False, "sampling temperature"),
    Column("top_p", pa.float32(), True, False, "nucleus sampling top_p"),
    Column("max_tokens", pa.int32(), True, False, "generation budget"),
    Column("prompt_hash", pa.string(), True, False, "hash of the full prompt sent to the teacher"),
    Column("latency_s", pa.float32(), True, False, "teacher time attributed to this sample"),
    Column("cumulative_logprob", pa.float64(), True, False, "sum of generated token log-probs"),
    Column("metadata", pa.string(), True, False, "free-form JSON object (e.g. original labels)"),
    # optional: the judge model (pipeline.judge); all null on a row no judge saw, and absent from
    # shards written before the judge existed (read as null)
    Column("judge_model", pa.string(), True, False, "judge that saw the row (its teacher name); null: none did"),
    Column("judge_verdict", pa.bool_(), True, False, "the judge's verdict; null if none or its reply was unparseable"),
    Column("judge_reply", pa.string(), True, False, "the judge's raw reply; null if none or the request failed"),
    Column("rule_verdict", pa.bool_(), True, False, "rule verifier's verdict of a judged row (is_correct is final)"),
)

QUESTION_COLUMNS: tuple[Column, ...] = (
    Column("question_id", pa.string(), False, True, "stable id"),
    Column("question", pa.string(), False, True, "question text"),
    Column("gold_answer", pa.string(), False, True, "normalised gold answer"),
    Column("task", pa.string(), False, True, "task name; selects the verifier"),
    Column("source", pa.string(), False, True, "source name"),
    Column("split", pa.string(), True, True, "split within the source"),
    Column("schema_version", pa.int16(), False, True, "contract version of the row"),
    Column("reference_rationale", pa.string(), True, False, "a human/reference solution, if the source has one"),
    Column("difficulty", pa.int32(), True, False, "source-specific difficulty (e.g. number of steps)"),
    Column("metadata", pa.string(), True, False, "free-form JSON object"),
)


def _schema(columns: tuple[Column, ...], kind: str) -> pa.Schema:
    return pa.schema(
        [c.field() for c in columns],
        metadata={b"mind.kind": kind.encode(), b"mind.schema_version": str(SCHEMA_VERSION).encode()},
    )


RATIONALE_SCHEMA = _schema(RATIONALE_COLUMNS, "rationales")
QUESTION_SCHEMA = _schema(QUESTION_COLUMNS, "questions")

SCHEMAS: dict[str, tuple[Column, ...]] = {"rationales": RATIONALE_COLUMNS, "questions": QUESTION_COLUMNS}
ARROW_SCHEMAS: dict[str, pa.Schema] = {"rationales": RATIONALE_SCHEMA, "questions": QUESTION_SCHEMA}
