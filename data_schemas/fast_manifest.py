"""Reading a manifest fast: the fields readers of finished shards need, with the standard ``json``
module when the manifest is plainly valid, and through the validating reader
(:func:`data_schemas.load_manifest`, pydantic) otherwise, so that answers and errors are the same."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .light import MANIFEST_NAME, SCHEMA_VERSION


@dataclass(frozen=True)
class ShardEntry:
    """A shard as listed in a manifest: its name (relative to ``shards/``, no suffix) and rows."""

    name: str
    rows: int


@dataclass(frozen=True)
class ManifestView:
    """The fields of a manifest that readers of finished shards need (see :func:`read_manifest_fast`)."""

    run_id: str
    kind: str
    schema_version: int
    complete: bool
    shards: tuple[ShardEntry, ...]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)


_OPTIONAL_TYPES: dict[str, type] = {
    "kind": str, "schema_version": int, "created_at": str, "updated_at": str, "complete": bool, "config": dict,
    "stats": dict, "shards": list,
}  # fmt: skip
_SHARD_TYPES: dict[str, type] = {"name": str, "rows": int, "sha256": str, "bytes": int}


def _exact(value: Any, t: type) -> bool:
    return type(value) is t  # no bool for int, no subclasses: anything else goes to pydantic


def _plain(raw: Any) -> ManifestView | None:
    """``raw`` as a ManifestView when it is a plainly valid manifest (every field present with
    exactly its type, supported version); None when pydantic must decide (coercions, errors)."""
    if not isinstance(raw, dict) or not _exact(raw.get("run_id"), str):
        return None
    for key, t in _OPTIONAL_TYPES.items():
        if key in raw and not _exact(raw[key], t):
            return None
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        return None
    shards = []
    for s in raw.get("shards", []):
        if not isinstance(s, dict) or not all(_exact(s.get(k), t) for k, t in _SHARD_TYPES.items()):
            return None
        if "created_at" in s and not _exact(s["created_at"], str):
            return None
        shards.append(ShardEntry(s["name"], s["rows"]))
    return ManifestView(
        raw["run_id"], raw.get("kind", "rationales"), version, raw.get("complete", False), tuple(shards)
    )


def read_manifest_fast(run_dir: str | Path) -> ManifestView:
    """The run id, kind, version, completeness and shards of ``run_dir/manifest.json``.

    Gives what :func:`data_schemas.load_manifest` gives for those fields, and raises the same
    errors: a manifest whose fields all have exactly their types is read here with the standard
    ``json`` module; any other (missing, invalid JSON, values pydantic would coerce or refuse,
    a newer schema version) is handed to :func:`data_schemas.load_manifest` (importing
    pydantic), so that its answer and its errors are the validated reader's.
    """
    path = Path(run_dir) / MANIFEST_NAME
    try:
        view = _plain(json.loads(path.read_text()))
    except (OSError, ValueError):
        view = None
    if view is not None:
        return view
    from .manifest import load_manifest  # the validating reader: its result or its error

    m = load_manifest(run_dir)
    return ManifestView(
        m.run_id, m.kind, m.schema_version, m.complete, tuple(ShardEntry(s.name, s.rows) for s in m.shards)
    )
