"""How a flow CLI reaches a Prefect API: quickly, on slow and busy machines, and leaving nothing behind.

Without ``PREFECT_API_URL``, Prefect's ephemeral mode starts a temporary server the first time a
flow runs: it imports Prefect's whole server (FastAPI, SQLAlchemy, ...) into the flow's own
process (~3.8 s on the 2-core reference machine), then starts the same server again in a
subprocess and waits for it (~7 s), all after the CLI's own imports, one thing after another.
It waits ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` for it, 20 s by default, which a
busy machine misses ("Timed out while attempting to connect to ephemeral Prefect API server"), and
it stops the server in an exit hook that a SIGKILL skips: the server then ran on for good.

A CLI here instead runs what Prefect documents for a dedicated server, ``prefect server start``
(no UI, scheduler, late-runs service or analytics; loopback, a free port), for its own lifetime
only, as a child process:

- :func:`start_early` spawns it before the CLI imports Prefect and the pipeline, so the server's
  start overlaps those imports (on another core) and the flow's process never imports the server;
- :func:`prefect_api` waits for it (``/api/health``) up to ``STARTUP_TIMEOUT_S`` = 180 s unless the
  user set ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (the wait for the same server, so
  the same setting), retries on another port if the first was taken, and points the flows at it;
  a failure names the setting, the alternative (one long-running ``prefect server start`` for
  every run, through ``PREFECT_API_URL``: no per-run server at all; docs/deployment.md) and the
  server's last words;
- the server is stopped at interpreter exit, after Prefect's last log flush (the exit hook is
  registered before Prefect registers its own, and hooks run last-in first-out), and a watchdog
  process stops it should the CLI be killed with SIGKILL.

With ``PREFECT_API_URL`` set (environment or profile) nothing is started.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO

STARTUP_TIMEOUT_S = 180
SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PREFECT_DEFAULT_S = 20
PORT_ATTEMPTS = 3  # a port found free may be taken by a concurrent run before the server binds it

# the server's switches: what a run's own server needs, nothing it does not (public CLI flags)
SERVER_FLAGS = ("--no-ui", "--analytics-off", "--no-scheduler", "--no-late-runs", "--log-level", "ERROR")


class PrefectApiUnavailable(RuntimeError):
    """No Prefect API could be reached or started; the message says what to change."""


def _timeout_message(seconds: int, cause: str) -> str:
    return (
        f"Prefect's temporary API server did not answer within {seconds} s ({SETTING}={seconds}). "
        f"On a busy machine raise it, e.g. `export {SETTING}=600`, or start one server for all runs: "
        "`prefect server start` in another terminal, then `export PREFECT_API_URL=http://127.0.0.1:4200/api`. "
        f"Nothing already written is lost: run the same command again to resume. ({cause})"
    )


# Run as ``python -c WATCHDOG PARENT SERVER``: ends SERVER once PARENT is gone (it is then re-parented),
# or exits with SERVER. Nothing but the standard library, so it starts in a few milliseconds.
WATCHDOG = """
import os, signal, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
while os.getppid() == parent and alive(server):
    time.sleep(0.25)
if alive(server):
    os.kill(server, signal.SIGTERM)
    for _ in range(40):
        time.sleep(0.1)
        if not alive(server):
            break
    else:
        os.kill(server, signal.SIGKILL)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(port: int) -> list[str]:
    """``prefect server start`` for one run, on ``port`` of the loopback interface."""
    return [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
            *SERVER_FLAGS]  # fmt: skip


class TemporaryServer:
    """A Prefect server that lives as long as this process (see the module docstring)."""

    def __init__(self, command=server_command, env: dict[str, str] | None = None) -> None:
        self._command = command
        self._env = env  # None: this process's environment
        self.process: subprocess.Popen | None = None
        self.api_url = ""
        self._log: IO[bytes] | None = None
        self._watchdog: subprocess.Popen | None = None
        self._spawns = 0
        self.ready = False
        self.stopped = False
        self._spawn()

    def _spawn(self) -> None:
        port = _free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        self._log = tempfile.TemporaryFile()  # its last words, for an error message
        self.process = subprocess.Popen(
            self._command(port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log, env=self._env
        )
        self._spawns += 1
        self._watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(self.process.pid)],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)  # fmt: skip

    def last_words(self, limit: int = 1500) -> str:
        """The end of what the server wrote to stderr."""
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace").strip()
        return text[-limit:]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until the server answers; respawn on a new port if it exited (a port taken in the
        meantime). Raises :class:`PrefectApiUnavailable` after ``timeout_s`` or repeated exits."""
        deadline = time.monotonic() + timeout_s
        while not self.ready:
            assert self.process is not None
            if self.process.poll() is not None:
                if self._spawns >= PORT_ATTEMPTS:
                    raise PrefectApiUnavailable(
                        f"`prefect server start` exited with code {self.process.returncode} "
                        f"{self._spawns} times; it said: {self.last_words() or '(nothing)'}"
                    )
                self._spawn()
            elif self._healthy():
                self.ready = True
            elif time.monotonic() > deadline:
                words = self.last_words()
                self.stop()
                raise PrefectApiUnavailable(
                    _timeout_message(int(timeout_s), f"the server said: {words}" if words else "it said nothing")
                )
            else:
                time.sleep(0.1)

    def restart(self) -> None:
        """Spawn it afresh after :meth:`stop`."""
        self._spawns, self.ready, self.stopped = 0, False, False
        self._spawn()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); its watchdog exits with it."""
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._watchdog is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=2)
        self.ready = False


_server: TemporaryServer | None = None  # this process's own server, shared by every prefect_api() block


def _own_server(command=server_command) -> TemporaryServer:
    global _server
    if _server is None:
        _server = TemporaryServer(command)
        atexit.register(_server.stop)  # before Prefect's own hooks when called early: so it runs after them
    return _server


def start_early() -> None:
    """Spawn this process's temporary server now, unless ``PREFECT_API_URL`` is in the environment.
    Call it first thing in a CLI's ``__main__``, before the heavy imports; standard library only."""
    if not os.environ.get("PREFECT_API_URL"):
        _own_server()


@contextlib.contextmanager
def prefect_api(timeout_s: int = STARTUP_TIMEOUT_S) -> Iterator[int | None]:
    """Run flows inside this block. With ``PREFECT_API_URL`` set, the block uses that server and yields
    None. Otherwise it uses this process's temporary server (spawned now unless :func:`start_early`
    did), waits for it up to the start-up wait (``timeout_s`` unless the user set ``SETTING``), points
    the block at it and yields the wait. The server lives until the process exits.
    Raises :class:`PrefectApiUnavailable` when the server does not come up in time."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    if PREFECT_API_URL.value():
        if _server is not None and not _server.ready:  # spawned early, but a profile names a server
            _server.stop()
        yield None
        return
    current = int(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    chosen = current if SETTING in os.environ or current != PREFECT_DEFAULT_S else max(current, timeout_s)
    server = _own_server()
    if server.stopped or (server.ready and server.process is not None and server.process.poll() is not None):
        server.restart()  # stopped or gone since an earlier block
    server.wait_ready(chosen)
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield chosen
