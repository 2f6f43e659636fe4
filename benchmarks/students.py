"""The stage-0 students a benchmark's runs start from: one shared by every run, or one per seed.

Every run of a benchmark starts from an embedded default student (:mod:`distill.default_student`), pretrained
once by stage 0 from a seed. With one shared student the intervals over run seeds leave out how much the result
depends on that student, and it depends a lot: the same code and data gave `all` 47% on one machine's student and
34% on another's (docs/benchmarks.md, "Students"). With ``per_seed`` every run seed ``k`` starts from the student
stage 0 pretrained with seed ``k``, so the seeds vary the student as well as the training's own randomness.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import REPO_ROOT
from benchmarks.quality_data import student_digest
from data_schemas.run_files import STAGE0


def build_student(cfg: dict[str, Any], seed: int | None = None) -> Path:
    """The stage-0 student for the config's world (built once, cached under runs/students), pretrained with
    ``seed`` (default: the config's stage-0 seed)."""
    if cfg.get("student"):
        return Path(cfg["student"])
    from distill.pretrain import Stage0Settings
    from distill.default_student import ensure_default_student
    from pipeline.synthetic.world import WorldConfig

    settings = Stage0Settings(**{**cfg["stage0"], **({} if seed is None else {"seed": seed})})
    return ensure_default_student(REPO_ROOT / "runs" / "students", seed=settings.seed, settings=settings,
                                  world=WorldConfig.from_dict(cfg["world"]))  # fmt: skip


def stage0_record(student: Path) -> dict[str, Any] | None:
    """The stage-0 student's own record (its retention accuracy before any distillation)."""
    path = Path(student) / STAGE0
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"retention_accuracy": data.get("retention_accuracy"), "retention_n": (data.get("retention") or {}).get("n"),
            "seconds": data.get("seconds")}


def student_of(students: Path | Callable[[int], Path]) -> Callable[[int], Path]:
    """``seed -> student folder``: a :class:`Students` (or any such callable) as it is, one folder for every seed."""
    return students if callable(students) else (lambda _seed: Path(students))


@dataclasses.dataclass
class Students:
    """Which student a run of each seed starts from (built on first need, cached under ``runs/students``)."""

    cfg: dict[str, Any]  # the quality config whose ``stage0`` and ``world`` define the students
    per_seed: bool = False
    builder: Callable[..., Path] = build_student  # (cfg, seed) -> the student's folder; a top-level function (spawn)
    built: dict[int, Path] = dataclasses.field(default_factory=dict)

    def stage0_seed(self, seed: int) -> int:
        """The stage-0 seed of a run with ``seed``: its own, or the config's for every run."""
        return seed if self.per_seed else int((self.cfg.get("stage0") or {}).get("seed", 0))

    def prepare(self, seeds: Iterable[int], jobs: int = 1) -> None:
        """Build the students of ``seeds`` not built yet, ``jobs`` at a time (each stage 0 uses one thread)."""
        todo = sorted({self.stage0_seed(s) for s in seeds} - set(self.built))
        if len(todo) <= 1 or jobs <= 1 or self.cfg.get("student"):
            for s in todo:
                self.built[s] = self.builder(self.cfg, s)
            return
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for s, path in zip(todo, pool.map(self.builder, [self.cfg] * len(todo), todo), strict=True):
                self.built[s] = path

    def __call__(self, seed: int) -> Path:
        """The student a run with ``seed`` starts from."""
        self.prepare([seed])
        return self.built[self.stage0_seed(seed)]

    def record(self) -> dict[str, Any]:
        """For the results file: whether the student follows the seed, and each stage-0 seed's folder and weights."""
        return {"per_seed": self.per_seed,
                "by_stage0_seed": {str(s): {"path": str(p), "weights": student_digest(p)} for s, p in sorted(self.built.items())}}  # fmt: skip
