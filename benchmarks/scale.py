"""Cost as the work grows (``python -m benchmarks.scale``): step time, tokens per second and peak memory of
``all``, ``mind`` (shared and separate scoring) and plain TRL SFT on the same rows, over student size, the
number of candidates per question ``K`` and the rationale length, with how each grows (fitted exponents).

Every measurement is a fresh child process (``benchmarks/scale_runs.py``: a random-weight Qwen2 student, random
token sequences, a few discarded then measured steps) run alone, one after another, so the peak memory is the
configuration's own; within a cell the configurations run in turn, so their ratios are measured side by side.
Sizes: about 1M, 10M and 100M parameters. The smaller sizes cover every (K, length) pair; the largest, whose
steps take minutes on a CPU, the two sweeps through the smallest cell (K at the shortest length, length at the
smallest K) unless ``--full-grid``. ``--quick``: 1M only, short sequences, for CI.

    python -m benchmarks.scale                 # results in benchmarks/results/scale.json
    python -m benchmarks.scale --quick         # seconds; results in scale.quick.json
    python -m benchmarks.scale --report-only   # redraw docs/img/scale-growth.png from scale.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import REPO_ROOT, RESULTS_DIR, machine_info, make_progress, publish, rnd, run_child
from benchmarks.scale_report import plot_growth, ratio_table
from benchmarks.scale_runs import CONFIGS, SIZES, child

FIGURE = REPO_ROOT / "docs" / "img" / "scale-growth.png"

GRIDS: dict[str, dict[str, Any]] = {
    "full": {"sizes": ["1m", "10m", "100m"], "ks": [2, 4, 8], "lengths": [256, 512, 1024], "batch_questions": 1,
             "warmup_steps": 2, "measured_steps": 3},
    "quick": {"sizes": ["1m"], "ks": [2, 4], "lengths": [64, 128], "batch_questions": 1, "warmup_steps": 2,
              "measured_steps": 2},
}  # fmt: skip
#: the targets at the largest size (issue: MIND's overhead over `all` and over plain SFT)
TARGETS = {"time": 1.15, "memory": 1.2}


def cells(grid: dict[str, Any], full_grid: bool) -> list[tuple[str, int, int]]:
    """``(size, K, length)`` to measure: every pair below the largest size; there the two sweeps through
    the smallest cell (every pair with ``full_grid``)."""
    ks, lengths = grid["ks"], grid["lengths"]
    out = []
    for i, size in enumerate(grid["sizes"]):
        if full_grid or i < len(grid["sizes"]) - 1 or len(grid["sizes"]) == 1:
            out += [(size, k, n) for k, n in itertools.product(ks, lengths)]
        else:
            out += [(size, k, lengths[0]) for k in ks] + [(size, ks[0], n) for n in lengths[1:]]
    return out


def measure(cell: tuple[str, int, int], config: str, grid: dict[str, Any], tmp: Path, threads: int) -> dict[str, Any]:
    """One child process: ``config`` on ``cell``."""
    size, k, length = cell
    folder = tmp / f"{size}-k{k}-l{length}-{config}"
    folder.mkdir(parents=True)
    spec = {"size": size, "k": k, "length": length, "config": config, "tmp": str(folder), "torch_threads": threads,
            **{key: grid[key] for key in ("batch_questions", "warmup_steps", "measured_steps")}}  # fmt: skip
    (folder / "spec.json").write_text(json.dumps(spec))
    result = folder / "result.json"
    data, _ = run_child("benchmarks.scale", ["_child", str(folder / "spec.json"), str(result)], result,
                        folder / "child.log", timeout_s=3600)  # fmt: skip
    if "step_s" not in data:
        raise RuntimeError(f"{config} on {cell}: the child recorded no step time ({folder / 'child.log'})")
    return {"size": size, "k": k, "length": length, "config": config, **data}


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) on log(x): the exponent of y ~ x^e (None with fewer than 2 points)."""
    if len({x for x, _ in points}) < 2:
        return None
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def exponents(runs: list[dict[str, Any]], grid: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per configuration and measure (step time, memory added by training): the exponent in K (shortest length), in length
    (smallest K), each per size, and in parameters (smallest cell)."""
    k0, n0 = grid["ks"][0], grid["lengths"][0]
    out: dict[str, dict[str, Any]] = {}
    for config in CONFIGS:
        mine = [r for r in runs if r["config"] == config]
        fits: dict[str, Any] = {}
        for measure_key, label in (("step_s", "time"), ("train_mb", "train_memory")):
            fits[label] = {
                "k": {s: slope([(r["k"], r[measure_key]) for r in mine if r["size"] == s and r["length"] == n0])
                      for s in grid["sizes"]},
                "length": {s: slope([(r["length"], r[measure_key]) for r in mine if r["size"] == s and r["k"] == k0])
                           for s in grid["sizes"]},
                "params": slope([(r["params"], r[measure_key]) for r in mine if r["k"] == k0 and r["length"] == n0]),
            }  # fmt: skip
        out[config] = fits
    return out


def ratios(runs: list[dict[str, Any]], size: str) -> list[dict[str, Any]]:
    """``mind`` over ``all`` and over ``sft`` in every cell of ``size``: step time, the process's peak memory, and
    the memory training adds to it."""
    by = {(r["k"], r["length"], r["config"]): r for r in runs if r["size"] == size}
    out = []
    for k, n in sorted({(k, n) for k, n, _ in by}):
        row: dict[str, Any] = {"k": k, "length": n}
        for config in ("mind", "mind_separate"):
            for base in ("all", "sft"):
                if (k, n, config) in by and (k, n, base) in by:
                    a, b = by[(k, n, config)], by[(k, n, base)]
                    row[f"{config}_over_{base}"] = {"time": a["step_s"] / b["step_s"],
                                                    "memory": a["vm_hwm_mb"] / b["vm_hwm_mb"],
                                                    "train_memory": a["train_mb"] / max(b["train_mb"], 1.0)}  # fmt: skip
        out.append(row)
    return out


def headline(runs: list[dict[str, Any]], grid: dict[str, Any]) -> dict[str, Any]:
    """The worst ``mind`` overheads at the largest size measured, against the targets."""
    size = grid["sizes"][-1]
    rows = ratios(runs, size)
    out: dict[str, Any] = {"size": size, "params": next((r["params"] for r in runs if r["size"] == size), None)}
    for key in ("mind_over_all", "mind_over_sft"):
        have = [r[key] for r in rows if key in r]
        if have:
            worst = {m: max(h[m] for h in have) for m in ("time", "memory", "train_memory")}
            out[key] = {**worst, "met": all(worst[m] <= TARGETS[m] for m in TARGETS)}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        child(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1M parameters, short sequences (CI)")
    parser.add_argument("--full-grid", action="store_true", help="every (K, length) pair at the largest size too")
    parser.add_argument("--ks", help="comma-separated candidates per question (default: the grid's)")
    parser.add_argument("--lengths", help="comma-separated rationale lengths in tokens (default: the grid's)")
    parser.add_argument("--sizes", help=f"comma-separated sizes (default: the grid's; known: {', '.join(SIZES)})")
    parser.add_argument("--configs", help=f"comma-separated configurations (default all: {', '.join(CONFIGS)})")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch threads per child (default 2)")
    parser.add_argument("--figure", default=str(FIGURE), help="the growth figure (full runs; default docs/img/scale-growth.png)")
    parser.add_argument("--report-only", action="store_true", help="measure nothing: redraw the figure from scale.json")
    args = parser.parse_args(argv)
    if args.report_only:
        return report_only(RESULTS_DIR / "scale.json", Path(args.figure))
    grid = dict(GRIDS["quick" if args.quick else "full"])
    if args.sizes:
        grid["sizes"] = [s.strip() for s in args.sizes.split(",") if s.strip()]
        if unknown := set(grid["sizes"]) - set(SIZES):
            parser.error(f"--sizes: unknown {sorted(unknown)}; known: {', '.join(SIZES)}")
    for flag in ("ks", "lengths"):
        if value := getattr(args, flag):
            try:
                grid[flag] = sorted({int(v) for v in value.split(",") if v.strip()})
            except ValueError:
                parser.error(f"--{flag}: comma-separated integers, got {value!r}")
    if min(grid["lengths"]) < 64:
        parser.error("--lengths: at least 64 tokens (a 32-token prompt, the answer span and EOS)")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()] if args.configs else list(CONFIGS)
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"--configs: unknown {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    t_start = time.perf_counter()
    todo = [(cell, c) for cell in cells(grid, args.full_grid) for c in configs]
    runs = []
    with tempfile.TemporaryDirectory(prefix="mind-bench-scale-") as tmp, make_progress() as progress:
        task = progress.add_task("scale: cells x configurations", total=len(todo))
        for cell, config in todo:
            progress.update(task, description=f"scale: {cell[0]} K={cell[1]} length={cell[2]} {config}")
            runs.append(measure(cell, config, grid, Path(tmp), args.torch_threads))
            progress.advance(task)
    results = {
        "benchmark": "scale", "grid": grid, "full_grid": args.full_grid, "targets": TARGETS,
        "machine": machine_info(), "torch_threads": args.torch_threads, "runs": rnd(runs),
        "exponents": rnd(exponents(runs, grid)),
        "ratios": {s: rnd(ratios(runs, s)) for s in grid["sizes"]},
    }  # fmt: skip
    top = rnd(headline(runs, grid))
    results["headline"] = top
    if not args.quick:
        plot_growth(results, Path(args.figure))
    return publish("scale", results, top, quick=args.quick, t_start=t_start)


def report_only(path: Path, figure: Path) -> int:
    """Redraw the growth figure and print the ratio table of the largest size from a finished run."""
    if not path.is_file():
        raise SystemExit(f"{path}: no results (run `python -m benchmarks.scale` first)")
    results = json.loads(path.read_text())
    print(f"figure: {plot_growth(results, figure)}", file=sys.stderr)
    print(ratio_table(results, results["grid"]["sizes"][-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
