"""Teacher noise: the *trace* of steps a rationale shows, possibly with one error.

A trace is a tuple of ``(op, left, right, result)`` as written in the rationale.

- ``slip``: one step's result is off by 1-3 and the error propagates through the later steps,
  so the final answer is wrong (verification catches it).
- ``flaw``: one intermediate statement is wrong but the next step continues from the correct
  value, so the final answer is right (verification cannot catch it). ``kind="result"`` changes
  an intermediate result (needs >= 2 steps); ``kind="operand"`` misquotes an operand (for
  perspectives that show no intermediate results).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from .ops import apply_op
from .rng import SplitMix64
from .world import Step

Trace = tuple[tuple[str, int, int, int], ...]
_DELTAS = (1, -1, 2, -2, 3, -3)


def clean_trace(steps: Sequence[Step]) -> Trace:
    return tuple((s.op, s.left, s.right, s.result) for s in steps)


def _propagate(steps: Sequence[Step], i: int, wrong: int) -> Trace | None:
    """Steps with step ``i``'s result replaced by ``wrong`` and later steps recomputed from it."""
    out = [(s.op, s.left, s.right, s.result) for s in steps[:i]]
    s = steps[i]
    out.append((s.op, s.left, s.right, wrong))
    x = wrong
    for s in steps[i + 1 :]:
        try:
            r = apply_op(s.op, x, s.right)
        except ValueError:  # inexact division: this slip cannot propagate cleanly
            return None
        if r < 0:
            return None
        out.append((s.op, x, s.right, r))
        x = r
    return tuple(out) if x != steps[-1].result else None


def slip_trace(steps: Sequence[Step], rng: SplitMix64, systematic: bool = False) -> tuple[Trace, int]:
    """A trace with one arithmetic slip that changes the final answer, and the slipped step. ``systematic``:
    the slipped step's error is a fixed function of its operation and operands (a misconception: the same
    fact goes wrong the same way every time), instead of a random one."""
    i = rng.below(len(steps))
    offset = rng.below(len(_DELTAS))
    if systematic:
        s = steps[i]
        offset = zlib.crc32(f"{s.op}:{s.left}:{s.right}".encode()) % len(_DELTAS)
    for k in range(len(_DELTAS)):
        wrong = steps[i].result + _DELTAS[(offset + k) % len(_DELTAS)]
        if wrong >= 0 and (trace := _propagate(steps, i, wrong)) is not None:
            return trace, i
    last = len(steps) - 1  # fall back to the last step: always changes the answer
    return _propagate(steps, last, steps[last].result + 1 + rng.below(3)), last  # type: ignore[return-value]


def flaw_trace(steps: Sequence[Step], rng: SplitMix64, kind: str = "result") -> tuple[Trace, int] | None:
    """A trace with one wrong intermediate statement that does not reach the answer, or None."""
    trace = list(clean_trace(steps))
    if kind == "result":
        if len(steps) < 2:
            return None
        i = rng.below(len(steps) - 1)
        op, a, b, r = trace[i]
        d = _DELTAS[rng.below(len(_DELTAS))]
        trace[i] = (op, a, b, r + d if r + d >= 0 else r - d)
    elif kind == "operand":
        i = rng.below(len(steps))
        op, a, b, r = trace[i]
        d = _DELTAS[rng.below(len(_DELTAS))]
        floor = 2 if op in ("mul", "div") else 1
        trace[i] = (op, a, b + d if b + d >= floor else b + abs(d), r)
    else:
        raise ValueError(f"unknown flaw kind {kind!r}")
    return tuple(trace), i
