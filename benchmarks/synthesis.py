"""Synthesis benchmark: teacher batching, the pipeline around the teacher, verification, memory.

    python -m benchmarks.synthesis [--quick] [--keep-tmp]
    python -m benchmarks.synthesis --task-runner thread,dask [--workers 1,2] [--latency-s 0.5] [--quick]

The second form measures only the flow on several worker processes (:mod:`benchmarks.synthesis_runners`:
1 and 2 workers of each runner, a cheap and a sleeping teacher, side by side in one run) and writes
``benchmarks/results/synthesis_runners.json``; its headline is the 2-over-1-worker ratios.

Run from the repository root. Progress goes to stderr; the full numbers go to
``benchmarks/results/synthesis.json`` (``synthesis.quick.json`` with ``--quick``, under a minute);
the last line of stdout is one JSON object with the headline figures:

``batched_over_loop``
    ``TransformersBackend.generate`` (batched, the default ``batch_size``) over a one-request-at-a-
    time loop (``generate_unbatched``) on the same prompts: rationales/s ratio, tiny random Llama
    built into a temp folder (``tests/tiny_models.py``), greedy, same ``max_tokens``, one torch
    thread, alternating order, median of the repeats. Outputs (text, finish reason, token count)
    are asserted identical. Target >= 4.
``pipeline_rationales_per_s``
    Rationales per second of the ``synthesize`` flow with the synthetic teacher, run in-process
    through ``flows.synthesize.run`` (fresh output folder each run, >= 24k rationales per run in
    the full benchmark), measured with the summary's own ``seconds``: the Prefect server start-up
    is excluded (reported separately as ``prefect_startup_s``). Median of the warm runs of one
    process. Target >= 5,000/s.
``verify_rationales_per_s``
    ``pipeline.verify.verify`` alone over the rationales that run wrote (median of passes); the
    results file also has real GSM8K model solutions (``example_model_solutions.jsonl``).
``overhead_share``
    Share of an end-to-end default CLI run's flow wall time spent outside the teacher call:
    ``1 - sum(teacher_s) / seconds`` of ``python -m flows.synthesize --num-questions 834``
    (10,008 rationales, 4 shard threads). ``sum(teacher_s)`` adds up the wall time every shard
    thread spent inside ``teacher.generate``; with 4 threads those intervals may overlap and
    include waits for the GIL, so it overstates the teacher's part and the share is a lower
    bound. The exact share from a one-thread run (no overlap) is in the results file
    (``overhead.overhead_share_one_thread``), with Prefect start-up reported on its own.
``peak_rss_mb_1k`` / ``peak_rss_mb_10k``
    RSS high-water mark (``getrusage(RUSAGE_SELF)`` at exit) of a fresh
    ``python -m flows.synthesize --out TMP --num-questions 1000`` / ``10000`` process; the
    temporary Prefect server it spawns is a separate process, reported separately. Target:
    10k <= 1.2 x 1k. (Quick mode measures 1000 questions only: ``peak_rss_mb_10k`` is null.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._common import (
    REPO_ROOT,
    machine_info,
    make_progress,
    median,
    peak_rss_mb,
    quiet_libraries,
    rate,
    run_child,
    publish,
)
from benchmarks.synthesis_profile import bench_profile_shard
from benchmarks.synthesis_runners import add_runner_arguments, runners_main

if str(REPO_ROOT) not in sys.path:  # tests.tiny_models, when started from elsewhere
    sys.path.insert(0, str(REPO_ROOT))

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
GSM8K_TEST = SHARED_DATA / "gsm8k" / "test.jsonl"
GSM8K_SOLUTIONS = SHARED_DATA / "gsm8k" / "example_model_solutions.jsonl"
DEFAULT_CLI_QUESTIONS = 834  # x 6 perspectives x 2 samples = 10,008 rationales

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "tf_prompts": 128, "tf_max_tokens": 48, "tf_repeats": 3, "tf_sweep": (32, 64),
        "pipe_questions": 2000, "pipe_repeats": 3, "breakdown_repeats": 2, "direct_repeats": 3,
        "verify_repeats": 5, "cli_repeats": 3, "rss_questions": (1000, 10000), "profile_questions": 1000,
        "flow_profile": True,
    },
    "quick": {
        "tf_prompts": 32, "tf_max_tokens": 32, "tf_repeats": 1, "tf_sweep": (),
        "pipe_questions": 1000, "pipe_repeats": 1, "breakdown_repeats": 0, "direct_repeats": 1,
        "verify_repeats": 1, "cli_repeats": 0, "rss_questions": (1000,), "profile_questions": 300,
        "flow_profile": False,
    },
}  # fmt: skip

TARGETS = {"batched_over_loop": 4.0, "pipeline_rationales_per_s": 5000.0, "rss_10k_over_1k_max": 1.2}


# ---------------------------------------------------------------- 1. transformers: batched vs loop
def bench_transformers(tmp: Path, n: int, max_tokens: int, repeats: int, sweep: tuple[int, ...], threads: int) -> dict:
    """Batched ``generate`` vs ``generate_unbatched`` on the same greedy requests."""
    import torch

    from pipeline.teachers.transformers_backend import TransformersBackend, TransformersConfig
    from tests.tiny_models import build_tiny_causal_lm

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        model_dir = build_tiny_causal_lm(tmp / "tiny-lm")
        build_s = time.perf_counter() - t
        requests = _gsm8k_requests(n, max_tokens)
        backend = TransformersBackend(TransformersConfig(model=str(model_dir), device="cpu"))
        batch_size = backend.config.batch_size
        prompt_tokens = [len(backend._encode(r)) for r in requests]
        backend.generate(requests[:batch_size])  # warm-up (allocator, kernels)
        backend.generate_unbatched(requests[:2])
        batched_s, loop_s, reference, max_logprob_diff = _batched_vs_loop(backend, requests, repeats)
        tokens = sum(c.num_tokens for c in reference)
        sweep_rows, sweep_diff = _batch_size_sweep(backend, requests, sweep, repeats, reference, median(loop_s))
        max_logprob_diff = max(max_logprob_diff, sweep_diff)
        backend.close()
    finally:
        torch.set_num_threads(previous_threads)
    b, lp = median(batched_s), median(loop_s)
    return {
        "model": "tests/tiny_models.build_tiny_causal_lm defaults (random Llama: vocab 256, hidden 32, 2 layers)",
        "build_model_s": build_s,
        "device": "cpu",
        "torch_threads": threads,
        "prompts": n,
        "prompt_source": f"first {n} GSM8K test questions as 'Question: ...\\nAnswer:'",
        "prompt_tokens_min_median_max": [min(prompt_tokens), median(prompt_tokens), max(prompt_tokens)],
        "sampling": {"temperature": 0.0, "max_tokens": max_tokens},
        "generated_tokens": tokens,
        "finish_reasons": {r: sum(c.finish_reason == r for c in reference) for r in ("stop", "length", "error")},
        "batch_size": batch_size,
        "repeats": repeats,
        "batched_s": batched_s,
        "loop_s": loop_s,
        "batched_rationales_per_s": rate(n, b),
        "loop_rationales_per_s": rate(n, lp),
        "batched_tokens_per_s": rate(tokens, b),
        "loop_tokens_per_s": rate(tokens, lp),
        "batched_over_loop": lp / b,
        "outputs_identical": True,  # asserted (text, finish_reason, num_tokens) for every run
        "max_cumulative_logprob_abs_diff": max_logprob_diff,
        "batch_size_sweep": sweep_rows,
    }


def _gsm8k_requests(n: int, max_tokens: int) -> list[Any]:
    """Greedy requests for the first ``n`` GSM8K test questions as ``Question: ...\\nAnswer:``."""
    from pipeline.teachers.base import GenerationRequest, SamplingConfig

    questions = [json.loads(line)["question"] for line in GSM8K_TEST.read_text().splitlines()[:n]]
    sampling = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=max_tokens)
    return [
        GenerationRequest(f"gsm8k:test:{i}", "stepwise", "tiny", 0, i, (), f"Question: {q}\nAnswer:", sampling)
        for i, q in enumerate(questions)
    ]


def _max_logprob_diff(a: list[Any], b: list[Any], what: str) -> float:
    """Asserts that two runs' outputs are identical (text, finish reason, token count); returns their
    largest cumulative-logprob difference."""

    def key(c: Any) -> tuple:
        return (c.text, c.finish_reason, c.num_tokens)

    mismatched = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if key(x) != key(y)]
    assert not mismatched, f"{what}: outputs differ for requests {mismatched[:10]}"
    return max(abs(x.cumulative_logprob - y.cumulative_logprob) for x, y in zip(a, b, strict=True))


def _batched_vs_loop(
    backend: Any, requests: list[Any], repeats: int
) -> tuple[list[float], list[float], list[Any], float]:
    """``repeats`` rounds of both paths, alternating their order: (batched seconds, loop seconds, the first
    run's outputs, the largest logprob difference of every later run from them)."""
    batched_s: list[float] = []
    loop_s: list[float] = []
    reference, max_logprob_diff = None, 0.0
    for rep in range(repeats):  # alternate the order: neither side always runs on a warmer machine
        order = ("batched", "loop") if rep % 2 == 0 else ("loop", "batched")
        for what in order:
            fn = backend.generate if what == "batched" else backend.generate_unbatched
            t = time.perf_counter()
            out = fn(requests)
            (batched_s if what == "batched" else loop_s).append(time.perf_counter() - t)
            if reference is None:
                reference = out
            else:
                max_logprob_diff = max(max_logprob_diff, _max_logprob_diff(reference, out, f"{what} vs first run"))
    return batched_s, loop_s, reference, max_logprob_diff


def _batch_size_sweep(
    backend: Any, requests: list[Any], sweep: tuple[int, ...], repeats: int, reference: list[Any], loop_median: float
) -> tuple[list[dict[str, Any]], float]:
    """The batched path at each batch size of ``sweep``: rows, and the largest logprob difference from ``reference``."""
    n = len(requests)
    rows, max_logprob_diff = [], 0.0
    for size in sweep:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = backend._generate(requests, size)
            times.append(time.perf_counter() - t)
            max_logprob_diff = max(max_logprob_diff, _max_logprob_diff(reference, out, f"batch_size {size}"))
        rows.append({
            "batch_size": size, "seconds_median": median(times), "rationales_per_s": rate(n, median(times)),
            "over_loop": loop_median / median(times),
        })  # fmt: skip
    return rows, max_logprob_diff


# ---------------------------------------------------------------- 2. the flow in-process
def bench_flow_runs(tmp: Path, questions: int, repeats: int, breakdown_repeats: int, profile: bool) -> dict:
    """``flows.synthesize.run`` in one fresh process: warm-up (server start-up), then measured runs."""
    runs: list[dict[str, Any]] = [
        {"label": "first call (server start-up)", "overrides": {"num_questions": 200}},
    ]
    for _ in range(repeats):  # 4 shard threads (default) and 1, interleaved
        runs.append({"label": "threads=4", "overrides": {"num_questions": questions}})
        runs.append({"label": "threads=1", "overrides": {"num_questions": questions, "max_concurrency": 1}})
    for _ in range(breakdown_repeats):
        runs.append({"label": "breakdown", "overrides": {"num_questions": DEFAULT_CLI_QUESTIONS, "max_concurrency": 1}})
    if profile:
        runs.append({"label": "profile", "overrides": {"num_questions": DEFAULT_CLI_QUESTIONS}, "profile": True})
    spec = tmp / "flow-runs.json"
    spec.write_text(json.dumps({"out": str(tmp / "flow-runs"), "runs": runs}))
    result = tmp / "flow-runs.result.json"
    data, wall = run_child("benchmarks._flow_child", ["runs", str(result), str(spec)], result, tmp / "flow-runs.log")
    records = data["runs"]
    for r in records:
        s = r["summary"]
        r["rationales_per_s"] = rate(s["rows_written"], s["seconds"])
        r["outside_flow_s"] = r["wall_s"] - s["seconds"]

    def of(label: str) -> list[dict[str, Any]]:
        return [r for r in records if r["label"] == label]

    warm_overhead = median(r["outside_flow_s"] for r in records[1:] if r["label"] != "profile")
    first = records[0]
    c4, c1 = of("threads=4"), of("threads=1")
    breakdown = of("breakdown") or c1  # one-thread runs: phases add up to the wall time
    return {
        "process_wall_s": wall,
        "import_s": data["import_s"],
        "peak_rss_mb": data["peak_rss_mb"],
        "ru_maxrss_mb": data["ru_maxrss_mb"],
        "prefect_startup_s": first["outside_flow_s"] - warm_overhead,
        "per_run_prefect_overhead_outside_flow_s": warm_overhead,
        "first_call": {"rows": first["summary"]["rows_written"], "wall_s": first["wall_s"],
                       "seconds": first["summary"]["seconds"], "rationales_per_s": first["rationales_per_s"]},
        "rows_per_run": c4[0]["summary"]["rows_written"],
        "threads4_rationales_per_s": [r["rationales_per_s"] for r in c4],
        "threads1_rationales_per_s": [r["rationales_per_s"] for r in c1],
        "pipeline_rationales_per_s": median(r["rationales_per_s"] for r in c4),
        "threads1_median_rationales_per_s": median(r["rationales_per_s"] for r in c1),
        "runs": [{k: v for k, v in r.items() if k != "profile_main_thread"} for r in records],
        "breakdown_runs": breakdown,
        "profile_main_thread": of("profile")[0]["profile_main_thread"] if profile else None,
        "descendants_at_exit": data.get("descendants"),
        "last_run_dir": c4[-1]["summary"]["run_dir"],
    }  # fmt: skip


def wall_shares(summary: dict[str, Any]) -> dict[str, float]:
    """Shares of a one-thread run's flow wall time (shards run one after another: they add up)."""
    t, seconds = summary["timing"], summary["seconds"]
    in_shard_other = t["shard_total_s"] - t["teacher_s"] - t["verify_s"] - t["write_s"]
    parts = {
        "teacher": t["teacher_s"],
        "verify_and_row_assembly": t["verify_s"],
        "write": t["write_s"],
        "other_in_shard_tasks": in_shard_other,
        "outside_shard_tasks": seconds - t["shard_total_s"],
    }
    return {k: v / seconds for k, v in parts.items()}


def thread_time_shares(summary: dict[str, Any]) -> dict[str, float]:
    """Shares of the summed shard-thread time (threads overlap: GIL waits land in every phase)."""
    t = summary["timing"]
    total = t["shard_total_s"]
    parts = {
        "teacher": t["teacher_s"],
        "verify_and_row_assembly": t["verify_s"],
        "write": t["write_s"],
        "other_in_shard_tasks": total - t["teacher_s"] - t["verify_s"] - t["write_s"],
    }
    return {k: v / total for k, v in parts.items()}


# ---------------------------------------------------------------- 3. the same work without Prefect
def bench_direct(tmp: Path, questions: int, repeats: int) -> dict:
    """Question generation + ``run_shard`` in a loop (no Prefect), and the teacher alone."""
    from pipeline.synthesis import SynthesisConfig, build_requests, iter_question_shards, run_shard
    from pipeline.teachers import cached_teacher

    cfg = SynthesisConfig(num_questions=questions)
    run_id = cfg.run_id()
    warm = SynthesisConfig(num_questions=50)
    for name, qs in iter_question_shards(warm):  # warm-up: imports, Parquet writer, teacher
        run_shard(warm, tmp / "direct-warm", warm.run_id(), name, qs)
    gen_s, loop_s, phases = [], [], []
    shards: list = []
    for rep in range(repeats):
        t = time.perf_counter()
        shards = list(iter_question_shards(cfg))
        gen_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        results = [run_shard(cfg, tmp / f"direct-{rep}", run_id, name, qs) for name, qs in shards]
        loop_s.append(time.perf_counter() - t)
        phases.append({
            "teacher_s": sum(r.teacher_s for r in results), "verify_s": sum(r.verify_s for r in results),
            "write_s": sum(r.write_s for r in results), "shard_total_s": sum(r.total_s for r in results),
        })  # fmt: skip
    rows = sum(r.rows for r in results)
    # the teacher alone, on exactly the pipeline's requests
    spec = cfg.teachers[0]
    teacher = cached_teacher(spec)
    perspectives = cfg.resolved_perspectives()
    t = time.perf_counter()
    requests = [req for _, qs in shards for req in build_requests(cfg, spec, qs, perspectives)]
    build_s = time.perf_counter() - t
    teacher_s = []
    for _ in range(repeats):
        t = time.perf_counter()
        teacher.generate(requests)
        teacher_s.append(time.perf_counter() - t)
    total = [g + s for g, s in zip(gen_s, loop_s, strict=True)]
    return {
        "questions": questions,
        "rows": rows,
        "question_generation_s": gen_s,
        "run_shard_loop_s": loop_s,
        "phases": phases,
        "rationales_per_s_including_question_generation": rate(rows, median(total)),
        "rationales_per_s_run_shard_only": rate(rows, median(loop_s)),
        "question_generation_share": median(gen_s) / median(total),
        "build_requests_s": build_s,
        "teacher_alone_s": teacher_s,
        "teacher_alone_rationales_per_s": rate(len(requests), median(teacher_s)),
    }


# ---------------------------------------------------------------- 4. verification alone
def bench_verify(run_dir: str, repeats: int) -> dict:
    import pyarrow.parquet as pq

    from pipeline.verify import verify

    files = sorted((Path(run_dir) / "shards").glob("*.parquet"))
    cols = ["rationale", "gold_answer", "task", "predicted_answer", "is_correct"]
    rows = [r for f in files for r in pq.read_table(f, columns=cols).to_pylist()]
    items = [(r["rationale"], r["gold_answer"], r["task"]) for r in rows]
    times, verdicts = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        verdicts = [verify(text, gold, task) for text, gold, task in items]
        times.append(time.perf_counter() - t)
    same = sum((v.predicted_answer, v.is_correct) == (r["predicted_answer"], r["is_correct"]) for v, r in zip(verdicts, rows))
    out: dict[str, Any] = {
        "synthetic": {
            "rationales": len(items), "passes_s": times, "rationales_per_s": rate(len(items), median(times)),
            "first_pass_rationales_per_s": rate(len(items), times[0]),
            "same_verdict_as_written": same / len(items),
        }
    }  # fmt: skip
    # real GSM8K model solutions (4 per test question), gold from the "A: <answer>" line
    import re

    a_line = re.compile(r"^\s*A:\s*(.+?)\s*$", re.MULTILINE)
    items, labels = [], []
    for line in GSM8K_SOLUTIONS.read_text().splitlines():
        obj = json.loads(line)
        gold = a_line.findall(obj["ground_truth"])[-1].replace(",", "")
        for value in obj.values():
            if isinstance(value, dict) and "solution" in value:
                items.append((value["solution"], gold, "gsm8k"))
                labels.append(value.get("is_correct"))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        verdicts = [verify(text, gold, task) for text, gold, task in items]
        times.append(time.perf_counter() - t)
    judged = [(v.is_correct, lab) for v, lab in zip(verdicts, labels, strict=True) if lab is not None]
    out["gsm8k_model_solutions"] = {
        "rationales": len(items), "passes_s": times, "rationales_per_s": rate(len(items), median(times)),
        "first_pass_rationales_per_s": rate(len(items), times[0]),
        "unjudged": sum(v.is_correct is None for v in verdicts),
        "agreement_with_openai_labels": sum(v is lab for v, lab in judged) / len(judged),
        "note": "solutions verified as written (with <<a*b=c>> calculator notes); passes after the first "
        "hit verify's caches (gold normalisation, math-verify results)",
    }  # fmt: skip
    return out


# ---------------------------------------------------------------- 5. one shard under the profiler: synthesis_profile.py
# ---------------------------------------------------------------- 6. the CLI in fresh processes
def bench_cli(tmp: Path, num_questions: int, index: int) -> dict:
    """``python -m flows.synthesize --out TMP --num-questions N`` in a fresh process."""
    out = tmp / f"cli-{index:02d}"
    result = tmp / f"cli-{index:02d}.result.json"
    argv = ["--out", str(out), "--num-questions", str(num_questions)]
    data, wall = run_child("benchmarks._flow_child", ["cli", str(result), "--", *argv], result, tmp / f"cli-{index:02d}.log")
    s = data["summary"]
    t = s["timing"]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "num_questions": num_questions,
        "rows": s["rows_written"],
        "shards": s["shards"],
        "process_wall_s": wall,
        "interpreter_start_s": data["interpreter_start_s"],
        "import_s": data["import_s"],
        "main_s": data["main_s"],
        "flow_seconds": s["seconds"],
        "prefect_outside_flow_s": data["main_s"] - s["seconds"],
        "after_main_s": wall - data["before_exit_s"] - data["interpreter_start_s"],
        "timing": t,
        "flow_rationales_per_s": rate(s["rows_written"], s["seconds"]),
        "main_rationales_per_s": rate(s["rows_written"], data["main_s"]),
        "process_rationales_per_s": rate(s["rows_written"], wall),
        "overhead_share": 1 - t["teacher_s"] / s["seconds"],
        "overhead_share_including_prefect": 1 - t["teacher_s"] / data["main_s"],
        "thread_time_shares": thread_time_shares(s),
        "peak_rss_mb": data["peak_rss_mb"],
        "peak_rss_mb_after_main": data["peak_rss_mb_after_main"],
        "ru_maxrss_mb": data["ru_maxrss_mb"],
        "peak_rss_mb_prefect_server": max((d["peak_rss_mb"] or 0.0 for d in data["descendants"]), default=None),
        "descendants": [{k: v for k, v in d.items() if k != "pid"} for d in data["descendants"]],
    }


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synthesis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (under a minute)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads for the transformers part")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (models, runs, logs)")
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    quiet_libraries()
    if args.task_runner:
        return runners_main(parser, args)
    size = SIZES["quick" if args.quick else "full"]
    t_start = time.perf_counter()
    results: dict[str, Any] = {"benchmark": "synthesis", "quick": args.quick, "sizes": size,
                               "machine": machine_info(), "targets": TARGETS}  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="mind-bench-synthesis-"))
    try:
        cli_runs = _run_parts(tmp, size, args.torch_threads, results)
    finally:
        if args.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["cli_runs"] = cli_runs
    flow = results["flow"]
    results["overhead"] = _overhead_figures(cli_runs, flow)
    results["prefect_task_overhead"] = _prefect_task_overhead(flow, results["direct"], size["pipe_questions"])
    results["memory"] = _memory_figures(cli_runs, size["rss_questions"])
    rss = dict(zip(results["memory"]["num_questions"], results["memory"]["peak_rss_mb"], strict=True))
    headline = {
        "batched_over_loop": results["transformers"]["batched_over_loop"],
        "pipeline_rationales_per_s": flow["pipeline_rationales_per_s"],
        "verify_rationales_per_s": results["verify"]["synthetic"]["rationales_per_s"],
        "overhead_share": results["overhead"]["overhead_share"],
        "peak_rss_mb_1k": rss.get(1000),
        "peak_rss_mb_10k": rss.get(10000),
        "prefect_startup_s": flow["prefect_startup_s"],
        "prefect_outside_flow_s_cli": results["overhead"]["prefect_outside_flow_s_cli"],
        "end_to_end_rationales_per_s_10k": results["overhead"]["end_to_end_rationales_per_s_flow_seconds"],
        "quick": args.quick,
    }
    results["headline"] = headline
    ratio = results["memory"]["ratio_10k_over_1k"]
    results["targets_met"] = {
        "batched_over_loop": headline["batched_over_loop"] >= TARGETS["batched_over_loop"],
        "pipeline_rationales_per_s": headline["pipeline_rationales_per_s"] >= TARGETS["pipeline_rationales_per_s"],
        "rss_10k_over_1k": None if ratio is None else ratio <= TARGETS["rss_10k_over_1k_max"],
    }
    return publish("synthesis", results, headline, quick=args.quick, t_start=t_start)


def _run_parts(tmp: Path, size: dict[str, Any], torch_threads: int, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Parts 1-5 into ``results`` (``transformers``, ``flow``, ``direct``, ``verify``, ``run_shard_profile``),
    under a progress bar; returns part 6, the CLI runs."""
    cli_plan = [DEFAULT_CLI_QUESTIONS] * size["cli_repeats"] + list(size["rss_questions"])
    steps = ["transformers", "flow", "direct", "verify", "profile"] + [f"cli-{i}" for i in range(len(cli_plan))]
    with ExitStack() as stack:
        progress = stack.enter_context(make_progress())
        bar = progress.add_task("synthesis benchmark", total=len(steps))

        def step(text: str) -> None:
            progress.update(bar, description=text)

        step(f"transformers: batched vs loop ({size['tf_prompts']} prompts)")
        results["transformers"] = bench_transformers(
            tmp, size["tf_prompts"], size["tf_max_tokens"], size["tf_repeats"], size["tf_sweep"], torch_threads
        )
        progress.advance(bar)
        step(f"flow in-process: {size['pipe_questions']} questions x {size['pipe_repeats']} (fresh process)")
        flow = bench_flow_runs(
            tmp, size["pipe_questions"], size["pipe_repeats"], size["breakdown_repeats"], size["flow_profile"]
        )
        results["flow"] = flow
        progress.advance(bar)
        step(f"same work without Prefect ({size['pipe_questions']} questions)")
        results["direct"] = bench_direct(tmp, size["pipe_questions"], size["direct_repeats"])
        progress.advance(bar)
        step("verify alone")
        results["verify"] = bench_verify(flow.pop("last_run_dir"), size["verify_repeats"])
        for record in flow["runs"]:  # temporary paths: noise in a committed file
            record["summary"].pop("run_dir", None)
        progress.advance(bar)
        step(f"profile of run_shard ({size['profile_questions']} questions, one shard)")
        results["run_shard_profile"] = bench_profile_shard(tmp, size["profile_questions"])
        progress.advance(bar)
        cli_runs = []
        for i, n in enumerate(cli_plan):
            step(f"CLI in a fresh process: --num-questions {n}")
            cli_runs.append(bench_cli(tmp, n, i))
            progress.advance(bar)
        step("done")
    return cli_runs


# ---------------------------------------------------------------- derived figures
def _overhead_figures(cli_runs: list[dict[str, Any]], flow: dict[str, Any]) -> dict[str, Any]:
    """``results["overhead"]``: the share of the flow's time outside the teacher, from the default CLI runs and
    the one-thread in-process runs, and the end-to-end rates."""
    default_runs = [r for r in cli_runs if r["num_questions"] == DEFAULT_CLI_QUESTIONS] or cli_runs[-1:]
    breakdown = [r["summary"] for r in flow["breakdown_runs"]]
    one_thread_share = median(1 - s["timing"]["teacher_s"] / s["seconds"] for s in breakdown)
    return {
        "method": "overhead_share = 1 - sum(teacher_s) / seconds from the summary of the default CLI run "
        f"(--num-questions {default_runs[0]['num_questions']}, 4 shard threads), median of {len(default_runs)} "
        "fresh processes. sum(teacher_s) adds the wall time each shard thread spent inside teacher.generate; "
        "4 threads can overlap and wait for the GIL there, so it overstates the teacher and the share is a "
        "lower bound. overhead_share_one_thread: the same formula on one-thread in-process runs "
        "(no overlap: exact; wall_shares_one_thread splits their flow time). "
        "Prefect start-up (temporary server, outside the flow's seconds) is reported on its own and in "
        "overhead_share_including_prefect (teacher_s / wall of main()).",
        "num_questions": default_runs[0]["num_questions"],
        "rows": default_runs[0]["rows"],
        "overhead_share": median(r["overhead_share"] for r in default_runs),
        "overhead_share_one_thread": one_thread_share,
        "overhead_share_including_prefect": median(r["overhead_share_including_prefect"] for r in default_runs),
        "prefect_startup_s_in_process": flow["prefect_startup_s"],
        "prefect_outside_flow_s_cli": median(r["prefect_outside_flow_s"] for r in default_runs),
        "import_s_cli": median(r["import_s"] for r in default_runs),
        "end_to_end_rationales_per_s_flow_seconds": median(r["flow_rationales_per_s"] for r in default_runs),
        "end_to_end_rationales_per_s_main": median(r["main_rationales_per_s"] for r in default_runs),
        "end_to_end_rationales_per_s_process": median(r["process_rationales_per_s"] for r in default_runs),
        "process_wall_s": median(r["process_wall_s"] for r in default_runs),
        "thread_time_shares_default": {
            k: median(r["thread_time_shares"][k] for r in default_runs) for k in default_runs[0]["thread_time_shares"]
        },
        "wall_shares_one_thread": {k: median(wall_shares(s)[k] for s in breakdown) for k in wall_shares(breakdown[0])},
        "one_thread_rationales_per_s": median(rate(s["rows_written"], s["seconds"]) for s in breakdown),
    }  # fmt: skip


def _prefect_task_overhead(flow: dict[str, Any], direct: dict[str, Any], pipe_questions: int) -> dict[str, Any]:
    """Seconds each Prefect shard task adds: the one-thread flow against the same work without Prefect."""
    per_task = (1 / flow["threads1_median_rationales_per_s"] - 1 / direct["rationales_per_s_including_question_generation"])
    shards_per_run = -(-pipe_questions // 100)
    return {
        "method": "one-thread flow vs question generation + run_shard loop without Prefect, same questions",
        "flow_one_thread_rationales_per_s": flow["threads1_median_rationales_per_s"],
        "direct_rationales_per_s": direct["rationales_per_s_including_question_generation"],
        "seconds_per_shard_task": per_task * flow["rows_per_run"] / shards_per_run,
    }


def _memory_figures(cli_runs: list[dict[str, Any]], rss_questions: tuple[int, ...]) -> dict[str, Any]:
    """``results["memory"]``: the flow process's peak RSS at each size of ``rss_questions``."""
    sized = {r["num_questions"]: r for r in cli_runs if r["num_questions"] in rss_questions}
    rss = {n: sized[n]["peak_rss_mb"] for n in rss_questions}
    return {
        "method": "peak RSS (VmHWM from /proc at exit) of a fresh `python -m flows.synthesize --out TMP "
        "--num-questions N` process, the flow process. Not ru_maxrss: on Linux it keeps the high-water mark "
        "of the address space before execve, i.e. of the benchmark process that started the child (kept as "
        "ru_maxrss_mb for reference). Prefect's temporary server is a separate child process, reported "
        "separately (its VmHWM, read just before it is stopped).",
        "num_questions": list(rss),
        "rows": [sized[n]["rows"] for n in rss],
        "peak_rss_mb": list(rss.values()),
        "ru_maxrss_mb": [sized[n]["ru_maxrss_mb"] for n in rss],
        "peak_rss_mb_prefect_server": [sized[n]["peak_rss_mb_prefect_server"] for n in rss],
        "ratio_10k_over_1k": rss[10000] / rss[1000] if 10000 in rss and 1000 in rss else None,
        "benchmark_process_peak_rss_mb": peak_rss_mb(),
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
