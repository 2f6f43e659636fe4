"""Perspectives: named reasoning styles defined in YAML files, not code (docs/design.md).

A perspective is a system prompt, optional few-shot examples, an instruction template with a
``{question}`` placeholder and an answer format. A *perspective set* is a YAML file::

    name: math
    description: Reasoning styles for math word problems.
    perspectives:
      - name: stepwise
        description: One short computation per line.
        system_prompt: You are a careful math tutor.
        instruction: |-
          Solve the problem step by step.

          Problem: {question}
        answer_format: End with a final line 'The answer is N.'
        few_shot:
          - question: Tom has 3 apples and buys 2 more. How many apples does he have?
            answer: |-
              3 + 2 = 5
              The answer is 5.

The instruction may also place ``{answer_format}``; without it, the answer format is appended
after the instruction on its own paragraph. Literal braces are written ``{{`` and ``}}``.
Built-in sets ship as package data in ``pipeline/perspective_sets/`` (see
:func:`available_perspective_sets`); any other set is loaded from its file path.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from data_schemas import ContractError
from pipeline.ids import stable_hash

__all__ = [
    "FewShotExample",
    "Perspective",
    "PerspectiveSet",
    "available_perspective_sets",
    "fold_system_message",
    "load_perspective_set",
    "parse_perspective_set",
    "perspective_hash",
    "prompt_hash",
    "render_messages",
    "render_prompt",
    "render_user_turn",
]

BUILTIN_PACKAGE = "pipeline"
BUILTIN_DIR = "perspective_sets"
_PLACEHOLDERS = frozenset({"question", "answer_format"})
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

Message = dict[str, str]


class FewShotExample(BaseModel):
    """One worked example: a question and the answer written in the perspective's style."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class Perspective(BaseModel):
    """A named prompt template: system prompt, few-shot turns, instruction, answer format."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    description: str = Field(min_length=1)
    system_prompt: str = ""
    instruction: str = Field(min_length=1)
    answer_format: str = Field(min_length=1)
    few_shot: tuple[FewShotExample, ...] = ()

    @field_validator("instruction")
    @classmethod
    def _check_instruction(cls, value: str) -> str:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:  # unbalanced braces
            raise ValueError(f"bad template ({exc}); write literal braces as '{{{{' and '}}}}'") from None
        unknown = sorted(fields - _PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {unknown}; allowed: {{question}}, {{answer_format}} "
                "(write literal braces as '{{' and '}}')"
            )
        if "question" not in fields:
            raise ValueError("must contain the placeholder {question}")
        return value


class PerspectiveSet(BaseModel):
    """The content of one perspective-set file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    description: str = ""
    perspectives: tuple[Perspective, ...] = Field(min_length=1)

    @field_validator("perspectives")
    @classmethod
    def _unique_names(cls, value: tuple[Perspective, ...]) -> tuple[Perspective, ...]:
        seen: set[str] = set()
        for p in value:
            if p.name in seen:
                raise ValueError(f"duplicate perspective name {p.name!r}")
            seen.add(p.name)
        return value


# --------------------------------------------------------------------------------- loading


def available_perspective_sets() -> list[str]:
    """Names of the built-in perspective sets."""
    root = resources.files(BUILTIN_PACKAGE) / BUILTIN_DIR
    return sorted(
        entry.name.rsplit(".", 1)[0]
        for entry in root.iterdir()
        if entry.name.endswith((".yaml", ".yml"))
    )


def _looks_like_path(name_or_path: str | Path) -> bool:
    if isinstance(name_or_path, Path):
        return True
    text = str(name_or_path)
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text or Path(text).is_file()


def _read_source(name_or_path: str | Path) -> tuple[str, str]:
    """Return ``(where, text)`` for a built-in set name or a file path."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        try:
            return str(path), path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ContractError(str(path), f"cannot read perspective set ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise ContractError(str(path), f"not UTF-8 text ({exc.reason})") from None
    name = str(name_or_path)
    root = resources.files(BUILTIN_PACKAGE) / BUILTIN_DIR
    for suffix in (".yaml", ".yml"):
        entry = root / f"{name}{suffix}"
        if entry.is_file():
            return f"{BUILTIN_PACKAGE}/{BUILTIN_DIR}/{name}{suffix}", entry.read_text(encoding="utf-8")
    raise ContractError(
        "", f"unknown perspective set {name!r}; built-in sets: {available_perspective_sets()} "
        "(or give the path of a YAML file)"
    )


def _loc_to_field(loc: Sequence[int | str], data: Any) -> str:
    """``('perspectives', 1, 'instruction')`` -> ``perspectives[1] (socratic).instruction``."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "<top level>"


def _validation_error(where: str, exc: ValidationError, data: Any) -> ContractError:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{_loc_to_field(err['loc'], data)}: {msg}")
    return ContractError(where, "; ".join(problems))


def parse_perspective_set(text: str, where: str = "<string>") -> PerspectiveSet:
    """Parse and validate the YAML text of a perspective set; errors name ``where`` and the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{where}:{mark.line + 1}" if mark is not None else where
        problem = getattr(exc, "problem", None) or str(exc)
        raise ContractError(loc, f"invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ContractError(where, f"expected a mapping with a 'perspectives' list, got {type(data).__name__}")
    try:
        return PerspectiveSet.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(where, exc, data) from None


def load_perspective_set(
    name_or_path: str | Path, names: Sequence[str] | None = None
) -> list[Perspective]:
    """Load a built-in set (by name, e.g. ``math``) or a YAML file (by path).

    ``names`` selects perspectives of the set, in that order; an unknown name is an error.
    Errors are :class:`data_schemas.ContractError` naming the file (and line or field).
    """
    where, text = _read_source(name_or_path)
    pset = parse_perspective_set(text, where)
    if names is None:
        return list(pset.perspectives)
    by_name = {p.name: p for p in pset.perspectives}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ContractError(where, f"no perspective(s) {missing} in set {pset.name!r}; it has {list(by_name)}")
    return [by_name[n] for n in names]


# ------------------------------------------------------------------------------- rendering


def render_user_turn(perspective: Perspective, question: str) -> str:
    """The instruction with the question (and answer format) filled in."""
    fields = {f for _, f, _, _ in string.Formatter().parse(perspective.instruction) if f}
    text = perspective.instruction.format(question=question.strip(), answer_format=perspective.answer_format)
    if "answer_format" not in fields:
        text = f"{text.rstrip()}\n\n{perspective.answer_format}"
    return text


def render_messages(perspective: Perspective, question: str) -> tuple[Message, ...]:
    """Chat messages: system (if any), few-shot user/assistant turns, then the user question."""
    messages: list[Message] = []
    if perspective.system_prompt.strip():
        messages.append({"role": "system", "content": perspective.system_prompt.strip()})
    for ex in perspective.few_shot:
        messages.append({"role": "user", "content": render_user_turn(perspective, ex.question)})
        messages.append({"role": "assistant", "content": ex.answer})
    messages.append({"role": "user", "content": render_user_turn(perspective, question)})
    return tuple(messages)


def render_prompt(
    perspective: Perspective, question: str, *, user_tag: str = "### Instruction", assistant_tag: str = "### Response"
) -> str:
    """Plain-text rendering for models without a chat template.

    The system prompt, then each turn under ``user_tag`` / ``assistant_tag`` headers; the text
    ends with the assistant tag so that the model continues with its solution. Use
    ``user_tag`` as a stop string to end generation before the model writes a new problem.
    """
    parts: list[str] = []
    for msg in render_messages(perspective, question):
        if msg["role"] == "system":
            parts.append(msg["content"])
        elif msg["role"] == "user":
            parts.append(f"{user_tag}\n{msg['content']}")
        else:
            parts.append(f"{assistant_tag}\n{msg['content']}")
    parts.append(f"{assistant_tag}\n")
    return "\n\n".join(parts)


def fold_system_message(messages: Sequence[Message]) -> tuple[Message, ...]:
    """Merge a leading system message into the first user turn (for chat templates without a system role)."""
    if not messages or messages[0].get("role") != "system":
        return tuple(messages)
    system, rest = messages[0]["content"], list(messages[1:])
    for i, msg in enumerate(rest):
        if msg.get("role") == "user":
            rest[i] = {**msg, "content": f"{system}\n\n{msg['content']}"}
            return tuple(rest)
    return ({"role": "user", "content": system}, *rest)


# ---------------------------------------------------------------------------------- hashes


def perspective_hash(perspective: Perspective) -> str:
    """Stable hash of everything in a perspective that changes what a teacher sees."""
    return stable_hash("perspective", json.dumps(perspective.model_dump(mode="json"), sort_keys=True))


def prompt_hash(perspective: Perspective, question: str | None = None) -> str:
    """Stable hash of the rendered prompt (chat messages and plain text) for ``question``.

    Without ``question``, the hash of the perspective definition (:func:`perspective_hash`).
    """
    if question is None:
        return perspective_hash(perspective)
    messages = json.dumps(render_messages(perspective, question), sort_keys=True)
    return stable_hash("prompt", messages, render_prompt(perspective, question))
