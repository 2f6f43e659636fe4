"""Difficulty-aware (hard-first) selection of questions from a rationale run.

A question's *difficulty* is its teacher's failure rate across views x samples: of its judged
rationales (``finish_reason == "stop"``, over every perspective, teacher and sample), the share
whose ``is_correct`` is not True. This is the paper's hard-first selection: the questions the
teacher finds hardest are the ones worth distilling (the paper kept 497 questions x 8 CoTs).

Or, with ``difficulty="field:NAME"`` (``--difficulty field:NAME``), a *source field* of the
question, such as MATH500's ``level`` (1-5): a question is hard when its value is at least
``hard_threshold`` (required then; ``--difficulty field:level --hard-threshold 4`` keeps every
level 4-5 question). The value is read from the run's rows: synthesis puts each question's scalar
source fields into its rationale rows' ``metadata`` JSON under ``"question"``
(:func:`pipeline.synthesis.question_fields`; ``{"question": {"level": 5, "subject": ...}}``); a
top-level key of ``metadata`` (an imported run's labels) is used when ``"question"`` lacks it.
Every question must have a numeric value (``"4"`` counts as 4), or the selection stops with an
error naming the field and the run.

* :func:`question_difficulty` counts judged rationales and failures per question of a run (and,
  given ``field``, reads that field's value).
* :func:`select_hard_first` keeps every *hard* question (failure rate above ``hard_threshold``,
  by default: any failed rationale; or field value >= ``hard_threshold``), hardest first, and
  fills the rest with a seeded random sample of the *easy* ones: up to ``target`` questions in
  all, or all hard ones plus ``easy_fraction`` of the easy ones.
* :func:`write_subset` copies every row (all views, samples, correct or not) of the chosen
  questions into one new run folder whose manifest config is the source run's config plus a
  ``selection`` key, so a subset of a synthetic run is still recognised as that world.

CLI::

    python -m pipeline.select RUN --out DIR (--target N | --easy-fraction F)
        [--difficulty failures|field:NAME] [--hard-threshold T] [--seed S] [--exclude-from DIR]

prints the counts and writes ``selection.json`` (counts, arguments, question ids) into ``DIR``.
:func:`run_selection` is that whole step as one call; ``flows.select`` wraps it as a Prefect
task and flow.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from data_schemas import ContractError, RunWriter
from data_schemas.io import SORT_KEYS, find_runs, read_rationales, read_run, write_text_atomic
from data_schemas.manifest import MANIFEST_NAME, load_manifest
from pipeline.ids import stable_hash

SHARD_ROWS = 500  # rows per shard of a subset run
SELECTION_FILE = "selection.json"
FAILURES = "failures"  # the default difficulty: the teacher's failure rate
FIELD_PREFIX = "field:"  # field:NAME, a source field of the question (e.g. field:level)


# ---------------------------------------------------------------- difficulty
@dataclass(frozen=True)
class QuestionDifficulty:
    """Judged rationales of one question and how many of them failed."""

    question_id: str
    rationales: int  # judged rows (finish_reason == "stop"), over views x samples
    failures: int  # of those, is_correct is not True
    value: float | None = None  # the source field's value, with difficulty field:NAME; else None

    @property
    def failure_rate(self) -> float:
        """``failures / rationales``; 0.0 for a question without a judged rationale."""
        return self.failures / self.rationales if self.rationales else 0.0


def parse_difficulty(spec: str) -> str | None:
    """``"failures"`` -> ``None``; ``"field:NAME"`` -> ``"NAME"``; ``ValueError`` otherwise."""
    if spec == FAILURES:
        return None
    if isinstance(spec, str) and spec.startswith(FIELD_PREFIX) and spec[len(FIELD_PREFIX):].strip():
        return spec[len(FIELD_PREFIX):].strip()
    raise ValueError(
        f"difficulty (--difficulty) must be 'failures' or 'field:NAME' (e.g. field:level), got {spec!r}"
    )


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _name_some(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    return ", ".join(ids[:5]) + more


def field_values(src: str | Path, name: str) -> dict[str, float]:
    """The value of source field ``name`` of every question of the rationale run(s) under ``src``.

    Read from the rows' ``metadata`` JSON: ``metadata["question"][name]`` (where synthesis keeps
    the question's source fields), else ``metadata[name]``; the first row with a value counts.
    ``ValueError`` naming the field and the run when a question has no value or a non-numeric one.
    """
    table = read_rationales(src).select(["question_id", "metadata"])
    pairs = table.group_by(["question_id", "metadata"]).aggregate([])
    found: dict[str, Any] = {}
    questions: set[str] = set()
    for qid, raw in zip(pairs.column("question_id").to_pylist(), pairs.column("metadata").to_pylist(), strict=True):
        questions.add(qid)
        if qid in found or not raw:
            continue
        try:
            meta = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(meta, dict):
            continue
        carried = meta.get("question")
        value = carried.get(name) if isinstance(carried, dict) else None
        if value is None:
            value = meta.get(name)
        if value is not None:
            found[qid] = value
    missing = sorted(questions - set(found))
    if missing:
        where = "any" if len(missing) == len(questions) else f"{len(missing)} of {len(questions)}"
        raise ValueError(
            f"difficulty field:{name}: the field {name!r} is missing from {where} question(s) of the run {src} "
            f"(e.g. {_name_some(missing)}); rows carry their question's source fields in metadata[\"question\"] "
            "(runs synthesized before that lack them: synthesize again, or use --difficulty failures)"
        )
    values = {qid: _numeric(v) for qid, v in found.items()}
    bad = sorted(q for q, v in values.items() if v is None)
    if bad:
        raise ValueError(
            f"difficulty field:{name}: the field {name!r} must be a number, but question {bad[0]} of the run {src} "
            f"has {found[bad[0]]!r}" + (f" ({len(bad)} such questions)" if len(bad) > 1 else "")
        )
    return {qid: v for qid, v in values.items() if v is not None}


def question_difficulty(src: str | Path, field: str | None = None) -> dict[str, QuestionDifficulty]:
    """Difficulty of every question of the rationale run(s) under ``src``, by question id.

    A question whose rows all ended otherwise than ``stop`` (errors, truncations) is listed
    with ``rationales == 0`` (failure rate 0: it counts as easy). With ``field``, each entry's
    ``value`` is that source field's value (:func:`field_values`; its errors).
    """
    values = field_values(src, field) if field is not None else {}
    table = read_rationales(src).select(["question_id", "finish_reason", "is_correct"])
    judged = pc.fill_null(pc.equal(table.column("finish_reason"), "stop"), False)
    correct = pc.fill_null(table.column("is_correct"), False)
    failed = pc.and_(judged, pc.invert(correct))
    counts = (
        pa.table({
            "question_id": table.column("question_id"),
            "judged": pc.cast(judged, pa.int64()),
            "failed": pc.cast(failed, pa.int64()),
        })
        .group_by("question_id")
        .aggregate([("judged", "sum"), ("failed", "sum")])
    )
    columns = (counts.column(c).to_pylist() for c in ("question_id", "judged_sum", "failed_sum"))
    out = {qid: QuestionDifficulty(qid, int(n), int(f), values.get(qid)) for qid, n, f in zip(*columns, strict=True)}
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- selection
@dataclass(frozen=True)
class Selection:
    """The chosen question ids (sorted) and per-bucket counts.

    ``counts``: ``available_hard``, ``available_easy`` (after exclusion), ``excluded``,
    ``selected_hard``, ``selected_easy``, ``selected`` and ``failures``, a histogram of the
    selected questions by number of failed rationales (``{"0": 120, "1": 300, ...}``),
    ``difficulty`` (``"failures"`` or ``"field:NAME"``) and, for a field, ``values``: the
    selected questions by field value (``{"3": 50, "4": 200, "5": 247}``).
    """

    question_ids: tuple[str, ...]
    counts: dict[str, Any] = field(default_factory=dict)


def _check_selection_args(
    target: int | None, easy_fraction: float | None, hard_threshold: float | None, field: str | None = None
) -> float:
    """Check the arguments; return the effective ``hard_threshold`` (0 for failures when not given)."""
    if (target is None) == (easy_fraction is None):
        raise ValueError("give exactly one of target (--target) and easy_fraction (--easy-fraction)")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target < 1):
        raise ValueError(f"target (--target) must be an integer >= 1, got {target!r}")
    if easy_fraction is not None and not 0.0 <= easy_fraction <= 1.0:
        raise ValueError(f"easy_fraction (--easy-fraction) must be in [0, 1], got {easy_fraction!r}")
    if field is not None:
        if hard_threshold is None:
            raise ValueError(
                f"hard_threshold (--hard-threshold) is required with difficulty field:{field}: a question is hard "
                f"when its {field} is >= the threshold (e.g. 4 for MATH level 4-5)"
            )
        if isinstance(hard_threshold, bool) or not isinstance(hard_threshold, int | float) or not math.isfinite(
            hard_threshold
        ):
            raise ValueError(f"hard_threshold (--hard-threshold) must be a finite number, got {hard_threshold!r}")
        return float(hard_threshold)
    if hard_threshold is None:
        return 0.0
    if not 0.0 <= hard_threshold <= 1.0:
        raise ValueError(f"hard_threshold (--hard-threshold) must be in [0, 1], got {hard_threshold!r}")
    return float(hard_threshold)


def _value_key(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def select_hard_first(
    difficulty: Mapping[str, QuestionDifficulty],
    *,
    target: int | None = None,
    easy_fraction: float | None = None,
    hard_threshold: float | None = None,
    seed: int = 0,
    exclude: Collection[str] = (),
    field: str | None = None,
) -> Selection:
    """Every hard question (hardest first), then a seeded random sample of easy ones.

    A question is hard when its failure rate is above ``hard_threshold`` (default 0: any
    failure); with ``field`` (a source field, each entry's ``value``), when its value is at least
    ``hard_threshold`` (required then), higher values first. With ``target``, up
    to ``target`` questions in all (the hardest ``target`` if the hard ones alone are more);
    with ``easy_fraction``, all hard ones plus that fraction (rounded) of the easy ones. Give
    exactly one of the two. Questions in ``exclude`` are never chosen. Ties in failure rate and
    the easy sample are ordered by a hash of ``(seed, question id)``: the result depends only on
    the arguments, and a larger target or fraction keeps every question of a smaller one.
    """
    threshold = _check_selection_args(target, easy_fraction, hard_threshold, field)
    excluded = set(exclude)
    pool = [d for qid, d in difficulty.items() if qid not in excluded]
    if field is None:
        def score(d: QuestionDifficulty) -> float:
            return d.failure_rate

        def is_hard(d: QuestionDifficulty) -> bool:
            return d.failure_rate > threshold
    else:
        unvalued = sorted(d.question_id for d in pool if d.value is None)
        if unvalued:
            raise ValueError(f"difficulty field:{field}: no value for question(s) {_name_some(unvalued)}")

        def score(d: QuestionDifficulty) -> float:
            return d.value  # type: ignore[return-value]

        def is_hard(d: QuestionDifficulty) -> bool:
            return d.value >= threshold  # type: ignore[operator]
    hard = [d for d in pool if is_hard(d)]
    easy = [d for d in pool if not is_hard(d)]
    hard.sort(key=lambda d: (-score(d), stable_hash(seed, "hard", d.question_id), d.question_id))
    easy.sort(key=lambda d: (stable_hash(seed, "easy", d.question_id), d.question_id))

    if target is not None:
        chosen_hard = hard[:target]
        chosen_easy = easy[: max(0, target - len(chosen_hard))]
    else:
        assert easy_fraction is not None
        chosen_hard = hard
        chosen_easy = easy[: int(math.floor(easy_fraction * len(easy) + 0.5))]

    chosen = chosen_hard + chosen_easy
    histogram = Counter(d.failures for d in chosen)
    counts: dict[str, Any] = {
        "available_hard": len(hard),
        "available_easy": len(easy),
        "excluded": len(difficulty) - len(pool),
        "selected_hard": len(chosen_hard),
        "selected_easy": len(chosen_easy),
        "selected": len(chosen),
        "failures": {str(k): histogram[k] for k in sorted(histogram)},
        "difficulty": FAILURES if field is None else f"{FIELD_PREFIX}{field}",
    }
    if field is not None:
        by_value = Counter(d.value for d in chosen)
        counts["values"] = {_value_key(v): by_value[v] for v in sorted(by_value)}  # type: ignore[arg-type]
    return Selection(question_ids=tuple(sorted(d.question_id for d in chosen)), counts=counts)


# ---------------------------------------------------------------- writing a subset
def _rationale_runs(src: Path, out: Path) -> list[tuple[Path, Any]]:
    runs = []
    for run_dir in find_runs(src):
        if run_dir.resolve() == out.resolve():
            continue  # a subset written inside its own source is not a source
        manifest = load_manifest(run_dir)
        if manifest.kind == "rationales":
            runs.append((run_dir, manifest))
    if not runs:
        raise ContractError(str(src), "no rationale run found")
    return runs


def subset_run_id(source_run_ids: Sequence[str], question_ids: Collection[str]) -> str:
    """Run id of the subset of ``question_ids`` of the given source runs."""
    digest = stable_hash(*source_run_ids, "|", *sorted(set(question_ids)), length=10)
    return f"{source_run_ids[0]}-subset-{digest}"


def write_subset(src: str | Path, out: str | Path, question_ids: Collection[str], note: Mapping[str, Any]) -> Path:
    """Copy every row of ``question_ids`` from the rationale runs under ``src`` into run ``out``.

    The new run's manifest config is the (first) source run's config plus
    ``{"selection": {**note, "source": str(src), "source_runs": [...], "questions": n}}``;
    shards hold at most 500 rows. The run id is the source run id plus a digest of the ids
    (not of ``note``): writing the same subset into an ``out`` that already holds it complete
    does nothing; ``out`` holding another run is an error. Returns ``out``.
    """
    src, out = Path(src), Path(out)
    ids = sorted(set(question_ids))
    if not ids:
        raise ValueError("no questions to write")
    runs = _rationale_runs(src, out)
    run_id = subset_run_id([m.run_id for _, m in runs], ids)
    if (out / MANIFEST_NAME).exists():
        existing = load_manifest(out)
        if existing.run_id != run_id or existing.kind != "rationales":
            raise ContractError(
                str(out / MANIFEST_NAME),
                f"holds run {existing.run_id!r} ({existing.kind}), not the subset {run_id!r}; "
                "use another output folder",
            )
        if existing.complete:
            return out

    wanted = pa.array(ids, pa.string())
    tables = []
    for run_dir, _ in runs:
        table = read_rationales(run_dir)
        tables.append(table.filter(pc.is_in(table.column("question_id"), value_set=wanted)))
    table = pa.concat_tables(tables, promote_options="default")
    found = set(table.column("question_id").to_pylist())
    missing = [q for q in ids if q not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{len(missing)} question id(s) not in {src}: {', '.join(missing[:5])}{more}")
    table = table.sort_by([(k, "ascending") for k in SORT_KEYS["rationales"]])

    first = runs[0][1]
    config = dict(first.config)
    config["selection"] = {
        **note,
        "source": str(src),
        "source_runs": [m.run_id for _, m in runs],
        "questions": len(ids),
    }
    writer = RunWriter(out, run_id, kind="rationales", config=config)
    for i, start in enumerate(range(0, table.num_rows, SHARD_ROWS)):
        name = f"subset-{i:05d}"
        if not writer.has_shard(name):
            writer.write_shard(name, table.slice(start, SHARD_ROWS))
    writer.finalize({"questions": len(ids), "rows": table.num_rows})
    return out


def run_question_ids(root: str | Path) -> set[str]:
    """Question ids of every run (rationales or questions) under ``root``."""
    kinds = {load_manifest(r).kind for r in find_runs(root)}
    ids: set[str] = set()
    for kind in sorted(kinds):
        ids.update(read_run(root, kind).column("question_id").to_pylist())
    return ids


# ---------------------------------------------------------------- one call: the CLI's and the flow's body
def check_selection_request(
    src: str | Path,
    *,
    target: int | None = None,
    easy_fraction: float | None = None,
    hard_threshold: float | None = None,
    exclude_from: str | Path | None = None,
    difficulty: str = FAILURES,
) -> float:
    """Raise ``ValueError`` (naming the argument) for a selection that cannot run: a missing
    run or ``exclude_from`` folder, or bad ``target`` / ``easy_fraction`` / ``hard_threshold`` /
    ``difficulty``. Returns the effective ``hard_threshold``."""
    if not Path(src).exists():
        raise ValueError(f"RUN: no such folder {src}")
    threshold = _check_selection_args(target, easy_fraction, hard_threshold, parse_difficulty(difficulty))
    if exclude_from is not None and not Path(exclude_from).exists():
        raise ValueError(f"exclude_from (--exclude-from): no such folder {exclude_from}")
    return threshold


def run_selection(
    src: str | Path,
    out: str | Path,
    *,
    target: int | None = None,
    easy_fraction: float | None = None,
    hard_threshold: float | None = None,
    seed: int = 0,
    exclude_from: str | Path | None = None,
    difficulty: str = FAILURES,
) -> dict[str, Any]:
    """Difficulty (``difficulty``: ``"failures"`` or ``"field:NAME"``), hard-first selection, the
    subset run in ``out`` and ``out/selection.json``.

    What ``python -m pipeline.select`` and the ``select`` flow (``flows.select``) run. Returns
    the report written to ``selection.json`` (``counts``, ``args``, ``question_ids``) plus the
    subset's ``run_id``. Raises ``ValueError`` for bad arguments or an empty selection and
    ``ContractError`` for bad input; writing the same selection again is a no-op.
    """
    threshold = check_selection_request(
        src, target=target, easy_fraction=easy_fraction, hard_threshold=hard_threshold, exclude_from=exclude_from,
        difficulty=difficulty,
    )  # fmt: skip
    field = parse_difficulty(difficulty)
    exclude = run_question_ids(exclude_from) if exclude_from is not None else set()
    selection = select_hard_first(
        question_difficulty(src, field), target=target, easy_fraction=easy_fraction, hard_threshold=threshold,
        seed=seed, exclude=exclude, field=field,
    )  # fmt: skip
    if not selection.question_ids:
        raise ValueError("the selection is empty (every question excluded?)")
    arguments = {
        "method": "hard_first",
        "difficulty": difficulty,
        "target": target,
        "easy_fraction": easy_fraction,
        "hard_threshold": threshold,
        "seed": seed,
        "exclude_from": None if exclude_from is None else str(exclude_from),
    }
    written = write_subset(src, out, selection.question_ids, {**arguments, "counts": selection.counts})
    report = {"counts": selection.counts, "args": {"run": str(src), "out": str(out), **arguments},
              "question_ids": list(selection.question_ids)}  # fmt: skip
    write_text_atomic(written / SELECTION_FILE, json.dumps(report, indent=2) + "\n")
    return {**report, "run_id": load_manifest(written).run_id}


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.select",
        description="Hard-first selection: keep the hard questions (those the teacher fails on, across views x "
        "samples, or with --difficulty field:NAME those whose source field is >= --hard-threshold), fill up with a "
        "seeded sample of easy ones, and copy their rationales into a new run.",
    )
    parser.add_argument("run", metavar="RUN", help="rationale run folder (or a folder of runs)")
    parser.add_argument("--out", required=True, type=Path, help="folder of the new subset run")
    parser.add_argument("--target", type=int, help="questions to keep in all (hard ones first)")
    parser.add_argument("--easy-fraction", type=float, help="keep every hard question and this fraction of easy ones")
    parser.add_argument("--difficulty", default=FAILURES, metavar="failures|field:NAME",
                        help="how hard a question is: 'failures' (default: the teacher's failure rate across views x "
                        "samples) or 'field:NAME', a numeric source field of the question such as field:level (MATH)")
    parser.add_argument("--hard-threshold", type=float, default=None,
                        help="failures: a question is hard when its failure rate is above this (default 0: any "
                        "failure); field:NAME: when NAME is >= this (required, e.g. 4 for MATH level 4-5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of tie-breaking and the easy sample")
    parser.add_argument("--exclude-from", type=Path, help="never select question ids of the run(s) under this folder")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def print_counts(selection: Selection, console: Any = None) -> None:
    """Rich tables of the available / selected counts and the failure histogram."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(emoji=False, highlight=False)
    c = selection.counts
    difficulty = c.get("difficulty", FAILURES)
    table = Table(title=f"hard-first selection: {c['selected']} questions")
    table.add_column("bucket")
    for col in ("available", "selected"):
        table.add_column(col, justify="right")
    table.add_row("hard", str(c["available_hard"]), str(c["selected_hard"]))
    table.add_row("easy", str(c["available_easy"]), str(c["selected_easy"]))
    table.add_row("total", str(c["available_hard"] + c["available_easy"]), str(c["selected"]))
    console.print(table)
    if difficulty != FAILURES:
        console.print(f"difficulty: {difficulty}")
    if c["excluded"]:
        console.print(f"excluded: {c['excluded']} question(s)")
    hist = Table(title="selected questions by failed rationales")
    hist.add_column("failures", justify="right")
    hist.add_column("questions", justify="right")
    for k, n in c["failures"].items():
        hist.add_row(k, str(n))
    console.print(hist)
    if "values" in c:
        name = difficulty.removeprefix(FIELD_PREFIX)
        values = Table(title=f"selected by {name}")
        values.add_column(name, justify="right")
        values.add_column("questions", justify="right")
        for k, n in c["values"].items():
            values.add_row(k, str(n))
        console.print(values)


def main(argv: Sequence[str] | None = None, runner: Callable[..., dict[str, Any]] | None = None,
         prog: str | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad arguments or input). ``runner`` does
    the selection (default :func:`run_selection`; ``flows.select`` passes its Prefect flow), after
    the arguments are checked."""
    runner = runner or run_selection
    parser = build_parser()
    if prog:
        parser.prog = prog
    try:
        args = parser.parse_args(argv)
        try:  # the library's own checks, reported the argparse way (exit 2, the flag named)
            check_selection_request(args.run, target=args.target, easy_fraction=args.easy_fraction,
                                    hard_threshold=args.hard_threshold, exclude_from=args.exclude_from,
                                    difficulty=args.difficulty)  # fmt: skip
        except ValueError as exc:
            parser.error(str(exc))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2

    try:
        report = runner(
            args.run, args.out, target=args.target, easy_fraction=args.easy_fraction,
            hard_threshold=args.hard_threshold, seed=args.seed, exclude_from=args.exclude_from,
            difficulty=args.difficulty,
        )  # fmt: skip
    except ContractError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_counts(Selection(tuple(report["question_ids"]), report["counts"]))
        print(f"wrote {len(report['question_ids'])} questions to {args.out} (run {report['run_id']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
