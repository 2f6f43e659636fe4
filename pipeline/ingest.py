"""Ingest existing rationale files into a rationale run directory (docs/design.md), re-verified.

    python -m pipeline.ingest gsm8k-model-solutions $MIND_SHARED_DATA/gsm8k/example_model_solutions.jsonl --out runs/gsm8k-models
    python -m pipeline.ingest mentor-kd $MIND_SHARED_DATA/mentor_kd/svamp_3_train.json --out runs/mkd-svamp
    python -m pipeline.ingest jsonl mine.jsonl --out runs/mine --task gsm8k --rationale-field output

Formats: ``gsm8k`` (human rationales of train/test.jsonl), ``gsm8k-socratic``
(test_socratic.jsonl), ``gsm8k-model-solutions`` (example_model_solutions.jsonl: four model
solutions per question, with OpenAI's own labels kept in ``metadata``), ``mentor-kd``
(``*_k_train.json``: k gpt-3.5-turbo chains per question) and ``jsonl`` (any JSON Lines file,
column names mapped with ``--*-field``). Question ids are those of :mod:`pipeline.sources`, so
GSM8K human, socratic and model rationales of one test question share ``gsm8k:test:<i>``.

Bad input (a malformed line, a missing field, a gold answer the task cannot use): with
``--on-error fail`` (default) nothing is written and every problem is printed as
``FILE:LINE: reason`` (exit 2); with ``--on-error skip`` the good rows are written and the bad
records go to ``DIR/rejects.jsonl``. The run is assembled in a temporary folder beside DIR and
renamed into place, so DIR never holds a partial run. Re-running the same ingest into the same
DIR is a no-op; a different ingest into a DIR holding another run needs ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_schemas import (
    MANIFEST_NAME,
    RATIONALE_SCHEMA,
    SCHEMA_VERSION,
    ContractError,
    RunWriter,
    load_manifest,
    validate_row,
    write_rejects,
)
from data_schemas.io import sha256_file

from .ids import content_question_id, derive_seed, stable_hash
from .readers import iter_jsonl, iter_records
from .sources.gsm8k import gsm8k_question, gsm8k_split, strip_calculator_notes
from .sources.mentor_kd import iter_mentor_kd
from .sources.rows import make_question_row, require_field

FORMATS = ("gsm8k", "gsm8k-socratic", "gsm8k-model-solutions", "mentor-kd", "jsonl")
MODEL_SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
MENTOR_KD_TEACHER = "import/mentor-kd/gpt-3.5-turbo"
SHARD_ROWS = 50_000

#: Options each format accepts (besides on_error / overwrite), with their defaults.
FORMAT_OPTIONS: dict[str, dict[str, Any]] = {
    "gsm8k": {"keep_calculator_notes": False},
    "gsm8k-socratic": {"keep_calculator_notes": False},
    "gsm8k-model-solutions": {"keep_calculator_notes": False},
    "mentor-kd": {"task": None, "teacher": None},
    "jsonl": {
        "task": None,
        "teacher": None,
        "perspective": "default",
        "question_field": "question",
        "answer_field": "answer",
        "rationale_field": "rationale",
        "perspective_field": "perspective",
        "teacher_field": "teacher",
        "task_field": "task",
        "id_field": "id",
    },
}


class IngestError(ContractError):
    """The input has bad records (``errors``, each a ``ContractError`` naming FILE:LINE)."""

    def __init__(self, errors: list[ContractError]):
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.where, first.reason + more)


class RunConflictError(ContractError):
    """The output folder holds something else (another run, or files that are not a run)."""


@dataclasses.dataclass
class IngestSummary:
    """What an ingest wrote (also stored as the manifest's ``stats``)."""

    run_id: str
    out: str
    format: str
    input: str
    rows: int
    questions: int
    rejects: int
    shards: int
    groups: list[dict[str, Any]]
    label_agreement: dict[str, Any] | None = None
    seconds: float = 0.0
    already_complete: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- building rows
class _Builder:
    """Collects verified rationale rows and rejects for one ingest."""

    def __init__(self, path: Path, run_id: str):
        from .verify import verify

        self.verify = verify
        self.path = path
        self.run_id = run_id
        self.rows: list[dict[str, Any]] = []
        self.labels: list[bool | None] = []
        self.errors: list[ContractError] = []
        self.rejects: list[dict[str, Any]] = []
        self._sample_counter: Counter[tuple[str, str, str]] = Counter()

    def reject(self, err: ContractError, raw: Any) -> None:
        self.errors.append(err)
        m = re.search(r":(\d+)(?=$|\s)", err.where)
        self.rejects.append(
            {"file": str(self.path), "line": int(m[1]) if m else None, "reason": err.reason, "raw": raw}
        )

    def sample_count(self, question_id: str, perspective: str, teacher: str) -> int:
        """Rows already added for (question, perspective, teacher): the next sample index."""
        return self._sample_counter[(question_id, perspective, teacher)]

    def make(
        self,
        where: str,
        q: dict[str, Any],
        *,
        perspective: str,
        teacher: str,
        rationale: str,
        sample_index: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A full, verified and validated rationale row (not yet added)."""
        key = (q["question_id"], perspective, teacher)
        if sample_index is None:
            sample_index = self._sample_counter[key]
        try:
            verdict = self.verify(rationale, q["gold_answer"], q["task"])
        except ValueError as exc:
            raise ContractError(where, f"cannot verify: {exc}") from None
        row = dict(
            question_id=q["question_id"],
            question=q["question"],
            gold_answer=q["gold_answer"],
            task=q["task"],
            perspective=perspective,
            teacher=teacher,
            sample_index=sample_index,
            rationale=rationale,
            predicted_answer=verdict.predicted_answer,
            is_correct=verdict.is_correct,
            finish_reason="stop",
            num_tokens=None,
            seed=derive_seed("ingest", q["question_id"], perspective, teacher, sample_index),
            run_id=self.run_id,
            schema_version=SCHEMA_VERSION,
            source=q["source"],
            split=q["split"],
            metadata=json.dumps(metadata, ensure_ascii=False, sort_keys=True) if metadata else None,
        )
        try:
            return validate_row(row, "rationales")
        except ValueError as exc:
            raise ContractError(where, str(exc)) from None

    def add(self, rows: list[dict[str, Any]], labels: list[bool | None] | None = None) -> None:
        """Add the rows of one record (all or nothing)."""
        for row in rows:
            self._sample_counter[(row["question_id"], row["perspective"], row["teacher"])] += 1
        self.rows.extend(rows)
        self.labels.extend(labels if labels is not None else [None] * len(rows))


def _gsm8k(b: _Builder, opts: dict[str, Any], perspective: str) -> None:
    split = gsm8k_split(b.path)
    for line_no, obj in iter_jsonl(b.path, on_error=b.reject):
        where = f"{b.path}:{line_no}"
        try:
            q = gsm8k_question(obj, where, split=split, index=line_no - 1)
            answer = obj["answer"]
            rationale = answer if opts["keep_calculator_notes"] else strip_calculator_notes(answer)
            b.add([b.make(where, q, perspective=perspective, teacher="human", rationale=rationale, sample_index=0)])
        except ContractError as err:
            b.reject(err, obj)


_A_LINE = re.compile(r"^\s*A:\s*(.+?)\s*$", re.MULTILINE)


def _gsm8k_model_solutions(b: _Builder, opts: dict[str, Any]) -> None:
    for line_no, obj in iter_jsonl(b.path, on_error=b.reject):
        where = f"{b.path}:{line_no}"
        try:
            question = require_field(obj, "question", where)
            truth = require_field(obj, "ground_truth", where)
            found = _A_LINE.findall(truth)
            if not found:
                raise ContractError(where, "field 'ground_truth': no 'A: <answer>' line")
            q = make_question_row(
                where,
                question_id=f"gsm8k:test:{line_no - 1}",
                question=question.strip(),
                gold=found[-1].replace(",", ""),
                task="gsm8k",
                source="gsm8k",
                split="test",
                gold_field="ground_truth",
            )
            rows, labels = [], []
            for key in MODEL_SOLUTION_KEYS:
                sol = require_field(obj, key, where, kind=dict)
                text = require_field(sol, "solution", where + f" ({key})")
                label = sol.get("is_correct")
                if label is not None and not isinstance(label, bool):
                    raise ContractError(where, f"field '{key}.is_correct' must be true/false, got {label!r}")
                rationale = text if opts["keep_calculator_notes"] else strip_calculator_notes(text)
                rows.append(
                    b.make(
                        where,
                        q,
                        perspective="default",
                        teacher=f"import/gsm8k-{key}",
                        rationale=rationale,
                        sample_index=0,
                        metadata={"label_is_correct": label},
                    )
                )
                labels.append(label)
            b.add(rows, labels)
        except ContractError as err:
            b.reject(err, obj)


def _mentor_kd(b: _Builder, opts: dict[str, Any]) -> None:
    teacher = opts["teacher"] or MENTOR_KD_TEACHER
    for mq in iter_mentor_kd(b.path, task=opts["task"], on_error=b.reject):
        try:
            rows = []
            base = b.sample_count(mq.row["question_id"], "default", teacher)  # > 0 for a repeated question
            for k, (line_no, obj) in enumerate(mq.records):
                where = f"{b.path}:{line_no}"
                chain = require_field(obj, "chain", where)
                meta = {"initial_correct": obj["initial_correct"]} if "initial_correct" in obj else None
                rows.append(b.make(where, mq.row, perspective="default", teacher=teacher, rationale=chain,
                                   sample_index=base + k, metadata=meta))
            b.add(rows)
        except ContractError as err:
            b.reject(err, [o for _, o in mq.records])


def _jsonl(b: _Builder, opts: dict[str, Any]) -> None:
    source = b.path.stem
    default_teacher = opts["teacher"] or f"import/{source}"

    def optional(obj: dict[str, Any], field: str | None, where: str, default: str | None) -> str | None:
        if field and obj.get(field) is not None:
            return require_field(obj, field, where)
        return default

    for line_no, obj in iter_records(b.path, on_error=b.reject):
        where = f"{b.path}:{line_no}"
        try:
            question = require_field(obj, opts["question_field"], where).strip()
            answer = require_field(obj, opts["answer_field"], where, kind=(str, int, float))
            rationale = obj.get(opts["rationale_field"])
            if not isinstance(rationale, str):
                what = "missing" if rationale is None else f"not a string ({type(rationale).__name__})"
                raise ContractError(where, f"field {opts['rationale_field']!r} is {what}")
            task = optional(obj, opts["task_field"], where, opts["task"])
            if task is None:
                raise ContractError(where, f"no task: field {opts['task_field']!r} is missing and no --task given")
            if opts["id_field"] and obj.get(opts["id_field"]) is not None:
                qid = str(require_field(obj, opts["id_field"], where, kind=(str, int)))
            else:
                qid = content_question_id(source, question)
            q = make_question_row(
                where, question_id=qid, question=question, gold=answer, task=task, source=source, split=None,
                gold_field=opts["answer_field"],
            )
            perspective = optional(obj, opts["perspective_field"], where, opts["perspective"])
            teacher = optional(obj, opts["teacher_field"], where, default_teacher)
            b.add([b.make(where, q, perspective=perspective, teacher=teacher, rationale=rationale)])
        except ContractError as err:
            b.reject(err, obj)


_PARSERS: dict[str, Callable[[_Builder, dict[str, Any]], None]] = {
    "gsm8k": lambda b, o: _gsm8k(b, o, "human"),
    "gsm8k-socratic": lambda b, o: _gsm8k(b, o, "socratic"),
    "gsm8k-model-solutions": _gsm8k_model_solutions,
    "mentor-kd": _mentor_kd,
    "jsonl": _jsonl,
}


# ---------------------------------------------------------------- statistics
def _stats(rows: list[dict[str, Any]], labels: list[bool | None]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        c = counts[(row["teacher"], row["perspective"])]
        c["rows"] += 1
        c[{True: "correct", False: "incorrect", None: "unjudged"}[row["is_correct"]]] += 1
    groups = []
    for (teacher, perspective), c in sorted(counts.items()):
        n = c["rows"]
        groups.append(
            dict(
                teacher=teacher,
                perspective=perspective,
                rows=n,
                correct=c["correct"],
                incorrect=c["incorrect"],
                unjudged=c["unjudged"],
                pct_correct=round(100 * c["correct"] / n, 2),
                pct_unjudged=round(100 * c["unjudged"] / n, 2),
            )
        )
    labelled = [(r["is_correct"], lab) for r, lab in zip(rows, labels, strict=True) if lab is not None]
    if not labelled:
        return groups, None
    judged = [(v, lab) for v, lab in labelled if v is not None]
    agree = sum(v == lab for v, lab in judged)
    agreement = dict(
        labelled=len(labelled),
        judged=len(judged),
        agree=agree,
        pct_agree=round(100 * agree / len(judged), 2) if judged else None,
        label_correct=sum(lab for _, lab in labelled),
        verdict_correct_label_incorrect=sum(v is True and lab is False for v, lab in judged),
        verdict_incorrect_label_correct=sum(v is False and lab is True for v, lab in judged),
    )
    return groups, agreement


def print_summary(summary: IngestSummary, console: Any = None) -> None:
    """Rich table of rows / % correct / % unjudged per teacher and perspective."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(emoji=False)
    if summary.already_complete:
        console.print(f"[green]already complete[/]: {summary.out} holds run {summary.run_id} (nothing to do)")
    table = Table(title=f"ingest {summary.format}: {summary.rows} rows, {summary.questions} questions")
    for col in ("teacher", "perspective"):
        table.add_column(col)
    for col in ("rows", "% correct", "% unjudged"):
        table.add_column(col, justify="right")
    for g in summary.groups:
        table.add_row(g["teacher"], g["perspective"], str(g["rows"]), f"{g['pct_correct']:.1f}", f"{g['pct_unjudged']:.1f}")
    console.print(table)
    a = summary.label_agreement
    if a:
        console.print(
            f"agreement with the file's is_correct labels: {a['agree']}/{a['judged']} judged rows "
            f"({a['pct_agree']}%); verdict correct but label incorrect: {a['verdict_correct_label_incorrect']}, "
            f"verdict incorrect but label correct: {a['verdict_incorrect_label_correct']}; "
            f"labels say {a['label_correct']}/{a['labelled']} correct"
        )
    if summary.rejects:
        console.print(f"[yellow]{summary.rejects} rejected record(s)[/] listed in {Path(summary.out) / 'rejects.jsonl'}")
    if not summary.already_complete:
        console.print(f"wrote {summary.rows} rows in {summary.shards} shard(s) to {summary.out} "
                      f"(run {summary.run_id}, {summary.seconds:.2f} s)")


# ---------------------------------------------------------------- the ingest
def _resolve_options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    if fmt not in FORMAT_OPTIONS:
        raise ValueError(f"unknown ingest format {fmt!r}; choose one of {', '.join(FORMATS)}")
    allowed = FORMAT_OPTIONS[fmt]
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"option(s) {', '.join(unknown)} do not apply to format {fmt!r} (it takes: {', '.join(allowed) or 'none'})")
    return {**allowed, **given}


def make_run_id(fmt: str, input_sha256: str, opts: dict[str, Any]) -> str:
    """Run id of an ingest: the format, the input file's content and the options that shape rows."""
    return f"ingest-{fmt}-{stable_hash(fmt, input_sha256, json.dumps(opts, sort_keys=True), length=12)}"


def _check_out(out: Path, run_id: str, overwrite: bool) -> IngestSummary | None:
    """The finished summary when ``out`` already holds this complete run; raise on a conflict."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise RunConflictError(str(out), "exists and is not a directory")
    if (out / MANIFEST_NAME).exists():
        manifest = load_manifest(out)
        if manifest.run_id == run_id and manifest.complete:
            stats = {k: v for k, v in manifest.stats.items() if k in {f.name for f in dataclasses.fields(IngestSummary)}}
            stats.update(already_complete=True, out=str(out))
            return IngestSummary(**stats)
        if manifest.run_id != run_id and not overwrite:
            raise RunConflictError(
                str(out),
                f"holds another run ({manifest.run_id}, {manifest.config.get('format', manifest.kind)} of "
                f"{manifest.config.get('input', '?')}); use --overwrite to replace it or choose another --out",
            )
        return None
    if any(out.iterdir()):
        raise RunConflictError(str(out), "is not empty and not a run directory; refusing to write into it")
    return None


def _place(tmp: Path, out: Path) -> None:
    """Move the finished run ``tmp`` to ``out``, replacing an old run there."""
    if not out.exists():
        os.replace(tmp, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def ingest(
    format: str,
    input: str | Path,
    out: str | Path,
    *,
    on_error: str = "fail",
    overwrite: bool = False,
    **options: Any,
) -> IngestSummary:
    """Ingest ``input`` (in ``format``) into the run directory ``out``; see the module doc.

    Raises :class:`IngestError` on bad input with ``on_error="fail"`` (nothing written) and
    :class:`RunConflictError` when ``out`` holds another run and ``overwrite`` is false.
    """
    t0 = time.perf_counter()
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    opts = _resolve_options(format, options)
    path, out = Path(input), Path(out)
    if not path.is_file():
        raise ContractError(str(path), "no such file")
    digest = sha256_file(path)
    run_id = make_run_id(format, digest, opts)
    done = _check_out(out, run_id, overwrite)
    if done is not None:
        return done

    builder = _Builder(path, run_id)
    _PARSERS[format](builder, opts)
    if builder.errors and on_error == "fail":
        raise IngestError(builder.errors)

    rows = builder.rows
    groups, agreement = _stats(rows, builder.labels)
    n_shards = (len(rows) + SHARD_ROWS - 1) // SHARD_ROWS
    summary = IngestSummary(
        run_id=run_id,
        out=str(out),
        format=format,
        input=str(path),
        rows=len(rows),
        questions=len({r["question_id"] for r in rows}),
        rejects=len(builder.rejects),
        shards=n_shards,
        groups=groups,
        label_agreement=agreement,
    )
    config = {"format": format, "input": str(path), "input_sha256": digest, "options": opts, "on_error": on_error}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        writer = RunWriter(tmp, run_id, kind="rationales", config=config)
        for i in range(n_shards):
            chunk = rows[i * SHARD_ROWS : (i + 1) * SHARD_ROWS]
            writer.write_shard(f"part-{i:05d}", pa.Table.from_pylist(chunk, schema=RATIONALE_SCHEMA))
        if builder.rejects:
            write_rejects(tmp, builder.rejects)
        summary.seconds = round(time.perf_counter() - t0, 3)
        writer.finalize(stats=summary.to_dict())
        with contextlib.suppress(FileNotFoundError):
            (tmp / ".manifest.lock").unlink()
        _place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.ingest",
        description="Turn existing rationale files into a re-verified rationale run directory.",
    )
    p.add_argument("format", choices=FORMATS)
    p.add_argument("input", help="the file to ingest, e.g. $MIND_SHARED_DATA/gsm8k/example_model_solutions.jsonl")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="fail: write nothing and exit 2 on any bad record (default); skip: write the good rows "
                        "and DIR/rejects.jsonl")
    p.add_argument("--overwrite", action="store_true", help="replace another run already in --out")
    p.add_argument("--task", help="task of every row (jsonl: default when no task field; mentor-kd: overrides the file name)")
    p.add_argument("--teacher", help="teacher name (jsonl default: import/<file stem>; mentor-kd default: "
                                     f"{MENTOR_KD_TEACHER})")
    p.add_argument("--perspective", help="jsonl: perspective when the row has none (default 'default')")
    for field in ("question", "answer", "rationale", "perspective", "teacher", "task", "id"):
        p.add_argument(f"--{field}-field", help=f"jsonl: name of the {field} field (default {field!r})")
    p.add_argument("--keep-calculator-notes", action="store_true", default=None,
                   help="gsm8k formats: keep the <<a*b=c>> calculator notes in rationales")
    p.add_argument("--quiet", action="store_true", help="print no summary table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad input or output conflict)."""
    args = build_parser().parse_args(argv)
    options = {
        k: getattr(args, k)
        for k in ("task", "teacher", "perspective", "question_field", "answer_field", "rationale_field",
                  "perspective_field", "teacher_field", "task_field", "id_field", "keep_calculator_notes")
    }
    try:
        summary = ingest(args.format, args.input, args.out, on_error=args.on_error, overwrite=args.overwrite, **options)
    except IngestError as exc:
        for err in exc.errors[:20]:
            print(str(err), file=sys.stderr)
        if len(exc.errors) > 20:
            print(f"... and {len(exc.errors) - 20} more bad record(s)", file=sys.stderr)
        print(f"nothing written to {args.out}; fix the input or use --on-error skip", file=sys.stderr)
        return 2
    except ContractError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_summary(summary)
    elif summary.already_complete:
        print(f"already complete: {summary.out} holds run {summary.run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
