"""The reference teacher of the synthetic world: writes a problem's solution under a perspective.

``ReferenceTeacher(noise).write(problem, perspective, seed)`` is a pure function of its
arguments. Per sample, one uniform draw decides the noise: ``slip`` with probability
``slip_rate`` (a wrong step that propagates to a wrong answer), else ``flaw`` with probability
``flaw_rate`` (a wrong intermediate statement, right answer; falls back to ``none`` for a
one-step problem in a perspective whose flaws are wrong intermediate results), else ``none``.
Every rationale ends with the line ``The answer is N.``

A perspective's flaws come in one of two modes (``per_perspective[p]["flaw_mode"]``): ``local`` (the
default, above: one wrong statement, the next step goes on from the right value) or ``carried``: the
wrong value is carried through every later step, and the final line still states the right answer:
a rationale that is right for the wrong reasons (the verifier, which reads the final answer, cannot
catch it; a student that imitates it learns chains whose result is not the answer). ``systematic`` is
``carried`` with a misconception's error: the wrong result is a fixed function of the step's
operation and operands, so the same fact goes wrong the same way in every flawed rationale (random
errors average out over many rationales; a misconception does not).

With ``slip_per_step=True`` the teacher errs per step instead of per rationale: a problem of
``k`` solution steps slips with probability ``1 - (1 - slip_rate) ** k``, so longer (harder)
problems fail more often, as a real teacher's do. The flaw probability stays ``flaw_rate`` and
the same single uniform draw decides (slip if ``u < p_slip``, else flaw if
``u < p_slip + flaw_rate``, so flaws get ``min(flaw_rate, 1 - p_slip)``). The default
(``False``) is the per-rationale rate, bit-identical to before.

``num_tokens`` is a cheap proxy: the number of whitespace-separated words of the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .noise import clean_trace, flaw_trace, slip_trace
from .perspectives import FLAW_KIND, PERSPECTIVES, RENDERERS
from .rng import SplitMix64
from .world import Problem

TEACHER_NAME = "synthetic/reference"
NOISE_KINDS: tuple[str, ...] = ("none", "slip", "flaw")
FLAW_MODES: tuple[str, ...] = ("local", "carried", "systematic")


def _check_rates(slip: float, flaw: float, where: str) -> None:
    if not (0.0 <= slip <= 1.0 and 0.0 <= flaw <= 1.0 and slip + flaw <= 1.0):
        raise ValueError(f"{where}: need 0 <= slip_rate, flaw_rate and slip_rate + flaw_rate <= 1")


@dataclass(frozen=True)
class NoiseConfig:
    """Noise rates of the reference teacher, with optional per-perspective overrides.

    ``per_perspective`` maps a perspective to ``{"slip_rate": .., "flaw_rate": .., "flaw_mode": ..}`` (any
    key may be left out: the global rate, ``local`` flaws). ``slip_per_step`` turns the slip rate into a
    per-step rate (see the module docstring); it applies to the per-perspective rates as well.
    """

    slip_rate: float = 0.0
    flaw_rate: float = 0.0
    per_perspective: Mapping[str, Mapping[str, float | str]] = field(default_factory=dict)
    slip_per_step: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.slip_per_step, bool):
            raise ValueError(f"NoiseConfig.slip_per_step must be true or false, got {self.slip_per_step!r}")
        _check_rates(self.slip_rate, self.flaw_rate, "NoiseConfig")
        for name, override in self.per_perspective.items():
            if name not in RENDERERS:
                raise ValueError(f"NoiseConfig.per_perspective: unknown perspective {name!r}")
            unknown = set(override) - {"slip_rate", "flaw_rate", "flaw_mode"}
            if unknown:
                raise ValueError(f"NoiseConfig.per_perspective[{name!r}]: unknown key(s) {sorted(unknown)}")
            if override.get("flaw_mode", "local") not in FLAW_MODES:
                raise ValueError(f"NoiseConfig.per_perspective[{name!r}].flaw_mode: must be one of {', '.join(FLAW_MODES)}, "
                                 f"got {override['flaw_mode']!r}")  # fmt: skip
            _check_rates(*self.rates(name), f"NoiseConfig.per_perspective[{name!r}]")

    def rates(self, perspective: str) -> tuple[float, float]:
        """``(slip_rate, flaw_rate)`` for ``perspective``."""
        override = self.per_perspective.get(perspective, {})
        return override.get("slip_rate", self.slip_rate), override.get("flaw_rate", self.flaw_rate)

    def flaw_mode(self, perspective: str) -> str:
        """``local`` or ``carried`` (see the module docstring) for ``perspective``."""
        return str(self.per_perspective.get(perspective, {}).get("flaw_mode", "local"))

    def slip_probability(self, slip_rate: float, steps: int) -> float:
        """Probability that a rationale of a ``steps``-step problem slips, given ``slip_rate``."""
        if not self.slip_per_step:
            return slip_rate
        return 1.0 - (1.0 - slip_rate) ** steps

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "slip_rate": self.slip_rate,
            "flaw_rate": self.flaw_rate,
            "per_perspective": {k: dict(v) for k, v in sorted(self.per_perspective.items())},
        }
        if self.slip_per_step:  # only when set: this dict feeds run ids of existing data
            out["slip_per_step"] = True
        return out


@dataclass(frozen=True)
class TeacherOutput:
    """One rationale. ``answer`` is the final answer the text states (wrong after a slip)."""

    text: str
    num_tokens: int
    noise: str  # "none" | "slip" | "flaw"
    answer: int
    noise_step: int | None = None  # index of the slipped / flawed step


class ReferenceTeacher:
    """Writes rationales from a problem's own solution steps (no model)."""

    name = TEACHER_NAME

    def __init__(self, noise: NoiseConfig | None = None):
        self.noise = noise or NoiseConfig()
        self._rates = {p: self.noise.rates(p) for p in PERSPECTIVES}
        self._carried = {p: self.noise.flaw_mode(p) for p in PERSPECTIVES if self.noise.flaw_mode(p) != "local"}

    def write(self, problem: Problem, perspective: str, seed: int) -> TeacherOutput:
        """The rationale of ``problem`` in ``perspective``; deterministic for ``seed``."""
        try:
            render = RENDERERS[perspective]
        except KeyError:
            raise ValueError(f"unknown perspective {perspective!r}; expected one of {PERSPECTIVES}") from None
        rng = SplitMix64(seed)
        slip_rate, flaw_rate = self._rates[perspective]
        if self.noise.slip_per_step:
            slip_rate = self.noise.slip_probability(slip_rate, len(problem.steps))
        u = rng.random()
        noise, step = "none", None
        answer = problem.steps[-1].result
        if u < slip_rate:
            trace, step = slip_trace(problem.steps, rng)
            noise, answer = "slip", trace[-1][3]
        elif u < slip_rate + flaw_rate and perspective in self._carried:
            # a wrong value carried to the end; the right answer stated
            trace, step = slip_trace(problem.steps, rng, systematic=self._carried[perspective] == "systematic")
            noise = "flaw"
        else:
            flawed = None
            if u < slip_rate + flaw_rate:
                flawed = flaw_trace(problem.steps, rng, FLAW_KIND.get(perspective, "result"))
            if flawed is not None:
                trace, step = flawed
                noise = "flaw"
            else:
                trace = clean_trace(problem.steps)
        text = f"{render(problem, trace, rng)}\nThe answer is {answer}."
        return TeacherOutput(text=text, num_tokens=len(text.split()), noise=noise, answer=answer, noise_step=step)
