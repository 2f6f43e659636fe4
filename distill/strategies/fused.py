"""``instant``: the paper's instantaneous-loss ablation. Scores are ``-CE`` of this step (no
MetaNet, no inertia); the same dynamic fusion and answer-consistency term as ``mind``: subset
``I_dyn`` and weights ``alpha = softmax(-CE / tau_student)`` over it."""

from __future__ import annotations

import torch

from distill.fusion import fuse_candidates
from distill.strategies.base import Plan, Scored, StepBatch, Strategy, register
from distill.strategies.sampling import counter_uniform


def exploration(batch: StepBatch, rate: float, seed: int) -> torch.Tensor | None:
    """``--meta_explore``: each candidate joins the subset with probability ``rate`` this step, whatever its
    score (a counter-based draw per question, step and view), so a view left out keeps being trained a
    little, its loss can fall, and it can come back. None when the rate is 0."""
    if rate <= 0:
        return None
    keys = [batch.keys[int(g)] for g in batch.groups]
    draws = [counter_uniform(seed, batch.step, key, int(v), salt="explore") for key, v in zip(keys, batch.views, strict=True)]
    return torch.tensor(draws, dtype=torch.float64) < rate


def fused_plan(strategy: Strategy, batch: StepBatch, scores) -> Plan:
    """Subset and weights from per-candidate ``scores`` by the fusion rule (plus exploration), and the JSD term."""
    a = strategy.args
    keep, alpha = fuse_candidates(
        scores, batch.groups, batch.views, batch.nq, len(strategy.views), beta=a.fusion_beta, tau=a.tau_student,
        enabled=a.fusion, explore=exploration(batch, a.meta_explore, a.seed),
    )  # fmt: skip
    return Plan(keep, alpha, consistency="jsd" if a.consistency_weight > 0 else "none", scores=scores.detach())


@register
class Instant(Strategy):
    name = "instant"
    needs_scores = True
    answer_consistency = True

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        assert scored is not None
        return fused_plan(self, batch, -scored.ce)
