"""Model-free tensor pieces of the ``transformers`` teacher's decoding loops.

Per-request seeded sampling (see :mod:`pipeline.teachers.transformers_backend`, "Seeds"): every
sampling request owns a CPU ``torch.Generator`` seeded with ``request.seed`` and each of its
tokens is picked by inverse-CDF over its own temperature-scaled, top-p filtered distribution
with one uniform draw from that generator. The per-row loop draws as it goes
(:func:`pick_tokens`); the vectorised loop takes every draw up front (:func:`seeded_draws`), in
the same order, so both give the same samples. :func:`assemble_steps` turns the vectorised
loop's per-step records into per-request tokens, lengths and log-prob sums; :func:`first_stop`
finds where a stop string cuts a text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.teachers.base import GenerationRequest

__all__ = ["SeededDraws", "assemble_steps", "first_stop", "pick_tokens", "request_generator", "sample_rows",
           "seeded_draws"]  # fmt: skip

SEED_MASK = 0xFFFF_FFFF_FFFF_FFFF


def request_generator(request: GenerationRequest) -> Any:
    """The request's own CPU ``torch.Generator`` (CPU: draws independent of the device); None for
    a greedy request (temperature 0), which draws nothing."""
    import torch

    if not request.sampling.temperature > 0:
        return None
    return torch.Generator(device="cpu").manual_seed(request.seed & SEED_MASK)


def sample_rows(logits: Any, temps: Any, top_ps: Any, u: Any) -> Any:
    """Inverse-CDF sample of every row (temperature-scaled, top-p filtered) with uniform ``u``
    per row: the same arithmetic, row by row the same values, in both decoding loops."""
    import torch

    probs = torch.softmax(logits / temps[:, None], dim=-1)
    sorted_p, sorted_idx = torch.sort(probs, dim=-1, descending=True, stable=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly before each token
    keep = before < top_ps[:, None]
    keep[:, 0] = True
    cdf = (sorted_p * keep).double().cumsum(-1)
    target = u.to(cdf.device) * cdf[:, -1]
    pos = (cdf <= target[:, None]).sum(-1)
    pos = torch.minimum(pos, keep.sum(-1) - 1)
    return sorted_idx.gather(1, pos[:, None]).squeeze(1)


def pick_tokens(logits: Any, generators: Sequence[Any], temps: Any, top_ps: Any) -> tuple[Any, Any]:
    """Next token of each row (argmax, or a seeded sample for a row with a generator: one uniform
    draw from it) and the token's raw log-probability (log-softmax of the unscaled logits)."""
    import torch

    logits = logits.float()
    raw_logprobs = torch.log_softmax(logits, dim=-1)
    tokens = logits.argmax(dim=-1)
    sample_slots = [s for s, g in enumerate(generators) if g is not None]
    if sample_slots:
        slots = torch.tensor(sample_slots, device=logits.device)
        u = torch.stack([torch.rand((), generator=generators[s], dtype=torch.float64) for s in sample_slots])
        tokens[slots] = sample_rows(logits[slots], temps[slots], top_ps[slots], u)
    return tokens, raw_logprobs.gather(1, tokens[:, None]).squeeze(1)


@dataclass(frozen=True)
class SeededDraws:
    """A batch's uniform draws, taken up front: ``draws[i, step]`` is request ``i``'s draw at
    ``step`` (``horizon`` per sampling request, from its own generator; zeros for greedy ones)."""

    draws: Any  # (requests, horizon) float64, on the device
    temps: Any  # per request
    top_ps: Any  # per request
    is_sampling: Any  # per request: temperature > 0

    def choose(self, logits: Any, greedy: Any, rows: Any, step: int) -> Any:
        """The step's tokens: ``greedy`` (the argmax) for greedy rows, a sample for the others;
        ``rows`` maps each batch slot to its request."""
        import torch

        sampled = sample_rows(logits, self.temps[rows], self.top_ps[rows], self.draws[rows, step])
        return torch.where(self.is_sampling[rows], sampled, greedy)


def seeded_draws(requests: Sequence[GenerationRequest], horizon: int, device: Any) -> SeededDraws | None:
    """Every sampling request's ``horizon`` draws, in the order the per-row loop takes them;
    None when no request samples."""
    import torch

    sampling = [r.sampling.temperature > 0 for r in requests]
    if not any(sampling):
        return None
    draws = torch.zeros((len(requests), horizon), dtype=torch.float64)
    for i, r in enumerate(requests):  # once per request, not per token
        if sampling[i]:
            draws[i] = torch.rand(horizon, generator=request_generator(r), dtype=torch.float64)
    return SeededDraws(
        draws=draws.to(device),
        temps=torch.tensor([r.sampling.temperature or 1.0 for r in requests], device=device),
        top_ps=torch.tensor([r.sampling.top_p for r in requests], device=device),
        is_sampling=torch.tensor(sampling, device=device),
    )


def assemble_steps(
    steps: Sequence[tuple[Any, Any, Any]], size: int, horizon: int, pad_id: int, device: Any
) -> tuple[Any, Any, Any]:
    """``(tokens, lengths, logprob sums)`` per request from the vectorised loop's steps (each
    ``(request of each slot, tokens, raw log-probs)``): a request's tokens are those of the steps
    it took part in, in order; ``tokens`` is ``(size, horizon)``, padded with ``pad_id``."""
    import torch

    all_rows = torch.cat([r for r, _, _ in steps])
    all_steps = torch.cat([torch.full_like(r, s) for s, (r, _, _) in enumerate(steps)])
    tokens = torch.full((size, horizon), pad_id, dtype=torch.long, device=device)
    tokens[all_rows, all_steps] = torch.cat([t for _, t, _ in steps])
    lengths = torch.bincount(all_rows, minlength=size)
    totals = torch.zeros(size, dtype=torch.float64, device=device)
    totals.index_add_(0, all_rows, torch.cat([lp for _, _, lp in steps]).double())
    return tokens, lengths, totals


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the first occurrence of any stop string in ``text``, None without one."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
