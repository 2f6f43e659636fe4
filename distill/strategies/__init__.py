"""Strategies: how each question's candidate rationales are used (one flag, ``--strategy``).

Each is one small class registered by name (``base.register``): ``golden``, ``all``, ``random``,
``lowest_loss`` (``simple.py``), ``mcc_kd`` (``mcc_kd.py``), ``instant`` (``fused.py``) and ``mind``
(``mind.py``). ``build_strategy`` makes the one the configuration names.
"""

from __future__ import annotations

from typing import Any

# registering the strategies, in the order the CLI and the docs list them
from distill.strategies import simple  # noqa: F401, I001  (golden, all, random, lowest_loss)
from distill.strategies import mcc_kd  # noqa: F401, I001
from distill.strategies import fused  # noqa: F401, I001  (instant)
from distill.strategies import mind  # noqa: F401, I001
from distill.strategies.base import REGISTRY, Plan, Scored, StepBatch, Strategy

#: every strategy's name: the one list (``--strategy``'s choices, configs and benchmarks read it)
STRATEGIES: tuple[str, ...] = tuple(REGISTRY)
#: the strategies whose plans carry an answer-consistency term (they need the answer span)
CONSISTENT: tuple[str, ...] = tuple(name for name, cls in REGISTRY.items() if cls.answer_consistency)
#: the strategies that judge every candidate by its loss (a scoring forward)
SCORING: tuple[str, ...] = tuple(name for name, cls in REGISTRY.items() if cls.needs_scores)


def build_strategy(args: Any, store: Any, views: list[str], **kw: Any) -> Strategy:
    if args.strategy not in REGISTRY:
        raise ValueError(f"--strategy must be one of {', '.join(sorted(REGISTRY))}, got {args.strategy!r}")
    return REGISTRY[args.strategy](args, store, views, **kw)


__all__ = ["CONSISTENT", "REGISTRY", "SCORING", "STRATEGIES", "Plan", "Scored", "StepBatch", "Strategy", "build_strategy"]
