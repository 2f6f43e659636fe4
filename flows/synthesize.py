"""The ``synthesize`` Prefect flow: teachers write rationales per shard, verified, as Parquet.

In-process on the embedded default (synthetic world, reference teacher, all perspectives)::

    python -m flows.synthesize --out runs/synth --num-questions 200 [--config my.yaml]

Questions are split into shards; each shard is one Prefect task (retries, at most
``max_concurrency`` in flight on the configured task runner). Resume does not rely on Prefect's
result cache: a shard listed in ``OUT/<run_id>/manifest.json`` is finished (atomic rename
first, then the manifest) and is never submitted again, so a run killed at any moment,
SIGKILL included, completes on the next call with no duplicate and no missing row. The run id
is a hash of everything that changes outputs (source, perspectives and their prompts,
teachers, sampling, samples, seed, shard size, the judge when one is set), so a changed
parameter writes a new run folder.

With a judge model (``judge:`` in the config, or ``--judge unjudged|all --judge-teacher SPEC``;
``pipeline.judge``), each shard task also asks the judge before writing the shard, and the flow
publishes the rule/judge agreement per perspective x teacher as the ``synthesize-judge`` table
artifact (also in the summary and in the manifest's ``stats.judge``).
"""

from __future__ import annotations

if __name__ == "__main__":  # the CLI: Prefect's server starts now, on another core, while the imports below run
    from flows.prefect_api import start_early

    start_early()

import argparse
import importlib
import inspect
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from data_schemas import ContractError, RunWriter, load_manifest
from flows.prefect_api import PrefectApiUnavailable, prefect_api
from pipeline import shards
from pipeline.synthesis import (
    ShardResult,
    SynthesisConfig,
    check_tasks,
    iter_question_shards,
    load_config,
    run_shard,
)
from pipeline.teachers import teacher_in_process


@task(name="synthesize-shard", cache_policy=NO_CACHE, persist_result=False, retry_delay_seconds=[2, 10, 30])
def synthesize_shard(
    config: dict[str, Any], run_dir: str, run_id: str, name: str, questions: list[dict[str, Any]]
) -> dict[str, Any]:
    """Generate, verify and write one shard (a no-op when the shard is already finished)."""
    cfg = SynthesisConfig.model_validate(config)
    return run_shard(cfg, run_dir, run_id, name, questions).to_dict()


def make_task_runner(cfg: SynthesisConfig) -> Any:
    """Thread pool by default; Dask or Ray with the ``[dask]`` / ``[ray]`` extras. ``task_runner_options``
    are the runner's own arguments (e.g. Dask's ``cluster_kwargs`` or ``address``); an unknown one fails
    here, naming it and the known ones, before any work."""
    options = dict(cfg.task_runner_options)
    if cfg.task_runner == "thread":
        _check_runner_options(ThreadPoolTaskRunner, options)
        return ThreadPoolTaskRunner(max_workers=options.get("max_workers", cfg.max_concurrency))
    module, cls, extra = {
        "dask": ("prefect_dask", "DaskTaskRunner", "dask"),
        "ray": ("prefect_ray", "RayTaskRunner", "ray"),
    }[cfg.task_runner]
    try:
        runner_cls = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise ContractError(
            "task_runner", f"{cfg.task_runner!r} needs the extra: pip install 'mind-distill[{extra}]'"
        ) from None
    _check_runner_options(runner_cls, options)
    return runner_cls(**options)


def _check_runner_options(runner_cls: type, options: dict[str, Any]) -> None:
    """Fail on an option the runner's constructor does not take (``n_workers`` belongs in Dask's ``cluster_kwargs``)."""
    known = [n for n, p in inspect.signature(runner_cls.__init__).parameters.items()
             if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip
    if unknown := sorted(set(options) - set(known)):
        hint = " (a Dask cluster's size goes in cluster_kwargs, e.g. {cluster_kwargs: {n_workers: 2}})" if (
            "n_workers" in unknown and "cluster_kwargs" in known) else ""  # fmt: skip
        raise ContractError(
            "task_runner_options", f"unknown option(s) {unknown} for {runner_cls.__name__}; known: {known}{hint}"
        )


def _progress_text(done: int, total_known: int | None, rows: int, skipped: int) -> str:
    of = f"/{total_known}" if total_known else ""
    return f"{done}{of} shards finished ({skipped} from an earlier attempt), {rows:,} rationales written now"


def _warn_on_other_runner(cfg: SynthesisConfig, logger: Any) -> None:
    """Warn when the flow run executes on another task runner than the config asks for."""
    ctx = FlowRunContext.get()
    active = type(ctx.task_runner).__name__ if ctx and ctx.task_runner else None
    wanted = {"thread": "ThreadPoolTaskRunner", "dask": "DaskTaskRunner", "ray": "RayTaskRunner"}[cfg.task_runner]
    if active != wanted:
        logger.warning(
            "config asks for task_runner=%r but this run executes on %s (a served deployment's runner is fixed "
            "by `python -m flows.serve --config`)", cfg.task_runner, active,
        )


@dataclass
class _Progress:
    """The shards finished so far and the run's progress artifact (updated at most once a second)."""

    run_id: str
    artifact_id: Any
    total: int | None  # shards in the run, when known up front
    logger: Any
    results: list[ShardResult] = field(default_factory=list)  # the shards written by this call
    skipped: int = 0  # shards finished by an earlier attempt
    last_update: float = 0.0

    def collect(self, future: PrefectFuture) -> None:
        """Record a finished shard task's result; update the progress artifact."""
        result = ShardResult.from_dict(future.result())
        self.results.append(result)
        written = sum(r.rows for r in self.results)
        finished = len(self.results) + self.skipped
        self.logger.info("shard %s: %d rationales in %.2fs", result.name, result.rows, result.total_s)
        now = time.monotonic()
        if now - self.last_update < 1.0:  # each update is an API call: at most one a second
            return
        self.last_update = now
        pct = 100.0 * finished / self.total if self.total else 0.0
        text = _progress_text(finished, self.total, written, self.skipped)
        update_progress_artifact(self.artifact_id, min(pct, 100.0), f"run {self.run_id}: " + text)


def _run_shards(
    cfg: SynthesisConfig, run_dir: Path, run_id: str, done_before: set[str], progress: _Progress
) -> int:
    """Submit every shard not finished before, at most ``max_concurrency`` in flight, and collect
    their results into ``progress``; the number of shards planned (finished before included)."""
    config = cfg.model_dump(mode="json")
    inflight: deque[PrefectFuture] = deque()
    planned = 0
    first = True
    task_ = synthesize_shard.with_options(retries=cfg.task_retries)
    for name, questions in iter_question_shards(cfg):
        if first:
            check_tasks(cfg, questions[0])
            first = False
        planned += 1
        if name in done_before:
            progress.skipped += 1
            continue
        while len(inflight) >= cfg.max_concurrency:  # back-pressure: memory flat in the number of questions
            finished = next(as_completed(list(inflight)))
            inflight.remove(finished)
            progress.collect(finished)
        inflight.append(task_.submit(config, str(run_dir), run_id, name, questions))
    for f in list(inflight):
        progress.collect(f)
    return planned


def _publish_tables(
    run_id: str, groups: list[dict[str, Any]], judge: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The yield table per perspective x teacher and the judge's table (empty without a judge),
    both also published as table artifacts."""
    table = [
        {
            "perspective": g["perspective"], "teacher": g["teacher"], "rows": g["rows"],
            "% correct": round(g["correct_pct"], 1), "% unjudged": round(g["unjudged_pct"], 1),
            "errors": g["finish_reasons"].get("error", 0), "mean tokens": round(g["tokens_mean"] or 0.0, 1),
        }
        for g in groups
    ]  # fmt: skip
    create_table_artifact(table, key="synthesize-yield", description=f"run {run_id}: per perspective x teacher")
    judge_table = judge_rows(judge)
    if judge_table:
        t = judge["total"]
        create_table_artifact(
            judge_table, key="synthesize-judge",
            description=f"run {run_id}: judge {', '.join(judge['judges'])}: {t['judged']:,} rows judged, "
            f"{t['disagree']:,} rule/judge disagreement(s), {t['unparseable']:,} unparseable repl(ies)",
        )  # fmt: skip
    return table, judge_table


def run_synthesis(cfg: SynthesisConfig, out: str | Path) -> dict[str, Any]:
    """Body of the flow (inside a flow run): plan shards, submit with back-pressure, summarise."""
    logger = get_run_logger()
    t0 = time.perf_counter()
    _warn_on_other_runner(cfg, logger)
    run_id = cfg.run_id()
    run_dir = Path(out) / run_id
    built_here = 0
    if cfg.task_runner == "thread":  # the shards run in this process: fail on a bad teacher before any work
        specs = [*cfg.teachers, *([cfg.judge.teacher] if cfg.judge.enabled else [])]
        built_here = sum(teacher_in_process(spec)[1] for spec in specs)  # type: ignore[arg-type]  # set when enabled
    # else each worker process builds its own teachers on its first shard (an engine here would hold a GPU for nothing)
    writer = RunWriter(run_dir, run_id, config={**cfg.identity(), "config": cfg.model_dump(mode="json")})
    done_before = {s.name for s in load_manifest(run_dir).shards}
    expected = cfg.expected_questions if cfg.source.kind == "synthetic" else None
    total = -(-expected // cfg.shard_size) if expected else None
    logger.info("run %s -> %s (%d shard(s) already finished)", run_id, run_dir, len(done_before))
    progress_id = create_progress_artifact(0.0, key="synthesize-progress", description=f"run {run_id}")
    progress = _Progress(run_id, progress_id, total, logger)
    planned = _run_shards(cfg, run_dir, run_id, done_before, progress)
    if planned == 0:
        raise ContractError(f"source {cfg.source.kind}", "no questions")

    results, skipped = progress.results, progress.skipped
    groups = shards.stats(run_dir)
    judge = shards.judge_stats(run_dir)
    manifest = writer.finalize({"groups": groups, "shards": planned} | ({"judge": judge} if judge else {}))
    update_progress_artifact(
        progress_id, 100.0, f"run {run_id}: " + _progress_text(planned, planned, sum(r.rows for r in results), skipped)
    )
    table, judge_table = _publish_tables(run_id, groups, judge)
    errors = sum(row["errors"] for row in table)
    if errors:
        logger.warning("%d rationale(s) failed in the teacher (finish_reason='error'); see the table", errors)
    timing = {
        "teacher_s": sum(r.teacher_s for r in results), "verify_s": sum(r.verify_s for r in results),
        "judge_s": sum(r.judge_s for r in results),
        "write_s": sum(r.write_s for r in results), "shard_total_s": sum(r.total_s for r in results),
    }  # fmt: skip
    return {
        "run_id": run_id, "run_dir": str(run_dir), "rows": manifest.rows, "shards": planned,
        "shards_written": len(results), "shards_skipped": skipped, "rows_written": sum(r.rows for r in results),
        "errors": errors, "seconds": time.perf_counter() - t0, "timing": timing, "groups": table,
        "workers": dict(Counter(r.worker for r in results)),
        "teachers_built": built_here + sum(r.teachers_built for r in results),  # this call's, in every process
        "judge": judge_table or None, "judge_total": judge["total"] if judge else None,
    }  # fmt: skip


JUDGE_COLUMNS = {
    "judged": "judged", "judge_correct": "judge ✓", "judge_incorrect": "judge ✗", "unparseable": "unparseable",
    "judge_errors": "judge errors", "agree": "agree", "disagree": "disagree", "filled": "filled in",
    "overridden": "overridden",
}  # fmt: skip


def judge_rows(judge: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The judge counts of :func:`pipeline.shards.judge_stats` as artifact rows (empty without a judge)."""
    if not judge:
        return []
    return [
        {"perspective": g["perspective"], "teacher": g["teacher"], **{label: g[k] for k, label in JUDGE_COLUMNS.items()}}
        for g in judge["groups"]
    ]


@flow(name="synthesize", persist_result=False, log_prints=True)
def synthesize(
    out: str,
    config: str | None = None,
    num_questions: int | None = None,
    samples: int | None = None,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Synthesize verified rationales into ``out/<run_id>/`` (see the module docstring).

    ``config`` is a YAML file of :class:`pipeline.synthesis.SynthesisConfig` fields;
    ``num_questions``, ``samples``, ``seed`` and ``overrides`` replace its fields.
    """
    direct = {"num_questions": num_questions, "samples": samples, "seed": seed}
    cfg = load_config(config, **{**(overrides or {}), **{k: v for k, v in direct.items() if v is not None}})
    return run_synthesis(cfg, out)


def run(out: str, config: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Validate the config (before any Prefect start-up), then run the flow on its task runner."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    cfg = load_config(config, **overrides)
    return synthesize.with_options(task_runner=make_task_runner(cfg))(out=out, config=config, overrides=overrides)


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(emoji=False, width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"run {summary['run_id']}: {summary['rows']:,} rationales in {summary['run_dir']}")
    for col in ("perspective", "teacher", "rows", "% correct", "% unjudged", "errors", "mean tokens"):
        table.add_column(col, justify="left" if col in ("perspective", "teacher") else "right", no_wrap=True)
    for row in summary["groups"]:
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()))
    console.print(table)
    if summary.get("judge"):
        jt = Table(title="judge: rule/judge agreement (rows sent to the judge)")
        for col in summary["judge"][0]:
            jt.add_column(col, justify="left" if col in ("perspective", "teacher") else "right", no_wrap=True)
        for row in summary["judge"]:
            jt.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()))
        console.print(jt)
    t = summary["timing"]
    rate = summary["rows_written"] / summary["seconds"] if summary["seconds"] else 0.0
    console.print(
        f"{summary['shards_written']} shard(s) written, {summary['shards_skipped']} already finished; "
        f"{summary['rows_written']:,} rationales in {summary['seconds']:.1f}s ({rate:,.0f}/s; "
        f"teacher {t['teacher_s']:.1f}s, verify {t['verify_s']:.1f}s, "
        + (f"judge {t['judge_s']:.1f}s, " if summary.get("judge") else "")
        + f"write {t['write_s']:.1f}s)"
    )
    if summary["shards_written"]:
        console.print(f"shards ran in {len(summary['workers'])} process(es); teachers built: {summary['teachers_built']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.synthesize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder; the run goes to OUT/<run_id>/")
    parser.add_argument("--config", help="YAML file of SynthesisConfig fields (default: the embedded default)")
    parser.add_argument("--num-questions", type=int, help="first N questions of the source (default 200)")
    parser.add_argument("--samples", type=int, help="rationales per question, perspective and teacher (default 2)")
    parser.add_argument("--seed", type=int, help="run seed (default 0)")
    parser.add_argument("--shard-size", type=int, help="questions per shard (default 100)")
    parser.add_argument("--max-concurrency", type=int, help="shards in flight (default 4)")
    parser.add_argument("--teacher", action="append", help="teacher spec, e.g. synthetic or transformers:PATH (repeat)")
    parser.add_argument("--perspectives", help="comma-separated perspective names")
    parser.add_argument("--perspective-set", help="built-in set name or YAML file")
    parser.add_argument(
        "--judge", choices=["off", "unjudged", "all"], help="judge model: which rows it sees (default: off)"
    )
    parser.add_argument("--judge-teacher", help="the judge, as a teacher spec, e.g. transformers:PATH")
    parser.add_argument("--judge-prompt", help="built-in judge prompt name or YAML file (default: default)")
    parser.add_argument("--judge-prefer", choices=["rule", "judge"], help="whose verdict wins where both decided")
    args = parser.parse_args(argv)
    judge = {
        "mode": args.judge, "teacher": args.judge_teacher, "prompt": args.judge_prompt, "prefer": args.judge_prefer,
    }  # fmt: skip
    judge = {k: v for k, v in judge.items() if v is not None}
    try:
        with prefect_api():
            summary = run(
                args.out,
                args.config,
                num_questions=args.num_questions,
                samples=args.samples,
                seed=args.seed,
                shard_size=args.shard_size,
                max_concurrency=args.max_concurrency,
                teachers=args.teacher,
                perspectives=args.perspectives.split(",") if args.perspectives else None,
                perspective_set=args.perspective_set,
                judge=judge or None,
            )
    except (ContractError, PrefectApiUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
