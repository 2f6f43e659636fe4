"""The scale benchmark's figure and tables (``benchmarks/scale.py`` writes them after a run; ``--report-only``
redraws them from ``benchmarks/results/scale.json``): how step time and the memory training adds grow with the
candidates per question ``K``, the rationale length and the student's size, per configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the sweeps a growth plot draws: (the run field on the x axis, its label, the cells it keeps)
SWEEPS = (("k", "candidates per question K"), ("length", "rationale length (tokens)"), ("params", "parameters"))
MEASURES = (("step_s", "step time (s)"), ("train_mb", "memory training adds (MB)"))


def sweep_points(runs: list[dict[str, Any]], grid: dict[str, Any], axis: str, config: str) -> list[tuple[float, float, float]]:
    """``(x, step_s, train_mb)`` of ``config`` along ``axis``: K at the shortest length and length at the
    smallest K (both at the largest size measured), parameters at the smallest cell."""
    k0, n0, top = grid["ks"][0], grid["lengths"][0], grid["sizes"][-1]
    keep = {"k": lambda r: r["size"] == top and r["length"] == n0,
            "length": lambda r: r["size"] == top and r["k"] == k0,
            "params": lambda r: r["k"] == k0 and r["length"] == n0}[axis]  # fmt: skip
    return sorted((float(r[axis]), r["step_s"], r["train_mb"]) for r in runs if r["config"] == config and keep(r))


def plot_growth(results: dict[str, Any], path: Path) -> Path:
    """One figure: rows = step time, memory; columns = K, length, parameters (log-log); a line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs, grid = results["runs"], results["grid"]
    configs = list(dict.fromkeys(r["config"] for r in runs))
    fig, axes = plt.subplots(len(MEASURES), len(SWEEPS), figsize=(13, 7.5), squeeze=False)
    for col, (axis, label) in enumerate(SWEEPS):
        sweeps = {config: sweep_points(runs, grid, axis, config) for config in configs}  # once per axis
        for row, (_, measure_label) in enumerate(MEASURES):
            ax = axes[row][col]
            for config, points in sweeps.items():
                if points:
                    ax.plot([p[0] for p in points], [p[1 + row] for p in points], marker="o", label=config)
            ax.set_xscale("log")
            ax.set_yscale("log")
            if axis != "params":  # K and length: plain numbers at the measured points
                ax.set_xticks(sorted({p[0] for points in sweeps.values() for p in points}))
                ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(label)
            ax.set_ylabel(measure_label)
            ax.grid(alpha=0.3, which="both")
    where = f"K and length at {grid['sizes'][-1]}; parameters at K={grid['ks'][0]}, length {grid['lengths'][0]}"
    fig.suptitle(f"Cost as the work grows (CPU, fp32, activation checkpointing; {where})")
    axes[0][0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ratio_table(results: dict[str, Any], size: str) -> str:
    """A markdown table of ``mind`` (shared and separate scoring) over ``all`` and over ``sft`` at ``size``."""
    rows = results["ratios"].get(size, [])
    head = ["K", "length", "mind/all time", "mind/all memory", "mind/sft time", "mind/sft memory",
            "separate/all time", "separate/all memory"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["k"]), str(r["length"])]
        for key in ("mind_over_all", "mind_over_sft", "mind_separate_over_all"):
            got = r.get(key)
            cells += [f"{got['time']:.2f}", f"{got['memory']:.2f}"] if got else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
