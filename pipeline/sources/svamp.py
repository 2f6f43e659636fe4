"""SVAMP: SVAMP.json (one question per record, its id the record's ``ID``) or a hub data set of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..readers import iter_json_array
from .hub import is_hub_dataset, iter_hub_records
from .rows import gold_text, make_question_row, require_field, require_path


def svamp_questions(path: str | Path | None, *, split: str = "test", config: str | None = None,
                    revision: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """SVAMP.json (question ``Body + " " + Question``, gold ``Answer``; id ``svamp:<ID>``) or a hub data set
    (``hf:MU-NLPC/Calc-svamp``, split ``test``: all 1,000 problems, question ``question`` (body and question
    already joined), gold ``result``, ``equation``, ``problem_type``; id ``svamp:<id>``, the same ids)."""
    seen: dict[str, str] = {}
    if is_hub_dataset(path):
        for where, _, obj in iter_hub_records(str(path), config=config, split=split, revision=revision):
            yield svamp_question(obj, where, split, seen)
        return
    path = require_path(path, "svamp")
    for line_no, obj in iter_json_array(path):
        yield svamp_question(obj, f"{path}:{line_no}", split, seen)


def svamp_question(obj: Any, where: str, split: str, seen: dict[str, str]) -> dict[str, Any]:
    """One SVAMP record, in the original layout (``ID``, ``Body``, ``Question``, ``Answer``) or Calc-SVAMP's
    (``id``, ``question``, ``result``), as a question row; ``seen`` (id -> where) catches a repeated id."""
    original = isinstance(obj, dict) and "Body" in obj
    names = ("ID", "Answer", "Equation", "Type") if original else ("id", "result", "equation", "problem_type")
    qid = f"svamp:{gold_text(require_field(obj, names[0], where, kind=(str, int)))}"
    if qid in seen:
        raise ContractError(where, f"duplicate {names[0]} {qid!r} (first at {seen[qid]})")
    seen[qid] = where
    if original:
        question = f"{require_field(obj, 'Body', where).strip()} {require_field(obj, 'Question', where).strip()}"
    else:
        question = require_field(obj, "question", where).strip()
    answer = require_field(obj, names[1], where, kind=(int, float, str))
    equation = obj.get(names[2])
    meta = {k: obj[n] for k, n in (("equation", names[2]), ("type", names[3])) if obj.get(n) is not None}
    return make_question_row(
        where,
        question_id=qid,
        question=question,
        gold=answer,
        task="svamp",
        source="svamp",
        split=split,
        difficulty=len(re.findall(r"[-+*/]", equation)) if isinstance(equation, str) else None,
        metadata=meta,
        gold_field=names[1],
    )
