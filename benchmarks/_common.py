"""Helpers shared by the benchmarks: progress, child processes and their peak memory, results."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

#: Environment that keeps libraries quiet (no download bars, no tokenizer fork warnings).
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def quiet_libraries() -> None:
    """Apply :data:`QUIET_ENV` to this process (call before importing transformers)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


# ---------------------------------------------------------------- numbers
def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def rate(count: float, seconds: float) -> float:
    """``count / seconds`` (0 when ``seconds`` is 0)."""
    return count / seconds if seconds > 0 else 0.0


def rnd(value: Any, digits: int = 4) -> Any:
    """Round floats (recursively in dicts and lists) for a readable results file: ``digits``
    decimals, or ``digits`` significant digits below 1 (a learning rate of 7.5e-4 stays 7.5e-4)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if abs(value) < 1 else round(value, digits)
    if isinstance(value, dict):
        return {k: rnd(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rnd(v, digits) for v in value]
    return value


# ---------------------------------------------------------------- memory
def _maxrss_mb(ru_maxrss: int) -> float:
    """``ru_maxrss`` is in kilobytes on Linux, in bytes on macOS."""
    return ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru_maxrss / 1024


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """RSS high-water mark of this process (``RUSAGE_SELF``) or of its waited-for descendants."""
    return _maxrss_mb(resource.getrusage(who).ru_maxrss)


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """Peak RSS (``VmHWM``) of a live process's current address space, from ``/proc`` (Linux).

    Unlike ``ru_maxrss`` it starts afresh at ``execve``: on Linux ``ru_maxrss`` keeps the
    high-water mark of the address space a process had before ``execve``, so a child started
    from a big parent (the benchmark, with torch loaded) would report at least the parent's size.
    """
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def descendants_peak_rss_mb() -> list[dict[str, Any]]:
    """``VmHWM`` of every live descendant of this process (e.g. Prefect's temporary server)."""
    import psutil

    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())[:160]
        except psutil.Error:
            cmd = "?"
        out.append({"pid": child.pid, "cmdline": cmd, "peak_rss_mb": vm_hwm_mb(child.pid)})
    return out


def report_at_exit(path: str | Path, payload: Callable[[], dict[str, Any]]) -> None:
    """Write ``payload()`` plus this process's peak RSS to ``path`` as JSON when it exits.

    Register this *first*, before importing anything that registers exit handlers of its own
    (Prefect's temporary server): handlers run last-in first-out, so this one runs last.
    """

    def write() -> None:
        data = payload()
        data["peak_rss_mb"] = vm_hwm_mb() or peak_rss_mb(resource.RUSAGE_SELF)
        data["ru_maxrss_mb"] = peak_rss_mb(resource.RUSAGE_SELF)  # includes the pre-exec parent (Linux)
        data["ru_maxrss_mb_children"] = peak_rss_mb(resource.RUSAGE_CHILDREN)
        Path(path).write_text(json.dumps(data, default=str))

    atexit.register(write)


# ---------------------------------------------------------------- child processes
class ChildFailed(RuntimeError):
    pass


def run_child(
    module: str, args: Sequence[str], result: Path, log: Path, timeout_s: float = 900, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """Run ``python -m module args`` from the repository root in a fresh process.

    The child writes its results as JSON to ``result`` (see :func:`report_at_exit`); its
    stdout and stderr go to ``log``. Returns ``(results, wall seconds seen from here)``.
    """
    cmd = [sys.executable, "-m", module, *args]
    full_env = {**os.environ, **QUIET_ENV, **(env or {})}
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT, env=full_env, timeout=timeout_s)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or not result.exists():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise ChildFailed(f"{' '.join(cmd)} exited with {proc.returncode}; last lines of {log}:\n{tail}")
    return json.loads(result.read_text()), wall


# ---------------------------------------------------------------- reporting
def make_progress() -> Any:
    """A rich progress display on stderr (stdout is kept for the final JSON line)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


#: environment variables that change which CPU kernels torch and MKL pick (and so the float results)
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def cpu_kernels() -> dict[str, Any]:
    """Which vector kernels torch uses here and the variables that choose them: training on another CPU (AVX-512
    against AVX2) changes the floats and, over thousands of steps, the trained student (docs/benchmarks.md)."""
    import torch

    return {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **{k: os.environ[k] for k in KERNEL_ENV if k in os.environ}}  # fmt: skip


def machine_info() -> dict[str, Any]:
    """Where the numbers come from (the load average shows how busy the shared machine was)."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {d: _version(d) for d in ("torch", "transformers", "trl", "tokenizers", "accelerate", "numpy", "prefect", "pyarrow", "duckdb", "math-verify")},
        "cpu_model": cpu_model(),
        "cpu_kernels": cpu_kernels(),
    }


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` (numbers rounded by :func:`rnd`) as indented JSON to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rnd(data), indent=2, default=str) + "\n")
    return path


def write_results(name: str, data: dict[str, Any], quick: bool = False) -> Path:
    """Write ``benchmarks/results/<name>.json`` (``<name>.quick.json`` for quick runs)."""
    return write_json(RESULTS_DIR / f"{name}{'.quick' if quick else ''}.json", data)


def emit(headline: dict[str, Any]) -> None:
    """Print the headline figures as one JSON object on the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(rnd(headline, 3), default=str), flush=True)


def publish(name: str, results: dict[str, Any], headline: dict[str, Any], *, quick: bool, t_start: float) -> int:
    """A benchmark's last step: record its wall time, write ``results/<name>.json``, name the
    file on stderr and print the headline as the last stdout line. Returns the exit status (0)."""
    results["benchmark_wall_s"] = time.perf_counter() - t_start
    path = write_results(name, results, quick=quick)
    print(f"full results: {path.relative_to(REPO_ROOT)}", file=sys.stderr)
    emit(headline)
    return 0


# ---------------------------------------------------------------- profiles
def _where(key: tuple[str, int, str]) -> str:
    """``path:line(function)`` with the repository or site-packages prefix dropped."""
    file, line, func = key
    for marker in (str(REPO_ROOT) + os.sep, "site-packages" + os.sep, "lib" + os.sep + "python"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{line}({func})" if line else func


def profile_rows(profile: Any, sort: str = "tottime", limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` heaviest functions of a ``cProfile.Profile`` by ``tottime`` or ``cumtime``."""
    import pstats

    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    index = 2 if sort == "tottime" else 3
    rows = sorted(stats.items(), key=lambda kv: kv[1][index], reverse=True)[:limit]
    return [
        {"function": _where(key), "calls": nc, "tottime_s": tt, "cumtime_s": ct}
        for key, (_cc, nc, tt, ct, _callers) in rows
    ]


def profile_cumulative(profile: Any, wanted: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Cumulative seconds of chosen functions: ``label -> (file suffix, function name)``.

    Built-in and Cython functions (file ``~``) match when ``function name`` is part of their
    name, e.g. ``("", "fsync")`` matches ``<built-in method posix.fsync>``.
    """
    import pstats

    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def matches(file: str, name: str, suffix: str, func: str) -> bool:
        if file == "~":
            return not suffix and func in name
        return name == func and file.endswith(suffix)

    out: dict[str, float] = {}
    for label, (suffix, func) in wanted.items():
        out[label] = sum(v[3] for (file, _line, name), v in stats.items() if matches(file, name, suffix, func))
    return out


def replace_block(path: str | Path, pattern: Any, block: str, before: str = "<!-- BEGIN HISTORY -->") -> None:
    """Put ``block`` (a marked section of a generated Markdown file) into ``path``: in place of the text
    ``pattern`` (a compiled regex) matches, else just before ``before``, else at the end."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    if pattern.search(old):
        new = pattern.sub(lambda _: block, old, count=1)
    elif before in old:
        i = old.index(before)
        new = old[:i] + block + "\n\n" + old[i:]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def run_benchmark_parser(doc: str, name: str, config: Path, work: Path, docs: Path) -> argparse.ArgumentParser:
    """The arguments every run-based benchmark (quality, interference) shares: its config, work folder,
    jobs, device, --report-only, --quick, docs and results file. The caller adds its own, then parses
    and calls :func:`check_device`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(config), help="benchmark YAML (default: %(default)s)")
    parser.add_argument("--work", default=str(work), help="runs and data (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each; default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where runs train and evaluate, fp32 on both (default cpu; a run's key ignores it)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report the runs finished so far")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes, results *.quick.json, no docs")
    parser.add_argument("--docs", default=str(docs), help="where results.md and the plots go (default: %(default)s)")
    parser.add_argument("--results", help=f"results JSON (default: benchmarks/results/{name}.json, quick: {name}.quick.json)")
    return parser


def check_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--device cuda`` needs a CUDA device (unless nothing is trained)."""
    if args.device == "cuda" and not args.report_only:
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda: torch sees no CUDA device here")

