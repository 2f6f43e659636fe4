"""Questions from a data set on the Hugging Face hub, by its id (``openai/gsm8k``), through
``datasets.load_dataset`` (config, split, revision): the local ``datasets`` cache first, a download only
when the hub is reachable and ``HF_HUB_OFFLINE`` is not set. Same column mapping as the generic files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .generic import _column_map, dataset_rows

#: how a path names a hub data set where a reader also takes files (``hf:openai/gsm8k``)
HUB_PREFIX = "hf:"


def is_hub_dataset(path: str | Path | None) -> bool:
    """``path`` names a hub data set (``hf:ORG/NAME``) rather than a file or folder."""
    return path is not None and str(path).startswith(HUB_PREFIX)


def load_hub_split(dataset_id: str, *, config: str | None = None, split: str = "train",
                   revision: str | None = None) -> Any:  # fmt: skip
    """One split of a hub data set as a ``datasets.Dataset``; ``ValueError`` in one line naming the id
    (and ``HF_HUB_OFFLINE`` when the cache does not hold it)."""
    import datasets

    from ..hub import hub_offline

    dataset_id = dataset_id.removeprefix(HUB_PREFIX)
    try:
        return datasets.load_dataset(dataset_id, config, split=split, revision=revision)
    except (ConnectionError, FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        named = f"{dataset_id!r}" + (f" (config {config!r})" if config else "") + f", split {split!r}"
        if hub_offline() and isinstance(exc, ConnectionError):
            raise ValueError(f"hub data set {named} is not in the local datasets cache; HF_HUB_OFFLINE is set, so "
                             f"nothing is downloaded") from None  # fmt: skip
        raise ValueError(f"hub data set {named}: {exc}") from None


def hub_questions(
    dataset_id: str | None,
    *,
    config: str | None = None,
    split: str = "train",
    revision: str | None = None,
    source: str | None = None,
    **mapping: Any,
) -> Iterator[dict[str, Any]]:
    """A hub data set's split with the generic column mapping (``question_field``, ``answer_field``,
    ``id_field`` or content-hash ids, ``task`` or ``task_field``, ...); ``source`` defaults to the id's
    last part. Errors name ``ID[split]: row N`` and the column."""
    if not dataset_id:
        raise ValueError("question source 'hub' needs a data set id (e.g. openai/gsm8k)")
    cmap = _column_map(mapping)
    dataset_id = str(dataset_id).removeprefix(HUB_PREFIX)
    ds = load_hub_split(dataset_id, config=config, split=split, revision=revision)
    yield from dataset_rows(ds, cmap, label=f"{dataset_id}[{split}]", source=source or dataset_id.rsplit("/", 1)[-1],
                            split=split)  # fmt: skip


def iter_hub_records(path: str, *, config: str | None, split: str, revision: str | None = None) -> Iterator[tuple[str, int, Any]]:
    """``(where, 0-based row, record)`` of a hub split named ``hf:ORG/NAME``, for readers that also take files."""
    ds = load_hub_split(path, config=config, split=split, revision=revision)
    label = f"{path}[{split}]"
    for i, record in enumerate(ds):
        yield f"{label}: row {i}", i, record
