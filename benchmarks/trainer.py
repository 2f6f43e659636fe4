"""Trainer benchmark: seconds per optimizer step and peak memory of the strategies vs TRL's SFT.

    python -m benchmarks.trainer [--quick] [--keep-tmp] [--repeats N] [--batch-size B]

Run from the repository root. Progress goes to stderr; the full numbers go to
``benchmarks/results/trainer.json`` (``trainer.quick.json`` with ``--quick``, about 1.5 minutes);
the last line of stdout is one JSON object with the headline figures.

Set-up (identical for every configuration):

- student: the embedded default (``distill.default_student.ensure_default_student``'s folder under
  ``runs/students``) when it has been built; otherwise ``build_student(build_world_tokenizer())``,
  the same tiny Llama and world tokenizer before stage-0 pretraining (training cost is identical);
  saved once and reloaded fresh for every run (same weights);
- data: synthetic-world rationale shards written by ``pipeline.synthesis.run_shard`` with 5
  perspectives (stepwise, equation, socratic, verbose, backward), one sample each, so every
  question has exactly 5 candidates (``include_incorrect``: verification does not thin them),
  encoded as ``distill.train`` does (plain prompts, the canonical answer line);
- the same batch (``batch_size`` questions per step, i.e. ``5 x batch_size`` candidate rows; TRL's
  SFT gets ``5 x batch_size`` rows per step), the same rows in the same order (sequential sampling
  for every trainer: step ``i`` of each run sees questions ``i*B .. i*B+B-1``), seed, learning
  rate, optimizer (TRL's default), ``max_length``, gradient checkpointing (TRL's default, on),
  precision (fp32 on CPU, bf16 on CUDA), torch threads (``--torch-threads``, default 1); no
  logging (``logging_steps`` huge, ``report_to`` none), no saving, no evaluation, no progress bar;
- every MindConfig flag at its default except ``meta_warmup_steps`` = ``META_WARMUP_STEPS`` (1):
  the MetaNet's warm-up lies inside the discarded warm-up steps, so the measured ``mind`` steps are
  steady-state steps (a warm-up step costs what ``all``'s does with the default uniform warm-up, less
  with a frozen one: a no-grad forward and no student update). The recorded results
  (``benchmarks/results/trainer.json``) were measured with the defaults before 2026-12-07 (inertia
  target, completion loss); the steady-state step runs the same forwards and backward today, plus the
  answer line's loss, computed from the same logits.

Configurations: ``sft`` = TRL's own ``SFTTrainer`` on every candidate as an independent
prompt/completion example (token ids + ``completion_mask``, ``completion_only_loss``; the rows of
a question consecutive, so its batches hold exactly the rows of ``all``'s); ``golden``,
``random``, ``mcc_kd``, ``all``, ``lowest_loss``, ``instant``, ``mind`` (``--scoring shared``,
the default) and ``mind_separate`` (``--scoring separate``) = ``MindTrainer`` with that strategy.

Timing: one fresh process runs every configuration with a fresh model per run, interleaved
(``repeats`` rounds, the order rotated and reversed between rounds). A ``TrainerCallback`` added
last (after the MIND callback, so ``end_of_step``'s work falls inside the step) reads the clocks at
every ``on_step_end`` (after a device synchronise on CUDA); the seconds per optimizer step of a run
are ``(t[W+M] - t[W]) / M`` over ``M`` steps after ``W`` warm-up steps, i.e. the whole loop (data
loading and collation included). ``M`` is a multiple of ``meta_accumulation_steps`` (4) so the
MetaNet's optimizer step is amortised as in real use. A configuration's figure is the median over
rounds; ratios divide those medians (paired per-round ratios are in the results file). Two clocks
are always recorded: ``time.process_time`` (CPU seconds of the process; with one torch thread and
no data-loader workers this is the step's compute, and it hardly moves when other processes share
the machine) and ``time.perf_counter`` (wall). The headline uses ``--clock``: ``auto`` = CPU time
on a CPU device, wall time on CUDA (where CPU time means nothing).

``meta_share``: in the same timed runs (not extra ones) the timing process wraps, with timers on
the headline's clock (CPU time on CPU; wall on CUDA, synchronised around the consistency term),
``Mind.plan`` (the inertia features, the MetaNet's scoring forward, dynamic fusion),
``Mind.end_of_step`` (the meta-loss, the MetaNet's backward and Adam step) and
``answer_consistency`` as ``distill.trainer`` calls it (the JSD term's forward). ``meta_share`` =
their seconds over the measured window / the ``mind`` run's seconds over the same window;
nothing else is added or subtracted (not the backward of the consistency term, which autograd runs
inside the student's backward, nor the answer-position log-softmax inside ``student_forward``).
The same wrappers time ``MindTrainer.compute_loss``, ``._score`` and ``.end_of_step`` for context.
Each wrapper is a few clock reads per call (a handful of calls per step).

Memory: every configuration of ``memory_configs`` again in its own fresh process (same steps),
peak RSS = ``VmHWM`` from ``/proc`` at the end of training (CUDA: ``torch.cuda.max_memory_allocated``).
Raw peaks, nothing subtracted (the results file also gives the RSS just before ``train()`` and the
increase over it).

Compute: per measured step, the trainer's own account (``MindTrainer.summary()["compute"]``:
``forward_tokens`` = no-grad scoring tokens, ``backward_tokens`` = tokens of forward+backward
passes) and, for ``sft``, the collated tokens (all trained).

Headline keys (targets from the issue): ``mind_over_all`` (<= 1.15), ``mem_mind_over_all`` (raw
peak ratio; <= 1.2), ``meta_share`` (<= 0.10), ``all_over_sft`` (<= 1.1); plus
``mind_separate_over_all`` and seconds per step of every configuration.

Sizes: full = 200 questions, 8 questions per step (40 candidate rows), 3 warm-up + 8 measured
steps; sft/all/mind/mind_separate in 3 interleaved rounds, then golden/random/mcc_kd/lowest_loss/
instant once each; memory of sft/all/mind/mind_separate (two processes at a time, after the
timing process). Quick = 40 questions, 2 questions per step, 2 + 4 steps, one round of
sft/all/mind/mind_separate, memory of all and mind: it checks that everything runs, its ratios are
noisy and not comparable with the full run's.

The configurations, their set-up and the child processes that run them are in
``benchmarks/trainer_runs.py``; this module starts the children and summarises.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._common import QUIET_ENV, REPO_ROOT, machine_info, make_progress, median, publish, run_child
from benchmarks.trainer_runs import (
    CONFIGS,
    LEARNING_RATE,
    META_LABELS,
    META_WARMUP_STEPS,
    PERSPECTIVES,
    TIMERS,
    child_memory,
    child_timing,
)

#: timed in every round (the headline's ratios); the others (``once``) in one extra pass after the rounds
HEADLINE_CONFIGS = ["sft", "all", "mind", "mind_separate"]

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "questions": 200, "batch_size": 8, "warmup_steps": 3, "measured_steps": 8, "repeats": 3,
        "configs": HEADLINE_CONFIGS, "once": ["golden", "random", "mcc_kd", "lowest_loss", "instant"],
        "memory_configs": HEADLINE_CONFIGS,
    },
    "quick": {
        "questions": 40, "batch_size": 2, "warmup_steps": 2, "measured_steps": 4, "repeats": 1,
        "configs": HEADLINE_CONFIGS, "once": [], "memory_configs": ["all", "mind"],
    },
}  # fmt: skip

TARGETS = {
    "mind_over_all_max": 1.15,
    "mem_mind_over_all_max": 1.2,
    "meta_share_max": 0.10,
    "all_over_sft_max": 1.1,
}


# ====================================================================== summary
def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"


def peak_of(m: dict[str, Any] | None) -> float | None:
    if not m:
        return None
    return m["cuda_max_allocated_mb"] if m.get("cuda_max_allocated_mb") is not None else m.get("peak_rss_mb")


def summarize(timing: dict[str, Any], memory: dict[str, dict[str, Any]], clock: str) -> dict[str, Any]:
    runs = timing["runs"]
    key = f"{clock}_s_per_step"
    s = {name: median(r[key] for r in rs) for name, rs in runs.items()}

    def ratio(a: str, b: str) -> float | None:
        return s[a] / s[b] if a in s and b in s else None

    def paired(a: str, b: str) -> list[float]:
        if a not in runs or b not in runs or len(runs[a]) != len(runs[b]):
            return []
        return [x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True)]

    def mem_ratio(a: str, b: str) -> float | None:
        pa, pb = peak_of(memory.get(a)), peak_of(memory.get(b))
        return pa / pb if pa and pb else None

    pairs = {"mind_over_all": ("mind", "all"), "mind_separate_over_all": ("mind_separate", "all"),
             "all_over_sft": ("all", "sft"), "mind_over_sft": ("mind", "sft")}  # fmt: skip
    return {
        "s_per_step": s,
        "ratios": {k: ratio(a, b) for k, (a, b) in pairs.items()},
        "over_all": {n: ratio(n, "all") for n in s},
        "over_sft": {n: ratio(n, "sft") for n in s},
        "paired_ratios_per_round": {k: paired(a, b) for k, (a, b) in pairs.items()},
        "mem_mind_over_all": mem_ratio("mind", "all"),
        "mem_mind_separate_over_all": mem_ratio("mind_separate", "all"),
        "mem_all_over_sft": mem_ratio("all", "sft"),
        "peak_mb": {name: peak_of(m) for name, m in memory.items()},
    }


def meta_shares(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median over rounds of each run's meta_share (the timers' clock), per configuration that has one."""
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        shares = [r["meta_share"] for r in rs if "meta_share" in r]
        if shares and CONFIGS[name].get("strategy") == "mind":
            out[name] = {
                "meta_share": median(shares),
                "per_round": shares,
                "meta_s_per_step": median(r["meta_s_per_step"] for r in rs),
                "by_part_s_per_step": {k: median(r["timers_s_per_step"].get(k, 0.0) for r in rs) for k in META_LABELS},
            }
    return out


# ====================================================================== the benchmark
def run_benchmark(
    size: dict[str, Any], *, torch_threads: int = 1, clock: str = "auto", memory_jobs: int = 2,
    keep_tmp: bool = False, overlap: bool = False, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Timing and memory children for ``size`` (a ``SIZES`` entry); returns the results (with ``headline``)."""
    tmp = Path(tempfile.mkdtemp(prefix="mind-bench-trainer-"))
    spec = {
        **size, "tmp": str(tmp), "torch_threads": torch_threads, "max_length": 1024,
        "gradient_checkpointing": True, "spec_out": str(tmp / "spec.json"),
    }  # fmt: skip
    assert spec["warmup_steps"] > META_WARMUP_STEPS, "the MetaNet's warm-up must lie inside the discarded steps"
    (tmp / "timing-spec.json").write_text(json.dumps(spec))
    results: dict[str, Any] = {
        "benchmark": "trainer", "sizes": size, "targets": TARGETS, "machine": machine_info(),
        "code": {p: _file_hash(REPO_ROOT / p) for p in ("distill/trainer.py", "distill/strategies/mind.py",
                                                      "distill/losses.py", "distill/metanet.py", "distill/data.py")},
    }  # fmt: skip
    try:
        timing, memory = _run_children(spec, memory_jobs=memory_jobs, overlap=overlap, progress=progress)
    finally:
        if keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    clock = clock if clock != "auto" else ("cpu" if timing["device"] == "cpu" else "wall")
    summary = summarize(timing, memory, clock)
    by_clock = {c: summarize(timing, memory, c) for c in ("wall", "cpu")}
    runs = timing["runs"]
    shares = meta_shares(runs)
    results["setup"] = _setup_record(spec, timing, clock, overlap)
    results["timing"] = _timing_record(timing, clock, summary, by_clock)
    results["meta"] = shares
    results["timers_s_per_step"] = {
        n: {k: median(x["timers_s_per_step"].get(k, 0.0) for x in rs) for k in TIMERS}
        for n, rs in runs.items() if rs and "timers_s_per_step" in rs[0]
    }  # fmt: skip
    results["compute_per_step"] = {
        n: {**{k: median(x["compute_per_step"][k] for x in rs) for k in rs[0]["compute_per_step"]},
            "params": rs[0]["params"], "subset_size_mean": rs[0].get("subset_size_mean")}
        for n, rs in runs.items()
    }  # fmt: skip
    results["memory"] = _memory_record(summary, memory)
    headline = _headline(spec, timing, clock, summary, by_clock["wall"], shares, results["memory"])
    results["targets_met"] = {k.removesuffix("_max"): _met(headline[k.removesuffix("_max")], v)
                              for k, v in TARGETS.items()}  # fmt: skip
    headline["targets_met"] = results["targets_met"]
    results["headline"] = headline
    return results


def _run_children(
    spec: dict[str, Any], *, memory_jobs: int, overlap: bool, progress: bool
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The timing process, then one memory process per configuration of ``spec["memory_configs"]``
    (``memory_jobs`` at a time); returns (timing, memory per configuration).

    ``overlap``: the memory processes start as soon as the data is ready, beside the timing process;
    off by default (on a 2-CPU machine three busy processes skew even the CPU-time clock)."""
    tmp = Path(spec["tmp"])
    env = _child_env(spec["torch_threads"])

    def timing_job() -> tuple[dict[str, Any], float]:
        result = tmp / "timing.result.json"
        argv_ = ["_child", "timing", str(tmp / "timing-spec.json"), str(result)]
        return run_child("benchmarks.trainer", argv_, result, tmp / "timing.log", timeout_s=3600, env=env)

    def memory_job(name: str) -> tuple[str, dict[str, Any]]:
        res = tmp / f"memory-{name}.result.json"
        argv_ = ["_child", "memory", spec["spec_out"], name, str(res)]
        data, w = run_child("benchmarks.trainer", argv_, res, tmp / f"memory-{name}.log", timeout_s=1800, env=env)
        data["process_wall_s"] = w
        return name, data

    with ExitStack() as stack:
        bar_ctx = stack.enter_context(make_progress()) if progress else None
        bar = bar_ctx.add_task("trainer benchmark", total=2) if bar_ctx else None

        def say(advance: bool, text: str) -> None:
            if bar_ctx is not None:
                if advance:
                    bar_ctx.advance(bar)
                bar_ctx.update(bar, description=text)

        say(False, f"timing: {len(spec['configs'])} configurations x {spec['repeats']} rounds, interleaved, "
            f"+ {len(spec.get('once', []))} once, one process" + (" (+ memory processes)" if overlap else ""))  # fmt: skip
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1 + max(1, memory_jobs)))
        timing_future = pool.submit(timing_job)
        memory_futures = []
        if overlap:
            while not Path(spec["spec_out"]).exists() and not timing_future.done():
                time.sleep(0.2)
            if Path(spec["spec_out"]).exists():
                memory_futures = [pool.submit(memory_job, name) for name in spec["memory_configs"]]
        timing, wall = timing_future.result()
        timing["process_wall_s"] = wall
        say(True, f"memory: {len(spec['memory_configs'])} configurations, a fresh process each")
        if not overlap:
            with ThreadPoolExecutor(max_workers=max(1, memory_jobs)) as mem_pool:
                memory = dict(mem_pool.map(memory_job, spec["memory_configs"]))
        else:
            memory = dict(f.result() for f in memory_futures)
        say(True, "done")
    return timing, memory


def _child_env(threads: int) -> dict[str, str]:
    return {**QUIET_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


# ====================================================================== the results file
def _setup_record(spec: dict[str, Any], timing: dict[str, Any], clock: str, overlap: bool) -> dict[str, Any]:
    """``results["setup"]``: the student, device, batch, optimizer, data and the method, in words."""
    return {
        "student": timing["prepare"]["student_described"],
        "device": timing["device"], "device_name": timing["device_name"], "torch_threads": timing["torch_threads"],
        "precision": "bf16 autocast" if timing["device"] == "cuda" else "fp32",
        "gradient_checkpointing": spec["gradient_checkpointing"], "batch_size_questions": spec["batch_size"],
        "candidate_rows_per_step": spec["batch_size"] * len(PERSPECTIVES),
        "gradient_accumulation_steps": 1, "learning_rate": LEARNING_RATE, "optimizer": "TRL default",
        "max_length": spec["max_length"], "sampling": "sequential (same rows per step for every trainer)",
        "meta_warmup_steps": META_WARMUP_STEPS, "warmup_steps": spec["warmup_steps"],
        "measured_steps": spec["measured_steps"], "rounds": spec["repeats"],
        "data": timing["data"], "data_report": timing["data_report"],
        "sft": "trl.SFTTrainer, every candidate of every training question as its own prompt/completion row (token "
               f"ids + completion_mask, completion_only_loss), {len(PERSPECTIVES)} x batch_size rows per step, "
               "a question's rows consecutive: the same rows per step as `all`",
        "clock": clock,
        "method": "seconds/step = (t[W+M] - t[W]) / M from on_step_end timestamps (callback added after MIND's, "
                  "device synchronised on CUDA), t = process CPU time (clock 'cpu') or perf_counter ('wall'), "
                  "median over interleaved rounds; meta_share = timers around Mind.plan, Mind.end_of_step and "
                  "distill.trainer.answer_consistency over the same measured window / the run's seconds; memory = "
                  "VmHWM at the end of training (CUDA: torch max_memory_allocated) of a fresh process per "
                  "configuration, raw",
        "memory_processes_overlapped_timing": overlap,
    }  # fmt: skip


def _timing_record(
    timing: dict[str, Any], clock: str, summary: dict[str, Any], by_clock: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``results["timing"]``: seconds per step and ratios on both clocks, per round and per step."""
    runs, cpu, wall = timing["runs"], by_clock["cpu"], by_clock["wall"]
    return {
        "clock": clock,
        "s_per_step": summary["s_per_step"],
        "ratios": summary["ratios"],
        "over_all": summary["over_all"],
        "over_sft": summary["over_sft"],
        "cpu_s_per_step": cpu["s_per_step"],
        "wall_s_per_step": wall["s_per_step"],
        "cpu_ratios": cpu["ratios"],
        "wall_ratios": wall["ratios"],
        "cpu_over_wall": {n: cpu["s_per_step"][n] / wall["s_per_step"][n] for n in runs},
        "per_round_cpu_s_per_step": {n: [x["cpu_s_per_step"] for x in rs] for n, rs in runs.items()},
        "per_round_wall_s_per_step": {n: [x["wall_s_per_step"] for x in rs] for n, rs in runs.items()},
        "median_step_cpu_s": {n: median(x["median_step_cpu_s"] for x in rs) for n, rs in runs.items()},
        "median_step_wall_s": {n: median(x["median_step_s"] for x in rs) for n, rs in runs.items()},
        "max_step_wall_s": {n: max(x["max_step_s"] for x in rs) for n, rs in runs.items()},
        "paired_ratios_per_round": summary["paired_ratios_per_round"],
        "orders": timing["orders"],
        "process_warmup_s": timing["process_warmup_s"],
        "process_wall_s": timing["process_wall_s"],
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }  # fmt: skip


def _memory_record(summary: dict[str, Any], memory: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``results["memory"]``: raw peaks and their ratios, each memory process's figures, the increase over
    the RSS just before ``train()``."""
    return {
        "peak_mb": summary["peak_mb"],
        "mem_mind_over_all": summary["mem_mind_over_all"],
        "mem_mind_separate_over_all": summary["mem_mind_separate_over_all"],
        "mem_all_over_sft": summary["mem_all_over_sft"],
        "per_config": {n: {k: m.get(k) for k in ("peak_rss_mb", "vm_hwm_mb_before_train", "vm_rss_mb_before_train",
                                                 "vm_hwm_mb_after_train", "cuda_max_allocated_mb", "train_s",
                                                 "process_wall_s", "steps")}
                       for n, m in memory.items()},
        "increase_over_rss_before_train_mb": {
            n: m["peak_rss_mb"] - m["vm_rss_mb_before_train"] for n, m in memory.items()
            if m.get("peak_rss_mb") and m.get("vm_rss_mb_before_train")
        },
    }  # fmt: skip


def _headline(
    spec: dict[str, Any], timing: dict[str, Any], clock: str, summary: dict[str, Any], wall: dict[str, Any],
    shares: dict[str, Any], memory: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The headline figures (``targets_met`` still None: set by the caller)."""
    r = summary["ratios"]
    inc = memory["increase_over_rss_before_train_mb"]
    return {
        "mind_over_all": r["mind_over_all"],
        "mem_mind_over_all": summary["mem_mind_over_all"],
        "meta_share": shares.get("mind", {}).get("meta_share"),
        "all_over_sft": r["all_over_sft"],
        "mind_separate_over_all": r["mind_separate_over_all"],
        "meta_share_separate": shares.get("mind_separate", {}).get("meta_share"),
        "mem_increase_mind_over_all": inc["mind"] / inc["all"] if inc.get("mind") and inc.get("all") else None,
        "s_per_step": summary["s_per_step"],
        "wall_ratios": {k: wall["ratios"][k] for k in ("mind_over_all", "mind_separate_over_all", "all_over_sft")},
        "peak_mb": summary["peak_mb"],
        "clock": clock,
        "targets_met": None,
        "batch_size": spec["batch_size"],
        "meta_warmup_steps": META_WARMUP_STEPS,
        "device": timing["device"],
    }  # fmt: skip


def _met(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:  # python -m benchmarks.trainer _child timing|memory ...
        if argv[1] == "timing":
            child_timing(argv[2], argv[3])
        else:
            child_memory(argv[2], argv[3], argv[4])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trainer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (about 1.5 minutes)")
    parser.add_argument("--repeats", type=int, help="interleaved timing rounds (default: 3, quick 1)")
    parser.add_argument("--batch-size", type=int, help="questions per optimizer step (default: 8, quick 4)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads in every process (default 1)")
    parser.add_argument(
        "--clock", choices=("auto", "cpu", "wall"), default="auto",
        help="seconds of the headline ratios: process CPU time or wall time (auto: CPU time on a CPU device, "
        "robust to other load on a shared machine; wall time on CUDA). Both are always reported.",
    )  # fmt: skip
    parser.add_argument("--memory-jobs", type=int, default=2, help="memory processes run at once (default 2)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (data, student, logs)")
    args = parser.parse_args(argv)
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.repeats:
        size["repeats"] = args.repeats
    if args.batch_size:
        size["batch_size"] = args.batch_size
    t_start = time.perf_counter()
    results = run_benchmark(
        size, torch_threads=args.torch_threads, clock=args.clock, memory_jobs=args.memory_jobs,
        keep_tmp=args.keep_tmp,
    )  # fmt: skip
    results["quick"] = args.quick
    headline = results["headline"]
    headline["quick"] = args.quick
    return publish("trainer", results, headline, quick=args.quick, t_start=t_start)


if __name__ == "__main__":
    sys.exit(main())
