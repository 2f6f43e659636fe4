"""The quality benchmark's paired statistics (benchmarks/quality_stats.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.quality_stats import compare_to, paired_difference, per_question


def _outcomes(pattern: list[int]) -> dict[str, bool]:
    return {f"q{i}": bool(x) for i, x in enumerate(pattern)}


def test_identical_runs_differ_by_zero() -> None:
    a = {0: _outcomes([1, 0, 1, 1] * 25), 1: _outcomes([0, 1, 1, 0] * 25)}
    d = paired_difference(a, a, n_boot=200)
    assert d is not None
    assert d["diff"] == 0.0 and d["ci95"] == [0.0, 0.0] and d["p_le_0"] == 1.0
    assert d["seeds"] == 2 and d["questions"] == 100


def test_clear_difference_has_an_interval_above_zero() -> None:
    better = {s: _outcomes([1] * 80 + [0] * 20) for s in range(3)}
    worse = {s: _outcomes([1] * 40 + [0] * 60) for s in range(3)}
    d = paired_difference(better, worse, n_boot=500)
    assert d is not None
    assert d["diff"] == pytest.approx(0.4)
    assert 0.25 < d["ci95"][0] < d["diff"] < d["ci95"][1] < 0.55
    assert d["p_le_0"] == 0.0
    flipped = paired_difference(worse, better, n_boot=500)
    assert flipped is not None and flipped["diff"] == pytest.approx(-0.4) and flipped["p_le_0"] == 1.0


def test_pairs_only_common_seeds_and_questions() -> None:
    a = {0: {"q1": True, "q2": True}, 5: {"q1": True}}
    b = {0: {"q2": False, "q3": True}, 1: {"q1": False}}
    d = paired_difference(a, b, n_boot=50)
    assert d is not None and d["seeds"] == 1 and d["questions"] == 1 and d["diff"] == 1.0
    assert paired_difference({0: {"q1": True}}, {1: {"q1": True}}) is None


def _write_eval(folder: Path, split: str, correct: list[bool]) -> None:
    (folder / "out" / "eval").mkdir(parents=True, exist_ok=True)
    n = len(correct)
    table = pa.table({"question_id": [f"q{i}" for i in range(n)], "sample_index": pa.array([0] * n, pa.int32()),
                      "is_correct": correct})  # fmt: skip
    pq.write_table(table, folder / "out" / "eval" / f"{split}.parquet")


def test_compare_to_reads_the_runs_predictions(tmp_path: Path) -> None:
    folders = {}
    for strategy, pattern in (("mind", [True, True, False, True]), ("random", [False, True, False, False])):
        for seed in (0, 1):
            folder = tmp_path / f"{strategy}-s{seed}"
            _write_eval(folder, "test", pattern * 10)
            folders[(strategy, seed)] = folder / "out" / "eval"
    assert per_question(folders[("mind", 0)], "test")["q0"] is True
    result = compare_to("mind", folders, ("test",), n_boot=100)
    assert set(result) == {"random"}
    assert result["random"]["test"]["diff"] == pytest.approx(0.5)
    with pytest.raises(FileNotFoundError, match="ood_steps"):
        compare_to("mind", folders, ("ood_steps",))
