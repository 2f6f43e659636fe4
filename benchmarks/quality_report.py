"""The quality benchmark's report: per-regime summaries at equal steps and along the shared FLOP
grid, paired comparisons, MIND's ablations and dynamics, plots and ``docs/results.md``."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from benchmarks.quality_stats import compare_to

SPLITS = ("test", "ood_steps", "ood_template", "retention")
TARGET = "mind"
ANALYSIS = re.compile(r"<!-- BEGIN ANALYSIS -->.*?<!-- END ANALYSIS -->", re.S)
HISTORY = re.compile(r"<!-- BEGIN HISTORY -->.*?<!-- END HISTORY -->", re.S)
LATENT = re.compile(r"<!-- BEGIN LATENT -->.*?<!-- END LATENT -->", re.S)  # written by the latent analysis
INTERFERENCE = re.compile(r"<!-- BEGIN INTERFERENCE -->.*?<!-- END INTERFERENCE -->", re.S)  # benchmarks.interference
COMPUTE_KEYS = ("flops", "backward_tokens", "forward_tokens")


# ====================================================================== numbers
def mean_std(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": math.nan, "std": 0.0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _mean_or_none(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def curve_point_records(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One quality.json record per FLOP-grid point of a run's learning curve (``budget`` "flops:<g>")."""
    out = []
    for p in run.get("curve") or []:
        out.append({
            "key": run["key"], "phase": run["phase"], "regime": run["regime"], "strategy": run["strategy"],
            "seed": run["seed"], "budget": f"flops:{p['grid_flops']:.4g}", "metrics": p["accuracy"], "n": p["n"],
            "step": p["step"], "flops": p["flops"], "config": run["config"],
            "trained_tokens": None,  # the trainer counts tokens per run, not per curve point
        })  # fmt: skip
    return out


def summarise(runs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Per strategy (or variant): mean and std over seeds of every split, validation, compute."""
    out: dict[str, Any] = {}
    for s in names:
        mine = [r for r in runs if r["strategy"] == s]
        if not mine:
            continue
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in mine), "phase": mine[0]["phase"]}
        for split in SPLITS:
            entry[split] = mean_std([r["metrics"][split] for r in mine if split in r["metrics"]])
        entry["validation"] = mean_std([r["validation"] for r in mine if r.get("validation") is not None])
        entry["trained_tokens"] = _mean_or_none([r.get("trained_tokens") for r in mine])
        for key in COMPUTE_KEYS:
            entry[key] = _mean_or_none([r.get("compute", {}).get(key) for r in mine])
        entry["wall_seconds"] = statistics.fmean(r["wall_seconds"] for r in mine)
        out[s] = entry
    return out


def flop_curves(runs: list[dict[str, Any]], folders: dict[str, Path], headline: list[str], splits: list[str],
                variants: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """Accuracy along the shared FLOP grid: per strategy and grid point, mean and std over seeds;
    the points every headline strategy reached in every finished seed (``shared``); MIND's paired
    differences at the largest shared point (from the points' saved predictions); and MIND's (and
    each headline ``variants`` entry's) at the largest point it and each other strategy reached."""
    curves = [r for r in runs if r["phase"] == "final" and r.get("curve")]
    if not curves:
        return {}
    points = sorted({p["grid_flops"] for r in curves for p in r["curve"]})
    per: dict[str, Any] = {}
    for s in headline:
        mine = [r for r in curves if r["strategy"] == s]
        if not mine:
            continue
        entry: dict[str, Any] = {"seeds": len(mine)}
        for split in splits:
            series = []
            for g in points:
                vals = [p["accuracy"][split] for r in mine for p in r["curve"] if p["grid_flops"] == g and split in p["accuracy"]]
                series.append(mean_std(vals) | {"runs": len(vals)} if vals else None)
            entry[split] = series
        entry["step"] = [_mean_or_none([p["step"] for r in mine for p in r["curve"] if p["grid_flops"] == g]) for g in points]
        per[s] = entry
    shared = [g for g in points if per and all(
        all(any(p["grid_flops"] == g for p in r["curve"]) for r in curves if r["strategy"] == s) for s in per)]  # fmt: skip
    out: dict[str, Any] = {"grid": points, "shared": shared, "splits": splits, "strategies": per}
    if shared and TARGET in per:
        out["paired_at"] = shared[-1]
        out["vs"] = _paired_at(curves, folders, shared[-1], list(per), splits)
        # each baseline also at the largest point it and MIND both reached in every seed: the
        # comparison is not capped by the cheapest strategy's budget; the same for each headline variant
        out["pairwise"] = _pairwise(curves, folders, points, list(per), TARGET, splits)
    if shared:
        out["variants_pairwise"] = {v: _pairwise(curves, folders, points, list(per), v, splits) for v in variants if v in per}
    return out


def _pairwise(curves: list[dict[str, Any]], folders: dict[str, Path], points: list[float], names: list[str],
              target: str, splits: list[str]) -> dict[str, Any]:  # fmt: skip
    """``target`` minus each other strategy at the largest grid point both reached in every seed."""
    out = {}
    for other in names:
        both = [g for g in points if all(any(p["grid_flops"] == g for p in r["curve"])
                                         for r in curves if r["strategy"] in (target, other))]  # fmt: skip
        if other != target and both:
            vs = _paired_at(curves, folders, both[-1], [target, other], splits, target).get(other)
            if vs:
                out[other] = {"flops": both[-1], "vs": vs}
    return out


def _paired_at(curves: list[dict[str, Any]], folders: dict[str, Path], g: float, strategies: list[str],
               splits: list[str], target: str = TARGET) -> dict[str, Any]:  # fmt: skip
    """``target`` (MIND) minus each of ``strategies`` at grid point ``g``, paired over the points' saved predictions."""
    evals = {(r["strategy"], r["seed"]): folders[r["key"]] / "out" / p["predictions"]
             for r in curves if r["key"] in folders and r["strategy"] in strategies
             for p in r["curve"] if p["grid_flops"] == g}  # fmt: skip
    evals = {k: v for k, v in evals.items() if v.is_dir()}
    return compare_to(target, evals, tuple(splits)) if evals else {}


def _mean_series(per_seed: list[list[dict[str, Any]]], n: int, field: str) -> dict[str, list[float | None]]:
    """Per view, the mean over seeds of ``entry[field][view]`` at each of the first ``n`` history entries."""
    views = sorted({v for hist in per_seed for e in hist[:n] for v in e.get(field) or {}})
    return {v: [_mean_or_none([h[i][field].get(v) for h in per_seed if h[i].get(field)]) for i in range(n)] for v in views}


def mind_dynamics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """MIND's per-view in-subset share, weight alpha and L_p, its subset size, consistency term and
    the MetaNet's ranking agreement (top-1, Spearman) per history window, averaged over seeds."""
    per_seed = [r["history"] for r in runs if r["strategy"] == TARGET and r["phase"] == "final" and r.get("history")]
    n = min((len(h) for h in per_seed), default=0)
    if not n:
        return {}
    out: dict[str, Any] = {"steps": [e["step"] for e in per_seed[0][:n]], "seeds": len(per_seed)}
    for field in ("in_subset", "alpha", "L_p"):
        out[field] = _mean_series(per_seed, n, field)
    for key in ("subset_size", "consistency", "meta_loss", "meta_top1", "meta_spearman"):
        out[key] = [_mean_or_none([h[i].get(key) for h in per_seed]) for i in range(n)]
    return out


def build_report(cfg: dict[str, Any], regimes: dict[str, Any], final: list[dict[str, Any]], folders: dict[str, Path],
                 strategies: list[str]) -> dict[str, Any]:  # fmt: skip
    """Everything quality.json reports beyond the raw runs, per regime."""
    ablations = list(cfg.get("ablations", {}).get("variants", []))
    splits = list(cfg.get("curve", {}).get("splits", ["test", "ood_steps"]))
    variants = tuple(s for s in strategies if s in cfg.get("variants", {}))  # headline variants
    records, summary, comparison, curves, dynamics, devices = [], {}, {}, {}, {}, {}
    for r in final:
        records.append({k: v for k, v in r.items() if k not in ("history", "curve")})
        records += curve_point_records(r)
    for name in regimes:
        mine = [r for r in final if r["regime"] == name]
        summary[name] = summarise(mine, strategies + [a for a in ablations if a not in strategies])
        evals = {(r["strategy"], r["seed"]): folders[r["key"]] / "out" / "eval" for r in mine if r["key"] in folders}
        comparison[name] = {"target": TARGET, "vs": compare_to(TARGET, evals, (*SPLITS, "validation"))} if evals else {}
        if evals:  # a headline variant (a strategy with fixed settings) gets its own paired table
            comparison[name]["variants"] = {v: compare_to(v, evals, (*SPLITS, "validation")) for v in variants}
        curves[name] = flop_curves(mine, folders, strategies, splits, variants)
        dynamics[name] = mind_dynamics(mine)
        devices[name] = dict(Counter(r.get("device", "cpu") for r in mine))  # records before --device said "cpu"
    return {"records": records, "summary": summary, "comparison": comparison, "curves": curves,
            "mind_dynamics": dynamics, "devices": devices}  # fmt: skip


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


# ====================================================================== plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_regime(name: str, summary: dict[str, Any], curves: dict[str, Any], dyn: dict[str, Any], out_dir: Path) -> list[Path]:
    """The regime's plots: accuracy bars, accuracy vs FLOPs, MIND's subset/alpha/L_p, MetaNet agreement."""
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    names = list(summary)
    if names:
        fig, ax = plt.subplots(figsize=(11, 4.5))
        width = 0.8 / len(names)
        colors = plt.get_cmap("tab20").colors  # up to 20 entries without a repeated colour
        for i, s in enumerate(names):
            xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(SPLITS))]
            ax.bar(xs, [summary[s][sp]["mean"] * 100 for sp in SPLITS], width, color=colors[i % len(colors)],
                   yerr=[summary[s][sp]["std"] * 100 for sp in SPLITS], capsize=2, label=s)  # fmt: skip
        ax.set_xticks(range(len(SPLITS)), SPLITS)
        ax.set_ylabel("accuracy (%), mean ± std over seeds")
        ax.set_title(f"Regime {name}: accuracy at equal optimizer steps")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the bars, not over them
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        paths.append(out_dir / f"quality-{name}-accuracy.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if curves:
        splits = curves["splits"]
        fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4), squeeze=False)
        for ax, split in zip(axes[0], splits, strict=True):
            for s, entry in curves["strategies"].items():
                pts = [(g, e) for g, e in zip(curves["grid"], entry[split], strict=True) if e]
                if pts:
                    ax.errorbar([g for g, _ in pts], [e["mean"] * 100 for _, e in pts], yerr=[e["std"] * 100 for _, e in pts],
                                marker="o", ms=3, capsize=2, label=s)  # fmt: skip
            if curves["shared"]:
                ax.axvspan(curves["shared"][0], curves["shared"][-1], color="grey", alpha=0.1)
            ax.set_xscale("log")
            ax.set_xlabel("training FLOPs (trainer's account)")
            ax.set_ylabel(f"{split} accuracy (%)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"Regime {name}: accuracy vs training FLOPs (shaded: the grid every strategy reached)")
        fig.tight_layout()
        paths.append(out_dir / f"quality-{name}-flops.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    if dyn:
        every = f"mean of {dyn['seeds']} seeds"
        for field, ylabel, scale, log in (("in_subset", "candidates kept in the subset (%)", 100, False),
                                          ("alpha", "mean weight alpha when kept", 1, False),
                                          ("L_p", "L_p (nats/token)", 1, True)):  # fmt: skip
            series = {v: [math.nan if y is None else y * scale for y in ys] for v, ys in dyn[field].items()}
            if not any(not math.isnan(y) for ys in series.values() for y in ys):
                continue
            paths.append(_lines(plt, dyn["steps"], series, ylabel, f"Regime {name}: MIND per-view {field} ({every})",
                                out_dir / f"quality-{name}-mind-{field.lower().replace('_', '')}.png", log))  # fmt: skip
        agreement = {k: [math.nan if y is None else y for y in dyn[k]] for k in ("meta_top1", "meta_spearman")}
        if any(not math.isnan(y) for ys in agreement.values() for y in ys):
            paths.append(_lines(plt, dyn["steps"], agreement, "agreement with the realised losses",
                                f"Regime {name}: MetaNet ranking agreement ({every})",
                                out_dir / f"quality-{name}-mind-ranking.png", False))  # fmt: skip
    return paths


def _lines(plt: Any, steps: list[int], series: dict[str, list[float]], ylabel: str, title: str, path: Path, log: bool) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4))
    for label, ys in series.items():
        ax.plot(steps, ys, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(ncol=3, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ====================================================================== markdown
def _pct(ms: dict[str, float] | None) -> str:
    return "–" if not ms or math.isnan(ms["mean"]) else f"{ms['mean'] * 100:.1f} ± {ms['std'] * 100:.1f}"


def _diff(d: dict[str, Any] | None) -> str:
    return "–" if not d else f"{d['diff'] * 100:+.1f} [{d['ci95'][0] * 100:+.1f}, {d['ci95'][1] * 100:+.1f}]"


def _selection_text(sel: dict[str, Any]) -> str:
    """A hard-first selection's counts in words (pipeline.select's ``Selection.counts``)."""
    by_failures = ", ".join(f"{n} with {k} failed" for k, n in sel.get("failures", {}).items())
    return (f", selected hard-first: {sel['selected_hard']} of {sel['available_hard']} hard and {sel['selected_easy']} of "
            f"{sel['available_easy']} easy questions ({by_failures} rationales)")


def _devices_text(devices: dict[str, int]) -> str:
    """Where the regime's runs trained (all in fp32), e.g. " Runs: 12 on cpu, 19 on cuda: NVIDIA H100."."""
    if not devices:
        return ""
    return " Runs (fp32 everywhere): " + ", ".join(f"{n} on {d}" for d, n in sorted(devices.items())) + "."


def _regime_section(name: str, results: dict[str, Any], images: list[Path]) -> list[str]:
    cfg = results["config"]
    summary = results["summary"].get(name, {})
    info = results["regimes"][name]
    steps = {**cfg["train"], **(info.get("train") or {})}
    lines = [f"## Regime `{name}`", "",
             f"{info['questions']} training questions" + (_selection_text(info["selection"]) if info.get("selection")
                                                          else " (every question of the pool)")
             + f"; {steps['max_steps']} steps x {steps['per_device_train_batch_size']} questions."
             + _devices_text((results.get("devices") or {}).get(name) or {}), "",
             "### Equal optimizer steps (%, mean ± std over seeds)", "",
             "| strategy | seeds | test (ID) | ood_steps | ood_template | retention | validation | trained tokens | FLOPs |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s, e in summary.items():
        tag = " (ablation)" if e["phase"] == "ablation" else ""
        tok = f"{e['trained_tokens']:,.0f}" if e.get("trained_tokens") else "–"
        flops = f"{e['flops']:.3g}" if e.get("flops") else "–"
        lines.append(f"| {s}{tag} | {len(e['seeds'])} | {' | '.join(_pct(e[sp]) for sp in (*SPLITS, 'validation'))} "
                     f"| {tok} | {flops} |")
    comparison = results["comparison"].get(name) or {}
    tables = {"MIND": comparison.get("vs") or {}, **{f"`{v}`": t for v, t in (comparison.get("variants") or {}).items()}}
    for who, vs in tables.items():
        if not vs:
            continue
        lines += ["", f"{who} minus each other strategy, paired (percentage points; 95% interval from a bootstrap over "
                  "seeds, then questions; seeds both have):", "",
                  "| vs | seeds | " + " | ".join((*SPLITS, "validation")) + " |", "|---" * (len(SPLITS) + 3) + "|"]  # fmt: skip
        for other, per_split in vs.items():
            seeds = next((d["seeds"] for d in per_split.values() if d), 0)
            lines.append(f"| {other} | {seeds} | " + " | ".join(_diff(per_split.get(sp)) for sp in (*SPLITS, "validation")) + " |")
    curves = results["curves"].get(name) or {}
    if curves:
        shared = curves["shared"]
        lines += ["", f"### Equal training FLOPs ({', '.join(curves['splits'])}; {cfg['curve'].get('questions')} "
                  "questions each; %, mean ± std over seeds)", "",
                  "Each run is evaluated when its cumulative training FLOPs first reach a point of the shared grid "
                  "(mid-schedule: the learning rate has not decayed there). Rows: the grid points every headline "
                  "strategy reached in every seed.", ""]  # fmt: skip
        names = list(curves["strategies"])
        for split in curves["splits"]:
            lines += [f"| FLOPs ({split}) | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
            for g in shared:
                i = curves["grid"].index(g)
                lines.append(f"| {g:.3g} | " + " | ".join(_pct(curves["strategies"][s][split][i]) for s in names) + " |")
            lines.append("")
        if curves.get("vs"):
            lines += [f"MIND minus each other strategy at {curves['paired_at']:.3g} FLOPs (paired):", "",
                      "| vs | " + " | ".join(curves["splits"]) + " |", "|---" * (len(curves["splits"]) + 1) + "|"]  # fmt: skip
            for other, per_split in curves["vs"].items():
                lines.append(f"| {other} | " + " | ".join(_diff(per_split.get(sp)) for sp in curves["splits"]) + " |")
            lines.append("")
        pairwise = {"MIND": curves.get("pairwise") or {},
                    **{f"`{v}`": t for v, t in (curves.get("variants_pairwise") or {}).items()}}
        for who, table in pairwise.items():
            if not table:
                continue
            lines += [f"{who} minus each other strategy at the largest grid point both reached in every seed "
                      "(paired; not capped by the cheapest strategy):", "",
                      "| vs | FLOPs | " + " | ".join(curves["splits"]) + " |", "|---" * (len(curves["splits"]) + 2) + "|"]  # fmt: skip
            for other, e in table.items():
                lines.append(f"| {other} | {e['flops']:.3g} | " + " | ".join(_diff(e["vs"].get(sp)) for sp in curves["splits"]) + " |")
            lines.append("")
    dyn = results["mind_dynamics"].get(name) or {}
    if dyn:
        n = len(dyn["steps"])
        picks = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
        lines += ["", f"### MIND's dynamics (mean of {dyn['seeds']} seeds)", "",
                  "| step | subset size | consistency | meta top-1 | meta Spearman | "
                  + " | ".join(f"{v} in subset" for v in dyn["in_subset"]) + " |",
                  "|---" * (5 + len(dyn["in_subset"])) + "|"]  # fmt: skip
        for i in picks:
            def f(x: float | None, pct: bool = False) -> str:
                return "–" if x is None else (f"{x * 100:.0f}%" if pct else f"{x:.3g}")
            lines.append(f"| {dyn['steps'][i]} | {f(dyn['subset_size'][i])} | {f(dyn['consistency'][i])} | "
                         f"{f(dyn['meta_top1'][i])} | {f(dyn['meta_spearman'][i])} | "
                         + " | ".join(f(dyn["in_subset"][v][i], True) for v in dyn["in_subset"]) + " |")  # fmt: skip
    lines.append("")
    for img in images:
        lines += [f"![{img.stem}](img/{img.name})", ""]
    return lines


def write_markdown(results: dict[str, Any], docs: Path) -> None:
    """``docs/results.md`` and its plots (the ANALYSIS, INTERFERENCE, LATENT and HISTORY blocks of the old file are kept)."""
    cfg = results["config"]
    path = docs / "results.md"
    lines = [
        "# Quality benchmark results",
        "",
        "Generated by `python -m benchmarks.quality` (see `benchmarks/quality.py`; config "
        f"`{results['config_file']}`). Every number below is in `benchmarks/results/quality.json`.",
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs. Runs finished: "
        f"{results['runs_finished']} of {results['runs_planned']} planned (+ {len(results['tuning']['runs'])} tuning runs); "
        f"benchmark wall time so far {results['busy_wall_seconds'] / 60:.0f} min ({results['jobs']} runs at a time; "
        f"run times add up to {results['run_wall_seconds'] / 60:.0f} min).",
        "",
    ]
    old = path.read_text() if path.is_file() else ""
    found = ANALYSIS.search(old)
    lines += [found.group(0) if found else "<!-- BEGIN ANALYSIS -->\n(analysis to be written)\n<!-- END ANALYSIS -->", ""]
    stage0 = results.get("stage0") or {}
    if stage0.get("retention_accuracy"):
        lines += [f"Stage-0 student: {stage0['retention_accuracy'] * 100:.1f}% retention accuracy before distillation "
                  f"({stage0.get('retention_n')} questions); retention below is after distillation.", ""]
    for name in results["regimes"]:
        images = plot_regime(name, results["summary"].get(name, {}), results["curves"].get(name) or {},
                             results["mind_dynamics"].get(name) or {}, docs / "img")  # fmt: skip
        lines += _regime_section(name, results, images)
    lines += ["## Tuning (validation split only)", "",
              "| regime | strategy | settings | validation |", "|---|---|---|---|"]  # fmt: skip
    keys = ("learning_rate", *sorted({k for o in cfg["tuning"].get("mind") or [] for k in o}))
    for r in results["tuning"]["runs"]:
        settings = ", ".join(f"{k}={r['config'][k]}" for k in keys if k in r["config"])
        lines.append(f"| {r['regime']} | {r['strategy']} | {settings} | {r['validation'] * 100:.1f} |")
    lines += ["", "Chosen: " + "; ".join(f"{reg}/{s}: {v or 'config defaults'}" for reg, per in results["tuning"]["chosen"].items()
                                          for s, v in per.items()), ""]  # fmt: skip
    lines += ["## World and run settings", "", "```yaml",
              yaml.safe_dump({k: cfg[k] for k in ("world", "synthesis", "regimes", "train", "curve")}, sort_keys=False).rstrip(),
              "```", ""]  # fmt: skip
    for block in (INTERFERENCE, LATENT, HISTORY):
        if found := block.search(old):
            lines += [found.group(0), ""]
    docs.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
