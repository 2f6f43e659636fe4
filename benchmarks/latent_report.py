"""The latent-space analysis's outputs: ``latent.json``, the t-SNE plots, the LATENT block of
``docs/results.md`` (only that block is rewritten) and each analysed run's ``latent/`` folder."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import REPO_ROOT, replace_block, rnd, write_json

STAGE0 = "stage0"
SINGLE = "single"  # a single-view student's name: f"{SINGLE}-{view}"
BASELINES = ("golden", "all", "mcc_kd")
LATENT = re.compile(r"<!-- BEGIN LATENT -->.*?<!-- END LATENT -->", re.S)
HISTORY_START = "<!-- BEGIN HISTORY -->"


# ====================================================================== everything
def write_outputs(results: dict[str, Any], path: Path, docs: Path, points: dict[str, Any], per: dict[str, Any],
                  students: dict[str, Any], cfg: dict[str, Any], progress: Any, t0: float) -> None:  # fmt: skip
    """t-SNE every point set, write the plots, each run's ``latent/`` folder, the JSON and the LATENT block."""
    seed, perplexity = int(cfg["tsne"]["seed"]), float(cfg["tsne"]["perplexity"])
    views = results["heldout"]["views"]
    sets = _point_sets(points)
    task = progress.add_task("latent: t-SNE and plots", total=len(sets))
    maps = {}
    from distill.latent import tsne_2d

    for name, p in sets.items():
        maps[name] = tsne_2d(p.x, seed, perplexity)
        progress.advance(task)
    img = docs / "img"
    images = plot_figures(maps, sets, views, results, img)
    for name, s in students.items():
        if name != STAGE0 and name in maps:
            write_run_folder(s.folder / "latent", name, maps[name], sets[name], views, results, per[name], cfg)
    results["images"] = [shown_path(p) for p in images]
    results["wall_seconds"] = time.perf_counter() - t0
    write_json(path, results)
    write_markdown(results, docs / "results.md", images)


@dataclasses.dataclass
class Points:
    """A student's pooled states of the held-out set, row-aligned with ``views`` and ``questions``."""

    x: np.ndarray
    views: np.ndarray
    questions: np.ndarray


def single_view_points(single: dict[str, Points]) -> Points:
    """Each single-view student's states of its own view's rationales, together (the paper's figure)."""
    parts = [(p.x[p.views == v], p.views[p.views == v], p.questions[p.views == v]) for v, p in sorted(single.items())]
    return Points(*(np.concatenate([part[i] for part in parts]) for i in range(3)))


def _point_sets(points: dict[str, Any]) -> dict[str, Any]:
    """Every point set to map: each student's held-out states, and the single-view figure's."""
    single = {n.removeprefix(f"{SINGLE}-"): p for n, p in points.items() if n.startswith(f"{SINGLE}-")}
    sets = dict(points)
    if len(single) > 1:
        sets["single_view"] = single_view_points(single)
    return sets


# ====================================================================== plots
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(views: list[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {v: cmap(i % 10) for i, v in enumerate(views)}


def _scatter(ax: Any, xy: np.ndarray, labels: np.ndarray, colors: dict[str, Any], title: str) -> None:
    for v, c in colors.items():
        keep = labels == v
        if keep.any():
            ax.scatter(xy[keep, 0], xy[keep, 1], s=7, color=c, label=v, alpha=0.8, linewidths=0)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _caption(r: dict[str, Any] | None) -> str:
    if not r:
        return ""
    text = f"silhouette {r['silhouette']:.2f}, k-NN purity {r['knn_purity']:.0%} (chance {r['knn_chance']:.0%})"
    if "invariance" in r:
        text += f"\ninvariance {r['invariance']['value']:+.3f}"
    return text


def plot_figures(maps: dict[str, np.ndarray], sets: dict[str, Any], views: list[str], results: dict[str, Any],
                 out: Path) -> list[Path]:  # fmt: skip
    """``latent-single-view.png`` (the single-view students on their own views beside the stage-0
    student on the same texts), ``latent-strategies.png`` (one panel per student, colour = view) and
    ``latent-measures.png`` (silhouette and invariance with their intervals)."""
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    colors, paths = _colors(views), []
    sv = results.get("single_view") or {}
    ref = results.get("reference", {}).get(STAGE0)
    if "single_view" in maps:
        panels = [("single_view", f"each single-view student on its own view\n{_caption(sv)}")]
        if STAGE0 in maps:
            panels.append((STAGE0, f"the stage-0 student on the same texts\n{_caption(ref)}"))
        paths.append(_panels(plt, panels, maps, sets, colors, out / "latent-single-view.png",
                             "Single-view students: t-SNE of pooled last-layer states, colour = view"))  # fmt: skip
    names = [n for n in (STAGE0, *results["strategies"]) if n in maps]
    if names:
        panels = [(n, f"{n}\n{_caption(results['strategies'].get(n) or ref)}") for n in names]
        paths.append(_panels(plt, panels, maps, sets, colors, out / "latent-strategies.png",
                             "Held-out rationales of every view in each student: t-SNE, colour = view"))  # fmt: skip
    rows = [(n, r) for n, r in [(STAGE0, ref), *results["strategies"].items()] if r]
    if rows:
        paths.append(_measures_plot(plt, rows, out / "latent-measures.png"))
    return paths


def _panels(plt: Any, panels: list[tuple[str, str]], maps: dict[str, np.ndarray], sets: dict[str, Any],
            colors: dict[str, Any], path: Path, title: str) -> Path:  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (name, caption) in zip(axes[0], panels, strict=True):
        _scatter(ax, maps[name], sets[name].views, colors, caption)
    axes[0][0].legend(fontsize=7, markerscale=2, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _measures_plot(plt: Any, rows: list[tuple[str, dict[str, Any]]], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(rows) + 1.6))
    ys = np.arange(len(rows))
    for ax, (title, get) in zip(axes, (
        ("view silhouette (cosine; lower = views less separable)", lambda r: (r["silhouette"], r["silhouette_ci95"])),
        ("perspective invariance (higher = a question's views closer)", lambda r: (r["invariance"]["value"], r["invariance"]["ci95"])),
    ), strict=True):  # fmt: skip
        vals = [get(r) for _, r in rows]
        centre = np.array([v for v, _ in vals])
        err = np.array([[v - lo for v, (lo, _) in vals], [hi - v for v, (_, hi) in vals]])
        ax.errorbar(centre, ys, xerr=err, fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(ys, [n for n, _ in rows])
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Per student, with 95% bootstrap intervals over held-out questions", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, else absolute."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(Path(path).resolve())


def write_run_folder(folder: Path, name: str, xy: np.ndarray, points: Any, views: list[str], results: dict[str, Any],
                     measured: Any, cfg: dict[str, Any]) -> None:  # fmt: skip
    """A training run's own analysis, beside its model: ``latent.json`` (its measures) and ``tsne.png``."""
    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    report = measured.report(int(cfg["measures"]["bootstrap"]), int(cfg["measures"]["seed"]))
    fig, ax = plt.subplots(figsize=(5, 5))
    _scatter(ax, xy, points.views, _colors(views), f"{name}: held-out rationales, colour = view\n{_caption(report)}")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(folder / "tsne.png", dpi=100)
    plt.close(fig)
    record = {"student": name, "analysis": "python -m benchmarks.latent", "finished": datetime.now(UTC).isoformat(timespec="seconds"),
              "heldout": results["heldout"], "measures": report, "images": ["tsne.png"]}  # fmt: skip
    (folder / "latent.json").write_text(json.dumps(rnd(record), indent=1) + "\n")


# ====================================================================== markdown
def _ci(ci: list[float]) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _pci(ci: list[float]) -> str:
    return f"[{ci[0]:.1%}, {ci[1]:.1%}]"


def _ci3(ci: list[float]) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def direction(d: dict[str, Any]) -> str:
    """``higher`` / ``lower`` when the 95% interval of a difference excludes 0, else ``indistinguishable``."""
    lo, hi = d["ci95"]
    return "higher" if lo > 0 else "lower" if hi < 0 else "indistinguishable"


def compared(d: dict[str, Any]) -> str:
    """``higher than`` / ``lower than`` / ``not distinguishable from`` by a difference's interval."""
    return {"higher": "higher than", "lower": "lower than"}.get(direction(d), "not distinguishable from")


def _row(name: str, r: dict[str, Any]) -> str:
    inv = r["invariance"]
    return (f"| {name} | {r['silhouette']:.3f} {_ci(r['silhouette_ci95'])} | {r['knn_purity']:.1%} ({r['knn_chance']:.1%}) "
            f"| {inv['value']:+.3f} {_ci3(inv['ci95'])} | {inv['same_question']:.3f} | {inv['same_view']:.3f} "
            f"| {_acc(r.get('validation'))} |")  # fmt: skip


def _acc(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


def single_view_lines(sv: dict[str, Any]) -> list[str]:
    """The single-view figure's numbers, its two controls and what they say."""
    if not sv:
        return ["The single-view students are not all trained yet: no single-view numbers.", ""]
    separated = sv["silhouette_ci95"][0] > 0 and sv["knn_purity_ci95"][0] > sv["knn_chance"]
    lines = [
        f"Each single-view student on the held-out rationales of its own view (the paper's figure, "
        f"{sv['points']} points): silhouette **{sv['silhouette']:.3f}** {_ci(sv['silhouette_ci95'])}, k-NN view purity "
        f"**{sv['knn_purity']:.1%}** {_pci(sv['knn_purity_ci95'])} against {sv['knn_chance']:.1%} by chance: the clusters "
        f"**{'are' if separated else 'are not'}** separated.",
        "",
        "| point set | labels | silhouette | k-NN purity (chance) |",
        "| --- | --- | --- | --- |",
        f"| single-view students, each on its own view | view = student | {sv['silhouette']:.3f} {_ci(sv['silhouette_ci95'])} "
        f"| {sv['knn_purity']:.1%} ({sv['knn_chance']:.1%}) |",
    ]  # fmt: skip
    controls = sv.get("controls", {})
    texts, weights = controls.get("stage0_same_texts"), controls.get("same_texts_by_student")
    if texts:
        lines.append(f"| stage-0 student (never distilled), the same texts | view | {texts['silhouette']:.3f} "
                     f"{_ci(texts['silhouette_ci95'])} | {texts['knn_purity']:.1%} ({texts['knn_chance']:.1%}) |")  # fmt: skip
    if weights:
        lines.append(f"| single-view students, identical texts (per text view, averaged) | student | "
                     f"{weights['silhouette']:.3f} {_ci(weights['silhouette_ci95'])} | {weights['knn_purity']:.1%} "
                     f"({weights['knn_chance']:.1%}) |")  # fmt: skip
    lines.append("")
    if texts and weights:
        lines += [_source_sentence(separated, texts, weights), ""]
    return lines


def _source_sentence(separated: bool, texts: dict[str, Any], weights: dict[str, Any]) -> str:
    """Where the figure's separation comes from, by the two controls."""
    in_texts, in_weights = texts["silhouette_ci95"][0] > 0, weights["silhouette_ci95"][0] > 0
    d = texts["single_view_minus_stage0"]["silhouette"]
    controls = (f"the never-distilled student {'separates' if in_texts else 'does not separate'} the same texts by view, "
                f"and identical texts through the students {'come' if in_weights else 'do not come'} out separated "
                f"by student")  # fmt: skip
    versus = (f"The figure's silhouette is {compared(d)} the stage-0 student's on the same texts (paired "
              f"difference {d['value']:+.3f} {_ci3(d['ci95'])}).")  # fmt: skip
    if not separated:
        return f"Controls: {controls}. {versus}"
    source = {(True, True): "both the texts' styles and the students' weights", (True, False): "the texts' styles",
              (False, True): "the students' weights", (False, False): "neither control alone"}[(in_texts, in_weights)]
    return (f"Where the separation comes from: {source} ({controls}). {versus} A t-SNE of single-view students "
            "shows both together; only the paired difference measures what distillation on one view added.")  # fmt: skip


def strategy_lines(results: dict[str, Any]) -> list[str]:
    """The per-student table, MIND's paired differences and what they say about internalisation."""
    rows = [(STAGE0 + " (before distillation)", results["reference"].get(STAGE0))]
    rows += [(n, r) for n, r in results["strategies"].items()]
    rows = [(n, r) for n, r in rows if r]
    if not rows:
        return ["No strategy student measured yet.", ""]
    lines = [
        "| student | view silhouette [95% CI] | k-NN view purity (chance) | invariance [95% CI] | same question, "
        "across views | same view, across questions | validation accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(_row(n, r) for n, r in rows),
        "",
    ]  # fmt: skip
    strategies = results["strategies"]
    separable = [n for n, r in strategies.items() if r["silhouette_ci95"][0] > 0]
    positive = [n for n, r in strategies.items() if r["invariance"]["ci95"][0] > 0]
    negative = [n for n, r in strategies.items() if r["invariance"]["ci95"][1] < 0]
    lines.append(
        f"Views stay separable (silhouette interval above 0) in {_which(separable, list(strategies))}. Invariance is above 0 (a question's representations closer across views than "
        f"to other questions in the same view: content over style) in {_names(positive) or 'none'}, below 0 "
        f"(style over content) in {_names(negative) or 'none'}."
    )  # fmt: skip
    lines.append("")
    mind = results.get("comparison", {}).get("mind_minus")
    if mind:
        lines += ["MIND minus each other student, paired over the same held-out questions:", "",
                  "| vs | invariance | view silhouette | k-NN view purity |", "| --- | --- | --- | --- |"]  # fmt: skip
        for other, d in mind.items():
            lines.append(f"| {other} | {d['invariance']['value']:+.3f} {_ci3(d['invariance']['ci95'])} "
                         f"| {d['silhouette']['value']:+.3f} {_ci3(d['silhouette']['ci95'])} "
                         f"| {d['knn_purity']['value']:+.3f} {_ci3(d['knn_purity']['ci95'])} |")  # fmt: skip
        invariances = {n: r["invariance"]["value"] for n, r in strategies.items()}
        lines += ["", internalisation_verdict(mind, invariances), ""]
    return lines


def internalisation_verdict(mind: dict[str, dict[str, Any]], invariances: dict[str, float]) -> str:
    """What MIND's paired differences from the baselines say about 'internalisation' (``invariances``:
    each student's invariance, for the scale of the differences)."""
    baselines = [b for b in BASELINES if b in mind]
    if not baselines:
        return "No baseline student to compare MIND with."
    inv = {b: direction(mind[b]["invariance"]) for b in baselines}
    sil = {b: direction(mind[b]["silhouette"]) for b in baselines}
    parts = [f"{b}: invariance {inv[b]}, view separation {sil[b]}" for b in baselines]
    biggest = max((mind[b]["invariance"]["value"] for b in baselines), key=abs)
    scale = float(np.mean([abs(v) for v in invariances.values()])) if invariances else float("nan")
    if all(inv[b] == "higher" and sil[b] == "lower" for b in baselines):
        verdict = ("these numbers point the way the claim predicts: MIND's representations are more "
                   "perspective-invariant and less separable by view than every baseline's")  # fmt: skip
    elif all(inv[b] == "lower" or sil[b] == "higher" for b in baselines):
        verdict = ("these numbers point against it: against every baseline MIND is less perspective-invariant or "
                   "more separable by view")  # fmt: skip
    elif all(inv[b] == "indistinguishable" and sil[b] == "indistinguishable" for b in baselines):
        verdict = "these numbers do not distinguish MIND from the baselines in either measure"
    else:
        verdict = "these numbers are mixed: they do not single MIND out as the student that internalised reasoning"
    return (f"**Internalisation.** If MIND internalised reasoning rather than one style, its representation of a "
            f"question should depend less on the view it is written in than the baselines' do: higher invariance, "
            f"lower view separation. MIND against {'; '.join(parts)} (95% intervals over questions): {verdict}. "
            f"The largest difference in invariance is {biggest:+.3f}, against invariance values around {scale:.2f}. One "
            f"training seed per student: the intervals cover the choice of held-out questions, not training seeds, "
            f"so a difference is not shown to exceed seed-to-seed variation.")  # fmt: skip


def _which(some: list[str], every: list[str]) -> str:
    """``every strategy student``, ``no strategy student`` or ``a and b (not c)``."""
    if set(some) == set(every):
        return "every strategy student"
    if not some:
        return "no strategy student"
    return f"{_names(some)} (not {_names([n for n in every if n not in some])})"


def _names(names: list[str]) -> str:
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else ""


def markdown_block(results: dict[str, Any], images: list[Path]) -> str:
    """The whole LATENT block (markers included)."""
    held, sv_train = results["heldout"], results["single_view_training"]
    cfg = results["config"]
    lines = [
        "<!-- BEGIN LATENT -->",
        "## Latent space: single-view clusters and perspective invariance",
        "",
        f"Written by `python -m benchmarks.latent` ({results['machine']['date'][:10]}; numbers in "
        "`benchmarks/results/latent.json`; this block is rewritten by each run, nothing else in this file). "
        f"Held-out set: the {held['questions']} validation questions (never trained on) with a verified rationale in "
        f"every view ({', '.join(held['views'])}), one rationale per view, formatted as the trainer does. Representation: "
        f"the {held['pooling']}; distances {held['distance']}. Single-view students: the `golden` strategy with "
        f"`golden_view` set, from the same stage-0 student, {cfg['single_view']['questions']} questions with a verified "
        f"rationale in that view each (regime `{sv_train['regime']}`'s pool), {sv_train['max_steps']} steps at "
        f"learning rate {sv_train['learning_rate']:g}. Strategy students: the quality benchmark's final runs (regime "
        f"`{cfg['regime']}`, seed {cfg['seed']}). Measures: view silhouette (scikit-learn, cosine), k-NN view purity "
        f"(k = {cfg['measures']['knn']}, itself excluded), perspective invariance = mean similarity of a question's "
        "representations across views minus mean similarity to other questions under the same view; intervals: "
        f"{cfg['measures']['bootstrap']} bootstrap resamples of the questions.",
        "",
    ]  # fmt: skip
    if results.get("missing"):
        lines += [f"Not measured (not trained yet; run without `--report-only`): {', '.join(results['missing'])}.", ""]
    lines += ["### Do single-view students form separate clusters?", "", *single_view_lines(results.get("single_view") or {})]
    lines += ["### Does MIND internalise reasoning?", "", *strategy_lines(results)]
    for p in images:
        lines += [f"![{p.stem}](img/{p.name})", ""]
    lines.append("<!-- END LATENT -->")
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path, images: list[Path]) -> None:
    """Replace the LATENT block of ``path`` (or add it before the HISTORY block, else at the end)."""
    replace_block(path, LATENT, markdown_block(results, images), before=HISTORY_START)
