"""Question sources (docs/design.md): each yields question rows of the contract with stable ids.

A source is selected by name through a small registry::

    from pipeline.sources import load_questions
    rows = list(load_questions("gsm8k", "$MIND_SHARED_DATA/gsm8k/test.jsonl"))
    rows = list(load_questions("synthetic", split="test", n=200))
    rows = list(load_questions("jsonl", "my.jsonl", question_field="q", answer_field="a", task="arith"))

Every row is a dict with all ``QUESTION_COLUMNS`` (``metadata`` a JSON string or null), its gold
answer normalised by :func:`pipeline.verify.normalize_gold`. Bad input (a malformed line, a
missing field, a gold answer the task cannot use) raises :class:`data_schemas.ContractError`
whose ``where`` is ``FILE:LINE`` (``FILE: row N`` for Parquet and ``datasets`` folders).

Ids: ``gsm8k:<split>:<line index>`` (``test.jsonl`` and ``test_socratic.jsonl`` hold the same
questions in the same order and share ids, so their two rationale styles join on the id),
``svamp:<ID>``, ``mentor_kd/<file stem>:<question index>`` (also for the ``commonsense_qa`` and
``strategyqa`` sources, which read the same mentor-kd files), ``math500:<unique_id>``,
``gpqa:<Record ID>``, and for generic files the id column or else
:func:`pipeline.ids.content_question_id`.

The paper's evaluation sets (docs/evaluation.md; the files under a data folder such as ``$MIND_SHARED_DATA``)::

    load_questions("math500", "$MIND_SHARED_DATA/math500")            # task math, difficulty = MATH level
    load_questions("commonsense_qa", "$MIND_SHARED_DATA/mentor_kd")   # commonsense_qa_test.json, letters A-E
    load_questions("strategyqa", "$MIND_SHARED_DATA/mentor_kd")       # strategy_qa_test.json, yes/no
    load_questions("gpqa", "my/gpqa_diamond.csv", seed=0)          # your own copy; options shuffled
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from data_schemas import ContractError, validate_row

from .ids import content_question_id, derive_seed
from .readers import _read_text, iter_json_array, iter_jsonl, iter_records

__all__ = [
    "MENTOR_KD_TASKS",
    "ColumnMap",
    "MentorKdFile",
    "MentorKdQuestion",
    "available_sources",
    "commonsense_qa_questions",
    "gpqa_choices",
    "gpqa_questions",
    "gold_text",
    "gsm8k_question",
    "gsm8k_questions",
    "gsm8k_split",
    "hf_disk_questions",
    "jsonl_questions",
    "load_questions",
    "load_questions_from_config",
    "make_question_row",
    "math500_questions",
    "mentor_kd_file",
    "mentor_kd_questions",
    "iter_mentor_kd",
    "parquet_questions",
    "register_source",
    "require_field",
    "split_gsm8k_answer",
    "strategyqa_questions",
    "strip_calculator_notes",
    "svamp_questions",
    "synthetic_questions",
]

SourceFn = Callable[..., Iterator[dict[str, Any]]]
_REGISTRY: dict[str, SourceFn] = {}
_ALIASES = {
    "mentor_kd": "mentor-kd", "mentorkd": "mentor-kd", "hf_disk": "hf-disk", "hf": "hf-disk", "json": "jsonl",
    "math-500": "math500", "csqa": "commonsense_qa", "commonsense-qa": "commonsense_qa", "strategy_qa": "strategyqa",
    "strategy-qa": "strategyqa", "gpqa_diamond": "gpqa", "gpqa-diamond": "gpqa",
}  # fmt: skip

_CALC_NOTE = re.compile(r"<<[^<>]*>>")


# ---------------------------------------------------------------- registry
def register_source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Decorator: make ``fn(path, **options)`` selectable as ``load_questions(name, ...)``."""

    def deco(fn: SourceFn) -> SourceFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def available_sources() -> list[str]:
    """Names accepted by :func:`load_questions`."""
    return sorted(_REGISTRY)


def load_questions(kind: str, path: str | Path | None = None, **options: Any) -> Iterator[dict[str, Any]]:
    """Question rows from the source named ``kind`` (see :func:`available_sources`)."""
    name = _ALIASES.get(kind, kind)
    if name not in _REGISTRY:
        raise ValueError(f"unknown question source {kind!r}; choose one of {', '.join(available_sources())}")
    return _REGISTRY[name](path, **options)


def load_questions_from_config(spec: str | Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A source from a config value: ``"kind"``, ``"kind:PATH"`` or ``{"kind": ..., "path": ..., **options}``."""
    if isinstance(spec, str):
        kind, _, path = spec.partition(":")
        return load_questions(kind, path or None)
    options = dict(spec)
    try:
        kind = options.pop("kind")
    except KeyError:
        raise ValueError(f"question source config needs a 'kind' (one of {', '.join(available_sources())})") from None
    return load_questions(kind, options.pop("path", None), **options)


# ---------------------------------------------------------------- shared helpers
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
    from .verify import normalize_gold

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


def _require_path(path: str | Path | None, kind: str) -> Path:
    if path is None:
        raise ValueError(f"question source {kind!r} needs a path")
    return Path(path)


# ---------------------------------------------------------------- synthetic world
@register_source("synthetic")
def synthetic_questions(
    path: str | Path | None = None,
    *,
    split: str = "train",
    n: int = 100,
    seed: int | None = None,
    config: Any = None,
    **overrides: Any,
) -> Iterator[dict[str, Any]]:
    """Questions of the built-in synthetic world (§6): ``split`` in train, test, ood_steps,
    ood_template, retention. ``config`` is a ``WorldConfig`` or a dict of its fields; ``seed``
    and other keyword options override fields of it."""
    from .synthetic.world import WorldConfig, iter_problems, question_row

    if path is not None:
        raise ValueError("the synthetic source takes no path")
    if config is None:
        cfg = WorldConfig()
    elif isinstance(config, Mapping):
        cfg = WorldConfig(**config)
    else:
        cfg = config
    if seed is not None:
        overrides["seed"] = seed
    if overrides:
        fields = {f.name for f in dataclasses.fields(cfg)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"unknown synthetic world option(s) {unknown}; WorldConfig has {sorted(fields)}")
        cfg = dataclasses.replace(cfg, **overrides)
    for i, problem in enumerate(iter_problems(cfg, split, 0, n)):  # lazy: memory flat in n
        try:
            yield validate_row(question_row(problem, cfg), "questions")
        except ValueError as exc:
            raise ContractError(f"synthetic world ({split}) question {i}", str(exc)) from None


def synthetic_world_of(data: str | Path) -> Any:
    """The ``WorldConfig`` that wrote the synthetic-world runs under ``data`` (from their
    manifests: source options ``config``, ``seed`` and field overrides), or None when no run
    there comes from the synthetic world. Raises ``ContractError`` when runs disagree."""
    from data_schemas import find_runs
    from data_schemas.manifest import load_manifest

    from .synthetic.world import WorldConfig

    found: dict[str, tuple[Path, Any]] = {}
    for run in find_runs(data):
        source = (load_manifest(run).config or {}).get("source") or {}
        if source.get("kind") != "synthetic":
            continue
        opts = dict(source.get("options") or {})
        opts.pop("split", None)
        opts.pop("n", None)
        config, seed = opts.pop("config", None), opts.pop("seed", None)
        cfg = WorldConfig.from_dict(config) if isinstance(config, Mapping) else WorldConfig()
        if seed is not None:
            opts["seed"] = seed
        try:
            cfg = dataclasses.replace(cfg, **opts)
        except TypeError as exc:
            raise ContractError(f"{run}/manifest.json: config.source.options", str(exc)) from None
        found.setdefault(cfg.fingerprint, (run, cfg))
    if len(found) > 1:
        runs = ", ".join(str(r) for r, _ in found.values())
        raise ContractError(str(data), f"synthetic runs of different worlds ({runs}); evaluate each world on its own")
    return next(iter(found.values()))[1] if found else None


# ---------------------------------------------------------------- GSM8K
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


@register_source("gsm8k")
def gsm8k_questions(path: str | Path | None, *, split: str | None = None) -> Iterator[dict[str, Any]]:
    """GSM8K jsonl (train.jsonl, test.jsonl, test_socratic.jsonl): gold after ``####``, the
    reference rationale without that line and without ``<<...>>`` notes; id
    ``gsm8k:<split>:<0-based line index>``."""
    path = _require_path(path, "gsm8k")
    split = split or gsm8k_split(path)
    for line_no, obj in iter_jsonl(path):
        yield gsm8k_question(obj, f"{path}:{line_no}", split=split, index=line_no - 1)


# ---------------------------------------------------------------- SVAMP
@register_source("svamp")
def svamp_questions(path: str | Path | None, *, split: str = "test") -> Iterator[dict[str, Any]]:
    """SVAMP.json: question ``Body + " " + Question``, gold ``Answer``; id ``svamp:<ID>``."""
    path = _require_path(path, "svamp")
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


# ---------------------------------------------------------------- mentor-kd
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


@register_source("mentor-kd")
def mentor_kd_questions(path: str | Path | None, *, task: str | None = None) -> Iterator[dict[str, Any]]:
    """mentor-kd ``*_test.json`` (``{"input","answer"}``) or ``*_k_train.json`` (k rows per question);
    task from the file name; id ``mentor_kd/<file stem>:<question index>``."""
    path = _require_path(path, "mentor-kd")
    for q in iter_mentor_kd(path, task=task):
        if not q.repeat:
            yield q.row


# ---------------------------------------------------------------- MATH-500
MATH500_FILE = "test.jsonl"


def _data_file(path: str | Path | None, kind: str, default_name: str) -> Path:
    """``path`` itself, or ``path/default_name`` when ``path`` is a folder."""
    path = _require_path(path, kind)
    return path / default_name if path.is_dir() else path


@register_source("math500")
def math500_questions(path: str | Path | None, *, split: str = "test") -> Iterator[dict[str, Any]]:
    """MATH-500 ``test.jsonl`` (or its folder) in the HuggingFaceH4/MATH-500 layout: question
    ``problem``, gold ``answer`` (LaTeX, task ``math``: compared after normalisation, symbolic
    answers with math-verify), reference rationale ``solution``, difficulty the MATH ``level``
    (1-5); metadata ``level``, ``subject``, ``unique_id``. Id ``math500:<unique_id>``
    (``math500:test/precalculus/807.json``)."""
    path = _data_file(path, "math500", MATH500_FILE)
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


# ---------------------------------------------------------------- CommonsenseQA and StrategyQA (mentor-kd files)
def _mentor_kd_dataset_questions(
    path: str | Path | None, *, kind: str, dataset: str
) -> Iterator[dict[str, Any]]:
    """The questions of a mentor-kd file of ``dataset`` (``<dataset>_test.json`` when ``path``
    is a folder); the same rows, ids included, as the ``mentor-kd`` source gives for it."""
    path = _data_file(path, kind, f"{dataset}_test.json")
    info = mentor_kd_file(path)
    if info.dataset != dataset:
        raise ContractError(
            str(path), f"a mentor-kd {info.dataset!r} file, not {dataset!r} (expected {dataset}_test.json)"
        )
    yield from mentor_kd_questions(path)


@register_source("commonsense_qa")
def commonsense_qa_questions(path: str | Path | None) -> Iterator[dict[str, Any]]:
    """CommonsenseQA from the mentor-kd files: ``commonsense_qa_test.json`` (1,221 questions) or
    the folder holding it. Five options ``A.`` .. ``E.`` in the question text after ``Answer
    Choices:``, gold an option letter (task ``commonsense_qa``, kind choice). Ids as the
    ``mentor-kd`` source: ``mentor_kd/commonsense_qa_test:<index>``."""
    yield from _mentor_kd_dataset_questions(path, kind="commonsense_qa", dataset="commonsense_qa")


@register_source("strategyqa")
def strategyqa_questions(path: str | Path | None) -> Iterator[dict[str, Any]]:
    """StrategyQA from the mentor-kd files: ``strategy_qa_test.json`` (687 questions) or the
    folder holding it (a ``strategy_qa_3_train.json`` works too). Gold yes/no (task
    ``strategyqa``). Ids as the ``mentor-kd`` source: ``mentor_kd/strategy_qa_test:<index>``."""
    yield from _mentor_kd_dataset_questions(path, kind="strategyqa", dataset="strategy_qa")


# ---------------------------------------------------------------- GPQA (the user's own copy of the official CSV)
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


@register_source("gpqa")
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


# ---------------------------------------------------------------- generic files
@dataclasses.dataclass(frozen=True)
class ColumnMap:
    """Which field of a generic record holds what."""

    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str | None = None
    task: str | None = None
    task_field: str | None = None
    reference_field: str | None = None
    metadata_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task is None and self.task_field is None:
            raise ValueError("generic question sources need task=... (one task) or task_field=... (a column)")

    def needed(self) -> list[str]:
        cols = [self.question_field, self.answer_field, self.id_field, self.task_field, self.reference_field]
        return list(dict.fromkeys([c for c in cols if c] + list(self.metadata_fields)))


def _column_map(options: dict[str, Any]) -> ColumnMap:
    opts = dict(options)
    if "metadata_fields" in opts and opts["metadata_fields"] is not None:
        opts["metadata_fields"] = tuple(opts["metadata_fields"])
    try:
        return ColumnMap(**opts)
    except TypeError as exc:
        raise ValueError(f"bad option for a generic question source: {exc}") from None


def _mapped_rows(
    records: Iterable[tuple[str, Any]], cmap: ColumnMap, *, source: str, split: str | None, noun: str
) -> Iterator[dict[str, Any]]:
    seen: dict[str, str] = {}
    for where, obj in records:
        question = require_field(obj, cmap.question_field, where, noun).strip()
        answer = require_field(obj, cmap.answer_field, where, noun, kind=(str, int, float))
        if cmap.task_field and obj.get(cmap.task_field) is not None:
            task = require_field(obj, cmap.task_field, where, noun)
        elif cmap.task is not None:
            task = cmap.task
        else:
            raise ContractError(where, f"missing {noun} {cmap.task_field!r} (and no default task given)")
        if cmap.id_field:
            qid = gold_text(require_field(obj, cmap.id_field, where, noun, kind=(str, int)))
        else:
            qid = content_question_id(source, question)
        if qid in seen:
            raise ContractError(where, f"duplicate question id {qid!r} (first at {seen[qid]})")
        seen[qid] = where
        reference = obj.get(cmap.reference_field) if cmap.reference_field else None
        if reference is not None and not isinstance(reference, str):
            raise ContractError(where, f"{noun} {cmap.reference_field!r} must be a string")
        meta = {k: obj[k] for k in cmap.metadata_fields if obj.get(k) is not None}
        yield make_question_row(
            where,
            question_id=qid,
            question=question,
            gold=answer,
            task=task,
            source=source,
            split=split,
            reference_rationale=reference,
            metadata=meta,
            gold_field=cmap.answer_field,
        )


@register_source("jsonl")
def jsonl_questions(
    path: str | Path | None,
    *,
    source: str | None = None,
    split: str | None = None,
    **mapping: Any,
) -> Iterator[dict[str, Any]]:
    """Generic JSON Lines (or a JSON array) with configurable fields: ``question_field``,
    ``answer_field``, ``id_field`` (else a content hash id), ``task`` or ``task_field``,
    ``reference_field``, ``metadata_fields``. ``source`` defaults to the file stem."""
    path = _require_path(path, "jsonl")
    cmap = _column_map(mapping)
    records = ((f"{path}:{line}", obj) for line, obj in iter_records(path))
    yield from _mapped_rows(records, cmap, source=source or path.stem, split=split, noun="field")


@register_source("parquet")
def parquet_questions(
    path: str | Path | None, *, source: str | None = None, split: str | None = None, **mapping: Any
) -> Iterator[dict[str, Any]]:
    """Generic Parquet file with the same column mapping as :func:`jsonl_questions`; errors
    name ``FILE: row N`` and the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _require_path(path, "parquet")
    cmap = _column_map(mapping)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(str(path), f"unreadable Parquet file ({exc})") from None
    have = set(pf.schema_arrow.names)
    required = [cmap.question_field, cmap.answer_field] + [c for c in (cmap.id_field,) if c]
    if cmap.task is None:
        required.append(cmap.task_field)
    for col in required:
        if col not in have:
            raise ContractError(str(path), f"no column {col!r} (columns: {', '.join(sorted(have))})")
    columns = [c for c in cmap.needed() if c in have]

    def records() -> Iterator[tuple[str, Any]]:
        i = 0
        for batch in pf.iter_batches(batch_size=8192, columns=columns):
            for obj in batch.to_pylist():
                yield f"{path}: row {i}", obj
                i += 1

    yield from _mapped_rows(records(), cmap, source=source or path.stem, split=split, noun="column")


@register_source("hf-disk")
def hf_disk_questions(
    path: str | Path | None, *, split: str | None = None, source: str | None = None, **mapping: Any
) -> Iterator[dict[str, Any]]:
    """A ``datasets`` Dataset or DatasetDict saved with ``save_to_disk``; ``split`` picks a split
    of a DatasetDict (optional when it has one). Same column mapping as :func:`jsonl_questions`."""
    import datasets

    path = _require_path(path, "hf-disk")
    cmap = _column_map(mapping)
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise ContractError(str(path), f"not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise ContractError(str(path), f"a DatasetDict: choose split= one of {', '.join(ds)}")
            split = next(iter(ds))
        if split not in ds:
            raise ContractError(str(path), f"no split {split!r} (splits: {', '.join(ds)})")
        ds = ds[split]
    have = set(ds.column_names)
    required = [cmap.question_field, cmap.answer_field] + [c for c in (cmap.id_field,) if c]
    if cmap.task is None:
        required.append(cmap.task_field)
    label = f"{path}[{split}]" if split else str(path)
    for col in required:
        if col not in have:
            raise ContractError(label, f"no column {col!r} (columns: {', '.join(sorted(have))})")
    ds = ds.select_columns([c for c in cmap.needed() if c in have])

    def records() -> Iterator[tuple[str, Any]]:
        i = 0
        for batch in ds.iter(batch_size=1024):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys), strict=True):
                yield f"{label}: row {i}", dict(zip(keys, values, strict=True))
                i += 1

    yield from _mapped_rows(records(), cmap, source=source or path.name, split=split, noun="column")

