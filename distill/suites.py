"""Evaluation suites: named sets of question sources evaluated together (docs/design.md).

``paper`` is the MIND paper's evaluation (docs/evaluation.md): in-distribution MATH500, GSM8K, SVAMP;
out-of-distribution CommonsenseQA, StrategyQA and GPQA-Diamond. Each member reads its questions
with its :mod:`pipeline.sources` loader (which sets the task, hence the answer checker of
:func:`pipeline.verify.verify`): from the data folder (``--data_dir`` or ``$MIND_SHARED_DATA``) when one is
set, else from the public hub data set of each benchmark (``datasets.load_dataset``: the local cache,
downloaded when the hub is reachable and ``HF_HUB_OFFLINE`` is not set):

=============  =====  ==============  ======================================  ===================================
member         group  source          file (under ``--data_dir``)             hub data set (no data folder)
=============  =====  ==============  ======================================  ===================================
MATH500        id     math500         ``math500/test.jsonl`` (500; LaTeX)     ``HuggingFaceH4/MATH-500`` test
GSM8K          id     gsm8k           ``gsm8k/test.jsonl`` (1,319)            ``openai/gsm8k`` main, test
SVAMP          id     svamp           ``svamp/SVAMP.json`` (all 1,000)        ``MU-NLPC/Calc-svamp`` default, test
CommonsenseQA  ood    commonsense_qa  ``mentor_kd/commonsense_qa_test.json``  ``tau/commonsense_qa`` validation
                                      (1,221; A-E)                            (the same 1,221)
StrategyQA     ood    strategyqa      ``mentor_kd/strategy_qa_test.json``     ``ChilleD/StrategyQA`` test
                                      (687; yes/no)
GPQA-Diamond   ood    gpqa            the user's ``--gpqa_path`` CSV (gated on the hub: not shipped, else skipped)
=============  =====  ==============  ======================================  ===================================

SVAMP is the full SVAMP.json (our choice; the paper's split is not known). A student trained on
the mentor-kd SVAMP rationales (651 of those problems) should be evaluated on their held-out
file instead: ``--suite_source SVAMP=mentor-kd:DATA/mentor_kd/svamp_test.json``.

The summary gives each member's accuracy and n and the macro averages of the ID and the OOD
members that were evaluated (a skipped member is listed, not averaged).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distill.eval_records import EvalResult, write_predictions
from distill.question_sets import load_split_questions
from pipeline.sources.hub import HUB_PREFIX

__all__ = [
    "SUITES",
    "PlannedMember",
    "SuiteMember",
    "default_data_dir",
    "load_suite_questions",
    "plan_suite",
    "run_suite",
    "suite_summary",
    "suite_table",
]


@dataclass(frozen=True)
class HubSet:
    """A public data set on the Hugging Face hub: id, config and split (``datasets.load_dataset``)."""

    id: str
    split: str
    config: str | None = None


@dataclass(frozen=True)
class SuiteMember:
    """One question set of a suite: its source kind, its file (relative to the data folder; ``None`` for
    a file the user must give with ``path_flag``) and the public hub data set read when no data folder is set."""

    name: str
    group: Literal["id", "ood"]
    kind: str
    path: str | None
    path_flag: str | None = None
    hub: HubSet | None = None


SUITES: dict[str, tuple[SuiteMember, ...]] = {
    "paper": (
        SuiteMember("MATH500", "id", "math500", "math500/test.jsonl", hub=HubSet("HuggingFaceH4/MATH-500", "test")),
        SuiteMember("GSM8K", "id", "gsm8k", "gsm8k/test.jsonl", hub=HubSet("openai/gsm8k", "test", "main")),
        SuiteMember("SVAMP", "id", "svamp", "svamp/SVAMP.json", hub=HubSet("MU-NLPC/Calc-svamp", "test", "default")),
        SuiteMember("CommonsenseQA", "ood", "commonsense_qa", "mentor_kd/commonsense_qa_test.json",
                    hub=HubSet("tau/commonsense_qa", "validation")),
        SuiteMember("StrategyQA", "ood", "strategyqa", "mentor_kd/strategy_qa_test.json",
                    hub=HubSet("ChilleD/StrategyQA", "test")),
        SuiteMember("GPQA-Diamond", "ood", "gpqa", None, path_flag="--gpqa_path"),  # gated on the hub: a file
    ),
}  # fmt: skip


@dataclass
class PlannedMember:
    """A member with its source (``KIND:PATH``) or the reason it is skipped; its questions once loaded."""

    member: SuiteMember
    source: str | None
    skipped: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the reader's (a hub data set's config and split)
    questions: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return self.member.name


def default_data_dir() -> Path | None:
    """The data folder the environment names (``$MIND_SHARED_DATA``), or None."""
    env = os.environ.get("MIND_SHARED_DATA")
    return Path(env) if env else None


def plan_suite(
    name: str,
    *,
    data_dir: str | Path | None = None,
    gpqa_path: str | Path | None = None,
    sources: Mapping[str, str] | None = None,
) -> list[PlannedMember]:
    """The members of suite ``name`` with their sources. ``sources`` overrides a member's source
    (``{"SVAMP": "mentor-kd:PATH"}``); GPQA-Diamond is planned only with ``gpqa_path``. Raises
    ``ValueError`` for an unknown suite or member name, or a missing file."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    members = SUITES[name]
    overrides = dict(sources or {})
    names = {m.name.lower(): m.name for m in members}
    unknown = [k for k in overrides if k.lower() not in names]
    if unknown:
        raise ValueError(f"--suite_source: no member {', '.join(unknown)} in suite {name!r} ({', '.join(names.values())})")
    overrides = {names[k.lower()]: v for k, v in overrides.items()}
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    plan = []
    for m in members:
        if m.name in overrides:
            plan.append(PlannedMember(m, overrides[m.name]))
            continue
        if m.path is None:
            given = gpqa_path if m.path_flag == "--gpqa_path" else None
            if given is None:
                plan.append(PlannedMember(m, None, skipped=f"no {m.path_flag} given"))
                continue
            path = Path(given)
            if not path.is_file():
                raise ValueError(f"{m.path_flag} {str(path)!r}: {'a folder' if path.is_dir() else 'no such file'}")
        else:
            if root is None:
                if m.hub is None:
                    raise ValueError(f"{m.name}: no data folder: pass --data_dir or set MIND_SHARED_DATA")
                hub = {"split": m.hub.split} | ({"config": m.hub.config} if m.hub.config else {})
                plan.append(PlannedMember(m, f"{m.kind}:{HUB_PREFIX}{m.hub.id}", options=hub))
                continue
            path = root / m.path
            if not path.is_file():
                raise ValueError(f"{m.name}: {str(path)!r} does not exist (set --data_dir or MIND_SHARED_DATA)")
        plan.append(PlannedMember(m, f"{m.kind}:{path}"))
    return plan


def load_suite_questions(plan: Sequence[PlannedMember], *, limit: int | None = None) -> None:
    """Load each planned member's questions (the first ``limit`` of each) into ``questions``."""
    for pm in plan:
        if pm.source is not None:
            pm.questions = load_split_questions(pm.name, source=pm.source, num_questions=limit, options=pm.options)
            if not pm.questions:
                raise ValueError(f"{pm.name}: no questions in {pm.source}")


def run_suite(
    plan: Sequence[PlannedMember],
    evaluate: Callable[[list[dict[str, Any]], str], EvalResult],
    *,
    out_dir: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, EvalResult]:
    """``evaluate(questions, member name)`` for each planned member with questions; predictions
    to ``out_dir/<member>.parquet`` when ``out_dir`` is given (``extra`` in their metadata)."""
    results: dict[str, EvalResult] = {}
    for pm in plan:
        if pm.skipped is not None or not pm.questions:
            continue
        results[pm.name] = evaluate(pm.questions, pm.name)
        if out_dir is not None:
            write_predictions(results[pm.name], Path(out_dir) / f"{pm.name}.parquet", {**(extra or {}), "source": pm.source})
    return results


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def suite_summary(
    name: str, plan: Sequence[PlannedMember], results: Mapping[str, EvalResult], **extra: Any
) -> dict[str, Any]:
    """JSON-ready: per member its group, source and scores (or why it was skipped), and the
    macro averages ``id_average``, ``ood_average`` and ``average`` over the evaluated members."""
    members: dict[str, dict[str, Any]] = {}
    by_group: dict[str, list[float]] = {"id": [], "ood": []}
    for pm in plan:
        entry: dict[str, Any] = {"group": pm.member.group, "source": pm.source}
        if pm.name in results:
            summary = results[pm.name].summary()
            summary.pop("split", None)
            entry.update({"status": "evaluated", **summary})
            by_group[pm.member.group].append(summary["accuracy"])
        else:
            entry.update({"status": "skipped", "reason": pm.skipped or "no questions"})
        members[pm.name] = entry
    everything = by_group["id"] + by_group["ood"]
    return {
        "suite": name,
        "members": members,
        "id_average": _mean(by_group["id"]),
        "ood_average": _mean(by_group["ood"]),
        "average": _mean(everything),
        "evaluated": [n for n, e in members.items() if e["status"] == "evaluated"],
        "skipped": [n for n, e in members.items() if e["status"] == "skipped"],
        **extra,
    }


def suite_table(summary: Mapping[str, Any]) -> Any:
    """A ``rich`` table of :func:`suite_summary`: one row per member, then the ID/OOD averages."""
    from rich.table import Table

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{x:.2%}"

    table = Table(title=f"suite {summary['suite']}: {summary.get('model', '')}".rstrip(": "))
    for col in ("set", "group", "n", "accuracy", "judged", "errors", "mean tokens", "seconds"):
        table.add_column(col, justify="left" if col in ("set", "group") else "right")
    for name, e in summary["members"].items():
        if e["status"] == "evaluated":
            table.add_row(name, e["group"].upper(), str(e["n"]), pct(e["accuracy"]), str(e["judged"]), str(e["errors"]),
                          f"{e['mean_tokens']:.1f}", f"{e['seconds']:.1f}")  # fmt: skip
        else:
            table.add_row(name, e["group"].upper(), "–", f"skipped: {e['reason']}", "", "", "", "")
    table.add_section()
    for group in ("id", "ood"):
        n = sum(e["n"] for e in summary["members"].values() if e["group"] == group and e["status"] == "evaluated")
        table.add_row(f"{group.upper()} average", group.upper(), str(n), pct(summary[f"{group}_average"]), "", "", "", "")
    return table
