"""The interference benchmark's report: the calibration, the phase table (every strategy minus ``all`` per
world, paired intervals over seeds and questions), what each strategy kept and how flawed it was, the
phase plot and the INTERFERENCE block of ``docs/results.md``."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._common import replace_block
from benchmarks.quality_report import INTERFERENCE, SPLITS, mean_std
from benchmarks.quality_stats import paired_difference, per_question

HISTORY_START = "<!-- BEGIN HISTORY -->"
BASELINE = "all"
FLAW_TEXT = {
    "local": "`local` flaws: one wrong intermediate statement, the next step goes on from the right value",
    "carried": "`carried` flaws: one step is off, the wrong value runs through every later step, and the last line "
               "still states the right answer",
    "systematic": "`systematic` flaws: carried flaws whose error is a fixed function of the step (a misconception: "
                  "the same fact goes wrong the same way every time), and the last line still states the right answer",
}


def run_record(r: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``interference.json``'s ``runs`` (the issue's record, plus what the trainer kept)."""
    views = r.get("views") or {}
    return {
        "world": r["world"], "flaw_rate": r["flaw_rate"], "strategy": r["strategy"], "seed": r["seed"],
        "learning_rate": r["config"]["learning_rate"], "budget": r.get("budget", "steps"), "phase": r["phase"],
        "metrics": r["metrics"], "validation": r.get("validation"), "n": r["n"], "steps": r.get("steps"),
        "flops": r.get("flops"), "wall_seconds": r.get("wall_seconds"), "device": r.get("device", "cpu"), "key": r["key"],
        "kept": {v: {k: d.get(k) for k in ("in_subset", "kept_share", "flawed_share", "flawed_share_kept")}
                 for v, d in views.items()},
    }  # fmt: skip


def _outcomes(records: list[dict[str, Any]], folders: dict[str, Path], world: str, strategy: str,
              split: str) -> dict[int, dict[str, bool]]:  # fmt: skip
    out = {}
    for r in records:
        if r["world"] == world and r["strategy"] == strategy and r["key"] in folders:
            eval_dir = folders[r["key"]] / "out" / "eval"
            if (eval_dir / f"{split}.parquet").is_file():
                out[r["seed"]] = per_question(eval_dir, split)
    return out


def versus_baseline(records: list[dict[str, Any]], folders: dict[str, Path], world: str,
                    names: list[str]) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Each strategy minus ``all`` in ``world``, per split: paired over seeds and questions."""
    out: dict[str, dict[str, Any]] = {}
    for s in names:
        if s == BASELINE:
            continue
        out[s] = {sp: paired_difference(_outcomes(records, folders, world, s, sp),
                                        _outcomes(records, folders, world, BASELINE, sp)) for sp in SPLITS}  # fmt: skip
    return out


def summary(records: list[dict[str, Any]], world: str, names: list[str]) -> dict[str, Any]:
    """Per strategy in ``world``: mean and std over seeds of every split, and the views it kept."""
    out: dict[str, Any] = {}
    for s in names:
        mine = [r for r in records if r["world"] == world and r["strategy"] == s]
        if not mine:
            continue
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in mine), "learning_rate": mine[0]["learning_rate"]}
        if picked := Counter(r["picked"] for r in mine if "picked" in r):
            entry["picked"] = dict(picked)
        for split in SPLITS:
            entry[split] = mean_std([r["metrics"][split] for r in mine if split in r["metrics"]])
        views = sorted({v for r in mine for v in r["kept"]})
        entry["kept"] = {v: {k: _mean([r["kept"].get(v, {}).get(k) for r in mine])
                             for k in ("in_subset", "kept_share", "flawed_share", "flawed_share_kept")} for v in views}  # fmt: skip
        out[s] = entry
    return out


def chosen_on_validation(runs: list[dict[str, Any]], selections: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per selection (a name and the strategies it chooses among), world and seed: the run with the best
    validation accuracy (a tie goes to the first listed), recorded under the selection's name with the
    strategy it ``picked`` and the FLOPs of every run it chose among (a user trains them all). A seed
    that lacks one of the runs, or its validation, is left out."""
    by = {(r["world"], r["strategy"], r["seed"]): r for r in runs if r.get("budget", "steps") == "steps"}
    out = []
    for name, among in selections.items():
        for w, seed in sorted({(r["world"], r["seed"]) for r in runs}):
            cands = [by.get((w, s, seed)) for s in among]
            if any(c is None or c.get("validation") is None for c in cands):
                continue
            pick = max(cands, key=lambda c: c["validation"])  # max keeps the first of equals
            flops = [c.get("flops") for c in cands]
            out.append({**pick, "strategy": name, "phase": "selection", "picked": pick["strategy"], "kept": {},
                        "flops": sum(flops) if None not in flops else None})  # fmt: skip
    return out


def frontier_points(records: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per world and strategy, one point per learning rate: mean test and retention over its seeds."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    keys = sorted({(r["world"], r["strategy"], r["learning_rate"]) for r in records})
    for w, s, lr in keys:
        mine = [r for r in records if (r["world"], r["strategy"], r["learning_rate"]) == (w, s, lr)]
        out.setdefault(w, {}).setdefault(s, []).append({
            "learning_rate": lr, "seeds": sorted(r["seed"] for r in mine),
            "test": mean_std([r["metrics"]["test"] for r in mine]), "retention": mean_std([r["metrics"]["retention"] for r in mine])})  # fmt: skip
    return out


def dominates(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool | None:
    """Whether frontier ``a`` dominates ``b``: every point of ``b`` is matched or beaten on both test and
    retention (means) by some point of ``a``, and one of them strictly. None when either is empty."""
    if not a or not b:
        return None
    strict = False
    for pb in b:
        tb, rb = pb["test"]["mean"], pb["retention"]["mean"]
        better = [pa for pa in a if pa["test"]["mean"] >= tb and pa["retention"]["mean"] >= rb]
        if not better:
            return False
        strict |= any(pa["test"]["mean"] > tb or pa["retention"]["mean"] > rb for pa in better)
    return strict


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def build_report(fam: dict[str, Any], calibration: list[dict[str, Any]], final: list[dict[str, Any]],
                 folders: dict[str, Path], strategies: list[str],
                 budgeted: list[dict[str, Any]] | None = None,
                 frontier: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """``runs`` (equal steps, then the equal-FLOPs runs with their budget), ``calibration``, per world
    ``summary`` and ``vs_all``, the same per world and budget (``equal_flops``), and the headline."""
    cal = [run_record(r) for r in calibration]
    runs = [run_record(r) for r in final]
    selections = fam.get("select_on_validation") or {}
    runs += chosen_on_validation(runs, selections)
    strategies = [*strategies, *selections]
    flops = [run_record(r) for r in budgeted or []]
    cal_names = list(dict.fromkeys(r["strategy"] for r in cal))
    worlds = list(dict.fromkeys(r["world"] for r in runs))
    equal_flops: dict[str, dict[str, Any]] = {}
    for budget in sorted({r["budget"] for r in flops}):
        mine = [r for r in flops if r["budget"] == budget]
        for w in dict.fromkeys(r["world"] for r in mine):
            equal_flops.setdefault(w, {})[f"{budget:.4g}"] = {
                "summary": summary(mine, w, strategies), "vs_all": versus_baseline(mine, folders, w, strategies)}
    front = [run_record(r) for r in frontier or []]
    report = {
        "runs": runs + flops,
        "frontier": frontier_points(front),
        "frontier_runs": front,  # every frontier run (those at the tuned rate are also in ``runs``)
        "equal_flops": equal_flops,
        "calibration": cal,
        "calibration_summary": {w: {"summary": summary(cal, w, cal_names), "vs_all": versus_baseline(cal, folders, w, cal_names)}
                                for w in dict.fromkeys(r["world"] for r in cal)},  # fmt: skip
        "phase": {w: {"flaw_rate": fam["worlds"][w]["flaw_rate"], "summary": summary(runs, w, strategies),
                      "vs_all": versus_baseline(runs, folders, w, strategies)} for w in worlds},  # fmt: skip
    }
    report["headline"] = {
        w: {s: {"test": e["test"]["mean"], "minus_all": (p["vs_all"].get(s, {}).get("test") or {}).get("diff")}
            for s, e in p["summary"].items()}
        for w, p in report["phase"].items()
    }  # fmt: skip
    return report


# ====================================================================== plot and markdown
def plot_phase(results: dict[str, Any], out_dir: Path) -> Path | None:
    """Each strategy minus ``all`` on test (points, 95% paired interval) against the noisy views' flaw rate."""
    phase = results.get("phase") or {}
    if not phase:
        return None
    from benchmarks.quality_report import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = sorted({s for p in phase.values() for s in p["vs_all"]})
    for i, s in enumerate(names):
        xs, ys, lo, hi = [], [], [], []
        for p in sorted(phase.values(), key=lambda p: p["flaw_rate"]):
            d = (p["vs_all"].get(s) or {}).get("test")
            if d:
                x = p["flaw_rate"] + (i - len(names) / 2) * 0.006  # a small offset keeps the bars apart
                xs.append(x)
                ys.append(100 * d["diff"])
                lo.append(100 * (d["diff"] - d["ci95"][0]))
                hi.append(100 * (d["ci95"][1] - d["diff"]))
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=s)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel(f"flaw rate of the noisy views ({', '.join(results['noisy_views'])})")
    ax.set_ylabel("test accuracy minus all's (points)")
    ax.set_title("When does dropping or down-weighting views pay? (95% paired intervals)")
    ax.legend(fontsize=8)
    return _save(plt, fig, out_dir / "interference-phase.png")


def plot_frontier(results: dict[str, Any], out_dir: Path) -> Path | None:
    """Retention against test per strategy (one point per learning rate, mean over seeds), per world."""
    front = results.get("frontier") or {}
    if not front:
        return None
    from benchmarks.quality_report import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, len(front), figsize=(5.5 * len(front), 4.2), squeeze=False)
    for ax, (w, per) in zip(axes[0], front.items(), strict=True):
        for s, points in per.items():
            pts = sorted(points, key=lambda p: p["learning_rate"])
            ax.plot([100 * p["test"]["mean"] for p in pts], [100 * p["retention"]["mean"] for p in pts], marker="o", label=s)
        ax.set_xlabel("test accuracy (%)")
        ax.set_ylabel("retention accuracy (%)")
        ax.set_title(f"world {w}: one point per learning rate")
        ax.legend(fontsize=8)
    return _save(plt, fig, out_dir / "interference-frontier.png")


def _save(plt: Any, fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _frontier_lines(results: dict[str, Any]) -> list[str]:
    front = results.get("frontier") or {}
    lines = []
    for w, per in front.items():
        lines += [f"### Accuracy against forgetting: world `{w}`", "", "| strategy | learning rate | seeds | test | retention |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for s, points in per.items():
            for p in sorted(points, key=lambda p: p["learning_rate"]):
                lines.append(f"| {s} | {p['learning_rate']:g} | {len(p['seeds'])} | {_pct(p['test'])} | {_pct(p['retention'])} |")
        verdicts = [f"`{s}` {'dominates' if dominates(per[s], per['all']) else 'does not dominate'} `all`"
                    for s in per if s != "all" and dominates(per[s], per.get("all", [])) is not None]  # fmt: skip
        lines += ["", ("Frontiers (means): " + "; ".join(verdicts) + ".") if verdicts else "", ""]
    return lines


def _tuning_lines(results: dict[str, Any]) -> list[str]:
    """Per world, each strategy's mean validation (over the tuning seeds) at every learning rate tried; * the chosen."""
    tuning = results.get("tuning") or {}
    by: dict[tuple[str, str, float], list[float]] = {}
    for r in tuning.get("runs") or []:
        by.setdefault((r["world"], r["strategy"], r["config"]["learning_rate"]), []).append(r["validation"])
    lines = []
    for w in dict.fromkeys(k[0] for k in by):
        rates = sorted({k[2] for k in by if k[0] == w})
        lines += [f"### Tuning: world `{w}` (validation %, mean over the tuning seeds; * chosen)", "",
                  "| strategy | " + " | ".join(f"{lr:g}" for lr in rates) + " |", "|---|" + "---|" * len(rates)]  # fmt: skip
        for s in dict.fromkeys(k[1] for k in by if k[0] == w):
            chosen = ((tuning.get("chosen") or {}).get(w, {}).get(s) or {}).get("learning_rate")
            cells = [(f"{100 * sum(v) / len(v):.1f} ({len(v)}){'*' if lr == chosen else ''}" if (v := by.get((w, s, lr))) else "–")
                     for lr in rates]  # fmt: skip
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _pct(ms: dict[str, float] | None) -> str:
    return "–" if not ms or ms.get("mean") != ms.get("mean") else f"{100 * ms['mean']:.1f} ± {100 * ms['std']:.1f}"


def _diff(d: dict[str, Any] | None) -> str:
    return "–" if not d else f"{100 * d['diff']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"


def _share(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _table(title: str, block: dict[str, Any]) -> list[str]:
    lines = [title, "", "| strategy | seeds | lr | test | ood_steps | retention | test − all | retention − all |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s, e in block["summary"].items():
        d = block["vs_all"].get(s) or {}
        picked = ", ".join(f"{p} {n}x" for p, n in (e.get("picked") or {}).items())
        lines.append(f"| {s}{f' (picked: {picked})' if picked else ''} | {len(e['seeds'])} | {e['learning_rate']:g} | {_pct(e['test'])} | {_pct(e['ood_steps'])} | "
                     f"{_pct(e['retention'])} | {_diff(d.get('test'))} | {_diff(d.get('retention'))} |")  # fmt: skip
    return [*lines, ""]


def _kept_table(world: str, block: dict[str, Any], noisy: list[str]) -> list[str]:
    rows = [(s, e["kept"]) for s, e in block["summary"].items() if e["kept"]]
    views = sorted({v for _, k in rows for v in k}, key=lambda v: (v not in noisy, v))
    if not rows or not views:
        return []
    lines = [f"What each strategy kept in `{world}`: share of the view's candidates kept (flawed share among the kept / "
             "among all of the view's candidates; noisy views first):", "",
             "| strategy | " + " | ".join(views) + " |", "|---|" + "---|" * len(views)]  # fmt: skip
    for s, kept in rows:
        cells = []
        for v in views:
            k = kept.get(v)
            cells.append("–" if not k else f"{_share(k['in_subset'])} ({_share(k['flawed_share_kept'])} / {_share(k['flawed_share'])})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return [*lines, ""]


NOTES = re.compile(r"<!-- BEGIN INTERFERENCE NOTES -->.*?<!-- END INTERFERENCE NOTES -->", re.S)


def markdown_block(results: dict[str, Any], image: Path | None, frontier_image: Path | None = None, notes: str = "") -> str:
    """The whole INTERFERENCE block (markers included); ``notes`` is its hand-written part, kept across rewrites."""
    notes = notes or "<!-- BEGIN INTERFERENCE NOTES -->\n(analysis to be written)\n<!-- END INTERFERENCE NOTES -->"
    lines = [
        "<!-- BEGIN INTERFERENCE -->",
        "## When does capability-aware selection help? The view-quality axis",
        "",
        f"Written by `python -m benchmarks.interference` (config `{results['config_file']}`, built on "
        f"`{results['base_config']}`; numbers in `benchmarks/results/interference.json`; this block is rewritten by "
        "each run, nothing else in this file). Worlds differ only in how often the reference teacher flaws the views "
        f"{', '.join(f'`{v}`' for v in results['noisy_views'])} ({FLAW_TEXT[results.get('flaw_mode', 'local')]}: the "
        "verifier, which reads the final answer, cannot catch it). Oracle: `all` over the other views "
        f"({', '.join(results['oracle_views'])}). Intervals: 95% paired bootstrap over seeds, then questions.",
        "",
        notes,
        "",
        "### Calibration (baselines only, before any MIND run)",
        "",
    ]  # fmt: skip
    for w, block in (results.get("calibration_summary") or {}).items():
        gap = (results.get("calibration_gap") or {}).get(w)
        lines += _table(f"World `{w}`: oracle minus all on test = {'–' if gap is None else f'{gap:+.1f}'} points "
                        f"(mean over seeds; the phase diagram needs >= the config's min_gap).", block)  # fmt: skip
    if not results.get("phase"):
        lines += ["The phase diagram has not been run yet.", ""]
    for w, block in (results.get("phase") or {}).items():
        lines += _table(f"### World `{w}` (flaw rate {block['flaw_rate']:g})", block)
        lines += _kept_table(w, block, results["noisy_views"])
    for w, per in (results.get("equal_flops") or {}).items():
        for budget, block in per.items():
            lines += _table(f"### Equal FLOPs: world `{w}`, {float(budget):.3g} training FLOPs (each schedule sized to "
                            "the budget)", block)  # fmt: skip
    if image is not None:
        lines += [f"![interference phase]({'img/' + image.name})", ""]
    lines += _frontier_lines(results)
    if frontier_image is not None:
        lines += [f"![accuracy against forgetting]({'img/' + frontier_image.name})", ""]
    lines += _tuning_lines(results)
    lines.append("<!-- END INTERFERENCE -->")
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], docs: Path) -> None:
    """Replace the INTERFERENCE block of ``docs/results.md`` (or add it before the HISTORY block, else at the end)."""
    path = docs / "results.md"
    found = NOTES.search(path.read_text()) if path.is_file() else None
    block = markdown_block(results, plot_phase(results, docs / "img"), plot_frontier(results, docs / "img"),
                           found.group(0) if found else "")  # fmt: skip
    replace_block(path, INTERFERENCE, block, before=HISTORY_START)
