"""What a strategy is: given a micro-batch of questions with their candidates (and, if it asks for
them, every candidate's current loss and representation), it says which candidates the student
trains on, with which weights, and which answer-consistency term joins them (a :class:`Plan`).

The trainer (``distill.trainer``) does everything else the same way for every strategy: the
forward passes, the loss ``sum_q [sum_k alpha_k CE_k + lambda * consistency_q] / |B|``, the
inertia statistics, compute accounting, logs and checkpoints. A strategy is one small class,
registered by name with :func:`register`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from distill.data import CandidateStore
    from distill.inertia import InertiaStats


@dataclass
class StepBatch:
    """One micro-batch's candidates (CPU bookkeeping tensors, one entry per candidate row)."""

    groups: torch.Tensor  # batch-local question index of each candidate
    views: torch.Tensor  # view id
    uids: torch.Tensor  # global candidate id
    lengths: torch.Tensor  # completion tokens
    question_index: torch.Tensor  # [nq] global question index
    keys: list[str]  # [nq] question ids (counter-based randomness)
    step: int  # optimizer steps completed before this one
    max_steps: int

    @property
    def nq(self) -> int:
        return int(self.question_index.numel())

    @property
    def n(self) -> int:
        return int(self.groups.numel())

    def per_question_uniform(self, keep: torch.Tensor) -> torch.Tensor:
        """Weights 1/|kept| over each question's kept candidates (float64)."""
        sizes = torch.zeros(self.nq, dtype=torch.float64).index_add(0, self.groups, keep.to(torch.float64))
        return torch.where(keep, 1.0 / sizes[self.groups].clamp(min=1.0), torch.zeros((), dtype=torch.float64))


@dataclass
class Scored:
    """Every candidate's cross-entropy this step (detached) and, if asked for, its representation."""

    ce: torch.Tensor  # [N] float64
    reps: torch.Tensor | None = None  # [N, D] float32


@dataclass
class Plan:
    """What the student trains on in one micro-batch."""

    keep: torch.Tensor  # [N] bool
    alpha: torch.Tensor  # [N] float64: weight of each candidate's CE (0 outside keep; sums to 1 per question)
    consistency: str = "none"  # "none", "jsd" (weight alpha_i alpha_j per pair) or "bkl" (MCC-KD)
    pair_weights: torch.Tensor | None = None  # [N] per-row factors of a pair's weight (default alpha)
    scores: torch.Tensor | None = None  # [N] the scores behind the choice (logged per view)
    record: dict[str, Any] | None = None  # the strategy's own data for end_of_step (gathered over ranks)


class Strategy:
    """Base class: choose candidates per micro-batch; optionally learn once per optimizer step."""

    name: ClassVar[str]
    needs_scores: ClassVar[bool] = False  # wants every candidate's CE (a scoring forward)
    needs_reps: ClassVar[bool] = False  # wants the student's pooled hidden states too
    answer_consistency: ClassVar[bool] = False  # its plans may carry an answer-consistency term (the answer span)

    def __init__(self, args: Any, store: CandidateStore, views: list[str], **_: Any):  # args: the run's MindConfig
        self.args, self.store, self.views = args, store, views

    def plan(self, batch: StepBatch, scored: Scored | None, stats: InertiaStats) -> Plan:
        raise NotImplementedError

    def student_frozen(self, step: int) -> bool:
        """Whether the student is left unchanged in optimizer step ``step`` (0-based)."""
        return False

    @property
    def frozen_steps(self) -> int:
        """How many first optimizer steps leave the student unchanged (``student_frozen``)."""
        return 0

    def end_of_step(self, records: list[dict[str, Any]], step: int) -> dict[str, float]:
        """Once per optimizer step with every micro-batch's and rank's records; returns metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


REGISTRY: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    REGISTRY[cls.name] = cls
    return cls
