"""Synthesis as a library: configuration, run identity, shard planning and one shard's work.

The Prefect flow in ``flows.synthesize`` orchestrates these pieces; nothing here imports
Prefect, so a shard can run anywhere (a thread, a Dask or Ray worker, a test).

A shard is a fixed slice of the question source. Its work is: build one request per
(question x perspective x teacher x sample) with its own derived seed, generate, verify every
completion, optionally ask a judge model (``pipeline.judge``: the rows the rule verifier left
unjudged, or every row), and write the rows atomically as ``shards/<name>.parquet`` of the run
directory ``OUT/<run_id>/``. A shard listed in the run's manifest is finished (judgements included)
and never recomputed.

Every row's ``metadata`` carries its question's source fields (:func:`question_fields`: the
scalar fields of the question row's ``metadata``, e.g. MATH500's ``level`` and ``subject``, and
its ``difficulty``) under the key ``"question"``, beside row-level keys such as ``error`` and
``judge_error``: ``{"question": {"level": 5, "subject": "Algebra", ...}}``. ``pipeline.select
--difficulty field:NAME`` reads them from there.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from data_schemas import RATIONALE_SCHEMA, SCHEMA_VERSION, ContractError, RunWriter
from pipeline.ids import derive_seed, stable_hash
from pipeline.judge import JudgeItem, JudgeSpec, final_verdict, judge_items
from pipeline.perspectives import Perspective, load_perspective_set, prompt_hash, render_messages, render_prompt
from pipeline.sources import load_questions
from pipeline.synthetic import PERSPECTIVES as SYNTHETIC_PERSPECTIVES
from pipeline.teachers import (Completion, GenerationRequest, SamplingConfig, TeacherBackend, TeacherSpec,
                               teacher_in_process)  # fmt: skip
from pipeline.verify import task_kind, verify

SYNTHETIC_SET = "synthetic"  # the reference teacher's own perspectives (no prompts)


# ---------------------------------------------------------------- configuration
class SourceSpec(BaseModel):
    """A question source (``pipeline.sources``): kind, optional path, options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = "synthetic"
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class SamplingSpec(BaseModel):
    """Sampling parameters of every request; ``max_tokens`` is always set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(512, gt=0)
    stop: tuple[str, ...] = ()

    def to_sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_p, self.max_tokens, self.stop)


class SynthesisConfig(BaseModel):
    """Everything a synthesis run needs. Fields that change outputs define the run id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SourceSpec = Field(default_factory=lambda: SourceSpec(kind="synthetic", options={"split": "train"}))
    num_questions: int | None = Field(200, ge=1, description="first N questions of the source; null = all")
    perspective_set: str | None = Field(
        None, description="built-in set name or YAML path; default 'synthetic' for the synthetic teacher, else 'math'"
    )
    perspectives: tuple[str, ...] | None = Field(None, description="names to use, in order; default: the whole set")
    teachers: tuple[TeacherSpec, ...] = (TeacherSpec(backend="synthetic"),)
    samples: int = Field(2, ge=1, description="rationales per (question, perspective, teacher)")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    seed: int = 0
    shard_size: int = Field(100, ge=1, description="questions per shard")
    max_concurrency: int = Field(4, ge=1, description="shards in flight at once")
    task_retries: int = Field(2, ge=0, description="Prefect retries of a failed shard task")
    task_runner: Literal["thread", "dask", "ray"] = "thread"
    task_runner_options: dict[str, Any] = Field(default_factory=dict)
    judge: JudgeSpec = Field(default_factory=JudgeSpec, description="optional judge model (pipeline.judge)")

    @model_validator(mode="after")
    def _check(self) -> SynthesisConfig:
        if not self.teachers:
            raise ValueError("teachers: at least one teacher is needed")
        names = [t.teacher_name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teachers: names must be distinct, got {names} (set 'name' to tell them apart)")
        self.resolved_perspectives()  # raises on unknown names or a bad set
        if self.source.kind == "synthetic" and self.num_questions is None and "n" not in self.source.options:
            raise ValueError("num_questions: the synthetic world is unbounded; set num_questions (or source.options.n)")
        return self

    @property
    def expected_questions(self) -> int | None:
        """How many questions the run will have, when known before reading the source."""
        if self.source.kind != "synthetic":
            return self.num_questions if self.source.path is None else None
        n = self.source.options.get("n", self.num_questions)
        return min(n, self.num_questions) if self.num_questions is not None else n

    @property
    def set_name(self) -> str:
        if self.perspective_set:
            return self.perspective_set
        return SYNTHETIC_SET if all(t.backend == "synthetic" for t in self.teachers) else "math"

    def resolved_perspectives(self) -> list[Perspective | str]:
        """Perspective objects of the prompt set, or plain names for the synthetic set."""
        if self.set_name == SYNTHETIC_SET:
            if any(t.backend != "synthetic" for t in self.teachers):
                raise ValueError("perspective_set: model teachers need a prompt set (e.g. 'math'), not 'synthetic'")
            names = list(self.perspectives or SYNTHETIC_PERSPECTIVES)
            unknown = [n for n in names if n not in SYNTHETIC_PERSPECTIVES]
            if unknown:
                raise ValueError(f"perspectives: {unknown} are not synthetic perspectives {list(SYNTHETIC_PERSPECTIVES)}")
            return names
        found = load_perspective_set(self.set_name, list(self.perspectives) if self.perspectives else None)
        if any(t.backend == "synthetic" for t in self.teachers):
            unknown = [p.name for p in found if p.name not in SYNTHETIC_PERSPECTIVES]
            if unknown:
                raise ValueError(f"perspectives: the synthetic teacher cannot write {unknown}")
        return list(found)

    def identity(self) -> dict[str, Any]:
        """Everything that changes the rows written (not concurrency or runners)."""
        persp = [
            p if isinstance(p, str) else {"name": p.name, "hash": prompt_hash(p)} for p in self.resolved_perspectives()
        ]
        return {
            "source": self.source.model_dump(),
            "num_questions": self.num_questions,
            "perspectives": persp,
            "teachers": [t.identity() for t in self.teachers],
            "samples": self.samples,
            "sampling": self.sampling.model_dump(mode="json"),
            "seed": self.seed,
            "shard_size": self.shard_size,
            "schema_version": SCHEMA_VERSION,
        } | ({"judge": judge} if (judge := self.judge.identity()) is not None else {})

    def run_id(self) -> str:
        return f"synth-{stable_hash(json.dumps(self.identity(), sort_keys=True, default=str), length=12)}"


def format_validation_error(exc: ValidationError) -> str:
    """``field 'a.b': message`` per error (pydantic errors name the field)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"field {loc!r}: {msg}" if loc else msg)
    return "; ".join(lines)


def load_config(path: str | Path | None = None, **overrides: Any) -> SynthesisConfig:
    """Read a YAML config (optional) and apply overrides; errors name the file and the field."""
    data: dict[str, Any] = {}
    where = "synthesis config"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ContractError(where, "no such file") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ContractError(f"{where}:{mark.line + 1}" if mark else where, f"invalid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ContractError(where, "expected a mapping of config fields")
        data = loaded or {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "judge" and isinstance(value, dict):
            merged = {**data[key], **value} if isinstance(data.get(key), dict) else value  # flags refine the file
            if set(value) - {"mode"} and merged.get("mode", "off") == "off":
                raise ContractError(where, "judge settings were given (--judge-teacher/--judge-prompt/--judge-prefer) "
                                           "but the judge is off: add --judge unjudged|all")  # fmt: skip
            value = merged
        data[key] = value
    try:
        return SynthesisConfig.model_validate(data)
    except ValidationError as exc:
        raise ContractError(where, format_validation_error(exc)) from None


# ---------------------------------------------------------------- planning
def iter_question_shards(cfg: SynthesisConfig) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``(shard name, question rows)`` in source order, lazily (memory flat in the source size)."""
    options = dict(cfg.source.options)
    if cfg.source.kind == "synthetic":
        options.setdefault("n", cfg.num_questions)
    rows = load_questions(cfg.source.kind, cfg.source.path, **options)
    batch: list[dict[str, Any]] = []
    index = 0
    for n, row in enumerate(rows):
        if cfg.num_questions is not None and n >= cfg.num_questions:
            break
        batch.append(row)
        if len(batch) == cfg.shard_size:
            yield f"shard-{index:05d}", batch
            batch, index = [], index + 1
    if batch:
        yield f"shard-{index:05d}", batch


def check_tasks(cfg: SynthesisConfig, question: dict[str, Any]) -> None:
    """Fail early when the source's task has no verifier."""
    try:
        task_kind(question["task"])
    except ValueError as exc:
        raise ContractError(f"source {cfg.source.kind}", str(exc)) from None


# ---------------------------------------------------------------- one shard
@dataclass
class GroupStats:
    """Counts of one (perspective, teacher) group; ``correct`` / ``unjudged`` of the final verdict.

    Judge counts (zero without a judge): ``judged`` rows sent to it, its ``judge_correct`` /
    ``judge_incorrect`` verdicts, ``judge_unparseable`` replies, ``judge_errors`` (failed
    requests); of the rows both decided, ``agree`` / ``disagree``; ``filled``: the rule left
    the row unjudged and the judge decided it; ``overridden``: the final verdict is not the
    rule's decided one (``prefer: judge``).
    """

    rows: int = 0
    correct: int = 0
    unjudged: int = 0
    errors: int = 0
    tokens: int = 0
    judged: int = 0
    judge_correct: int = 0
    judge_incorrect: int = 0
    judge_unparseable: int = 0
    judge_errors: int = 0
    agree: int = 0
    disagree: int = 0
    filled: int = 0
    overridden: int = 0

    def add(self, other: GroupStats) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class ShardResult:
    """What a shard task reports back (small: safe to return from any task runner)."""

    name: str
    rows: int = 0
    skipped: bool = False
    teacher_s: float = 0.0
    verify_s: float = 0.0
    judge_s: float = 0.0
    write_s: float = 0.0
    total_s: float = 0.0
    groups: dict[str, GroupStats] = field(default_factory=dict)  # "perspective\tteacher" -> stats
    worker: str = ""  # "host:pid" of the process that ran the shard
    teachers_built: int = 0  # teachers (and judges) this shard built in its process; 0 when it reused them

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "rows": self.rows, "skipped": self.skipped, "teacher_s": self.teacher_s,
            "verify_s": self.verify_s, "judge_s": self.judge_s, "write_s": self.write_s, "total_s": self.total_s,
            "groups": {k: vars(v) for k, v in self.groups.items()}, "worker": self.worker,
            "teachers_built": self.teachers_built,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardResult:
        fields = {k: v for k, v in data.items() if k != "groups"}
        return cls(**fields, groups={k: GroupStats(**v) for k, v in data["groups"].items()})


_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _teacher_lock(teacher: TeacherBackend) -> threading.Lock | None:
    """Backends that are not thread-safe (model engines) serve one shard thread at a time."""
    if getattr(teacher, "thread_safe", False):
        return None
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(teacher), threading.Lock())


def question_fields(question: dict[str, Any]) -> dict[str, Any]:
    """The question's source fields that its rationale rows carry (``metadata["question"]``).

    The scalar values (str, int, finite float, bool; not null) of the question row's ``metadata`` JSON
    object, plus its ``difficulty`` column (unless the metadata has a ``difficulty`` of its own).
    Lists and objects (the synthetic world's ``steps``) stay in the source. ``{}`` when none.
    """
    raw = question.get("metadata")
    try:
        meta = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    except (ValueError, TypeError):
        meta = {}
    if not isinstance(meta, dict):
        meta = {}
    fields = {
        k: v for k, v in meta.items() if isinstance(v, str | int | bool) or (isinstance(v, float) and math.isfinite(v))
    }
    if question.get("difficulty") is not None:
        fields.setdefault("difficulty", question["difficulty"])
    return fields


def build_requests(
    cfg: SynthesisConfig, spec: TeacherSpec, questions: list[dict[str, Any]], perspectives: list[Perspective | str]
) -> list[GenerationRequest]:
    """One request per (question x perspective x sample) for one teacher, each with its own seed."""
    sampling = cfg.sampling.to_sampling()
    teacher = spec.teacher_name
    out = []
    for q in questions:
        for p in perspectives:
            name = p if isinstance(p, str) else p.name
            if isinstance(p, str):
                messages, prompt = (), q["question"]
            else:
                messages, prompt = render_messages(p, q["question"]), render_prompt(p, q["question"])
            for k in range(cfg.samples):
                seed = derive_seed(cfg.seed, q["question_id"], name, teacher, k)
                out.append(GenerationRequest(q["question_id"], name, teacher, k, seed, messages, prompt, sampling, q))
    return out


def run_shard(
    cfg: SynthesisConfig, run_dir: str | Path, run_id: str, name: str, questions: list[dict[str, Any]]
) -> ShardResult:
    """Generate, verify and write one shard (skipped if already finished)."""
    t0 = time.perf_counter()
    writer = RunWriter(run_dir, run_id, config=cfg.identity())
    result = ShardResult(name=name, worker=f"{socket.gethostname()}:{os.getpid()}")
    if writer.has_shard(name):
        result.skipped = True
        return result
    perspectives = cfg.resolved_perspectives()
    prompt_hashes = {p.name: prompt_hash(p) for p in perspectives if not isinstance(p, str)}
    cols: dict[str, list[Any]] = {f.name: [] for f in RATIONALE_SCHEMA}
    sampling = cfg.sampling
    for spec in cfg.teachers:
        teacher, built = teacher_in_process(spec)
        result.teachers_built += built
        requests = build_requests(cfg, spec, questions, perspectives)
        t = time.perf_counter()
        completions = _generate(teacher, requests)
        result.teacher_s += time.perf_counter() - t
        if len(completions) != len(requests):
            raise RuntimeError(f"teacher {spec.teacher_name} returned {len(completions)} completions for {len(requests)}")
        t = time.perf_counter()
        _add_rows(cols, requests, completions, prompt_hashes, result.groups)
        result.verify_s += time.perf_counter() - t
    n = len(cols["question_id"])
    for key in ("judge_model", "judge_verdict", "judge_reply", "rule_verdict"):
        cols[key] = [None] * n
    if cfg.judge.enabled:
        t = time.perf_counter()
        _judge_shard(cfg, cols, questions, result)
        result.judge_s = time.perf_counter() - t
    constant = {
        "run_id": run_id, "schema_version": SCHEMA_VERSION, "temperature": sampling.temperature,
        "top_p": sampling.top_p, "max_tokens": sampling.max_tokens,
    }  # fmt: skip
    for key, value in constant.items():
        cols[key] = [value] * n
    t = time.perf_counter()
    writer.write_shard(name, pa.Table.from_pydict(cols, schema=RATIONALE_SCHEMA))
    result.write_s = time.perf_counter() - t
    result.rows = n
    result.total_s = time.perf_counter() - t0
    return result


def _generate(teacher: TeacherBackend, requests: list[GenerationRequest]) -> list[Completion]:
    """The teacher's completions, under its lock when it serves one shard thread at a time."""
    lock = _teacher_lock(teacher)
    if lock is None:
        return teacher.generate(requests)
    with lock:
        return teacher.generate(requests)


def _add_rows(
    cols: dict[str, list[Any]],
    requests: list[GenerationRequest],
    completions: list[Completion],
    prompt_hashes: dict[str, str],
    groups: dict[str, GroupStats],
) -> None:
    """Verify every completion and append its row to ``cols`` (counted in ``groups``)."""
    carried: dict[str, dict[str, Any]] = {}  # metadata of the question's rows, and as JSON (once)
    carried_json: dict[str, str | None] = {}
    for req, comp in zip(requests, completions, strict=True):
        q = req.question
        if req.question_id not in carried:
            fields = question_fields(q)
            carried[req.question_id] = {"question": fields} if fields else {}
            carried_json[req.question_id] = json.dumps(carried[req.question_id]) if fields else None
        key = f"{req.perspective}\t{req.teacher}"
        stats = groups.get(key) or groups.setdefault(key, GroupStats())
        stats.rows += 1
        meta = carried_json[req.question_id]
        if comp.finish_reason == "error":
            predicted, correct = None, None
            stats.errors += 1
            meta = json.dumps({**carried[req.question_id], "error": comp.error or "unknown error"})
        else:
            predicted, correct = verify(comp.text, q["gold_answer"], q["task"])
            if comp.metadata:
                meta = json.dumps({**carried[req.question_id], **comp.metadata})
        stats.correct += correct is True
        stats.unjudged += correct is None
        stats.tokens += comp.num_tokens or 0
        row = cols
        row["question_id"].append(req.question_id)
        row["question"].append(q["question"])
        row["gold_answer"].append(q["gold_answer"])
        row["task"].append(q["task"])
        row["perspective"].append(req.perspective)
        row["teacher"].append(req.teacher)
        row["sample_index"].append(req.sample_index)
        row["rationale"].append(comp.text)
        row["predicted_answer"].append(predicted)
        row["is_correct"].append(correct)
        row["finish_reason"].append(comp.finish_reason)
        row["num_tokens"].append(comp.num_tokens)
        row["seed"].append(req.seed)
        row["source"].append(q.get("source"))
        row["split"].append(q.get("split"))
        row["prompt_hash"].append(prompt_hashes.get(req.perspective))
        row["latency_s"].append(comp.latency_s)
        row["cumulative_logprob"].append(comp.cumulative_logprob)
        row["metadata"].append(meta)


def _judge_shard(
    cfg: SynthesisConfig, cols: dict[str, list[Any]], questions: list[dict[str, Any]], result: ShardResult
) -> None:
    """Ask the judge about the shard's rows (in place: judge columns, final ``is_correct``, counts)."""
    spec = cfg.judge
    everything = spec.mode == "all"
    finish, verdicts = cols["finish_reason"], cols["is_correct"]
    chosen = [i for i in range(len(finish)) if finish[i] != "error" and (everything or verdicts[i] is None)]
    if not chosen:
        return
    by_id = {q["question_id"]: q for q in questions}
    items = [
        JudgeItem(
            cols["question_id"][i], cols["perspective"][i], cols["teacher"][i], cols["sample_index"][i],
            cols["question"][i], cols["gold_answer"][i], cols["task"][i], cols["rationale"][i],
            cols["predicted_answer"][i], by_id.get(cols["question_id"][i]),
        )
        for i in chosen
    ]  # fmt: skip
    backend, built = teacher_in_process(spec.teacher)  # type: ignore[arg-type]  # set when enabled
    result.teachers_built += built
    lock = _teacher_lock(backend)
    prompt = spec.load_prompt()
    if lock is None:
        outcomes = judge_items(spec, prompt, items, backend, cfg.seed)
    else:
        with lock:
            outcomes = judge_items(spec, prompt, items, backend, cfg.seed)
    name = spec.judge_name
    for i, out in zip(chosen, outcomes, strict=True):
        rule = verdicts[i]
        final = final_verdict(rule, out.verdict, spec.prefer)
        cols["judge_model"][i] = name
        cols["judge_verdict"][i] = out.verdict
        cols["judge_reply"][i] = out.reply
        cols["rule_verdict"][i] = rule
        verdicts[i] = final
        if out.error is not None:
            meta = json.loads(cols["metadata"][i]) if cols["metadata"][i] else {}
            cols["metadata"][i] = json.dumps({**meta, "judge_error": out.error})
        g = result.groups[f"{cols['perspective'][i]}\t{cols['teacher'][i]}"]
        g.judged += 1
        g.judge_correct += out.verdict is True
        g.judge_incorrect += out.verdict is False
        g.judge_unparseable += out.unparseable
        g.judge_errors += out.error is not None
        if rule is not None and out.verdict is not None:
            g.agree += rule == out.verdict
            g.disagree += rule != out.verdict
        g.filled += rule is None and out.verdict is not None
        g.overridden += rule is not None and final != rule
        g.correct += (final is True) - (rule is True)
        g.unjudged += (final is None) - (rule is None)
