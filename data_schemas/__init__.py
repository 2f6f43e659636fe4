"""The data contract between synthesis and distillation (docs/design.md).

Arrow schemas for question and rationale rows, the run manifest, atomic shard writing and
validated reading. ``distill`` reads shards only through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The light part (no pyarrow, no pydantic) is imported at once; the rest on first use (PEP 562),
# so that ``from data_schemas import ContractError`` or ``import data_schemas.light`` costs
# milliseconds, not the ~0.5 s of pyarrow + pyarrow.compute + pydantic. Every name below is the
# same object as before, reached the same way (``data_schemas.X``, ``from data_schemas import X``).
from .light import MANIFEST_NAME, SCHEMA_VERSION, ContractError, find_runs

_LAZY = {
    "RunWriter": "io", "atomic_path": "io", "read_questions": "io", "read_rationales": "io", "read_run": "io",
    "read_table": "io", "shard_paths": "io", "write_parquet_atomic": "io", "write_rejects": "io",
    "write_text_atomic": "io",
    "Manifest": "manifest", "ShardInfo": "manifest", "load_manifest": "manifest",
    "QUESTION_COLUMNS": "schemas", "QUESTION_SCHEMA": "schemas", "RATIONALE_COLUMNS": "schemas",
    "RATIONALE_SCHEMA": "schemas", "Column": "schemas",
    "conform_table": "validate", "rows_to_table": "validate", "validate_row": "validate",
}  # fmt: skip
_SUBMODULES = {"io", "light", "manifest", "schemas", "validate"}

if TYPE_CHECKING:
    from .io import (
        RunWriter,
        atomic_path,
        read_questions,
        read_rationales,
        read_run,
        read_table,
        shard_paths,
        write_parquet_atomic,
        write_rejects,
        write_text_atomic,
    )
    from .manifest import Manifest, ShardInfo, load_manifest
    from .schemas import QUESTION_COLUMNS, QUESTION_SCHEMA, RATIONALE_COLUMNS, RATIONALE_SCHEMA, Column
    from .validate import conform_table, rows_to_table, validate_row


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "MANIFEST_NAME",
    "QUESTION_COLUMNS",
    "QUESTION_SCHEMA",
    "RATIONALE_COLUMNS",
    "RATIONALE_SCHEMA",
    "SCHEMA_VERSION",
    "Column",
    "ContractError",
    "Manifest",
    "RunWriter",
    "ShardInfo",
    "atomic_path",
    "conform_table",
    "find_runs",
    "load_manifest",
    "read_questions",
    "read_rationales",
    "read_run",
    "read_table",
    "rows_to_table",
    "shard_paths",
    "validate_row",
    "write_parquet_atomic",
    "write_rejects",
    "write_text_atomic",
]
