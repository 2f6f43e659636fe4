"""A judge model: a second verdict beside the rule verifier (docs/design.md).

The rule verifier (:mod:`pipeline.verify`) leaves a row *unjudged* (``is_correct`` null) when no
final answer can be read from the rationale, or the comparison with the gold answer cannot
decide (e.g. an expression math-verify cannot parse). A judge is any teacher backend
(``transformers``, ``vllm``, ``openai``; not ``synthetic``, which ignores prompts) asked, with a
prompt from a YAML file, whether a rationale's final answer matches the gold answer.

Configured by the ``judge`` section of a synthesis config (:class:`JudgeSpec`)::

    judge:
      mode: unjudged            # off | unjudged | all: which rows the judge sees
      teacher: openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1
      prompt: default           # built-in prompt name (pipeline/judge_prompts/) or a YAML path
      prefer: rule              # where rule and judge both decided: whose verdict is is_correct
      max_tokens: 64            # judge sampling: temperature 0 (greedy), top_p 1 by default

Rows with ``finish_reason == "error"`` (no rationale) are never sent. ``unjudged`` sends the rows
the rule left unjudged; ``all`` sends every row. The final ``is_correct`` is
:func:`final_verdict`: the preferred side's verdict where it decided, else the other side's
(so a judge can only fill in for the rule with ``prefer: rule``, the default).

Replies are parsed by :func:`parse_verdict`: the first word after the *last* verdict marker
(``Verdict:``, case-insensitive) must be one of the prompt's correct / incorrect words; without a
marker, a reply that is a single such word counts. Anything else is *unparseable*: the judge
verdict is null (counted), never guessed. A failed judge request (``finish_reason == "error"``)
leaves the reply null too (counted as a judge error; its message goes into ``metadata``).

Judging happens inside a shard's task, before the shard is written, so a finished shard is
finished with its judgements and resume needs nothing new.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data_schemas import ContractError
from pipeline.ids import derive_seed, stable_hash
from pipeline.teachers import GenerationRequest, SamplingConfig, TeacherBackend, TeacherSpec

__all__ = [
    "JUDGE_MODES",
    "JudgeItem",
    "JudgeOutcome",
    "JudgePrompt",
    "JudgeSpec",
    "available_judge_prompts",
    "build_judge_requests",
    "final_verdict",
    "judge_items",
    "load_judge_prompt",
    "parse_verdict",
    "render_judge_messages",
]

JUDGE_MODES = ("off", "unjudged", "all")
BUILTIN_PACKAGE = "pipeline"
BUILTIN_DIR = "judge_prompts"
#: Placeholders a judge template may use; ``{rationale}`` and ``{gold_answer}`` are required.
PLACEHOLDERS = frozenset({"question", "gold_answer", "rationale", "predicted_answer", "task"})
_REQUIRED_PLACEHOLDERS = ("rationale", "gold_answer")
_WORD_RE = re.compile(r"[A-Za-z]+")
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


# ---------------------------------------------------------------- the prompt file
class JudgePrompt(BaseModel):
    """A judge prompt file: system prompt, user template, and how to read the reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    description: str = ""
    system_prompt: str = ""
    template: str = Field(min_length=1, description="the user turn; placeholders: " + ", ".join(sorted(PLACEHOLDERS)))
    verdict_marker: str = Field("Verdict:", min_length=1)
    correct_words: tuple[str, ...] = ("correct",)
    incorrect_words: tuple[str, ...] = ("incorrect",)
    max_rationale_chars: int = Field(6000, gt=0, description="longer rationales keep their end (where the answer is)")

    @field_validator("template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"bad template ({exc}); write literal braces as '{{{{' and '}}}}'") from None
        unknown = sorted(fields - PLACEHOLDERS)
        if unknown:
            raise ValueError(f"unknown placeholder(s) {unknown}; allowed: {sorted(PLACEHOLDERS)}")
        missing = [f"{{{p}}}" for p in _REQUIRED_PLACEHOLDERS if p not in fields]
        if missing:
            raise ValueError(f"must contain the placeholder(s) {', '.join(missing)}")
        return value

    @field_validator("correct_words", "incorrect_words", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and any(isinstance(w, bool) for w in value):
            raise ValueError("YAML reads a bare yes / no / true / false / on / off as a boolean: quote it, e.g. ['yes']")
        return value

    @field_validator("correct_words", "incorrect_words")
    @classmethod
    def _check_words(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one word")
        bad = [w for w in value if not _WORD_RE.fullmatch(w)]
        if bad:
            raise ValueError(f"words must be letters only, got {bad}")
        return tuple(w.lower() for w in value)

    @model_validator(mode="after")
    def _disjoint(self) -> JudgePrompt:
        both = sorted(set(self.correct_words) & set(self.incorrect_words))
        if both:
            raise ValueError(f"{both} are both correct and incorrect words")
        return self

    def digest(self) -> str:
        """Stable hash of everything that changes what the judge sees or how replies are read."""
        return stable_hash("judge-prompt", json.dumps(self.model_dump(mode="json"), sort_keys=True))


def available_judge_prompts() -> list[str]:
    """Names of the built-in judge prompts."""
    root = resources.files(BUILTIN_PACKAGE) / BUILTIN_DIR
    return sorted(e.name.rsplit(".", 1)[0] for e in root.iterdir() if e.name.endswith((".yaml", ".yml")))


def _read_prompt_source(name_or_path: str | Path) -> tuple[str, str]:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        path = Path(name_or_path)
        try:
            return str(path), path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ContractError(str(path), f"cannot read judge prompt ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ContractError(str(path), f"not UTF-8 text ({exc.reason})") from None
    root = resources.files(BUILTIN_PACKAGE) / BUILTIN_DIR
    for suffix in (".yaml", ".yml"):
        entry = root / f"{text}{suffix}"
        if entry.is_file():
            return f"{BUILTIN_PACKAGE}/{BUILTIN_DIR}/{text}{suffix}", entry.read_text(encoding="utf-8")
    raise ContractError(
        "", f"unknown judge prompt {text!r}; built-in prompts: {available_judge_prompts()} (or give a YAML file path)"
    )


def load_judge_prompt(name_or_path: str | Path) -> JudgePrompt:
    """A built-in prompt (by name, e.g. ``default``) or a YAML file; errors name the file and field."""
    where, text = _read_prompt_source(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContractError(f"{where}:{mark.line + 1}" if mark else where, f"invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ContractError(where, f"expected a mapping of judge prompt fields, got {type(data).__name__}")
    try:
        return JudgePrompt.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            problems.append(f"field {loc!r}: {msg}")
        raise ContractError(where, "; ".join(problems)) from None


# ---------------------------------------------------------------- the config section
class JudgeSpec(BaseModel):
    """The ``judge`` section of a synthesis config (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["off", "unjudged", "all"] = "off"
    teacher: TeacherSpec | None = Field(None, description="the judge: any teacher backend but synthetic")
    prompt: str = Field("default", description="built-in judge prompt name or YAML path")
    prefer: Literal["rule", "judge"] = Field("rule", description="whose verdict wins where both decided")
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(64, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false
        if value is None or value is False:
            return {"mode": "off"}
        if isinstance(value, str):
            return {"mode": value}
        if isinstance(value, dict) and value.get("mode") is False:
            return {**value, "mode": "off"}
        return value

    @model_validator(mode="after")
    def _check(self) -> JudgeSpec:
        if self.mode == "off":
            return self
        if self.teacher is None:
            raise ValueError(f"mode {self.mode!r} needs a judge: set judge.teacher (e.g. 'transformers:PATH')")
        if self.teacher.backend == "synthetic":
            raise ValueError("the synthetic teacher cannot judge (it ignores prompts); use a model backend")
        try:
            self.load_prompt()
        except ContractError as exc:
            raise ValueError(f"prompt: {exc}") from None
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def judge_name(self) -> str:
        """The value written to the ``judge_model`` column."""
        assert self.teacher is not None
        return self.teacher.teacher_name

    def load_prompt(self) -> JudgePrompt:
        return load_judge_prompt(self.prompt)

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_p, self.max_tokens)

    def identity(self) -> dict[str, Any] | None:
        """What about the judge changes the rows written (None when off: run ids stay as without a judge)."""
        if not self.enabled:
            return None
        assert self.teacher is not None
        return {
            "mode": self.mode, "teacher": self.teacher.identity(), "prompt": self.load_prompt().digest(),
            "prefer": self.prefer, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
        }  # fmt: skip


# ---------------------------------------------------------------- judging
@dataclass(frozen=True)
class JudgeItem:
    """What the judge sees of one rationale row (``question_row``: for backends that want it)."""

    question_id: str
    perspective: str
    teacher: str
    sample_index: int
    question: str
    gold_answer: str
    task: str
    rationale: str
    predicted_answer: str | None
    question_row: dict[str, Any] | None = None


@dataclass(frozen=True)
class JudgeOutcome:
    """One judgement: ``verdict`` None when unparseable or failed; ``reply`` None when failed."""

    verdict: bool | None
    reply: str | None
    error: str | None = None

    @property
    def unparseable(self) -> bool:
        return self.reply is not None and self.verdict is None


def _clip(rationale: str, limit: int) -> str:
    return rationale if len(rationale) <= limit else "[...]" + rationale[-limit:]


def render_judge_messages(prompt: JudgePrompt, item: JudgeItem) -> tuple[dict[str, str], ...]:
    """Chat messages for one item: the system prompt (if any) and the filled template."""
    user = prompt.template.format(
        question=item.question.strip(),
        gold_answer=item.gold_answer,
        rationale=_clip(item.rationale.strip(), prompt.max_rationale_chars),
        predicted_answer=item.predicted_answer if item.predicted_answer is not None else "(none found)",
        task=item.task,
    )
    messages = [{"role": "system", "content": prompt.system_prompt.strip()}] if prompt.system_prompt.strip() else []
    messages.append({"role": "user", "content": user})
    return tuple(messages)


def _plain_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The plain-text form (models without a chat template), as ``pipeline.perspectives.render_prompt``."""
    parts = [m["content"] if m["role"] == "system" else f"### Instruction\n{m['content']}" for m in messages]
    return "\n\n".join([*parts, "### Response\n"])


def build_judge_requests(
    spec: JudgeSpec, prompt: JudgePrompt, items: Sequence[JudgeItem], run_seed: int
) -> list[GenerationRequest]:
    """One request per item; the seed is derived from the run seed and the row's key."""
    sampling = spec.sampling()
    name = spec.judge_name
    out = []
    for it in items:
        messages = render_judge_messages(prompt, it)
        seed = derive_seed(run_seed, "judge", it.question_id, it.perspective, it.teacher, it.sample_index)
        out.append(
            GenerationRequest(
                it.question_id, it.perspective, name, it.sample_index, seed, messages, _plain_prompt(messages),
                sampling, it.question_row or {},
            )
        )  # fmt: skip
    return out


def parse_verdict(reply: str, prompt: JudgePrompt) -> bool | None:
    """True / False from a judge reply, or None when it cannot be read (see the module docstring)."""
    at = reply.lower().rfind(prompt.verdict_marker.lower())
    if at >= 0:
        m = _WORD_RE.search(reply, at + len(prompt.verdict_marker))
        if m is None or reply[at + len(prompt.verdict_marker) : m.start()].strip(" \t\r\n*_:\"'`-=") != "":
            return None
        word = m.group(0).lower()
    else:
        words = _WORD_RE.findall(reply)
        if len(words) != 1 or reply.strip(" \t\r\n.!*_\"'`") != words[0]:
            return None
        word = words[0].lower()
    if word in prompt.correct_words:
        return True
    if word in prompt.incorrect_words:
        return False
    return None


def judge_items(
    spec: JudgeSpec, prompt: JudgePrompt, items: Sequence[JudgeItem], backend: TeacherBackend, run_seed: int
) -> list[JudgeOutcome]:
    """Ask ``backend`` about every item (one ``generate`` call); one outcome per item, in order."""
    if not items:
        return []
    requests = build_judge_requests(spec, prompt, items, run_seed)
    completions = backend.generate(requests)
    if len(completions) != len(requests):
        raise RuntimeError(f"judge {spec.judge_name} returned {len(completions)} completions for {len(requests)}")
    out = []
    for comp in completions:
        if comp.finish_reason == "error":
            out.append(JudgeOutcome(None, None, comp.error or "unknown error"))
        else:
            out.append(JudgeOutcome(parse_verdict(comp.text, prompt), comp.text))
    return out


def final_verdict(rule: bool | None, judge: bool | None, prefer: str = "rule") -> bool | None:
    """``is_correct`` from the two verdicts: the preferred side's where it decided, else the other's."""
    first, second = (rule, judge) if prefer == "rule" else (judge, rule)
    return first if first is not None else second
