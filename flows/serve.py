"""Serve the ``synthesize`` flow as the deployment ``synthesize/<name>`` of a Prefect server.

Three terminals (the full walk-through is ``docs/deployment.md``)::

    prefect server start --host 127.0.0.1                        # 1: the server (UI and API)
    export PREFECT_API_URL=http://127.0.0.1:4200/api             # 2 and 3: talk to that server
    python -m flows.serve [--name default] [--limit 1] [--config my.yaml]
    prefect deployment run 'synthesize/default' --param out=runs/deployed --param num_questions=100 --watch

The serve process registers the deployment and polls the server for runs of it (every
``PREFECT_RUNNER_POLL_FREQUENCY`` seconds, 10 by default). Each run executes on this machine, in a
fresh child process of the serve process, so relative paths in parameters (``out``, ``config``)
are resolved from the directory where ``python -m flows.serve`` was started.

The task runner is chosen here, once, like ``python -m flows.synthesize`` does per run: from
``--config`` (its ``task_runner`` and ``task_runner_options``; the thread pool by default). That
file is also the deployment's default ``config`` parameter. A run that passes a different
``config`` or ``overrides`` still runs on the task runner chosen at serve time.

Without ``PREFECT_API_URL`` the Prefect client would start a temporary in-process server that
no other terminal can reach, so serving refuses to start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from data_schemas import ContractError

DEFAULT_NAME = "default"
DEFAULT_LIMIT = 1
DEFAULT_API_URL = "http://127.0.0.1:4200/api"

NO_API_URL = f"""\
error: PREFECT_API_URL is not set.
Without it, Prefect starts a temporary server inside this process: the deployment would be
registered there and no `prefect deployment run` from another terminal could ever reach it.
Start a server and point this terminal (and the one you trigger runs from) at it:

    prefect server start --host 127.0.0.1          # in another terminal
    export PREFECT_API_URL={DEFAULT_API_URL}
    python -m flows.serve
"""


def api_url() -> str | None:
    """The configured Prefect API (environment, profile or settings file), or None."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def check_server(url: str) -> str | None:
    """None when the server at ``url`` answers its health check, else an error message."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        error = client.api_healthcheck()
    if error is None:
        return None
    return (
        f"error: no Prefect server answers at PREFECT_API_URL={url} ({error}).\n"
        "Start one with `prefect server start --host 127.0.0.1` (API at "
        f"{DEFAULT_API_URL}), or correct PREFECT_API_URL."
    )


def synthesize_deployment(config: str | None) -> tuple[Any, dict[str, Any]]:
    """The ``synthesize`` flow on the task runner of ``config``, and its default parameters.

    The config is validated now, so a bad file fails here rather than in every run.
    """
    from flows.synthesize import make_task_runner, synthesize
    from pipeline.synthesis import load_config

    cfg = load_config(config)
    parameters: dict[str, Any] = {}
    if config is not None:
        parameters["config"] = str(Path(config).resolve())
    return synthesize.with_options(task_runner=make_task_runner(cfg)), parameters


def serve(name: str = DEFAULT_NAME, limit: int | None = DEFAULT_LIMIT, config: str | None = None) -> None:
    """Register ``synthesize/<name>`` and execute its runs until interrupted (Ctrl-C, SIGTERM).

    ``Runner.add_flow`` (what ``Flow.serve`` does) keeps the flow object, so runs execute this
    very flow, with the task runner chosen here, in a spawned child process (``prefect.serve``
    of ``flow.to_deployment(...)`` would instead re-import the flow from its entrypoint and
    lose the task runner). More flows (train, evaluate) would be further ``add_flow`` calls on
    the same runner. The entrypoint is the file path, as ``Flow.serve`` and ``prefect flow
    serve`` record it, so either can later serve the same deployment name.
    """
    from prefect.runner import Runner

    flow, parameters = synthesize_deployment(config)
    runner = Runner(name=f"mind-{name}", limit=limit, pause_on_shutdown=True)
    runner.add_flow(flow, name=name, parameters=parameters, tags=["mind"])
    runner_kind = type(flow.task_runner).__name__
    print(
        f"Serving deployment '{flow.name}/{name}' (at most {limit or 'unlimited'} run(s) at once, "
        f"{runner_kind}). Trigger a run with:\n\n"
        f"    prefect deployment run '{flow.name}/{name}' --param out=runs/deployed "
        "--param num_questions=100 --watch\n\n"
        "Relative paths are resolved from this directory. Stop with Ctrl-C.",
        flush=True,
    )
    try:
        asyncio.run(runner.start())
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="deployment name: synthesize/NAME (default: default)")
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help="flow runs executed at once by this process (default 1; 0 = no limit); further runs wait, scheduled",
    )
    parser.add_argument(
        "--config",
        help="YAML of SynthesisConfig fields: the deployment's default `config` parameter and the task runner",
    )
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error("--limit must be >= 0")
    if "/" in args.name or "%" in args.name:
        parser.error("--name cannot contain '/' or '%'")

    url = api_url()
    if not url:
        print(NO_API_URL, file=sys.stderr, end="")
        return 2
    problem = check_server(url)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        serve(args.name, args.limit or None, args.config)
    except ContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
