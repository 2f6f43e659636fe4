"""CommonsenseQA and StrategyQA in their hub layouts (``tau/commonsense_qa``, ``ChilleD/StrategyQA``), as the
``commonsense_qa`` and ``strategyqa`` sources read them for an ``hf:ORG/NAME`` path (their files are mentor-kd's).

The questions are written as the mentor-kd files write them, so a student sees the same prompt from
either: CommonsenseQA's stem, then ``Answer Choices:`` and one ``A. text`` line per option, gold the
option letter; StrategyQA's question, gold ``Yes`` or ``No``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from data_schemas import ContractError

from .hub import iter_hub_records
from .rows import make_question_row, require_field


def commonsense_qa_hub(path: str, *, split: str, config: str | None = None,
                       revision: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """``tau/commonsense_qa`` rows (``id``, ``question``, ``choices: {label, text}``, ``answerKey``); id
    ``commonsense_qa:<id>``. Its ``test`` split has no answers: the paper's 1,221 are ``validation``."""
    for where, _, obj in iter_hub_records(path, config=config, split=split, revision=revision):
        stem = require_field(obj, "question", where).strip()
        choices = require_field(obj, "choices", where, kind=dict)
        labels, texts = choices.get("label"), choices.get("text")
        if not isinstance(labels, list) or not isinstance(texts, list) or len(labels) != len(texts) or not labels:
            raise ContractError(where, "field 'choices' must hold lists 'label' and 'text' of the same, non-zero length")
        key = obj.get("answerKey")
        if not isinstance(key, str) or not key.strip():
            raise ContractError(where, f"field 'answerKey' is empty: split {split!r} has no answers (use validation)")
        key = key.strip()
        if key not in labels:
            raise ContractError(where, f"field 'answerKey' {key!r} is not one of the choices {labels}")
        options = "\n".join(f"{label}. {text}" for label, text in zip(labels, texts, strict=True))
        yield make_question_row(
            where, question_id=f"commonsense_qa:{require_field(obj, 'id', where)}",
            question=f"{stem} Answer Choices:\n{options}", gold=key, task="commonsense_qa", source="commonsense_qa",
            split=split, metadata={"question_concept": obj["question_concept"]} if obj.get("question_concept") else None,
        )  # fmt: skip


def strategyqa_hub(path: str, *, split: str, config: str | None = None,
                   revision: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """``ChilleD/StrategyQA`` rows (``question``, ``answer`` true/false or yes/no, ``qid`` when there); id
    ``strategyqa:<qid>``, else ``strategyqa:<split>:<row>``."""
    for where, index, obj in iter_hub_records(path, config=config, split=split, revision=revision):
        question = require_field(obj, "question", where).strip()
        answer = obj.get("answer")
        if not isinstance(answer, bool | str):
            raise ContractError(where, f"field 'answer' must be true/false or yes/no, got {answer!r}")
        if isinstance(answer, str):
            if answer.strip().lower() not in ("yes", "no", "true", "false"):
                raise ContractError(where, f"field 'answer' must be true/false or yes/no, got {answer!r}")
            answer = answer.strip().lower() in ("yes", "true")
        qid = obj.get("qid")
        yield make_question_row(
            where, question_id=f"strategyqa:{qid}" if qid else f"strategyqa:{split}:{index}", question=question,
            gold="Yes" if answer else "No", task="strategyqa", source="strategyqa", split=split,
        )  # fmt: skip
