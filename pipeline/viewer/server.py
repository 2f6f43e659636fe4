"""Serving the viewer: ``serve`` (the ``browse DIR serve`` command) and ``ViewerThread`` (in-process).

The listening socket is bound before uvicorn starts, so a busy port is a clear error and
``port=0`` picks a free one (its number is then known).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from .app import create_app

__all__ = ["ViewerThread", "bind", "loopback_hosts", "serve"]


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``OSError`` when it cannot be had)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=128)


def loopback_hosts(host: str) -> list[str] | None:
    """Host headers to accept: only loopback names when bound to loopback (no DNS rebinding); else any."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return ["127.0.0.1", "localhost"] if loopback and ":" not in host else None


def _server(root: str | Path, host: str, log_level: str) -> uvicorn.Server:
    app = create_app(root, allowed_hosts=loopback_hosts(host))
    config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False, server_header=False)
    return uvicorn.Server(config)


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning") -> int:
    """Serve the viewer over ``root`` until interrupted; returns an exit status (2: cannot listen)."""
    server = _server(root, host, log_level)  # raises ContractError for a missing DIR
    try:
        sock = bind(host, port)
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"MIND viewer: serving {Path(root).resolve()} (read-only) at http://{shown}:{actual}/ (Ctrl-C to stop)",
        flush=True,
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after shutting down
        pass
    finally:
        sock.close()
    return 0


class ViewerThread:
    """The viewer served from a background thread, for tests and screenshots::

    with ViewerThread("runs/demo") as url:   # http://127.0.0.1:PORT
        ...
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0, **kwargs: Any):
        self.root, self.host, self.port = root, host, port
        self.server = _server(root, host, kwargs.get("log_level", "warning"))
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    def __enter__(self) -> str:
        self._sock = bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"viewer did not start on {self.url}")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
