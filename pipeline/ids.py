"""Stable identifiers and derived seeds (independent of Python's hash randomisation)."""

from __future__ import annotations

import hashlib


def stable_hash(*parts: object, length: int = 16) -> str:
    """Hex digest of ``parts`` (joined unambiguously); stable across processes and machines."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        data = str(part).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:length]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts``, e.g. (run seed, question id, perspective, teacher, sample)."""
    return int(stable_hash(*parts, length=16), 16) & ((1 << 63) - 1)


def content_question_id(source: str, question: str) -> str:
    """``source:<hash of the normalised question text>``, for sources without their own ids."""
    return f"{source}:{stable_hash(' '.join(question.split()))}"
