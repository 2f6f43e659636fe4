"""The ``synthesize`` Prefect flow end to end: shards, resume (SIGKILL included), run ids, artifacts, CLI.

Every flow runs against the session's ``prefect_harness`` (one temporary server for all flow
tests); the SIGKILL test's subprocess is pointed at it with ``PREFECT_API_URL``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from data_schemas import RATIONALE_COLUMNS, load_manifest, read_rationales
from data_schemas.io import sha256_file
from flows import synthesize as synth_flow
from pipeline.synthesis import iter_question_shards, load_config
from pipeline.synthetic import PERSPECTIVES, TEACHER_NAME

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

REPO_ROOT = Path(__file__).resolve().parents[1]
NOT_NULL = [c.name for c in RATIONALE_COLUMNS if c.required and not c.nullable]
REQUIRED = [c.name for c in RATIONALE_COLUMNS if c.required]
KEY = ("question_id", "perspective", "teacher", "sample_index")


def _shard_files(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((run_dir / "shards").glob("*.parquet"))}


def _keys(table) -> list[tuple]:
    cols = [table.column(k).to_pylist() for k in KEY]
    return list(zip(*cols, strict=True))


def _write_config(path: Path, latency_s: float, max_concurrency: int = 2) -> Path:
    path.write_text(
        "teachers:\n"
        "  - backend: synthetic\n"
        f"    options: {{latency_s: {latency_s}}}\n"
        f"max_concurrency: {max_concurrency}\n"
        "task_retries: 0\n"
    )
    return path


# ---------------------------------------------------------------- a run and its re-run
def test_run_writes_shards_and_rerun_is_a_noop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = synth_flow.run(str(out), num_questions=50, shard_size=10)
    run_dir = Path(summary["run_dir"])
    assert run_dir == out / summary["run_id"]
    assert run_dir.name == load_config(num_questions=50, shard_size=10).run_id()
    assert summary["shards"] == summary["shards_written"] == 5 and summary["shards_skipped"] == 0
    assert summary["rows"] == summary["rows_written"] == 50 * 6 * 2
    assert summary["errors"] == 0

    manifest = load_manifest(run_dir)
    assert manifest.complete and manifest.run_id == summary["run_id"]
    assert [s.name for s in manifest.shards] == [f"shard-{i:05d}" for i in range(5)]
    assert all(s.rows == 10 * 6 * 2 for s in manifest.shards)
    assert manifest.config["seed"] == 0 and manifest.config["samples"] == 2

    table = read_rationales(out, verify_checksums=True)
    assert table.num_rows == 50 * 6 * 2
    assert set(REQUIRED) <= set(table.column_names)
    for name in NOT_NULL:
        assert table.column(name).null_count == 0, name
    assert len(set(pc.unique(table.column("perspective")).to_pylist())) >= 5
    assert set(pc.unique(table.column("perspective")).to_pylist()) == set(PERSPECTIVES)
    assert len(set(_keys(table))) == table.num_rows
    assert set(pc.unique(table.column("question_id")).to_pylist()) == {
        q["question_id"] for _, qs in iter_question_shards(load_config(num_questions=50, shard_size=10)) for q in qs
    }
    assert {(g["perspective"], g["rows"]) for g in summary["groups"]} == {(p, 100) for p in PERSPECTIVES}

    before = _shard_files(run_dir)
    assert len(before) == 5
    again = synth_flow.run(str(out), num_questions=50, shard_size=10)
    assert again["run_id"] == summary["run_id"]
    assert again["shards_written"] == 0 and again["shards_skipped"] == 5
    assert again["rows_written"] == 0 and again["rows"] == 50 * 6 * 2
    assert _shard_files(run_dir) == before
    assert read_rationales(out).num_rows == 50 * 6 * 2
    assert [p.name for p in out.iterdir()] == [run_dir.name]


def test_changed_seed_is_a_separate_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    a = synth_flow.run(str(out), num_questions=10, shard_size=5, perspectives=["stepwise", "equation"])
    b = synth_flow.run(str(out), num_questions=10, shard_size=5, perspectives=["stepwise", "equation"], seed=1)
    assert a["run_id"] != b["run_id"]
    assert b["shards_written"] == 2 and b["shards_skipped"] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([a["run_id"], b["run_id"]])
    ta, tb = read_rationales(a["run_dir"]), read_rationales(b["run_dir"])
    assert ta.num_rows == tb.num_rows == 10 * 2 * 2
    assert set(ta.column("run_id").to_pylist()) == {a["run_id"]}
    assert set(tb.column("run_id").to_pylist()) == {b["run_id"]}
    assert set(_keys(ta)) == set(_keys(tb))  # same questions and views ...
    assert not set(ta.column("seed").to_pylist()) & set(tb.column("seed").to_pylist())  # ... other samples
    both = read_rationales(out)
    assert both.num_rows == 2 * 10 * 2 * 2
    assert load_manifest(a["run_dir"]).rows == load_manifest(b["run_dir"]).rows == 40


# ---------------------------------------------------------------- artifacts
def test_flow_publishes_progress_and_yield_artifacts(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = synth_flow.synthesize(
        out=str(tmp_path / "out"), num_questions=20, overrides={"shard_size": 10}, return_state=True
    )
    assert state.is_completed()
    summary = state.result()
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        assert flow_run.parameters["num_questions"] == 20
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert {"synthesize-progress", "synthesize-yield"} <= set(by_key)

    progress = by_key["synthesize-progress"]
    assert progress.type == "progress"
    assert float(progress.data) == pytest.approx(100.0)
    assert "2/2 shards finished" in (progress.description or "")

    table = by_key["synthesize-yield"]
    assert table.type == "table"
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert sorted(row["perspective"] for row in data) == sorted(PERSPECTIVES)
    assert {row["teacher"] for row in data} == {TEACHER_NAME}
    assert sum(row["rows"] for row in data) == 20 * 6 * 2
    assert all(row["errors"] == 0 for row in data)
    rows = read_rationales(summary["run_dir"]).to_pylist()  # the yield table against the shards' own verdicts
    for row in data:
        mine = [r for r in rows if r["perspective"] == row["perspective"]]
        assert row["rows"] == len(mine)
        assert row["% correct"] == pytest.approx(round(100 * sum(r["is_correct"] is True for r in mine) / len(mine), 1))


# ---------------------------------------------------------------- config errors and the CLI
@pytest.mark.parametrize(
    ("args", "config", "needles"),
    [
        ([], "seed: 1\nsamples: many\n", ["bad.yaml", "field 'samples'"]),
        ([], "seed: 1\nshards: 3\n", ["bad.yaml", "field 'shards'"]),
        ([], "seed: [1\n", ["bad.yaml:", "invalid YAML"]),
        (["--teacher", "gpt4"], None, ["field 'teachers.0'", "teacher 'gpt4'"]),
        (["--perspectives", "stepwise,haiku"], None, ["perspectives", "'haiku'"]),
        (["--teacher", "transformers:/models/x", "--perspective-set", "synthetic"], None, ["perspective_set"]),
        (["--samples", "0"], None, ["field 'samples'"]),
    ],
)
def test_bad_config_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], config: str | None, needles: list[str]
) -> None:
    out = tmp_path / "out"
    argv = ["--out", str(out), "--num-questions", "10", *args]
    if config is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(config)
        argv += ["--config", str(path)]
    assert synth_flow.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, err
    assert not out.exists()


def test_cli_end_to_end_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["--out", str(out), "--num-questions", "12", "--shard-size", "5", "--samples", "1",
            "--seed", "3", "--max-concurrency", "2", "--perspectives", "stepwise,socratic,verbose"]  # fmt: skip
    assert synth_flow.main(argv) == 0
    stdout = capsys.readouterr().out
    run_id = load_config(num_questions=12, shard_size=5, samples=1, seed=3, perspectives=["stepwise", "socratic", "verbose"]).run_id()
    assert f"run {run_id}: 36 rationales" in stdout
    for col in ("perspective", "teacher", "rows", "% correct", "% unjudged", "errors", "mean tokens"):
        assert col in stdout
    for p in ("stepwise", "socratic", "verbose"):
        assert p in stdout
    assert TEACHER_NAME in stdout
    assert "3 shard(s) written, 0 already finished" in stdout
    assert read_rationales(out / run_id).num_rows == 36

    assert synth_flow.main(argv) == 0
    assert "0 shard(s) written, 3 already finished" in capsys.readouterr().out


# ---------------------------------------------------------------- resume after SIGKILL
def _subprocess_env(home: Path) -> dict[str, str]:
    """The harness's server for the child too: a child's own temporary server costs ~10 s of start-up."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=PREFECT_API_URL.value(),
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "out"
    slow_cfg = _write_config(tmp_path / "slow.yaml", latency_s=0.3)
    n_questions, shard_size = 400, 10
    run_id = load_config(slow_cfg, num_questions=n_questions, shard_size=shard_size).run_id()
    run_dir = out / run_id
    log = open(tmp_path / "child.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.synthesize", "--out", str(out), "--num-questions", str(n_questions),
         "--shard-size", str(shard_size), "--config", str(slow_cfg)],
        cwd=REPO_ROOT, env=_subprocess_env(tmp_path / "prefect-home"), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # start-up includes the child's own temporary Prefect server
        finished: list = []
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before it was killed:\n{_tail(tmp_path)}")
            try:
                finished = load_manifest(run_dir).shards
            except Exception:  # not there yet (the manifest itself is replaced atomically)
                finished = []
            if len(finished) >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no 3 finished shards within the deadline:\n{_tail(tmp_path)}")
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()

    # what survived the kill: only manifest-listed shards count, and they are whole
    manifest = load_manifest(run_dir)
    assert not manifest.complete
    early = {s.name: s for s in manifest.shards}
    assert 3 <= len(early) < n_questions // shard_size
    for name, info in early.items():
        path = run_dir / "shards" / f"{name}.parquet"
        assert info.rows == shard_size * 6 * 2
        assert sha256_file(path) == info.sha256 and path.stat().st_size == info.bytes
    partial = read_rationales(run_dir, verify_checksums=True)  # never reads stray temp or unlisted files
    assert partial.num_rows == manifest.rows == len(early) * shard_size * 6 * 2
    early_mtimes = {n: (run_dir / "shards" / f"{n}.parquet").stat().st_mtime_ns for n in early}

    # resume in-process, now with a fast teacher: the same run id (latency is not an output option)
    fast_cfg = _write_config(tmp_path / "fast.yaml", latency_s=0, max_concurrency=4)
    assert load_config(fast_cfg, num_questions=n_questions, shard_size=shard_size).run_id() == run_id
    summary = synth_flow.run(str(out), str(fast_cfg), num_questions=n_questions, shard_size=shard_size)
    assert summary["run_id"] == run_id
    assert summary["shards"] == n_questions // shard_size
    assert summary["shards_skipped"] == len(early)
    assert summary["shards_written"] == n_questions // shard_size - len(early)
    assert summary["rows"] == n_questions * 6 * 2
    assert [p.name for p in out.iterdir()] == [run_id]

    final = load_manifest(run_dir)
    assert final.complete
    assert [s.name for s in final.shards] == [f"shard-{i:05d}" for i in range(n_questions // shard_size)]
    for name, info in early.items():  # finished shards were not rewritten
        assert final.shard(name).sha256 == info.sha256
        assert (run_dir / "shards" / f"{name}.parquet").stat().st_mtime_ns == early_mtimes[name]

    table = read_rationales(run_dir, verify_checksums=True)
    assert table.num_rows == n_questions * 6 * 2
    keys = _keys(table)
    assert len(set(keys)) == len(keys)  # no duplicate
    cfg = load_config(fast_cfg, num_questions=n_questions, shard_size=shard_size)
    expected = {
        (q["question_id"], p, TEACHER_NAME, k)
        for _, qs in iter_question_shards(cfg)
        for q in qs
        for p in PERSPECTIVES
        for k in range(2)
    }
    assert set(keys) == expected  # no missing one
    assert set(table.column("run_id").to_pylist()) == {run_id}


def _tail(tmp_path: Path, n: int = 4000) -> str:
    path = tmp_path / "child.log"
    return path.read_bytes()[-n:].decode(errors="replace") if path.exists() else "(no log)"
