"""What every question reader shares: a validated question row, required fields, the given path.

Errors are :class:`data_schemas.ContractError` naming where the bad record is (``FILE:LINE`` or
``FILE: row N``) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from data_schemas import ContractError, validate_row


def gold_text(value: Any) -> str:
    """A gold value from a file as text (``51.0`` -> ``"51"``); raises ``ValueError`` on non-scalars."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a string or a number, got {json.dumps(value)}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string or a number, got {type(value).__name__}")


def _metadata(meta: Mapping[str, Any] | None) -> str | None:
    return json.dumps(dict(meta), ensure_ascii=False, sort_keys=True) if meta else None


def make_question_row(
    where: str,
    *,
    question_id: str,
    question: str,
    gold: Any,
    task: str,
    source: str,
    split: str | None,
    reference_rationale: str | None = None,
    difficulty: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    gold_field: str = "answer",
) -> dict[str, Any]:
    """One validated question row; the gold is normalised for ``task``. Errors name ``where``."""
    from ..verify import normalize_gold

    try:
        gold_norm = normalize_gold(gold_text(gold), task)
    except ValueError as exc:
        raise ContractError(where, f"field {gold_field!r}: {exc}") from None
    row = dict(
        question_id=question_id,
        question=question,
        gold_answer=gold_norm,
        task=task,
        source=source,
        split=split,
        reference_rationale=reference_rationale,
        difficulty=difficulty,
        metadata=_metadata(metadata),
    )
    try:
        return validate_row(row, "questions")
    except ValueError as exc:
        raise ContractError(where, str(exc)) from None


def require_field(obj: Any, name: str, where: str, noun: str = "field", kind: type | tuple[type, ...] = str) -> Any:
    """``obj[name]``, required and of ``kind``; ``ContractError(where, ...)`` otherwise."""
    if not isinstance(obj, Mapping):
        raise ContractError(where, f"expected a JSON object, got {type(obj).__name__}")
    if name not in obj or obj[name] is None:
        raise ContractError(where, f"missing {noun} {name!r}")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ContractError(where, f"{noun} {name!r} must be a {want}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise ContractError(where, f"{noun} {name!r} is empty")
    return value


def require_path(path: str | Path | None, kind: str) -> Path:
    """``path`` as a ``Path``; ``ValueError`` naming the source ``kind`` when it is missing."""
    if path is None:
        raise ValueError(f"question source {kind!r} needs a path")
    return Path(path)


def data_file(path: str | Path | None, kind: str, default_name: str) -> Path:
    """``path`` itself, or ``path/default_name`` when ``path`` is a folder."""
    path = require_path(path, kind)
    return path / default_name if path.is_dir() else path
