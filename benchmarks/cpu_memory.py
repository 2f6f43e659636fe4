"""CPU memory benchmark: ``distill.train`` with freed memory kept in the process (``--keep_freed_memory``,
the default on CPU) against the same run handing it back to the OS (``--no_keep_freed_memory``).

    python -m benchmarks.cpu_memory [--quick] [--strategies mind,all] [--steps N] [--repeats R]
                                    [--data DIR --student DIR --tag NAME]

Run from the repository root, with nothing else running. Progress goes to stderr; the numbers go to
``benchmarks/results/cpu_memory.json`` (``cpu_memory.quick.json`` with ``--quick``); the last line
of stdout is one JSON object with the headline figures.

Set-up (``--data``/``--student`` replace the data and student; ``--tag`` names the results
file): the trainer benchmark's data (``benchmarks.trainer_runs.prepare``: synthetic-world shards, five
perspectives) and student (the embedded default when built, else the same architecture untrained);
both processes get the same data, student, seed and flags (``--num_threads 1``, no evaluation, no
saving of checkpoints) and differ only in the flag. Each round starts the two processes at the same
moment (one core each on the 2-core machine; which starts first alternates between rounds), so
the two are timed side by side under the same load. Per process: wall seconds, ``train_seconds``
(``distill.train``'s own clock), user and system CPU seconds and minor page faults (``os.wait4``),
peak resident memory (``VmHWM``, polled); and whether the two final models are byte-identical
(the allocator must not change a single weight).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import QUIET_ENV, REPO_ROOT, machine_info, make_progress, median, publish, vm_hwm_mb

SIZES = {
    "full": {"questions": 200, "steps": 100, "strategies": ("mind", "all"), "repeats": 2},
    "quick": {"questions": 24, "steps": 6, "strategies": ("mind",), "repeats": 1},
}
MODES = {"kept": [], "returned": ["--no_keep_freed_memory"]}  # flag per mode: kept is the default


def train_command(spec: dict[str, Any], strategy: str, steps: int, out: Path, mode: str) -> list[str]:
    args = {
        "data": spec["data"], "student": spec["student"], "output_dir": str(out), "strategy": strategy,
        "max_steps": steps, "per_device_train_batch_size": 8, "learning_rate": 1.5e-3, "seed": 0,
        "num_threads": 1, "use_cpu": "true", "eval_splits": "", "validation_questions": 0, "logging_steps": 10**6,
        "save_strategy": "no", "report_to": "none", "disable_tqdm": "true", "max_length": 512,
    }  # fmt: skip
    flags = [f"--{k}={v}" for k, v in args.items()]
    return [sys.executable, "-m", "distill.train", *flags, *MODES[mode]]


def _wait_all(procs: dict[str, tuple[subprocess.Popen, Path]], t0: float) -> dict[str, dict[str, Any]]:
    """Wait for every process at once, polling each one's peak RSS while it lives; per process its
    wall time (from ``t0``), rusage and ``distill.train``'s own training seconds."""
    peak = {mode: 0.0 for mode in procs}
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(procs):
        for mode, (proc, log) in procs.items():
            if mode in done:
                continue
            peak[mode] = max(peak[mode], vm_hwm_mb(proc.pid) or 0.0)  # before reaping: a zombie has none
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if not pid:
                continue
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            out = log.with_suffix(".out").read_text()
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(proc.args)} exited with {proc.returncode}; log {log}:\n"
                                   f"{log.read_text(errors='replace')[-2000:]}")  # fmt: skip
            summary = json.loads(out.strip().splitlines()[-1])
            done[mode] = {"wall_s": wall, "train_s": summary["train_seconds"], "user_s": usage.ru_utime,
                          "sys_s": usage.ru_stime, "minor_faults": usage.ru_minflt, "peak_rss_mb": peak[mode]}  # fmt: skip
        time.sleep(0.2)
    return done


def run_pair(spec: dict[str, Any], strategy: str, steps: int, tmp: Path, first: str) -> dict[str, Any]:
    """Both modes at once (``first`` started first); their measures and whether their models match."""
    order = [first, *(m for m in MODES if m != first)]
    procs = {}
    env = {**os.environ, **QUIET_ENV}
    t0 = time.perf_counter()
    for mode in order:
        out = tmp / f"{strategy}-{mode}"
        log = tmp / f"{strategy}-{mode}.log"
        with open(log, "w") as err, open(log.with_suffix(".out"), "w") as stdout:  # files: no pipe to fill up
            procs[mode] = (subprocess.Popen(train_command(spec, strategy, steps, out, mode), cwd=REPO_ROOT, env=env,
                                            stdout=stdout, stderr=err), log)  # fmt: skip
    measured = _wait_all(procs, t0)
    digests = {m: hashlib.sha256((tmp / f"{strategy}-{m}" / "model.safetensors").read_bytes()).hexdigest() for m in MODES}
    return {"first": first, "modes": measured, "identical_weights": len(set(digests.values())) == 1}


def run_benchmark(size: dict[str, Any], tmp: Path, step: Any, data: Path | None = None,
                  student: Path | None = None) -> dict[str, Any]:  # fmt: skip
    """``data``/``student``: train on these instead of the trainer benchmark's set-up."""
    from benchmarks.trainer_runs import prepare

    if data is not None and student is not None:
        spec = {"data": str(data), "student": str(student), "student_described": str(student)}
    else:
        step("data and student")
        spec = prepare(tmp, size["questions"])
    rounds: dict[str, list[dict[str, Any]]] = {}
    for strategy in size["strategies"]:
        for r in range(size["repeats"]):
            first = list(MODES)[r % 2]
            step(f"{strategy}: round {r + 1}/{size['repeats']} ({size['steps']} steps, both modes at once)")
            rounds.setdefault(strategy, []).append(run_pair(spec, strategy, size["steps"], tmp, first))
    return {"sizes": size, "data": spec["data"], "student": spec["student_described"], "rounds": rounds}


def headline_of(results: dict[str, Any]) -> dict[str, Any]:
    """Per strategy, medians over rounds of returned / kept (a ratio above 1: keeping is faster)."""
    head: dict[str, Any] = {}
    for strategy, rounds in results["rounds"].items():
        def ratio(key: str) -> float:
            return median(r["modes"]["returned"][key] / max(r["modes"]["kept"][key], 1e-9) for r in rounds)

        def sys_share(mode: str) -> float:
            return median(r["modes"][mode]["sys_s"] / max(r["modes"][mode]["user_s"] + r["modes"][mode]["sys_s"], 1e-9)
                          for r in rounds)  # fmt: skip

        head[strategy] = {
            "wall_returned_over_kept": ratio("wall_s"), "train_returned_over_kept": ratio("train_s"),
            "faults_returned_over_kept": ratio("minor_faults"), "peak_rss_kept_over_returned": 1 / ratio("peak_rss_mb"),
            "sys_share_returned": sys_share("returned"), "sys_share_kept": sys_share("kept"),
            "identical_weights": all(r["identical_weights"] for r in rounds),
        }  # fmt: skip
    return head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (CI smoke, about a minute)")
    parser.add_argument("--strategies", help="comma-separated strategies (default: mind,all; quick: mind)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 100; quick 6)")
    parser.add_argument("--repeats", type=int, help="rounds per strategy (default 2; quick 1)")
    parser.add_argument("--data", type=Path, help="rationale shards to train on (with --student; default: the "
                        "trainer benchmark's synthetic set-up)")
    parser.add_argument("--student", type=Path, help="the student folder to train (with --data)")
    parser.add_argument("--tag", help="write results/cpu_memory-TAG.json (e.g. for another --data)")
    args = parser.parse_args(argv)
    if (args.data is None) != (args.student is None):
        parser.error("--data and --student go together")
    for flag in ("data", "student"):
        if (path := getattr(args, flag)) is not None and not path.is_dir():
            parser.error(f"--{flag} {path}: not a folder")
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.strategies:
        size["strategies"] = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    for key in ("steps", "repeats"):
        if (value := getattr(args, key)) is not None:
            if value < 1:
                parser.error(f"--{key} must be >= 1, got {value}")
            size[key] = value
    t_start = time.perf_counter()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-cpu-memory-") as tmp, make_progress() as progress:
        task = progress.add_task("cpu memory", total=None)
        results = run_benchmark(size, Path(tmp), lambda what: progress.update(task, description=what), args.data,
                                args.student)  # fmt: skip
    results |= {"machine": machine_info(), "load_at_start": load, "load_at_end": os.getloadavg()}
    name = f"cpu_memory-{args.tag}" if args.tag else "cpu_memory"
    return publish(name, results, headline_of(results), quick=args.quick, t_start=t_start)


if __name__ == "__main__":
    sys.exit(main())
