"""A tiny, fast, seedable PRNG (SplitMix64) for per-sample teacher decisions.

``random.Random(seed)`` costs ~4 us to construct, which dominates a rationale that takes a few
microseconds to write; SplitMix64 is free to seed and good enough for choosing phrasings and noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
_MASK = (1 << 64) - 1
_INV_2_53 = 1.0 / 9007199254740992.0


class SplitMix64:
    """Deterministic stream of 64-bit values from an integer seed."""

    __slots__ = ("_state",)

    def __init__(self, seed: int):
        self._state = seed & _MASK

    def next_u64(self) -> int:
        self._state = z = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """Uniform float in [0, 1)."""
        return (self.next_u64() >> 11) * _INV_2_53

    def below(self, n: int) -> int:
        """Integer in [0, n) (modulo bias is negligible for small ``n``)."""
        return self.next_u64() % n

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.next_u64() % len(seq)]
