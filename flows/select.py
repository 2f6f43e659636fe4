"""The ``select`` Prefect flow: hard-first selection of a rationale run as a task (docs/design.md).

The same step as ``python -m pipeline.select`` (:func:`pipeline.select.run_selection`): each
question's difficulty (teacher failure rate across views x samples, or with ``difficulty=
"field:NAME"`` a source field such as MATH's ``level``), every hard question kept,
easy ones down-sampled (seeded), their rationales copied into a new run ``OUT`` that
``distill.train --data`` reads like any run, and ``OUT/selection.json``::

    python -m flows.select RUN --out DIR (--target N | --easy-fraction F)
        [--difficulty failures|field:NAME] [--hard-threshold T] [--seed S] [--exclude-from DIR]

In a flow of your own, after synthesis::

    from flows.select import select_questions
    report = select_questions(run_dir, "runs/selected", target=497)
    report = select_questions(run_dir, "runs/hard-math", target=497, difficulty="field:level", hard_threshold=4)

The flow publishes the counts per difficulty bucket as the table artifact ``select-counts``.
Arguments are checked before Prefect starts (:func:`run`); a selection already written to
``OUT`` is not written again.
"""

from __future__ import annotations

if __name__ == "__main__":  # the CLI: Prefect's server starts now, on another core, while the imports below run
    from flows.prefect_api import start_early

    start_early()

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.prefect_api import PrefectApiUnavailable, prefect_api
from pipeline.select import check_selection_request, run_selection
from pipeline.select import main as select_cli


@task(name="select-hard-first", cache_policy=NO_CACHE, persist_result=False)
def select_questions(
    run: str,
    out: str,
    target: int | None = None,
    easy_fraction: float | None = None,
    hard_threshold: float | None = None,
    seed: int = 0,
    exclude_from: str | None = None,
    difficulty: str = "failures",
) -> dict[str, Any]:
    """:func:`pipeline.select.run_selection` as a Prefect task: the report of ``selection.json``
    (``counts``, ``args``, ``question_ids``) and the subset's ``run_id``."""
    return run_selection(
        run, out, target=target, easy_fraction=easy_fraction, hard_threshold=hard_threshold, seed=seed,
        exclude_from=exclude_from, difficulty=difficulty,
    )  # fmt: skip


def counts_table(counts: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the ``select-counts`` artifact: hard / easy / total (available, selected), then
    the selected questions by number of failed rationales and, with ``field:NAME`` difficulty, by
    the field's value (``NAME=4``)."""
    rows = [
        {"bucket": "hard", "available": counts["available_hard"], "selected": counts["selected_hard"]},
        {"bucket": "easy", "available": counts["available_easy"], "selected": counts["selected_easy"]},
        {"bucket": "total", "available": counts["available_hard"] + counts["available_easy"],
         "selected": counts["selected"]},
    ]  # fmt: skip
    rows += [{"bucket": f"{k} failed", "available": None, "selected": n} for k, n in counts["failures"].items()]
    name = str(counts.get("difficulty", "failures")).removeprefix("field:")
    rows += [{"bucket": f"{name}={k}", "available": None, "selected": n} for k, n in counts.get("values", {}).items()]
    return rows


@flow(name="select", persist_result=False, log_prints=True)
def select(
    run: str,
    out: str,
    target: int | None = None,
    easy_fraction: float | None = None,
    hard_threshold: float | None = None,
    seed: int = 0,
    exclude_from: str | None = None,
    difficulty: str = "failures",
) -> dict[str, Any]:
    """Hard-first selection of the rationale run(s) under ``run`` into the run ``out`` (see the
    module docstring); give exactly one of ``target`` and ``easy_fraction``; ``difficulty`` is
    ``"failures"`` or ``"field:NAME"`` (then ``hard_threshold`` is required: hard when NAME >= it)."""
    logger = get_run_logger()
    report = select_questions(run, out, target, easy_fraction, hard_threshold, seed, exclude_from, difficulty)
    c = report["counts"]
    logger.info(
        "selected %d questions (%d hard of %d, %d easy of %d; difficulty %s) into %s (run %s)", c["selected"],
        c["selected_hard"], c["available_hard"], c["selected_easy"], c["available_easy"], difficulty, out,
        report["run_id"],
    )  # fmt: skip
    create_table_artifact(
        counts_table(c), key="select-counts", description=f"hard-first selection of {run} into {out}"
    )
    return report


def run(
    run_dir: str | Path,
    out: str | Path,
    *,
    target: int | None = None,
    easy_fraction: float | None = None,
    hard_threshold: float | None = None,
    seed: int = 0,
    exclude_from: str | Path | None = None,
    difficulty: str = "failures",
) -> dict[str, Any]:
    """Check the arguments (``ValueError`` before any Prefect start-up), then run the flow."""
    check_selection_request(
        run_dir, target=target, easy_fraction=easy_fraction, hard_threshold=hard_threshold, exclude_from=exclude_from,
        difficulty=difficulty,
    )  # fmt: skip
    return select(
        run=str(run_dir), out=str(out), target=target, easy_fraction=easy_fraction, hard_threshold=hard_threshold,
        seed=seed, exclude_from=None if exclude_from is None else str(exclude_from), difficulty=difficulty,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (the arguments of ``python -m pipeline.select``, checked before Prefect
    starts); 0 ok, 2 bad arguments or input."""
    try:
        with prefect_api():
            return select_cli(argv, runner=run, prog="python -m flows.select")
    except PrefectApiUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
