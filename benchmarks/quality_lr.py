"""Is a strategy's tuned learning rate a seed-0 accident? Validation accuracy over several seeds.

The quality benchmark tunes each strategy's learning rate on ONE seed of a 150-question validation
set (one accuracy's standard error ~4 points), so a choice can be noise, and a gap between two
strategies can be a gap between their learning rates. This check re-runs chosen (strategy,
learning rate) pairs of a regime on more seeds, validation only (never test), with the benchmark's
own run definitions: each run is a tuning run of ``benchmarks.quality`` (same key, same folder,
resumable; seed 0's runs are the benchmark's own tuning runs and are reused).

    python -m benchmarks.quality_lr --pairs mind:7.5e-4,mind:3e-3,all:7.5e-4,all:3e-3 --seeds 0,1,2

Writes ``benchmarks/results/quality_lr.json`` (every run, and mean ± std per pair) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from benchmarks._common import REPO_ROOT, make_progress, write_results
from benchmarks.quality import DEFAULT_CONFIG, build_student, load_config, make_run, run_all
from benchmarks.quality_data import prepare_regimes


def parse_pairs(text: str) -> list[tuple[str, float]]:
    """``"mind:7.5e-4,all:3e-3"`` -> [("mind", 0.00075), ("all", 0.003)]."""
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        strategy, sep, lr = item.partition(":")
        try:
            pairs.append((strategy, float(lr)))
        except ValueError:
            raise SystemExit(f"--pairs: {item!r} is not STRATEGY:LEARNING_RATE") from None
        if not sep or not strategy:
            raise SystemExit(f"--pairs: {item!r} is not STRATEGY:LEARNING_RATE")
    return pairs


def summarise(records: list[dict[str, Any]], pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Per pair: validation accuracy per seed, its mean and std, and the trained tokens."""
    rows = []
    for strategy, lr in pairs:
        mine = sorted((r for r in records if r["strategy"] == strategy and r["config"]["learning_rate"] == lr),
                      key=lambda r: r["seed"])  # fmt: skip
        vals = [r["validation"] for r in mine]
        rows.append({
            "strategy": strategy, "learning_rate": lr, "seeds": [r["seed"] for r in mine], "validation": vals,
            "mean": statistics.fmean(vals) if vals else None,
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "trained_tokens": statistics.fmean(r["trained_tokens"] for r in mine) if mine else None,
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the quality benchmark's YAML")
    parser.add_argument("--work", default=str(REPO_ROOT / "runs" / "quality"), help="its work folder")
    parser.add_argument("--regime", default="paper", help="regime (default paper)")
    parser.add_argument("--pairs", required=True, help="STRATEGY:LR,... e.g. mind:7.5e-4,all:3e-3")
    parser.add_argument("--seeds", default="0,1,2", help="seeds (default 0,1,2)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    if args.regime not in cfg["regimes"]:
        parser.error(f"--regime: unknown {args.regime!r}; the config has {', '.join(cfg['regimes'])}")
    pairs, seeds = parse_pairs(args.pairs), [int(s) for s in args.seeds.split(",")]
    cfg["regimes"] = {args.regime: cfg["regimes"][args.regime]}
    work = Path(args.work) / "main"
    progress = make_progress()
    with progress:
        regime = prepare_regimes(cfg, work)[args.regime]
        student = build_student(cfg)
        runs = [make_run(cfg, regime, student, "tune", s, seed, {"learning_rate": lr}).place(work)
                for s, lr in pairs for seed in seeds]  # fmt: skip
        records = run_all(runs, args.jobs, progress, "learning-rate check", device=args.device)
    rows = summarise(records, pairs)
    for r in rows:
        vals = ", ".join(f"{v:.1%}" for v in r["validation"])
        print(f"{r['strategy']:>12} lr {r['learning_rate']:<8g} validation {r['mean']:.1%} ± {r['std']:.1%} ({vals})")
    write_results("quality_lr", {"regime": args.regime, "pairs": rows,
                                 "runs": [{k: v for k, v in r.items() if k not in ("history", "curve")} for r in records]})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
