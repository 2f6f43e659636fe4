"""Gradient share per view: how much of the student's update each perspective (and the consistency
term) contributes, a diagnostic of the issue's "why does MIND not win" question.

The loss of a micro-batch is a sum of terms, one per view (``sum of alpha_k CE_k`` over its kept
candidates) and one for the consistency term, so its gradient is the sum of the terms' gradients
``g = sum_t g_t``. A term's share is its projection on the whole update, ``<g_t, g> / <g, g>``: the
shares add up to 1, a term pulling against the rest has a negative share, and a view kept with a
large weight whose gradient the other views cancel shows a small one. This is what the weights
``alpha`` alone cannot tell: a view's weight times its loss is not its say in the update.

Cost: one extra backward pass per term and one gradient per term held in memory, on the measured
micro-batches only (``--grad_share_every``); the training itself is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gradient_shares(terms: dict[str, torch.Tensor], params: Sequence[torch.Tensor]) -> dict[str, float]:
    """Each term's share ``<g_t, g> / <g, g>`` of the summed gradient ``g`` over ``params``.

    ``terms``: scalar losses whose sum is the loss being trained (their graphs are kept for the
    caller's own backward). Terms without a gradient path share 0; all shares are 0 if the summed
    gradient is 0."""
    grads = {n: torch.autograd.grad(t, params, retain_graph=True, allow_unused=True)
             for n, t in terms.items() if t.requires_grad}  # fmt: skip
    dots = dict.fromkeys(terms, 0.0)
    norm = 0.0
    for i in range(len(params)):
        parts = {n: g[i].double() for n, g in grads.items() if g[i] is not None}
        if not parts:
            continue
        total = torch.stack(list(parts.values())).sum(dim=0)
        norm += float(total.pow(2).sum())
        for n, g in parts.items():
            dots[n] += float((g * total).sum())
    return {n: d / norm if norm else 0.0 for n, d in dots.items()}
