"""MATH-500 in the HuggingFaceH4/MATH-500 layout: LaTeX answers, difficulty the MATH level."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..readers import iter_jsonl
from .rows import data_file, make_question_row, require_field

MATH500_FILE = "test.jsonl"


def math500_questions(path: str | Path | None, *, split: str = "test") -> Iterator[dict[str, Any]]:
    """MATH-500 ``test.jsonl`` (or its folder) in the HuggingFaceH4/MATH-500 layout: question
    ``problem``, gold ``answer`` (LaTeX, task ``math``: compared after normalisation, symbolic
    answers with math-verify), reference rationale ``solution``, difficulty the MATH ``level``
    (1-5); metadata ``level``, ``subject``, ``unique_id``. Id ``math500:<unique_id>``
    (``math500:test/precalculus/807.json``)."""
    path = data_file(path, "math500", MATH500_FILE)
    seen: dict[str, int] = {}
    for line_no, obj in iter_jsonl(path):
        where = f"{path}:{line_no}"
        uid = require_field(obj, "unique_id", where).strip()
        qid = f"math500:{uid}"
        if qid in seen:
            raise ContractError(where, f"duplicate unique_id {uid!r} (first at line {seen[qid]})")
        seen[qid] = line_no
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
        yield make_question_row(
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
