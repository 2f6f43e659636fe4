"""The embedded default student: the tiny Llama of :mod:`distill.student` after the stage-0 pretraining
of :mod:`distill.pretrain`, built once per configuration (world, tokenizer, size, stage-0 settings,
seed) under a folder named by their hash, and reused."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.ids import stable_hash

from .pretrain import Stage0Settings, run_stage0

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.synthetic import WorldConfig


def default_student_dir(
    root: str | os.PathLike[str] = "runs/students",
    *,
    seed: int = 0,
    settings: Stage0Settings | None = None,
    world: WorldConfig | None = None,
) -> Path:
    """Folder of the embedded default student: ``<root>/<size>-<hash>`` where the hash covers the
    world config, the tokenizer settings, the model size, the stage-0 settings and the seed."""
    from pipeline.synthetic import WorldConfig

    settings = dataclasses.replace(settings or Stage0Settings(), seed=seed)
    world = world or WorldConfig()
    key = json.dumps(
        {"world": world.to_dict(), "stage0": settings.fingerprint_dict()}, sort_keys=True, separators=(",", ":")
    )
    return Path(root) / f"{settings.size}-{stable_hash('default-student', key, length=12)}"


def ensure_default_student(
    root: str | os.PathLike[str] = "runs/students",
    seed: int = 0,
    progress: bool = True,
    *,
    settings: Stage0Settings | None = None,
    world: WorldConfig | None = None,
) -> Path:
    """The default student's folder, pretrained (stage 0, in-process) if ``<dir>/config.json`` is
    missing, else reused as is. Built in a temporary sibling folder and renamed into place, so an
    interrupted build leaves nothing that looks finished."""
    settings = dataclasses.replace(settings or Stage0Settings(), seed=seed)
    target = default_student_dir(root, seed=seed, settings=settings, world=world)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"building the default student in {target} (stage-0 pretraining, once)", file=sys.stderr, flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished student is an ordinary folder
    try:
        run_stage0(settings, tmp, world=world, progress=progress)
        if target.exists() and not (target / "config.json").is_file():  # a stale, unfinished folder
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent build that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
