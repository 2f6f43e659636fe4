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
  the MetaNet's warm-up (student frozen: no backward) lies inside the discarded warm-up steps, so
  the measured ``mind`` steps are steady-state steps (the default warm-up, one epoch, is cheaper
  per step than these: a no-grad forward and no student update).

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._common import (
    QUIET_ENV,
    REPO_ROOT,
    machine_info,
    make_progress,
    median,
    publish,
    report_at_exit,
    run_child,
    vm_hwm_mb,
)

PERSPECTIVES = ("stepwise", "equation", "socratic", "verbose", "backward")

#: name -> how to build it: ``trainer: sft`` = TRL's SFTTrainer; otherwise MindConfig fields of a MindTrainer
CONFIGS: dict[str, dict[str, Any]] = {
    "sft": {"trainer": "sft"},
    "golden": {"strategy": "golden"},
    "random": {"strategy": "random"},
    "mcc_kd": {"strategy": "mcc_kd"},
    "all": {"strategy": "all"},
    "lowest_loss": {"strategy": "lowest_loss"},
    "instant": {"strategy": "instant"},
    "mind": {"strategy": "mind"},  # --scoring shared (the default)
    "mind_separate": {"strategy": "mind", "scoring": "separate"},
}

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

#: optimizer steps of the MetaNet's warm-up (student frozen) in the benchmark: inside the discarded warm-up steps
META_WARMUP_STEPS = 1
LEARNING_RATE = 1e-4
SEED = 0

#: timers (label -> (module, class or None, attribute, counted in meta_share, device-synchronised))
TIMERS: dict[str, tuple[str, str | None, str, bool, bool]] = {
    "Mind.plan": ("distill.strategies.mind", "Mind", "plan", True, False),
    "Mind.end_of_step": ("distill.strategies.mind", "Mind", "end_of_step", True, False),
    "answer_consistency": ("distill.trainer", None, "answer_consistency", True, True),
    "MindTrainer.compute_loss": ("distill.trainer", "MindTrainer", "compute_loss", False, False),
    "MindTrainer._score": ("distill.trainer", "MindTrainer", "_score", False, False),
    "MindTrainer.end_of_step": ("distill.trainer", "MindTrainer", "end_of_step", False, False),
}
META_LABELS = [k for k, v in TIMERS.items() if v[3]]


# ====================================================================== set-up (in a child)
def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare(tmp: Path, questions: int) -> dict[str, Any]:
    """Write the rationale shards and find (or build and save) the student; returns the spec."""
    from distill.default_student import default_student_dir
    from distill.student import build_student, build_world_tokenizer
    from pipeline.synthesis import iter_question_shards, load_config, run_shard

    t = time.perf_counter()
    data = tmp / "data"
    cfg = load_config(num_questions=questions, shard_size=100, samples=1, perspectives=PERSPECTIVES, seed=SEED)
    for name, qs in iter_question_shards(cfg):
        run_shard(cfg, data / cfg.run_id(), cfg.run_id(), name, qs)
    data_s = time.perf_counter() - t
    t = time.perf_counter()
    default = default_student_dir(REPO_ROOT / "runs" / "students", seed=0)
    if (default / "config.json").is_file():
        student, described = default, f"embedded default (stage-0 pretrained): {default.relative_to(REPO_ROOT)}"
    else:
        tokenizer = build_world_tokenizer()
        model = build_student(tokenizer, seed=0)
        student = tmp / "student"
        model.save_pretrained(student)
        tokenizer.save_pretrained(student)
        described = (
            f"build_student(build_world_tokenizer()): the default student's architecture before stage-0 "
            f"pretraining ({default.relative_to(REPO_ROOT)} not built yet; training cost is identical)"
        )
    return {"data": str(data), "student": str(student), "student_described": described,
            "data_s": data_s, "student_s": time.perf_counter() - t}  # fmt: skip


class Setup:
    """Tokenizer, candidates and SFT rows, loaded once per process."""

    def __init__(self, spec: dict[str, Any]):
        from distill.config import MindConfig
        from distill.data import held_out_split, load_questions_with_candidates
        from distill.formatting import resolve_style
        from distill.student import load_student

        self.spec = spec
        _, self.tokenizer = load_student(spec["student"])
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        template = MindConfig.answer_template  # the dataclass default, as distill.train passes it
        questions, self.views, self.report = load_questions_with_candidates(
            spec["data"], self.tokenizer, resolve_style(self.tokenizer, "auto"), include_incorrect=True,
            max_length=spec["max_length"], answer_template=template or None,
        )  # fmt: skip
        self.train, _ = held_out_split(questions, 0, SEED)  # as distill.train without validation
        per_question = sorted({len(q.views) for q in self.train})
        assert per_question == [len(PERSPECTIVES)], f"candidates per question: {per_question}"
        # the SFT data: every candidate an independent prompt/completion row, a question's rows
        # consecutive and in the collator's order, so SFT's batch i = the candidate rows of all's batch i
        rows = [(v.samples[0], v.prompt_lens[0]) for q in self.train for v in q.views]
        self.sft_rows = {
            "input_ids": [ids for ids, _ in rows],
            "completion_mask": [[0] * p + [1] * (len(ids) - p) for ids, p in rows],
        }
        lengths = [len(ids) for ids, _ in rows]
        self.data_info = {
            "train_questions": len(self.train), "candidates_per_question": per_question, "views": self.views,
            "sequence_tokens_min_mean_max": [min(lengths), sum(lengths) / len(lengths), max(lengths)],
            "sft_rows": len(rows),
        }  # fmt: skip


def common_args(spec: dict[str, Any], out: Path, steps: int, rows_per_step: int) -> dict[str, Any]:
    cuda = spec["device"] == "cuda"
    return dict(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=rows_per_step,
        gradient_accumulation_steps=1, learning_rate=LEARNING_RATE, seed=SEED, max_length=spec["max_length"],
        gradient_checkpointing=spec["gradient_checkpointing"], bf16=cuda, use_cpu=not cuda,
        report_to=[], save_strategy="no", eval_strategy="no", logging_steps=10**9, disable_tqdm=True,
        dataloader_num_workers=0, train_sampling_strategy="sequential",
    )  # fmt: skip


def make_trainer(name: str, setup: Setup, out: Path, steps: int) -> Any:
    """A fresh model (reloaded from disk: identical weights) and its trainer."""
    from distill.student import load_student

    conf = CONFIGS[name]
    model, _ = load_student(setup.spec["student"])
    b = setup.spec["batch_size"]
    if conf.get("trainer") == "sft":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        sft_args = SFTConfig(**common_args(setup.spec, out, steps, b * len(PERSPECTIVES)), completion_only_loss=True)
        return SFTTrainer(model=model, args=sft_args, train_dataset=Dataset.from_dict(setup.sft_rows),
                          processing_class=setup.tokenizer)  # fmt: skip
    from distill.config import MindConfig
    from distill.data import CandidateStore
    from distill.trainer import MindTrainer

    extra = {"meta_warmup_steps": META_WARMUP_STEPS} if conf["strategy"] == "mind" else {}
    mind_args = MindConfig(**common_args(setup.spec, out, steps, b), **extra, **conf)
    store = CandidateStore(setup.train, len(setup.views), SEED)
    return MindTrainer(model, mind_args, store, setup.views, processing_class=setup.tokenizer)


# ====================================================================== timers and the step clock
def _clock_fn(device: str) -> Callable[[], float]:
    """The timers' clock: process CPU time on CPU (robust to other load), wall time on CUDA."""
    return time.process_time if device == "cpu" else time.perf_counter


class Timers:
    """Seconds and calls inside wrapped functions (installed once per timing process)."""

    def __init__(self, device: str):
        import torch

        self.now = _clock_fn(device)
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def install(self) -> None:
        import importlib

        for label, (module, cls, attr, _, sync) in TIMERS.items():
            owner = importlib.import_module(module)
            if cls is not None:
                owner = getattr(owner, cls)
            setattr(owner, attr, self._wrap(getattr(owner, attr), label, sync))

    def _wrap(self, original: Callable, label: str, sync: bool) -> Callable:
        def wrapper(*a: Any, **k: Any) -> Any:
            if sync:
                self.sync()
            t = self.now()
            try:
                return original(*a, **k)
            finally:
                if sync:
                    self.sync()
                self.totals[label] = self.totals.get(label, 0.0) + self.now() - t
                self.calls[label] = self.calls.get(label, 0) + 1

        return wrapper


def _step_clock(trainer: Any, device: str, warmup: int, timers: Timers | None) -> Any:
    import torch
    from transformers import TrainerCallback

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    mind = getattr(trainer, "mind", None)  # MindTrainer's state (compute account)

    class StepClock(TrainerCallback):
        """Wall time at every step's begin and end, CPU time at its end (added last: after MIND's
        ``end_of_step``); at the end of the last warm-up step, the timers and the compute account
        are reset / snapshotted."""

        def __init__(self) -> None:
            self.begins: list[float] = []
            self.ends: list[float] = []
            self.cpu_ends: list[float] = []
            self.compute_at_warmup: dict[str, int] = {}
            self.subset_sizes: list[float] = []  # mean kept candidates per question, every step

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.begins.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            sync()
            self.ends.append(time.perf_counter())
            self.cpu_ends.append(time.process_time())
            subset = trainer._metrics["train"].get("mind/subset_size") if mind is not None else None
            if subset:  # logged by MindTrainer.end_of_step (cleared by the final log, so read here)
                self.subset_sizes.append(subset[-1])
            if state.global_step == warmup:
                if timers is not None:
                    timers.reset()
                if mind is not None:
                    self.compute_at_warmup = dict(mind.compute)

    return StepClock()


def timed_run(
    name: str, setup: Setup, out: Path, warmup: int, measured: int, timers: Timers | None = None
) -> dict[str, Any]:
    import gc

    gc.collect()
    trainer = make_trainer(name, setup, out, warmup + measured)
    sft_tokens: list[tuple[int, int]] = []
    if CONFIGS[name].get("trainer") == "sft":  # (tokens, completion tokens) of every collated (= trained) batch
        collator = trainer.data_collator

        def counting_collator(features: list) -> Any:
            batch = collator(features)
            sft_tokens.append((int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())))
            return batch

        trainer.data_collator = counting_collator
    clock = _step_clock(trainer, setup.spec["device"], warmup, timers)
    trainer.add_callback(clock)
    if timers is not None:
        timers.reset()
    t = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t
    ends, begins, cpu = clock.ends, clock.begins, clock.cpu_ends
    assert len(ends) == warmup + measured, f"{name}: {len(ends)} steps recorded"
    periods = [b - a for a, b in zip(ends[warmup - 1 : -1], ends[warmup:], strict=True)]
    cpu_periods = [b - a for a, b in zip(cpu[warmup - 1 : -1], cpu[warmup:], strict=True)]
    inner = [e - b for b, e in zip(begins[warmup:], ends[warmup:], strict=True)]
    run: dict[str, Any] = {
        "wall_s_per_step": (ends[-1] - ends[warmup - 1]) / measured,
        "cpu_s_per_step": (cpu[-1] - cpu[warmup - 1]) / measured,
        "median_step_s": median(periods),
        "median_step_cpu_s": median(cpu_periods),
        "max_step_s": max(periods),
        "median_begin_to_end_s": median(inner),
        "train_s": train_s,
        "periods_s": periods,
        "cpu_periods_s": cpu_periods,
    }
    if timers is not None and CONFIGS[name].get("trainer") != "sft":
        run["timers_s_per_step"] = {k: v / measured for k, v in timers.totals.items()}
        run["timer_calls_per_step"] = {k: v / measured for k, v in timers.calls.items()}
        clock_s = run["cpu_s_per_step"] if setup.spec["device"] == "cpu" else run["wall_s_per_step"]
        run["meta_s_per_step"] = sum(run["timers_s_per_step"].get(k, 0.0) for k in META_LABELS)
        run["meta_share"] = run["meta_s_per_step"] / clock_s
    if hasattr(trainer, "mind"):
        summary = trainer.summary()["compute"]
        run["params"] = summary["params"]
        run["compute_per_step"] = {
            k: (trainer.mind.compute[k] - clock.compute_at_warmup.get(k, 0)) / measured
            for k in ("forward_tokens", "backward_tokens", "trained_tokens")
        }
        subset = clock.subset_sizes[warmup:]
        run["subset_size_mean"] = sum(subset) / len(subset) if subset else None
    else:
        window = sft_tokens[warmup : warmup + measured]
        run["params"] = sum(p.numel() for p in trainer.model.parameters())
        run["compute_per_step"] = {"forward_tokens": 0, "backward_tokens": sum(t for t, _ in window) / measured,
                                   "trained_tokens": sum(c for _, c in window) / measured}  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    del trainer
    return run


# ====================================================================== children
def _child_env(threads: int) -> dict[str, str]:
    return {**QUIET_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def child_timing(spec_path: str, result_path: str) -> None:
    """Prepare the data and student, then every configuration interleaved (timers installed)."""
    state: dict[str, Any] = {}
    report_at_exit(result_path, lambda: state)
    spec = json.loads(Path(spec_path).read_text())
    import datasets
    import torch

    from distill.student import set_torch_threads

    datasets.disable_progress_bars()
    set_torch_threads(spec["torch_threads"])
    tmp = Path(spec["tmp"])
    prep = prepare(tmp, spec["questions"])
    spec.update(prep, device=_device())
    Path(spec["spec_out"]).write_text(json.dumps(spec))
    state["prepare"] = prep
    setup = Setup(spec)
    state["data"] = setup.data_info
    state["data_report"] = setup.report.lines()
    timers = Timers(spec["device"])
    timers.install()
    warmup, measured = spec["warmup_steps"], spec["measured_steps"]
    t = time.perf_counter()
    timed_run("random", setup, tmp / "out-warm", 2, 1)  # process warm-up: lazy imports, allocator
    state["process_warmup_s"] = time.perf_counter() - t
    configs = spec["configs"]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    orders = []
    for rep in range(spec["repeats"]):
        order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
        if rep % 2 == 1:
            order = order[::-1]
        orders.append(order)
        for name in order:
            print(f"timing round {rep + 1}/{spec['repeats']}: {name}", file=sys.stderr, flush=True)
            runs[name].append(timed_run(name, setup, tmp / f"out-{name}-{rep}", warmup, measured, timers))
    for name in spec.get("once", []):  # the other strategies: one run each, after the rounds
        print(f"timing (once): {name}", file=sys.stderr, flush=True)
        runs[name] = [timed_run(name, setup, tmp / f"out-{name}-once", warmup, measured, timers)]
    orders.append(spec.get("once", []))
    state["orders"] = orders
    state["runs"] = runs
    state["torch_threads"] = torch.get_num_threads()
    state["device"] = spec["device"]
    state["device_name"] = torch.cuda.get_device_name() if spec["device"] == "cuda" else None


def child_memory(spec_path: str, name: str, result_path: str) -> None:
    """One configuration in this fresh process (no timers): peak memory."""
    state: dict[str, Any] = {"config": name}
    report_at_exit(result_path, lambda: state)
    spec = json.loads(Path(spec_path).read_text())
    import datasets
    import torch

    from distill.student import set_torch_threads

    datasets.disable_progress_bars()
    set_torch_threads(spec["torch_threads"])
    setup = Setup(spec)
    steps = spec["warmup_steps"] + spec["measured_steps"]
    trainer = make_trainer(name, setup, Path(spec["tmp"]) / f"out-mem-{name}", steps)
    cuda = spec["device"] == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    state["vm_hwm_mb_before_train"] = vm_hwm_mb()
    state["vm_rss_mb_before_train"] = _vm_rss_mb()
    t = time.perf_counter()
    trainer.train()
    state["train_s"] = time.perf_counter() - t
    state["steps"] = trainer.state.global_step
    state["vm_hwm_mb_after_train"] = vm_hwm_mb()
    state["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None


def _vm_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


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
    env = _child_env(torch_threads)
    # overlap: the memory processes start as soon as the data is ready, beside the timing process;
    # off by default (on a 2-CPU machine three busy processes skew even the CPU-time clock)
    results: dict[str, Any] = {
        "benchmark": "trainer", "sizes": size, "targets": TARGETS, "machine": machine_info(),
        "code": {p: _file_hash(REPO_ROOT / p) for p in ("distill/trainer.py", "distill/strategies/mind.py",
                                                      "distill/losses.py", "distill/metanet.py", "distill/data.py")},
    }  # fmt: skip
    memory: dict[str, dict[str, Any]] = {}

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

    try:
        with ExitStack() as stack:
            bar_ctx = stack.enter_context(make_progress()) if progress else None
            bar = bar_ctx.add_task("trainer benchmark", total=2) if bar_ctx else None

            def say(advance: bool, text: str) -> None:
                if bar_ctx is not None:
                    if advance:
                        bar_ctx.advance(bar)
                    bar_ctx.update(bar, description=text)

            say(False, f"timing: {len(size['configs'])} configurations x {size['repeats']} rounds, interleaved, "
                f"+ {len(size.get('once', []))} once, one process" + (" (+ memory processes)" if overlap else ""))  # fmt: skip
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=1 + max(1, memory_jobs)))
            timing_future = pool.submit(timing_job)
            memory_futures = []
            if overlap:
                while not Path(spec["spec_out"]).exists() and not timing_future.done():
                    time.sleep(0.2)
                if Path(spec["spec_out"]).exists():
                    memory_futures = [pool.submit(memory_job, name) for name in size["memory_configs"]]
            timing, wall = timing_future.result()
            timing["process_wall_s"] = wall
            say(True, f"memory: {len(size['memory_configs'])} configurations, a fresh process each")
            if not overlap:
                with ThreadPoolExecutor(max_workers=max(1, memory_jobs)) as mem_pool:
                    memory = dict(mem_pool.map(memory_job, size["memory_configs"]))
            else:
                memory = dict(f.result() for f in memory_futures)
            say(True, "done")
    finally:
        if keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    clock = clock if clock != "auto" else ("cpu" if timing["device"] == "cpu" else "wall")
    summary = summarize(timing, memory, clock)
    wall_summary = summarize(timing, memory, "wall")
    cpu_summary = summarize(timing, memory, "cpu")
    s, r = summary["s_per_step"], summary["ratios"]
    runs = timing["runs"]
    shares = meta_shares(runs)
    results["setup"] = {
        "student": timing["prepare"]["student_described"],
        "device": timing["device"], "device_name": timing["device_name"], "torch_threads": timing["torch_threads"],
        "precision": "bf16 autocast" if timing["device"] == "cuda" else "fp32",
        "gradient_checkpointing": spec["gradient_checkpointing"], "batch_size_questions": size["batch_size"],
        "candidate_rows_per_step": size["batch_size"] * len(PERSPECTIVES),
        "gradient_accumulation_steps": 1, "learning_rate": LEARNING_RATE, "optimizer": "TRL default",
        "max_length": spec["max_length"], "sampling": "sequential (same rows per step for every trainer)",
        "meta_warmup_steps": META_WARMUP_STEPS, "warmup_steps": size["warmup_steps"],
        "measured_steps": size["measured_steps"], "rounds": size["repeats"],
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
    results["timing"] = {
        "clock": clock,
        "s_per_step": s,
        "ratios": r,
        "over_all": summary["over_all"],
        "over_sft": summary["over_sft"],
        "cpu_s_per_step": cpu_summary["s_per_step"],
        "wall_s_per_step": wall_summary["s_per_step"],
        "cpu_ratios": cpu_summary["ratios"],
        "wall_ratios": wall_summary["ratios"],
        "cpu_over_wall": {n: cpu_summary["s_per_step"][n] / wall_summary["s_per_step"][n] for n in runs},
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
    results["memory"] = {
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
    inc = results["memory"]["increase_over_rss_before_train_mb"]
    headline = {
        "mind_over_all": r["mind_over_all"],
        "mem_mind_over_all": summary["mem_mind_over_all"],
        "meta_share": shares.get("mind", {}).get("meta_share"),
        "all_over_sft": r["all_over_sft"],
        "mind_separate_over_all": r["mind_separate_over_all"],
        "meta_share_separate": shares.get("mind_separate", {}).get("meta_share"),
        "mem_increase_mind_over_all": inc["mind"] / inc["all"] if inc.get("mind") and inc.get("all") else None,
        "s_per_step": s,
        "wall_ratios": {k: wall_summary["ratios"][k]
                        for k in ("mind_over_all", "mind_separate_over_all", "all_over_sft")},
        "peak_mb": summary["peak_mb"],
        "clock": clock,
        "targets_met": None,
        "batch_size": size["batch_size"],
        "meta_warmup_steps": META_WARMUP_STEPS,
        "device": timing["device"],
    }  # fmt: skip

    def met(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    results["targets_met"] = {k.removesuffix("_max"): met(headline[k.removesuffix("_max")], v)
                              for k, v in TARGETS.items()}  # fmt: skip
    headline["targets_met"] = results["targets_met"]
    results["headline"] = headline
    return results


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
