"""``benchmarks.synthesis --task-runner``: its run plan, its ratios and its argument errors (the measured
run itself is a benchmark, run by hand: docs/performance.md)."""

from __future__ import annotations

import pytest

from benchmarks import synthesis
from benchmarks.synthesis_runners import plan, summarise


def test_the_plan_interleaves_every_configuration_per_teacher() -> None:
    order = plan(["thread", "dask"], [1, 2], repeats=2)
    assert len(order) == 16
    cheap = order[:8]
    assert cheap[:4] == [("cheap", "thread", 1), ("cheap", "thread", 2), ("cheap", "dask", 1), ("cheap", "dask", 2)]
    assert cheap[4:] == cheap[:4] and {t for t, _, _ in order[8:]} == {"sleeping"}


def test_ratios_are_medians_of_the_most_workers_over_the_fewest() -> None:
    records = [{"teacher": "sleeping", "task_runner": "dask", "workers": n, "rationales_per_s": x}
               for n, x in [(1, 100.0), (1, 120.0), (1, 500.0), (2, 190.0), (2, 230.0), (2, 210.0)]]  # fmt: skip
    out = summarise(records, [1, 2])
    assert out["rationales_per_s"]["sleeping"]["dask"] == {"1": 120.0, "2": 210.0}
    assert out["ratios"] == {"sleeping_dask_2_over_1": pytest.approx(1.75)}
    assert summarise(records[:3], [1])["ratios"] == {"sleeping_dask_1_over_1": None}


@pytest.mark.parametrize(("argv", "named"), [
    (["--task-runner", "slurm"], "--task-runner: unknown ['slurm']"),
    (["--task-runner", "dask", "--workers", "one"], "--workers: expected comma-separated integers"),
    (["--task-runner", "dask", "--workers", "0,2"], "--workers: at least one count, each >= 1"),
])  # fmt: skip
def test_bad_arguments_fail_naming_the_flag(argv: list[str], named: str, capsys) -> None:
    with pytest.raises(SystemExit):
        synthesis.main(argv)
    assert named in capsys.readouterr().err
