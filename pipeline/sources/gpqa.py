"""GPQA from the user's own copy of the official CSV (not shipped): four answers shuffled into
options (A)-(D) by a seed, the gold the correct one's letter."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..ids import content_question_id, derive_seed
from ..readers import _read_text
from .rows import make_question_row, require_field

GPQA_TASK = "gpqa"
GPQA_QUESTION = "Question"
GPQA_CORRECT = "Correct Answer"
GPQA_INCORRECT = ("Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
GPQA_LETTERS = "ABCD"
#: Official columns kept as metadata (when present), under these keys.
GPQA_METADATA = {"Record ID": "record_id", "High-level domain": "domain", "Subdomain": "subdomain"}


def gpqa_choices(correct: str, incorrect: Sequence[str], *, seed: int, key: str) -> tuple[list[str], str]:
    """The four options in a seeded order and the gold letter. The order depends only on
    ``(seed, key)`` (the question id), not on the other rows of the file."""
    import random

    options = [correct, *incorrect]
    order = list(range(len(options)))
    random.Random(derive_seed("gpqa-choices", seed, key)).shuffle(order)
    return [options[i] for i in order], GPQA_LETTERS[order.index(0)]


def _iter_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line where the record starts, fields)`` of every record of a CSV file (header included)."""
    import csv
    import io

    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    start = 1
    try:
        for fields in reader:
            yield start, fields
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ContractError(f"{path}:{reader.line_num}", f"invalid CSV ({exc})") from None


def gpqa_questions(
    path: str | Path | None,
    *,
    seed: int = 0,
    split: str | None = None,
    source: str = "gpqa",
) -> Iterator[dict[str, Any]]:
    """GPQA (Diamond: ``gpqa_diamond.csv``) from the user's own copy of the official CSV, which
    is not shipped. Columns ``Question``, ``Correct Answer``, ``Incorrect Answer 1..3``; the four
    answers are shuffled (seeded per question by ``seed`` and its id) into options ``(A)`` ..
    ``(D)`` appended to the question text, and the gold is the letter of the correct one (task
    ``gpqa``, kind choice). Id ``gpqa:<Record ID>`` (else a content hash of the question); split
    from the file name (``gpqa_diamond.csv`` -> ``diamond``, else ``test``); metadata the record
    id, domain and subdomain (when the file has those columns) and ``choice_seed``."""
    if path is None:
        raise ValueError(
            "question source 'gpqa' needs the path of your copy of the official GPQA CSV "
            "(e.g. gpqa:PATH/gpqa_diamond.csv); it is not shipped with the toolkit"
        )
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise ContractError(
            str(path), f"{what}: give the path of your copy of the official GPQA CSV (e.g. gpqa_diamond.csv)"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"gpqa option seed must be an integer, got {seed!r}")
    if split is None:
        stem = path.stem.lower()
        split = stem.removeprefix("gpqa_") if stem.startswith("gpqa_") and len(stem) > 5 else "test"
    records = _iter_csv(path)
    try:
        _, header = next(records)
    except StopIteration:
        raise ContractError(str(path), "empty file: expected the official GPQA CSV header") from None
    header = [h.strip() for h in header]
    header[0] = header[0].lstrip("\ufeff")
    index = {name: i for i, name in reversed(list(enumerate(header)))}  # first of repeated names wins
    for col in (GPQA_QUESTION, GPQA_CORRECT, *GPQA_INCORRECT):
        if col not in index:
            raise ContractError(
                f"{path}:1", f"missing column {col!r} of the official GPQA CSV (columns: {', '.join(header)})"
            )
    seen: dict[str, int] = {}
    for line_no, fields in records:
        if not any(f.strip() for f in fields):
            continue  # a blank line
        where = f"{path}:{line_no}"
        obj = {name: fields[i] if i < len(fields) else None for name, i in index.items()}
        question = require_field(obj, GPQA_QUESTION, where, "column").strip()
        correct = require_field(obj, GPQA_CORRECT, where, "column").strip()
        incorrect = [require_field(obj, c, where, "column").strip() for c in GPQA_INCORRECT]
        record_id = (obj.get("Record ID") or "").strip()
        qid = f"gpqa:{record_id}" if record_id else content_question_id("gpqa", question)
        if qid in seen:
            raise ContractError(where, f"duplicate question id {qid!r} (first at line {seen[qid]})")
        seen[qid] = line_no
        options, gold = gpqa_choices(correct, incorrect, seed=seed, key=qid)
        text = question + "\n\n" + "\n".join(f"({GPQA_LETTERS[i]}) {o}" for i, o in enumerate(options))
        meta = {key: (obj.get(col) or "").strip() for col, key in GPQA_METADATA.items() if (obj.get(col) or "").strip()}
        meta["choice_seed"] = seed
        yield make_question_row(
            where,
            question_id=qid,
            question=text,
            gold=gold,
            task=GPQA_TASK,
            source=source,
            split=split,
            metadata=meta,
            gold_field=GPQA_CORRECT,
        )
