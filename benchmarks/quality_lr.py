"""Is a strategy's tuned learning rate a seed-0 accident? Validation accuracy over several seeds.

The quality benchmark tunes each strategy's learning rate on ONE seed of a 150-question validation
set (one accuracy's standard error ~4 points), so a choice can be noise, and a gap between two
strategies can be a gap between their learning rates. This check re-runs chosen (strategy,
learning rate) pairs of a regime on more seeds, validation only (never test), with the benchmark's
own run definitions: each run is a tuning run of ``benchmarks.quality`` (same key, same folder,
resumable; seed 0's runs are the benchmark's own tuning runs and are reused).

    python -m benchmarks.quality_lr --pairs mind:7.5e-4,mind:3e-3,all:7.5e-4,all:3e-3 --seeds 0,1,2
    python -m benchmarks.quality_lr --pairs mind:3e-3+lr_schedule_after_meta_warmup=true --seeds 0,1,2 \
        --results quality_lr_schedule

A pair may carry further ``distill.train`` settings (``+FIELD=VALUE``), e.g. to test a hypothesis
about why a strategy does worse at some rate.

Writes ``benchmarks/results/quality_lr.json`` (or ``--results NAME``) (every run, and mean ± std per pair) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import REPO_ROOT, make_progress, write_results
from benchmarks.quality import DEFAULT_CONFIG, load_config, make_run, run_all
from benchmarks.students import build_student
from benchmarks.quality_data import prepare_regimes


def parse_pairs(text: str) -> list[tuple[str, float, dict[str, Any]]]:
    """``"mind:7.5e-4,all:3e-3+warmup_steps=40"`` -> [("mind", 0.00075, {}), ("all", 0.003, {"warmup_steps": 40})]:
    a strategy, its learning rate and any further ``distill.train`` settings (``+FIELD=VALUE``, YAML values)."""
    pairs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        head, *extra = item.split("+")
        strategy, sep, lr = head.partition(":")
        try:
            rate = float(lr)
        except ValueError:
            raise SystemExit(f"--pairs: {item!r} is not STRATEGY:LEARNING_RATE[+FIELD=VALUE...]") from None
        if not sep or not strategy:
            raise SystemExit(f"--pairs: {item!r} is not STRATEGY:LEARNING_RATE[+FIELD=VALUE...]")
        settings: dict[str, Any] = {}
        for setting in extra:
            field, eq, value = setting.partition("=")
            if not eq or not field:
                raise SystemExit(f"--pairs: {setting!r} in {item!r} is not FIELD=VALUE")
            settings[field] = yaml.safe_load(value)
        pairs.append((strategy, rate, settings))
    return pairs


def label(strategy: str, lr: float, settings: dict[str, Any]) -> str:
    return f"{strategy}:{lr:g}" + "".join(f"+{k}={v}" for k, v in settings.items())


def summarise(records: list[dict[str, Any]], pairs: list[tuple[str, float, dict[str, Any]]],
              labels: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
    """Per pair: validation accuracy per seed, its mean and std, and the trained tokens (``labels``:
    each run's key -> the label of the pair it was made for)."""
    rows = []
    for strategy, lr, settings in pairs:
        name = label(strategy, lr, settings)
        mine = sorted((r for r in records if labels.get(r["key"]) == name), key=lambda r: r["seed"])
        vals = [r["validation"] for r in mine]
        rows.append({
            "strategy": strategy, "learning_rate": lr, "settings": settings, "label": name,
            "seeds": [r["seed"] for r in mine], "validation": vals,
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
    parser.add_argument("--pairs", required=True,
                        help="STRATEGY:LR[+FIELD=VALUE...],... e.g. mind:7.5e-4,all:3e-3,mind:3e-3+meta_warmup_steps=0")
    parser.add_argument("--seeds", default="0,1,2", help="seeds (default 0,1,2)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--results", default="quality_lr", help="results name: benchmarks/results/NAME.json")
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
        runs, labels = [], {}
        for s, lr, extra in pairs:
            for seed in seeds:
                runs.append(make_run(cfg, regime, student, "tune", s, seed, {"learning_rate": lr, **extra}).place(work))
                labels[runs[-1].key] = label(s, lr, extra)
        records = run_all(runs, args.jobs, progress, "learning-rate check", device=args.device)
    rows = summarise(records, pairs, labels)
    for r in rows:
        vals = ", ".join(f"{v:.1%}" for v in r["validation"])
        print(f"{r['label']:>40} validation {r['mean']:.1%} ± {r['std']:.1%} ({vals})")
    write_results(args.results, {"regime": args.regime, "pairs": rows,
                                 "runs": [{k: v for k, v in r.items() if k not in ("history", "curve")} for r in records]})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
