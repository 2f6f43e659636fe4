"""The Teaching Assistant: candidate features, scores, the capability gate and the pick policy.

DESIGN §5 steps 2-4 and 6. Features per candidate: ``z = (lhat - L)/S``, ``(L_p - L)/S``,
``(F_p - L_p)/S``, whether ``lhat`` is a fallback (never seen), ``log1p(age)``, log length,
training progress, plus a learned perspective embedding. The TA (an MLP, Meta-Weight-Net
style) maps them to a score; the gate subtracts ``gamma * relu(z - kappa)``; the policy is a
softmax over a question's candidates with temperature ``tau``.

Picks use counter-based randomness: the uniform number for (seed, step, question, draw) comes
from a hash, so picks do not depend on how questions are batched, accumulated or spread over
ranks, and resuming needs no RNG state beyond the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.ids import stable_hash

NUM_FEATURES = 7


class TeachingAssistant(nn.Module):
    """Small MLP scoring a candidate from its features and its view's embedding."""

    def __init__(self, num_views: int, hidden: int = 32, embedding_dim: int = 8, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.embedding = nn.Embedding(num_views, embedding_dim)
        # no output bias: the policy is a softmax within each question, so a constant shift of every score
        # changes nothing; its gradient is zero up to rounding, which Adam would blow up to +-lr steps
        # (a random walk that made TA states differ between GA=1 and GA=k, or between 1 and 2 processes)
        self.net = nn.Sequential(nn.Linear(NUM_FEATURES + embedding_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
        with torch.no_grad():  # seeded init, identical on every rank; zero output layer = neutral start
            for p in (self.embedding.weight, self.net[0].weight):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            self.net[0].bias.zero_()
            self.net[2].weight.zero_()

    def forward(self, features: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        x = torch.cat([features, self.embedding(views)], dim=-1)
        return self.net(x).squeeze(-1)


@dataclass
class Features:
    """Per-candidate inputs of a batch (float32 tensors, one row per candidate)."""

    x: torch.Tensor  # [N, NUM_FEATURES]
    z: torch.Tensor  # [N] (lhat - L) / S: distance above the student's current loss


def build_features(
    lhat: torch.Tensor,
    seen: torch.Tensor,
    age: torch.Tensor,
    view_loss: torch.Tensor,
    view_trend: torch.Tensor,
    lengths: torch.Tensor,
    L: float,  # noqa: N803
    S: float,  # noqa: N803
    progress: float,
) -> Features:
    z = (lhat - L) / S
    x = torch.stack(
        [
            z,
            (view_loss - L) / S,
            view_trend / S,
            (~seen).to(torch.float64),
            torch.log1p(age),
            torch.log1p(lengths.to(torch.float64)) / 5.0,
            torch.full_like(z, progress),
        ],
        dim=-1,
    )
    x = torch.nan_to_num(x, nan=0.0, posinf=10.0, neginf=-10.0).clamp(-10.0, 10.0)
    return Features(x.to(torch.float32), torch.nan_to_num(z, nan=0.0).to(torch.float32))


def gate(z: torch.Tensor, gamma: float, kappa: float) -> torch.Tensor:
    """Capability calibration: the score penalty ``gamma * relu(z - kappa)`` (returned negated)."""
    return -gamma * torch.relu(z - kappa)


def grouped_log_softmax(scores: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """log softmax of ``scores`` within each group (a question's candidates)."""
    maxes = torch.full((num_groups,), -math.inf, dtype=scores.dtype).scatter_reduce(
        0, groups, scores.detach(), reduce="amax", include_self=True
    )
    shifted = scores - maxes[groups]
    sums = torch.zeros(num_groups, dtype=scores.dtype).index_add(0, groups, shifted.exp())
    return shifted - sums.log()[groups]


def counter_uniform(seed: int, step: int, question: str, draw: int) -> float:
    """A uniform number in [0, 1) determined by (seed, step, question, draw)."""
    return int(stable_hash(seed, "pick", step, question, draw), 16) / 16.0**16


def sample_picks(
    log_pi: torch.Tensor, groups: torch.Tensor, num_groups: int, k: int, keys: list[str], seed: int, step: int
) -> torch.Tensor:
    """Boolean mask of ``k`` candidates per group drawn without replacement from ``exp(log_pi)``."""
    picked = torch.zeros(log_pi.shape[0], dtype=torch.bool)
    probs = log_pi.detach().exp().to(torch.float64)
    for g in range(num_groups):
        idx = (groups == g).nonzero().flatten()
        p = probs[idx].clone()
        for draw in range(min(k, idx.numel())):
            total = float(p.sum())
            if total <= 0:  # only zero-probability candidates remain
                break
            u = counter_uniform(seed, step, keys[g], draw) * total
            j = int(torch.searchsorted(torch.cumsum(p, 0), torch.tensor(u, dtype=torch.float64), right=True))
            j = min(j, idx.numel() - 1)
            while p[j] == 0:  # searchsorted can land on a zero bucket at the edge
                j -= 1
            picked[idx[j]] = True
            p[j] = 0.0
    return picked


def pick_uniform(groups: torch.Tensor, num_groups: int, keys: list[str], seed: int, step: int, k: int) -> torch.Tensor:
    """``random`` strategy: k uniform picks per question."""
    log_pi = grouped_log_softmax(torch.zeros(groups.shape[0], dtype=torch.float64), groups, num_groups)
    return sample_picks(log_pi, groups, num_groups, k, keys, seed, step)


def entropy_per_group(log_pi: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    return -torch.zeros(num_groups, dtype=log_pi.dtype).index_add(0, groups, log_pi.exp() * log_pi)
