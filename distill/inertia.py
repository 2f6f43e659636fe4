"""Inertia statistics: the student's long-term loss record as exponentially smoothed losses (docs/method.md, step 2).

Per candidate an EMA of its cross-entropy over the steps it was measured in (the MetaNet's
long-term loss feature, and its ``inertia`` meta-target); per view a slow and a fast EMA of the
view's mean loss (``L_p``, and the trend ``F_p - L_p``); a global mean ``L`` and spread ``S`` that
put the features on a common scale.

All updates take a whole optimizer step's losses at once (gathered from every micro-batch and
every rank) and are order-independent (sorted before reduction, float64), so the statistics
are identical on every rank and equal between gradient-accumulation layouts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

EPS = 1e-6
FAST_BETA = 0.5  # momentum of the fast per-view EMA F_p (the trend F_p - L_p)


@dataclass
class Ema:
    """A bias-corrected exponential moving average."""

    beta: float
    value: float = 0.0
    weight: float = 0.0  # 1 - beta^n: the bias correction

    def update(self, x: float) -> None:
        self.value = self.beta * self.value + (1.0 - self.beta) * x
        self.weight = self.beta * self.weight + (1.0 - self.beta)

    @property
    def ready(self) -> bool:
        return self.weight > 0

    def get(self, default: float = math.nan) -> float:
        return self.value / self.weight if self.weight > 0 else default


class InertiaStats:
    """Global L and spread S, per view slow L_p and fast F_p, per candidate EMA loss and age."""

    def __init__(self, num_views: int, num_candidates: int, beta: float, beta_fast: float = FAST_BETA):
        self.beta, self.beta_fast = beta, beta_fast
        self.global_loss = Ema(beta)
        self.global_var = Ema(beta)
        self.view_slow = [Ema(beta) for _ in range(num_views)]
        self.view_fast = [Ema(beta_fast) for _ in range(num_views)]
        self.cand_ema = torch.full((num_candidates,), math.nan, dtype=torch.float64)
        self.last_step = torch.full((num_candidates,), -1, dtype=torch.long)

    # ------------------------------------------------------------ reading
    @property
    def L(self) -> float:  # noqa: N802 - the paper's notation
        return self.global_loss.get()

    @property
    def S(self) -> float:  # noqa: N802
        var = self.global_var.get(default=1.0)
        return math.sqrt(max(var, 0.0)) + EPS

    def view_loss(self, view: int) -> float:
        """L_p, falling back to L for a view never seen."""
        return self.view_slow[view].get(default=self.L)

    def view_trend(self, view: int) -> float:
        """F_p - L_p: negative when the view's loss is falling faster than its slow average."""
        slow = self.view_loss(view)
        return self.view_fast[view].get(default=slow) - slow

    @property
    def ready(self) -> bool:
        return self.global_loss.ready

    def candidate_loss(self, uids: torch.Tensor, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lhat, seen)``: each candidate's EMA loss, or its view's L_p when never measured."""
        last = self.cand_ema[uids]
        seen = ~torch.isnan(last)
        fallback = torch.tensor([self.view_loss(int(v)) for v in views], dtype=torch.float64)
        return torch.where(seen, last, fallback), seen

    def smoothed(self, uids: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """What each candidate's EMA becomes once ``losses`` are added (the state is not changed)."""
        old = self.cand_ema[uids]
        new = losses.to(torch.float64)
        return torch.where(torch.isnan(old), new, self.beta * old + (1.0 - self.beta) * new)

    def age(self, uids: torch.Tensor, step: int) -> torch.Tensor:
        """Optimizer steps since the candidate's loss was measured (``step + 1`` if never)."""
        last = self.last_step[uids]
        return torch.where(last >= 0, step - last, torch.full_like(last, step + 1)).to(torch.float64)

    # ------------------------------------------------------------ updating
    def update(self, uids: torch.Tensor, views: torch.Tensor, losses: torch.Tensor, step: int) -> None:
        """Add one optimizer step's training losses (every rank's, every micro-batch's)."""
        if losses.numel() == 0:
            return
        order = torch.argsort(uids, stable=True)
        uids, views, losses = uids[order], views[order], losses[order].to(torch.float64)
        self.cand_ema[uids] = self.smoothed(uids, losses)
        self.last_step[uids] = step
        mean = float(losses.mean())
        prev = self.L if self.ready else mean
        self.global_loss.update(mean)
        self.global_var.update(float(((losses - prev) ** 2).mean()))
        self.update_views(views, losses)

    def update_views(self, views: torch.Tensor, losses: torch.Tensor) -> None:
        """Per-view EMAs from the mean loss of each view present."""
        for v in torch.unique(views).tolist():
            m = float(losses[views == v].to(torch.float64).mean())
            self.view_slow[v].update(m)
            self.view_fast[v].update(m)

    # ------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        def ema(e: Ema) -> list[float]:
            return [e.value, e.weight]

        return {
            "global_loss": ema(self.global_loss), "global_var": ema(self.global_var),
            "view_slow": [ema(e) for e in self.view_slow], "view_fast": [ema(e) for e in self.view_fast],
            "cand_ema": self.cand_ema.clone(), "last_step": self.last_step.clone(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def put(e: Ema, vw: list[float]) -> None:
            e.value, e.weight = vw

        put(self.global_loss, state["global_loss"])
        put(self.global_var, state["global_var"])
        for e, vw in zip(self.view_slow, state["view_slow"], strict=True):
            put(e, vw)
        for e, vw in zip(self.view_fast, state["view_fast"], strict=True):
            put(e, vw)
        self.cand_ema.copy_(state["cand_ema"])
        self.last_step.copy_(state["last_step"])
