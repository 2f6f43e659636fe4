"""mentor-kd files (``<dataset>_test.json``, ``<dataset>_<k>_train.json``), and the CommonsenseQA
and StrategyQA sources that read their test files."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..readers import iter_json_array
from .hub import is_hub_dataset
from .qa_hub import commonsense_qa_hub, strategyqa_hub
from .rows import data_file, make_question_row, require_field, require_path

MENTOR_KD_TASKS: dict[str, str] = {
    "svamp": "svamp",
    "asdiv": "asdiv",
    "strategy_qa": "strategyqa",
    "last_letter_concatenation": "last_letter",
    "date_understanding": "date_understanding",
    "commonsense_qa": "commonsense_qa",
    "gsm8k": "gsm8k",
}
_MENTOR_KD_NAME = re.compile(r"^(?P<dataset>.+?)_(?:(?P<k>\d+)_train|test)$")


@dataclasses.dataclass(frozen=True)
class MentorKdFile:
    """What a mentor-kd file name says: dataset, task, split and rows per question."""

    dataset: str
    task: str
    split: str
    group_size: int
    stem: str


def mentor_kd_file(path: str | Path, task: str | None = None) -> MentorKdFile:
    """Parse ``<dataset>_<k>_train.json`` / ``<dataset>_test.json``; ``task`` overrides the mapping."""
    stem = Path(path).stem
    m = _MENTOR_KD_NAME.match(stem)
    if not m:
        raise ContractError(str(path), "not a mentor-kd file name (<dataset>_<k>_train.json or <dataset>_test.json)")
    dataset = m["dataset"]
    if task is None:
        if dataset not in MENTOR_KD_TASKS:
            raise ContractError(
                str(path), f"unknown mentor-kd dataset {dataset!r} (known: {', '.join(MENTOR_KD_TASKS)}); pass task="
            )
        task = MENTOR_KD_TASKS[dataset]
    k = int(m["k"]) if m["k"] else 1
    if k < 1:
        raise ContractError(str(path), f"group size {k} in the file name must be at least 1")
    return MentorKdFile(dataset=dataset, task=task, split="train" if m["k"] else "test", group_size=k, stem=stem)


@dataclasses.dataclass
class MentorKdQuestion:
    """One question of a mentor-kd file with its raw records ``(line, obj)`` (k per question in train files)."""

    index: int
    line: int
    row: dict[str, Any]
    records: list[tuple[int, dict[str, Any]]]
    repeat: bool = False


def _mentor_kd_group(
    path: Path, info: MentorKdFile, index: int, group: list[tuple[int, Any]]
) -> MentorKdQuestion:
    first_line, first = group[0]
    where = f"{path}:{first_line}"
    if len(group) < info.group_size:
        raise ContractError(
            where, f"incomplete question {index}: {len(group)} row(s), expected {info.group_size} consecutive rows"
        )
    question = require_field(first, "input", where)
    answer = require_field(first, "answer", where, kind=(str, int, float))
    for line, obj in group[1:]:
        w = f"{path}:{line}"
        if require_field(obj, "input", w) != question:
            raise ContractError(
                w,
                f"'input' differs from line {first_line}: expected {info.group_size} consecutive rows per question "
                f"(question {index})",
            )
        if require_field(obj, "answer", w, kind=(str, int, float)) != answer:
            raise ContractError(w, f"'answer' differs from line {first_line} for the same question {index}")
    row = make_question_row(
        where,
        question_id=f"mentor_kd/{info.stem}:{index}",
        question=question.strip(),
        gold=answer,
        task=info.task,
        source=f"mentor_kd/{info.dataset}",
        split=info.split,
    )
    return MentorKdQuestion(index=index, line=first_line, row=row, records=[(ln, o) for ln, o in group])


def iter_mentor_kd(
    path: str | Path,
    *,
    task: str | None = None,
    on_error: Callable[[ContractError, Any], None] | None = None,
) -> Iterator[MentorKdQuestion]:
    """Questions of a mentor-kd file, grouping ``k`` consecutive rows of ``*_k_train.json``.

    A question is numbered by the position of the group where it first appears, so ids are
    stable even when a bad group is skipped through ``on_error`` (called with the error and the
    group's raw records). A group repeating an earlier question (asdiv_3_train has one) is
    yielded with that question's index and ``repeat=True``; a repeat with another answer is an
    error.
    """
    path = Path(path)
    info = mentor_kd_file(path, task)
    group: list[tuple[int, Any]] = []
    position = 0
    seen: dict[str, tuple[int, int, str]] = {}  # question -> (index, line, gold)

    def build() -> MentorKdQuestion | None:
        try:
            q = _mentor_kd_group(path, info, position, group)
            first = seen.get(q.row["question"])
            if first is None:
                seen[q.row["question"]] = (position, q.line, q.row["gold_answer"])
                return q
            index, line, gold = first
            if gold != q.row["gold_answer"]:
                raise ContractError(
                    f"{path}:{q.line}",
                    f"repeats the question of line {line} with another answer ({q.row['gold_answer']!r}, not {gold!r})",
                )
            row = {**q.row, "question_id": f"mentor_kd/{info.stem}:{index}"}
            return dataclasses.replace(q, index=index, row=row, repeat=True)
        except ContractError as exc:
            if on_error is None:
                raise
            on_error(exc, [o for _, o in group])
            return None

    for line_no, obj in iter_json_array(path):
        group.append((line_no, obj))
        if len(group) == info.group_size:
            if (q := build()) is not None:
                yield q
            group = []
            position += 1
    if group and (q := build()) is not None:
        yield q


def mentor_kd_questions(path: str | Path | None, *, task: str | None = None) -> Iterator[dict[str, Any]]:
    """mentor-kd ``*_test.json`` (``{"input","answer"}``) or ``*_k_train.json`` (k rows per question);
    task from the file name; id ``mentor_kd/<file stem>:<question index>``."""
    path = require_path(path, "mentor-kd")
    for q in iter_mentor_kd(path, task=task):
        if not q.repeat:
            yield q.row


# ---------------------------------------------------------------- CommonsenseQA and StrategyQA
def _mentor_kd_dataset_questions(
    path: str | Path | None, *, kind: str, dataset: str
) -> Iterator[dict[str, Any]]:
    """The questions of a mentor-kd file of ``dataset`` (``<dataset>_test.json`` when ``path``
    is a folder); the same rows, ids included, as the ``mentor-kd`` source gives for it."""
    path = data_file(path, kind, f"{dataset}_test.json")
    info = mentor_kd_file(path)
    if info.dataset != dataset:
        raise ContractError(
            str(path), f"a mentor-kd {info.dataset!r} file, not {dataset!r} (expected {dataset}_test.json)"
        )
    yield from mentor_kd_questions(path)


def commonsense_qa_questions(path: str | Path | None, *, split: str = "validation", config: str | None = None,
                             revision: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """CommonsenseQA from the mentor-kd files: ``commonsense_qa_test.json`` (1,221 questions) or
    the folder holding it. Five options ``A.`` .. ``E.`` in the question text after ``Answer
    Choices:``, gold an option letter (task ``commonsense_qa``, kind choice). Ids as the
    ``mentor-kd`` source: ``mentor_kd/commonsense_qa_test:<index>``. Or the hub data set
    (``hf:tau/commonsense_qa``, split ``validation``: the same 1,221 questions, written the same way;
    :mod:`pipeline.sources.qa_hub`)."""
    if is_hub_dataset(path):
        yield from commonsense_qa_hub(str(path), split=split, config=config, revision=revision)
        return
    yield from _mentor_kd_dataset_questions(path, kind="commonsense_qa", dataset="commonsense_qa")


def strategyqa_questions(path: str | Path | None, *, split: str = "test", config: str | None = None,
                         revision: str | None = None) -> Iterator[dict[str, Any]]:  # fmt: skip
    """StrategyQA from the mentor-kd files: ``strategy_qa_test.json`` (687 questions) or the
    folder holding it (a ``strategy_qa_3_train.json`` works too). Gold yes/no (task
    ``strategyqa``). Ids as the ``mentor-kd`` source: ``mentor_kd/strategy_qa_test:<index>``. Or the hub
    data set (``hf:ChilleD/StrategyQA``, split ``test``: 687 questions; :mod:`pipeline.sources.qa_hub`)."""
    if is_hub_dataset(path):
        yield from strategyqa_hub(str(path), split=split, config=config, revision=revision)
        return
    yield from _mentor_kd_dataset_questions(path, kind="strategyqa", dataset="strategy_qa")
