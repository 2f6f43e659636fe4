"""Trainer benchmark: seconds per optimizer step and peak memory of the MIND strategies vs TRL's SFT.

    python -m benchmarks.trainer [--quick] [--keep-tmp] [--repeats N] [--batch-size B]

Run from the repository root. Progress goes to stderr; the full numbers go to
``benchmarks/results/trainer.json`` (``trainer.quick.json`` with ``--quick``, under a minute);
the last line of stdout is one JSON object with the headline figures.

Set-up (identical for every configuration):

- student: the embedded default (``distill.student.ensure_default_student``'s folder under
  ``runs/students`` when it has been built; otherwise ``build_student(build_world_tokenizer())``,
  the same tiny Llama and world tokenizer before stage-0 pretraining: training cost is identical),
  saved once and reloaded fresh for every run (same weights);
- data: synthetic-world rationale shards written by ``pipeline.synthesis.run_shard`` with 5
  perspectives (stepwise, equation, socratic, verbose, backward), one sample each, so every
  question has exactly 5 candidates (``include_incorrect``: verification does not thin them);
  the probe set is ``held_out_split``'s (``probe_questions``, default 16, x 5 views);
- same batch size (questions per step), seed, learning rate, optimizer (TRL's default),
  ``max_length``, ``gradient_checkpointing`` (TRL's default, on), precision (fp32 on CPU, bf16
  on CUDA), torch threads (``--torch-threads``, default 1); no logging (``logging_steps`` huge,
  ``report_to`` none), no saving (``save_strategy`` no), no evaluation, no progress bar.

Timing: one fresh process runs every configuration with a fresh model per run, interleaved
(``repeats`` rounds, the order rotated and reversed between rounds). A ``TrainerCallback`` added
last (after the MIND callback, so ``end_of_step``'s statistics/probe/TA work falls inside the step)
reads the clocks at every ``on_step_end`` (after a device synchronise on CUDA); the seconds per
optimizer step of a run are ``(t[W+M] - t[W]) / M`` over ``M`` steps after ``W`` warm-up steps,
i.e. the whole loop (data loading and collation included). ``M`` is a multiple of ``probe_every``
(10, the default) so MIND's probe is amortised as in real use. A configuration's figure is the
median over rounds; ratios divide those medians (paired per-round ratios are in the results file).
Two clocks are always recorded: ``time.process_time`` (CPU seconds of the process; with one torch
thread and no data-loader workers this is the step's compute, and it hardly moves when other
processes share the machine) and ``time.perf_counter`` (wall). The headline uses ``--clock``:
``auto`` = CPU time on a CPU device, wall time on CUDA (where CPU time means nothing).

Memory: every configuration again in its own fresh process (same steps), peak RSS = ``VmHWM``
from ``/proc`` at the end of training (CUDA: ``torch.cuda.max_memory_allocated``). Raw peaks,
nothing subtracted (the results file also gives the RSS just before ``train()`` and the increase
over it). The same processes count tokens per step (trained rows, scored rows, collated rows).

Headline keys (targets from the issue): ``mind_over_random`` (mind, inertia feedback, probe
every 10 steps; <= 1.3), ``fresh_over_random`` (mind with ``feedback=fresh``; <= 3.0),
``fresh_over_all`` (<= 0.6), ``mem_mind_over_random`` (raw peak ratio; <= 1.15),
``random_over_sft`` (MIND's ``random`` strategy over TRL's own ``SFTTrainer`` on a
prompt/completion dataset holding, per question, the candidate ``random`` picks at step 0, same
token ids; <= 1.1), plus seconds per step of every configuration. The full run also breaks the
MIND step down (light wrappers around the trainer's methods) and profiles it (cProfile).

Sizes: full = 8 questions per step (40 candidates), 5 warm-up + 20 measured steps, 3 rounds, all
strategies (plus ``mind_no_probe``, ``probe_every=0``, to isolate the probe); quick = 4 questions
per step, 2 + 10 steps, one round, sft/random/mind/mind_fresh/all, memory of random and mind only
(their processes start beside the timing process). The probe's cost per step is fixed (16 x 5
sequences every 10 steps by default) while the training cost grows with the batch, so ``mind_over_random``
falls as the batch grows: quick and full figures are not comparable.
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

from benchmarks._common import (
    REPO_ROOT,
    QUIET_ENV,
    machine_info,
    make_progress,
    median,
    profile_cumulative,
    profile_rows,
    report_at_exit,
    run_child,
    vm_hwm_mb,
    publish,
)

PERSPECTIVES = ("stepwise", "equation", "socratic", "verbose", "backward")

#: name -> how to build it: ``trainer: sft`` = TRL's SFTTrainer; otherwise MindConfig fields of a MindTrainer
CONFIGS: dict[str, dict[str, Any]] = {
    "sft": {"trainer": "sft"},
    "golden": {"strategy": "golden"},
    "random": {"strategy": "random"},
    "all": {"strategy": "all"},
    "lowest_loss": {"strategy": "lowest_loss"},
    "inertia": {"strategy": "inertia"},
    "mind": {"strategy": "mind"},
    "mind_no_probe": {"strategy": "mind", "probe_every": 0},
    "mind_fresh": {"strategy": "mind", "feedback": "fresh"},
}

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "questions": 400, "batch_size": 8, "warmup_steps": 5, "measured_steps": 20, "repeats": 3,
        "configs": list(CONFIGS), "memory_configs": list(CONFIGS), "breakdown": ["random", "mind", "mind_fresh"],
        "profile": ["random", "mind"],
    },
    "quick": {
        "questions": 120, "batch_size": 4, "warmup_steps": 2, "measured_steps": 10, "repeats": 1,
        "configs": ["sft", "random", "mind", "mind_fresh", "all"], "memory_configs": ["random", "mind"],
        "breakdown": [], "profile": [],
    },
}  # fmt: skip

TARGETS = {
    "mind_over_random_max": 1.3,
    "mem_mind_over_random_max": 1.15,
    "fresh_over_random_max": 3.0,
    "fresh_over_all_max": 0.6,
    "random_over_sft_max": 1.1,
}

from distill.config import MindConfig  # noqa: E402  (the defaults below)

PROBE_EVERY = MindConfig.probe_every  # the defaults; measured windows are a multiple of probe_every
PROBE_QUESTIONS = MindConfig.probe_questions
LEARNING_RATE = 1e-4
SEED = 0


# ====================================================================== set-up (in a child)
def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare(tmp: Path, questions: int) -> dict[str, Any]:
    """Write the rationale shards and find (or build and save) the student; returns the spec."""
    from distill.student import build_student, build_world_tokenizer, default_student_dir
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
    """Tokenizer, candidates, probe and SFT rows, loaded once per process."""

    def __init__(self, spec: dict[str, Any]):
        from distill.data import held_out_split, load_questions_with_candidates
        from distill.student import load_student
        from distill.ta import pick_uniform

        import torch

        self.spec = spec
        _, self.tokenizer = load_student(spec["student"])
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        questions, self.views, self.report = load_questions_with_candidates(
            spec["data"], self.tokenizer, "plain", include_incorrect=True, max_length=spec["max_length"]
        )
        self.train, self.probe, _ = held_out_split(questions, PROBE_QUESTIONS, 0, SEED)
        # the SFT data: per question the candidate `random` picks at step 0, as prompt/completion token ids
        groups = torch.tensor([i for i, q in enumerate(self.train) for _ in q.views])
        picked = pick_uniform(groups, len(self.train), [q.question_id for q in self.train], SEED, 0, 1)
        cands = [(v.samples[0], v.prompt_lens[0]) for q in self.train for v in q.views]
        chosen = [cands[i] for i in picked.nonzero().flatten().tolist()]
        self.sft_rows = {
            "input_ids": [ids for ids, _ in chosen],
            "completion_mask": [[0] * p + [1] * (len(ids) - p) for ids, p in chosen],
        }
        lengths = [len(v.samples[0]) for q in self.train for v in q.views]
        self.data_info = {
            "train_questions": len(self.train), "probe_questions": len(self.probe),
            "candidates_per_question": sorted({len(q.views) for q in self.train}), "views": self.views,
            "sequence_tokens_min_mean_max": [min(lengths), sum(lengths) / len(lengths), max(lengths)],
            "sft_sequence_tokens_mean": sum(map(len, self.sft_rows["input_ids"])) / len(chosen),
        }  # fmt: skip
        shares = {name: 0 for name in self.views}
        flat = [v for q in self.train for v in q.views]
        for i in picked.nonzero().flatten().tolist():
            shares[self.views[flat[i].view]] += 1
        self.data_info["sft_view_shares"] = {k: n / len(chosen) for k, n in shares.items()}


def common_args(spec: dict[str, Any], out: Path, steps: int) -> dict[str, Any]:
    cuda = spec["device"] == "cuda"
    return dict(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1, learning_rate=LEARNING_RATE, seed=SEED, max_length=spec["max_length"],
        gradient_checkpointing=spec["gradient_checkpointing"], bf16=cuda, use_cpu=not cuda,
        report_to=[], save_strategy="no", eval_strategy="no", logging_steps=10**9, disable_tqdm=True,
        dataloader_num_workers=0,
    )  # fmt: skip


def make_trainer(name: str, setup: Setup, out: Path, steps: int) -> Any:
    """A fresh model (reloaded from disk: identical weights) and its trainer."""
    from distill.student import load_student

    conf = CONFIGS[name]
    model, _ = load_student(setup.spec["student"])
    args = common_args(setup.spec, out, steps)
    if conf.get("trainer") == "sft":
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        sft_args = SFTConfig(**args, completion_only_loss=True)
        return SFTTrainer(model=model, args=sft_args, train_dataset=Dataset.from_dict(setup.sft_rows),
                          processing_class=setup.tokenizer)  # fmt: skip
    from distill.config import MindConfig
    from distill.data import CandidateStore
    from distill.trainer import MindTrainer

    mind_args = MindConfig(**args, **{"probe_every": PROBE_EVERY, **conf})  # CONFIGS values: MindConfig fields
    store = CandidateStore(setup.train, len(setup.views), SEED)
    return MindTrainer(model, mind_args, store, setup.views, setup.probe, processing_class=setup.tokenizer)


def _step_clock(device: str) -> Any:
    import torch
    from transformers import TrainerCallback

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    class StepClock(TrainerCallback):
        """Wall time at every step's begin and end, CPU time at its end (added last: after MIND's
        ``end_of_step``)."""

        def __init__(self) -> None:
            self.begins: list[float] = []
            self.ends: list[float] = []
            self.cpu_ends: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.begins.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            sync()
            self.ends.append(time.perf_counter())
            self.cpu_ends.append(time.process_time())

    return StepClock()


def timed_run(name: str, setup: Setup, out: Path, warmup: int, measured: int) -> dict[str, Any]:
    import gc

    gc.collect()
    trainer = make_trainer(name, setup, out, warmup + measured)
    clock = _step_clock(setup.spec["device"])
    trainer.add_callback(clock)
    t = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t
    ends, begins, cpu = clock.ends, clock.begins, clock.cpu_ends
    periods = [b - a for a, b in zip(ends[warmup - 1 : -1], ends[warmup:], strict=True)]
    cpu_periods = [b - a for a, b in zip(cpu[warmup - 1 : -1], cpu[warmup:], strict=True)]
    inner = [e - b for b, e in zip(begins[warmup:], ends[warmup:], strict=True)]
    assert len(ends) == warmup + measured, f"{name}: {len(ends)} steps recorded"
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s_per_step": (ends[-1] - ends[warmup - 1]) / measured,
        "cpu_s_per_step": (cpu[-1] - cpu[warmup - 1]) / measured,
        "median_step_s": median(periods),
        "median_step_cpu_s": median(cpu_periods),
        "cpu_periods_s": cpu_periods,
        "max_step_s": max(periods),
        "median_begin_to_end_s": median(inner),
        "train_s": train_s,
        "periods_s": periods,
    }


# ====================================================================== step breakdown and profile
def _clock_fn(device: str) -> Any:
    """The breakdown's clock: process CPU time on CPU (robust to other load), wall time on CUDA."""
    return time.process_time if device == "cpu" else time.perf_counter


def _wrap(owner: Any, attr: str, label: str, totals: dict[str, float], counts: dict[str, int], now: Any) -> Any:
    original = getattr(owner, attr)

    def wrapper(*a: Any, **k: Any) -> Any:
        t = now()
        try:
            return original(*a, **k)
        finally:
            totals[label] = totals.get(label, 0.0) + now() - t
            counts[label] = counts.get(label, 0) + 1

    setattr(owner, attr, wrapper)
    return original


def breakdown_run(name: str, setup: Setup, out: Path, warmup: int, measured: int) -> dict[str, Any]:
    """Inclusive seconds per measured step inside the MIND trainer's methods (light wrappers).

    Nesting: ``training_step`` > ``compute_loss`` > {``_choose`` > {``_score_rows`` (fresh),
    ``sample_picks``/``pick_uniform``, ``build_features``, ``TA forward``}, ``sequence_nll (train)``};
    ``end_of_step`` > {``InertiaStats.update``, ``_run_probe`` > ``_update_ta``}. ``sequence_nll``
    is split by grad mode (train forward vs no-grad scoring: probe and fresh)."""
    import torch

    import distill.trainer as dt
    from distill.data import CandidateCollator
    from distill.inertia import InertiaStats
    from distill.ta import TeachingAssistant
    from distill.trainer import MindTrainer

    now = _clock_fn(setup.spec["device"])
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    restore: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, label: str) -> None:
        restore.append((owner, attr, getattr(owner, attr)))
        _wrap(owner, attr, label, totals, counts, now)

    nll = dt.sequence_nll

    def sequence_nll(*a: Any, **k: Any) -> Any:
        label = "sequence_nll (train, grad)" if torch.is_grad_enabled() else "sequence_nll (no grad: probe/fresh)"
        t = now()
        try:
            return nll(*a, **k)
        finally:
            totals[label] = totals.get(label, 0.0) + now() - t
            counts[label] = counts.get(label, 0) + 1

    restore.append((dt, "sequence_nll", nll))
    dt.sequence_nll = sequence_nll
    wrap(CandidateCollator, "__call__", "collator")
    wrap(MindTrainer, "training_step", "training_step")
    for attr in ("compute_loss", "_choose", "_score_rows", "end_of_step", "_run_probe", "_update_ta"):
        wrap(MindTrainer, attr, attr)
    for attr in ("sample_picks", "pick_uniform", "build_features", "grouped_log_softmax", "entropy_per_group"):
        wrap(dt, attr, attr)
    wrap(InertiaStats, "update", "InertiaStats.update")
    wrap(InertiaStats, "candidate_loss", "InertiaStats.candidate_loss")
    wrap(TeachingAssistant, "__call__", "TA forward/backward calls")
    optimizer_s = {"t": 0.0}
    try:
        trainer = make_trainer(name, setup, out, warmup + measured)
        clock = _step_clock(setup.spec["device"])
        from transformers import TrainerCallback

        class Reset(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
                if state.global_step == warmup:
                    totals.clear()
                    counts.clear()
                    optimizer_s["t"] = 0.0

            def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: ANN001
                optimizer_s["start"] = now()

            def on_optimizer_step(self, args, state, control, **kwargs):  # noqa: ANN001
                optimizer_s["t"] += now() - optimizer_s.get("start", now())

        trainer.add_callback(clock)
        trainer.add_callback(Reset())
        trainer.train()
    finally:
        for owner, attr, original in reversed(restore):
            setattr(owner, attr, original)
    shutil.rmtree(out, ignore_errors=True)
    ends = clock.cpu_ends if setup.spec["device"] == "cpu" else clock.ends
    step_s = (ends[-1] - ends[warmup - 1]) / measured
    per_step = {k: v / measured for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    per_step["optimizer.step (+ grad clipping)"] = optimizer_s["t"] / measured
    train_step = per_step.get("training_step", 0.0)
    per_step["backward (training_step - compute_loss)"] = train_step - per_step.get("compute_loss", 0.0)
    per_step["outside training_step/optimizer/end_of_step (data loading, collation, loop)"] = (
        step_s - train_step - per_step["optimizer.step (+ grad clipping)"] - per_step.get("end_of_step", 0.0)
    )
    return {
        "clock": "process CPU time" if setup.spec["device"] == "cpu" else "wall (no device sync inside steps)",
        "s_per_step_with_wrappers": step_s,
        "seconds_per_step_inclusive": per_step,
        "calls_per_step": {k: v / measured for k, v in counts.items()},
    }


PROFILE_FUNCTIONS = {
    "compute_loss": ("distill/trainer.py", "compute_loss"),
    "_choose": ("distill/trainer.py", "_choose"),
    "end_of_step": ("distill/trainer.py", "end_of_step"),
    "_run_probe": ("distill/trainer.py", "_run_probe"),
    "_update_ta": ("distill/trainer.py", "_update_ta"),
    "sequence_nll": ("distill/trainer.py", "sequence_nll"),
    "sample_picks": ("distill/ta.py", "sample_picks"),
    "counter_uniform": ("distill/ta.py", "counter_uniform"),
    "stable_hash": ("pipeline/ids.py", "stable_hash"),
    "InertiaStats.update": ("distill/inertia.py", "update"),
    "InertiaStats.candidate_loss": ("distill/inertia.py", "candidate_loss"),
    "build_features": ("distill/ta.py", "build_features"),
    "CandidateCollator.__call__": ("distill/data.py", "__call__"),
    "pad_sequences": ("distill/data.py", "pad_sequences"),
    "training_step": ("trl/trainer/sft_trainer.py", "training_step"),
    "torch backward (run_backward)": ("", "run_backward"),
    "optimizer step": ("torch/optim/optimizer.py", "wrapper"),
}


def profile_run(name: str, setup: Setup, out: Path, warmup: int, measured: int) -> dict[str, Any]:
    """cProfile of the measured steps (after warm-up) of one run."""
    import cProfile

    from transformers import TrainerCallback

    profile = cProfile.Profile()

    class Toggle(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step == warmup:
                profile.enable()

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            profile.disable()

    trainer = make_trainer(name, setup, out, warmup + measured)
    trainer.add_callback(Toggle())
    trainer.train()
    profile.disable()
    shutil.rmtree(out, ignore_errors=True)
    named = profile_cumulative(profile, PROFILE_FUNCTIONS)
    return {
        "measured_steps": measured,
        "named_cumulative_s_per_step": {k: v / measured for k, v in named.items()},
        "top_tottime": profile_rows(profile, "tottime", 25),
        "top_cumtime": profile_rows(profile, "cumtime", 40),
    }


# ====================================================================== children
def _child_env(threads: int) -> dict[str, str]:
    return {**QUIET_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def child_timing(spec_path: str, result_path: str) -> None:
    """Prepare the data and student, then every configuration interleaved; breakdown and profile."""
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
            runs[name].append(timed_run(name, setup, tmp / f"out-{name}-{rep}", warmup, measured))
    state["orders"] = orders
    state["runs"] = runs
    state["breakdown"] = {}
    for name in spec["breakdown"]:
        print(f"breakdown: {name}", file=sys.stderr, flush=True)
        state["breakdown"][name] = breakdown_run(name, setup, tmp / f"out-bd-{name}", warmup, measured)
    state["profile"] = {}
    for name in spec["profile"]:
        print(f"profile: {name}", file=sys.stderr, flush=True)
        state["profile"][name] = profile_run(name, setup, tmp / f"out-prof-{name}", warmup, measured)
    state["torch_threads"] = torch.get_num_threads()
    state["device"] = spec["device"]
    state["device_name"] = torch.cuda.get_device_name() if spec["device"] == "cuda" else None


def child_memory(spec_path: str, name: str, result_path: str) -> None:
    """One configuration in this fresh process: peak memory and token counts."""
    state: dict[str, Any] = {"config": name}
    report_at_exit(result_path, lambda: state)
    spec = json.loads(Path(spec_path).read_text())
    import datasets
    import torch

    import distill.trainer as dt
    from distill.student import set_torch_threads

    datasets.disable_progress_bars()
    set_torch_threads(spec["torch_threads"])
    setup = Setup(spec)
    steps = spec["warmup_steps"] + spec["measured_steps"]
    trainer = make_trainer(name, setup, Path(spec["tmp"]) / f"out-mem-{name}", steps)
    counts = {k: 0 for k in ("collated_rows", "collated_tokens", "collated_padded_tokens",
                             "trained_rows", "trained_tokens", "trained_completion_tokens", "trained_padded_tokens",
                             "scored_rows", "scored_tokens", "scored_padded_tokens")}  # fmt: skip
    collator = trainer.data_collator

    def counting_collator(features: list) -> Any:
        batch = collator(features)
        counts["collated_rows"] += int(batch["input_ids"].shape[0])
        counts["collated_tokens"] += int(batch["attention_mask"].sum())
        counts["collated_padded_tokens"] += int(batch["input_ids"].numel())
        if CONFIGS[name].get("trainer") == "sft":  # SFT trains every collated row
            counts["trained_rows"] += int(batch["input_ids"].shape[0])
            counts["trained_tokens"] += int(batch["attention_mask"].sum())
            counts["trained_completion_tokens"] += int((batch["labels"] != -100).sum())
            counts["trained_padded_tokens"] += int(batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting_collator
    nll = dt.sequence_nll

    def sequence_nll(model: Any, input_ids: Any, attention_mask: Any, labels: Any) -> Any:
        kind = "trained" if torch.is_grad_enabled() else "scored"
        counts[f"{kind}_rows"] += int(input_ids.shape[0])
        counts[f"{kind}_tokens"] += int(attention_mask.sum())
        counts[f"{kind}_padded_tokens"] += int(input_ids.numel())
        if kind == "trained":
            counts["trained_completion_tokens"] += int((labels != -100).sum())
        return nll(model, input_ids, attention_mask, labels)

    dt.sequence_nll = sequence_nll
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
    state["per_step"] = {k: v / steps for k, v in counts.items()}


def _vm_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ====================================================================== main
def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]



def summarize(timing: dict[str, Any], memory: dict[str, dict[str, Any]], clock: str) -> dict[str, Any]:
    runs = timing["runs"]
    key = f"{clock}_s_per_step"
    s = {name: median(r[key] for r in rs) for name, rs in runs.items()}

    def ratio(a: str, b: str) -> float | None:
        return s[a] / s[b] if a in s and b in s else None

    def paired(a: str, b: str) -> list[float]:
        if a not in runs or b not in runs:
            return []
        return [x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True)]

    def peak(name: str) -> float | None:
        m = memory.get(name)
        if not m:
            return None
        return m["cuda_max_allocated_mb"] if m.get("cuda_max_allocated_mb") is not None else m["peak_rss_mb"]

    mem_ratio = peak("mind") / peak("random") if peak("mind") and peak("random") else None
    pairs = {"mind_over_random": ("mind", "random"), "fresh_over_random": ("mind_fresh", "random"),
             "fresh_over_all": ("mind_fresh", "all"), "random_over_sft": ("random", "sft"),
             "mind_no_probe_over_random": ("mind_no_probe", "random"), "all_over_random": ("all", "random"),
             "golden_over_sft": ("golden", "sft"), "inertia_over_random": ("inertia", "random"),
             "lowest_loss_over_random": ("lowest_loss", "random")}  # fmt: skip
    return {
        "s_per_step": s,
        "ratios": {k: ratio(a, b) for k, (a, b) in pairs.items()},
        "paired_ratios_per_round": {k: paired(a, b) for k, (a, b) in pairs.items()},
        "mem_mind_over_random": mem_ratio,
        "peak_mb": {name: peak(name) for name in memory},
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:  # python -m benchmarks.trainer _child timing|memory ...
        if argv[1] == "timing":
            child_timing(argv[2], argv[3])
        else:
            child_memory(argv[2], argv[3], argv[4])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trainer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (under a minute)")
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
    tmp = Path(tempfile.mkdtemp(prefix="mind-bench-trainer-"))
    spec = {
        **size, "tmp": str(tmp), "torch_threads": args.torch_threads, "max_length": 1024,
        "gradient_checkpointing": True, "spec_out": str(tmp / "spec.json"),
    }  # fmt: skip
    (tmp / "timing-spec.json").write_text(json.dumps(spec))
    env = _child_env(args.torch_threads)
    # quick: the memory processes start as soon as the data is ready, beside the timing process (its
    # headline clock is CPU time on a CPU device, which other processes disturb little); full: after it
    overlap = args.quick
    results: dict[str, Any] = {
        "benchmark": "trainer", "quick": args.quick, "sizes": size, "targets": TARGETS,
        "machine": machine_info(),
        "code": {p: _file_hash(REPO_ROOT / p) for p in ("distill/trainer.py", "distill/ta.py", "distill/inertia.py",
                                                      "distill/data.py")},
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
            progress = stack.enter_context(make_progress())
            bar = progress.add_task("trainer benchmark", total=2)
            progress.update(bar, description=f"timing: {len(size['configs'])} configurations x {size['repeats']} "
                            "rounds, interleaved, one process" + (" (+ memory processes)" if overlap else ""))
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=1 + max(1, args.memory_jobs)))
            timing_future = pool.submit(timing_job)
            memory_futures = []
            if overlap:
                while not Path(spec["spec_out"]).exists() and not timing_future.done():
                    time.sleep(0.2)
                if Path(spec["spec_out"]).exists():
                    memory_futures = [pool.submit(memory_job, name) for name in size["memory_configs"]]
            timing, wall = timing_future.result()
            timing["process_wall_s"] = wall
            progress.advance(bar)
            progress.update(bar, description=f"memory: {len(size['memory_configs'])} configurations, a fresh "
                            "process each")  # fmt: skip
            if not overlap:
                with ThreadPoolExecutor(max_workers=max(1, args.memory_jobs)) as mem_pool:
                    memory_futures = [mem_pool.submit(memory_job, name) for name in size["memory_configs"]]
                    memory = dict(f.result() for f in memory_futures)
            else:
                memory = dict(f.result() for f in memory_futures)
            progress.advance(bar)
    finally:
        if args.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    clock = args.clock if args.clock != "auto" else ("cpu" if timing["device"] == "cpu" else "wall")
    summary = summarize(timing, memory, clock)
    wall_summary = summarize(timing, memory, "wall")
    cpu_summary = summarize(timing, memory, "cpu")
    s, r = summary["s_per_step"], summary["ratios"]
    results["setup"] = {
        "student": timing["prepare"]["student_described"],
        "device": timing["device"], "device_name": timing["device_name"], "torch_threads": timing["torch_threads"],
        "precision": "bf16 autocast" if timing["device"] == "cuda" else "fp32",
        "gradient_checkpointing": spec["gradient_checkpointing"], "batch_size_questions": size["batch_size"],
        "gradient_accumulation_steps": 1, "learning_rate": LEARNING_RATE, "optimizer": "TRL default (adamw_torch_fused)",
        "max_length": spec["max_length"], "probe_every": PROBE_EVERY, "probe_questions": PROBE_QUESTIONS,
        "warmup_steps": size["warmup_steps"], "measured_steps": size["measured_steps"], "rounds": size["repeats"],
        "data": timing["data"], "data_report": timing["data_report"],
        "sft": "trl.SFTTrainer, prompt/completion token ids (input_ids + completion_mask, completion_only_loss) of "
               "the candidate `random` picks at step 0 for each training question, same question order",
        "clock": clock,
        "method": "seconds/step = (t[W+M] - t[W]) / M from on_step_end timestamps (callback added after MIND's, "
                  "device synchronised on CUDA), t = process CPU time (clock 'cpu') or perf_counter ('wall'), "
                  "median over interleaved rounds; memory = VmHWM at the end of training (CUDA: torch "
                  "max_memory_allocated) of a fresh process per configuration, raw",
        "memory_processes_overlapped_timing": overlap,
    }  # fmt: skip
    runs = timing["runs"]
    results["timing"] = {
        "clock": clock,
        "s_per_step": s,
        "ratios": r,
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
        "steps_per_s": {n: 1 / v for n, v in s.items()},
        "paired_ratios_per_round": summary["paired_ratios_per_round"],
        "orders": timing["orders"],
        "process_warmup_s": timing["process_warmup_s"],
        "process_wall_s": timing["process_wall_s"],
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }  # fmt: skip
    results["tokens_per_step"] = {name: m["per_step"] for name, m in memory.items()}
    results["memory"] = {
        "peak_mb": summary["peak_mb"],
        "mem_mind_over_random": summary["mem_mind_over_random"],
        "per_config": {n: {k: m.get(k) for k in ("peak_rss_mb", "vm_hwm_mb_before_train", "vm_rss_mb_before_train",
                                                 "vm_hwm_mb_after_train", "cuda_max_allocated_mb", "train_s",
                                                 "process_wall_s", "steps")}
                       for n, m in memory.items()},
        "increase_over_rss_before_train_mb": {
            n: m["peak_rss_mb"] - m["vm_rss_mb_before_train"] for n, m in memory.items()
            if m.get("peak_rss_mb") and m.get("vm_rss_mb_before_train")
        },
    }  # fmt: skip
    results["breakdown"] = timing["breakdown"]
    results["profile"] = timing["profile"]
    headline = {
        "mind_over_random": r["mind_over_random"],
        "fresh_over_random": r["fresh_over_random"],
        "fresh_over_all": r["fresh_over_all"],
        "mem_mind_over_random": summary["mem_mind_over_random"],
        "random_over_sft": r["random_over_sft"],
        "s_per_step": {k: s[k] for k in ("sft", "random", "mind", "mind_fresh", "all") if k in s},
        "wall_ratios": {k: wall_summary["ratios"][k] for k in ("mind_over_random", "fresh_over_random",
                                                               "fresh_over_all", "random_over_sft")},
        "peak_mb_mind": summary["peak_mb"].get("mind"),
        "peak_mb_random": summary["peak_mb"].get("random"),
        "clock": clock,
        "targets_met": None,
        "batch_size": size["batch_size"],
        "device": timing["device"],
        "quick": args.quick,
    }  # fmt: skip
    results["headline"] = headline

    def met(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    results["targets_met"] = {k.removesuffix("_max"): met(headline[k.removesuffix("_max")], v)
                              for k, v in TARGETS.items()}  # fmt: skip
    headline["targets_met"] = results["targets_met"]
    return publish("trainer", results, headline, quick=args.quick, t_start=t_start)


if __name__ == "__main__":
    sys.exit(main())
