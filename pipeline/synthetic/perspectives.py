"""The reference teacher's perspectives: one renderer per reasoning style.

A renderer turns a problem and the trace of steps to show (:mod:`.noise`) into the rationale body
(the teacher appends ``The answer is N.``). From short and easy to learn to long or hard:

- ``shortcut``: start value, the operations, the result; no intermediate values (hard to learn:
  the student must do the whole chain in its head). ``12 +5 *2 -4 -> 30``
- ``stepwise``: one short line per step. ``12 + 5 = 17``
- ``equation``: one combined equation, reduced one operation per line. ``x = (12 + 5) * 2 - 4``
- ``backward``: the steps on one line, then a check that undoes them from the result.
- ``socratic``: a sub-question / answer pair per step.
- ``verbose``: long prose restating each change.

``stepwise``, ``equation``, ``shortcut`` and ``backward`` are deterministic given the trace;
``socratic`` and ``verbose`` vary their phrasing with the sample's seed.
"""

from __future__ import annotations

from collections.abc import Callable

from .noise import Trace
from .ops import SYMBOL, format_expr, format_step
from .rng import SplitMix64
from .world import Problem

Renderer = Callable[[Problem, Trace, SplitMix64], str]


# ---------------------------------------------------------------- terse styles
def stepwise(problem: Problem, trace: Trace, rng: SplitMix64) -> str:
    return "\n".join([format_step(*t) for t in trace])


def _token(op: str, b: int) -> str:
    sym = SYMBOL.get(op)
    return f"{sym}{b}" if sym else f"{op} {b}"


def shortcut(problem: Problem, trace: Trace, rng: SplitMix64) -> str:
    return f"{trace[0][1]} {' '.join([_token(t[0], t[2]) for t in trace])} -> {trace[-1][3]}"


def _expression(start: int, trace: Trace) -> str:
    """``(12 + 5) * 2 - 4``: the chain as one expression, brackets only where needed."""
    expr, additive = str(start), False
    for op, _a, b, _r in trace:
        if op in ("add", "sub"):
            expr, additive = f"{expr} {SYMBOL[op]} {b}", True
        elif op in ("mul", "div"):
            expr, additive = f"{f'({expr})' if additive else expr} {SYMBOL[op]} {b}", False
        else:
            expr, additive = format_expr(op, expr, b), False
    return expr


def equation(problem: Problem, trace: Trace, rng: SplitMix64) -> str:
    lines = [f"x = {_expression(trace[0][1], trace)}"]
    lines += [f"x = {_expression(trace[k][3], trace[k + 1 :])}" for k in range(len(trace))]
    return "\n".join(lines)


def _inverse(op: str, a: int, b: int, r: int) -> str:
    if op == "add":
        return f"{r} - {b} = {a}"
    if op == "sub":
        return f"{r} + {b} = {a}"
    if op == "mul":
        return f"{r} / {b} = {a}"
    if op == "div":
        return f"{r} * {b} = {a}"
    rel = ">=" if op == "max" else "<="
    return f"{r} {rel} {a} and {r} {rel} {b}"


def backward(problem: Problem, trace: Trace, rng: SplitMix64) -> str:
    forward = ", ".join([format_step(*t) for t in trace])
    check = ", ".join([_inverse(*t) for t in reversed(trace)])
    return f"Solve: {forward}.\nCheck backward: {check}. It matches."


# ---------------------------------------------------------------- wordy styles
_STORY_QUESTIONS = {
    "add": ("Q: How many {item} are there after {b} more are added?", "Q: What is the count after adding {b}?"),
    "sub": ("Q: How many {item} are there after {b} are taken away?", "Q: What is the count after taking away {b}?"),
    "mul": ("Q: How many {item} are there with {b} times as many?", "Q: What is the count after multiplying by {b}?"),
    "div": ("Q: How many {item} are in one of {b} equal parts?", "Q: What is the count after dividing by {b}?"),
    "max": ("Q: Which is larger, {a} or {b}?", "Q: What is the larger of {a} and {b}?"),
    "min": ("Q: Which is smaller, {a} or {b}?", "Q: What is the smaller of {a} and {b}?"),
}
_START_QUESTIONS = ("Q: How many {item} are there at the start?", "Q: What do we start with?")


def socratic(problem: Problem, trace: Trace, rng: SplitMix64) -> str:
    item = problem.item
    lines = []
    if problem.kind == "chain":
        lines += [rng.choice(_START_QUESTIONS).format(item=item), f"A: {trace[0][1]}."]
    for op, a, b, r in trace:
        lines.append(rng.choice(_STORY_QUESTIONS[op]).format(item=item, a=a, b=b))
        lines.append(f"A: {format_step(op, a, b, r)}.")
    return "\n".join(lines)


_OPENERS = (
    "Let us solve this step by step.",
    "We follow the {item} one change at a time.",
    "Let's read the problem carefully and keep track of the {item}.",
)
_STORY_STARTS = ("At the start there are {a} {item}.", "{who} begins with {a} {item}.")
_STORY_STEPS = {
    "add": ("Next, {b} more {item} are added, so we compute {eq}.", "Then {b} {item} come in, which means {eq}."),
    "sub": ("Next, {b} {item} are taken away, so we compute {eq}.", "Then {b} {item} go away, which means {eq}."),
    "mul": ("Next, the number becomes {b} times as large, so we compute {eq}.",
            "Then there are {b} times as many {item} as before, which means {eq}."),
    "div": ("Next, the {item} are split into {b} equal parts and only one part stays, so we compute {eq}.",
            "Then only one of {b} equal parts is kept, which means {eq}."),
}  # fmt: skip
_PLAIN_STEPS = {
    "add": ("Adding {b} gives {eq}.", "We add {b}: {eq}."),
    "sub": ("Taking away {b} gives {eq}.", "We subtract {b}: {eq}."),
    "mul": ("Multiplying by {b} gives {eq}.", "We multiply by {b}: {eq}."),
    "div": ("Dividing by {b} gives {eq}.", "We divide by {b}: {eq}."),
    "max": ("We compare {a} with {b}, and the larger one is {r}.", "Between {a} and {b}, the larger number is {r}."),
    "min": ("We compare {a} with {b}, and the smaller one is {r}.", "Between {a} and {b}, the smaller number is {r}."),
}
_STORY_AFTER = ("Now there are {r} {item}.", "So at this point we have {r} {item}.", "That leaves {r} {item} for now.")
_CLOSERS = {
    "chain": ("After all the changes, there are {f} {item} in the end.", "So the final number of {item} is {f}."),
    "largest": ("So the largest number of all is {f}.",),
    "smallest": ("So the smallest number of all is {f}.",),
    "bare": ("So the result of the calculation is {f}.",),
}


def verbose(problem: Problem, trace: Trace, rng: SplitMix64) -> str:
    item = problem.item
    story = problem.kind == "chain"
    parts = [rng.choice(_OPENERS).format(item=item)]
    if story:
        parts.append(rng.choice(_STORY_STARTS).format(a=trace[0][1], item=item, who=problem.name or "We"))
    else:
        parts.append(f"We start from {trace[0][1]}.")
    for op, a, b, r in trace:
        table = _STORY_STEPS if story and op in _STORY_STEPS else _PLAIN_STEPS
        parts.append(rng.choice(table[op]).format(a=a, b=b, r=r, item=item, eq=format_step(op, a, b, r)))
        if story:
            parts.append(rng.choice(_STORY_AFTER).format(r=r, item=item))
    parts.append(rng.choice(_CLOSERS.get(problem.kind, _CLOSERS["bare"])).format(f=trace[-1][3], item=item))
    return " ".join(parts)


RENDERERS: dict[str, Renderer] = {
    "stepwise": stepwise,
    "equation": equation,
    "socratic": socratic,
    "verbose": verbose,
    "shortcut": shortcut,
    "backward": backward,
}
PERSPECTIVES: tuple[str, ...] = tuple(RENDERERS)
# Perspectives that show no intermediate results get their flaws as a misquoted operand.
FLAW_KIND: dict[str, str] = {"shortcut": "operand"}
