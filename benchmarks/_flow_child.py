"""Child process of ``benchmarks.synthesis``: runs the ``synthesize`` flow in a fresh interpreter.

    python -m benchmarks._flow_child cli RESULT.json -- --out DIR --num-questions N
        exactly ``python -m flows.synthesize --out DIR --num-questions N`` (its ``main``), plus
        timings (interpreter start, imports, main) and peak RSS, written to RESULT.json at exit
    python -m benchmarks._flow_child runs RESULT.json SPEC.json
        ``flows.synthesize.run`` in-process once per entry of SPEC's ``runs`` (each into a fresh
        output folder), optionally under cProfile (main thread: the flow body)

The temporary Prefect server starts on the first flow call of the process; its start-up is
the first call's wall time minus the flow's own ``seconds`` (minus the later calls' overhead).
"""

from __future__ import annotations

import sys
import time

T_START = time.perf_counter()
T_START_WALL = time.time()

from benchmarks._common import (  # noqa: E402
    descendants_peak_rss_mb,
    profile_cumulative,
    profile_rows,
    report_at_exit,
    vm_hwm_mb,
)

#: Main-thread functions of the flow body worth naming in the profile (label -> file, function).
FLOW_FUNCTIONS = {
    "run_synthesis (flow body)": ("flows/synthesize.py", "run_synthesis"),
    "question source (iter_question_shards)": ("pipeline/synthesis.py", "iter_question_shards"),
    "synthetic world: make_problem": ("pipeline/synthetic/world.py", "make_problem"),
    "synthetic world: WorldConfig.fingerprint": ("pipeline/synthetic/world.py", "fingerprint"),
    "task submit": ("prefect/tasks.py", "submit"),
    "waiting for shard tasks (as_completed)": ("prefect/futures.py", "as_completed"),
    "waiting for shard tasks (future.result)": ("prefect/futures.py", "result"),
    "collect (results + progress artifact)": ("flows/synthesize.py", "collect"),
    "update_progress_artifact": ("prefect/artifacts.py", "update_progress_artifact"),
    "create_progress_artifact": ("prefect/artifacts.py", "create_progress_artifact"),
    "create_table_artifact": ("prefect/artifacts.py", "create_table_artifact"),
    "browse.stats (DuckDB)": ("pipeline/browse.py", "stats"),
    "RunWriter.finalize": ("data_schemas/io.py", "finalize"),
    "load_manifest": ("data_schemas/manifest.py", "load_manifest"),
    "SynthesisConfig.run_id": ("pipeline/synthesis.py", "run_id"),
    "model_validate (config)": ("pydantic/main.py", "model_validate"),
}


def cli(result: str, argv: list[str]) -> None:
    state: dict = {"argv": argv}
    report_at_exit(result, lambda: state)
    import psutil

    state["interpreter_start_s"] = T_START_WALL - psutil.Process().create_time()  # before this module ran
    t = time.perf_counter()
    import flows.synthesize as fs

    state["import_s"] = time.perf_counter() - t
    original = fs.print_summary

    def capture(summary: dict) -> None:
        state["summary"] = summary
        original(summary)

    fs.print_summary = capture
    t = time.perf_counter()
    state["exit_code"] = fs.main(argv)
    state["main_s"] = time.perf_counter() - t
    state["peak_rss_mb_after_main"] = vm_hwm_mb()
    state["descendants"] = descendants_peak_rss_mb()  # the temporary server is still up until exit
    state["before_exit_s"] = time.perf_counter() - T_START  # from this module's first line


def runs(result: str, spec_path: str) -> None:
    import json
    from pathlib import Path

    spec = json.loads(Path(spec_path).read_text())
    state: dict = {"runs": []}
    report_at_exit(result, lambda: state)
    t = time.perf_counter()
    from flows.synthesize import run

    state["import_s"] = time.perf_counter() - t
    out = Path(spec["out"])
    for i, entry in enumerate(spec["runs"]):
        run_out = out / f"run-{i:02d}"
        profile = None
        if entry.get("profile"):
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        t = time.perf_counter()
        summary = run(str(run_out), **entry.get("overrides", {}))
        wall = time.perf_counter() - t
        record = {"label": entry.get("label", ""), "overrides": entry.get("overrides", {}), "wall_s": wall}
        if profile is not None:
            profile.disable()
            record["profile_main_thread"] = {
                "named_cumulative_s": profile_cumulative(profile, FLOW_FUNCTIONS),
                "top_tottime": profile_rows(profile, "tottime", 25),
                "top_cumtime": profile_rows(profile, "cumtime", 40),
            }
        summary.pop("groups", None)
        record["summary"] = summary
        record["peak_rss_mb_so_far"] = vm_hwm_mb()
        state["runs"].append(record)
    state["descendants"] = descendants_peak_rss_mb()


def main(argv: list[str]) -> None:
    mode, result, *rest = argv
    if mode == "cli":
        cli(result, rest[1:] if rest[:1] == ["--"] else rest)
    elif mode == "runs":
        runs(result, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
