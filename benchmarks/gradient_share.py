"""Gradient share per view: how much of the student's update each perspective contributes, under
MIND and under the baselines, in one regime of the quality benchmark.

The quality benchmark records which views MIND keeps and with what weights; a view's weight is not
its say in the update (views whose gradients agree add up, views that pull apart cancel). This
diagnostic re-trains the chosen entries at their tuned settings (the benchmark's own tuning runs
choose them; nothing is tuned here) with ``--grad_share_every`` on, so every history entry holds
each view's share ``<g_view, g> / <g, g>`` of the student's gradient (``distill/grad_share.py``;
the consistency term is a term of its own). The measurement leaves the training unchanged, so a
run's validation accuracy must equal the benchmark's final run of the same seed trained on the
same device; the script reports both.

    python -m benchmarks.gradient_share [--regime paper] [--entries mind,mind-lr-after-warmup,all]
                                        [--seeds 0,2] [--every 20] [--jobs 2]

Resumable (runs live under ``runs/quality/main/gradient_share``); validation is the only split
evaluated. Writes ``benchmarks/results/gradient_share.json`` and prints a table per entry:
per view, the share of questions it is kept in, its mean weight when kept, its gradient share over
the run (mean of the measured steps; none is measured while a frozen warm-up trains nothing) and
over the last quarter of the run, and its final long-term loss ``L_p``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from benchmarks._common import REPO_ROOT, RESULTS_DIR, machine_info, make_progress, write_json
from benchmarks.quality import DEFAULT_CONFIG, Run, flop_grid, load_config, make_run, run_all, tune
from benchmarks.students import build_student
from benchmarks.quality_data import prepare_regimes


def view_table(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per view (and ``consistency``): mean over seeds of its in-subset rate, mean weight, gradient
    share over the measured steps and over those in the last quarter of the run, and its final
    ``L_p`` (``records``: one entry's runs)."""
    per: dict[str, dict[str, list[float]]] = {}

    def add(name: str, key: str, value: float) -> None:
        per.setdefault(name, {}).setdefault(key, []).append(value)

    for r in records:
        measured = [e for e in r["history"] if "grad_share" in e]
        if not measured:
            raise ValueError(f"run {r['key']} ({r['strategy']} seed {r['seed']}) has no gradient share in its history")
        late = [e for e in measured if e["step"] > 0.75 * r["history"][-1]["step"]] or measured[-1:]
        names = sorted({n for e in measured for n in e["grad_share"]} | set(r["views"]))
        for name in names:
            add(name, "grad_share", statistics.fmean(e["grad_share"].get(name, 0.0) for e in measured))
            add(name, "grad_share_late", statistics.fmean(e["grad_share"].get(name, 0.0) for e in late))
            if name in r["views"]:
                view = r["views"][name]
                add(name, "in_subset", view["in_subset"])
                add(name, "mean_alpha", view["mean_alpha"])
                if view.get("L_p") is not None:
                    add(name, "L_p", view["L_p"])
    return {n: {k: statistics.fmean(v) for k, v in d.items()} for n, d in per.items()}


def check_unchanged(records: list[dict[str, Any]], finals: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's validation accuracy next to the benchmark's final run of the same entry and seed."""
    rows = []
    for r in records:
        final = finals.get((r["strategy"], r["seed"]))
        rows.append({"strategy": r["strategy"], "seed": r["seed"], "validation": r["validation"],
                     "final_validation": None if final is None else final["validation"],
                     "final_device": None if final is None else final.get("device", "cpu"),
                     "equal": None if final is None else abs(r["validation"] - final["validation"]) < 1e-9})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the quality benchmark's YAML")
    parser.add_argument("--work", default=str(REPO_ROOT / "runs" / "quality"), help="its work folder")
    parser.add_argument("--regime", default="paper", help="regime (default paper)")
    parser.add_argument("--entries", default="mind,mind-lr-after-warmup,all",
                        help="headline strategies or variants, tuned by the benchmark (default %(default)s)")
    parser.add_argument("--seeds", default="0,2", help="seeds (default 0,2: the paper regime's seed-1 runs of `all` and "
                        "`mind` trained on a GPU, so their validation cannot be matched on a CPU)")
    parser.add_argument("--every", type=int, default=20, help="optimizer steps between measurements (default 20)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--results", default=str(RESULTS_DIR / "gradient_share.json"), help="results JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be >= 1, got {args.every}")
    cfg = load_config(args.config)
    if args.regime not in cfg["regimes"]:
        parser.error(f"--regime: unknown {args.regime!r}; the config has {', '.join(cfg['regimes'])}")
    entries = [e.strip() for e in args.entries.split(",") if e.strip()]
    unknown = [e for e in entries if e not in cfg["strategies"]]
    if unknown:
        parser.error(f"--entries: {', '.join(unknown)} not among the benchmark's headline entries ({', '.join(cfg['strategies'])})")
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg["regimes"] = {args.regime: cfg["regimes"][args.regime]}
    work = Path(args.work) / "main"
    progress = make_progress()
    with progress:
        regimes = prepare_regimes(cfg, work)
        student = build_student(cfg)
        chosen, _ = tune(cfg, regimes, student, work, list(cfg["strategies"]), args.jobs, progress, execute_missing=False)
        regime = regimes[args.regime]
        missing = [e for e in entries if "learning_rate" not in chosen[args.regime].get(e, {})]
        if missing:
            raise SystemExit(f"error: {', '.join(missing)} not tuned in regime {args.regime!r} yet: run "
                             f"python -m benchmarks.quality --regimes {args.regime} first")  # fmt: skip
        finals = {(r.strategy, r.seed): r.done() for r in
                  (make_run(cfg, regime, student, "final", e, s, chosen[args.regime][e], flop_grid(cfg.get("curve", {}))).place(work)
                   for e in entries for s in seeds)}  # fmt: skip
        runs = []
        for e in entries:
            for s in seeds:
                base = make_run(cfg, regime, student, "tune", e, s, {**chosen[args.regime][e], "grad_share_every": args.every})
                runs.append(Run("diagnostic", base.regime, base.strategy, base.seed, base.args).place(work / "gradient_share"))
        records = run_all(runs, args.jobs, progress, "gradient share", device=args.device)
    finals = {k: v for k, v in finals.items() if v is not None}
    unchanged = check_unchanged(records, finals)
    tables = {e: view_table([r for r in records if r["strategy"] == e]) for e in entries}
    _print(tables, unchanged, args.regime, args.every)
    path = write_json(args.results, {
        "machine": machine_info(), "regime": args.regime, "every": args.every, "seeds": seeds, "entries": entries, "views": tables,
        "unchanged": unchanged,
        "runs": [{k: r[k] for k in ("key", "strategy", "seed", "validation", "views", "history", "config")} for r in records],
    })  # fmt: skip
    print(f"results: {path}")
    return 0


def _print(tables: dict[str, dict[str, dict[str, float]]], unchanged: list[dict[str, Any]], regime: str, every: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for entry, views in tables.items():
        table = Table(title=f"{regime}: {entry} (gradient share measured every {every} steps; mean over seeds)")
        for col in ("view", "in subset", "mean alpha", "gradient share (run)", "gradient share (last 25%)", "final L_p"):
            table.add_column(col, justify="left" if col == "view" else "right")
        for name, v in views.items():
            table.add_row(name, f"{v['in_subset']:.0%}" if "in_subset" in v else "-",
                          f"{v['mean_alpha']:.3f}" if "mean_alpha" in v else "-",
                          f"{v['grad_share']:+.3f}", f"{v['grad_share_late']:+.3f}",
                          f"{v['L_p']:.2f}" if "L_p" in v else "-")  # fmt: skip
        console.print(table)
    for u in unchanged:
        same = "no final run to compare" if u["equal"] is None else (
            f"final run {u['final_validation']:.1%} on {u['final_device']}: " + ("equal" if u["equal"] else "different"))
        console.print(f"{u['strategy']} seed {u['seed']}: validation {u['validation']:.1%} ({same})")


if __name__ == "__main__":
    raise SystemExit(main())
