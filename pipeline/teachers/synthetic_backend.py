"""The ``synthetic`` teacher: the synthetic world's reference teacher behind the backend interface.

It solves from the stored question row (the world's steps are in its metadata), so it needs no
model and runs at tens of thousands of rationales per second. Perspectives are the reference
teacher's own (``pipeline.synthetic.PERSPECTIVES``); prompts are ignored. ``latency_s``
simulates a slow teacher (seconds per ``generate`` call), for pipeline tests and benchmarks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.synthetic import PERSPECTIVES, TEACHER_NAME, NoiseConfig, ReferenceTeacher, problem_from_question_row

from .base import Completion, GenerationRequest, TeacherBackend


@dataclass(frozen=True)
class SyntheticConfig:
    """Noise rates of the reference teacher (see ``pipeline.synthetic.NoiseConfig``).

    ``slip_per_step``: the slip rate is per solution step (longer problems fail more often).
    """

    slip_rate: float = 0.1
    flaw_rate: float = 0.05
    per_perspective: dict[str, dict[str, float | str]] = field(default_factory=dict, hash=False)
    latency_s: float = 0.0
    slip_per_step: bool = False

    def noise(self) -> NoiseConfig:
        return NoiseConfig(self.slip_rate, self.flaw_rate, self.per_perspective, slip_per_step=self.slip_per_step)


class SyntheticBackend(TeacherBackend):
    """Reference-teacher completions for synthetic-world question rows."""

    name = TEACHER_NAME
    thread_safe = True
    perspectives: tuple[str, ...] = PERSPECTIVES

    def __init__(self, config: SyntheticConfig | None = None, **kwargs: Any):
        self.config = config or SyntheticConfig(**kwargs)
        self.teacher = ReferenceTeacher(self.config.noise())  # validates the rates

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        if self.config.latency_s:
            time.sleep(self.config.latency_s)
        problems: dict[str, Any] = {}
        out: list[Completion] = []
        for req in requests:
            try:
                problem = problems.get(req.question_id)
                if problem is None:
                    problem = problems[req.question_id] = problem_from_question_row(req.question)
                written = self.teacher.write(problem, req.perspective, req.seed)
            except (KeyError, ValueError, TypeError) as exc:
                out.append(Completion(text="", finish_reason="error", error=f"{type(exc).__name__}: {exc}"))
                continue
            # the reference teacher knows what it got wrong: carried in the row's metadata (the
            # verifier cannot see a flaw; the interference benchmark measures what strategies keep)
            noise = {"noise": written.noise, "noise_step": written.noise_step}
            out.append(Completion(text=written.text, finish_reason="stop", num_tokens=written.num_tokens, metadata=noise))
        return out
