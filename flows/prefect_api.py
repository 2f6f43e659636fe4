"""How a flow CLI reaches a Prefect API, sized for slow and busy machines.

Without ``PREFECT_API_URL`` each process starts its own temporary Prefect server (a uvicorn
subprocess that Prefect stops when the process exits normally).
Prefect waits ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` for it, 20 s by default: on a
2-core machine running a training job, or with several synthesis runs starting at once, that
start can take longer, and every run failed with "Timed out while attempting to connect to
ephemeral Prefect API server". :func:`prefect_api` raises the wait to :data:`STARTUP_TIMEOUT_S`
unless the user set it, and turns a failure into an error that names the setting and the
alternative: one long-running ``prefect server start`` that every run points at with
``PREFECT_API_URL`` (no per-run server at all; see docs/deployment.md).

Prefect stops its temporary server at interpreter exit, which a SIGKILL skips: the server then ran on
for good. :func:`prefect_api` therefore starts that same server itself (Prefect's
``SubprocessASGIServer``) and leaves a watchdog process beside it that stops it once this process
is gone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

STARTUP_TIMEOUT_S = 180
SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PREFECT_DEFAULT_S = 20


class PrefectApiUnavailable(RuntimeError):
    """No Prefect API could be reached or started; the message says what to change."""


def _timeout_message(seconds: int, cause: BaseException) -> str:
    return (
        f"Prefect's temporary API server did not answer within {seconds} s ({SETTING}={seconds}). "
        f"On a busy machine raise it, e.g. `export {SETTING}=600`, or start one server for all runs: "
        "`prefect server start` in another terminal, then `export PREFECT_API_URL=http://127.0.0.1:4200/api`. "
        f"Nothing already written is lost: run the same command again to resume. (Prefect said: {cause})"
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


def _watch(server_pid: int) -> subprocess.Popen:
    """A watchdog that stops the temporary server if this process dies without stopping it (SIGKILL)."""
    return subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(server_pid)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


@contextlib.contextmanager
def prefect_api(timeout_s: int = STARTUP_TIMEOUT_S) -> Iterator[int | None]:
    """Run flows inside this block. With ``PREFECT_API_URL`` set, the block uses that server and yields
    None. Otherwise it starts Prefect's own temporary server (``SubprocessASGIServer``, as Prefect's
    ephemeral mode does) with a start-up wait sized for busy machines, points the block at it, and
    leaves a watchdog that stops it should this process be killed; Prefect stops it at exit, after its
    last log flush. Yields the wait.
    Raises :class:`PrefectApiUnavailable` when the server does not come up in time."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    if PREFECT_API_URL.value():
        yield None
        return
    current = int(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
    chosen = current if SETTING in os.environ or current != PREFECT_DEFAULT_S else max(current, timeout_s)
    server = SubprocessASGIServer()  # Prefect's own per-process instance: its ephemeral client reuses it
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: chosen}):
        try:
            server.start(timeout=chosen)
        except RuntimeError as exc:
            server.stop()  # it may still be starting
            raise PrefectApiUnavailable(_timeout_message(chosen, exc)) from exc
        # Prefect stops the server at interpreter exit (its own atexit hook, registered by start(), so it
        # runs after the log and event flushes registered later); the watchdog covers a SIGKILL, and
        # exits by itself once the server is gone
        if server.server_process is not None:
            _watch(server.server_process.pid)
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield chosen
