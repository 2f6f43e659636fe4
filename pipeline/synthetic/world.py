"""Procedural multi-step arithmetic word problems (docs/design.md).

A problem is a chain ``x0 -> x1 -> ... -> xn`` of exact integer operations (add, subtract,
multiply, exact divide) told through a story frame (:mod:`.templates`). Every intermediate value
stays in ``[min_value, max_value]``. Difficulty = number of steps (and the configured ranges).

Splits:

- ``train`` / ``test``: the same frames and step range; the question space is partitioned by a
  hash of the question text (``test_share`` of it belongs to ``test``), so no question text can
  occur in both.
- ``ood_steps``: the train frames with more steps (``ood_steps`` range).
- ``ood_template``: only the held-out frames (never used by train/test), train step range.
- ``retention``: a different, simpler skill for a stage-0 before distillation ("What is the
  largest of 14, 7 and 22?", optionally bare two-number arithmetic), to measure forgetting;
  ``retention_train`` holds the disjoint (hash-partitioned) questions to learn it from.

Problem ``index`` of a split depends only on (config, split, index): generating ``n`` problems
gives the same first problems whatever ``n`` is.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from data_schemas import SCHEMA_VERSION
from pipeline.ids import derive_seed, stable_hash

from .ops import CHAIN_OPS, SYMBOL, apply_op
from .templates import NAMES, RETENTION_KINDS, RETENTION_QUESTIONS, TEMPLATE_IDS, TEMPLATES_BY_ID

SPLITS: tuple[str, ...] = ("train", "test", "ood_steps", "ood_template", "retention", "retention_train")
TASK = "arith"
SOURCE = "synthetic"
_MAX_ATTEMPTS = 10_000


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines the generated problems (its fingerprint names the questions)."""

    seed: int = 0
    train_steps: tuple[int, int] = (2, 4)  # inclusive step range of train, test, ood_template
    ood_steps: tuple[int, int] = (5, 6)  # inclusive step range of ood_steps
    value_range: tuple[int, int] = (2, 20)  # start values and add/subtract operands
    factor_range: tuple[int, int] = (2, 5)  # multiply/divide operands
    min_value: int = 1  # every intermediate value is >= min_value
    max_value: int = 99  # ... and <= max_value
    ops: tuple[str, ...] = CHAIN_OPS
    heldout_templates: tuple[str, ...] = ("garden", "aquarium")  # frames only ood_template uses
    test_share: float = 0.5  # share of the question space reserved for test (and retention)
    retention_kinds: tuple[str, ...] = ("largest", "smallest")  # add "bare" for 2-number arithmetic
    retention_count: tuple[int, int] = (3, 4)  # how many numbers to compare
    retention_range: tuple[int, int] = (1, 60)  # numbers to compare

    def __post_init__(self) -> None:
        for name in ("train_steps", "ood_steps", "value_range", "factor_range", "retention_count", "retention_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"WorldConfig.{name} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        if self.train_steps[0] < 1 or self.retention_count[0] < 2:
            raise ValueError("need at least 1 step and at least 2 numbers to compare")
        if self.factor_range[0] < 2:
            raise ValueError("factor_range must start at >= 2")
        if not 0 <= self.min_value < self.max_value:
            raise ValueError("need 0 <= min_value < max_value")
        if not set(self.ops) <= set(CHAIN_OPS) or not self.ops:
            raise ValueError(f"ops must be a non-empty subset of {CHAIN_OPS}")
        unknown = set(self.heldout_templates) - set(TEMPLATE_IDS)
        if unknown or len(set(self.heldout_templates)) >= len(TEMPLATE_IDS):
            raise ValueError(f"heldout_templates must be a proper subset of {TEMPLATE_IDS}")
        if not self.heldout_templates:
            raise ValueError("ood_template needs at least one held-out template")
        if not 0 < self.test_share < 1:
            raise ValueError("test_share must be in (0, 1)")
        if not self.retention_kinds or not set(self.retention_kinds) <= set(RETENTION_KINDS):
            raise ValueError(f"retention_kinds must be a non-empty subset of {RETENTION_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorldConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @functools.cached_property
    def fingerprint(self) -> str:
        """8 hex digits identifying this configuration (part of every question id); computed once."""
        return stable_hash(json.dumps(self.to_dict(), sort_keys=True), length=8)

    @property
    def train_templates(self) -> tuple[str, ...]:
        return tuple(t for t in TEMPLATE_IDS if t not in self.heldout_templates)


@dataclass(frozen=True)
class Step:
    """One operation ``left op right = result``; ``left`` is the previous result (or the start)."""

    op: str
    left: int
    right: int
    result: int


@dataclass(frozen=True)
class Problem:
    """A generated problem with its worked solution."""

    question_id: str
    question: str
    answer: int
    steps: tuple[Step, ...]
    split: str
    kind: str  # "chain" (word problem) or a retention kind: "largest", "smallest", "bare"
    template_id: str  # story frame id, or "retention/<kind>"
    step_template_ids: tuple[str, ...] = ()  # "<frame>/<op>/<variant>" per step
    name: str = ""  # the person in the story ("" for retention)
    item: str = "numbers"  # the counted noun
    index: int = 0

    @property
    def difficulty(self) -> int:
        """Number of steps."""
        return len(self.steps)

    @property
    def start(self) -> int:
        return self.steps[0].left


def execute(steps: tuple[Step, ...] | list[Step]) -> int:
    """Re-run a chain of steps (checking each is consistent) and return the final value."""
    value = steps[0].left
    for i, s in enumerate(steps):
        if s.left != value or apply_op(s.op, s.left, s.right) != s.result:
            raise ValueError(f"step {i} ({s}) is inconsistent")
        value = s.result
    return value


# ---------------------------------------------------------------- generation
def _next_step(config: WorldConfig, rng: random.Random, x: int) -> Step | None:
    """A random valid operation on ``x`` keeping the result in range, or None if none fits."""
    vlo, vhi = config.value_range
    flo, fhi = config.factor_range
    ops = list(config.ops)
    rng.shuffle(ops)
    for op in ops:
        if op == "add":
            hi = min(vhi, config.max_value - x)
            cands = range(vlo, hi + 1)
        elif op == "sub":
            hi = min(vhi, x - config.min_value)
            cands = range(vlo, hi + 1)
        elif op == "mul":
            hi = min(fhi, config.max_value // x) if x else fhi
            cands = range(flo, hi + 1)
        else:  # div
            cands = [b for b in range(flo, fhi + 1) if x % b == 0 and x // b >= config.min_value]
        if len(cands):
            b = rng.choice(cands)
            return Step(op, x, b, apply_op(op, x, b))
    return None


def _chain(config: WorldConfig, rng: random.Random, start: int, n_steps: int) -> list[Step] | None:
    steps: list[Step] = []
    x = start
    for _ in range(n_steps):
        step = _next_step(config, rng, x)
        if step is None:
            return None
        steps.append(step)
        x = step.result
    return steps


def _word_problem(
    config: WorldConfig, rng: random.Random, templates: tuple[str, ...], steps_range: tuple[int, int]
) -> dict[str, Any]:
    tpl = TEMPLATES_BY_ID[rng.choice(templates)]
    name, item = rng.choice(NAMES), rng.choice(tpl.items)
    n_steps = rng.randint(*steps_range)
    while (steps := _chain(config, rng, rng.randint(*config.value_range), n_steps)) is None:
        pass
    sentences = [rng.choice(tpl.intro).format(name=name, item=item, a=steps[0].left)]
    step_ids = []
    for s in steps:
        variants = tpl.steps[s.op]
        v = rng.randrange(len(variants))
        step_ids.append(f"{tpl.id}/{s.op}/{v}")
        sentences.append(variants[v].format(name=name, item=item, b=s.right))
    sentences.append(rng.choice(tpl.question).format(name=name, item=item))
    text = " ".join(sentences)
    return dict(question=text, steps=tuple(steps), kind="chain", template_id=tpl.id,
                step_template_ids=tuple(step_ids), name=name, item=item)  # fmt: skip


def _join(nums: list[int], last: str) -> str:
    return ", ".join(map(str, nums[:-1])) + f" {last} {nums[-1]}"


def _retention_problem(config: WorldConfig, rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(config.retention_kinds)
    variants = RETENTION_QUESTIONS[kind]
    v = rng.randrange(len(variants))
    if kind == "bare":
        while (steps := _chain(config, rng, rng.randint(*config.value_range), 1)) is None:
            pass
        s = steps[0]
        text = variants[v].format(a=s.left, sym=SYMBOL[s.op], b=s.right)
    else:
        nums = [rng.randint(*config.retention_range) for _ in range(rng.randint(*config.retention_count))]
        op = "max" if kind == "largest" else "min"
        steps, x = [], nums[0]
        for b in nums[1:]:
            steps.append(Step(op, x, b, apply_op(op, x, b)))
            x = steps[-1].result
        text = variants[v].format(nums=_join(nums, "and"), nums_or=_join(nums, "or"))
    return dict(question=text, steps=tuple(steps), kind=kind, template_id=f"retention/{kind}",
                step_template_ids=(f"retention/{kind}/{v}",), name="", item="numbers")  # fmt: skip


def _in_held_region(config: WorldConfig, question: str) -> bool:
    """True when ``question`` belongs to the held (test / retention) part of the question space."""
    return int(stable_hash("region", question, length=8), 16) < config.test_share * 16**8


def question_id(config: WorldConfig, split: str, index: int) -> str:
    return f"{SOURCE}-{config.fingerprint}:{split}:{index}"


def make_problem(config: WorldConfig, split: str, index: int) -> Problem:
    """Problem ``index`` of ``split`` (depends only on these three)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = random.Random(derive_seed("synthetic-world", config.fingerprint, split, index))
    for _ in range(_MAX_ATTEMPTS):
        if split in ("retention", "retention_train"):
            fields = _retention_problem(config, rng)
            wanted_held = split == "retention"
        else:
            templates = config.heldout_templates if split == "ood_template" else config.train_templates
            steps_range = config.ood_steps if split == "ood_steps" else config.train_steps
            fields = _word_problem(config, rng, templates, steps_range)
            wanted_held = split == "test" if split in ("train", "test") else None
        if wanted_held is None or _in_held_region(config, fields["question"]) == wanted_held:
            break
    else:  # pragma: no cover - would need test_share extremely close to 0 or 1
        raise RuntimeError(f"could not generate {split}[{index}] in {_MAX_ATTEMPTS} attempts")
    steps = fields["steps"]
    return Problem(question_id=question_id(config, split, index), answer=steps[-1].result, split=split,
                   index=index, **fields)  # fmt: skip


def iter_problems(config: WorldConfig, split: str, start: int = 0, stop: int = 0) -> Iterator[Problem]:
    """Problems ``start .. stop-1`` of ``split``, lazily."""
    for index in range(start, stop):
        yield make_problem(config, split, index)


def generate_problems(config: WorldConfig, split: str, n: int) -> list[Problem]:
    """The first ``n`` problems of ``split``."""
    return list(iter_problems(config, split, 0, n))


# ---------------------------------------------------------------- question rows
def problem_metadata(problem: Problem, config: WorldConfig | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "kind": problem.kind,
        "template": problem.template_id,
        "step_templates": list(problem.step_template_ids),
        "name": problem.name,
        "item": problem.item,
        "index": problem.index,
        "steps": [[s.op, s.left, s.right, s.result] for s in problem.steps],
    }
    if config is not None:
        meta["world"] = config.fingerprint
    return meta


def question_row(problem: Problem, config: WorldConfig | None = None) -> dict[str, Any]:
    """The contract's question row (``data_schemas.QUESTION_COLUMNS``) for ``problem``."""
    return {
        "question_id": problem.question_id,
        "question": problem.question,
        "gold_answer": str(problem.answer),
        "task": TASK,
        "source": SOURCE,
        "split": problem.split,
        "schema_version": SCHEMA_VERSION,
        "reference_rationale": None,
        "difficulty": problem.difficulty,
        "metadata": json.dumps(problem_metadata(problem, config), separators=(",", ":")),
    }


def generate_questions(config: WorldConfig, split: str, n: int) -> list[dict[str, Any]]:
    """Question rows for the first ``n`` problems of ``split``."""
    return [question_row(p, config) for p in iter_problems(config, split, 0, n)]


def problem_from_question_row(row: Mapping[str, Any]) -> Problem:
    """Rebuild a :class:`Problem` from a stored question row (the steps are in ``metadata``)."""
    meta = row.get("metadata")
    meta = json.loads(meta) if isinstance(meta, str) else dict(meta or {})
    if "steps" not in meta:
        raise ValueError(f"question {row.get('question_id')!r} has no synthetic steps in its metadata")
    steps = tuple(Step(str(op), int(a), int(b), int(r)) for op, a, b, r in meta["steps"])
    answer = execute(steps)
    if str(answer) != str(row["gold_answer"]):
        raise ValueError(f"question {row['question_id']!r}: steps give {answer}, gold answer is {row['gold_answer']}")
    return Problem(
        question_id=row["question_id"],
        question=row["question"],
        answer=answer,
        steps=steps,
        split=row.get("split") or "",
        kind=meta.get("kind", "chain"),
        template_id=meta.get("template", ""),
        step_template_ids=tuple(meta.get("step_templates", ())),
        name=meta.get("name", ""),
        item=meta.get("item", "numbers"),
        index=int(meta.get("index", 0)),
    )
