"""The built-in synthetic world as a question source, and the world a stored run came from."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from data_schemas import ContractError, validate_row


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
    from ..synthetic.world import WorldConfig, iter_problems, question_row

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

    from ..synthetic.world import WorldConfig

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
