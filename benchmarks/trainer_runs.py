"""The trainer benchmark's runs, inside its child processes (``python -m benchmarks.trainer _child ...``).

The configurations and their fixed settings, the set-up every run shares (rationale shards and the
student, loaded once per process), the timers and the per-step clock, one timed run, and the two
children: the timing process (every configuration interleaved, timers installed) and a memory
process (one configuration, peak memory). ``benchmarks/trainer.py`` starts them and summarises.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import REPO_ROOT, median, report_at_exit, vm_hwm_mb

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


# ====================================================================== set-up
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
