"""Start-up benchmark (issue 16): how soon the command-line tools answer.

    python -m benchmarks.startup [--quick] [--compare TREE] [--rounds N]

Run from the repository root, with nothing else running (it measures wall time). Progress goes to
stderr; the numbers go to ``benchmarks/results/startup.json`` (``startup.quick.json`` with
``--quick``); the last line of stdout is one JSON object with the headline figures.

Every figure is the wall time of a fresh ``python`` process, output to a pipe, median of
``--rounds`` rounds (each round runs every command once, in alternating order):

``browse``
    ``python -m pipeline.browse DIR show ID`` / ``list --limit 20`` / ``stats`` on the 100,008-row
    run of ``benchmarks.browse`` (9 shards of 12,000 rows; written once into
    ``runs/bench/browse/q8334``), beside ``python -c pass`` and ``python -c "import
    pipeline.browse"``. Target: < 0.5 s each.
``synthesize``
    ``python -m flows.synthesize --out TMP --num-questions N`` for N = 17 (204 rationales, one
    shard) and 834 (10,008 rationales, 9 shards), the embedded default: ``wall_s``,
    ``first_shard_s`` (from the start of the process until the first shard file is in place,
    polled every 10 ms), ``flow_s`` (the flow's own work, from its summary line) and
    ``outside_flow_s`` = wall - flow (interpreter, imports, the Prefect server, flow-run
    bookkeeping, exit). Each process gets a ``PREFECT_HOME`` whose database one unmeasured run
    created first; the very first run on a machine (database created and migrated) is measured
    once, as ``first_run``. ``server`` mode: the same with ``PREFECT_API_URL`` pointing at one
    ``prefect server start`` that the benchmark keeps running (docs/deployment.md): no per-run
    server at all.

``--compare TREE`` runs every command also from another checkout of the project (e.g. ``git
worktree add /tmp/before REV``; the same virtual environment), alternating with this one in each
round, for before/after ratios measured side by side. ``--quick`` (CI smoke): one round, the
204-rationale run only, the browse commands on a 12,000-row run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import QUIET_ENV, REPO_ROOT, machine_info, make_progress, median, publish
from flows.prefect_api import TemporaryServer

SUMMARY = re.compile(r"rationales in ([0-9.]+)s")
BROWSE_CACHE = REPO_ROOT / "runs" / "bench" / "browse"  # benchmarks.browse's runs, shared
SIZES = {"full": {"browse_questions": 8334, "synth_questions": (17, 834)},
         "quick": {"browse_questions": 1000, "synth_questions": (17,)}}  # fmt: skip


def _env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(QUIET_ENV, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what a user gets: compiled modules cached
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def timed_synthesis(tree: Path, out: Path, questions: int, env: dict[str, str]) -> dict[str, float]:
    """One ``python -m flows.synthesize`` process run from ``tree``: wall, first shard, flow seconds."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "flows.synthesize", "--out", str(out), "--num-questions", str(questions)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = None
    while proc.poll() is None:
        if first is None and any(out.glob("*/shards/*.parquet")):
            first = time.perf_counter() - t0
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    text = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {tree}) exited with {proc.returncode}:\n{text[-3000:]}")
    match = SUMMARY.search(text)
    flow = float(match.group(1)) if match else float("nan")
    if first is None:  # finished between two polls
        first = wall
    return {"wall_s": wall, "first_shard_s": first, "flow_s": flow, "outside_flow_s": wall - flow}


def timed_command(tree: Path, args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, check=False, timeout=300)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python {' '.join(args)} (in {tree}) exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return wall


def run_benchmark(
    trees: dict[str, Path], spec: dict[str, Any], rounds: int, tmp: Path, step: Any, cache: Path = BROWSE_CACHE
) -> dict[str, Any]:
    """Time every command ``rounds`` times from each tree (``spec``: one of :data:`SIZES`)."""
    from benchmarks.browse import describe_run, ensure_run

    step("browse data")
    run = ensure_run(cache, spec["browse_questions"])
    browse_cmds = {
        "python_startup": ["-c", "pass"],
        "import_browse": ["-c", "import pipeline.browse"],
        "show": ["-m", "pipeline.browse", run["dir"], "show", describe_run(Path(run["dir"]))["show_ids"][1]],
        "list": ["-m", "pipeline.browse", run["dir"], "list", "--limit", "20"],
        "stats": ["-m", "pipeline.browse", run["dir"], "stats"],
    }
    homes = {name: tmp / f"home-{name}" for name in trees}
    first_run = {}
    for name, tree in trees.items():  # creates and migrates each PREFECT_HOME's database, compiles modules
        step(f"first run ever ({name})")
        first_run[name] = timed_synthesis(tree, tmp / "out", 17, _env(homes[name]))
        timed_command(tree, browse_cmds["show"], _env(homes[name]))
    # the `server` mode's long-running server: the same `prefect server start` a CLI runs for itself
    server = TemporaryServer(env=_env(tmp / "home-server"))
    server.wait_ready(300)
    try:
        times: dict[str, dict[str, list[dict[str, float] | float]]] = {name: {} for name in trees}
        for r in range(rounds):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))
            for cmd_name, args in browse_cmds.items():
                for name in order:
                    step(f"round {r + 1}/{rounds}: {cmd_name} ({name})")
                    times[name].setdefault(cmd_name, []).append(timed_command(trees[name], args, _env(homes[name])))
            for q in spec["synth_questions"]:
                for mode in ("embedded", "server"):
                    for name in order:
                        step(f"round {r + 1}/{rounds}: synthesize {q} questions, {mode} ({name})")
                        env = _env(homes[name], server.api_url if mode == "server" else None)
                        res = timed_synthesis(trees[name], tmp / "out", q, env)
                        times[name].setdefault(f"synthesize_{q * 12}_{mode}", []).append(res)
    finally:
        server.stop()
    summary: dict[str, Any] = {}
    for name, per in times.items():
        summary[name] = {"first_run_204": first_run[name]}
        for key, values in per.items():
            if isinstance(values[0], dict):
                summary[name][key] = {k: median([v[k] for v in values]) for k in values[0]} | {"runs": values}
            else:
                summary[name][key] = {"median_s": median(values), "runs_s": values}
    return {"browse_run": {k: run[k] for k in ("dir", "rows", "shards")}, "trees": {k: str(v) for k, v in trees.items()},
            "rounds": rounds, "by_tree": summary}  # fmt: skip


def headline_of(results: dict[str, Any]) -> dict[str, Any]:
    this = results["by_tree"]["this"]
    head: dict[str, Any] = {k: this[k]["median_s"] for k in ("show", "list", "stats", "import_browse")}
    for key, value in this.items():
        if key.startswith("synthesize_"):
            head[f"{key}_wall_s"] = value["wall_s"]
            head[f"{key}_first_shard_s"] = value["first_shard_s"]
    if "before" in results["by_tree"]:
        before = results["by_tree"]["before"]
        head["before_over_after"] = {
            k: (before[k].get("median_s") or before[k]["wall_s"]) / (v.get("median_s") or v["wall_s"])
            for k, v in this.items() if k in before and k != "first_run_204"
        }  # fmt: skip
    return head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, small sizes (CI smoke)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3; quick: 1)")
    parser.add_argument("--compare", type=Path, help="another checkout, timed alternately as 'before'")
    args = parser.parse_args(argv)
    if args.compare is not None and not (args.compare / "flows" / "synthesize.py").is_file():
        parser.error(f"--compare {args.compare}: not a checkout of this project (no flows/synthesize.py)")
    t_start = time.perf_counter()
    trees = {"this": REPO_ROOT, **({"before": args.compare.resolve()} if args.compare else {})}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp, make_progress() as progress:
        task = progress.add_task("start-up", total=None)
        results = run_benchmark(trees, SIZES["quick" if args.quick else "full"], 1 if args.quick else args.rounds,
                                Path(tmp), lambda what: progress.update(task, description=what))  # fmt: skip
    results |= {"machine": machine_info(), "load_at_start": load, "load_at_end": os.getloadavg()}
    return publish("startup", results, headline_of(results), quick=args.quick, t_start=t_start)


if __name__ == "__main__":
    sys.exit(main())
