"""SVAMP.json: one question per record, its id the record's ``ID``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..readers import iter_json_array
from .rows import gold_text, make_question_row, require_field, require_path


def svamp_questions(path: str | Path | None, *, split: str = "test") -> Iterator[dict[str, Any]]:
    """SVAMP.json: question ``Body + " " + Question``, gold ``Answer``; id ``svamp:<ID>``."""
    path = require_path(path, "svamp")
    seen: dict[str, int] = {}
    for line_no, obj in iter_json_array(path):
        where = f"{path}:{line_no}"
        qid = f"svamp:{gold_text(require_field(obj, 'ID', where, kind=(str, int)))}"
        if qid in seen:
            raise ContractError(where, f"duplicate ID {qid!r} (first at line {seen[qid]})")
        seen[qid] = line_no
        body = require_field(obj, "Body", where).strip()
        question = require_field(obj, "Question", where).strip()
        answer = require_field(obj, "Answer", where, kind=(int, float, str))
        equation = obj.get("Equation")
        meta = {k.lower(): obj[k] for k in ("Equation", "Type") if obj.get(k) is not None}
        yield make_question_row(
            where,
            question_id=qid,
            question=f"{body} {question}",
            gold=answer,
            task="svamp",
            source="svamp",
            split=split,
            difficulty=len(re.findall(r"[-+*/]", equation)) if isinstance(equation, str) else None,
            metadata=meta,
            gold_field="Answer",
        )
