"""MATH-500 in the HuggingFaceH4/MATH-500 layout: LaTeX answers, difficulty the MATH level."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..readers import iter_jsonl
from .hub import is_hub_dataset, iter_hub_records
from .rows import data_file, make_question_row, require_field

MATH500_FILE = "test.jsonl"


def math500_questions(path: str | Path | None, *, split: str = "test", config: str | None = None,
                      revision: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """MATH-500 ``test.jsonl`` (or its folder) in the HuggingFaceH4/MATH-500 layout, or that hub data set
    (``hf:HuggingFaceH4/MATH-500``, split ``test``): question ``problem``, gold ``answer`` (LaTeX, task
    ``math``: compared after normalisation, symbolic answers with math-verify), reference rationale
    ``solution``, difficulty the MATH ``level`` (1-5); metadata ``level``, ``subject``, ``unique_id``. Id
    ``math500:<unique_id>`` (``math500:test/precalculus/807.json``), the same from the file and the hub."""
    seen: dict[str, str] = {}
    if is_hub_dataset(path):
        for where, _, obj in iter_hub_records(str(path), config=config, split=split, revision=revision):
            yield math500_question(obj, where, split, seen)
        return
    path = data_file(path, "math500", MATH500_FILE)
    for line_no, obj in iter_jsonl(path):
        yield math500_question(obj, f"{path}:{line_no}", split, seen)


def math500_question(obj: Any, where: str, split: str, seen: dict[str, str]) -> dict[str, Any]:
    """One MATH-500 record as a question row; ``seen`` (id -> where) catches a repeated ``unique_id``."""
    uid = require_field(obj, "unique_id", where).strip()
    qid = f"math500:{uid}"
    if qid in seen:
        raise ContractError(where, f"duplicate unique_id {uid!r} (first at {seen[qid]})")
    seen[qid] = where
    problem = require_field(obj, "problem", where).strip()
    answer = require_field(obj, "answer", where, kind=(str, int, float))
    level = require_field(obj, "level", where, kind=(int, str))
    try:
        level = int(str(level).removeprefix("Level").strip())
    except ValueError:
        raise ContractError(where, f"field 'level' must be an integer 1-5, got {level!r}") from None
    if not 1 <= level <= 5:
        raise ContractError(where, f"field 'level' must be an integer 1-5, got {level}")
    subject = require_field(obj, "subject", where).strip()
    solution = obj.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise ContractError(where, f"field 'solution' must be a string, got {type(solution).__name__}")
    return make_question_row(
        where,
        question_id=qid,
        question=problem,
        gold=answer,
        task="math",
        source="math500",
        split=split,
        reference_rationale=solution,
        difficulty=level,
        metadata={"level": level, "subject": subject, "unique_id": uid},
    )
