"""Shard footer checks: a rationale shard's Parquet footer read once, its schema checked against the
contract, and the question-id range that lets :class:`pipeline.shards.Shards` prune ``show``.

Two readers give the same verdict: :func:`read_footers` reads every shard's footer with DuckDB in
three queries (so that the browsing commands need not import pyarrow) and accepts only the plainly
valid shards; any other goes through :func:`checked_footer` (pyarrow), which gives the errors.
Bad input raises :class:`data_schemas.ContractError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_schemas.light import SCHEMA_VERSION, ContractError
from pipeline.duckdb_engine import duckdb

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = ["JUDGE_COLUMN", "FooterInfo", "check_shard_schema", "checked_footer", "question_id_range", "read_footer",
           "read_footers"]  # fmt: skip

JUDGE_COLUMN = "judge_model"  # present in every shard that has the judge columns


@dataclass(frozen=True)
class FooterInfo:
    """What the shard queries need of one valid shard's footer."""

    id_range: tuple[str, str] | None  # see question_id_range
    judged: bool  # has the judge columns


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a file column of type ``actual`` reads losslessly enough as contract type ``expected``."""
    import pyarrow as pa

    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_string_view(actual)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_boolean(expected):
        return pa.types.is_boolean(actual)
    return actual == expected


def read_footer(path: Path) -> pq.FileMetaData:
    """A shard's Parquet footer (schema, row groups and their statistics), read once (with pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(str(path), f"unreadable Parquet file ({_one_line(str(exc))})") from None


def check_shard_schema(path: Path, footer: pq.FileMetaData | None = None) -> None:
    """Check a shard's footer: readable Parquet, supported version, required columns with sane types.

    ``footer``: the file's :func:`read_footer`, when it has been read already.
    """
    import pyarrow as pa

    from data_schemas import RATIONALE_COLUMNS

    try:
        schema = (footer or read_footer(path)).schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(str(path), f"unreadable Parquet file ({_one_line(str(exc))})") from None
    meta = schema.metadata or {}
    try:
        version = int(meta.get(b"mind.schema_version", str(SCHEMA_VERSION).encode()).decode())
    except ValueError:
        version = SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise ContractError(str(path), f"schema_version {version} is newer than supported ({SCHEMA_VERSION})")
    for col in RATIONALE_COLUMNS:
        if not col.required:
            continue
        idx = schema.get_field_index(col.name)
        if idx < 0:
            raise ContractError(str(path), f"missing required column {col.name!r} ({col.type})")
        actual = schema.field(idx).type
        if not _type_ok(actual, col.type):
            raise ContractError(str(path), f"column {col.name!r} has type {actual}, expected {col.type}")


def question_id_range(footer: pq.FileMetaData) -> tuple[str, str] | None:
    """``(min, max)`` question id of a shard from its row groups' statistics; None when unknown
    (no statistics, or not strings), in which case the shard is never skipped."""
    import pyarrow as pa

    try:
        col = next(j for j in range(footer.num_columns) if footer.schema.column(j).path == "question_id")
        lo = hi = None
        for g in range(footer.num_row_groups):
            st = footer.row_group(g).column(col).statistics
            if st is None or not st.has_min_max or not isinstance(st.min, str) or not isinstance(st.max, str):
                return None
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
    except (StopIteration, ValueError, pa.ArrowException):
        return None
    return None if lo is None or hi is None else (lo, hi)


def checked_footer(path: Path) -> FooterInfo:
    """Read and check one shard's footer with pyarrow (raising its ``ContractError``), then summarise it."""
    footer = read_footer(path)
    check_shard_schema(path, footer)
    return FooterInfo(question_id_range(footer), JUDGE_COLUMN in footer.schema.names)


# Footers are read with DuckDB's parquet_schema / parquet_kv_metadata / parquet_metadata (one
# query each over every shard), so that show / list / stats import DuckDB but not pyarrow (about
# 0.35 s of start-up). Only a shard that is plainly valid for DuckDB is accepted here; any other
# (unreadable, a required column missing or of a doubtful type, a newer schema version) goes
# through the pyarrow checks (checked_footer), which give the errors (and the verdict) they always gave.
_REQUIRED_KINDS: dict[str, str] = {
    "question_id": "string", "question": "string", "gold_answer": "string", "task": "string",
    "perspective": "string", "teacher": "string", "sample_index": "integer", "rationale": "string",
    "predicted_answer": "string", "is_correct": "boolean", "finish_reason": "string", "num_tokens": "integer",
    "seed": "integer", "run_id": "string", "schema_version": "integer",
}  # fmt: skip
"""The required rationale columns (``data_schemas.RATIONALE_COLUMNS``) and the kind of type each
must have (checked against the contract by the tests)."""
_INT_ANNOTATIONS = {None, "INT_8", "INT_16", "INT_32", "INT_64", "UINT_8", "UINT_16", "UINT_32", "UINT_64"}


def _parquet_kind(physical: str | None, converted: str | None, logical: str | None) -> str | None:
    """``string`` / ``integer`` / ``boolean`` for a plain Parquet leaf column of that kind, else None."""
    if physical == "BYTE_ARRAY" and (converted == "UTF8" or (logical or "").startswith("StringType")):
        return "string"
    if physical in ("INT32", "INT64") and converted in _INT_ANNOTATIONS and (logical is None or "IntType" in logical):
        return "integer"
    if physical == "BOOLEAN" and converted is None and logical is None:
        return "boolean"
    return None


def _top_level(rows: list[tuple[Any, ...]]) -> dict[str, str | None]:
    """Top-level column name -> kind, from one file's parquet_schema rows (depth-first order:
    ``(name, physical, converted, logical, num_children)``, the root first); nested -> None."""
    out: dict[str, str | None] = {}
    i = 1
    while i < len(rows):
        name, physical, converted, logical, children = rows[i]
        out[name] = None if children else _parquet_kind(physical, converted, logical)
        skip = children or 0  # skip the whole subtree of a nested column
        i += 1
        while skip:
            skip += (rows[i][4] or 0) - 1
            i += 1
    return out


def read_footers(con: duckdb.DuckDBPyConnection, files: Sequence[Path]) -> dict[str, FooterInfo]:
    """The footers of ``files`` that are plainly valid, read with DuckDB; the others are left out
    (every file, when DuckDB cannot read one of them)."""
    if not files:
        return {}
    listing = "[" + ", ".join(_sql_str(str(p)) for p in files) + "]"
    try:
        schema_rows = con.execute(
            "SELECT file_name, name, type, converted_type, logical_type, num_children "
            f"FROM parquet_schema({listing})"
        ).fetchall()
        versions = dict(
            con.execute(
                "SELECT file_name, decode(value) FROM parquet_kv_metadata(" + listing + ") "
                "WHERE decode(key) = 'mind.schema_version'"
            ).fetchall()
        )
        stats = con.execute(
            "SELECT file_name, stats_min_value, stats_max_value FROM parquet_metadata(" + listing + ") "
            "WHERE path_in_schema = 'question_id'"
        ).fetchall()
    except (duckdb.Error, UnicodeDecodeError):
        return {}
    by_file: dict[str, list[tuple[Any, ...]]] = {}
    for file_name, *row in schema_rows:
        by_file.setdefault(file_name, []).append(tuple(row))
    ranges: dict[str, list[tuple[Any, Any]]] = {}
    for file_name, lo, hi in stats:
        ranges.setdefault(file_name, []).append((lo, hi))
    out: dict[str, FooterInfo] = {}
    for path in map(str, files):
        columns = _top_level(by_file.get(path, []))
        if any(columns.get(name) != kind for name, kind in _REQUIRED_KINDS.items()):
            continue
        try:
            version = int(versions.get(path, SCHEMA_VERSION))
        except ValueError:
            version = SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            continue
        groups = ranges.get(path, [])
        id_range = None
        if groups and all(isinstance(lo, str) and isinstance(hi, str) for lo, hi in groups):
            id_range = (min(lo for lo, _ in groups), max(hi for _, hi in groups))
        out[path] = FooterInfo(id_range, JUDGE_COLUMN in columns)
    return out


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _one_line(s: str, limit: int = 300) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
