"""Learning curves on a FLOP grid: evaluate the student whenever its training FLOPs reach the
next point of a fixed grid (``--curve_flops``), so that strategies that spend different compute
per optimizer step can be compared at equal compute.

A point is evaluated at the end of the first optimizer step whose cumulative FLOPs (the
trainer's account, :attr:`distill.trainer.MindState.flops`) reach it: its record holds the grid
value, the FLOPs actually spent (at most one step beyond it), the step and the accuracy on each
curve split, and where its predictions are (``curve/<grid value>/<split>.parquet`` under the
output folder; points passed in the same step share one evaluation). Points already in ``<output_dir>/curve.json`` (a resumed run) are kept, never
evaluated again. Only the main process evaluates; the student's train/eval modes are restored and
greedy decoding draws no random numbers, so a run with a curve trains exactly as one without.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from data_schemas.run_files import CURVE

__all__ = ["CURVE_FILE", "FlopCurveCallback", "parse_flop_grid", "prediction_dir"]

CURVE_FILE = CURVE


def parse_flop_grid(text: str, flag: str = "--curve_flops") -> list[float]:
    """Comma-separated positive FLOP values, strictly increasing; errors name ``flag``."""
    from data_schemas import ContractError

    if not text.strip():
        return []
    try:
        grid = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ContractError(flag, f"expected comma-separated numbers (e.g. 1e11,2e11), got {text!r}") from None
    if any(not v > 0 for v in grid) or any(b <= a for a, b in zip(grid, grid[1:])):
        raise ContractError(flag, f"grid points must be positive and strictly increasing, got {text!r}")
    return grid


def prediction_dir(grid_value: float) -> str:
    """Where (relative to output_dir) the predictions of the evaluation at ``grid_value`` go."""
    return f"curve/{grid_value:.4g}"


class FlopCurveCallback(TrainerCallback):
    """Calls ``evaluate(grid_value) -> {split: (accuracy, n)}`` at every point of ``grid`` the
    trainer's FLOPs reach; records go to ``out_dir/curve.json`` as they are made."""

    def __init__(
        self,
        trainer: Any,
        grid: Sequence[float],
        evaluate: Callable[[float], Mapping[str, tuple[float, int]]],
        out_dir: str | Path,
    ):
        self.trainer = trainer
        self.grid = list(grid)
        self.evaluate = evaluate
        self.path = Path(out_dir) / CURVE_FILE
        self.records: list[dict[str, Any]] = []
        if self.path.is_file():  # a resumed run keeps the points it already evaluated
            self.records = [r for r in json.loads(self.path.read_text()) if r["grid_flops"] in self.grid]

    @property
    def _next(self) -> float | None:
        done = {r["grid_flops"] for r in self.records}
        return next((g for g in self.grid if g not in done), None)

    def on_step_end(self, args, state, control, **kwargs):
        flops = self.trainer.mind.flops
        target = self._next
        if target is None or flops < target:
            return
        metrics, evaluated = None, target
        if self.trainer.is_world_process_zero():
            metrics = self.evaluate(target)
        while target is not None and flops >= target:  # one evaluation serves every point this step passed
            self.records.append({
                "grid_flops": target, "flops": flops, "step": state.global_step, "predictions": prediction_dir(evaluated),
                "accuracy": {k: v[0] for k, v in (metrics or {}).items()},
                "n": {k: v[1] for k, v in (metrics or {}).items()},
            })  # fmt: skip
            target = self._next
        if self.trainer.is_world_process_zero():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.records, indent=1))
