"""The teacher interface: ``generate(requests) -> completions``, one completion per request.

Every backend (vllm, openai, transformers, synthetic) implements :class:`TeacherBackend`.
A request is one sample of one (question, perspective, teacher) view with its own seed,
derived from (run seed, question, perspective, teacher, sample index), so that samples are
independent and a re-run reproduces them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling parameters shared by the requests of a run. ``max_tokens`` is always set."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens <= 0:
            raise ValueError(f"sampling.max_tokens must be > 0, got {self.max_tokens}")


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to generate.

    ``messages`` is the chat form (system, few-shot turns, user); ``prompt`` the same
    rendered as plain text for models without a chat template. ``question`` is the
    question row (docs/design.md) for backends that solve from it (synthetic).
    """

    question_id: str
    perspective: str
    teacher: str
    sample_index: int
    seed: int
    messages: tuple[dict[str, str], ...]
    prompt: str
    sampling: SamplingConfig
    question: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.question_id, self.perspective, self.teacher, self.sample_index)


@dataclass
class Completion:
    """What a backend returns for one request. ``finish_reason`` is stop, length or error."""

    text: str
    finish_reason: str
    num_tokens: int | None = None
    cumulative_logprob: float | None = None
    latency_s: float | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None  # backend facts about the sample, merged into the row's ``metadata``


class TeacherBackend(abc.ABC):
    """A teacher: maps requests to completions, in order, one each.

    A failure of a single request is returned as a ``Completion`` with
    ``finish_reason="error"`` and ``error`` set, never raised, so that one bad request does
    not lose the rest of a shard. Configuration errors are raised at construction.
    """

    name: str

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Return one completion per request, in the same order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (engines, clients)."""
