"""Browse benchmark: ``stats``, ``show`` and ``list`` of ``pipeline.browse`` on a million rationale rows.

    python -m benchmarks.browse [--quick] [--regenerate] [--cache DIR]

Run from the repository root. Progress goes to stderr; the full numbers go to
``benchmarks/results/browse.json`` (``browse.quick.json`` with ``--quick``, under a minute once
its data exist); the last line of stdout is one JSON object with the headline figures.

Data: the synthetic world's reference rationales written by the project's own writer,
``pipeline.synthetic.run.synthesize`` (what ``python -m pipeline.synthetic`` runs: six
perspectives x two samples per question, slips and flaws at the default rates, verified, Parquet
shards of 1,000 questions = 12,000 rows, zstd, one row group each, sorted by question id, listed
in ``manifest.json``). 83,334 train questions give 1,000,008 rows in 84 shards. The run is
generated once into ``runs/bench/browse/q<questions>/`` (git-ignored; about two minutes for a
million rows) and reused while its manifest is complete; ``--regenerate`` writes it afresh.

Headline keys (seconds; targets from the issue):

``stats_1m_rows_s``
    ``pipeline.browse.stats(DIR)``: per (perspective, teacher) counts, % correct / unjudged,
    token and character means and p95, finish-reason histograms, over every row. Target < 2 s.
``show_1m_rows_s``
    ``pipeline.browse.show(DIR, QUESTION_ID)``: one question with its 12 rationales (the ids
    cycle over the first, the middle and the last question of the run). Target < 0.5 s.
``list_1m_rows_s``
    ``pipeline.browse.list_rows(DIR, limit=20)`` (``list --limit 20``). Target < 0.5 s.

Each call is given the folder (not an open ``Shards``), so it includes what a user's call
includes: finding the runs, reading the manifest, checking every shard's footer schema, opening
a DuckDB connection and the query itself. Measured in fresh child processes, one per operation
and round (``rounds``): the first call of a process is the *cold* figure (module imports are
done, but DuckDB, the Parquet footers and the operating system's file cache are touched for the
first time by that process; the files were written or read earlier, so the page cache is
usually warm: a truly cold disk is not measured), the following ``warm_repeats`` calls give the
*warm* figures. Headline = median of all warm calls of all rounds; the cold median is in the
results file beside it. The same processes also time the calls on one ``Shards`` kept open (a
web viewer's case: discovery paid once) and the discovery alone.

Also in the headline: ``cold_s`` (the cold medians), ``command_s`` (the shell commands below),
``list_filtered_s`` and ``flow_layout_s`` (the three operations on the flow's shard layout below).

The results file also has the shell commands ``python -m pipeline.browse DIR stats``,
``... show ID`` and ``... list --limit 20`` (rendered tables to a pipe, ``cmd_repeats`` runs each,
interleaved, first run = cold), whose wall time adds interpreter start-up and imports
(``python -c pass`` and ``python -c 'import pipeline.browse'`` are timed beside them); the
filtered ``list --perspective socratic --incorrect --limit 20`` (predicate push-down),
``summary``, and ``show_unpruned``: ``show`` with its question-id file pruning switched off in
the child process (every shard scanned, as before that optimisation: the before/after ratio is
in ``optimisations``). The full run measures the same on 100,008 rows (scaling with the number
of rows; one round) and on the same million rows re-written in ``flows.synthesize``'s default
shards of 100 questions (834 files of 1,200 rows, ``runs/bench/browse/q83334-flow/``, written
once with ``RunWriter.write_shard``: scaling with the number of files).
With ``--quick`` only the 100,008-row run is measured (one round, fewer repeats): the
``*_1m_rows_s`` keys then hold the 100k-row figures and the headline's ``rows`` says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._common import (
    QUIET_ENV,
    REPO_ROOT,
    machine_info,
    make_progress,
    median,
    report_at_exit,
    run_child,
    publish,
)

ROWS_PER_QUESTION = 12  # six perspectives x two samples (pipeline.synthetic's defaults)
SHARD_QUESTIONS = 1000  # pipeline.synthetic's default shard size: 12,000 rows per shard
FLOW_SHARD_QUESTIONS = 100  # flows.synthesize's default shard size (SynthesisConfig.shard_size): 1,200 rows
SLIP_RATE, FLAW_RATE = 0.1, 0.05  # python -m pipeline.synthetic's defaults (wrong answers to filter on)
DEFAULT_CACHE = REPO_ROOT / "runs" / "bench" / "browse"

SIZES: dict[str, dict[str, Any]] = {
    "full": {"questions": (8334, 83334), "rounds": 3, "small_rounds": 1, "warm_repeats": 7, "cmd_repeats": 5,
             "flow_layout": True},
    "quick": {"questions": (8334,), "rounds": 1, "small_rounds": 1, "warm_repeats": 3, "cmd_repeats": 2,
              "flow_layout": False},
}  # fmt: skip

TARGETS = {"stats_s_max": 2.0, "show_s_max": 0.5, "list_s_max": 0.5}

#: operation -> (what it does, the equivalent command's arguments after DIR); {id} = a question id
LAYOUT = "pipeline.synthetic shards: 1,000 questions = 12,000 rows each"
FLOW_LAYOUT = "flows.synthesize default shards: 100 questions = 1,200 rows each (same rows)"

OPERATIONS: dict[str, tuple[str, list[str] | None]] = {
    "stats": ("stats(DIR)", ["stats"]),
    "show": ("show(DIR, QUESTION_ID)", ["show", "{id}"]),
    "list": ("list_rows(DIR, limit=20)", ["list", "--limit", "20"]),
    "list_filtered": (
        "list_rows(DIR, perspective='socratic', verdict='incorrect', limit=20)",
        ["list", "--perspective", "socratic", "--incorrect", "--limit", "20"],
    ),
    "summary": ("summary(DIR): rows, distinct questions, tasks", None),
    "show_unpruned": (
        "show(DIR, QUESTION_ID) scanning every shard (no question-id file pruning: the code before)",
        None,
    ),
}


# ====================================================================== data
def ensure_run(cache: Path, questions: int, regenerate: bool = False, progress: Any = None) -> dict[str, Any]:
    """The rationale run of ``questions`` synthetic-world questions under ``cache`` (generated if needed)."""
    from data_schemas import load_manifest
    from pipeline.synthetic.run import SynthesisConfig, synthesize
    from pipeline.synthetic.teacher import NoiseConfig

    out = cache / f"q{questions}"
    run_dir = out / "rationales"
    cfg = SynthesisConfig(
        out=out, noise=NoiseConfig(slip_rate=SLIP_RATE, flaw_rate=FLAW_RATE), num_questions=questions,
        eval_questions=0, retention_train_questions=0, shard_size=SHARD_QUESTIONS,
    )  # fmt: skip
    if regenerate:
        shutil.rmtree(out, ignore_errors=True)
    cached = False
    if (run_dir / "manifest.json").is_file():
        m = load_manifest(run_dir)
        cached = m.complete and m.run_id == cfg.rationales_run_id() and m.rows == questions * ROWS_PER_QUESTION
    generation_s = None
    if not cached:
        shutil.rmtree(out, ignore_errors=True)  # an older, different or unfinished run: start afresh
        t = time.perf_counter()
        synthesize(cfg, progress)
        generation_s = time.perf_counter() - t
    rows = questions * ROWS_PER_QUESTION
    return {"dir": str(run_dir), **describe_run(run_dir), "cached": cached, "generation_s": generation_s,
            "generation_rows_per_s": rows / generation_s if generation_s else None}  # fmt: skip


def ensure_flow_layout(cache: Path, source: dict[str, Any], regenerate: bool = False) -> dict[str, Any]:
    """The rows of ``source`` re-written in ``flows.synthesize``'s default shards (100 questions each).

    Same rows, same run id, shard ``k`` holding questions ``100k .. 100k+99`` as in the flow,
    written shard by shard with ``RunWriter.write_shard`` (validation, sort by question id, atomic
    write, manifest) as the flow writes them: only the number of files differs.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from data_schemas import RunWriter, load_manifest

    src = REPO_ROOT / source["dir"] if not Path(source["dir"]).is_absolute() else Path(source["dir"])
    run_dir = cache / f"q{source['questions']}-flow" / "rationales"
    m = load_manifest(src)
    if regenerate:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
    cached = False
    if (run_dir / "manifest.json").is_file():
        mine = load_manifest(run_dir)
        cached = mine.complete and mine.run_id == m.run_id and mine.rows == m.rows and len(mine.shards) > len(m.shards)
    generation_s = None
    if not cached:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
        t = time.perf_counter()
        writer = RunWriter(run_dir, m.run_id, config={**m.config, "shard_size": FLOW_SHARD_QUESTIONS})
        for info in m.shards:  # each source shard holds 1,000 consecutive questions: 10 flow shards
            table = pq.read_table(src / "shards" / f"{info.name}.parquet")
            index = pa.array(
                [int(q.rsplit(":", 1)[1]) // FLOW_SHARD_QUESTIONS for q in table["question_id"].to_pylist()]
            )
            for k in sorted(set(index.to_pylist())):
                writer.write_shard(f"shard-{k:05d}", table.filter(pc.equal(index, k)))
        writer.finalize(m.stats)
        generation_s = time.perf_counter() - t
    return {"dir": str(run_dir), **describe_run(run_dir), "cached": cached, "generation_s": generation_s,
            "generation_rows_per_s": m.rows / generation_s if generation_s else None}  # fmt: skip


def describe_run(run_dir: Path) -> dict[str, Any]:
    """Rows, shards, bytes, row groups and the question ids ``show`` looks up."""
    import pyarrow.parquet as pq

    from data_schemas import load_manifest

    m = load_manifest(run_dir)
    files = [run_dir / "shards" / f"{s.name}.parquet" for s in m.shards]
    metas = [pq.ParquetFile(f).metadata for f in files]
    first = pq.ParquetFile(files[0]).read_row_group(0, columns=["question_id"]).column(0)[0].as_py()
    prefix = first.rsplit(":", 1)[0]
    n_questions = m.rows // ROWS_PER_QUESTION
    return {
        "run_id": m.run_id,
        "rows": m.rows,
        "questions": n_questions,
        "shards": len(files),
        "rows_per_shard_max": max(md.num_rows for md in metas),
        "row_groups_per_shard_max": max(md.num_row_groups for md in metas),
        "columns": metas[0].num_columns,
        "bytes": sum(f.stat().st_size for f in files),
        "show_ids": [f"{prefix}:{i}" for i in (0, n_questions // 2, n_questions - 1)],
    }


# ====================================================================== in-process timing (child)
def call(op: str, root: Any, ids: list[str], i: int) -> Any:
    from pipeline import browse

    if op == "stats":
        return browse.stats(root)
    if op == "summary":
        return browse.summary(root)
    if op in ("show", "show_unpruned"):
        return browse.show(root, ids[i % len(ids)])
    if op == "list":
        return browse.list_rows(root, limit=20)
    if op == "list_filtered":
        return browse.list_rows(root, perspective="socratic", verdict="incorrect", limit=20)
    raise ValueError(op)


def child(spec_path: str, result_path: str) -> None:
    """One operation in a fresh process: a cold call, warm calls, then the same on an open Shards."""
    state: dict[str, Any] = {}
    report_at_exit(result_path, lambda: state)
    spec = json.loads(Path(spec_path).read_text())
    t = time.perf_counter()
    from pipeline import browse

    state["import_s"] = time.perf_counter() - t
    op, root, ids, repeats = spec["op"], spec["dir"], spec["ids"], spec["repeats"]
    if op == "show_unpruned":  # before the optimisation: DuckDB opens every shard to find the id
        browse.Shards.files_for_question = lambda self, question_id: list(self.files)  # type: ignore[method-assign]
    # cold: the middle question for show (index 1 of first/middle/last)
    t = time.perf_counter()
    out = call(op, root, ids, 1)
    state["cold_s"] = time.perf_counter() - t
    warm = []
    for i in range(repeats):
        t = time.perf_counter()
        out = call(op, root, ids, i)
        warm.append(time.perf_counter() - t)
    state["warm_s"] = warm
    # rows returned: groups (stats), rationales (show), list rows, or the run's rows (summary)
    state["result_size"] = len(out) if isinstance(out, list) else len(out.get("rationales", [])) or out.get("rows")
    # the same on one Shards kept open (discovery paid once), and the discovery alone
    opens = []
    for _ in range(3):
        t = time.perf_counter()
        sh = browse.Shards(root)
        opens.append(time.perf_counter() - t)
        sh.close()
    with browse.Shards(root) as sh:
        state["duckdb_threads"] = sh.query("SELECT current_setting('threads') AS t")[0]["t"]
        shared = []
        for i in range(repeats):
            t = time.perf_counter()
            call(op, sh, ids, i)
            shared.append(time.perf_counter() - t)
    state["open_shards_s"] = opens
    state["shared_shards_s"] = shared


def bench_in_process(tmp: Path, run: dict[str, Any], rounds: int, repeats: int, step: Any, tick: Any) -> dict[str, Any]:
    """Every operation in ``rounds`` fresh processes each (interleaved); cold and warm figures."""
    records: dict[str, list[dict[str, Any]]] = {op: [] for op in OPERATIONS}
    for r in range(rounds):
        ops = list(OPERATIONS) if r % 2 == 0 else list(reversed(OPERATIONS))
        for op in ops:
            step(f"{run['rows']:,} rows: {op} in a fresh process (round {r + 1}/{rounds})")
            spec = tmp / f"child-{op}-{r}.json"
            spec.write_text(json.dumps({"op": op, "dir": run["dir"], "ids": run["show_ids"], "repeats": repeats}))
            result = tmp / f"child-{op}-{r}.result.json"
            data, wall = run_child("benchmarks.browse", ["_child", str(spec), str(result)], result,
                                   tmp / f"child-{op}-{r}.log", timeout_s=600)  # fmt: skip
            data["process_wall_s"] = wall
            records[op].append(data)
            tick()
    out: dict[str, Any] = {}
    for op, recs in records.items():
        warm = [x for d in recs for x in d["warm_s"]]
        cold = [d["cold_s"] for d in recs]
        shared = [x for d in recs for x in d["shared_shards_s"]]
        out[op] = {
            "call": OPERATIONS[op][0],
            "warm_median_s": median(warm),
            "warm_min_s": min(warm),
            "warm_max_s": max(warm),
            "warm_stdev_s": statistics.stdev(warm) if len(warm) > 1 else 0.0,
            "cold_median_s": median(cold),
            "cold_s": cold,
            "warm_s": warm,
            "open_shards_median_s": median(x for d in recs for x in d["open_shards_s"]),
            "shared_shards_median_s": median(shared),
            "result_size": recs[0]["result_size"],
            "import_browse_s": median(d["import_s"] for d in recs),
            "peak_rss_mb": max(d["peak_rss_mb"] for d in recs),
            "duckdb_threads": recs[0].get("duckdb_threads"),
            "processes": len(recs),
        }
    return out


# ====================================================================== shell commands
def bench_commands(run: dict[str, Any], repeats: int, step: Any, tick: Any) -> dict[str, Any]:
    """``python -m pipeline.browse DIR ...`` wall times (rendered output to a pipe), interleaved."""
    env = {**os.environ, **QUIET_ENV}
    mid_id = run["show_ids"][1]
    commands: dict[str, list[str]] = {
        "python_startup": ["-c", "pass"],
        "import_browse": ["-c", "import pipeline.browse"],
    }
    for op, (_, args) in OPERATIONS.items():
        if args is not None:
            commands[op] = ["-m", "pipeline.browse", run["dir"], *[a.replace("{id}", mid_id) for a in args]]
    times: dict[str, list[float]] = {name: [] for name in commands}
    out_bytes: dict[str, int] = {}
    for r in range(repeats):
        names = list(commands) if r % 2 == 0 else list(reversed(commands))
        for name in names:
            step(f"{run['rows']:,} rows: command {name} ({r + 1}/{repeats})")
            cmd = [sys.executable, *commands[name]]
            t = time.perf_counter()
            proc = subprocess.run(cmd, check=False, cwd=REPO_ROOT, env=env, capture_output=True, timeout=300)
            times[name].append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.decode()[-2000:]}")
            out_bytes[name] = len(proc.stdout)
            tick()
    base = median(times["import_browse"])
    return {
        name: {
            "command": "python " + " ".join(commands[name]).replace(str(REPO_ROOT) + os.sep, ""),
            "median_s": median(ts), "first_s": ts[0], "runs_s": ts,
            "minus_import_s": median(ts) - base if name not in ("python_startup", "import_browse") else None,
            "stdout_bytes": out_bytes[name],
        }
        for name, ts in times.items()
    }  # fmt: skip


# ====================================================================== main

def run_benchmark(
    questions: tuple[int, ...], rounds: int, small_rounds: int, warm_repeats: int, cmd_repeats: int,
    cache: Path = DEFAULT_CACHE, regenerate: bool = False, step: Any = None, tick: Any = None,
    commands: bool = True, flow_layout: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Generate (or reuse) the runs and time every operation on each; ``questions`` ascending.

    ``step(text)`` is told what runs now, ``tick()`` after every unit of :func:`plan_steps`."""
    step = step or (lambda text: None)
    tick = tick or (lambda: None)
    per_size: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="mind-bench-browse-"))
    try:
        for n in questions:
            done = [0]

            def hook(phase: str, units: int, n: int = n, done: list[int] = done) -> None:
                if phase == "rationales":
                    done[0] += units
                    step(f"generating {n * ROWS_PER_QUESTION:,} rows (once, cached): {done[0]:,}")

            step(f"data: {n * ROWS_PER_QUESTION:,} rows")
            run = ensure_run(cache, n, regenerate, hook)
            tick()
            largest = n == questions[-1]
            timing = bench_in_process(tmp, run, rounds if largest else small_rounds, warm_repeats, step, tick)
            cmd_rounds = cmd_repeats if largest else max(1, cmd_repeats // 2)
            cmd = bench_commands(run, cmd_rounds, step, tick) if commands else None
            per_size.append({"layout": LAYOUT, "data": run, "in_process": timing, "commands": cmd})
            if flow_layout and largest:
                step(f"data: {run['rows']:,} rows in flows.synthesize's default shards (once, cached)")
                flow = ensure_flow_layout(cache, run, regenerate)
                tick()
                timing = bench_in_process(tmp, flow, rounds, warm_repeats, step, tick)
                cmd = bench_commands(flow, max(1, cmd_repeats // 2), step, tick) if commands else None
                per_size.append({"layout": FLOW_LAYOUT, "data": flow, "in_process": timing, "commands": cmd})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"sizes": per_size}


def plan_steps(
    questions: tuple[int, ...], rounds: int, small_rounds: int, cmd_repeats: int, flow_layout: bool = False
) -> int:
    """How many ``tick`` calls :func:`run_benchmark` makes (for the progress bar)."""
    n_cmd = 2 + sum(args is not None for _, args in OPERATIONS.values())
    total = 0
    for n in questions:
        largest = n == questions[-1]
        total += 1 + (rounds if largest else small_rounds) * len(OPERATIONS)
        total += (cmd_repeats if largest else max(1, cmd_repeats // 2)) * n_cmd
    if flow_layout:
        total += 1 + rounds * len(OPERATIONS) + max(1, cmd_repeats // 2) * n_cmd
    return total


def headline_of(results: dict[str, Any], quick: bool) -> dict[str, Any]:
    main_layout = [s for s in results["sizes"] if s["layout"] == LAYOUT]
    f = next((s for s in results["sizes"] if s["layout"] == FLOW_LAYOUT), None)
    top = main_layout[-1]
    t, c = top["in_process"], top["commands"] or {}

    def cmd(name: str) -> float | None:
        return c[name]["median_s"] if name in c else None

    return {
        "stats_1m_rows_s": t["stats"]["warm_median_s"],
        "show_1m_rows_s": t["show"]["warm_median_s"],
        "list_1m_rows_s": t["list"]["warm_median_s"],
        "cold_s": {op: t[op]["cold_median_s"] for op in ("stats", "show", "list")},
        "command_s": {op: cmd(op) for op in ("stats", "show", "list")},
        "list_filtered_s": t["list_filtered"]["warm_median_s"],
        "flow_layout_s": {op: f["in_process"][op]["warm_median_s"] for op in ("stats", "show", "list")} if f else None,
        "rows": top["data"]["rows"],
        "shards": top["data"]["shards"],
        "quick": quick,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        child(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.browse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k rows, one round (under a minute once generated)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"data folder (default {DEFAULT_CACHE})")
    parser.add_argument("--regenerate", action="store_true", help="write the data afresh")
    args = parser.parse_args(argv)
    size = SIZES["quick" if args.quick else "full"]
    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "browse", "quick": args.quick, "sizes_config": size, "targets": TARGETS,
        "machine": machine_info(),
    }  # fmt: skip
    with ExitStack() as stack:
        progress = stack.enter_context(make_progress())
        total = plan_steps(
            size["questions"], size["rounds"], size["small_rounds"], size["cmd_repeats"], size["flow_layout"]
        )
        bar = progress.add_task("browse benchmark", total=total)

        def step(text: str) -> None:
            progress.update(bar, description=text)

        def tick() -> None:
            progress.advance(bar)

        results.update(
            run_benchmark(
                size["questions"], size["rounds"], size["small_rounds"], size["warm_repeats"], size["cmd_repeats"],
                cache=args.cache, regenerate=args.regenerate, step=step, tick=tick, flow_layout=size["flow_layout"],
            )
        )  # fmt: skip
        step("done")
    for s in results["sizes"]:  # the cache path is machine-specific noise in a committed file
        s["data"]["dir"] = os.path.relpath(s["data"]["dir"], REPO_ROOT)
    results["method"] = (
        "in-process: pipeline.browse API called with the run folder (discovery, manifest, footer schema checks, "
        "DuckDB connection and query), in fresh child processes, one per operation and round; cold = first call of "
        "a process, warm = the following calls; headline = median of the warm calls of all rounds. "
        "shared_shards_median_s: the same calls on one open Shards. commands: wall time of "
        "`python -m pipeline.browse DIR ...` with stdout to a pipe, interleaved, first run = cold."
    )
    results["optimisations"] = {
        "show_question_id_file_pruning": {
            "what": "show() queries only the shards whose footer statistics (min/max question_id, read once with "
            "the schema check) admit the id, instead of a DuckDB scan over every shard (which opens every file)",
            **{
                f"{s['data']['rows']}_rows_{s['data']['shards']}_shards": {
                    "before_s": s["in_process"]["show_unpruned"]["warm_median_s"],
                    "after_s": s["in_process"]["show"]["warm_median_s"],
                    "before_over_after": s["in_process"]["show_unpruned"]["warm_median_s"]
                    / s["in_process"]["show"]["warm_median_s"],
                    "before_cold_s": s["in_process"]["show_unpruned"]["cold_median_s"],
                    "after_cold_s": s["in_process"]["show"]["cold_median_s"],
                }
                for s in results["sizes"]
            },
        }
    }
    results["code"] = {
        "pipeline/browse.py": hashlib.sha256((REPO_ROOT / "pipeline" / "browse.py").read_bytes()).hexdigest()[:12]
    }
    results["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    headline = headline_of(results, args.quick)
    results["headline"] = headline
    results["targets_met"] = {
        "stats": headline["stats_1m_rows_s"] < TARGETS["stats_s_max"],
        "show": headline["show_1m_rows_s"] < TARGETS["show_s_max"],
        "list": headline["list_1m_rows_s"] < TARGETS["list_s_max"],
    }
    cmd = headline["command_s"]
    results["targets_met_by_command"] = {
        op: None if cmd[op] is None else cmd[op] < TARGETS[f"{op}_s_max"] for op in ("stats", "show", "list")
    }
    return publish("browse", results, headline, quick=args.quick, t_start=t_start)


if __name__ == "__main__":
    sys.exit(main())
