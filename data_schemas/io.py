"""Atomic shard writing and validated reading of run directories.

Layout of a run directory::

    RUN_DIR/manifest.json          # Manifest: run id, config, finished shards
    RUN_DIR/shards/NAME.parquet    # one Parquet file per finished shard
    RUN_DIR/rejects.jsonl          # optional: rows refused by --on-error skip

A shard is written to a temporary file in the same folder and renamed into place, then
listed in the manifest (also replaced atomically, under a file lock so that several
processes of one run can add shards). A shard that is on disk but not in the manifest is
not part of the run: a crash leaves no half-written data behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .light import SHARD_DIR, find_runs
from .manifest import MANIFEST_NAME, Manifest, ShardInfo, load_manifest, utc_now
from .schemas import ARROW_SCHEMAS, SCHEMA_VERSION
from .validate import ContractError, conform_table

ROW_GROUP_SIZE = 64_000
SORT_KEYS = {
    "rationales": ["question_id", "perspective", "teacher", "sample_index"],
    "questions": ["question_id"],
}


# ---------------------------------------------------------------- atomic file primitives
def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _default_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (mkstemp's own 0600 is private)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` only on success, with the
    permissions of any ordinary new file (so a run's manifest and shards agree)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        tmp_path.chmod(_default_file_mode())
        os.replace(tmp_path, final)
        _fsync_dir(final.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` to ``path`` atomically (temp file + fsync + rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression="zstd")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".manifest.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------- writing
class RunWriter:
    """Adds finished shards to a run directory; safe across threads and processes of one run."""

    def __init__(self, run_dir: str | Path, run_id: str, kind: str = "rationales", config: dict[str, Any] | None = None):
        if kind not in ARROW_SCHEMAS:
            raise ValueError(f"kind must be one of {sorted(ARROW_SCHEMAS)}, got {kind!r}")
        self.run_dir = Path(run_dir)
        self.kind = kind
        with _locked(self.run_dir):
            if (self.run_dir / MANIFEST_NAME).exists():
                manifest = load_manifest(self.run_dir)
                if manifest.run_id != run_id or manifest.kind != kind:
                    raise ContractError(
                        str(self.run_dir / MANIFEST_NAME),
                        f"belongs to run {manifest.run_id!r} ({manifest.kind}), not {run_id!r} ({kind}); "
                        "use another output folder",
                    )
            else:
                manifest = Manifest(run_id=run_id, kind=kind, config=config or {})
                write_text_atomic(self.run_dir / MANIFEST_NAME, manifest.model_dump_json(indent=2))
        self.run_id = run_id

    @property
    def manifest(self) -> Manifest:
        return load_manifest(self.run_dir)

    def has_shard(self, name: str) -> bool:
        """True when shard ``name`` is finished (listed in the manifest and present on disk)."""
        info = self.manifest.shard(name)
        return info is not None and (self.run_dir / SHARD_DIR / f"{name}.parquet").exists()

    def write_shard(self, name: str, table: pa.Table) -> ShardInfo:
        """Validate, sort and atomically write one shard, then list it in the manifest."""
        if "/" in name or name.startswith("."):
            raise ValueError(f"invalid shard name {name!r}")
        path = self.run_dir / SHARD_DIR / f"{name}.parquet"
        table = conform_table(table, self.kind, where=f"shard {name!r} of {self.run_dir}")
        if table.num_rows:
            table = table.sort_by([(k, "ascending") for k in SORT_KEYS[self.kind]])
        write_parquet_atomic(table, path)
        info = ShardInfo(name=name, rows=table.num_rows, sha256=sha256_file(path), bytes=path.stat().st_size)
        with _locked(self.run_dir):
            manifest = load_manifest(self.run_dir)
            manifest.shards = [s for s in manifest.shards if s.name != name] + [info]
            manifest.shards.sort(key=lambda s: s.name)
            manifest.updated_at = utc_now()
            write_text_atomic(self.run_dir / MANIFEST_NAME, manifest.model_dump_json(indent=2))
        return info

    def finalize(self, stats: dict[str, Any] | None = None) -> Manifest:
        """Mark the run complete (optionally storing summary statistics)."""
        with _locked(self.run_dir):
            manifest = load_manifest(self.run_dir)
            manifest.complete = True
            if stats is not None:
                manifest.stats = stats
            manifest.updated_at = utc_now()
            write_text_atomic(self.run_dir / MANIFEST_NAME, manifest.model_dump_json(indent=2))
        return manifest


def write_rejects(run_dir: str | Path, rejects: list[dict[str, Any]]) -> Path:
    """Write ``rejects.jsonl`` (one JSON object per refused input, with its reason) atomically."""
    path = Path(run_dir) / "rejects.jsonl"
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    return path


# ---------------------------------------------------------------- reading
def shard_paths(root: str | Path, kind: str | None = "rationales") -> list[Path]:
    """Paths of every finished shard of every run under ``root`` (optionally of one kind)."""
    paths = []
    for run_dir in find_runs(root):
        manifest = load_manifest(run_dir)
        if kind is not None and manifest.kind != kind:
            continue
        for info in manifest.shards:
            path = run_dir / SHARD_DIR / f"{info.name}.parquet"
            if not path.exists():
                raise ContractError(str(path), f"listed in {run_dir / MANIFEST_NAME} but missing on disk")
            paths.append(path)
    return paths


def read_table(path: str | Path, kind: str = "rationales", columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file and conform it to the contract; errors name the file and column."""
    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
        meta = pf.schema_arrow.metadata or {}
        version = int(meta.get(b"mind.schema_version", str(SCHEMA_VERSION)).decode())
        if version > SCHEMA_VERSION:
            raise ContractError(str(path), f"schema_version {version} is newer than supported ({SCHEMA_VERSION})")
        table = pf.read()
    except ContractError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise ContractError(str(path), f"unreadable Parquet file ({exc})") from None
    table = conform_table(table, kind, where=str(path))
    return table.select(columns) if columns else table


def read_run(root: str | Path, kind: str = "rationales", verify_checksums: bool = False) -> pa.Table:
    """Every finished shard of ``kind`` under ``root`` as one validated table."""
    tables = []
    for run_dir in find_runs(root):
        manifest = load_manifest(run_dir)
        if manifest.kind != kind:
            continue
        for info in manifest.shards:
            path = run_dir / SHARD_DIR / f"{info.name}.parquet"
            if verify_checksums and sha256_file(path) != info.sha256:
                raise ContractError(str(path), "checksum differs from the manifest (file changed or corrupt)")
            tables.append(read_table(path, kind))
    if not tables:
        raise ContractError(str(root), f"no finished {kind} shards found")
    return pa.concat_tables(tables)


def read_rationales(root: str | Path, verify_checksums: bool = False) -> pa.Table:
    return read_run(root, "rationales", verify_checksums)


def read_questions(root: str | Path, verify_checksums: bool = False) -> pa.Table:
    return read_run(root, "questions", verify_checksums)
