"""GSM8K files: the gold after ``####``, the reference rationale without calculator notes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..readers import iter_jsonl
from .hub import is_hub_dataset, iter_hub_records
from .rows import make_question_row, require_field, require_path

_CALC_NOTE = re.compile(r"<<[^<>]*>>")


def strip_calculator_notes(text: str) -> str:
    """Remove GSM8K calculator annotations ``<<a*b=c>>`` (an artefact of its tooling)."""
    return _CALC_NOTE.sub("", text)


def split_gsm8k_answer(answer: str) -> tuple[str, str]:
    """``(rationale before the '####' line, gold after it with commas removed)``."""
    head, sep, tail = answer.rpartition("####")
    if not sep:
        raise ValueError("no '#### <answer>' line in the answer")
    gold = tail.strip().replace(",", "")
    if not gold:
        raise ValueError("empty answer after '####'")
    return head.rstrip(), gold


def gsm8k_split(path: str | Path) -> str:
    """Split name of a GSM8K file: ``test`` for test.jsonl and test_socratic.jsonl, etc."""
    stem = Path(path).stem
    return stem.removesuffix("_socratic")


def gsm8k_question(obj: Any, where: str, *, split: str, index: int, task: str = "gsm8k") -> dict[str, Any]:
    """Question row of one GSM8K record ``{"question", "answer"}``."""
    question = require_field(obj, "question", where)
    answer = require_field(obj, "answer", where)
    try:
        reference, gold = split_gsm8k_answer(answer)
    except ValueError as exc:
        raise ContractError(where, f"field 'answer': {exc}") from None
    reference = strip_calculator_notes(reference)
    steps = sum(1 for line in reference.splitlines() if line.strip())
    return make_question_row(
        where,
        question_id=f"gsm8k:{split}:{index}",
        question=question.strip(),
        gold=gold,
        task=task,
        source="gsm8k",
        split=split,
        reference_rationale=reference,
        difficulty=steps,
    )


def gsm8k_questions(
    path: str | Path | None, *, split: str | None = None, config: str = "main", revision: str | None = None
) -> Iterator[dict[str, Any]]:
    """GSM8K jsonl (train.jsonl, test.jsonl, test_socratic.jsonl) or the hub data set
    (``hf:openai/gsm8k``, ``config`` main or socratic, ``split`` default test): gold after ``####``, the
    reference rationale without that line and without ``<<...>>`` notes; id
    ``gsm8k:<split>:<0-based line index>`` (the hub's rows are the files' lines in order)."""
    if is_hub_dataset(path):
        split = split or "test"
        for where, index, obj in iter_hub_records(str(path), config=config, split=split, revision=revision):
            yield gsm8k_question(obj, where, split=split, index=index)
        return
    path = require_path(path, "gsm8k")
    split = split or gsm8k_split(path)
    for line_no, obj in iter_jsonl(path):
        yield gsm8k_question(obj, f"{path}:{line_no}", split=split, index=line_no - 1)
