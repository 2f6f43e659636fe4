"""Stage 0: pretrain a fresh tiny student on the synthetic world's retention skill (docs/design.md).

The retention skill ("What is the largest of 14, 7 and 22?") is learned *before* distillation,
so that distillation's forgetting can be measured on the ``retention`` split afterwards::

    python -m distill.pretrain --output_dir runs/students/my-tiny [--max_steps 2400] [--seed 0]

Training data: ``retention_train`` questions (disjoint from ``retention``), prompt =
:mod:`distill.formatting`'s plain prompt, completion = the reference teacher's noise-free
rationale in one perspective (default ``stepwise``: one short ``max(a, b) = c`` line per
comparison, then ``The answer is N.``), loss on the completion only. Optionally a share of the
examples are plain ``train`` questions (the prompt text only, loss on every token, no answer), so
the student has seen the world's vocabulary before distillation.

Defaults (tuned on a shared 2-core CPU, one torch thread): the tiny student (0.98M parameters),
batch 8, AdamW at 1.5e-3 (cosine, 100 warmup steps), 2400 steps: about 2 CPU minutes (127 s of
training) and 94-99.6% retention accuracy on 500 ``retention`` questions for seeds 0, 1, 3
(2000 steps: 90-99.6%). Small batches learn most per CPU second (batch 32 for the same CPU time:
~80%); a learning rate of 2e-3 or more is unstable for some seeds (60-80%). The errors left are
digit mix-ups in a comparison (``max(53, 47) = 57``). ``question_lm_share`` defaults to 0:
within this budget every LM example displaces a retention example (one paired run: 81% instead
of 94%), and distillation trains on the same vocabulary right away.

Why plain ``transformers.Trainer`` and not TRL's ``SFTTrainer``: the examples are encoded here
with :func:`distill.formatting.encode_example`, exactly as the distillation trainer and the
evaluation encode them (TRL would re-tokenize prompt and completion by its own rules), and the
completion-only loss is just ``labels = -100`` on the prompt; nothing else of SFTTrainer is
needed for this stage.

Output: a normal Hugging Face checkpoint (``save_pretrained`` model + tokenizer) and
``stage0.json`` with the settings, the world config, the training time and the retention
accuracy (greedy decoding of ``eval_questions`` questions of the ``retention`` split, judged by
:func:`pipeline.verify.verify` with task ``arith``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_schemas.run_files import STAGE0
from pipeline.ids import derive_seed

from .formatting import encode_example, encode_prompt
from .student import (
    SIZES,
    TokenizerSettings,
    build_student,
    build_world_tokenizer,
    greedy_generate,
    set_torch_threads,
)

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.synthetic import WorldConfig

__all__ = ["STAGE0_FILE", "Stage0Settings", "evaluate_retention", "main", "run_stage0"]

STAGE0_FILE = STAGE0
STAGE0_VERSION = 1  # bump when stage 0 changes in a way that changes the trained model

# settings that do not change the trained weights (left out of the default student's hash)
_NOT_FINGERPRINTED = frozenset({"num_threads", "logging_steps", "eval_questions", "eval_batch_size", "eval_steps"})


@dataclass
class Stage0Settings:
    """Stage-0 pretraining settings (command-line flags of ``python -m distill.pretrain``)."""

    size: str = field(default="tiny", metadata={"help": f"student size: {', '.join(SIZES)}"})
    seed: int = field(default=0, metadata={"help": "model init, data order and teacher samples"})
    max_steps: int = field(default=2400, metadata={"help": "optimizer steps"})
    num_questions: int = field(default=4000, metadata={"help": "retention_train questions to learn from"})
    learning_rate: float = field(default=1.5e-3, metadata={"help": "peak learning rate (AdamW)"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "examples per step"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warmup steps"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    perspective: str = field(default="stepwise", metadata={"help": "reference-teacher style of the solutions"})
    question_lm_share: float = field(
        default=0.0, metadata={"help": "share of examples that are plain train-split questions (LM, no answer)"}
    )
    vocab_size: int = field(default=1024, metadata={"help": "world tokenizer vocabulary size"})
    tokenizer_seed: int = field(default=0, metadata={"help": "seed of the world tokenizer's corpus"})
    eval_questions: int = field(default=200, metadata={"help": "retention-split questions for the final accuracy"})
    eval_batch_size: int = field(default=100, metadata={"help": "batch size of the greedy evaluation"})
    eval_steps: int = field(default=0, metadata={"help": "also measure retention every N steps (0: only at the end)"})
    num_threads: int | None = field(
        default=1,
        metadata={"help": "torch intra-op threads (None: torch's default). A tiny model gains little from more, "
                  "and several threads stall badly when another process keeps the CPU busy"},
    )
    logging_steps: int = field(default=200, metadata={"help": "log the loss every N steps"})

    def __post_init__(self) -> None:
        from pipeline.synthetic import PERSPECTIVES

        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; choose one of {', '.join(SIZES)}")
        if self.perspective not in PERSPECTIVES:
            raise ValueError(f"unknown perspective {self.perspective!r}; choose one of {', '.join(PERSPECTIVES)}")
        if not 0.0 <= self.question_lm_share < 1.0:
            raise ValueError("question_lm_share must be in [0, 1)")
        if self.max_steps < 1 or self.num_questions < 1 or self.per_device_train_batch_size < 1:
            raise ValueError("max_steps, num_questions and per_device_train_batch_size must be >= 1")

    def tokenizer_settings(self) -> TokenizerSettings:
        return TokenizerSettings(vocab_size=self.vocab_size)

    def fingerprint_dict(self) -> dict[str, Any]:
        """Everything that determines the trained student (tokenizer settings included)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_FINGERPRINTED}
        data["tokenizer"] = self.tokenizer_settings().to_dict()
        data["stage0_version"] = STAGE0_VERSION
        return data


@dataclass
class Stage0Output:
    """Command-line flags that are not training settings."""

    output_dir: str = field(default="", metadata={"help": "folder for the checkpoint (required)"})
    disable_tqdm: bool = field(default=False, metadata={"help": "no progress bar"})


# ---------------------------------------------------------------- data
class _Examples:
    """A list of ``{"input_ids", "labels"}`` examples (a map-style dataset for the Trainer)."""

    def __init__(self, rows: list[dict[str, list[int]]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


def _build_examples(settings: Stage0Settings, tokenizer: Any, world: WorldConfig) -> _Examples:
    from pipeline.synthetic import NoiseConfig, ReferenceTeacher, iter_problems

    teacher = ReferenceTeacher(NoiseConfig())  # noise-free: stage 0 learns the skill cleanly
    rows: list[dict[str, list[int]]] = []
    for problem in iter_problems(world, "retention_train", 0, settings.num_questions):
        seed = derive_seed("stage0", settings.seed, problem.question_id, settings.perspective)
        rationale = teacher.write(problem, settings.perspective, seed).text
        enc = encode_example(tokenizer, problem.question, rationale, "plain")
        rows.append({"input_ids": enc.input_ids, "labels": [-100] * enc.prompt_len + enc.input_ids[enc.prompt_len :]})
    share = settings.question_lm_share
    if share > 0:
        n_lm = math.ceil(settings.num_questions * share / (1 - share))
        for problem in iter_problems(world, "train", 0, n_lm):
            ids = encode_prompt(tokenizer, problem.question, "plain")
            rows.append({"input_ids": ids, "labels": list(ids)})
    return _Examples(rows)


def _collate(pad_id: int):
    import torch

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


# ---------------------------------------------------------------- evaluation
def evaluate_retention(
    model: Any,
    tokenizer: Any,
    *,
    n: int = 100,
    world: WorldConfig | None = None,
    split: str = "retention",
    batch_size: int = 100,
    max_new_tokens: int = 64,
) -> dict[str, Any]:
    """Greedy accuracy on the first ``n`` questions of ``split``: ``{"accuracy", "n", "correct",
    "examples"}`` (a few predictions for inspection)."""
    from pipeline.synthetic import WorldConfig, iter_problems
    from pipeline.verify import verify

    problems = list(iter_problems(world or WorldConfig(), split, 0, n))
    texts = greedy_generate(
        model, tokenizer, [p.question for p in problems], max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    verdicts = [verify(t, str(p.answer), "arith") for t, p in zip(texts, problems, strict=True)]
    correct = sum(bool(v.is_correct) for v in verdicts)
    examples = [
        {"question": p.question, "gold": str(p.answer), "output": t, "correct": bool(v.is_correct)}
        for p, t, v in list(zip(problems, texts, verdicts, strict=True))[:3]
    ]
    return {"split": split, "n": len(problems), "correct": correct,
            "accuracy": correct / len(problems) if problems else 0.0, "examples": examples}  # fmt: skip


# ---------------------------------------------------------------- training
def _retention_curve_callback(
    settings: Stage0Settings, tokenizer: Any, world: WorldConfig, curve: list[dict[str, Any]], progress: bool
) -> Any:
    """A TrainerCallback measuring retention accuracy every ``settings.eval_steps`` steps."""
    from transformers import TrainerCallback

    class RetentionCurve(TrainerCallback):
        cpu_start = 0.0

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.cpu_start = time.process_time()

        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            if state.global_step % settings.eval_steps == 0 and state.global_step < state.max_steps:
                r = evaluate_retention(
                    model, tokenizer, n=settings.eval_questions, world=world, batch_size=settings.eval_batch_size
                )
                cpu = round(time.process_time() - self.cpu_start, 1)
                curve.append({"step": state.global_step, "accuracy": r["accuracy"], "train_cpu_seconds": cpu})
                if progress:
                    print(f"\nstep {state.global_step}: retention accuracy {r['accuracy']:.1%}", file=sys.stderr)

    return RetentionCurve()


def run_stage0(
    settings: Stage0Settings,
    output_dir: str | os.PathLike[str],
    *,
    world: WorldConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a fresh student (see module doc), save it to ``output_dir`` with ``stage0.json``
    and return the content of ``stage0.json``."""
    import numpy as np
    import torch

    from pipeline.synthetic import WorldConfig

    world = world or WorldConfig()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # run in-process (ensure_default_student) without leaving the caller's threads or RNGs changed
    threads_before = torch.get_num_threads()
    py_state, np_state = random.getstate(), np.random.get_state()
    set_torch_threads(settings.num_threads)
    try:
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
            return _run_stage0(settings, out, world, progress)
    finally:
        torch.set_num_threads(threads_before)
        random.setstate(py_state)
        np.random.set_state(np_state)


class _Clock:
    """Wall-clock and CPU seconds at the phases' boundaries (``stage0.json``'s ``seconds`` and ``cpu_seconds``)."""

    def __init__(self) -> None:
        self.marks: dict[str, tuple[float, float]] = {}
        self.mark("started")

    def mark(self, phase: str) -> None:
        self.marks[phase] = (time.perf_counter(), time.process_time())

    def spans(self, cpu: bool = False) -> dict[str, float]:
        """Seconds of prepare, train, evaluate and in total (CPU seconds with ``cpu``)."""
        t = {phase: both[1 if cpu else 0] for phase, both in self.marks.items()}
        return {
            "prepare": round(t["prepared"] - t["started"], 2),
            "train": round(t["trained"] - t["prepared"], 2),
            "evaluate": round(t["evaluated"] - t["trained"], 2),
            "total": round(t["evaluated"] - t["started"], 2),
        }


def _run_trainer(
    settings: Stage0Settings, model: Any, tokenizer: Any, data: _Examples, world: WorldConfig, progress: bool
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """``(trainer, train result, retention curve)`` of a ``transformers.Trainer`` run over ``data``
    (scratch files in a temporary folder; nothing saved)."""
    import torch
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory(prefix="stage0-trainer-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            max_steps=settings.max_steps,
            per_device_train_batch_size=settings.per_device_train_batch_size,
            learning_rate=settings.learning_rate,
            lr_scheduler_type=settings.lr_scheduler_type,
            warmup_steps=min(settings.warmup_steps, settings.max_steps),
            weight_decay=settings.weight_decay,
            max_grad_norm=settings.max_grad_norm,
            adam_beta2=0.98,
            seed=settings.seed,
            data_seed=settings.seed,
            logging_steps=settings.logging_steps,
            save_strategy="no",
            report_to="none",
            disable_tqdm=not progress,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
        )
        curve: list[dict[str, Any]] = []
        callbacks = []
        if settings.eval_steps > 0:
            callbacks.append(_retention_curve_callback(settings, tokenizer, world, curve, progress))
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            data_collator=_collate(tokenizer.pad_token_id),
            callbacks=callbacks,
        )
        if not progress:
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
        result = trainer.train()
    return trainer, result, curve


def _run_stage0(settings: Stage0Settings, out: Path, world: WorldConfig, progress: bool) -> dict[str, Any]:
    import torch
    import transformers

    clock = _Clock()
    tokenizer = build_world_tokenizer(settings.tokenizer_seed, settings=settings.tokenizer_settings(), world=world)
    model = build_student(tokenizer, settings.size, settings.seed)
    data = _build_examples(settings, tokenizer, world)
    n_params = sum(p.numel() for p in model.parameters())
    clock.mark("prepared")
    if progress:
        print(
            f"stage 0: {settings.size} student ({n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}), "
            f"{len(data)} examples, {settings.max_steps} steps of {settings.per_device_train_batch_size}, "
            f"{torch.get_num_threads()} torch thread(s)",
            file=sys.stderr,
            flush=True,
        )
    trainer, result, curve = _run_trainer(settings, model, tokenizer, data, world, progress)
    clock.mark("trained")

    model = trainer.model
    retention = evaluate_retention(
        model, tokenizer, n=settings.eval_questions, world=world, batch_size=settings.eval_batch_size
    )
    clock.mark("evaluated")

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    report = {
        "stage0_version": STAGE0_VERSION,
        "settings": dataclasses.asdict(settings),
        "fingerprint": settings.fingerprint_dict(),
        "world": world.to_dict(),
        "world_fingerprint": world.fingerprint,
        "num_parameters": n_params,
        "vocab_size": len(tokenizer),
        "num_examples": len(data),
        "train_loss": result.training_loss,
        "final_logged_loss": losses[-1] if losses else None,
        "loss_curve": [
            {"step": h["step"], "loss": round(h["loss"], 4)} for h in trainer.state.log_history if "loss" in h
        ],
        "retention": retention,
        "retention_accuracy": retention["accuracy"],
        "seconds": clock.spans(),
        "cpu_seconds": clock.spans(cpu=True),
        "retention_curve": curve,
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},  # fmt: skip
    }
    (out / STAGE0_FILE).write_text(json.dumps(report, indent=2) + "\n")
    if progress:
        print(
            f"stage 0 done in {report['seconds']['total']:.0f}s (train {report['seconds']['train']:.0f}s): "
            f"retention accuracy {retention['correct']}/{retention['n']} = {retention['accuracy']:.1%} -> {out}",
            file=sys.stderr,
            flush=True,
        )
    return report


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser((Stage0Settings, Stage0Output))
    settings, output = parser.parse_args_into_dataclasses(args=argv)
    if not output.output_dir:
        parser.error("--output_dir is required")
    run_stage0(settings, output.output_dir, progress=not output.disable_tqdm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
