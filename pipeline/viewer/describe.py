"""One-line descriptions of a run manifest's configuration (source, perspectives, teachers, sampling).

Manifests differ by writer (``flows.synthesize``, ``python -m pipeline.synthetic``,
``pipeline.ingest``); each field falls back to ``None`` when its writer does not record it.
"""

from __future__ import annotations

from typing import Any

from data_schemas import Manifest

__all__ = ["describe_manifest"]


def _source(cfg: dict[str, Any]) -> str | None:
    src = cfg.get("source")
    if isinstance(src, dict):
        text = str(src.get("kind") or "?")
        if src.get("path"):
            text += f":{src['path']}"
        opts = src.get("options")
        if isinstance(opts, dict) and opts:
            text += " (" + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")"
        return text
    if isinstance(src, str):
        return src
    if "questions_run_id" in cfg:  # python -m pipeline.synthetic
        return f"synthetic world, {cfg.get('split', 'train')} split ({cfg['questions_run_id']})"
    if "input" in cfg:  # pipeline.ingest
        return f"{cfg.get('format', 'ingest')}: {cfg['input']}"
    return None


def _names(items: Any) -> list[str]:
    if isinstance(items, str):
        return [items]
    out = []
    for it in items if isinstance(items, list) else []:
        if isinstance(it, dict):
            out.append(str(it.get("name") or it.get("backend") or "?"))
        else:
            out.append(str(it))
    return out


def _sampling(cfg: dict[str, Any]) -> str | None:
    parts = []
    sampling = cfg.get("sampling")
    if isinstance(sampling, dict):
        parts += [f"{k} {v}" for k, v in sampling.items() if v not in (None, [], {})]
    noise = cfg.get("noise")
    if isinstance(noise, dict):
        parts += [f"{k} {v}" for k, v in noise.items() if isinstance(v, int | float)]
    if cfg.get("samples") is not None:
        parts.append(f"{cfg['samples']} sample(s) per view")
    if cfg.get("seed") is not None:
        parts.append(f"seed {cfg['seed']}")
    return " · ".join(parts) or None


def _judge(cfg: dict[str, Any]) -> str | None:
    """``flows.synthesize``'s judge section (its identity, in the manifest only when a judge was set)."""
    judge = cfg.get("judge")
    if not isinstance(judge, dict) or judge.get("mode") in (None, "off"):
        return None
    teacher = judge.get("teacher")
    name = teacher.get("name") if isinstance(teacher, dict) else teacher
    rows = {"unjudged": "rows the rule left unjudged", "all": "every row"}.get(str(judge["mode"]), str(judge["mode"]))
    return f"{name or '?'} on {rows}, prefer {judge.get('prefer', 'rule')}"


def describe_manifest(m: Manifest) -> dict[str, Any]:
    """``source``, ``perspectives``, ``teachers``, ``sampling``, ``judge``, ``rows``, ``shards``, ``when``,
    ``complete``."""
    cfg = m.config or {}
    perspectives = _names(cfg.get("perspectives"))
    teachers = _names(cfg.get("teachers") or cfg.get("teacher"))
    groups = m.stats.get("groups") if isinstance(m.stats, dict) else None
    if isinstance(groups, list) and groups and all(isinstance(g, dict) for g in groups):
        perspectives = perspectives or sorted({str(g.get("perspective")) for g in groups if g.get("perspective")})
        teachers = teachers or sorted({str(g.get("teacher")) for g in groups if g.get("teacher")})
    return {
        "run_id": m.run_id,
        "source": _source(cfg),
        "perspectives": perspectives,
        "teachers": teachers,
        "sampling": _sampling(cfg),
        "judge": _judge(cfg),
        "rows": m.rows,
        "shards": len(m.shards),
        "when": m.updated_at or m.created_at,
        "created": m.created_at,
        "complete": m.complete,
    }
