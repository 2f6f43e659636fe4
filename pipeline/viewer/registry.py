"""What the viewer may serve: the rationale runs and training output folders under ``DIR``.

Only folders found by walking ``DIR`` are ever opened; a URL names one by its *key* (the
root folder's name plus the path relative to it, e.g. ``demo/rationales/synth-1a2b``), so
a key that was not found (``../../etc``) is simply unknown. Symbolic links are followed
only while they stay inside ``DIR``: a run reached through a link that resolves outside it
is listed as refused (403), and every file the viewer reads is checked the same way.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data_schemas import MANIFEST_NAME, ContractError, Manifest, load_manifest
from data_schemas.io import SHARD_DIR
from data_schemas.run_files import MIND_SUMMARY, TRAINER_STATE

__all__ = ["TRAINING_MARKERS", "Entry", "Forbidden", "NotFound", "Registry", "is_training_dir"]

Kind = Literal["rationales", "training"]
TRAINING_MARKERS = (MIND_SUMMARY, TRAINER_STATE)
SKIP_DIRS = {SHARD_DIR, "eval", "__pycache__", "node_modules"}
MAX_DEPTH = 4


class NotFound(LookupError):
    """Nothing by that name under DIR (HTTP 404)."""


class Forbidden(PermissionError):
    """The path resolves outside DIR (HTTP 403)."""


@dataclass(frozen=True)
class Entry:
    """One rationale run or training output folder under DIR."""

    key: str
    kind: Kind
    path: Path  # as found under DIR (may be a symlink that resolves inside DIR)
    manifest: Manifest | None = None  # rationale runs only
    mtime_ns: int = 0  # of manifest.json / the newest marker file: a change reopens the run
    error: str | None = None  # why it cannot be shown (malformed manifest, ...)
    refused: str | None = None  # why it may not be served (resolves outside DIR)


def is_training_dir(d: Path) -> bool:
    """A trainer ``output_dir``: ``mind_summary.json`` / ``trainer_state.json`` here or in a checkpoint."""
    if any((d / m).is_file() for m in TRAINING_MARKERS):
        return True
    return any((c / "trainer_state.json").is_file() for c in d.glob("checkpoint-*"))


def _mtime_ns(*paths: Path) -> int:
    out = 0
    for p in paths:
        try:
            out = max(out, p.stat().st_mtime_ns)
        except OSError:
            pass
    return out


class Registry:
    """Walks DIR (at most every ``ttl`` seconds) and hands out its runs by key."""

    def __init__(self, root: str | Path, ttl: float = 2.0):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ContractError(str(root), "no such directory" if not self.root.exists() else "not a directory")
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[tuple[Kind, str], Entry] = {}
        self._scanned = float("-inf")

    # ------------------------------------------------------------ paths
    def inside(self, path: Path) -> Path:
        """``path`` resolved; :class:`Forbidden` if that is outside DIR (a symlink out, ``..``)."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise Forbidden(f"{path}: resolves outside the served folder {self.root}")
        return resolved

    def key_of(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return self.root.name if rel == "." else f"{self.root.name}/{rel}"

    # ------------------------------------------------------------ discovery
    def entries(self, kind: Kind | None = None) -> list[Entry]:
        """Every entry (of ``kind``), sorted by key; rescans DIR when the last scan is stale."""
        with self._lock:
            if time.monotonic() - self._scanned > self.ttl:
                self._entries = {(e.kind, e.key): e for e in self._scan()}
                self._scanned = time.monotonic()
            found = list(self._entries.values())
        return sorted((e for e in found if kind is None or e.kind == kind), key=lambda e: e.key)

    def get(self, kind: Kind, key: str) -> Entry:
        """The entry ``key`` of ``kind``: :class:`NotFound` if unknown, :class:`Forbidden` if refused."""
        self.entries()
        entry = self._entries.get((kind, key))
        if entry is None:
            self._scanned = float("-inf")  # created since the last scan?
            self.entries()
            entry = self._entries.get((kind, key))
        if entry is None:
            what = "rationale run" if kind == "rationales" else "training run"
            raise NotFound(f"no {what} {key!r} under {self.root}")
        if entry.refused:
            raise Forbidden(entry.refused)
        return entry

    def _scan(self) -> list[Entry]:
        out: list[Entry] = []

        def visit(d: Path, depth: int) -> None:
            if (d / MANIFEST_NAME).is_file():
                if (entry := self._run_entry(d)) is not None:
                    out.append(entry)
                return
            if is_training_dir(d):
                marker = [d / m for m in TRAINING_MARKERS] + sorted(d.glob("checkpoint-*/trainer_state.json"))
                out.append(Entry(self.key_of(d), "training", d, mtime_ns=_mtime_ns(*marker)))
                return
            if depth >= MAX_DEPTH:
                return
            try:
                children = sorted(d.iterdir())
            except OSError:
                return
            for child in children:
                if child.name.startswith(".") or child.name in SKIP_DIRS or child.name.startswith("checkpoint-"):
                    continue
                try:
                    if not child.is_dir():
                        continue
                    if child.is_symlink() and not child.resolve().is_relative_to(self.root):
                        self._refuse(child, out)
                        continue
                except OSError:
                    continue
                visit(child, depth + 1)

        visit(self.root, 0)
        return out

    def _run_entry(self, d: Path) -> Entry | None:
        """A rationale run's entry (None for runs of another kind, e.g. questions)."""
        path = d / MANIFEST_NAME
        mtime = _mtime_ns(path)
        try:
            self.inside(path)
            manifest = load_manifest(d)
        except Forbidden as exc:
            return Entry(self.key_of(d), "rationales", d, mtime_ns=mtime, refused=str(exc))
        except ContractError as exc:
            return Entry(self.key_of(d), "rationales", d, mtime_ns=mtime, error=str(exc))
        if manifest.kind != "rationales":
            return None
        return Entry(self.key_of(d), "rationales", d, manifest, mtime)

    def _refuse(self, link: Path, out: list[Entry]) -> None:
        """List a link out of DIR as refused when it points at a run (without looking further)."""
        reason = f"{link}: a symbolic link that resolves outside the served folder {self.root}"
        try:
            if (link / MANIFEST_NAME).is_file():
                out.append(Entry(self.key_of(link), "rationales", link, refused=reason))
            elif is_training_dir(link):
                out.append(Entry(self.key_of(link), "training", link, refused=reason))
        except OSError:
            pass
