"""Quality benchmark v2: the paper's MIND against the paper's baselines, in two data regimes, at
equal steps and along a shared FLOP grid, with MIND's ablations.

    python -m benchmarks.quality [--config configs/quality/default.yaml] [--jobs 2] [--work runs/quality]
                                 [--regimes paper,full] [--seeds 0,1] [--strategies mind,all] [--no-tune]
                                 [--no-ablations] [--report-only] [--quick]

One command, resumable: every finished run leaves ``result.json`` in its own folder (named by a
hash of everything that changes it) and is never repeated; an interrupted benchmark picks up where
it stopped, and ``--report-only`` writes the report from the runs finished so far. Invocations may
overlap: a run is locked while it trains, and one that another invocation holds is waited for.
Steps (settings in the YAML config; ``--quick`` shrinks them for a smoke run):

1. **Data** (:mod:`benchmarks.quality_data`): the config's synthetic world answered by its
   reference teacher under every perspective (the real ``synthesize`` flow); a fixed set of
   validation questions held out of it once (both regimes validate on them); then each
   **regime**: ``full`` trains on every other question, ``paper`` on a hard-first selection
   (:mod:`pipeline.select`: every question the teacher failed in some view first, ~500 in all).
2. **Student**: the embedded default for that world (stage-0 pretrained on the retention skill,
   cached under ``runs/students``): every run starts from the same weights, or with
   ``student_per_seed: true`` seed k's runs from the student stage 0 pretrains with seed k.
3. **Tuning** (validation only, never test), per regime: every headline strategy (and headline
   variant: a strategy with fixed settings listed under ``strategies``) at each learning
   rate of ``tuning.learning_rate`` (a best rate at the grid's edge also tries one factor of 2
   beyond it, ``tuning.extend_edges`` times at most); then MIND's method settings (``tuning.mind``,
   each tried alone at MIND's best rate), by validation at ``tuning.seed`` (0), or by the mean validation
   over ``tuning.seeds`` (these runs are evaluated on every split, so the runs at the chosen settings are
   reused, but only validation is compared); one-seed tuning runs evaluate the validation split only.
4. **Runs**, regime by regime (tuning, then the runs), seed-major within a regime (after round
   k every strategy has k seeds): the headline strategies (``seeds``), each also evaluated along the shared FLOP grid (``curve``: accuracy
   on ``curve.questions`` questions of ``curve.splits`` whenever its training FLOPs reach a grid
   point); the ablations (``ablations``) in their regimes with their base's tuned settings (MIND's,
   or a headline variant's for a variant with ``base:``, e.g. the ablations of the fixed MIND). Every run
   ends with greedy evaluation on ``train.eval_questions`` questions of ``test``, ``ood_steps``,
   ``ood_template`` and ``retention``.
5. **Report** (:mod:`benchmarks.quality_report`): ``benchmarks/results/quality.json``, one record
   per run and budget (``"steps"``; ``"flops:<grid value>"`` for a curve point), with its regime,
   metrics, ``n``, trained tokens, FLOPs and config; summaries, paired comparisons and the MIND
   dynamics; ``docs/results.md`` (hand-written blocks between ``<!-- BEGIN ANALYSIS -->`` /
   ``<!-- END ANALYSIS -->`` and ``<!-- BEGIN HISTORY -->`` / ``<!-- END HISTORY -->`` are kept)
   and its plots. The last stdout line is the headline (mean accuracy per regime, strategy, split).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import (QUIET_ENV, REPO_ROOT, check_device, emit, machine_info, make_progress, rnd,
                                run_benchmark_parser, write_json, write_results)  # fmt: skip
from benchmarks.quality_data import Regime, Run, prepare_regimes, student_digest
from benchmarks.quality_report import SPLITS, build_report, busy_wall_seconds, write_markdown
from benchmarks.students import Students, stage0_record, student_of
from data_schemas.run_files import MIND_SUMMARY
from distill.strategies import STRATEGIES

DEFAULT_CONFIG = REPO_ROOT / "configs" / "quality" / "default.yaml"
DOCS = REPO_ROOT / "docs"

#: --quick: a smoke run of the whole pipeline (minutes, numbers meaningless)
QUICK = {
    "synthesis": {"num_questions": 60},
    "validation_questions": 8,
    "train": {"max_steps": 4, "eval_questions": 4, "meta_warmup_steps": 1, "history_every": 1},
    "seeds": [0, 1],
    "curve": {"questions": 4},
}


# ====================================================================== configuration
def load_config(path: str | Path, quick: bool = False) -> dict[str, Any]:
    """The benchmark's YAML config (``--quick`` shrinks it); errors name the file and the key."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"error: cannot read the quality config {path}: {exc}") from None
    for key in ("world", "synthesis", "train", "strategies", "seeds"):
        if key not in cfg:
            raise SystemExit(f"error: {path}: missing key {key!r}")
    cfg.setdefault("variants", {})
    cfg.setdefault("regimes", {"full": {}})
    cfg.setdefault("tuning", {})
    cfg.setdefault("stage0", {})
    cfg.setdefault("validation_questions", 150)
    cfg.setdefault("ablations", {"variants": [], "regimes": [], "seeds": []})
    cfg.setdefault("curve", {})
    if not isinstance(cfg.setdefault("student_per_seed", False), bool):
        raise SystemExit(f"error: {path}: student_per_seed: true or false, got {cfg['student_per_seed']!r}")
    for name, spec in cfg["variants"].items():
        if not isinstance(spec, dict) or ("strategy" in spec) == ("base" in spec):
            raise SystemExit(f"error: {path}: variants.{name}: needs 'strategy' (one of {', '.join(STRATEGIES)}) "
                             "or 'base' (another variant), not both")
        if "strategy" in spec and spec["strategy"] not in STRATEGIES:
            raise SystemExit(f"error: {path}: variants.{name}.strategy: {spec['strategy']!r} is not one of {', '.join(STRATEGIES)}")
        try:
            variant_settings(cfg, name)
        except ValueError as exc:
            raise SystemExit(f"error: {path}: variants.{name}: {exc}") from None
    known = set(STRATEGIES) | set(cfg["variants"])
    if unknown := set(cfg["strategies"]) - known:
        raise SystemExit(f"error: {path}: strategies: unknown {sorted(unknown)}; choose from {', '.join(sorted(known))}")
    if unknown := set(cfg["ablations"].get("variants", [])) - set(cfg["variants"]):
        raise SystemExit(f"error: {path}: ablations.variants: {sorted(unknown)} not defined under variants")
    if unknown := set(cfg["ablations"].get("regimes", [])) - set(cfg["regimes"]):
        raise SystemExit(f"error: {path}: ablations.regimes: unknown regime(s) {sorted(unknown)}")
    for name, spec in cfg["regimes"].items():
        if unknown := set(spec or {}) - {"select", "train"}:
            raise SystemExit(f"error: {path}: regimes.{name}: unknown key(s) {sorted(unknown)} (select, train)")
    try:
        tuning_seeds(cfg["tuning"])
    except ValueError as exc:
        raise SystemExit(f"error: {path}: {exc}") from None
    if quick:
        cfg = _quick(cfg)
    return cfg


def _quick(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config shrunk for a smoke run: tiny data, steps and evaluation; two learning rates and one
    MIND setting tuned; the first ablation at one seed; a selection of a third of the questions."""
    cfg = {**cfg}
    for key, value in QUICK.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    tuning = dict(cfg["tuning"])
    tuning["learning_rate"] = list(tuning.get("learning_rate") or [])[:2]
    tuning["mind"] = list(tuning.get("mind") or [])[:1]
    if "seeds" in tuning:
        tuning["seeds"] = tuning["seeds"][:1]
    tuning["extend_edges"] = min(1, int(tuning.get("extend_edges", 0)))
    cfg["tuning"] = tuning
    ab = dict(cfg["ablations"])
    ab["variants"], ab["seeds"] = list(ab.get("variants") or [])[:1], list(ab.get("seeds") or [])[:1]
    cfg["ablations"] = ab
    regimes = {}
    for name, spec in cfg["regimes"].items():
        spec = dict(spec or {})
        if spec.get("select"):
            spec["select"] = {**spec["select"], "target": max(4, cfg["synthesis"]["num_questions"] // 3)}
        spec["train"] = {**spec.get("train", {}), "max_steps": cfg["train"]["max_steps"]}
        regimes[name] = spec
    cfg["regimes"] = regimes
    return cfg


def flop_grid(curve: dict[str, Any]) -> list[float]:
    """The shared FLOP grid: ``points`` values from ``start``, each ``ratio`` times the last."""
    if not curve or not curve.get("points"):
        return []
    start, ratio = float(curve["start"]), float(curve.get("ratio", 2 ** 0.5))
    return [float(f"{start * ratio**k:.4g}") for k in range(int(curve["points"]))]


def variant_settings(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """A variant's fixed settings with ``strategy`` resolved (an empty dict for a plain strategy): a
    variant built on another (``base: <variant or strategy>``) takes the base's settings, then its own."""
    variants = cfg.get("variants", {})
    chain: list[str] = []
    while name in variants:
        if name in chain:
            raise ValueError(f"'base' goes round in a circle: {' -> '.join([*chain, name])}")
        chain.append(name)
        if "base" not in variants[name]:
            break
        name = variants[name]["base"]
    settings: dict[str, Any] = {}
    if chain and "base" in variants[chain[-1]]:  # the chain ends at a plain strategy
        if name not in STRATEGIES:
            raise ValueError(f"base {name!r} is neither a variant nor one of {', '.join(STRATEGIES)}")
        settings["strategy"] = name
    for link in reversed(chain):
        settings.update({k: v for k, v in variants[link].items() if k != "base"})
    return settings


def tuned_entry(cfg: dict[str, Any], name: str) -> str:
    """Whose tuned settings an ablation variant trains with: its ``base`` (a headline variant),
    else its strategy (``mind`` for MIND's ablations)."""
    spec = cfg.get("variants", {}).get(name, {})
    return spec["base"] if "base" in spec else spec.get("strategy", name)


# ====================================================================== runs
def make_run(cfg: dict[str, Any], regime: Regime, student: Path, phase: str, strategy: str, seed: int,
             overrides: dict[str, Any] | None = None, grid: list[float] | None = None) -> Run:  # fmt: skip
    """A run of ``strategy`` (or a variant: a strategy + fixed settings, applied last) in ``regime``."""
    variant = variant_settings(cfg, strategy)
    args = {
        **cfg["train"],
        **regime.train,
        **(overrides or {}),
        **variant,
        "strategy": variant.pop("strategy", strategy),
        "seed": seed,
        "data": str(regime.data),
        "validation_data": str(regime.validation),
        "student": str(student),
        # one-seed tuning evaluates validation only; with ``tuning.seeds`` the tuning runs are the run seeds' own runs,
        # evaluated on every split once and reused by the phases (the choice still reads validation only)
        "eval_splits": "" if phase == "tune" and "seeds" not in cfg["tuning"] else ",".join(SPLITS),
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    args.pop("validation_questions", None)  # the validation questions are the regime's own shards
    if grid:
        curve = cfg.get("curve", {})
        args["curve_flops"] = ",".join(f"{g:.4g}" for g in grid)
        args["curve_splits"] = ",".join(curve.get("splits", ["test", "ood_steps"]))
        args["curve_questions"] = int(curve.get("questions", 200))
    return Run(phase, regime.name, strategy, seed, args)


def placement(device: str) -> dict[str, Any]:
    """Where a run executes: ``distill.train`` fields kept out of the run's key. Both devices train in fp32
    (TRL would autocast to bf16 on a GPU: other numerics, and ~2.5x slower for the tiny student)."""
    if device == "cpu":
        return {"use_cpu": True}
    if device == "cuda":
        return {"bf16": False}
    raise ValueError(f"--device must be cpu or cuda, got {device!r}")


def device_name(device: str) -> str:
    """The device a record's numbers came from, e.g. ``cpu`` or ``cuda: NVIDIA H100 80GB HBM3``."""
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if device == "cuda" else "cpu"


@contextlib.contextmanager
def claimed(run: Run, wait: bool) -> Iterator[bool]:
    """Hold the run's lock (``<folder>/.lock``; an flock, freed by the kernel if its holder dies) while
    it trains, so that two benchmark processes never train the same run at once. Yields False
    (holding nothing) when another process has it and ``wait`` is False."""
    run.folder.mkdir(parents=True, exist_ok=True)
    with open(run.folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def execute(run: Run, device: str = "cpu", wait: bool = True) -> dict[str, Any] | None:
    """Train + evaluate in a fresh process (``python -m distill.train --config``) on ``device``; keep its
    record. None, without training, when another process is training it and ``wait`` is False."""
    if (done := run.done()) is not None:
        return done
    with claimed(run, wait) as mine:
        if not mine:
            return None
        if (done := run.done()) is not None:  # finished by another process while we waited
            return done
        return _train(run, device)


def _train(run: Run, device: str) -> dict[str, Any]:
    config = run.folder / "train.yaml"
    train = {**run.args, **placement(device), "output_dir": str(run.folder / "out")}
    config.write_text(yaml.safe_dump(train, sort_keys=True))
    log = run.folder / "train.log"
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "distill.train", "--config", str(config)],
            cwd=REPO_ROOT, env={**os.environ, **QUIET_ENV}, stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"run {run.folder.name} failed (exit {proc.returncode}); log {log}:\n{tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((run.folder / "out" / MIND_SUMMARY).read_text())
    record = {
        "key": run.key,
        "phase": run.phase,
        "regime": run.regime,
        "strategy": run.strategy,
        "seed": run.seed,
        "budget": "steps",
        "metrics": {s: result["accuracy"][s] for s in SPLITS if s in result["accuracy"]},
        "validation": result["accuracy"].get("validation"),
        "n": result["n"],
        "steps": result["steps"],
        "train_seconds": result["train_seconds"],
        "wall_seconds": round(wall, 2),
        "finished_at": round(time.time(), 1),
        "device": device_name(device),
        "trained_tokens": summary["compute"]["trained_tokens"],
        "flops": summary["compute"]["flops"],
        "compute": summary["compute"],  # params, forward_tokens, backward_tokens, trained_tokens, flops
        "in_subset": result["in_subset"],
        "kept_share": result["kept_share"],
        "views": summary["views"],
        "history": summary.get("history", []),
        "curve": result.get("curve", []),
        "config": run.args,
    }
    partial = run.result_file.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1))
    partial.replace(run.result_file)  # atomic: another process never reads half a record
    return record


def run_all(runs: list[Run], jobs: int, progress: Any, label: str, execute_missing: bool = True,
            device: str = "cpu") -> list[dict[str, Any]]:  # fmt: skip
    """Run (or reuse) every run, ``jobs`` at a time on ``device``, in the order given; the finished records.
    With ``execute_missing=False`` only the runs already finished are returned."""
    task = progress.add_task(label, total=len(runs))
    results: list[dict[str, Any] | None] = [None] * len(runs)
    todo = []
    for i, run in enumerate(runs):
        if (done := run.done()) is not None:
            done.setdefault("finished_at", run.result_file.stat().st_mtime)
            results[i] = done
            progress.advance(task)
        else:
            todo.append(i)
    wait = False  # first the runs no other benchmark process is training; then wait for those
    while execute_missing and todo:
        busy = []
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(execute, runs[i], device, wait): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                if (r := fut.result()) is None:
                    busy.append(i)
                    continue
                results[i] = r
                shown = f"test {r['metrics']['test']:.1%}" if "test" in r["metrics"] and runs[i].phase != "tune" else ""
                progress.console.print(
                    f"  {label}: {r['regime']} {r['strategy']} seed {r['seed']}: validation {r['validation']:.1%}"
                    f"{', ' + shown if shown else ''} ({r['wall_seconds']:.0f} s)"
                )
                progress.advance(task)
        if busy:
            progress.console.print(f"  {label}: {len(busy)} run(s) being trained by another process: waiting for them")
        todo, wait = sorted(busy), True
    # each record under the phase that asked for it: another phase (or invocation) may have trained the run
    return [{**r, "phase": run.phase} for run, r in zip(runs, results, strict=True) if r is not None]


# ====================================================================== tuning
def tuning_seeds(tuning: dict[str, Any]) -> list[int]:
    """The seeds whose mean validation tuning compares: ``tuning.seeds``, else the one ``tuning.seed`` (0)."""
    if "seeds" in tuning and "seed" in tuning:
        raise ValueError("tuning: give 'seed' or 'seeds', not both")
    seeds = tuning.get("seeds", [tuning.get("seed", 0)])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds) or len(set(seeds)) < len(seeds):
        raise ValueError(f"tuning.seeds: a non-empty list of distinct integer seeds, got {seeds!r}")
    return seeds


def tune(cfg: dict[str, Any], regimes: dict[str, Regime], students: Path | Callable[[int], Path], work: Path,
         strategies: list[str], jobs: int, progress: Any, execute_missing: bool = True,
         device: str = "cpu") -> tuple[dict[str, dict[str, dict[str, Any]]], list[dict[str, Any]]]:  # fmt: skip
    """Per regime and strategy, the settings with the best validation accuracy, averaged over the tuning seeds
    (each seed's run starts from ``students(seed)``, or from the one student given); every tuning run."""
    tuning = cfg["tuning"]
    seeds = tuning_seeds(tuning)
    student_of_seed = student_of(students)
    lrs = tuning.get("learning_rate") or []
    tuned = list(strategies)  # headline variants too: their fixed settings may want another rate
    chosen: dict[str, dict[str, dict[str, Any]]] = {r: {s: {} for s in strategies} for r in regimes}
    searched: list[dict[str, Any]] = []

    def runs_of(pairs: list[tuple[str, str, dict[str, Any]]]) -> list[Run]:
        return [make_run(cfg, regimes[r], student_of_seed(seed), "tune", s, seed, o).place(work)
                for r, s, o in pairs for seed in seeds]  # fmt: skip

    if lrs:
        pairs = [(r, s, {"learning_rate": lr}) for r in regimes for s in tuned for lr in lrs]
        results = run_all(runs_of(pairs), jobs, progress, "tuning: learning rate", execute_missing, device)
        for _ in range(int(tuning.get("extend_edges", 0))):
            beyond = []
            for r in regimes:
                for s in tuned:
                    mine = [x for x in results if x["regime"] == r and x["strategy"] == s]
                    complete = len(mine) == len(seeds) * len({x["config"]["learning_rate"] for x in mine})
                    if complete and (lr := _beyond_edge(mine)):
                        beyond.append((r, s, {"learning_rate": lr}))
            if not beyond:
                break
            more = run_all(runs_of(beyond), jobs, progress, "tuning: beyond the grid's edge", execute_missing, device)
            if not more:
                break
            results += more
        searched += results
        for r in regimes:
            for s in tuned:
                if mine := [x for x in results if x["regime"] == r and x["strategy"] == s]:
                    chosen[r][s]["learning_rate"] = _best_lr(mine)
    if "mind" in tuned and tuning.get("mind"):
        # {} first: MIND at its tuned rate with the defaults (the learning-rate runs themselves, reused)
        options = [{}, *tuning["mind"]]
        pairs = [(r, "mind", {**chosen[r]["mind"], **o}) for r in regimes for o in options]
        results = run_all(runs_of(pairs), jobs, progress, "tuning: MIND settings", execute_missing, device)
        searched += [x for x in results if x["key"] not in {y["key"] for y in searched}]
        keys = sorted(set().union(*(o.keys() for o in tuning["mind"])))
        for r in regimes:
            means = _mean_validation([x for x in results if x["regime"] == r], lambda x: tuple(x["config"].get(k) for k in keys))
            if means:  # the first of the best wins: a tie keeps the defaults
                best = max(means, key=means.__getitem__)
                chosen[r]["mind"] = {**chosen[r]["mind"], **{k: v for k, v in zip(keys, best) if v is not None}}
    return chosen, searched


def _mean_validation(runs: list[dict[str, Any]], setting: Callable[[dict[str, Any]], Any]) -> dict[Any, float]:
    """Mean validation accuracy (over seeds) per setting, in the order the settings first appear."""
    by: dict[Any, list[float]] = {}
    for r in runs:
        by.setdefault(setting(r), []).append(r["validation"])
    return {k: sum(v) / len(v) for k, v in by.items()}


def _best_lr(runs: list[dict[str, Any]]) -> float:
    """The learning rate with the best mean validation accuracy; a tie goes to the lower rate."""
    means = _mean_validation(runs, lambda r: r["config"]["learning_rate"])
    return max(means, key=lambda lr: (means[lr], -lr))


def _beyond_edge(runs: list[dict[str, Any]]) -> float | None:
    """The learning rate one factor of 2 beyond the tried range when the best is at its edge, else None."""
    tried = sorted({r["config"]["learning_rate"] for r in runs})
    if len(tried) < 2:
        return None
    best = _best_lr(runs)
    return best / 2 if best == tried[0] else best * 2 if best == tried[-1] else None


# ====================================================================== the comparison
def planned_runs(cfg: dict[str, Any], regimes: dict[str, Regime], students: Path | Callable[[int], Path], work: Path,
                 strategies: list[str], chosen: dict[str, dict[str, dict[str, Any]]]) -> list[Run]:  # fmt: skip
    """Every headline and ablation run, seed-major: after round k each strategy has its first k seeds (each from
    ``students(seed)``, or from the one student given)."""
    student_of_seed = student_of(students)
    grid = flop_grid(cfg.get("curve", {}))
    ab = cfg.get("ablations", {})
    rounds = sorted(set(cfg["seeds"]) | set(ab.get("seeds", [])), key=lambda s: (
        cfg["seeds"].index(s) if s in cfg["seeds"] else len(cfg["seeds"])))  # fmt: skip
    runs = []
    for seed in rounds:
        student = student_of_seed(seed)
        for r, regime in regimes.items():
            if seed in cfg["seeds"]:
                runs += [make_run(cfg, regime, student, "final", s, seed, chosen[r].get(s), grid) for s in strategies]
            if seed in ab.get("seeds", []) and r in ab.get("regimes", []):
                for v in ab.get("variants", []):
                    base = tuned_entry(cfg, v)
                    if base not in chosen[r]:
                        raise SystemExit(f"error: ablation {v!r} trains with {base!r}'s tuned settings, but {base!r} "
                                         "is not among the headline strategies of this run (--strategies)")
                    runs.append(make_run(cfg, regime, student, "ablation", v, seed, chosen[r][base]))
    return [run.place(work) for run in runs]


def log_invocation(work: Path, wall_seconds: float, executed: int) -> list[dict[str, Any]]:
    """Append this invocation to ``<work>/invocations.jsonl`` and return them all: a resumed
    benchmark's total wall time is the sum over the invocations that did its runs."""
    path = work / "invocations.jsonl"
    with open(path, "a") as fh:
        fh.write(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": round(wall_seconds, 1),
                             "runs_executed": executed}) + "\n")  # fmt: skip
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ====================================================================== main
def main(argv: list[str] | None = None) -> int:
    parser = run_benchmark_parser(__doc__, "quality", DEFAULT_CONFIG, REPO_ROOT / "runs" / "quality", DOCS)
    parser.add_argument("--regimes", help="comma-separated regimes (default: the config's)")
    parser.add_argument("--seeds", help="comma-separated seeds of the headline strategies (default: the config's)")
    parser.add_argument("--strategies", help="comma-separated headline strategies or variants (default: the config's)")
    parser.add_argument("--no-tune", action="store_true", help="skip tuning: the config's settings for every strategy")
    parser.add_argument("--no-ablations", action="store_true", help="skip MIND's ablations")
    args = parser.parse_args(argv)
    check_device(parser, args)
    cfg = _apply_overrides(parser, args, load_config(args.config, quick=args.quick))
    work = Path(args.work) / ("quick" if args.quick else "main")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    live = not args.report_only
    progress = make_progress()
    with progress:
        progress.console.print(f"quality: data (synthesize flow, validation hold-out, regimes) into {work}")
        regimes = prepare_regimes(cfg, work)
        students = Students(cfg, cfg["student_per_seed"])
        progress.console.print(f"quality: stage-0 student{'s, one per seed' if students.per_seed else ''} (cached)")
        students.prepare([*cfg["seeds"], *cfg["ablations"].get("seeds", []), *tuning_seeds(cfg["tuning"])], args.jobs)
        student = students(cfg["seeds"][0])  # the first seed's: the report's stage-0 retention
        strategies = list(cfg["strategies"])
        before = sum(1 for _ in (work / "runs").glob("*/result.json")) if (work / "runs").exists() else 0
        chosen, searched, runs, final = {}, [], [], []
        for name, regime in regimes.items():  # regime-major: the first regime's results complete first
            one = {name: regime}
            if args.no_tune:
                picked, tried = {name: {s: {} for s in strategies}}, []
            else:
                picked, tried = tune(cfg, one, students, work, strategies, args.jobs, progress, live, args.device)
            chosen |= picked
            searched += tried
            planned = planned_runs(cfg, one, students, work, strategies, picked)
            runs += planned
            final += run_all(planned, args.jobs, progress, f"{name}: comparison", live, args.device)
        executed = sum(1 for _ in (work / "runs").glob("*/result.json")) - before
    folders = {r.key: r.folder for r in runs}
    invocations = log_invocation(work, time.perf_counter() - t0, executed)
    everything = {r["key"]: r for r in (*searched, *final)}
    report = build_report(cfg, regimes, final, folders, strategies)
    results = {
        "benchmark": "quality",
        "version": 2,
        "quick": args.quick,
        "config_file": os.path.relpath(args.config, REPO_ROOT),
        "config": cfg,
        "machine": machine_info(),
        "regimes": {name: regime.describe() for name, regime in regimes.items()},
        "student": str(student),
        "student_weights": student_digest(student),
        "stage0": stage0_record(student),
        "students": students.record(),
        "wall_seconds": time.perf_counter() - t0,
        "runs_executed": executed,
        "runs_planned": len(runs),
        "runs_finished": len(final),
        "jobs": args.jobs,
        "invocations": invocations,
        "total_wall_seconds": sum(i["wall_seconds"] for i in invocations),
        "run_wall_seconds": sum(r["wall_seconds"] for r in everything.values()),
        "busy_wall_seconds": busy_wall_seconds(list(everything.values())),
        "all_runs": sorted(everything),
        "runs": report.pop("records"),  # one record per run and budget (each run's history stays in its result.json)
        "tuning": {"chosen": chosen, "runs": [_brief(r) for r in searched]},
        **report,
    }
    if args.results:
        path = write_json(args.results, results)
    else:
        path = write_results("quality", results, quick=args.quick)
    if not args.quick or args.docs != str(DOCS):
        write_markdown(rnd(results), Path(args.docs))
    print(f"full results: {os.path.relpath(path, REPO_ROOT)}", file=sys.stderr)
    emit({reg: {s: {sp: e[sp]["mean"] for sp in SPLITS if sp in e} for s, e in per.items()}
          for reg, per in results["summary"].items()} | {"wall_s": results["wall_seconds"]})  # fmt: skip
    return 0


def _apply_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the command line's ``--seeds``, ``--strategies``, ``--regimes`` and ``--no-ablations`` applied."""
    if args.seeds:
        cfg["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.strategies:
        cfg["strategies"] = [s.strip() for s in args.strategies.split(",")]
        if unknown := set(cfg["strategies"]) - set(STRATEGIES) - set(cfg["variants"]):
            parser.error(f"--strategies: unknown {sorted(unknown)}")
    if args.regimes:
        wanted = [r.strip() for r in args.regimes.split(",")]
        if unknown := set(wanted) - set(cfg["regimes"]):
            parser.error(f"--regimes: unknown {sorted(unknown)}; the config has {', '.join(cfg['regimes'])}")
        cfg["regimes"] = {r: cfg["regimes"][r] for r in wanted}
    if args.no_ablations:
        cfg["ablations"] = {"variants": [], "regimes": [], "seeds": []}
    return cfg


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    """A run's record for quality.json: everything but its per-window history and curve."""
    return {k: v for k, v in record.items() if k not in ("history", "curve")}


if __name__ == "__main__":
    sys.exit(main())
