"""Stand-ins the Dask runner tests install in worker processes (importable there: the workers inherit
the test process's ``sys.path``)."""

from __future__ import annotations

import os
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin


class CountTeacherBuilds(WorkerPlugin):
    """Counts every teacher a worker process builds: one line (the process id) per
    :func:`pipeline.teachers.make_teacher` call, appended to ``path`` (a file all processes share)."""

    name = "count-teacher-builds"

    def __init__(self, path: str) -> None:
        self.path = path

    def setup(self, worker: Any) -> None:
        import pipeline.teachers as teachers

        real = getattr(teachers.make_teacher, "__wrapped__", teachers.make_teacher)
        path = self.path

        def counting(spec: Any) -> Any:
            with open(path, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            return real(spec)

        counting.__wrapped__ = real  # type: ignore[attr-defined]  # installed twice: count once
        teachers.make_teacher = counting
