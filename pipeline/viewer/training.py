"""Read a MIND trainer ``output_dir``: what ``distill.trainer`` / ``distill.train`` / ``distill.evaluate`` write.

- ``mind_summary.json`` (``MindTrainer.summary``, written when training ends): ``strategy``;
  per view ``present`` / ``kept`` / ``in_subset`` / ``kept_share`` / ``mean_alpha`` /
  ``mean_score`` / ``L_p``; ``compute`` (``params``, ``forward_tokens``, ``backward_tokens``,
  ``trained_tokens``, ``flops``); ``history``: one entry per ``history_every`` optimizer steps
  (``step``, ``subset_size``, per view ``in_subset`` / ``alpha`` / ``score`` / ``L_p``, ``flops``
  and, when the strategy has them, ``consistency``, ``meta_loss``, ``meta_top1``,
  ``meta_spearman``; with ``--grad_share_every``, ``grad_share``: per view and for the
  consistency term); optional ``meta_steps``;
- ``trainer_state.json`` (Hugging Face ``Trainer``; in ``output_dir`` after ``save_state`` or in
  each ``checkpoint-N/``): ``log_history`` entries with ``step``, ``loss`` and the trainer's
  ``mind/*`` metrics averaged over each logging step (``mind/in_subset/<view>``,
  ``mind/alpha/<view>``, ``mind/score/<view>``, ``mind/L_p/<view>``, ``mind/grad_share/<view>``, ``mind/subset_size``,
  ``mind/consistency``, ``mind/meta_loss``, ``mind/meta_top1``, ``mind/meta_spearman``,
  ``mind/flops``);
- evaluation: ``eval_results.json`` (split -> summary) and ``eval/<split>.parquet`` (predictions,
  the summary in the schema metadata under ``mind.eval``);
- the latent-space analysis of the run's student (``python -m benchmarks.latent``), when present:
  ``latent/latent.json`` (``measures``: view silhouette, k-NN view purity, perspective invariance,
  with their intervals; ``images``: PNG files beside it, shown inline).

Every file is checked to lie inside DIR; a malformed one raises :class:`DataError` naming it. A
``mind_summary.json`` of the trainer before its rewrite (``probes``, ``pick_share``, no
``history``) is refused the same way, saying so; an old ``trainer_state.json`` alone is read, but
its ``mind/*`` metrics are not charted (a note on the page says so).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from data_schemas.run_files import EVAL_RESULTS, MIND_SUMMARY

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
    latent: list[tuple[str, str]] = field(default_factory=list)  # latent/latent.json: (measure, shown value) rows
    latent_images: list[tuple[str, str]] = field(default_factory=list)  # (file name, data: URI) of its PNGs

    @property
    def log(self) -> list[dict[str, Any]]:
        return self.state["log_history"] if self.state else []

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.summary["history"] if self.summary else []

    @property
    def strategy(self) -> str | None:
        return str(self.summary["strategy"]) if self.summary and self.summary.get("strategy") is not None else None

    @property
    def flops(self) -> float | None:
        """Estimated training FLOPs: the summary's compute account, else the last logged ``mind/flops``."""
        compute = self.summary.get("compute") if self.summary else None
        if isinstance(compute, dict) and _num(compute.get("flops")) is not None:
            return _num(compute["flops"])
        logged = [f for e in self.log if (f := _num(e.get("mind/flops"))) is not None]
        return logged[-1] if logged else None

    @property
    def views(self) -> list[str]:
        if self.summary:
            return list(self.summary["views"])
        names = {k.split("/", 2)[2] for e in self.log for k in e if k.startswith(PER_VIEW_LOG) and k not in EXTRA_LINE_LOGS}
        return sorted(names)

    @property
    def steps(self) -> int | None:
        if self.state and isinstance(self.state.get("global_step"), int):
            return self.state["global_step"]
        steps = [e["step"] for e in self.log + self.history if _num(e.get("step")) is not None]
        return int(max(steps)) if steps else None


PER_VIEW = ("in_subset", "alpha", "score", "L_p", "grad_share")  # per-view series: history[i][name][view], log "mind/name/view"
EXTRA_LINES = {"grad_share": ("consistency",)}  # lines of a per-view chart that are not views
EXTRA_LINE_LOGS = {f"mind/{chart}/{line}" for chart, lines in EXTRA_LINES.items() for line in lines}
PER_VIEW_LOG = tuple(f"mind/{k}/" for k in PER_VIEW)
OLD_SUMMARY_KEYS = ("probes", "feedback")  # the trainer before the MetaNet rewrite
OLD_VIEW_KEYS = ("picks", "pick_share", "mean_weight")
OLD_LOG_PREFIXES = ("mind/pick_share/", "mind/mean_weight/", "mind/probe_loss", "mind/ta_reward")


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
    summary_file = d / MIND_SUMMARY
    if summary_file.is_file():
        run.summary = _check_summary(_read_json(registry.inside(summary_file)), summary_file)
        run.summary_file = summary_file
    else:
        run.notes.append("no mind_summary.json (written when training finishes): no totals or compute account")
    state_file = d / "trainer_state.json" if (d / "trainer_state.json").is_file() else _latest_checkpoint_state(d)
    if state_file is not None:
        data = _read_json(registry.inside(state_file))
        if not isinstance(data, dict) or not isinstance(data.get("log_history"), list):
            raise DataError(state_file, "expected an object with a 'log_history' list")
        if not all(isinstance(e, dict) for e in data["log_history"]):
            raise DataError(state_file, "'log_history' entries must be objects")
        run.state, run.state_file = data, state_file
        if not run.views and any(k.startswith(OLD_LOG_PREFIXES) for e in run.log for k in e):
            run.notes.append(
                f"{state_file.name} holds the metrics of an older trainer (mind/pick_share/..., probes): "
                "only the training loss is charted"
            )
    else:
        run.notes.append(
            "no trainer_state.json: the training loss over steps is saved with checkpoints (e.g. --save_strategy "
            "steps); the other charts come from mind_summary.json's history"
        )
    run.evals = _load_evals(d, registry)
    run.latent, run.latent_images = _load_latent(d / "latent", registry)
    return run


def _check_summary(data: Any, path: Path) -> dict[str, Any]:
    """``mind_summary.json`` as ``MindTrainer.summary`` writes it, or :class:`DataError`."""
    if not isinstance(data, dict) or not isinstance(data.get("views"), dict):
        raise DataError(path, "expected an object with 'views' (per perspective: present, kept, in_subset, ...)")
    for name, v in data["views"].items():
        if not isinstance(v, dict):
            raise DataError(path, f"views.{name}: expected an object")
    old = [k for k in OLD_SUMMARY_KEYS if k in data]
    old += sorted({k for v in data["views"].values() for k in OLD_VIEW_KEYS if k in v})
    if old and "history" not in data:
        raise DataError(
            path,
            f"written by an older MIND trainer ({', '.join(old)}; no 'history'): this viewer reads the format "
            "of the current distill.trainer (views with present / kept / in_subset, compute, history)",
        )
    if not isinstance(data.get("history"), list):
        raise DataError(path, "expected a 'history' list (one entry per history_every steps)")
    for i, e in enumerate(data["history"]):
        if not isinstance(e, dict):
            raise DataError(path, f"history[{i}]: expected an object")
        for k in PER_VIEW:
            if not isinstance(e.get(k, {}), dict):
                raise DataError(path, f"history[{i}].{k}: expected an object (view -> value)")
    if not isinstance(data.get("compute", {}), dict):
        raise DataError(path, "'compute' must be an object (params, forward_tokens, ...)")
    return data


def _load_evals(d: Path, registry: Registry) -> dict[str, dict[str, Any]]:
    evals: dict[str, dict[str, Any]] = {}
    results = d / EVAL_RESULTS
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


MAX_IMAGE_BYTES = 5 * 1024 * 1024


def _load_latent(d: Path, registry: Registry) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``latent/latent.json`` of ``benchmarks.latent``: its measures as table rows and its PNGs as
    ``data:`` URIs (plain file names beside it only); nothing when the file is absent."""
    path = d / "latent.json"
    if not path.is_file():
        return [], []
    data = _read_json(registry.inside(path))
    if not isinstance(data, dict) or not isinstance(data.get("measures"), dict):
        raise DataError(path, "expected an object with 'measures' (silhouette, knn_purity, invariance, ...)")
    m = data["measures"]
    try:
        rows = [
            ("view silhouette (cosine) [95% CI]", f"{m['silhouette']:.3f} {_interval(m.get('silhouette_ci95'))}"),
            ("k-NN view purity (chance)", f"{m['knn_purity']:.1%} ({m['knn_chance']:.1%})"),
        ]
        if isinstance(m.get("invariance"), dict):
            inv = m["invariance"]
            rows += [("perspective invariance [95% CI]", f"{inv['value']:+.3f} {_interval(inv.get('ci95'))}"),
                     ("similarity: same question across views / same view across questions",
                      f"{inv['same_question']:.3f} / {inv['same_view']:.3f}")]  # fmt: skip
        rows.append(("held-out points (questions)", f"{m['points']} ({m['questions']})"))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"measures: missing or malformed value ({exc})") from None
    images = []
    for name in data.get("images") or []:
        if not isinstance(name, str) or "/" in name or "\\" in name or not name.endswith(".png"):
            raise DataError(path, f"images: {name!r} is not a PNG file name beside latent.json")
        if not (d / name).is_file():
            continue
        f = registry.inside(d / name)
        if f.stat().st_size <= MAX_IMAGE_BYTES:
            images.append((name, "data:image/png;base64," + base64.b64encode(f.read_bytes()).decode()))
    return rows, images


def _interval(ci: Any) -> str:
    ok = isinstance(ci, list) and len(ci) == 2 and all(_num(v) is not None for v in ci)
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ok else ""


# ---------------------------------------------------------------- series for the charts
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _from(entries: list[dict[str, Any]], key: str, view: str | None = None) -> list[tuple[float, float]]:
    """``(step, entry[key])`` (or ``entry[key][view]``) of the entries that have both as finite numbers."""
    out = []
    for e in entries:
        y = e.get(key)
        if view is not None:
            y = y.get(view) if isinstance(y, dict) else None
        x, y = _num(e.get("step")), _num(y)
        if x is not None and y is not None:
            out.append((x, y))
    return out


# chart -> its lines: (line name, history key, log key); per-view charts have one line per view
SCALAR_CHARTS: dict[str, list[tuple[str, str]]] = {
    "subset_size": [("kept candidates per question", "subset_size")],
    "consistency": [("consistency loss", "consistency")],
    "meta_loss": [("L_meta", "meta_loss")],
    "meta_rank": [("top-1 agreement", "meta_top1"), ("Spearman rank correlation", "meta_spearman")],
}


def series(run: TrainingRun) -> tuple[dict[str, Series], dict[str, str | None]]:
    """Every chart's lines (chart -> line -> [(step, value)], empty when the files lack them) and
    where each chart's lines came from: ``history`` (mind_summary.json, one point per
    ``history_every`` steps), ``log`` (trainer_state.json, one per logging step; used when the
    history has nothing for that chart) or None (neither has it)."""
    views, log, history = run.views, run.log, run.history
    charts: dict[str, Series] = {}
    sources: dict[str, str | None] = {}

    def pick(name: str, from_history: Series, from_log: Series) -> None:
        if any(from_history.values()):
            charts[name], sources[name] = from_history, "history"
        else:
            charts[name], sources[name] = from_log, ("log" if any(from_log.values()) else None)

    for k in PER_VIEW:
        lines = [*views, *EXTRA_LINES.get(k, ())]
        pick(k, {v: _from(history, k, v) for v in lines}, {v: _from(log, f"mind/{k}/{v}") for v in lines})
    for name, lines in SCALAR_CHARTS.items():
        pick(name, {line: _from(history, key) for line, key in lines}, {line: _from(log, f"mind/{key}") for line, key in lines})
    charts["loss"] = {"training loss": _from(log, "loss")}
    sources["loss"] = "log" if charts["loss"]["training loss"] else None
    return charts, sources


# ---------------------------------------------------------------- predictions (DuckDB, paginated)
def predictions_page(path: Path, verdict: str | None, page: int, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of an evaluation's predictions (``verdict``: correct / incorrect / unjudged)."""
    from pipeline.shards import VERDICT_FILTERS

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
