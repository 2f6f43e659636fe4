"""Quality benchmark: does capability-aware multi-perspective distillation beat the baselines?

    python -m benchmarks.quality [--config configs/quality/default.yaml] [--jobs 2] [--work runs/quality]
                                 [--seeds 0,1,2] [--strategies mind,random,...] [--no-tune] [--quick]

One command, resumable: every finished run leaves ``result.json`` in its own folder (named by a
hash of everything that changes it) and is never repeated; an interrupted benchmark picks up where
it stopped. Steps (settings in the YAML config; ``--quick`` shrinks them for a smoke run):

1. **Data**: the synthetic world of the config (``world``: WorldConfig fields) answered by its
   reference teacher under every perspective (``synthesis``: slips and flaws as teacher noise),
   through the real ``synthesize`` flow (``python -m flows.synthesize``).
2. **Student**: the embedded default for that world: stage-0 pretrained on the world's retention
   task (``distill.student.ensure_default_student``, cached under ``runs/students``), so every run
   starts from the same weights and forgetting can be measured.
3. **Tuning** (validation only, never test): seed ``tuning.seed``; every strategy at each learning
   rate of ``tuning.learning_rate`` (a strategy whose best rate is at the grid's edge also tries
   one factor of 2 beyond it, at most ``tuning.extend_edges`` times); then MIND's method settings (``tuning.mind``: a list of
   MindConfig overrides such as ``{fusion_beta: 0.3}``, each tried alone) at MIND's best learning rate. The choice is
   the best validation accuracy (held-out training-world questions that no run trains on).
4. **Comparison**: every strategy x every seed at equal steps (same optimizer steps, batch of
   questions, schedule; what each one spends in tokens and FLOPs is recorded), with the tuned
   settings; each run evaluates ``test``, ``ood_steps``, ``ood_template`` and ``retention`` (plus
   ``validation``) with greedy decoding.
5. **Report**: ``benchmarks/results/quality.json`` (every run: strategy, seed, metrics, trained
   tokens and the trainer's compute account (``compute``: params, forward-only and forward+backward
   tokens, estimated FLOPs), per-view in-subset and kept shares, wall time, full config; the tuning
   search; the summary; MIND's per-view in-subset share, mean weight alpha and ``L_p`` over steps
   from its ``mind_summary.json`` history), ``docs/results.md`` (tables, mean +- std over seeds; a
   hand-written analysis between ``<!-- BEGIN ANALYSIS -->`` and ``<!-- END ANALYSIS -->``, and a
   history of earlier results between ``<!-- BEGIN HISTORY -->`` and ``<!-- END HISTORY -->``, are
   carried over when the file is rewritten) and PNG plots beside it.
   The last stdout line is a JSON object with the headline (mean accuracy per strategy and split).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import QUIET_ENV, REPO_ROOT, emit, machine_info, make_progress, rnd, write_results
from benchmarks.quality_stats import compare_to

DEFAULT_CONFIG = REPO_ROOT / "configs" / "quality" / "default.yaml"
STRATEGIES = ("golden", "all", "mcc_kd", "random", "lowest_loss", "instant", "mind")
SPLITS = ("test", "ood_steps", "ood_template", "retention")
#: the trainer's compute account (mind_summary.json "compute") averaged per strategy in the summary
COMPUTE_KEYS = ("flops", "backward_tokens", "forward_tokens")
DOCS = REPO_ROOT / "docs"
ANALYSIS = re.compile(r"<!-- BEGIN ANALYSIS -->.*?<!-- END ANALYSIS -->", re.S)
HISTORY = re.compile(r"<!-- BEGIN HISTORY -->.*?<!-- END HISTORY -->", re.S)  # earlier results, kept at the end

#: --quick: a smoke run of the whole pipeline (minutes, numbers meaningless)
QUICK = {
    "synthesis": {"num_questions": 120},
    "train": {"max_steps": 12, "validation_questions": 16, "eval_questions": 16, "meta_warmup_steps": 4, "history_every": 2},
    "seeds": [0, 1],
    "tuning": {"learning_rate": [], "mind": []},
}


# ====================================================================== configuration
def load_config(path: str | Path, quick: bool = False) -> dict[str, Any]:
    """The benchmark's YAML config (``--quick`` overrides merged in); errors name the file."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"error: cannot read the quality config {path}: {exc}") from None
    for key in ("world", "synthesis", "train", "strategies", "seeds"):
        if key not in cfg:
            raise SystemExit(f"error: {path}: missing key {key!r}")
    cfg.setdefault("variants", {})
    for name, spec in cfg["variants"].items():
        if not isinstance(spec, dict) or spec.get("strategy") not in STRATEGIES:
            raise SystemExit(f"error: {path}: variants.{name}: needs 'strategy' (one of {', '.join(STRATEGIES)})")
    unknown = set(cfg["strategies"]) - set(STRATEGIES) - set(cfg["variants"])
    if unknown:
        raise SystemExit(f"error: {path}: strategies: unknown {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
    cfg.setdefault("tuning", {})
    cfg.setdefault("stage0", {})
    if quick:
        for key, value in QUICK.items():
            cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    return cfg


def digest(obj: Any, length: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


# ====================================================================== data and student
def synthesize(cfg: dict[str, Any], work: Path) -> Path:
    """The rationale shards of the config's world (the real flow; resumes from its manifest)."""
    syn = cfg["synthesis"]
    spec = {
        "source": {"kind": "synthetic", "options": {"split": "train", "seed": cfg["world"].get("seed", 0),
                                                    "config": cfg["world"]}},
        "num_questions": syn["num_questions"],
        "perspective_set": "synthetic",
        "perspectives": syn.get("perspectives"),
        "teachers": [{"backend": "synthetic", "options": syn.get("teacher", {})}],
        "samples": syn.get("samples", 1),
        "seed": syn.get("seed", 0),
        "shard_size": syn.get("shard_size", 500),
    }  # fmt: skip
    spec = {k: v for k, v in spec.items() if v is not None}
    out = work / f"data-{digest(spec)}"
    done = out / "done.json"
    if done.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "synthesis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "flows.synthesize", "--out", str(out / "rationales"), "--config", str(out / "synthesis.yaml")],
        cwd=REPO_ROOT, env={**os.environ, **QUIET_ENV}, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"error: synthesis failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    done.write_text(json.dumps({"spec": spec, "summary": proc.stdout.strip().splitlines()[-1:]}))
    return out


def build_student(cfg: dict[str, Any]) -> Path:
    """The stage-0 student for the config's world (built once, cached under runs/students)."""
    if cfg.get("student"):
        return Path(cfg["student"])
    from distill.pretrain import Stage0Settings
    from distill.student import ensure_default_student
    from pipeline.synthetic.world import WorldConfig

    settings = Stage0Settings(**cfg["stage0"])
    return ensure_default_student(REPO_ROOT / "runs" / "students", seed=settings.seed, settings=settings,
                                  world=WorldConfig.from_dict(cfg["world"]))  # fmt: skip


# ====================================================================== runs
@dataclasses.dataclass
class Run:
    """One training run: its full ``distill.train`` config and where it lives."""

    phase: str  # "tune" or "final"
    strategy: str
    seed: int
    args: dict[str, Any]  # distill.train fields (MindConfig + MindScriptArguments), output_dir excluded
    folder: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.key = digest(self.args, 12)

    def place(self, work: Path) -> Run:
        self.folder = work / "runs" / f"{self.strategy}-s{self.seed}-{self.key}"
        return self

    @property
    def result_file(self) -> Path:
        return self.folder / "result.json"

    def done(self) -> dict[str, Any] | None:
        """The finished run's record; None if there is none, or it is another config's, or it was
        written by the retired trainer (no ``compute`` account): such a run is trained again."""
        if self.result_file.is_file():
            data = json.loads(self.result_file.read_text())
            if data.get("key") == self.key and "compute" in data:
                return data
        return None


def make_run(cfg: dict[str, Any], data: Path, student: Path, phase: str, strategy: str, seed: int,
             overrides: dict[str, Any] | None = None) -> Run:  # fmt: skip
    variant = dict(cfg.get("variants", {}).get(strategy, {}))  # a named strategy + settings
    args = {
        **cfg["train"],
        **(overrides or {}),
        **variant,
        "strategy": variant.pop("strategy", strategy),
        "seed": seed,
        "data": str(data / "rationales"),
        "student": str(student),
        "eval_splits": ",".join(SPLITS),
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    if strategy == "golden" and cfg.get("golden_view"):
        args["golden_view"] = cfg["golden_view"]
    return Run(phase, strategy, seed, args)


def execute(run: Run) -> dict[str, Any]:
    """Train + evaluate in a fresh process (``python -m distill.train --config``); keep its record."""
    if (done := run.done()) is not None:
        return done
    run.folder.mkdir(parents=True, exist_ok=True)
    config = run.folder / "train.yaml"
    config.write_text(yaml.safe_dump({**run.args, "output_dir": str(run.folder / "out")}, sort_keys=True))
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
    summary = json.loads((run.folder / "out" / "mind_summary.json").read_text())
    record = {
        "key": run.key,
        "phase": run.phase,
        "strategy": run.strategy,
        "seed": run.seed,
        "metrics": {s: result["accuracy"][s] for s in SPLITS},
        "validation": result["accuracy"].get("validation"),
        "n": result["n"],
        "steps": result["steps"],
        "train_seconds": result["train_seconds"],
        "wall_seconds": round(wall, 2),
        "finished_at": round(time.time(), 1),
        "trained_tokens": summary["compute"]["trained_tokens"],
        "compute": summary["compute"],  # params, forward_tokens, backward_tokens, trained_tokens, flops
        "in_subset": result["in_subset"],
        "kept_share": result["kept_share"],
        "views": summary["views"],
        "history": summary.get("history", []),
        "config": run.args,
    }
    run.result_file.write_text(json.dumps(record, indent=1))
    return record


def run_all(runs: list[Run], jobs: int, progress: Any, label: str) -> list[dict[str, Any]]:
    """Run (or reuse) every run, ``jobs`` at a time; results in the order of ``runs``."""
    task = progress.add_task(label, total=len(runs))
    results: list[dict[str, Any] | None] = [None] * len(runs)
    todo = []
    for i, run in enumerate(runs):
        if (done := run.done()) is not None:
            done.setdefault("finished_at", run.result_file.stat().st_mtime)  # records from before the field
            results[i] = done
            progress.advance(task)
        else:
            todo.append(i)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(execute, runs[i]): i for i in todo}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            r = results[i]
            progress.console.print(
                f"  {label}: {r['strategy']} seed {r['seed']}: validation {r['validation']:.1%}, "
                f"test {r['metrics']['test']:.1%} ({r['wall_seconds']:.0f} s)"
            )
            progress.advance(task)
    return [r for r in results if r is not None]


# ====================================================================== tuning
def tune(cfg: dict[str, Any], data: Path, student: Path, work: Path, strategies: list[str], jobs: int,
         progress: Any) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """Per strategy, the settings with the best validation accuracy, and every tuning run."""
    tuning = cfg["tuning"]
    seed = tuning.get("seed", 0)
    lrs = tuning.get("learning_rate") or []
    variants = cfg.get("variants", {})
    base_of = {s: variants[s]["strategy"] if s in variants else s for s in strategies}
    chosen: dict[str, dict[str, Any]] = {s: {} for s in strategies}
    searched: list[dict[str, Any]] = []
    if lrs:
        tuned = [s for s in strategies if s not in variants]
        runs = [make_run(cfg, data, student, "tune", s, seed, {"learning_rate": lr}).place(work)
                for s in tuned for lr in lrs]  # fmt: skip
        results = run_all(runs, jobs, progress, "tuning: learning rate")
        for _ in range(int(tuning.get("extend_edges", 0))):  # best at the grid's edge: look one step beyond
            beyond = [(s, lr) for s in tuned if (lr := _beyond_edge([r for r in results if r["strategy"] == s]))]
            if not beyond:
                break
            runs = [make_run(cfg, data, student, "tune", s, seed, {"learning_rate": lr}).place(work) for s, lr in beyond]
            results += run_all(runs, jobs, progress, "tuning: learning rate beyond the grid's edge")
        searched += results
        for s in tuned:
            chosen[s]["learning_rate"] = _best_lr_run([r for r in results if r["strategy"] == s])["config"]["learning_rate"]
        for s in strategies:  # a variant trains with its base strategy's learning rate
            if s in variants and base_of[s] in chosen:
                chosen[s] = {"learning_rate": chosen[base_of[s]].get("learning_rate", cfg["train"].get("learning_rate"))}
    if "mind" in strategies and tuning.get("mind"):
        base = chosen["mind"]
        runs = [make_run(cfg, data, student, "tune", "mind", seed, {**base, **o}).place(work) for o in tuning["mind"]]
        results = run_all(runs, jobs, progress, "tuning: MIND settings")
        searched += results
        incumbent = [r for r in searched if r["strategy"] == "mind" and all(r["config"].get(k) == v for k, v in base.items())]
        best = max(results + incumbent[:1], key=lambda r: r["validation"])
        keys = set().union(*(o.keys() for o in tuning["mind"]))
        chosen["mind"] = {**base, **{k: best["config"][k] for k in keys if k in best["config"]}}
    return chosen, searched


def _best_lr_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Best validation accuracy; a tie goes to the lower learning rate."""
    return max(runs, key=lambda r: (r["validation"], -r["config"]["learning_rate"]))


def _beyond_edge(runs: list[dict[str, Any]]) -> float | None:
    """The learning rate one factor of 2 beyond the tried range when the best is at its edge, else None."""
    tried = sorted({r["config"]["learning_rate"] for r in runs})
    if len(tried) < 2:
        return None
    best = _best_lr_run(runs)["config"]["learning_rate"]
    return best / 2 if best == tried[0] else best * 2 if best == tried[-1] else None


# ====================================================================== report
def mean_std(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else (math.nan, 0.0)


def summarise(runs: list[dict[str, Any]], strategies: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in strategies:
        mine = [r for r in runs if r["strategy"] == s]
        if not mine:
            continue
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in mine]}
        for split in (*SPLITS, "validation"):
            vals = [r["metrics"][split] if split in r["metrics"] else r["validation"] for r in mine]
            m, sd = mean_std([v for v in vals if v is not None])
            entry[split] = {"mean": m, "std": sd}
        tokens = [r["trained_tokens"] for r in mine if r.get("trained_tokens")]
        entry["trained_tokens"] = statistics.fmean(tokens) if tokens else None
        for key in COMPUTE_KEYS:  # the trainer's compute account, mean over seeds
            vals = [r["compute"][key] for r in mine if r.get("compute", {}).get(key) is not None]
            entry[key] = statistics.fmean(vals) if vals else None
        entry["wall_seconds"] = statistics.fmean([r["wall_seconds"] for r in mine])
        out[s] = entry
    return out


def _mean_series(per_seed: list[list[dict[str, Any]]], n: int, field: str) -> dict[str, list[float | None]]:
    """Per view, the mean over seeds of ``entry[field][view]`` at each of the first ``n`` history
    entries (None where no seed has it: a view absent from that window, ``L_p`` not yet measured)."""
    views = sorted({v for hist in per_seed for e in hist[:n] for v in e.get(field) or {}})
    out = {}
    for v in views:
        series = []
        for i in range(n):
            vals = [hist[i][field][v] for hist in per_seed if v in (hist[i].get(field) or {})]
            series.append(statistics.fmean(vals) if vals else None)
        out[v] = series
    return out


def _mind_histories(runs: list[dict[str, Any]]) -> tuple[list[list[dict[str, Any]]], int]:
    """The ``history`` of every MIND run (mind_summary.json) and the length they share."""
    per_seed = [r["history"] for r in runs if r["strategy"] == "mind" and r.get("history")]
    return per_seed, min((len(h) for h in per_seed), default=0)


def subset_curves(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """MIND's per-perspective share of candidates kept in the fused subset I_dyn, and their mean
    weight alpha when kept, per history window (``--history_every`` steps), averaged over seeds."""
    per_seed, n = _mind_histories(runs)
    if not n:
        return {}
    return {
        "steps": [e["step"] for e in per_seed[0][:n]],
        "in_subset": _mean_series(per_seed, n, "in_subset"),
        "alpha": _mean_series(per_seed, n, "alpha"),
        "subset_size": [_mean_or_none([h[i].get("subset_size") for h in per_seed]) for i in range(n)],
        "seeds": len(per_seed),
    }


def loss_curves(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """MIND's per-perspective inertia-filtered loss L_p and the MetaNet's meta-loss and ranking
    agreement (top-1, Spearman) per history window, averaged over seeds."""
    per_seed, n = _mind_histories(runs)
    if not n:
        return {}
    out: dict[str, Any] = {"steps": [e["step"] for e in per_seed[0][:n]], "L_p": _mean_series(per_seed, n, "L_p")}
    for key in ("meta_loss", "meta_top1", "meta_spearman", "consistency"):
        out[key] = [_mean_or_none([h[i].get(key) for h in per_seed]) for i in range(n)]
    out["seeds"] = len(per_seed)
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def plot(summary: dict[str, Any], curves: dict[str, Any], out_dir: Path, losses: dict[str, Any] | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    strategies = list(summary)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(strategies), 1)
    for i, s in enumerate(strategies):
        xs = [j + (i - (len(strategies) - 1) / 2) * width for j in range(len(SPLITS))]
        ax.bar(xs, [summary[s][sp]["mean"] * 100 for sp in SPLITS], width,
               yerr=[summary[s][sp]["std"] * 100 for sp in SPLITS], capsize=2, label=s)  # fmt: skip
    ax.set_xticks(range(len(SPLITS)), SPLITS)
    ax.set_ylabel("accuracy (%), mean ± std over seeds")
    ax.set_title("Quality benchmark: accuracy per strategy and split")
    ax.legend(ncol=3, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(out_dir / "quality-accuracy.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    if curves:
        every = f"mean of {curves['seeds']} seeds, per history window"
        paths.append(_line_plot(plt, curves["steps"], {v: [None if y is None else y * 100 for y in ys]
                                                        for v, ys in curves["in_subset"].items()},
                                "candidates kept in the subset (%)",
                                f"MIND: per-perspective in-subset share over training ({every})",
                                out_dir / "quality-mind-subset.png"))  # fmt: skip
        paths.append(_line_plot(plt, curves["steps"], curves["alpha"], "mean weight alpha when kept",
                                f"MIND: per-perspective mean alpha over training ({every})",
                                out_dir / "quality-mind-alpha.png"))  # fmt: skip
    if losses and any(y is not None for ys in losses["L_p"].values() for y in ys):
        paths.append(_line_plot(plt, losses["steps"], losses["L_p"], "L_p (nats/token, log scale)",
                                f"MIND: per-perspective inertia-filtered loss L_p (mean of {losses['seeds']} seeds)",
                                out_dir / "quality-mind-losses.png", log=True))  # fmt: skip
    return paths


def _line_plot(plt: Any, steps: list[int], series: dict[str, list[float]], ylabel: str, title: str, path: Path,
               log: bool = False) -> Path:  # fmt: skip
    """One line per perspective over optimizer steps, saved as ``path``."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for name, ys in series.items():  # None (no value in that window): a gap in the line
        ax.plot(steps, [math.nan if y is None else y for y in ys], label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(ncol=3, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(ms: dict[str, float]) -> str:
    return f"{ms['mean'] * 100:.1f} ± {ms['std'] * 100:.1f}"


def write_markdown(results: dict[str, Any], images: list[Path], path: Path) -> None:
    summary, cfg = results["summary"], results["config"]
    lines = [
        "# Quality benchmark results",
        "",
        "Generated by `python -m benchmarks.quality` (see `benchmarks/quality.py`; config "
        f"`{results['config_file']}`). Every number below is in `benchmarks/results/quality.json`.",
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs; "
        f"benchmark wall time {results['busy_wall_seconds'] / 60:.1f} min (while any of its {len(results['all_runs'])} runs "
        f"was executing, {results['jobs']} at a time, over every invocation that ran them; their run times add up to "
        f"{results['run_wall_seconds'] / 60:.1f} min). The last invocation took {results['wall_seconds'] / 60:.1f} min "
        f"and executed {results['runs_executed']} runs.",
        "",
        "## Accuracy (%, mean ± std over seeds "
        f"{', '.join(str(s) for s in cfg['seeds'])}; greedy decoding, {cfg['train'].get('eval_questions')} questions per split)",
        "",
        "| strategy | test (ID) | ood_steps | ood_template | retention | validation | trained tokens "
        "| fwd+bwd tokens | fwd-only tokens | FLOPs | wall s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, e in summary.items():
        tok = [f"{e[k]:,.0f}" if e.get(k) else "–" for k in ("trained_tokens", "backward_tokens", "forward_tokens")]
        flops = f"{e['flops']:.3g}" if e.get("flops") else "–"
        lines.append(f"| {s} | {' | '.join(_pct(e[sp]) for sp in (*SPLITS, 'validation'))} | {' | '.join(tok)} "
                     f"| {flops} | {e['wall_seconds']:.0f} |")
    lines += ["", "Equal steps: every run takes the same optimizer steps over the same batch of questions "
              f"({cfg['train']['max_steps']} steps x {cfg['train']['per_device_train_batch_size']} questions), the same "
              "schedule and the same stage-0 student. The trainer's compute account (means over seeds) shows what "
              "each strategy spent at that equal step count: `trained tokens` (completion tokens the loss was taken "
              "on), `fwd+bwd tokens` (sequence tokens through a forward and backward pass), `fwd-only tokens` "
              "(no-grad scoring forwards: `--scoring separate`, MIND's warm-up with a frozen student) and `FLOPs` "
              "(6 x params x fwd+bwd + 2 x params x fwd-only tokens; the MetaNet's own cost is left out).", ""]  # fmt: skip
    if results.get("comparison", {}).get("vs"):
        lines += ["## MIND minus each other strategy (paired, percentage points)", "",
                  "Per seed and question, correct(MIND) - correct(other), averaged; 95% interval from a bootstrap "
                  "over seeds, then questions; `P<=0` is the bootstrap share at or below zero.", "",
                  "| vs | " + " | ".join(f"{sp}" for sp in (*SPLITS, "validation")) + " |",
                  "|---" * (len(SPLITS) + 2) + "|"]  # fmt: skip
        for other, per_split in results["comparison"]["vs"].items():
            cells = []
            for sp in (*SPLITS, "validation"):
                d = per_split.get(sp)
                cells.append("–" if not d else f"{d['diff'] * 100:+.1f} [{d['ci95'][0] * 100:+.1f}, {d['ci95'][1] * 100:+.1f}] "
                                                 f"P<=0 {d['p_le_0']:.2f}")  # fmt: skip
            lines.append(f"| {other} | " + " | ".join(cells) + " |")
        lines.append("")
    for img in images:
        lines += [f"![{img.stem}](img/{img.name})", ""]
    lines += ["## Tuning (validation split only)", "",
              "| phase | strategy | seed | settings | validation |", "|---|---|---|---|---|"]  # fmt: skip
    keys = ("learning_rate", *sorted({k for o in cfg["tuning"].get("mind") or [] for k in o}))
    for r in results["tuning"]["runs"]:
        settings = ", ".join(f"{k}={r['config'][k]}" for k in keys if k in r["config"])
        lines.append(f"| tune | {r['strategy']} | {r['seed']} | {settings} | {r['validation'] * 100:.1f} |")
    lines += ["", "Chosen: " + "; ".join(f"{s}: {v or 'config defaults'}" for s, v in results["tuning"]["chosen"].items()), ""]
    lines += ["## Calibrated world and run settings", "", "```yaml",
              yaml.safe_dump({k: cfg[k] for k in ("world", "synthesis", "train")}, sort_keys=False).rstrip(), "```", ""]  # fmt: skip
    old = path.read_text() if path.is_file() else ""
    found = ANALYSIS.search(old)
    analysis = found.group(0) if found else "<!-- BEGIN ANALYSIS -->\n(analysis to be written)\n<!-- END ANALYSIS -->"
    lines[2:2] = ["", analysis, ""]
    if history := HISTORY.search(old):
        lines += [history.group(0), ""]
    path.write_text("\n".join(lines) + "\n")


def busy_wall_seconds(records: list[dict[str, Any]]) -> float:
    """Wall time during which at least one run was executing: the union of the runs' intervals
    [finished_at - wall_seconds, finished_at], whatever invocation (or resumption) ran them."""
    spans = sorted((r["finished_at"] - r["wall_seconds"], r["finished_at"]) for r in records if r.get("finished_at"))
    total, end = 0.0, -math.inf
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def log_invocation(work: Path, wall_seconds: float, executed: int) -> list[dict[str, Any]]:
    """Append this invocation to ``<work>/invocations.jsonl`` and return them all: a resumed
    benchmark's total wall time is the sum over the invocations that did its runs."""
    path = work / "invocations.jsonl"
    with open(path, "a") as fh:
        fh.write(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_seconds": round(wall_seconds, 1),
                             "runs_executed": executed}) + "\n")  # fmt: skip
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    """A run's record for quality.json: everything but its per-window history."""
    return {k: v for k, v in record.items() if k != "history"}


# ====================================================================== main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="benchmark YAML (default: %(default)s)")
    parser.add_argument("--work", default=str(REPO_ROOT / "runs" / "quality"), help="runs and data (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each; default 2)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    parser.add_argument("--strategies", help="comma-separated strategies or variants (default: the config's)")
    parser.add_argument("--no-tune", action="store_true", help="skip tuning: the config's settings for every strategy")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, no tuning, results *.quick.json")
    parser.add_argument("--docs", default=str(DOCS), help="where results.md and the plots go (default: %(default)s)")
    parser.add_argument("--results", help="results JSON (default: benchmarks/results/quality.json, quick: quality.quick.json)")
    args = parser.parse_args(argv)

    cfg = load_config(args.config, quick=args.quick)
    if args.seeds:
        cfg["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.strategies:
        cfg["strategies"] = [s.strip() for s in args.strategies.split(",")]
        if unknown := set(cfg["strategies"]) - set(STRATEGIES) - set(cfg["variants"]):
            parser.error(f"--strategies: unknown {sorted(unknown)}")
    work = Path(args.work) / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    progress = make_progress()
    with progress:
        progress.console.print(f"quality: data (synthesize flow) into {work}")
        data = synthesize(cfg, work)
        progress.console.print("quality: stage-0 student (built once per world, cached)")
        student = build_student(cfg)
        strategies = list(cfg["strategies"])
        before = sum(1 for _ in (work / "runs").glob("*/result.json")) if (work / "runs").exists() else 0
        if args.no_tune or args.quick:
            chosen, searched = {s: {} for s in strategies}, []
        else:
            chosen, searched = tune(cfg, data, student, work, strategies, args.jobs, progress)
        runs = [make_run(cfg, data, student, "final", s, seed, chosen[s]).place(work)
                for seed in cfg["seeds"] for s in strategies]  # fmt: skip
        final = run_all(runs, args.jobs, progress, "comparison")
        executed = sum(1 for _ in (work / "runs").glob("*/result.json")) - before
    summary = summarise(final, strategies)
    curves = subset_curves(final)
    losses = loss_curves(final)
    comparison = compare_to("mind", {(r.strategy, r.seed): r.folder for r in runs}, (*SPLITS, "validation"))
    invocations = log_invocation(work, time.perf_counter() - t0, executed)
    everything = {r["key"]: r for r in (*searched, *final)}
    results = {
        "benchmark": "quality",
        "quick": args.quick,
        "config_file": os.path.relpath(args.config, REPO_ROOT),
        "config": cfg,
        "machine": machine_info(),
        "data": str(data),
        "student": str(student),
        "wall_seconds": time.perf_counter() - t0,
        "runs_executed": executed,
        "jobs": args.jobs,
        "invocations": invocations,
        "total_wall_seconds": sum(i["wall_seconds"] for i in invocations),
        "run_wall_seconds": sum(r["wall_seconds"] for r in everything.values()),
        "busy_wall_seconds": busy_wall_seconds(list(everything.values())),
        "all_runs": sorted(everything),
        "runs": [_brief(r) for r in final],  # each run's full history stays in its result.json
        "tuning": {"chosen": chosen, "runs": [_brief(r) for r in searched]},
        "summary": summary,
        "mind_subset_over_steps": curves,
        "mind_losses_over_steps": losses,
        "comparison": {"target": "mind", "vs": comparison},
    }
    if args.results:
        path = Path(args.results)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rnd(results), indent=2, default=str) + "\n")
    else:
        path = write_results("quality", results, quick=args.quick)
    docs = Path(args.docs)
    if not args.quick:
        images = plot(summary, curves, docs / "img", losses)
        write_markdown(rnd(results), images, docs / "results.md")
    print(f"full results: {os.path.relpath(path, REPO_ROOT)}", file=sys.stderr)
    emit({s: {sp: e[sp]["mean"] for sp in SPLITS} for s, e in summary.items()} | {"wall_s": results["wall_seconds"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
