"""Evaluation benchmark: batched greedy decoding of the student against a per-question loop,
and the vectorised decoding loop against the per-row decoding loop it replaced.

    python -m benchmarks.evaluate [--quick] [--torch-threads N] [--clock auto|cpu|wall] [--device D]

Run from the repository root. Progress goes to stderr; the full numbers go to
``benchmarks/results/evaluate.json`` (``evaluate.quick.json`` with ``--quick``, under a minute);
the last line of stdout is one JSON object with the headline figures.

Set-up:

- student: the embedded default (``distill.default_student.default_student_dir``'s folder under
  ``runs/students`` when ``ensure_default_student`` has built it; otherwise
  ``build_student(build_world_tokenizer())``, the same tiny Llama and world tokenizer before
  stage-0 pretraining: same cost per token, but it stops at other places), float32, in eval mode;
- questions: the synthetic world's ``test`` split (``distill.evaluate.load_split_questions``),
  plain prompts as in training, greedy, ``max_new_tokens`` 256 (``distill.evaluate``'s default);
- torch threads: 1 (``--torch-threads``; ``distill.student.set_torch_threads``), as in the tests
  and the trainer benchmark: a million-parameter model gives a second thread little to share, and
  on a busy two-core machine several OpenMP threads stall each other; the CPU-time clock then
  measures exactly the decoding work.

``batched_over_loop`` (headline; target >= 4)
    Seconds of ``distill.evaluate.evaluate_loop`` (one question at a time: the same decoding code
    with batches of one) over seconds of ``evaluate_model`` (batches of ``batch_size`` = 32, its
    default) on the same questions: the median of ``rounds`` (3) batched runs over the median of
    ``loop_rounds`` (2) loop runs, interleaved (a loop run takes 30-40 s of CPU), after a warm-up
    batch at full length.
    The clock (``--clock``): ``auto`` = process CPU time on a CPU device (with one torch thread it
    is the decoding compute, which other processes on the machine hardly move), wall time on CUDA;
    both clocks are always recorded. Every run's predictions (text, token count, finish reason, per
    question) are compared with the first batched run's: ``predictions_identical``.

``vectorised_over_rows`` (target >= 5 on a GPU; recorded on a CPU)
    Seconds of ``evaluate_model(..., vectorised=False)`` -- the same batches decoded by the
    transformers backend's per-row loop, the evaluator's decoding before issue 14 (Python work
    per row per token, two host syncs per step) -- over seconds of ``evaluate_model`` (the
    vectorised loop: tensor bookkeeping, one host sync per step): medians of ``rows_rounds``
    (default ``rounds``) and ``rounds`` runs, interleaved with the others, same clock.

Also recorded: questions and tokens per second of both paths, accuracy and finish reasons (the
pretrained-only default student has not learnt the test task: most of its answers run to
``max_new_tokens``, the slow case), a batch-size sweep of the batched path (full run), and the
same comparison on the ``retention`` split, which the student was pretrained on (short answers
that stop early: the case of a trained student).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from benchmarks._common import (
    REPO_ROOT,
    machine_info,
    make_progress,
    median,
    peak_rss_mb,
    quiet_libraries,
    rate,
    publish,
)

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "split": "test", "questions": 64, "batch_size": 32, "max_new_tokens": 256, "rounds": 3, "loop_rounds": 2,
        "sweep": (8, 16, 64), "extra_splits": {"retention": 64},
    },
    "quick": {
        "split": "test", "questions": 16, "batch_size": 16, "max_new_tokens": 128, "rounds": 1, "loop_rounds": 1,
        "sweep": (), "extra_splits": {},
    },
}  # fmt: skip

TARGETS = {"batched_over_loop": 4.0}
TARGETS_GPU = {"vectorised_over_rows": 5.0}  # checked only when the benchmark runs on CUDA


# ====================================================================== set-up
def load_default_student(device: str = "cpu") -> tuple[Any, Any, str]:
    """The embedded default student if built, else the same architecture untrained; and what it is."""
    from distill.default_student import default_student_dir
    from distill.student import build_student, build_world_tokenizer, load_student

    default = default_student_dir(REPO_ROOT / "runs" / "students", seed=0)
    if (default / "config.json").is_file():
        model, tokenizer = load_student(default, device=device)
        return model, tokenizer, f"embedded default (stage-0 pretrained): {default.relative_to(REPO_ROOT)}"
    tokenizer = build_world_tokenizer()
    model = build_student(tokenizer, seed=0).to(device)
    described = (
        f"build_student(build_world_tokenizer()): the default student's architecture before stage-0 pretraining "
        f"({default.relative_to(REPO_ROOT)} not built yet; same cost per generated token)"
    )
    return model, tokenizer, described


def _key(rows: list[dict[str, Any]]) -> list[tuple]:
    return [(r["question_id"], r["prediction"], r["num_tokens"], r["finish_reason"]) for r in rows]


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """``fn(...)``, its process CPU seconds and wall seconds (CUDA synchronised)."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.process_time() - cpu, time.perf_counter() - wall


# ====================================================================== measurement
def compare(
    model: Any, tokenizer: Any, questions: list[dict[str, Any]], *, batch_size: int, max_new_tokens: int,
    rounds: int, loop_rounds: int | None = None, rows_rounds: int | None = None, sweep: tuple[int, ...] = (),
    step: Any = None, tick: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """``evaluate_model`` (batched) vs ``evaluate_loop`` on ``questions``, and vs the batched
    per-row decoding loop (``vectorised=False``): timings and identity.

    ``rounds`` batched runs, ``loop_rounds`` (default ``rounds``) loop runs and ``rows_rounds``
    (default ``rounds``) per-row-loop runs, interleaved (the order rotates while several remain);
    the loop is the long one, so fewer of its runs suffice."""
    loop_rounds = rounds if loop_rounds is None else loop_rounds
    rows_rounds = rounds if rows_rounds is None else rows_rounds
    from distill.evaluate import evaluate_loop, evaluate_model

    kw = {"max_new_tokens": max_new_tokens, "prompt_style": "plain"}
    # warm-up: allocator (one full batch at full length: the first long run is otherwise slower), kernels, caches
    evaluate_model(model, tokenizer, questions[:batch_size], batch_size=batch_size, **kw)
    evaluate_loop(model, tokenizer, questions[:2], **{**kw, "max_new_tokens": 8})
    step = step or (lambda text: None)
    tick = tick or (lambda: None)
    bench = _Comparison(model, tokenizer, questions, batch_size, kw, step, tick)
    runs, first = bench.interleaved({"batched": rounds, "loop": loop_rounds, "rows": rows_rounds})
    tokens = sum(r["num_tokens"] or 0 for r in first.rows)
    n = len(questions)
    med = {w: {c: median(v) for c, v in runs[w].items()} for w in runs if runs[w]["cpu"]}
    sweep_rows = bench.sweep(sweep, med)
    s = first.summary()
    return {
        "questions": n,
        "split": s["split"],
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        "loop_rounds": loop_rounds,
        "rows_rounds": rows_rounds,
        "generated_tokens": tokens,
        "mean_tokens": s["mean_tokens"],
        "finish_reasons": s["finish_reasons"],
        "accuracy": s["accuracy"],
        "batched_cpu_s": runs["batched"]["cpu"],
        "batched_wall_s": runs["batched"]["wall"],
        "loop_cpu_s": runs["loop"]["cpu"],
        "loop_wall_s": runs["loop"]["wall"],
        "batched_over_loop_cpu": med["loop"]["cpu"] / med["batched"]["cpu"],
        "batched_over_loop_wall": med["loop"]["wall"] / med["batched"]["wall"],
        "rows_cpu_s": runs["rows"]["cpu"],
        "rows_wall_s": runs["rows"]["wall"],
        "vectorised_over_rows_cpu": med["rows"]["cpu"] / med["batched"]["cpu"] if "rows" in med else None,
        "vectorised_over_rows_wall": med["rows"]["wall"] / med["batched"]["wall"] if "rows" in med else None,
        "rows_questions_per_s_wall": rate(n, med["rows"]["wall"]) if "rows" in med else None,
        "batched_questions_per_s_wall": rate(n, med["batched"]["wall"]),
        "loop_questions_per_s_wall": rate(n, med["loop"]["wall"]),
        "batched_tokens_per_s_wall": rate(tokens, med["batched"]["wall"]),
        "loop_tokens_per_s_wall": rate(tokens, med["loop"]["wall"]),
        "cpu_over_wall": {w: med[w]["cpu"] / med[w]["wall"] for w in med},
        "predictions_identical": not bench.mismatches,
        "mismatches": bench.mismatches,
        "compared": "question_id, prediction text, num_tokens, finish_reason of every question, every run "
        "(batched rounds, loop rounds, per-row-loop rounds, batch-size sweep) against the first batched run",
        "batch_size_sweep": sweep_rows,
    }


@dataclass
class _Comparison:
    """The timed runs of :func:`compare` on one question set, and every run's predictions checked
    against the first run's (the first batched run: the rounds start with it)."""

    model: Any
    tokenizer: Any
    questions: list[dict[str, Any]]
    batch_size: int
    kw: dict[str, Any]  # max_new_tokens and prompt_style of every run
    step: Any
    tick: Any
    reference: list[tuple] | None = None
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def decode(self, what: str, batch_size: int | None = None) -> tuple[Any, float, float]:
        """One timed run of ``what`` (``batched``, ``rows`` or ``loop``): the result, CPU and wall seconds."""
        from distill.evaluate import evaluate_loop, evaluate_model

        args = (self.model, self.tokenizer, self.questions)
        size = self.batch_size if batch_size is None else batch_size
        if what == "batched":
            return _timed(evaluate_model, *args, batch_size=size, **self.kw)
        if what == "rows":
            return _timed(evaluate_model, *args, batch_size=size, vectorised=False, **self.kw)
        return _timed(evaluate_loop, *args, **self.kw)

    def check(self, rows: list[dict[str, Any]], what: str) -> None:
        """The first call sets the reference; a later run that differs from it is recorded in ``mismatches``."""
        got = _key(rows)
        if self.reference is None:
            self.reference = got
            return
        bad = [i for i, (a, b) in enumerate(zip(self.reference, got, strict=True)) if a != b]
        if bad:
            questions = [self.reference[i][0] for i in bad[:10]]
            self.mismatches.append({"run": what, "questions": questions, "count": len(bad)})

    def interleaved(self, wanted: dict[str, int]) -> tuple[dict[str, dict[str, list[float]]], Any]:
        """``wanted[kind]`` runs of each kind, interleaved (the order rotates every round): CPU and wall
        seconds per kind, and the first batched run's result."""
        runs: dict[str, dict[str, list[float]]] = {w: {"cpu": [], "wall": []} for w in ("batched", "loop", "rows")}
        first = None
        kinds = ("batched", "loop", "rows")
        for r in range(max(wanted.values())):
            order = kinds[r % 3 :] + kinds[: r % 3]
            for what in order:
                if r >= wanted[what]:
                    continue
                split = self.questions[0].get("split", "")
                self.step(f"{len(self.questions)} {split} questions: {what} (round {r + 1})")
                result, cpu, wall = self.decode(what)
                runs[what]["cpu"].append(cpu)
                runs[what]["wall"].append(wall)
                if first is None and what == "batched":
                    first = result
                self.check(result.rows, f"{what} round {r + 1}")
                self.tick()
        if first is None:  # rounds == 0 cannot happen (argparse); keeps the type checker quiet
            raise RuntimeError("no batched run")
        return runs, first

    def sweep(self, sizes: tuple[int, ...], med: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
        """The batched path at each batch size of ``sizes``, one run each (a trend, not a headline), against
        the median seconds ``med["loop"]`` of the loop."""
        n = len(self.questions)
        rows = []
        for size in sizes:
            self.step(f"{n} questions: batched, batch_size {size}")
            result, cpu, wall = self.decode("batched", size)
            self.check(result.rows, f"batch_size {size}")
            rows.append({
                "batch_size": size, "cpu_s": cpu, "wall_s": wall,
                "over_loop_cpu": med["loop"]["cpu"] / cpu, "over_loop_wall": med["loop"]["wall"] / wall,
                "questions_per_s_wall": rate(n, wall),
            })  # fmt: skip
            self.tick()
        return rows


def run_benchmark(
    size: dict[str, Any], *, torch_threads: int = 1, device: str = "auto", model: Any = None, tokenizer: Any = None,
    step: Any = None, tick: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """Load the student (unless ``model`` and ``tokenizer`` are given) and compare on each split."""
    import torch

    from distill.evaluate import load_split_questions
    from distill.student import set_torch_threads

    previous = torch.get_num_threads()
    set_torch_threads(torch_threads)
    try:
        dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        t = time.perf_counter()
        if model is None:
            model, tokenizer, described = load_default_student(dev)
        else:
            described = "given by the caller"
        load_s = time.perf_counter() - t
        out: dict[str, Any] = {
            "setup": {
                "student": described, "device": dev, "torch_threads": torch.get_num_threads(),
                "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                "parameters": sum(p.numel() for p in model.parameters()), "load_s": load_s,
                "prompt_style": "plain", "decoding": "greedy",
            },
            "splits": {},
        }  # fmt: skip
        plan = {size["split"]: size["questions"], **size.get("extra_splits", {})}
        for i, (split, n) in enumerate(plan.items()):
            questions = load_split_questions(split, num_questions=n)
            out["splits"][split] = compare(
                model, tokenizer, questions, batch_size=size["batch_size"], max_new_tokens=size["max_new_tokens"],
                rounds=size["rounds"], loop_rounds=size.get("loop_rounds"), rows_rounds=size.get("rows_rounds"),
                sweep=size.get("sweep", ()) if i == 0 else (),
                step=step, tick=tick,
            )  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    return out


def plan_steps(size: dict[str, Any]) -> int:
    """How many ``tick`` calls :func:`run_benchmark` makes (for the progress bar)."""
    per_split = size["rounds"] + size.get("loop_rounds", size["rounds"]) + size.get("rows_rounds", size["rounds"])
    return per_split * (1 + len(size.get("extra_splits", {}))) + len(size.get("sweep", ()))


def headline_of(results: dict[str, Any], split: str, clock: str = "auto", quick: bool = False) -> dict[str, Any]:
    """The headline figures of :func:`run_benchmark`'s ``results`` (main split ``split``); sets
    ``results["setup"]["clock"]`` and ``results["targets_met"]``."""
    dev = results["setup"]["device"]
    clock = clock if clock != "auto" else ("cpu" if dev == "cpu" else "wall")
    results["setup"]["clock"] = clock
    splits = results["splits"]
    main_split = splits[split]
    student = results["setup"]["student"]
    headline = {
        "batched_over_loop": main_split[f"batched_over_loop_{clock}"],
        "batched_over_loop_wall": main_split["batched_over_loop_wall"],
        "vectorised_over_rows": main_split[f"vectorised_over_rows_{clock}"],
        "vectorised_over_rows_wall": main_split["vectorised_over_rows_wall"],
        "predictions_identical": all(s["predictions_identical"] for s in splits.values()),
        "batched_questions_per_s": main_split["batched_questions_per_s_wall"],
        "loop_questions_per_s": main_split["loop_questions_per_s_wall"],
        "questions": main_split["questions"],
        "batch_size": main_split["batch_size"],
        "max_new_tokens": main_split["max_new_tokens"],
        "mean_tokens": main_split["mean_tokens"],
        "retention_batched_over_loop": splits["retention"][f"batched_over_loop_{clock}"]
        if "retention" in splits
        else None,
        "torch_threads": results["setup"]["torch_threads"],
        "student": student.split(":")[0].split(" (")[0],
        "device": dev,
        "clock": clock,
        "quick": quick,
    }
    results["headline"] = headline
    results["targets_met"] = {
        "batched_over_loop": headline["batched_over_loop"] >= TARGETS["batched_over_loop"],
        "predictions_identical": headline["predictions_identical"],
    }
    if dev.startswith("cuda") and headline["vectorised_over_rows"] is not None:
        target = TARGETS_GPU["vectorised_over_rows"]
        results["targets_met"]["vectorised_over_rows"] = headline["vectorised_over_rows"] >= target
    return headline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 questions, 128 new tokens, one round (under a minute)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                        help="seconds of the headline ratio: process CPU time or wall time (auto: CPU time on a "
                        "CPU device, wall time on CUDA); both are always recorded")  # fmt: skip
    parser.add_argument("--questions", type=int, help="questions of the main split (default: 64, quick 16)")
    parser.add_argument("--batch-size", type=int, help="batch size of the batched path (default: 32, quick 16)")
    args = parser.parse_args(argv)
    quiet_libraries()
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.questions:
        size["questions"] = args.questions
    if args.batch_size:
        size["batch_size"] = args.batch_size
    t_start = time.perf_counter()
    results: dict[str, Any] = {"benchmark": "evaluate", "quick": args.quick, "sizes": size,
                               "targets": {**TARGETS, **{f"{k} (GPU)": v for k, v in TARGETS_GPU.items()}},
                               "machine": machine_info()}  # fmt: skip
    with ExitStack() as stack:
        progress = stack.enter_context(make_progress())
        bar = progress.add_task("evaluate benchmark", total=plan_steps(size))

        def step(text: str) -> None:
            progress.update(bar, description=text)

        def tick() -> None:
            progress.advance(bar)

        results.update(run_benchmark(size, torch_threads=args.torch_threads, device=args.device, step=step, tick=tick))
        step("done")
    results["peak_rss_mb"] = peak_rss_mb()
    headline = headline_of(results, size["split"], args.clock, args.quick)
    return publish("evaluate", results, headline, quick=args.quick, t_start=t_start)


if __name__ == "__main__":
    sys.exit(main())
