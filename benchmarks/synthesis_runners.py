"""Synthesis on several worker processes: the ``synthesize`` flow on the thread runner or a Dask cluster,
with 1 and 2 workers, side by side in one process (``python -m benchmarks.synthesis --task-runner ...``).

Two teachers: the synthetic reference teacher (cheap: the work is verification and writing, Python code
that threads share under the GIL) and the same teacher sleeping ``latency_s`` per ``generate`` call (one
call per shard), which stands for a slow real teacher (a model server answering a shard's requests). Each
configuration runs ``repeats`` times, the configurations interleaved; rationales per second are the
run's rows over the flow's own ``seconds`` (the cluster's start-up and Prefect's are outside it and
reported as ``outside_flow_s``); the ratios are 2 workers over 1 of the same runner and teacher.

Workers: the thread runner's ``max_workers`` (and ``max_concurrency``); a Dask ``LocalCluster`` of that many
worker processes with one thread each, started and warmed up (the flow's modules imported on every worker)
before the run and named by its address; Ray: a local Ray of that many CPUs, started by the runner.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, make_progress, median, publish, rate

SIZES = {  # questions x 6 perspectives x 2 samples rationales per run
    "full": {"cheap": {"num_questions": 2000, "shard_size": 100}, "sleeping": {"num_questions": 400, "shard_size": 25},
             "repeats": 3},
    "quick": {"cheap": {"num_questions": 400, "shard_size": 50}, "sleeping": {"num_questions": 100, "shard_size": 25},
              "repeats": 1},
}  # fmt: skip


@contextlib.contextmanager
def runner_overrides(task_runner: str, workers: int) -> Iterator[dict[str, Any]]:
    """The config fields that put a run on ``task_runner`` with ``workers`` workers. A Dask cluster is
    started here and warmed up (each worker imports the flow's modules) before the run, as a long-lived
    cluster serving many runs would be: the run measures synthesis, not the workers' imports."""
    if task_runner == "thread":
        yield {"task_runner": "thread", "max_concurrency": workers, "task_runner_options": {"max_workers": workers}}
    elif task_runner == "ray":
        yield {"task_runner": "ray", "max_concurrency": max(4, 2 * workers),
               "task_runner_options": {"init_kwargs": {"num_cpus": workers, "include_dashboard": False}}}  # fmt: skip
    else:
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:  # fmt: skip
            client.run(importlib.import_module, "flows.synthesize")
            yield {"task_runner": "dask", "max_concurrency": max(4, 2 * workers),
                   "task_runner_options": {"address": cluster.scheduler_address}}  # fmt: skip


def teacher_overrides(teacher: str, latency_s: float) -> dict[str, Any]:
    options = {"latency_s": latency_s} if teacher == "sleeping" else {}
    return {"teachers": [{"backend": "synthetic", "options": options}]}


def plan(task_runners: list[str], workers: list[int], repeats: int) -> list[tuple[str, str, int]]:
    """(teacher, runner, workers) in run order: per teacher, the configurations interleaved ``repeats`` times."""
    return [(t, r, w) for t in ("cheap", "sleeping") for _ in range(repeats) for r in task_runners for w in workers]


def bench_runners(task_runners: list[str], workers: list[int], latency_s: float, quick: bool) -> dict[str, Any]:
    """Every configuration of :func:`plan`, run in this process; per-run records and the medians and ratios."""
    from flows.prefect_api import prefect_api
    from flows.synthesize import run

    size = SIZES["quick" if quick else "full"]
    order = plan(task_runners, workers, size["repeats"])
    tmp = Path(tempfile.mkdtemp(prefix="mind-bench-runners-"))
    records: list[dict[str, Any]] = []
    progress = make_progress()
    try:
        with progress, prefect_api():
            task = progress.add_task("synthesis runners", total=len(order))
            for i, (teacher, runner, n) in enumerate(order):
                with runner_overrides(runner, n) as on_runner:
                    t0 = time.perf_counter()
                    summary = run(str(tmp / f"run-{i}"), **size[teacher], **teacher_overrides(teacher, latency_s), **on_runner)
                    wall = time.perf_counter() - t0
                records.append({
                    "teacher": teacher, "task_runner": runner, "workers": n, "rows": summary["rows_written"],
                    "shards": summary["shards"], "seconds": summary["seconds"], "outside_flow_s": wall - summary["seconds"],
                    "rationales_per_s": rate(summary["rows_written"], summary["seconds"]),
                    "processes": len(summary["workers"]), "teachers_built": summary["teachers_built"],
                })  # fmt: skip
                r = records[-1]
                progress.console.print(f"  {teacher} teacher, {runner} x {n}: {r['rationales_per_s']:,.0f} rationales/s "
                                       f"({r['rows']:,} in {r['seconds']:.1f} s; {r['outside_flow_s']:.1f} s outside the flow)")  # fmt: skip
                progress.advance(task)
                shutil.rmtree(tmp / f"run-{i}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"sizes": size, "latency_s": latency_s, "runs": records, **summarise(records, workers)}


def summarise(records: list[dict[str, Any]], workers: list[int]) -> dict[str, Any]:
    """Median rationales/s per teacher, runner and workers; the ratio of the most workers over the fewest."""
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        medians.setdefault(r["teacher"], {}).setdefault(r["task_runner"], {})[str(r["workers"])] = 0.0
    for teacher, per_runner in medians.items():
        for runner, per_n in per_runner.items():
            for n in per_n:
                per_n[n] = median(x["rationales_per_s"] for x in records
                                  if (x["teacher"], x["task_runner"], str(x["workers"])) == (teacher, runner, n))  # fmt: skip
    lo, hi = str(min(workers)), str(max(workers))
    ratios = {f"{t}_{r}_{hi}_over_{lo}": per_n[hi] / per_n[lo] if per_n.get(lo) and lo != hi else None
              for t, per_runner in medians.items() for r, per_n in per_runner.items()}  # fmt: skip
    return {"rationales_per_s": medians, "ratios": ratios}


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task-runner", help="comma-separated runners (thread, dask, ray): measure only the flow on "
                        "1 and 2 workers of each (benchmarks/synthesis_runners.py)")  # fmt: skip
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts for --task-runner (default 1,2)")
    parser.add_argument("--latency-s", type=float, default=0.5,
                        help="the sleeping teacher's seconds per generate call (one per shard), for --task-runner")  # fmt: skip


def runners_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--task-runner``: the flow on 1 and 2 workers of each runner (results/synthesis_runners.json)."""
    runners = [r.strip() for r in args.task_runner.split(",") if r.strip()]
    if bad := sorted(set(runners) - {"thread", "dask", "ray"}):
        parser.error(f"--task-runner: unknown {bad}; choose from thread, dask, ray")
    try:
        workers = sorted({int(w) for w in args.workers.split(",")})
    except ValueError:
        parser.error(f"--workers: expected comma-separated integers, got {args.workers!r}")
    if not workers or min(workers) < 1:
        parser.error("--workers: at least one count, each >= 1")
    t_start = time.perf_counter()
    results = {"benchmark": "synthesis_runners", "quick": args.quick, "machine": machine_info(),
               **bench_runners(runners, workers, args.latency_s, args.quick)}  # fmt: skip
    return publish("synthesis_runners", results, {**results["ratios"], "quick": args.quick}, quick=args.quick,
                   t_start=t_start)  # fmt: skip
