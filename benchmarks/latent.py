"""Latent-space analysis (the paper's third claim): do single-perspective students form separate
clusters, and does MIND internalise reasoning rather than one style?

    python -m benchmarks.latent [--config configs/latent/default.yaml] [--work runs/latent] [--jobs 2]
                                [--device cpu] [--report-only] [--docs docs] [--results PATH]

One command, resumable: students are trained through the quality benchmark's machinery
(:func:`benchmarks.quality.make_run` / :func:`~benchmarks.quality.execute`), each in a folder named
by a hash of its settings, and never trained twice; the measurements (seconds) are redone every
time. ``--report-only`` trains nothing and measures the students that exist. Steps:

1. **Data**: the quality benchmark's (``quality.config`` in the YAML; :func:`prepare_regimes`, a
   no-op once written). The **held-out set**: the first rationale of every view of every
   validation question (never trained on by any student) that has a verified rationale in every
   view, tokenised as the trainer does (:func:`distill.latent.heldout_examples`).
2. **Single-view students**: one per view, the ``golden`` strategy with ``golden_view`` set, from the
   same stage-0 student with the same budget (``single_view``: ``questions`` questions per view,
   drawn from the ``single_view.regime``'s pool among those with a verified rationale in that view,
   so that no question falls back to another view; ``max_steps`` steps at golden's tuned rate).
3. **Strategy students** (``strategies``, ``seed``): the quality benchmark's final run of that seed
   in ``regime`` at its tuned settings, reused when its saved model exists; otherwise trained here
   at the same settings (without its test evaluation and FLOP curve).
4. **Measures** (:mod:`distill.latent`): pooled last-layer states of the held-out set in each
   student; per student the view silhouette (cosine), k-NN view purity and perspective invariance,
   each with a 95% bootstrap interval over questions; the single-view students' own-view points
   together (the paper's figure) with two controls (the same texts through the never-distilled
   stage-0 student; identical texts through the six students, labelled by student); MIND's paired
   differences from each other strategy.
5. **Report** (:mod:`benchmarks.latent_report`): ``benchmarks/results/latent.json``, t-SNE plots in
   ``docs/img/latent-*.png``, the block between ``<!-- BEGIN LATENT -->`` / ``<!-- END LATENT -->``
   in ``docs/results.md`` (nothing else in that file changes), and per analysed training run a
   ``latent/`` folder in its output folder (``latent.json`` + ``tsne.png``; the web viewer shows it).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks._common import REPO_ROOT, emit, machine_info, make_progress, quiet_libraries
from benchmarks.latent_report import SINGLE, STAGE0, Points, shown_path, single_view_points, write_outputs
from benchmarks.quality import Run, make_run, planned_runs, run_all, tune
from benchmarks.students import build_student
from benchmarks.quality import load_config as load_quality_config
from benchmarks.quality_data import Regime, digest, prepare_regimes

DEFAULT_CONFIG = REPO_ROOT / "configs" / "latent" / "default.yaml"
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results" / "latent.json"
DOCS = REPO_ROOT / "docs"


# ====================================================================== configuration
def load_config(path: str | Path) -> dict[str, Any]:
    """The analysis YAML with defaults filled in; errors name the file and the key."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"error: cannot read the latent config {path}: {exc}") from None
    for key in ("quality", "regime", "strategies"):
        if key not in cfg:
            raise SystemExit(f"error: {path}: missing key {key!r}")
    if not {"config", "work"} <= set(cfg["quality"] or {}):
        raise SystemExit(f"error: {path}: quality needs 'config' and 'work'")
    cfg.setdefault("seed", 0)
    cfg["single_view"] = {"regime": cfg["regime"], "questions": 500, "max_steps": 400, "learning_rate": None,
                          "seed": 0, **(cfg.get("single_view") or {})}  # fmt: skip
    cfg["heldout"] = {"include_incorrect": False, "max_questions": None, **(cfg.get("heldout") or {})}
    cfg["measures"] = {"knn": 10, "bootstrap": 2000, "seed": 0, **(cfg.get("measures") or {})}
    cfg["tsne"] = {"perplexity": 30, "seed": 0, **(cfg.get("tsne") or {})}
    return cfg


def _path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


# ====================================================================== students
@dataclasses.dataclass
class Student:
    """A model to measure: its folder (``from_pretrained``), the run that trained it, where it came from."""

    name: str  # a strategy, f"{SINGLE}-{view}" or STAGE0
    folder: Path
    source: str  # "quality" (its finished run reused), "latent" (trained here), "stage0"
    run: Run | None = None
    record: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return (self.folder / "config.json").is_file() and any(self.folder.glob("*.safetensors"))

    def describe(self) -> dict[str, Any]:
        rec = self.record or {}
        return {"folder": shown_path(self.folder), "source": self.source,
                "seed": rec.get("seed"), "steps": rec.get("steps"), "validation": rec.get("validation"),
                "metrics": rec.get("metrics") or None, "config": rec.get("config")}  # fmt: skip


def verified_questions(data: Path) -> dict[str, set[str]]:
    """Per view, the questions under ``data`` with a finished, verified-correct rationale in it."""
    import pyarrow.compute as pc

    from data_schemas import read_rationales
    from distill.data import view_name

    table = read_rationales(str(data))
    single_teacher = len(pc.unique(table["teacher"])) == 1
    ok = pc.and_(pc.equal(table["finish_reason"], "stop"), pc.fill_null(table["is_correct"], False))
    used = table.filter(ok)
    out: dict[str, set[str]] = {}
    for qid, p, t in zip(*(used[c].to_pylist() for c in ("question_id", "perspective", "teacher")), strict=True):
        out.setdefault(view_name(p, t, single_teacher), set()).add(qid)
    return out


def view_regimes(base: Regime, views: list[str], spec: dict[str, Any], work: Path) -> dict[str, Regime]:
    """Per view, ``base`` restricted to ``spec["questions"]`` of its questions with a verified
    rationale in that view (a seeded hash order), written once under ``work/data``."""
    from pipeline.select import write_subset

    available = verified_questions(base.data)
    out = {}
    for view in views:
        ids = sorted(available.get(view, ()), key=lambda q: hashlib.sha256(f"{spec['seed']}:{view}:{q}".encode()).hexdigest())
        ids = ids[: int(spec["questions"])]
        if not ids:
            raise SystemExit(f"error: no question of {base.data} has a verified {view!r} rationale")
        key = digest({"source": str(base.data), "view": view, "questions": ids})
        data = write_subset(base.data, work / "data" / f"{view}-{key}", ids, {"role": f"single view {view}"})
        out[view] = dataclasses.replace(base, data=data, questions=len(ids), selection=None)
    return out


def _own_run(run: Run, strategy: str) -> Run:
    """``run``'s training settings as a run of this analysis: no test evaluation, no FLOP curve."""
    args = {k: v for k, v in run.args.items() if not k.startswith("curve_")} | {"eval_splits": ""}
    return Run("latent", run.regime, strategy, run.seed, args)


def single_view_students(qcfg: dict[str, Any], regimes: dict[str, Regime], cfg: dict[str, Any], student: Path,
                         views: list[str], rate: float, work: Path) -> list[Student]:  # fmt: skip
    """One golden student per view (``golden_view``), all from ``student`` with the same budget."""
    spec = cfg["single_view"]
    if spec["regime"] not in regimes:
        raise SystemExit(f"error: single_view.regime {spec['regime']!r} is not a regime of the quality config")
    out = []
    for view, regime in view_regimes(regimes[spec["regime"]], views, spec, work).items():
        overrides = {"golden_view": view, "max_steps": int(spec["max_steps"]), "learning_rate": rate}
        run = _own_run(make_run(qcfg, regime, student, "tune", "golden", int(spec["seed"]), overrides), f"{SINGLE}-{view}")
        run.place(work)
        out.append(Student(run.strategy, run.folder / "out", "latent", run))
    return out


def strategy_students(qcfg: dict[str, Any], regime: Regime, cfg: dict[str, Any], student: Path, qwork: Path, work: Path,
                      chosen: dict[str, dict[str, Any]]) -> list[Student]:  # fmt: skip
    """The quality benchmark's final run of each strategy at ``cfg["seed"]`` (its tuned settings);
    where its model was not saved, the same training as a run of this analysis."""
    seeded = {**qcfg, "seeds": [int(cfg["seed"])], "ablations": {"variants": [], "regimes": [], "seeds": []}}
    planned = planned_runs(seeded, {regime.name: regime}, student, qwork, list(cfg["strategies"]), {regime.name: chosen})
    out = []
    for run in planned:
        if run.done() is not None and Student(run.strategy, run.folder / "out", "quality").ready:
            out.append(Student(run.strategy, run.folder / "out", "quality", run, run.done()))
        else:
            own = _own_run(run, run.strategy).place(work)
            out.append(Student(own.strategy, own.folder / "out", "latent", own))
    return out


def train_missing(students: list[Student], jobs: int, progress: Any, device: str, execute_missing: bool) -> int:
    """Train (or reuse) every student's run; keep each one's record. Returns how many were trained."""
    runs = [s.run for s in students if s.run is not None and s.source == "latent"]
    before = sum(r.done() is not None for r in runs)
    records = {r["key"]: r for r in run_all(runs, jobs, progress, "latent: students", execute_missing, device)}
    for s in students:
        if s.run is not None and s.record is None:
            s.record = records.get(s.run.key)
    return sum(r.done() is not None for r in runs) - before


# ====================================================================== measuring
def embed(student: Student, heldout: Path, cfg: dict[str, Any], train: dict[str, Any]) -> Points:
    """The held-out set through ``student`` (its own tokenizer, the trainer's formatting)."""
    from distill.formatting import DEFAULT_ANSWER_TEMPLATE
    from distill.latent import heldout_examples, load_student, pooled_states

    model, tokenizer = load_student(student.folder)
    examples = heldout_examples(
        heldout, tokenizer, prompt_style=train.get("prompt_style", "auto"), max_length=train.get("max_length"),
        answer_template=train.get("answer_template", DEFAULT_ANSWER_TEMPLATE),
        include_incorrect=bool(cfg["heldout"]["include_incorrect"]), max_questions=cfg["heldout"]["max_questions"],
        seed=int(cfg["measures"]["seed"]),
    )  # fmt: skip
    if not examples:
        raise SystemExit(f"error: no question of {heldout} has a usable rationale in every view")
    x = pooled_states(model, examples, tokenizer.pad_token_id or 0)
    return Points(x, np.array([e.view for e in examples]), np.array([e.question_id for e in examples]))


def measured(points: Points, cfg: dict[str, Any], labels: np.ndarray | None = None, invariance: bool = True) -> Any:
    from distill.latent import measure

    labels = points.views if labels is None else labels
    return measure(points.x, labels, points.questions, k=int(cfg["measures"]["knn"]), invariance=invariance)


def same_text_control(single: dict[str, Points], cfg: dict[str, Any]) -> Any:
    """Identical texts through every single-view student, labelled by student: per text view, the
    silhouette and k-NN purity of the students; per question, the mean over text views."""
    from distill.latent import Measured

    runs = []
    for view in sorted(single):
        keep = [p.views == view for p in single.values()]
        x = np.concatenate([p.x[k] for p, k in zip(single.values(), keep, strict=True)])
        who = np.concatenate([np.full(int(k.sum()), s) for s, k in zip(single, keep, strict=True)])
        qs = np.concatenate([p.questions[k] for p, k in zip(single.values(), keep, strict=True)])
        runs.append(measured(Points(x, who, qs), cfg, invariance=False))
    per = {k: np.mean([m.per_question[k] for m in runs], axis=0) for k in ("silhouette", "knn_purity")}
    return Measured(runs[0].questions, per, float(np.mean([m.knn_chance for m in runs])), sum(m.points for m in runs))


def _report(m: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    return m.report(int(cfg["measures"]["bootstrap"]), int(cfg["measures"]["seed"]))


def _paired(a: Any, b: Any, cfg: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    from distill.latent import paired_difference

    if list(a.questions) != list(b.questions):
        raise RuntimeError("paired difference over different question sets")
    n, seed = int(cfg["measures"]["bootstrap"]), int(cfg["measures"]["seed"])
    return {k: paired_difference(a.per_question[k], b.per_question[k], n, seed) for k in keys}


# ====================================================================== main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="analysis YAML (default: %(default)s)")
    parser.add_argument("--work", default=str(REPO_ROOT / "runs" / "latent"), help="its own runs and data (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="students trained at once (one torch thread each; default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where students train (default cpu)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: measure the students that exist")
    parser.add_argument("--docs", default=str(DOCS), help="results.md's LATENT block and img/latent-*.png (default: %(default)s)")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="results JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    quiet_libraries()
    t0 = time.perf_counter()
    cfg = load_config(args.config)
    qcfg = load_quality_config(_path(cfg["quality"]["config"]))
    qwork, work = _path(cfg["quality"]["work"]), Path(args.work)
    if cfg["regime"] not in qcfg["regimes"]:
        parser.error(f"regime {cfg['regime']!r}: the quality config has {', '.join(qcfg['regimes'])}")
    work.mkdir(parents=True, exist_ok=True)
    progress = make_progress()
    with progress:
        progress.console.print(f"latent: the quality benchmark's data ({qwork})")
        regimes = prepare_regimes(qcfg, qwork)
        regime = regimes[cfg["regime"]]
        student = build_student(qcfg)
        views = sorted(verified_questions(regime.validation))
        strategies = list(cfg["strategies"])
        picked, _ = tune(qcfg, {regime.name: regime}, student, qwork, strategies, args.jobs, progress, False)
        chosen = picked[regime.name]
        rate = cfg["single_view"]["learning_rate"] or chosen.get("golden", {}).get("learning_rate", qcfg["train"]["learning_rate"])
        single = single_view_students(qcfg, regimes, cfg, student, views, float(rate), work)
        strat = strategy_students(qcfg, regime, cfg, student, qwork, work, chosen)
        trained = train_missing(single + strat, args.jobs, progress, args.device, not args.report_only)
        stage0 = Student(STAGE0, Path(student), "stage0")
        found = [s for s in (stage0, *single, *strat) if s.ready]
        missing = [s.name for s in (*single, *strat) if not s.ready]
        import torch

        torch.set_num_threads(max(1, args.jobs))
        task = progress.add_task("latent: hidden states", total=len(found))
        points: dict[str, Points] = {}
        for s in found:
            train = {**qcfg["train"], **(s.run.args if s.run else {})}
            points[s.name] = embed(s, regime.validation, cfg, train)
            progress.advance(task)
        results, per = analyse(cfg, points, {s.name: s for s in found}, views)
        results |= {
            "benchmark": "latent",
            "config_file": shown_path(_path(args.config)),
            "config": cfg,
            "quality_config": {k: qcfg[k] for k in ("world", "synthesis", "train", "regimes")},
            "heldout": {"data": shown_path(regime.validation), "views": views,
                        "questions": len(np.unique(next(iter(points.values())).questions)) if points else 0,
                        "pooling": "last layer (after the final norm), mean over the rationale's own tokens",
                        "distance": "cosine, each point set centred on its own mean"},  # fmt: skip
            "single_view_training": {"regime": cfg["single_view"]["regime"], "learning_rate": float(rate),
                                     "max_steps": int(cfg["single_view"]["max_steps"])},  # fmt: skip
            "missing": missing,
            "students_trained": trained,
            "machine": machine_info(),
        }
        write_outputs(results, Path(args.results), Path(args.docs), points, per, {s.name: s for s in found}, cfg,
                      progress, t0)  # fmt: skip
    print(f"full results: {shown_path(Path(args.results))}", file=sys.stderr)
    emit(headline(results))
    return 0


def analyse(cfg: dict[str, Any], points: dict[str, Points], students: dict[str, Student],
            views: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """The numbers of ``latent.json`` (single-view clusters and controls, every strategy student's
    measures, MIND's paired differences) and each student's :class:`distill.latent.Measured`."""
    single = {n.removeprefix(f"{SINGLE}-"): p for n, p in points.items() if n.startswith(f"{SINGLE}-")}
    out: dict[str, Any] = {"single_view": {}, "strategies": {}, "reference": {}, "comparison": {}}
    per: dict[str, Any] = {}
    for name, p in points.items():
        per[name] = measured(p, cfg)
    if STAGE0 in per:
        out["reference"][STAGE0] = {**_report(per[STAGE0], cfg), **students[STAGE0].describe()}
    for name in cfg["strategies"]:
        if name in per:
            out["strategies"][name] = {**_report(per[name], cfg), **students[name].describe()}
    if len(single) == len(views) and len(views) > 1:
        diag = measured(single_view_points(single), cfg, invariance=False)
        control = same_text_control(single, cfg)
        sv = {**_report(diag, cfg), "controls": {"same_texts_by_student": _report(control, cfg)}}
        if STAGE0 in per:
            sv["controls"]["stage0_same_texts"] = {
                k: v for k, v in _report(per[STAGE0], cfg).items() if k != "invariance"
            } | {"single_view_minus_stage0": _paired(diag, per[STAGE0], cfg, ("silhouette", "knn_purity"))}
        sv["students"] = {v: {**_report(per[f"{SINGLE}-{v}"], cfg), **students[f"{SINGLE}-{v}"].describe()} for v in views}
        out["single_view"] = sv
    if "mind" in per:
        keys = ("invariance", "silhouette", "knn_purity")
        out["comparison"]["mind_minus"] = {n: _paired(per["mind"], per[n], cfg, keys)
                                           for n in [*cfg["strategies"], STAGE0] if n in per and n != "mind"}  # fmt: skip
    return out, per


def headline(results: dict[str, Any]) -> dict[str, Any]:
    sv = results.get("single_view") or {}
    return {"single_view": {k: sv.get(k) for k in ("silhouette", "knn_purity")},
            **{n: {"silhouette": r["silhouette"], "invariance": r["invariance"]["value"]}
               for n, r in results["strategies"].items()},
            "wall_s": results["wall_seconds"]}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
