"""The run manifest: which shards of a run directory are finished, with row counts and checksums."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from .schemas import SCHEMA_VERSION
from .light import MANIFEST_NAME, ContractError


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class ShardInfo(BaseModel):
    """One finished shard file (path relative to the run directory)."""

    name: str
    rows: int
    sha256: str
    bytes: int
    created_at: str = Field(default_factory=utc_now)


class Manifest(BaseModel):
    """``manifest.json`` of a run directory. Only shards listed here are part of the run."""

    run_id: str
    kind: str = "rationales"  # "rationales" or "questions"
    schema_version: int = SCHEMA_VERSION
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    complete: bool = False
    config: dict[str, Any] = Field(default_factory=dict)
    stats: dict[str, Any] = Field(default_factory=dict)
    shards: list[ShardInfo] = Field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def shard(self, name: str) -> ShardInfo | None:
        return next((s for s in self.shards if s.name == name), None)


def load_manifest(run_dir: str | Path) -> Manifest:
    """Read and validate ``run_dir/manifest.json``; errors name the file and the field."""
    path = Path(run_dir) / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContractError(str(path), "no manifest (not a run directory?)") from None
    except json.JSONDecodeError as exc:
        raise ContractError(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}") from None
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ContractError(str(path), f"field {field!r}: {err['msg']}") from None
    if manifest.schema_version > SCHEMA_VERSION:
        raise ContractError(
            str(path),
            f"schema_version {manifest.schema_version} is newer than this toolkit supports ({SCHEMA_VERSION}); upgrade",
        )
    return manifest
