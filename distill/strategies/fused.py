"""``instant``: the paper's instantaneous-loss ablation. Scores are ``-CE`` of this step (no
MetaNet, no inertia); the same dynamic fusion and answer-consistency term as ``mind``: subset
``I_dyn`` and weights ``alpha = softmax(-CE / tau_student)`` over it."""

from __future__ import annotations

from distill.fusion import fuse_candidates
from distill.strategies.base import Plan, Scored, StepBatch, Strategy, register


def fused_plan(strategy: Strategy, batch: StepBatch, scores) -> Plan:
    """Subset and weights from per-candidate ``scores`` by the fusion rule, plus the JSD term."""
    a = strategy.args
    keep, alpha = fuse_candidates(
        scores, batch.groups, batch.views, batch.nq, len(strategy.views), beta=a.fusion_beta, tau=a.tau_student, enabled=a.fusion
    )
    return Plan(keep, alpha, consistency="jsd" if a.consistency_weight > 0 else "none", scores=scores.detach())


@register
class Instant(Strategy):
    name = "instant"
    needs_scores = True

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        assert scored is not None
        return fused_plan(self, batch, -scored.ce)
