"""Dynamic perspective fusion (docs/method.md, step 4).

``I_dyn = {k : s_k >= beta * max(s)}`` made scale-free: the rule is applied to the weights
``p = softmax(s / tau_student)`` of the question's candidates, ``p_k >= beta * max_j p_j`` (the
same as ``s_k >= max(s) + tau_student * log(beta)``), so it does not depend on the scores' offset
or sign. ``alpha = softmax(s / tau_student)`` renormalised over ``I_dyn``, detached. With fusion
off (the paper's "w/o fusion" ablation) only the top candidate is kept (ties: the lowest view id).
Exploration (``--meta_explore``, ours) adds candidates the rule left out, at their own softmax weight.
"""

from __future__ import annotations

import math

import torch


def fuse(scores: torch.Tensor, mask: torch.Tensor, *, beta: float, tau: float, enabled: bool = True,
         explore: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(keep, alpha)`` for dense ``[Q, K]`` scores of the present (``mask``) candidates; alpha is
    float64, zero outside ``keep``, and sums to one per question. ``explore`` (``[Q, K]`` bool) adds
    candidates to the subset whatever their score; they get their softmax weight like the others."""
    s = scores.detach().to(torch.float64).masked_fill(~mask, -math.inf) / tau
    top = s.max(dim=1, keepdim=True).values
    if enabled:
        keep = mask & (s >= top + math.log(beta))
    else:
        first = torch.argmax(s, dim=1)  # the first maximum
        keep = torch.zeros_like(mask)
        keep[torch.arange(s.shape[0]), first] = True
    if explore is not None:
        keep = keep | (explore & mask)
    w = torch.exp(s - top).masked_fill(~keep, 0.0)
    return keep, w / w.sum(dim=1, keepdim=True)


def fuse_candidates(
    scores: torch.Tensor, groups: torch.Tensor, views: torch.Tensor, num_questions: int, num_views: int,
    *, beta: float, tau: float, enabled: bool = True, explore: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`fuse` on flat per-candidate ``scores`` (one entry per candidate row): ``(keep, alpha)`` flat;
    ``explore`` is flat too."""
    from distill.metanet import to_dense  # the dense [questions, views] layout the MetaNet uses too

    dense = to_dense(scores.detach(), groups, views, num_questions, num_views)
    mask = to_dense(torch.ones_like(groups, dtype=torch.bool), groups, views, num_questions, num_views, fill=False)
    extra = None if explore is None else to_dense(explore, groups, views, num_questions, num_views, fill=False)
    keep, alpha = fuse(dense, mask, beta=beta, tau=tau, enabled=enabled, explore=extra)
    return keep[groups, views], alpha[groups, views]
