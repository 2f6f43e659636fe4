"""Counter-based randomness: the uniform number for (seed, step, question, draw) comes from a hash,
so draws do not depend on how questions are batched, accumulated or spread over ranks, and
resuming needs no RNG state beyond the seed."""

from __future__ import annotations

import torch

from pipeline.ids import stable_hash


def counter_uniform(seed: int, step: int, question: str, draw: int, salt: str = "pick") -> float:
    """A uniform number in [0, 1) determined by its arguments."""
    return int(stable_hash(seed, salt, step, question, draw), 16) / 16.0**16


def uniform_picks(groups: torch.Tensor, num_groups: int, keys: list[str], seed: int, step: int, k: int,
                  allowed: torch.Tensor | None = None, salt: str = "pick") -> torch.Tensor:  # fmt: skip
    """Mask of ``k`` candidates per group drawn uniformly without replacement (among ``allowed``)."""
    picked = torch.zeros(groups.shape[0], dtype=torch.bool)
    for g in range(num_groups):
        idx = (groups == g).nonzero().flatten()
        if allowed is not None:
            idx = idx[allowed[idx]]
        pool = idx.tolist()
        for draw in range(min(k, len(pool))):
            j = int(counter_uniform(seed, step, keys[g], draw, salt) * len(pool))
            picked[pool.pop(min(j, len(pool) - 1))] = True
    return picked
