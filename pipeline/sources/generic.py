"""Generic question files with configurable column names: JSON Lines (or a JSON array), Parquet, and
a ``datasets`` Dataset saved to disk. Ids from an id column, else a content hash."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

from ..ids import content_question_id
from ..readers import iter_records
from .rows import gold_text, make_question_row, require_field, require_path


@dataclasses.dataclass(frozen=True)
class ColumnMap:
    """Which field of a generic record holds what."""

    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str | None = None
    task: str | None = None
    task_field: str | None = None
    reference_field: str | None = None
    metadata_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.task is None and self.task_field is None:
            raise ValueError("generic question sources need task=... (one task) or task_field=... (a column)")

    def needed(self) -> list[str]:
        cols = [self.question_field, self.answer_field, self.id_field, self.task_field, self.reference_field]
        return list(dict.fromkeys([c for c in cols if c] + list(self.metadata_fields)))


def _column_map(options: dict[str, Any]) -> ColumnMap:
    opts = dict(options)
    if "metadata_fields" in opts and opts["metadata_fields"] is not None:
        opts["metadata_fields"] = tuple(opts["metadata_fields"])
    try:
        return ColumnMap(**opts)
    except TypeError as exc:
        raise ValueError(f"bad option for a generic question source: {exc}") from None


def _mapped_rows(
    records: Iterable[tuple[str, Any]], cmap: ColumnMap, *, source: str, split: str | None, noun: str
) -> Iterator[dict[str, Any]]:
    seen: dict[str, str] = {}
    for where, obj in records:
        question = require_field(obj, cmap.question_field, where, noun).strip()
        answer = require_field(obj, cmap.answer_field, where, noun, kind=(str, int, float))
        if cmap.task_field and obj.get(cmap.task_field) is not None:
            task = require_field(obj, cmap.task_field, where, noun)
        elif cmap.task is not None:
            task = cmap.task
        else:
            raise ContractError(where, f"missing {noun} {cmap.task_field!r} (and no default task given)")
        if cmap.id_field:
            qid = gold_text(require_field(obj, cmap.id_field, where, noun, kind=(str, int)))
        else:
            qid = content_question_id(source, question)
        if qid in seen:
            raise ContractError(where, f"duplicate question id {qid!r} (first at {seen[qid]})")
        seen[qid] = where
        reference = obj.get(cmap.reference_field) if cmap.reference_field else None
        if reference is not None and not isinstance(reference, str):
            raise ContractError(where, f"{noun} {cmap.reference_field!r} must be a string")
        meta = {k: obj[k] for k in cmap.metadata_fields if obj.get(k) is not None}
        yield make_question_row(
            where,
            question_id=qid,
            question=question,
            gold=answer,
            task=task,
            source=source,
            split=split,
            reference_rationale=reference,
            metadata=meta,
            gold_field=cmap.answer_field,
        )


def jsonl_questions(
    path: str | Path | None,
    *,
    source: str | None = None,
    split: str | None = None,
    **mapping: Any,
) -> Iterator[dict[str, Any]]:
    """Generic JSON Lines (or a JSON array) with configurable fields: ``question_field``,
    ``answer_field``, ``id_field`` (else a content hash id), ``task`` or ``task_field``,
    ``reference_field``, ``metadata_fields``. ``source`` defaults to the file stem."""
    path = require_path(path, "jsonl")
    cmap = _column_map(mapping)
    records = ((f"{path}:{line}", obj) for line, obj in iter_records(path))
    yield from _mapped_rows(records, cmap, source=source or path.stem, split=split, noun="field")


def parquet_questions(
    path: str | Path | None, *, source: str | None = None, split: str | None = None, **mapping: Any
) -> Iterator[dict[str, Any]]:
    """Generic Parquet file with the same column mapping as :func:`jsonl_questions`; errors
    name ``FILE: row N`` and the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = require_path(path, "parquet")
    cmap = _column_map(mapping)
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(str(path), f"unreadable Parquet file ({exc})") from None
    have = set(pf.schema_arrow.names)
    required = [cmap.question_field, cmap.answer_field] + [c for c in (cmap.id_field,) if c]
    if cmap.task is None:
        required.append(cmap.task_field)
    for col in required:
        if col not in have:
            raise ContractError(str(path), f"no column {col!r} (columns: {', '.join(sorted(have))})")
    columns = [c for c in cmap.needed() if c in have]

    def records() -> Iterator[tuple[str, Any]]:
        i = 0
        for batch in pf.iter_batches(batch_size=8192, columns=columns):
            for obj in batch.to_pylist():
                yield f"{path}: row {i}", obj
                i += 1

    yield from _mapped_rows(records(), cmap, source=source or path.stem, split=split, noun="column")


def hf_disk_questions(
    path: str | Path | None, *, split: str | None = None, source: str | None = None, **mapping: Any
) -> Iterator[dict[str, Any]]:
    """A ``datasets`` Dataset or DatasetDict saved with ``save_to_disk``; ``split`` picks a split
    of a DatasetDict (optional when it has one). Same column mapping as :func:`jsonl_questions`."""
    import datasets

    path = require_path(path, "hf-disk")
    cmap = _column_map(mapping)
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise ContractError(str(path), f"not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise ContractError(str(path), f"a DatasetDict: choose split= one of {', '.join(ds)}")
            split = next(iter(ds))
        if split not in ds:
            raise ContractError(str(path), f"no split {split!r} (splits: {', '.join(ds)})")
        ds = ds[split]
    label = f"{path}[{split}]" if split else str(path)
    yield from dataset_rows(ds, cmap, label=label, source=source or path.name, split=split)


def dataset_rows(ds: Any, cmap: ColumnMap, *, label: str, source: str, split: str | None) -> Iterator[dict[str, Any]]:
    """Question rows of a ``datasets.Dataset`` through the column map; errors name ``label: row N``."""
    have = set(ds.column_names)
    required = [cmap.question_field, cmap.answer_field] + [c for c in (cmap.id_field,) if c]
    if cmap.task is None:
        required.append(cmap.task_field)
    for col in required:
        if col not in have:
            raise ContractError(label, f"no column {col!r} (columns: {', '.join(sorted(have))})")
    ds = ds.select_columns([c for c in cmap.needed() if c in have])

    def records() -> Iterator[tuple[str, Any]]:
        i = 0
        for batch in ds.iter(batch_size=1024):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys), strict=True):
                yield f"{label}: row {i}", dict(zip(keys, values, strict=True))
                i += 1

    yield from _mapped_rows(records(), cmap, source=source, split=split, noun="column")
