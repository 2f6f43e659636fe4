"""What a training run prints: a compact line per logging step instead of transformers' dict of every
logged metric (MIND logs about 40 per step: per-view subset shares, weights, scores and losses).

The line has the step, the loss, the learning rate and, when the strategy logs them, the subset size
and the MetaNet's agreement with the loss ranking; every metric still goes to ``--report_to``
(TensorBoard ...), ``trainer_state.json`` and ``mind_summary.json``. With a progress bar
(``--disable_tqdm false``) the line is written above the bar, else printed on its own.
"""

from __future__ import annotations

from typing import Any

from transformers.trainer_callback import PrinterCallback, ProgressCallback

#: (logged key, label, format) of the compact line, in order; absent keys are left out
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("loss", "loss", "{:.4f}"),
    ("learning_rate", "lr", "{:.2e}"),
    ("grad_norm", "grad", "{:.2f}"),
    ("mind/subset_size", "subset", "{:.2f}"),
    ("mind/meta_top1", "meta top1", "{:.2f}"),
    ("mind/meta_spearman", "meta rho", "{:.2f}"),
    ("mind/consistency", "cons", "{:.4f}"),
    ("epoch", "epoch", "{:.2f}"),
)
#: the summary transformers logs once at the end of training
FINAL_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("train_loss", "train loss", "{:.4f}"),
    ("train_runtime", "runtime", "{:.1f} s"),
    ("train_steps_per_second", "steps/s", "{:.2f}"),
)


def compact_line(logs: dict[str, Any], step: int, max_steps: int) -> str:
    """``step 50/400 | loss 0.4120 | lr 1.20e-03 | ...`` from one logging step's ``logs``."""
    fields = FINAL_FIELDS if "train_runtime" in logs else FIELDS
    parts = [f"step {step}/{max_steps}"]
    for key, label, fmt in fields:
        value = logs.get(key)
        if isinstance(value, int | float):
            parts.append(f"{label} {fmt.format(value)}")
    return " | ".join(parts)


class CompactPrinter(PrinterCallback):
    """``PrinterCallback`` (no progress bar) with the compact line."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs:
            print(compact_line(logs, state.global_step, state.max_steps), flush=True)


class CompactProgress(ProgressCallback):
    """``ProgressCallback`` (a progress bar) with the compact line written above the bar."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(compact_line(logs, state.global_step, state.max_steps))


def use_compact_logs(trainer: Any) -> None:
    """Swap the trainer's printing callback (either kind) for its compact version."""
    for default, compact in ((ProgressCallback, CompactProgress), (PrinterCallback, CompactPrinter)):
        if trainer.pop_callback(default) is not None:
            trainer.add_callback(compact)
