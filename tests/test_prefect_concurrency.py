"""Synthesis runs that survive load and concurrency and leave nothing behind (issue 16).

Each child here runs ``python -m flows.synthesize`` the way a user does: no ``PREFECT_API_URL``,
its own ``PREFECT_HOME``, so it starts its own temporary Prefect server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from data_schemas import load_manifest, read_rationales
from flows import prefect_api as api

REPO_ROOT = Path(__file__).resolve().parents[1]
KEY = ["question_id", "perspective", "teacher", "sample_index"]
CONTENT = [*KEY, "rationale", "predicted_answer", "is_correct", "num_tokens", "finish_reason"]


# ---------------------------------------------------------------- the start-up wait and its error
# stand-ins for `prefect server start`, run as the server command: standard library only
HEALTHY = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
SILENT = "import sys, time; print('still migrating', file=sys.stderr, flush=True); time.sleep(120)"
CRASHING = "import sys; sys.exit('Port {port} is already in use.')"


@pytest.fixture
def own_server(monkeypatch):
    """This process's temporary server, started afresh by the test with a stand-in command."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.delenv(api.SETTING, raising=False)
    monkeypatch.delenv(PREFECT_API_URL.name, raising=False)
    monkeypatch.setattr(api, "_server", None)
    made: list[api.TemporaryServer] = []

    def use(script: str) -> None:
        def command(port: int) -> list[str]:
            return [sys.executable, "-c", script.replace("{port}", str(port)), str(port)]

        made.append(api._own_server(command))

    yield use
    for server in made:
        server.stop()


def test_the_start_up_wait_is_raised_unless_the_user_set_it(own_server, monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    own_server(HEALTHY)
    waits: list[float] = []
    real_wait = api.TemporaryServer.wait_ready
    monkeypatch.setattr(api.TemporaryServer, "wait_ready", lambda self, t: (waits.append(t), real_wait(self, t))[1])
    with temporary_settings(restore_defaults={PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS}):
        with api.prefect_api() as wait:
            assert wait == api.STARTUP_TIMEOUT_S
            assert PREFECT_API_URL.value() == api._server.api_url
            with urllib.request.urlopen(f"{PREFECT_API_URL.value()}/health", timeout=5) as reply:
                assert reply.status == 200
        assert PREFECT_API_URL.value() is None
        first = api._server.process.pid
        with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 45}), api.prefect_api() as wait:
            assert wait == 45  # the user's own value is kept
        assert api._server.process.pid == first  # one server per process, reused by every block
        with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}), api.prefect_api() as wait:
            assert wait is None  # a long-running server: nothing is started
    assert waits == [api.STARTUP_TIMEOUT_S, 45]


def test_a_server_that_does_not_answer_gets_an_error_naming_the_setting(own_server) -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    own_server(SILENT)
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 2}, restore_defaults={PREFECT_API_URL}):
        with pytest.raises(api.PrefectApiUnavailable) as info, api.prefect_api():
            pytest.fail("the block must not run without a server")
    text = str(info.value)
    assert api.SETTING in text and "PREFECT_API_URL" in text and "prefect server start" in text and "resume" in text
    assert "still migrating" in text  # the server's own last words
    assert api._server.process.poll() is not None  # the half-started server is stopped


def test_a_server_that_keeps_exiting_is_tried_on_new_ports_then_reported(own_server) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    own_server(CRASHING)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(api.PrefectApiUnavailable) as info, api.prefect_api():
            pytest.fail("the block must not run without a server")
    text = str(info.value)
    assert f"exited with code 1 {api.PORT_ATTEMPTS} times" in text and "already in use" in text, text


def test_the_server_command_is_prefects_own_cli() -> None:
    cmd = api.server_command(4321)
    assert cmd[1:5] == ["-m", "prefect", "server", "start"] and cmd[cmd.index("--port") + 1] == "4321"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "--no-ui" in cmd


# ---------------------------------------------------------------- real runs, each with its own temporary server
def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
    return env


def _start(out: Path, home: Path, n: int = 30, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "flows.synthesize", "--out", str(out), "--num-questions", str(n), "--shard-size", "10"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def _content(out: Path) -> list[tuple]:
    table = read_rationales(out, verify_checksums=True).select(CONTENT).sort_by([(k, "ascending") for k in KEY])
    return list(zip(*(table.column(c).to_pylist() for c in CONTENT), strict=True))


@pytest.mark.slow
def test_three_concurrent_runs_beside_a_cpu_hog_all_finish_like_a_solo_run(tmp_path: Path) -> None:
    solo = _start(tmp_path / "solo", tmp_path / "home-solo")
    log, _ = solo.communicate(timeout=300)
    assert solo.returncode == 0, log.decode(errors="replace")[-3000:]
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a third busy process on 2 cores
    try:
        runs = [_start(tmp_path / f"out{i}", tmp_path / f"home{i}") for i in range(3)]
        logs = [p.communicate(timeout=600)[0].decode(errors="replace") for p in runs]
    finally:
        hog.kill()
        hog.wait()
    for p, text in zip(runs, logs, strict=True):
        assert p.returncode == 0, text[-3000:]
    expected = _content(tmp_path / "solo")
    assert len(expected) == 30 * 6 * 2
    for i in range(3):
        (run_dir,) = [d for d in (tmp_path / f"out{i}").iterdir() if d.is_dir()]
        assert load_manifest(run_dir).complete
        assert _content(tmp_path / f"out{i}") == expected


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc: the children files of its threads)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo += list(kids - found)
            found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sigkill_of_the_flow_process_leaves_no_child_behind(tmp_path: Path) -> None:
    # a slow teacher keeps the run busy; its own session, so only the flow process itself is killed
    cfg = tmp_path / "slow.yaml"
    cfg.write_text("teachers:\n  - backend: synthetic\n    options: {latency_s: 0.2}\ntask_retries: 0\n")
    cmd = [sys.executable, "-m", "flows.synthesize", "--out", str(tmp_path / "out"), "--num-questions", "200",
           "--shard-size", "10", "--config", str(cfg)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(tmp_path / "home"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the temporary server is up once a shard is finished
            kids = _children(proc.pid)
            run_dirs = [d for d in (tmp_path / "out").glob("*") if d.is_dir()]
            if kids and run_dirs and (run_dirs[0] / "manifest.json").exists() and load_manifest(run_dirs[0]).shards:
                break
            assert proc.poll() is None, "the run ended before it was killed"
            time.sleep(0.2)
        else:
            pytest.fail("no finished shard within the deadline")
        assert kids, "the flow started no temporary server process"
        proc.send_signal(signal.SIGKILL)  # the main process alone, not its group
        proc.wait(timeout=30)
        t0 = time.monotonic()
        while any(_alive(k) for k in kids) and time.monotonic() - t0 < 20:
            time.sleep(0.2)
        survivors = [k for k in kids if _alive(k)]
        assert not survivors, f"still running {time.monotonic() - t0:.0f} s after the kill: {survivors}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for k in kids:  # whatever the assertion said, leave nothing running
            with contextlib.suppress(OSError):
                os.kill(k, signal.SIGKILL)
