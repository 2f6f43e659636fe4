"""The ``synthesize`` flow on a real local Ray cluster (``num_cpus=2``): the rows equal a thread-runner
run's. Ray is the optional ``[ray]`` extra and is not in the dev set-up (its install and start-up do not
fit the suite's time on a 2-core machine): ``MIND_EXTRAS=dev,ray bash scripts/test.sh tests/test_ray_runner.py``
runs it (docs/deployment.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("prefect_ray", reason="the [ray] extra is not installed (MIND_EXTRAS=dev,ray bash scripts/setup.sh)")

from flows import synthesize as synth_flow  # noqa: E402
from tests.test_dask_runner import SHARD_SIZE, rows  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_local_ray_cluster_writes_the_thread_runs_rows(tmp_path: Path) -> None:
    thread = synth_flow.run(str(tmp_path / "thread"), shard_size=SHARD_SIZE)
    ray = synth_flow.run(str(tmp_path / "ray"), shard_size=SHARD_SIZE, task_runner="ray",
                         task_runner_options={"init_kwargs": {"num_cpus": 2, "include_dashboard": False}})  # fmt: skip
    assert ray["run_id"] == thread["run_id"] and ray["rows"] == 2400
    assert rows(Path(ray["run_dir"])) == rows(Path(thread["run_dir"]))  # same keys, texts, verdicts
    assert len(ray["workers"]) >= 1 and ray["teachers_built"] == len(ray["workers"])
