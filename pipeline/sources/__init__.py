"""Question sources (docs/design.md): each yields question rows of the contract with stable ids.

A source is selected by name through a small registry::

    from pipeline.sources import load_questions
    rows = list(load_questions("gsm8k", "$MIND_SHARED_DATA/gsm8k/test.jsonl"))
    rows = list(load_questions("synthetic", split="test", n=200))
    rows = list(load_questions("jsonl", "my.jsonl", question_field="q", answer_field="a", task="arith"))
    rows = list(load_questions("gsm8k", "hf:openai/gsm8k", config="main", split="test"))   # a hub data set
    rows = list(load_questions("hub", "org/name", split="test", question_field="q", answer_field="a", task="arith"))

A path may name environment variables (``$MIND_SHARED_DATA/gsm8k/test.jsonl``, ``~/data``): they are
expanded when the source is read, so a config stays portable (and a run's identity keeps the name, not
one machine's folder); an unset variable is an error naming it.

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

The readers live one family per module: :mod:`.synthetic_world`, :mod:`.gsm8k`, :mod:`.svamp`,
:mod:`.mentor_kd` (also CommonsenseQA and StrategyQA), :mod:`.math500`, :mod:`.gpqa` and
:mod:`.generic` (JSONL, Parquet, ``datasets`` folders), :mod:`.hub` (a hub data set by id, through
``datasets.load_dataset``: the local cache first, nothing downloaded with ``HF_HUB_OFFLINE``); :mod:`.rows` holds what they share (the
validated question row, required fields). This module is the registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import generic, gpqa, gsm8k, hub, math500, mentor_kd, svamp, synthetic_world

__all__ = [
    "available_sources",
    "load_questions",
    "load_questions_from_config",
    "register_source",
]

SourceFn = Callable[..., Iterator[dict[str, Any]]]
_REGISTRY: dict[str, SourceFn] = {
    "synthetic": synthetic_world.synthetic_questions,
    "gsm8k": gsm8k.gsm8k_questions,
    "svamp": svamp.svamp_questions,
    "mentor-kd": mentor_kd.mentor_kd_questions,
    "math500": math500.math500_questions,
    "commonsense_qa": mentor_kd.commonsense_qa_questions,
    "strategyqa": mentor_kd.strategyqa_questions,
    "gpqa": gpqa.gpqa_questions,
    "jsonl": generic.jsonl_questions,
    "parquet": generic.parquet_questions,
    "hf-disk": generic.hf_disk_questions,
    "hub": hub.hub_questions,
}
_ALIASES = {
    "mentor_kd": "mentor-kd", "mentorkd": "mentor-kd", "hf_disk": "hf-disk", "hf": "hf-disk", "json": "jsonl",
    "math-500": "math500", "csqa": "commonsense_qa", "commonsense-qa": "commonsense_qa", "strategy_qa": "strategyqa",
    "strategy-qa": "strategyqa", "gpqa_diamond": "gpqa", "gpqa-diamond": "gpqa",
}  # fmt: skip


def register_source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Decorator: make ``fn(path, **options)`` selectable as ``load_questions(name, ...)``."""

    def deco(fn: SourceFn) -> SourceFn:
        _REGISTRY[name] = fn
        return fn

    return deco


def available_sources() -> list[str]:
    """Names accepted by :func:`load_questions`."""
    return sorted(_REGISTRY)


def expand_path(path: str | Path | None) -> str | Path | None:
    """``path`` with ``~`` and environment variables expanded; ``ValueError`` naming a variable that is not set."""
    if path is None or "$" not in str(path) and not str(path).startswith("~"):
        return path
    expanded = os.path.expandvars(os.path.expanduser(str(path)))
    if unset := re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded):
        raise ValueError(f"question source path {str(path)!r}: the environment variable {unset.group(1)} is not set")
    return expanded


def load_questions(kind: str, path: str | Path | None = None, **options: Any) -> Iterator[dict[str, Any]]:
    """Question rows from the source named ``kind`` (see :func:`available_sources`); ``path`` may name
    environment variables (:func:`expand_path`)."""
    name = _ALIASES.get(kind, kind)
    if name not in _REGISTRY:
        raise ValueError(f"unknown question source {kind!r}; choose one of {', '.join(available_sources())}")
    return _REGISTRY[name](expand_path(path), **options)


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
