"""Statistics for the quality benchmark: paired comparisons from the per-question predictions.

A difference of mean accuracies over three seeds says little on its own: each accuracy is a
proportion on ~150 questions (standard error ~4 points at 50%). Every run evaluates the same
questions per split, so two strategies can be compared *paired*: per seed and per question,
``correct(A) - correct(B)``. The confidence interval comes from a two-level bootstrap that
resamples seeds and then questions (with replacement), so it reflects both seed-to-seed variation
and the finite question sample.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def per_question(eval_dir: Path, split: str) -> dict[str, bool]:
    """``question_id -> is_correct`` of one evaluation on ``split`` (``eval_dir/<split>.parquet``, as
    ``distill.evaluate`` writes it; first sample per question)."""
    path = Path(eval_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no per-question predictions (was the run evaluated on {split!r}?)")
    table = pq.read_table(path, columns=["question_id", "sample_index", "is_correct"]).to_pylist()
    return {row["question_id"]: bool(row["is_correct"]) for row in table if row["sample_index"] == 0}


def paired_difference(
    a: dict[int, dict[str, bool]], b: dict[int, dict[str, bool]], n_boot: int = 2000, seed: int = 0
) -> dict[str, Any] | None:
    """Mean of ``correct(a) - correct(b)`` over the seeds both have and the questions both answered,
    with a 95% two-level bootstrap interval (seeds, then questions) and the bootstrap share <= 0.

    ``a`` and ``b`` map seed -> {question_id: correct}. None when there is nothing to pair."""
    seeds = sorted(set(a) & set(b))
    diffs = []  # per seed: the list of per-question differences
    for s in seeds:
        common = sorted(set(a[s]) & set(b[s]))
        if common:
            diffs.append([int(a[s][q]) - int(b[s][q]) for q in common])
    if not diffs:
        return None
    point = statistics.fmean(statistics.fmean(d) for d in diffs)
    rng = random.Random(seed)
    boots = []
    for _ in range(n_boot):
        picked = [diffs[rng.randrange(len(diffs))] for _ in diffs]
        boots.append(statistics.fmean(statistics.fmean(rng.choices(d, k=len(d))) for d in picked))
    boots.sort()
    return {
        "diff": point,
        "ci95": [boots[int(0.025 * n_boot)], boots[min(n_boot - 1, int(0.975 * n_boot))]],
        "p_le_0": sum(1 for x in boots if x <= 0) / n_boot,
        "seeds": len(diffs),
        "questions": round(statistics.fmean(len(d) for d in diffs)),
    }


def compare_to(
    target: str, folders: dict[tuple[str, int], Path], splits: tuple[str, ...], n_boot: int = 2000
) -> dict[str, dict[str, Any]]:
    """``target`` (e.g. "mind") against every other strategy in ``folders`` ((strategy, seed) -> the
    folder of its evaluation's predictions), per split: {other: {split: paired_difference(target, other)}}."""
    strategies = sorted({s for s, _ in folders})
    if target not in strategies:
        return {}
    cache: dict[tuple[str, int, str], dict[str, bool]] = {}

    def outcomes(strategy: str, split: str) -> dict[int, dict[str, bool]]:
        out = {}
        for (s, seed), folder in folders.items():
            if s == strategy:
                key = (s, seed, split)
                if key not in cache:
                    cache[key] = per_question(folder, split)
                out[seed] = cache[key]
        return out

    result: dict[str, dict[str, Any]] = {}
    for other in strategies:
        if other == target:
            continue
        result[other] = {sp: paired_difference(outcomes(target, sp), outcomes(other, sp), n_boot) for sp in splits}
    return result
