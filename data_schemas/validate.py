"""Row and table validation against the contract, with errors that name the place."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .light import ContractError
from .schemas import ARROW_SCHEMAS, SCHEMA_VERSION, SCHEMAS, Column


_INT_BOUNDS = {
    pa.int16(): (-(2**15), 2**15 - 1),
    pa.int32(): (-(2**31), 2**31 - 1),
    pa.int64(): (-(2**63), 2**63 - 1),
}


def _check_value(col: Column, value: Any) -> Any:
    """Return ``value`` converted to the column's Python type, or raise ``ValueError``."""
    t = col.type
    if t == pa.string():
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__} {value!r:.60}")
        return value
    if t == pa.bool_():
        if not isinstance(value, bool):
            raise ValueError(f"expected true/false, got {value!r:.60}")
        return value
    if pa.types.is_integer(t):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"expected an integer, got {value!r:.60}")
        lo, hi = _INT_BOUNDS[t]
        if not lo <= value <= hi:
            raise ValueError(f"{value} does not fit {t}")
        return value
    if pa.types.is_floating(t):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r:.60}")
        if not math.isfinite(float(value)):
            raise ValueError(f"expected a finite number, got {value!r}")
        return float(value)
    raise TypeError(f"unsupported contract type {t}")  # pragma: no cover - schema bug


def validate_row(row: Mapping[str, Any], kind: str = "rationales") -> dict[str, Any]:
    """Check one row against the contract and return it normalised (all columns present).

    Raises ``ValueError`` naming the offending field; callers add the file and line.
    """
    columns = SCHEMAS[kind]
    known = {c.name for c in columns}
    unknown = sorted(set(row) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} (put extras in 'metadata')")
    out: dict[str, Any] = {}
    for col in columns:
        value = row.get(col.name)
        if value is None and col.name == "schema_version":
            value = SCHEMA_VERSION
        if value is None:
            if col.required and not col.nullable:
                missing = "missing" if col.name not in row else "null"
                raise ValueError(f"field {col.name!r} is {missing} but required")
            out[col.name] = None
            continue
        try:
            out[col.name] = _check_value(col, value)
        except ValueError as exc:
            raise ValueError(f"field {col.name!r}: {exc}") from None
        if col.type == pa.string() and not col.nullable and col.name != "rationale" and not value.strip():
            raise ValueError(f"field {col.name!r} is empty")
    return out


def rows_to_table(rows: Iterable[Mapping[str, Any]], kind: str = "rationales", where: str = "") -> pa.Table:
    """Validate rows and build a contract table. Errors name ``where`` and the row index."""
    checked = []
    for i, row in enumerate(rows):
        try:
            checked.append(validate_row(row, kind))
        except ValueError as exc:
            raise ContractError(f"{where}row {i}" if not where else f"{where}: row {i}", str(exc)) from None
    return pa.Table.from_pylist(checked, schema=ARROW_SCHEMAS[kind])


def conform_table(table: pa.Table, kind: str, where: str) -> pa.Table:
    """Return ``table`` in the exact contract schema, or raise ``ContractError``.

    Missing required columns, incompatible types and nulls in non-nullable columns are
    errors naming ``where`` (the file) and the column. Optional columns that are absent
    are added as nulls; lossless casts (e.g. int64 -> int32 in range, large_string ->
    string) are applied; extra columns are dropped.
    """
    columns = SCHEMAS[kind]
    arrays = []
    n = table.num_rows
    names = set(table.column_names)
    for col in columns:
        if col.name not in names:
            if col.required:
                raise ContractError(where, f"missing required column {col.name!r} ({col.type})")
            arrays.append(pa.nulls(n, type=col.type))
            continue
        arr = table.column(col.name)
        if arr.type != col.type:
            try:
                arr = arr.cast(col.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ContractError(
                    where, f"column {col.name!r} has type {arr.type}, expected {col.type} ({exc})"
                ) from None
        if not col.nullable and arr.null_count:
            first = pc.index(pc.is_null(arr), True).as_py()
            raise ContractError(where, f"column {col.name!r} has {arr.null_count} null value(s), first at row {first}")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMAS[kind])
