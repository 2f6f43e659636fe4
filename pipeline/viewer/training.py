"""Read a MIND trainer ``output_dir``: what ``distill.trainer`` / ``distill.train`` / ``distill.evaluate`` write.

- ``mind_summary.json`` (``MindTrainer.summary``): ``strategy``, ``feedback``, per view
  ``picks`` / ``pick_share`` / ``mean_weight`` / ``L_p``, and ``probes``: one entry per probe
  (``step``, ``probe_loss``, ``probe_ema``, ``L_p`` per view, and for ``mind`` ``ta_reward``,
  ``ta_advantage``, ``ta_entropy``);
- ``trainer_state.json`` (Hugging Face ``Trainer``; in ``output_dir`` after ``save_state`` or in
  each ``checkpoint-N/``): ``log_history`` entries with ``step``, ``loss`` and the trainer's
  ``mind/*`` metrics (``mind/pick_share/<view>``, ``mind/mean_weight/<view>``,
  ``mind/L_p/<view>``, ``mind/L``, ``mind/S``, ``mind/policy_entropy``, ``mind/ta_reward``, ...);
- evaluation: ``eval_results.json`` (split -> summary) and ``eval/<split>.parquet`` (predictions,
  the summary in the schema metadata under ``mind.eval``).

Every file is checked to lie inside DIR; a malformed one raises :class:`DataError` naming it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from .queries import PAGE_SIZE
from .registry import Entry, Registry

__all__ = ["DataError", "TrainingRun", "load_training", "predictions_page", "series"]

Series = dict[str, list[tuple[float, float]]]


class DataError(ValueError):
    """A file the viewer needs is malformed: ``PATH: reason``."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass
class TrainingRun:
    """The files of one trainer output folder (each None when absent)."""

    key: str
    path: Path
    summary: dict[str, Any] | None = None
    summary_file: Path | None = None
    state: dict[str, Any] | None = None
    state_file: Path | None = None
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> summary (+ "file")
    notes: list[str] = field(default_factory=list)  # what is missing, for the page

    @property
    def log(self) -> list[dict[str, Any]]:
        return self.state["log_history"] if self.state else []

    @property
    def probes(self) -> list[dict[str, Any]]:
        return self.summary.get("probes", []) if self.summary else []

    @property
    def views(self) -> list[str]:
        if self.summary:
            return list(self.summary["views"])
        names = {k.split("/", 2)[2] for e in self.log for k in e if k.startswith("mind/pick_share/")}
        return sorted(names)

    @property
    def steps(self) -> int | None:
        if self.state and isinstance(self.state.get("global_step"), int):
            return self.state["global_step"]
        steps = [e["step"] for e in self.log + self.probes if isinstance(e.get("step"), int | float)]
        return int(max(steps)) if steps else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read ({exc})") from None


def _latest_checkpoint_state(d: Path) -> Path | None:
    found = []
    for c in d.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", c.name)
        if m and (c / "trainer_state.json").is_file():
            found.append((int(m.group(1)), c / "trainer_state.json"))
    return max(found)[1] if found else None


def load_training(entry: Entry, registry: Registry) -> TrainingRun:
    """Read and check the folder's summary, trainer state and evaluation results."""
    d = entry.path
    run = TrainingRun(entry.key, d)
    summary_file = d / "mind_summary.json"
    if summary_file.is_file():
        data = _read_json(registry.inside(summary_file))
        if not isinstance(data, dict) or not isinstance(data.get("views"), dict):
            raise DataError(summary_file, "expected an object with 'views' (per perspective: picks, pick_share, ...)")
        for name, v in data["views"].items():
            if not isinstance(v, dict):
                raise DataError(summary_file, f"views.{name}: expected an object")
        if not isinstance(data.get("probes", []), list):
            raise DataError(summary_file, "'probes' must be a list")
        run.summary, run.summary_file = data, summary_file
    else:
        run.notes.append("no mind_summary.json (written when training finishes)")
    state_file = d / "trainer_state.json" if (d / "trainer_state.json").is_file() else _latest_checkpoint_state(d)
    if state_file is not None:
        data = _read_json(registry.inside(state_file))
        if not isinstance(data, dict) or not isinstance(data.get("log_history"), list):
            raise DataError(state_file, "expected an object with a 'log_history' list")
        if not all(isinstance(e, dict) for e in data["log_history"]):
            raise DataError(state_file, "'log_history' entries must be objects")
        run.state, run.state_file = data, state_file
    else:
        run.notes.append(
            "no trainer_state.json: the logged metrics over steps (pick share, weights) are saved with checkpoints "
            "(e.g. --save_strategy steps)"
        )
    run.evals = _load_evals(d, registry)
    return run


def _load_evals(d: Path, registry: Registry) -> dict[str, dict[str, Any]]:
    evals: dict[str, dict[str, Any]] = {}
    results = d / "eval_results.json"
    if results.is_file():
        data = _read_json(registry.inside(results))
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise DataError(results, "expected an object: split -> summary object")
        evals = {str(k): dict(v) for k, v in data.items()}
    for f in sorted((d / "eval").glob("*.parquet")):
        path = registry.inside(f)
        try:
            meta = pq.read_schema(path).metadata or {}
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f, f"unreadable Parquet file ({exc})") from None
        split = f.stem
        summary = evals.setdefault(split, {"split": split})
        if b"mind.eval" in meta and "accuracy" not in summary:
            try:
                summary.update(json.loads(meta[b"mind.eval"]))
            except json.JSONDecodeError:
                raise DataError(f, "schema metadata 'mind.eval' is not valid JSON") from None
        summary["file"] = f
    return evals


# ---------------------------------------------------------------- series for the charts
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _from(entries: list[dict[str, Any]], key: str, unless_zero: str | None = None) -> list[tuple[float, float]]:
    """``(step, entry[key])`` of the entries that have both as finite numbers (and, with
    ``unless_zero``, a non-zero value under that key)."""
    out = []
    for e in entries:
        x, y = _num(e.get("step")), _num(e.get(key))
        if x is not None and y is not None and (unless_zero is None or _num(e.get(unless_zero))):
            out.append((x, y))
    return out


def series(run: TrainingRun) -> tuple[dict[str, Series], str]:
    """Every chart's lines (chart -> line -> [(step, value)], empty when the files lack them) and
    where ``L_p`` came from: ``log`` (trainer_state.json, every logging step) or ``probes``."""
    views, log, probes = run.views, run.log, run.probes
    lp = {v: _from(log, f"mind/L_p/{v}") for v in views}
    lp_source = "log"
    if not any(lp.values()):  # no trainer_state: the probe history has L_p per probe
        lp = {
            v: [
                (p["step"], p["L_p"][v])
                for p in probes
                if _num(p.get("step")) is not None
                and isinstance(p.get("L_p"), dict)
                and _num(p["L_p"].get(v)) is not None
            ]
            for v in views
        }
        lp_source = "probes"
    if global_l := _from(log, "mind/L"):
        lp["L (all views)"] = global_l
    charts = {
        "pick_share": {v: _from(log, f"mind/pick_share/{v}") for v in views},
        # the trainer logs a weight of 0 for a view not picked since the last log line: no point there
        "mean_weight": {v: _from(log, f"mind/mean_weight/{v}", unless_zero=f"mind/pick_share/{v}") for v in views},
        "L_p": lp,
        "ta_reward": {"TA reward": _from(probes, "ta_reward") or _from(log, "mind/ta_reward")},
        "entropy": {
            "policy entropy": _from(log, "mind/policy_entropy"),
            "TA entropy (probe)": _from(probes, "ta_entropy"),
        },
        "loss": {"training loss": _from(log, "loss"), "probe loss": _from(probes, "probe_loss")},
    }
    return charts, lp_source


# ---------------------------------------------------------------- predictions (DuckDB, paginated)
def predictions_page(path: Path, verdict: str | None, page: int, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of an evaluation's predictions (``verdict``: correct / incorrect / unjudged)."""
    from pipeline.browse import VERDICT_FILTERS

    where = VERDICT_FILTERS[verdict] if verdict else "TRUE"
    src = "read_parquet('" + str(path).replace("'", "''") + "')"
    page = max(1, page)
    con = duckdb.connect(":memory:")
    try:
        total = con.execute(f"SELECT count(*) FROM {src} WHERE {where}").fetchone()[0]  # type: ignore[index]
        cur = con.execute(
            "SELECT question_id, question, gold_answer, sample_index, prediction, predicted_answer, is_correct, "
            f"num_tokens, finish_reason FROM {src} WHERE {where} LIMIT ? OFFSET ?",
            [page_size, (page - 1) * page_size],
        )
        names = [c[0] for c in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    except duckdb.Error as exc:
        raise DataError(path, f"cannot read predictions ({' '.join(str(exc).split())[:300]})") from None
    finally:
        con.close()
    return {"rows": rows, "total": total, "page": page, "pages": max(1, math.ceil(total / page_size))}
