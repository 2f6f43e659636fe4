"""The ``synthesize`` flow on real Dask clusters (2 worker processes on this machine): the rows equal a
thread-runner run's, a cluster named by its address works, a worker killed mid-run leaves a run the
next invocation finishes, and each worker process builds its teacher once.

Each test compares with one thread-runner run of the embedded default (200 questions, 6 perspectives,
2 samples: 2,400 rationales) cut into 10 shards, so both workers get several shards.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect_dask", reason="the [dask] extra (prefect-dask) is not installed")

from distributed import Client, LocalCluster  # noqa: E402

from data_schemas import RATIONALE_COLUMNS, ContractError, load_manifest, read_rationales  # noqa: E402
from flows import synthesize as synth_flow  # noqa: E402
from tests.dask_stand_ins import CountTeacherBuilds  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

KEY = ("question_id", "perspective", "teacher", "sample_index")
MEASURED = {"latency_s"}  # the only column that is a measurement, not an output
SHARD_SIZE = 20  # 200 questions -> 10 shards
WORKERS = {"n_workers": 2, "threads_per_worker": 1, "processes": True}


def rows(run_dir: Path) -> dict[tuple, dict[str, Any]]:
    """Every row of the run by key (a duplicate key fails), without the measured columns."""
    table = read_rationales(run_dir)
    out: dict[tuple, dict[str, Any]] = {}
    for row in table.to_pylist():
        key = tuple(row[k] for k in KEY)
        assert key not in out, f"duplicate row {key} in {run_dir}"
        out[key] = {c.name: row[c.name] for c in RATIONALE_COLUMNS if c.name not in MEASURED}
    return out


@pytest.fixture(scope="module")
def thread_rows(tmp_path_factory) -> tuple[str, dict[tuple, dict[str, Any]]]:
    out = tmp_path_factory.mktemp("thread-run")
    summary = synth_flow.run(str(out), shard_size=SHARD_SIZE)
    assert summary["rows"] == 2400 and summary["shards"] == 10
    return summary["run_id"], rows(Path(summary["run_dir"]))


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of 2 worker processes (with nannies, which restart a killed worker)."""
    with LocalCluster(**WORKERS, dashboard_address=None) as c, Client(c) as client:
        yield c, client


def _assert_same_run(summary: dict[str, Any], thread_rows: tuple[str, dict]) -> None:
    run_id, expected = thread_rows
    assert summary["run_id"] == run_id  # the runner is not part of the run's identity
    got = rows(Path(summary["run_dir"]))
    assert got.keys() == expected.keys()
    assert got == expected  # same texts, answers, verdicts, metadata


def test_local_cluster_of_two_processes_writes_the_thread_runs_rows(tmp_path: Path, thread_rows) -> None:
    summary = synth_flow.run(str(tmp_path), shard_size=SHARD_SIZE, task_runner="dask",
                             task_runner_options={"cluster_kwargs": {**WORKERS, "dashboard_address": None}})  # fmt: skip
    _assert_same_run(summary, thread_rows)
    assert len(summary["workers"]) == 2  # both worker processes ran shards, neither is this process
    assert all(not w.endswith(f":{os.getpid()}") for w in summary["workers"])


def test_existing_cluster_by_address_builds_each_teacher_once_per_worker(tmp_path: Path, thread_rows, cluster) -> None:
    c, client = cluster
    builds = tmp_path / "builds.txt"
    client.register_plugin(CountTeacherBuilds(str(builds)))
    summary = synth_flow.run(str(tmp_path / "out"), shard_size=SHARD_SIZE, task_runner="dask",
                             task_runner_options={"address": c.scheduler_address})  # fmt: skip
    _assert_same_run(summary, thread_rows)
    built = builds.read_text().split()
    worker_pids = set(client.run(os.getpid).values())
    ran = {int(w.rsplit(":", 1)[1]) for w in summary["workers"]}
    assert ran <= worker_pids and len(ran) == 2
    assert sorted(built) == sorted(map(str, ran))  # one build per process that ran shards, not one per shard
    assert summary["teachers_built"] == len(built)  # the run's own account agrees with the stand-in's count
    assert summary["shards_written"] == 10 > len(built)


@pytest.mark.parametrize("allowed_failures", [3, 0], ids=["dask-reruns-the-shard", "the-run-fails"])
def test_a_worker_killed_mid_run_leaves_a_run_the_next_call_finishes(tmp_path: Path, thread_rows, cluster,
                                                                    allowed_failures: int) -> None:  # fmt: skip
    """Dask's default re-runs a dead worker's tasks elsewhere (3 allowed failures); with none allowed the
    shard task fails and so does the run. Either way the next invocation leaves exactly the thread run's rows."""
    c, client = cluster
    c.scheduler.allowed_failures, before = allowed_failures, c.scheduler.allowed_failures
    out = tmp_path / "out"
    run_dir = out / thread_rows[0]
    slow = {"teachers": [{"backend": "synthetic", "options": {"latency_s": 0.4}}], "task_retries": 0,
            "shard_size": SHARD_SIZE, "task_runner": "dask", "task_runner_options": {"address": c.scheduler_address}}  # fmt: skip
    victim = next(iter(client.run(os.getpid).values()))
    killed: dict[str, int] = {}

    def kill_after_first_shard() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                n = len(load_manifest(run_dir).shards)
            except ContractError:  # the run directory or its manifest is not written yet
                n = 0
            if n >= 1:
                os.kill(victim, signal.SIGKILL)
                killed["after_shards"] = n
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_after_first_shard, daemon=True)
    watcher.start()
    try:
        try:
            synth_flow.run(str(out), **slow)
            first = "completed"  # Dask re-ran the dead worker's shard elsewhere
        except Exception as exc:  # noqa: BLE001  # the run may also fail: the next call must finish it
            first = f"failed ({type(exc).__name__})"
    finally:
        c.scheduler.allowed_failures = before
    watcher.join(timeout=5)
    print(f"worker killed after {killed.get('after_shards')} shard(s); the first invocation {first}")
    assert killed, "the worker was not killed during the run"
    if allowed_failures == 0:
        assert first.startswith("failed"), "with no failures allowed, the killed worker's shard fails the run"
    assert killed["after_shards"] < 10, f"the kill came after the run had finished ({first})"
    summary = synth_flow.run(str(out), **slow)  # the next invocation
    assert summary["shards"] == 10 and summary["shards_skipped"] + summary["shards_written"] == 10
    _assert_same_run(summary, thread_rows)  # no duplicate (rows() fails on one), no missing key
    assert len(load_manifest(run_dir).shards) == 10
    _wait_for_workers(client, 2)  # the nanny restarts the killed worker: leave the cluster whole


def _wait_for_workers(client: Client, n: int, timeout_s: float = 60) -> None:
    client.wait_for_workers(n, timeout=timeout_s)


@pytest.mark.parametrize(("runner", "options", "named"), [
    ("dask", {"n_workers": 2}, "cluster_kwargs: {n_workers: 2}"),
    ("thread", {"workers": 2}, "max_workers"),
])  # fmt: skip
def test_an_option_the_runner_does_not_take_fails_naming_it(runner: str, options: dict, named: str) -> None:
    from data_schemas import ContractError
    from pipeline.synthesis import load_config

    cfg = load_config(task_runner=runner, task_runner_options=options)
    with pytest.raises(ContractError, match="task_runner_options") as err:
        synth_flow.make_task_runner(cfg)
    assert sorted(options)[0] in str(err.value) and named in str(err.value)


def test_a_thread_run_builds_its_teacher_once_in_the_flows_process(tmp_path: Path) -> None:
    from pipeline.teachers import _CACHE

    _CACHE.clear()  # a fresh process's state: no teacher built yet
    first = synth_flow.run(str(tmp_path / "a"), num_questions=40, shard_size=10)
    again = synth_flow.run(str(tmp_path / "b"), num_questions=40, shard_size=10, seed=1)
    assert (first["teachers_built"], again["teachers_built"]) == (1, 0)  # reused by the next run of the process
    assert first["workers"] == {f"{socket.gethostname()}:{os.getpid()}": 4}  # 4 shards, all in this process
