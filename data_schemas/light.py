"""The parts of the contract that need neither pyarrow nor pydantic (fast to import).

:class:`ContractError`, the constants of the run layout and :func:`find_runs` live here (and
:func:`data_schemas.fast_manifest.read_manifest_fast` beside them) so that a short-lived command
(``python -m pipeline.browse DIR show ID``) can find runs and read their manifests without
importing pyarrow (~0.35 s) or pydantic (~0.1 s). Everything here is re-exported unchanged by
:mod:`data_schemas` (the same objects: ``data_schemas.ContractError is data_schemas.light.ContractError``).
"""

from __future__ import annotations

from pathlib import Path

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_DIR = "shards"


class ContractError(ValueError):
    """Data that breaks the contract. ``where`` names the file (and line/column/row)."""

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)


# historically defined in data_schemas.validate (which re-exports it): keep its repr and pickles
ContractError.__module__ = "data_schemas.validate"


def find_runs(root: str | Path, max_depth: int = 3) -> list[Path]:
    """Run directories at or below ``root`` (folders holding a manifest.json), sorted."""
    root = Path(root)
    if not root.exists():
        raise ContractError(str(root), "no such directory")
    found: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        if (d / MANIFEST_NAME).is_file():
            found.append(d)
            return
        if depth >= max_depth:
            return
        for child in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(child, depth + 1)

    walk(root, 0)
    return found
