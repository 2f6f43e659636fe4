"""The Teaching Assistant: the paper's MetaNet, which scores every candidate rationale of a question
against the student's current capability (docs/method.md, step 3).

Per candidate a feature vector: a representation of the rationale (the student's pooled last
hidden state over the rationale, detached, or a frozen sentence encoder's embedding), a view
embedding and long-term loss features from the inertia statistics (``loss_features``). Multi-head
self-attention across the question's candidates (absent views masked) lets each score depend on
which other perspectives are there; then one small MLP head per view gives the score ``s_k``.

Questions are laid out densely as ``[questions, K]`` with slot ``k`` = view ``k`` (a question has
at most one candidate per view); ``mask`` marks the views present.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: the long-term loss features, in the order :func:`loss_features` returns them
LOSS_FEATURES = ("candidate_loss", "view_loss", "view_trend", "never_measured", "age", "length", "progress")
NUM_LOSS_FEATURES = len(LOSS_FEATURES)
#: ``--meta_features``: which of them the MetaNet sees. ``no_target`` leaves out the candidate's own EMA
#: loss, which is almost the ``inertia`` meta-target itself (the target is the same EMA one update later)
FEATURE_SETS: dict[str, tuple[int, ...]] = {
    "full": tuple(range(NUM_LOSS_FEATURES)),
    "no_target": tuple(i for i, name in enumerate(LOSS_FEATURES) if name != "candidate_loss"),
}


def loss_features(
    lhat: torch.Tensor,
    seen: torch.Tensor,
    age: torch.Tensor,
    view_loss: torch.Tensor,
    view_trend: torch.Tensor,
    lengths: torch.Tensor,
    L: float,  # noqa: N803 - the statistics' notation
    S: float,  # noqa: N803
    progress: float,
) -> torch.Tensor:
    """``[N, NUM_LOSS_FEATURES]`` float32: the candidate's long-term (EMA) loss and its view's, on the
    scale of the student's global loss (``(x - L) / S``), the view's trend, whether the candidate was
    ever measured, steps since it was, its length and the training progress."""
    x = torch.stack(
        [
            (lhat - L) / S,
            (view_loss - L) / S,
            view_trend / S,
            (~seen).to(torch.float64),
            torch.log1p(age) / 5.0,
            torch.log1p(lengths.to(torch.float64)) / 5.0,
            torch.full_like(lhat, progress, dtype=torch.float64),
        ],
        dim=-1,
    )
    return torch.nan_to_num(x, nan=0.0, posinf=10.0, neginf=-10.0).clamp(-10.0, 10.0).to(torch.float32)


def to_dense(values: torch.Tensor, groups: torch.Tensor, views: torch.Tensor, num_questions: int, num_views: int,
             fill: float = 0.0) -> torch.Tensor:  # fmt: skip
    """Scatter per-candidate ``values`` (``[N, ...]``) into ``[num_questions, num_views, ...]``."""
    out = values.new_full((num_questions, num_views, *values.shape[1:]), fill)
    out[groups, views] = values
    return out


class MetaNet(nn.Module):
    """Scores ``[Q, K]`` from representations ``[Q, K, R]``, loss features ``[Q, K, F]`` and a mask."""

    def __init__(self, num_views: int, rep_dim: int, *, hidden: int = 64, heads: int = 4, attention: bool = True,
                 seed: int = 0, num_features: int = NUM_LOSS_FEATURES):  # fmt: skip
        super().__init__()
        self.num_views = num_views
        with torch.random.fork_rng(devices=[]):  # seeded init, identical on every rank, global RNG untouched
            torch.manual_seed(seed)
            self.rep_in = nn.Sequential(nn.LayerNorm(rep_dim), nn.Linear(rep_dim, hidden))
            self.loss_in = nn.Linear(num_features, hidden)
            self.view_embedding = nn.Embedding(num_views, hidden)
            # no projection biases: a key bias shifts every attention logit of a query alike, so its gradient is
            # zero up to rounding, which Adam would blow up into +-lr steps (runs with other batch layouts or
            # process counts would drift apart); the input layers' biases and the LayerNorm cover the rest
            self.attention = nn.MultiheadAttention(hidden, heads, bias=False, batch_first=True) if attention else None
            self.norm = nn.LayerNorm(hidden)
            # one MLP head per view, as batched weights indexed by the view id
            self.head_w1 = nn.Parameter(torch.randn(num_views, hidden, hidden) / math.sqrt(hidden))
            self.head_b1 = nn.Parameter(torch.zeros(num_views, hidden))
            # zero output layer: every score starts equal (no preference before any feedback)
            self.head_w2 = nn.Parameter(torch.zeros(num_views, hidden))

    def forward(self, reps: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k = mask.shape
        views = torch.arange(k, device=mask.device).expand(q, k)
        x = torch.tanh(self.rep_in(reps) + self.loss_in(feats) + self.view_embedding(views))
        if self.attention is not None:
            attended, _ = self.attention(x, x, x, key_padding_mask=~mask, need_weights=False)
            x = self.norm(x + attended)
        h = torch.tanh(torch.einsum("qkh,khd->qkd", x, self.head_w1) + self.head_b1)
        scores = (h * self.head_w2).sum(-1)
        return scores.masked_fill(~mask, 0.0)
