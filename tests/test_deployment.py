"""``python -m flows.serve``: refusals without a reachable server, and the served deployment end to
end (a real Prefect server on 127.0.0.1, ``prefect deployment run 'synthesize/default' ... --watch``,
then the shards).

The end-to-end test is marked ``integration`` (deselect with ``-m "not integration"``). Every
process runs in its own process group with an isolated ``PREFECT_HOME`` under ``tmp_path`` and is
killed in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import data_schemas as ds

PREFECT = str(Path(sys.executable).with_name("prefect"))
NUM_QUESTIONS, PERSPECTIVES, SAMPLES = 20, 6, 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _base_env(home: Path) -> dict[str, str]:
    """This environment without any PREFECT_* setting of the caller, plus an isolated, lean set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",  # no schedules here; runs are created by the CLI
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        PREFECT_RUNNER_POLL_FREQUENCY="1",  # the serve process picks a new run up within a second
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole process group, SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log: Path, n: int = 40) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return f"--- {log.name} (last {n} lines) ---\n" + "\n".join(lines[-n:])


Procs = dict[str, tuple[subprocess.Popen, Path]]  # name -> (process, its log)


def _wait_for(what: str, ok: Callable[[], bool], procs: Procs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode} while waiting for {what}\n{_tail(log)}")
        try:
            if ok():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    logs = "\n".join(_tail(log) for _, log in procs.values())
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


@pytest.mark.parametrize("api_url", [None, "closed-port"])
def test_serve_refuses_without_a_reachable_server(tmp_path: Path, api_url: str | None) -> None:
    env = _base_env(tmp_path / "prefect-home")  # no PREFECT_API_URL from the caller or a profile
    if api_url:
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{_free_port()}/api"  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "flows.serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    if api_url is None:
        assert "PREFECT_API_URL is not set" in proc.stderr
        assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in proc.stderr
    else:
        assert "no Prefect server answers" in proc.stderr
        assert "prefect server start --host 127.0.0.1" in proc.stderr
    assert not (tmp_path / "prefect-home" / "prefect.db").exists()  # no temporary server was started


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(400)  # above the sum of the bounded waits below, so `finally` always runs
def test_served_deployment_runs_from_the_cli(tmp_path: Path) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _base_env(tmp_path / "prefect-home")
    client_env = {**env, "PREFECT_API_URL": api}
    serve_dir = tmp_path / "serve-cwd"  # runs resolve relative paths from the serve process's directory
    serve_dir.mkdir()
    config = tmp_path / "synth.yaml"
    config.write_text("seed: 7\nsamples: 2\ntask_runner_options:\n  max_workers: 2\n")
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"

    procs: Procs = {}
    try:
        server_cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        procs["prefect server"] = (_start(server_cmd, env, tmp_path, server_log), server_log)

        def healthy() -> bool:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200

        _wait_for("the server's /api/health", healthy, procs, 90)

        serve_cmd = [sys.executable, "-m", "flows.serve", "--config", str(config)]
        procs["python -m flows.serve"] = (_start(serve_cmd, client_env, serve_dir, serve_log), serve_log)

        def deployment_exists() -> bool:
            return httpx.get(f"{api}/deployments/name/synthesize/default", timeout=2).status_code == 200

        _wait_for("deployment synthesize/default", deployment_exists, procs, 60)

        cmd = [
            PREFECT, "deployment", "run", "synthesize/default",
            "--param", "out=deployed", "--param", f"num_questions={NUM_QUESTIONS}",
            "--params", json.dumps({"overrides": {"shard_size": 5}}),
            "--watch", "--watch-timeout", "90",
        ]  # fmt: skip
        try:
            run = subprocess.run(cmd, env=client_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"`prefect deployment run --watch` did not return\n{exc.stdout}\n{_tail(serve_log)}")
        output = run.stdout + run.stderr
        assert run.returncode == 0, f"{output}\n{_tail(serve_log)}\n{_tail(server_log)}"
        assert "Completed" in output

        out = serve_dir / "deployed"
        run_dirs = sorted(p for p in out.iterdir() if p.is_dir())
        assert len(run_dirs) == 1, run_dirs
        run_dir = run_dirs[0]
        table = ds.read_rationales(run_dir, verify_checksums=True)
        assert table.num_rows == NUM_QUESTIONS * PERSPECTIVES * SAMPLES
        assert set(table.column("run_id").to_pylist()) == {run_dir.name}
        assert len(set(table.column("question_id").to_pylist())) == NUM_QUESTIONS
        assert len(set(table.column("perspective").to_pylist())) == PERSPECTIVES
        assert set(table.column("sample_index").to_pylist()) == set(range(SAMPLES))

        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["complete"] is True
        assert len(manifest["shards"]) == NUM_QUESTIONS // 5  # --params overrides reached the flow
        assert manifest["config"]["seed"] == 7  # the served --config is the default `config` parameter
    finally:
        for proc, _ in reversed(list(procs.values())):
            _stop(proc)
