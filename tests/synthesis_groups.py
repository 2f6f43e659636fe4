"""Test helper: a synthesis's per-(perspective, teacher) counts summed over its shards' results."""

from __future__ import annotations

from pipeline.synthesis import GroupStats, ShardResult


def merge_groups(results: list[ShardResult]) -> dict[tuple[str, str], GroupStats]:
    out: dict[tuple[str, str], GroupStats] = {}
    for r in results:
        for key, g in r.groups.items():
            perspective, teacher = key.split("\t")
            out.setdefault((perspective, teacher), GroupStats()).add(g)
    return out
