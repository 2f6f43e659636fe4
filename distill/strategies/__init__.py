"""Strategies: how each question's candidate rationales are used (one flag, ``--strategy``).

Each is one small class registered by name (``base.register``): ``golden``, ``all``, ``random``,
``lowest_loss`` (``simple.py``), ``mcc_kd`` (``mcc_kd.py``), ``instant`` (``fused.py``) and ``mind``
(``mind.py``). ``build_strategy`` makes the one the configuration names.
"""

from __future__ import annotations

from typing import Any

from distill.strategies import fused, mcc_kd, mind, simple  # noqa: F401 - registers the strategies
from distill.strategies.base import REGISTRY, Plan, Scored, StepBatch, Strategy


def build_strategy(args: Any, store: Any, views: list[str], **kw: Any) -> Strategy:
    if args.strategy not in REGISTRY:
        raise ValueError(f"--strategy must be one of {', '.join(sorted(REGISTRY))}, got {args.strategy!r}")
    return REGISTRY[args.strategy](args, store, views, **kw)


__all__ = ["REGISTRY", "Plan", "Scored", "StepBatch", "Strategy", "build_strategy"]
