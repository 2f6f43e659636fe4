"""The data contract between synthesis and distillation (DESIGN §3).

Arrow schemas for question and rationale rows, the run manifest, atomic shard writing and
validated reading. ``distill`` reads shards only through this package.
"""

from .io import (
    RunWriter,
    atomic_path,
    find_runs,
    read_questions,
    read_rationales,
    read_run,
    read_table,
    shard_paths,
    write_parquet_atomic,
    write_rejects,
    write_text_atomic,
)
from .manifest import MANIFEST_NAME, Manifest, ShardInfo, load_manifest
from .schemas import (
    QUESTION_COLUMNS,
    QUESTION_SCHEMA,
    RATIONALE_COLUMNS,
    RATIONALE_SCHEMA,
    SCHEMA_VERSION,
    Column,
)
from .validate import ContractError, conform_table, rows_to_table, validate_row

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
