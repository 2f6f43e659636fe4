"""Question sets to evaluate on: a synthetic-world split, or the first questions of any question source
(``KIND[:PATH]``, :mod:`pipeline.sources`), or a stored questions run."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SYNTHETIC_SPLITS: tuple[str, ...] = ("train", "test", "ood_steps", "ood_template", "retention", "retention_train")
DEFAULT_SYNTHETIC_QUESTIONS = 200


def _parse_source(source: str) -> tuple[str, str | None]:
    kind, sep, path = source.partition(":")
    return kind.strip(), (path if sep and path else None)


def load_split_questions(
    split: str,
    *,
    source: str | None = None,
    num_questions: int | None = None,
    world_seed: int | None = None,
    world: Any = None,
    options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The questions of ``split``: the synthetic world's split (``num_questions``, default
    200; ``world`` a WorldConfig or dict of its fields, ``world_seed`` its seed), or, with
    ``source="KIND[:PATH]"``, the first ``num_questions`` of that source (``options`` go to
    :func:`pipeline.sources.load_questions`; ``questions:DIR`` reads a stored questions run
    and keeps the rows of ``split``). Raises ``ValueError`` for an unknown split or source."""
    from pipeline.sources import load_questions
    from pipeline.sources.hub import is_hub_dataset

    if num_questions is not None and num_questions < 0:
        raise ValueError(f"num_questions must be >= 0, got {num_questions}")
    options = dict(options or {})
    if source is None:
        if split not in SYNTHETIC_SPLITS:
            raise ValueError(
                f"unknown synthetic split {split!r}; choose one of {', '.join(SYNTHETIC_SPLITS)} "
                "(or give --source KIND:PATH for another question set)"
            )
        n = DEFAULT_SYNTHETIC_QUESTIONS if num_questions is None else num_questions
        if world is not None:
            options["config"] = world
        rows = load_questions("synthetic", split=split, n=n, seed=world_seed, **options)
        return list(rows)
    kind, path = _parse_source(source)
    if kind == "questions":
        from data_schemas import read_questions

        if path is None:
            raise ValueError("source 'questions' needs a folder: questions:DIR")
        if not Path(path).exists():
            raise ValueError(f"questions folder {path!r} does not exist")
        table = read_questions(path)
        rows = [r for r in table.to_pylist() if r.get("split") == split]
        if not rows:
            have = sorted({str(s) for s in table.column("split").to_pylist()})
            raise ValueError(f"no questions of split {split!r} in {path} (splits: {', '.join(have)})")
        return rows if num_questions is None else rows[:num_questions]
    rows_iter = load_questions(kind, path, **options)  # an unknown kind raises here (lazy rows)
    if path is not None and not is_hub_dataset(path) and not Path(path).exists():
        raise ValueError(f"question file {path!r} does not exist")
    return list(rows_iter if num_questions is None else itertools.islice(rows_iter, num_questions))
