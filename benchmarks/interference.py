"""When does capability-aware distillation help? The view-quality axis: a family of synthetic worlds
in which some views turn harmful, and every strategy on each of them.

    python -m benchmarks.interference [--config configs/interference/flaws.yaml] [--jobs 2] [--work runs/interference]
                                      [--worlds clean,flaw-0.6] [--strategies all,oracle] [--calibrate-only]
                                      [--force] [--report-only] [--quick] [--device cpu|cuda]
                                      [--merge benchmarks/results/interference.json]

One command, resumable like the quality benchmark (every finished run leaves ``result.json`` in a folder
named by a hash of its settings; ``--report-only`` reports the runs finished so far). Steps:

1. **Worlds** (the family config, e.g. ``configs/interference/flaws.yaml``): the quality config named by
   ``base`` (world, teacher, validation hold-out, regime, training settings) with the teacher's flaw
   rate of the family's ``noisy_views`` set per world. Each world's rationales are written by the real
   ``synthesize`` flow; the rows carry the teacher's own noise label (``metadata.noise``), so every run
   reports, per view, the share of flawed rationales among those it kept against the share among all.
2. **Calibration** (baselines only, before any other run): ``all`` and the ``oracle`` (``all`` over the
   views the family does not flaw: ``distill.train --views``) on the calibration worlds, learning
   rates tuned on validation, then ``calibration.seeds``. The phase diagram runs only when oracle minus
   ``all`` on test is at least ``calibration.min_gap`` points there (``--force`` runs it anyway).
3. **Phase diagram**: every strategy on every world (``seeds`` per world), each with its learning rate
   tuned per world on validation (``tuning``; test is never looked at): seed 0's, or the mean over
   ``tuning.seeds`` (each seed from its own student with ``student_per_seed``).
4. **Equal FLOPs** (``budgets``): separate runs whose whole schedule is sized to each FLOP budget
   (``max_steps`` = the budget over the strategy's FLOPs per step measured in its phase-diagram runs;
   the learning-rate warm-up scaled with the steps), at the tuned learning rates.
5. **Ablations** (``ablations``): variants of a strategy (MIND's flags) trained with its tuned settings,
   reported with the phase diagram (each minus ``all``).
6. **Frontier** (``frontier``): test and retention at several learning rates (seeds each) per world, to
   see whether a strategy's accuracy-forgetting frontier dominates another's.
7. **Chosen on validation** (``select_on_validation``, no runs of its own): per world and seed, the run
   with the best validation accuracy among the named strategies, reported like a strategy (with what it
   picked, and the FLOPs of every run it chose among: a user trains them all).
8. **Report** (:mod:`benchmarks.interference_report`): ``benchmarks/results/interference.json``
   (``runs``: one record per run with its world, flaw rate, strategy, seed, learning rate, budget,
   metrics and ``n``; ``calibration``; per world every strategy minus ``all`` with paired intervals;
   the views each strategy kept and how flawed they were), a section of ``docs/results.md`` and the
   phase plot.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import (REPO_ROOT, check_device, emit, machine_info, make_progress, run_benchmark_parser,
                                write_json, write_results)  # fmt: skip
from benchmarks.quality import (STRATEGIES, Run, load_config, make_run, run_all, tune, tuned_entry, tuning_seeds,
                                variant_settings)  # fmt: skip
from benchmarks.quality_data import Regime, prepare_regimes
from benchmarks.students import Students

DEFAULT_CONFIG = REPO_ROOT / "configs" / "interference" / "default.yaml"
DOCS = REPO_ROOT / "docs"
ORACLE = "oracle"

#: --quick: the base config's own quick shrink, the first and the last world, one seed, no tuning
QUICK_SEEDS = [0]


# ====================================================================== the family config
class FamilyError(SystemExit):
    """A bad family config: the message names the file and the key."""


def load_family(path: str | Path, quick: bool = False) -> dict[str, Any]:
    """The family config, validated, with its base quality config loaded under ``base_config``."""
    from pipeline.synthetic import PERSPECTIVES

    path = Path(path)
    fam = read_family(path)

    def fail(key: str, why: str) -> FamilyError:
        return FamilyError(f"error: {path}: {key}: {why}")

    for key in ("base", "noisy_views", "worlds", "strategies"):
        if key not in fam:
            raise fail(key, "missing")
    base_path = Path(fam["base"])
    fam["base_config"] = load_config(base_path, quick=quick)
    fam["base_file"] = os.path.relpath(base_path, REPO_ROOT)
    regimes = fam["base_config"]["regimes"]
    fam.setdefault("regime", next(iter(regimes)))
    if fam["regime"] not in regimes:
        raise fail("regime", f"{fam['regime']!r} is not a regime of {fam['base_file']} ({', '.join(regimes)})")
    noisy = fam["noisy_views"]
    if not isinstance(noisy, list) or not noisy:
        raise fail("noisy_views", "a non-empty list of perspectives")
    if unknown := [v for v in noisy if v not in PERSPECTIVES]:
        raise fail("noisy_views", f"unknown perspective(s) {unknown}; the world has {', '.join(PERSPECTIVES)}")
    if len(set(noisy)) == len(PERSPECTIVES):
        raise fail("noisy_views", "every view is noisy: the oracle would have no view to train on")
    from pipeline.synthetic.teacher import FLAW_MODES

    if fam.get("flaw_mode", "local") not in FLAW_MODES:
        raise fail("flaw_mode", f"must be one of {', '.join(FLAW_MODES)}, got {fam['flaw_mode']!r}")
    if not isinstance(fam["worlds"], dict) or not fam["worlds"]:
        raise fail("worlds", "a mapping of world names to {flaw_rate: x}")
    for name, spec in fam["worlds"].items():
        _check_world(fam, name, spec, fail)
    if "validation_questions" in fam and (type(fam["validation_questions"]) is not int or fam["validation_questions"] < 1):
        raise fail("validation_questions", f"a positive number of questions, got {fam['validation_questions']!r}")
    if not isinstance(fam.setdefault("student_per_seed", False), bool):
        raise fail("student_per_seed", f"true or false, got {fam['student_per_seed']!r}")
    if not isinstance(fam.get("train") or {}, dict):
        raise fail("train", "a mapping of distill.train settings (null removes the base config's)")
    fam.setdefault("variants", {})
    known = set(STRATEGIES) | set(fam["variants"]) | {ORACLE}
    if unknown := set(fam["strategies"]) - known:
        raise fail("strategies", f"unknown {sorted(unknown)}; choose from {', '.join(sorted(known))}")
    ab = fam.get("ablations") or {}
    if unknown := set(ab.get("variants", [])) - set(fam["variants"]):
        raise fail("ablations.variants", f"{sorted(unknown)} not defined under variants")
    selections = fam.get("select_on_validation") or {}
    if not isinstance(selections, dict) or not all(isinstance(v, list) and len(v) >= 2 for v in selections.values()):
        raise fail("select_on_validation", "a mapping of names to lists of >= 2 strategies to choose among")
    if clash := set(selections) & known:
        raise fail("select_on_validation", f"{sorted(clash)} already name a strategy or variant")
    if unknown := {s for among in selections.values() for s in among} - set(fam["strategies"]):
        raise fail("select_on_validation", f"{sorted(unknown)} not among the family's strategies")
    for key in ("budgets", "frontier", "ablations"):
        if unknown := set((fam.get(key) or {}).get("worlds", [])) - set(fam["worlds"]):
            raise fail(f"{key}.worlds", f"unknown world(s) {sorted(unknown)}")
    cal = fam.setdefault("calibration", {})
    if unknown := set(cal.get("worlds", [])) - set(fam["worlds"]):
        raise fail("calibration.worlds", f"unknown world(s) {sorted(unknown)}")
    if unknown := set(cal.get("strategies", [])) - known:
        raise fail("calibration.strategies", f"unknown {sorted(unknown)}")
    seeds = fam.setdefault("seeds", {"default": [0]})
    if not isinstance(seeds, dict) or "default" not in seeds:
        raise fail("seeds", "a mapping with a 'default' list (and optional per-world lists)")
    if unknown := set(seeds) - {"default"} - set(fam["worlds"]):
        raise fail("seeds", f"unknown world(s) {sorted(unknown)}")
    try:
        tuning_seeds(fam.setdefault("tuning", {}))
    except ValueError as exc:
        raise fail(*str(exc).split(": ", 1)) from None
    if quick:  # the first and the last world, one seed, no tuning (the base config's learning rate)
        names = list(fam["worlds"])
        fam["worlds"] = {w: fam["worlds"][w] for w in dict.fromkeys([names[0], names[-1]])}
        cal["worlds"] = [w for w in cal.get("worlds", []) if w in fam["worlds"]] or [names[-1]]
        fam["seeds"] = {"default": QUICK_SEEDS}
        cal["seeds"] = QUICK_SEEDS
        fam["tuning"] = {"learning_rate": []}
    return fam


#: keys whose mappings an extending family merges into its parent's (a name given again replaces the parent's)
MERGED_KEYS = ("variants",)


def read_family(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A family file's keys over those of the family it ``extends`` (a path relative to the file): each top-level
    key replaces the parent's, except ``variants``, which adds to them. ``base`` comes back resolved to an
    absolute path (relative to the file that names it)."""
    try:
        fam = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FamilyError(f"error: cannot read the interference config {path}: {exc}") from None
    if not isinstance(fam, dict):
        raise FamilyError(f"error: {path}: a mapping of family settings, got {type(fam).__name__}")
    if "base" in fam:
        fam["base"] = str((path.parent / str(fam["base"])).resolve())
    if (parent_name := fam.pop("extends", None)) is None:
        return fam
    parent_path, seen = (path.parent / str(parent_name)).resolve(), (*_seen, path.resolve())
    if parent_path in seen:
        raise FamilyError(f"error: {path}: extends: {parent_name} extends this file again (a cycle)")
    if not parent_path.is_file():
        raise FamilyError(f"error: {path}: extends: no family config at {parent_path}")
    merged = read_family(parent_path, seen)
    for key, value in fam.items():
        if key in MERGED_KEYS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _check_world(fam: dict[str, Any], name: str, spec: Any, fail: Any) -> None:
    """One entry of ``worlds``: its flaw rate, its per-perspective overrides, and the teacher they make."""
    from pipeline.synthetic import PERSPECTIVES
    from pipeline.synthetic.teacher import FLAW_MODES

    if not isinstance(spec, dict) or "flaw_rate" not in spec:
        raise fail(f"worlds.{name}", "needs flaw_rate")
    if unknown := set(spec) - {"flaw_rate", "per_perspective"}:
        raise fail(f"worlds.{name}", f"unknown key(s) {sorted(unknown)} (flaw_rate, per_perspective)")
    rate = spec["flaw_rate"]
    if not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise fail(f"worlds.{name}.flaw_rate", f"must be a number in [0, 1], got {rate!r}")
    for view, override in (spec.get("per_perspective") or {}).items():
        if view not in PERSPECTIVES:
            raise fail(f"worlds.{name}.per_perspective.{view}", f"unknown perspective; the world has {', '.join(PERSPECTIVES)}")
        for key, value in (override or {}).items():
            if key == "flaw_mode":
                if value not in FLAW_MODES:
                    raise fail(f"worlds.{name}.per_perspective.{view}.flaw_mode", f"must be one of {', '.join(FLAW_MODES)}")
                continue
            if key not in ("flaw_rate", "slip_rate"):
                raise fail(f"worlds.{name}.per_perspective.{view}.{key}", "unknown key (flaw_rate, slip_rate, flaw_mode)")
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise fail(f"worlds.{name}.per_perspective.{view}.{key}", f"must be a number in [0, 1], got {value!r}")
    try:
        _teacher(fam, name)
    except ValueError as exc:
        raise fail(f"worlds.{name}", str(exc)) from None


def _teacher(fam: dict[str, Any], world: str) -> dict[str, Any]:
    """The base teacher's options with the world's flaw rates (validated by the real teacher)."""
    from pipeline.teachers.synthetic_backend import SyntheticConfig

    spec = fam["worlds"][world]
    teacher = copy.deepcopy(fam["base_config"]["synthesis"].get("teacher") or {})
    per = dict(teacher.get("per_perspective") or {})
    for view in fam["noisy_views"]:
        per[view] = {**per.get(view, {}), "flaw_rate": float(spec["flaw_rate"])}
        if fam.get("flaw_mode", "local") != "local":  # only when set: the teacher's options name the data's folder
            per[view]["flaw_mode"] = fam["flaw_mode"]
    for view, override in (spec.get("per_perspective") or {}).items():
        per[view] = {**per.get(view, {}), **override}
    teacher["per_perspective"] = per
    SyntheticConfig(**teacher).noise()  # slip + flaw <= 1 per view, known perspectives
    return teacher


def clean_views(fam: dict[str, Any]) -> list[str]:
    """The views the family never flaws: what the oracle trains on."""
    from pipeline.synthetic import PERSPECTIVES

    return [v for v in PERSPECTIVES if v not in fam["noisy_views"]]


def world_config(fam: dict[str, Any], world: str) -> dict[str, Any]:
    """The quality-benchmark config of one world: the base's, with the world's teacher, the family's
    regime, strategies, variants (the oracle among them), seeds and tuning; no curve, no ablations."""
    cfg = copy.deepcopy(fam["base_config"])
    cfg["synthesis"]["teacher"] = _teacher(fam, world)
    for key, value in (fam.get("train") or {}).items():  # the family's training settings; null removes the base's
        if value is None:
            cfg["train"].pop(key, None)
        else:
            cfg["train"][key] = value
    cfg["regimes"] = {fam["regime"]: cfg["regimes"][fam["regime"]]}
    cfg["validation_questions"] = fam.get("validation_questions", cfg["validation_questions"])
    cfg["variants"] = {**copy.deepcopy(fam["variants"]), ORACLE: {"strategy": "all", "views": ",".join(clean_views(fam))}}
    cfg["strategies"] = list(fam["strategies"])
    cfg["seeds"] = list(fam["seeds"].get(world, fam["seeds"]["default"]))
    cfg["tuning"] = {**copy.deepcopy(fam["tuning"]), "mind": list(fam["tuning"].get("mind") or [])}
    cfg["curve"] = {}
    cfg["ablations"] = {"variants": [], "regimes": [], "seeds": []}
    for name in cfg["variants"]:
        variant_settings(cfg, name)
    return cfg


# ====================================================================== phases
def world_regime(fam: dict[str, Any], world: str, work: Path) -> tuple[dict[str, Any], Regime]:
    """The world's config and its training regime (data synthesized once, shared folders by hash);
    the regime is named after the world, so run folders read ``<world>-<strategy>-s<seed>-<key>``."""
    cfg = world_config(fam, world)
    (regime,) = prepare_regimes(cfg, work).values()
    regime.name = world
    cfg["regimes"] = {world: cfg["regimes"][fam["regime"]]}
    return cfg, regime


def flops_per_step(records: list[dict[str, Any]], world: str, strategy: str) -> float | None:
    """A strategy's measured training FLOPs per optimizer step in ``world`` (mean over its equal-steps runs)."""
    rates = [r["flops"] / r["steps"] for r in records
             if r["world"] == world and r["strategy"] == strategy and r.get("steps") and r.get("flops")]  # fmt: skip
    return sum(rates) / len(rates) if rates else None


def budget_runs(cfg: dict[str, Any], regime: Regime, students: Students, work: Path, strategies: list[str], seeds: list[int],
                chosen: dict[str, dict[str, Any]], budget: float, per_step: dict[str, float]) -> list[Run]:  # fmt: skip
    """Runs whose whole schedule is sized to ``budget`` training FLOPs: ``max_steps`` = budget / the strategy's
    measured FLOPs per step, and the learning-rate warm-up scaled by the same factor as the steps."""
    base_steps = int(regime.train.get("max_steps") or cfg["train"]["max_steps"])  # the regime's, else the config's
    warmup = int(cfg["train"].get("warmup_steps", 0))
    runs = []
    for s in strategies:
        if not per_step.get(s):
            continue
        steps = max(1, round(budget / per_step[s]))
        sized = {**(chosen.get(s) or {}), "max_steps": steps, "warmup_steps": round(warmup * steps / base_steps)}
        runs += [make_run(cfg, regime, students(seed), "budget", s, seed, sized).place(work) for seed in seeds]
    return runs


def family_seeds(fam: dict[str, Any]) -> set[int]:
    """Every run seed the family's phases use (their students are built before any run)."""
    seeds = set(tuning_seeds(fam["tuning"]))
    if fam["calibration"].get("worlds"):  # no calibration worlds: no calibration runs
        seeds |= set(fam["calibration"].get("seeds", [0]))
    seeds |= {s for lst in fam["seeds"].values() for s in lst}
    for spec in (fam.get(key) for key in ("ablations", "frontier", "budgets")):
        if spec:
            seeds |= set(spec.get("seeds", [0]))
    return seeds


def calibration_gap(records: list[dict[str, Any]], world: str) -> float | None:
    """Oracle minus ``all`` on test in points (mean over the seeds both have), or None."""
    by = {(r["strategy"], r["seed"]): r["metrics"]["test"] for r in records if r["world"] == world and "test" in r["metrics"]}
    seeds = sorted({s for (name, s) in by if name == ORACLE} & {s for (name, s) in by if name == "all"})
    if not seeds:
        return None
    return 100.0 * sum(by[(ORACLE, s)] - by[("all", s)] for s in seeds) / len(seeds)


def _tag(records: list[dict[str, Any]], world: str, flaw_rate: float) -> list[dict[str, Any]]:
    for r in records:
        r["world"], r["flaw_rate"] = world, flaw_rate
    return records


@dataclasses.dataclass
class Study:
    """One invocation's shared state: the family, where runs live, the tuned settings and every run's folder."""

    fam: dict[str, Any]
    args: argparse.Namespace
    work: Path
    students: Students
    prepared: dict[str, tuple[dict[str, Any], Regime]]
    progress: Any
    chosen: dict[str, dict[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    tuning: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    folders: dict[str, Path] = dataclasses.field(default_factory=dict)

    def tuned(self, world: str, names: list[str]) -> dict[str, dict[str, Any]]:
        """The world's tuned settings of ``names`` (tuning, on validation, those not tuned yet)."""
        cfg, regime = self.prepared[world]
        if todo := [s for s in names if s not in self.chosen.get(world, {})]:
            a = self.args
            picked, tried = tune(cfg, {world: regime}, self.students, self.work, todo, a.jobs, self.progress,
                                 not a.report_only, a.device)  # fmt: skip
            self.chosen.setdefault(world, {}).update(picked[world])
            self.tuning.extend(_tag(tried, world, self.fam["worlds"][world]["flaw_rate"]))
        return self.chosen[world]

    def execute(self, world: str, runs: list[Run], label: str) -> list[dict[str, Any]]:
        """Train (or reuse) ``runs`` of ``world``; their records, tagged with the world and its flaw rate."""
        self.folders |= {r.key: r.folder for r in runs}
        a = self.args
        done = run_all(runs, a.jobs, self.progress, f"{label}: {world}", not a.report_only, a.device)
        return _tag(done, world, self.fam["worlds"][world]["flaw_rate"])

    def make(self, world: str, phase: str, strategy: str, seed: int, overrides: dict[str, Any]) -> Run:
        cfg, regime = self.prepared[world]
        return make_run(cfg, regime, self.students(seed), phase, strategy, seed, overrides).place(self.work)

    # ------------------------------------------------------------------ the phases
    def calibrate(self, worlds: list[str], names: list[str], seeds: list[int]) -> list[dict[str, Any]]:
        out = []
        for world in worlds:  # baselines only
            picks = self.tuned(world, names)
            out += self.execute(world, [self.make(world, "calibration", s, seed, picks.get(s)) for seed in seeds for s in names],
                                "calibration")  # fmt: skip
        return out

    def phase_diagram(self, worlds: list[str], names: list[str]) -> list[dict[str, Any]]:
        out = []
        for world in worlds:  # seed-major: after round k every strategy has k seeds
            picks = self.tuned(world, names)
            seeds = self.prepared[world][0]["seeds"]
            out += self.execute(world, [self.make(world, "final", s, seed, picks.get(s)) for seed in seeds for s in names],
                                "phase diagram")  # fmt: skip
        return out

    def ablations(self, spec: dict[str, Any], worlds: list[str]) -> list[dict[str, Any]]:
        """MIND's flags (variants) at their base's tuned settings."""
        out = []
        for world in worlds:
            cfg = self.prepared[world][0]
            runs = [self.make(world, "ablation", v, seed, self.chosen[world].get(tuned_entry(cfg, v), {}))
                    for seed in spec.get("seeds", [0]) for v in spec["variants"]]  # fmt: skip
            out += self.execute(world, runs, "ablations")
        return out

    def frontier(self, spec: dict[str, Any], worlds: list[str], names: list[str]) -> list[dict[str, Any]]:
        """Accuracy against forgetting: every learning rate of ``spec``, seeds each."""
        out = []
        for world in worlds:
            runs = [self.make(world, "frontier", s, seed, {**self.chosen[world].get(s, {}), "learning_rate": lr})
                    for seed in spec.get("seeds", [0]) for lr in spec["learning_rate"] for s in names]  # fmt: skip
            out += self.execute(world, runs, "frontier")
        return out

    def budgets(self, spec: dict[str, Any], worlds: list[str], names: list[str], final: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fair compute: each schedule sized to a FLOP budget from the strategy's measured FLOPs per step."""
        out = []
        for world in worlds:
            cfg, regime = self.prepared[world]
            per_step = {s: fps for s in names if (fps := flops_per_step(final, world, s))}
            for budget in map(float, spec["flops"]):
                runs = budget_runs(cfg, regime, self.students, self.work, names, list(spec.get("seeds", [0])),
                                   self.chosen[world], budget, per_step)  # fmt: skip
                done = self.execute(world, runs, f"equal FLOPs {budget:.3g}")
                out += [{**r, "budget": budget} for r in done]
        return out


def _parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any], list[str], list[str]]:
    """The arguments, the family config and the worlds and strategies of the phase diagram."""
    parser = run_benchmark_parser(__doc__, "interference", DEFAULT_CONFIG, REPO_ROOT / "runs" / "interference", DOCS)
    parser.add_argument("--worlds", help="comma-separated worlds of the phase diagram (default: the config's)")
    parser.add_argument("--strategies", help="comma-separated strategies of the phase diagram (default: the config's)")
    parser.add_argument("--calibrate-only", action="store_true", help="stop after the calibration")
    parser.add_argument("--force", action="store_true", help="run the phase diagram even if the calibration gap is too small")
    parser.add_argument("--merge", metavar="FILE", help="an earlier results file: keep its worlds this invocation does "
                        "not report (benchmarks/interference_merge.py)")  # fmt: skip
    args = parser.parse_args(argv)
    check_device(parser, args)
    fam = load_family(args.config, quick=args.quick)
    worlds = [w.strip() for w in args.worlds.split(",") if w.strip()] if args.worlds else list(fam["worlds"])
    if unknown := set(worlds) - set(fam["worlds"]):
        parser.error(f"--worlds: unknown {sorted(unknown)}; the config has {', '.join(fam['worlds'])}")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies else list(fam["strategies"])
    if unknown := set(strategies) - set(STRATEGIES) - set(fam["variants"]) - {ORACLE}:
        parser.error(f"--strategies: unknown {sorted(unknown)}")
    return args, fam, worlds, strategies


def _scope(spec: dict[str, Any], worlds: list[str], strategies: list[str]) -> tuple[list[str], list[str]]:
    """A phase's worlds and strategies: its config's, within this invocation's."""
    return ([w for w in spec.get("worlds", worlds) if w in worlds],
            [s for s in spec.get("strategies", strategies) if s in strategies])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from benchmarks.interference_merge import merge_results
    from benchmarks.interference_report import build_report, write_markdown

    args, fam, worlds, strategies = _parse_args(argv)
    work = Path(args.work) / ("quick" if args.quick else "main")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cal = fam["calibration"]
    cal_worlds = list(cal.get("worlds", []))
    final: list[dict[str, Any]] = []
    extra: dict[str, list[dict[str, Any]]] = {"ablations": [], "frontier": [], "budgets": []}
    progress = make_progress()
    with progress:
        students = Students(fam["base_config"], fam["student_per_seed"])
        progress.console.print(f"interference: stage-0 student{'s, one per seed' if students.per_seed else ''}; "
                               f"worlds' data into {work}")  # fmt: skip
        students.prepare(family_seeds(fam), args.jobs)
        prepared = {w: world_regime(fam, w, work) for w in dict.fromkeys([*cal_worlds, *worlds])}
        study = Study(fam, args, work, students, prepared, progress)
        calibration = study.calibrate(cal_worlds, list(cal.get("strategies", ["all", ORACLE])), list(cal.get("seeds", [0])))
        gaps = {w: calibration_gap(calibration, w) for w in cal_worlds}
        passed = all(g is not None and g >= float(cal.get("min_gap", 0.0)) for g in gaps.values())
        for w, g in gaps.items():
            shown = "not measured" if g is None else f"{g:+.1f} points"
            progress.console.print(f"calibration: {w}: oracle - all on test {shown} (needs >= {cal.get('min_gap', 0.0)})")
        if not args.calibrate_only and (passed or args.force or args.report_only):
            final = study.phase_diagram(worlds, strategies)
        elif not passed and not args.calibrate_only:
            progress.console.print("calibration gap too small: the phase diagram is not run (--force runs it anyway)")
        if final and not args.calibrate_only:  # the phases built on the phase diagram, each where its config asks
            if (spec := fam.get("ablations") or {}).get("variants"):
                extra["ablations"] = study.ablations(spec, *_scope(spec, worlds, strategies)[:1])
            if (spec := fam.get("frontier") or {}).get("learning_rate"):
                extra["frontier"] = study.frontier(spec, *_scope(spec, worlds, strategies))
            if (spec := fam.get("budgets") or {}).get("flops"):
                extra["budgets"] = study.budgets(spec, *_scope(spec, worlds, strategies), final)
    ablated = [v for v in (fam.get("ablations") or {}).get("variants", []) if v not in strategies]
    report = build_report(fam, calibration, final + extra["ablations"], study.folders, strategies + ablated,
                          extra["budgets"], extra["frontier"])  # fmt: skip
    results = {
        "benchmark": "interference",
        "version": 1,
        "quick": args.quick,
        "config_file": os.path.relpath(args.config, REPO_ROOT),
        "base_config": fam["base_file"],
        "noisy_views": fam["noisy_views"],
        "flaw_mode": fam.get("flaw_mode", "local"),
        "oracle_views": clean_views(fam),
        "worlds": {w: {"flaw_rate": s["flaw_rate"], "teacher": _teacher(fam, w)} for w, s in fam["worlds"].items()},
        "machine": machine_info(),
        "students": students.record(),  # which stage-0 weights: a rebuilt student may differ
        "wall_seconds": time.perf_counter() - t0,
        "calibration_gap": gaps,
        "calibration_passed": passed,
        "tuning": {"chosen": study.chosen, "runs": [_brief(r) for r in study.tuning]},
        **report,
    }
    if args.merge:
        results = merge_results(json.loads(Path(args.merge).read_text()), results)
        min_gap = float(cal.get("min_gap", 0.0))
        results["calibration_passed"] = all(g is not None and g >= min_gap for g in results["calibration_gap"].values())
    path = write_json(args.results, results) if args.results else write_results("interference", results, quick=args.quick)
    if not args.quick or args.docs != str(DOCS):
        write_markdown(results, Path(args.docs))
    print(f"full results: {os.path.relpath(path, REPO_ROOT)}", file=sys.stderr)
    emit({"calibration_gap": gaps, **report["headline"], "wall_s": results["wall_seconds"]})
    return 0


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("history", "curve")}


if __name__ == "__main__":
    sys.exit(main())
