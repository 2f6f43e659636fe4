"""Evaluate a student (docs/design.md): decode it on a question split, verify, report accuracy.

Command line::

    python -m distill.evaluate --model DIR --split test                      # synthetic world
    python -m distill.evaluate --model DIR --split gsm8k-test \\
        --source gsm8k:$MIND_SHARED_DATA/gsm8k/test.jsonl --num-questions 200
    python -m distill.evaluate --model DIR --split ood_steps --n 8 --temperature 0.7 --seed 1
    python -m distill.evaluate --model DIR --suite paper [--gpqa_path gpqa_diamond.csv] [--limit 50]
    python -m distill.evaluate --model DIR --suite paper --backend vllm -B tensor_parallel_size=2
    python -m distill.evaluate --model NAME --suite paper --backend openai:http://127.0.0.1:8000/v1 \\
        --prompt_style chat                                                  # e.g. `vllm serve DIR`

``--split`` names a synthetic-world split (``train``, ``test``, ``ood_steps``,
``ood_template``, ``retention``, ``retention_train``) unless ``--source KIND[:PATH]`` is given:
then that question source (any :func:`pipeline.sources.load_questions` kind -- ``gsm8k``,
``svamp``, ``mentor-kd``, ``math500``, ``commonsense_qa``, ``strategyqa``, ``gpqa``, ``jsonl``,
``parquet``, ``hf-disk`` -- with ``--source-option KEY=VALUE`` for its options, or
``questions:DIR`` for a stored questions run, filtered to ``--split``) is evaluated and
``--split`` is only its label. ``--suite paper`` instead evaluates the paper's suite
(:mod:`distill.suites`: ID MATH500, GSM8K, SVAMP; OOD CommonsenseQA, StrategyQA, and
GPQA-Diamond when ``--gpqa_path`` is given, else listed as skipped), ``--limit N`` questions of
each, and prints one table (accuracy and n per set, ID and OOD averages) and one JSON.

``--backend`` picks the engine (:mod:`distill.eval_backends`): ``transformers`` (default, in
this process), ``vllm`` (offline ``vllm.LLM``; GPU) or ``openai:URL`` (an OpenAI-compatible
server such as ``vllm serve``). Prompts are built exactly as in training, by
:mod:`distill.formatting` (plain ``"Question: ...\\nAnswer:\\n"`` or the tokenizer's chat
template; ``auto`` picks chat when the tokenizer has a template); the student writes until its
EOS token or ``--max_new_tokens``. With ``transformers``, decoding is the ``transformers``
teacher backend's batched, left-padded, vectorised loop (greedy at temperature 0; with ``--n K``
and a temperature, K samples per question, each with its own seed derived from ``--seed``, the
question id and the sample index, so a sample does not depend on the batch); ``vllm`` and
``openai`` get the same seeds per request. Answers are judged by the synthesis verifier,
:func:`pipeline.verify.verify`, with the checker of each question's task.

Output: per-prediction rows in Parquet (``--out``, default ``<model>/eval/<split>.parquet``;
with ``--suite`` the folder ``<model>/eval/<suite>/``, one file per set; a model that is not a
local folder writes under ``runs/eval/<model name>/``; written atomically; columns
:data:`PREDICTION_SCHEMA`), progress on stderr, and as the last line of stdout one JSON object
(also written to ``--output_json``; with ``--suite`` always, default ``<model>/eval/<suite>.json``).
For a split: ``split``, ``n`` (questions), ``samples``, ``k``, ``accuracy``
(mean over all samples; an answer that cannot be judged counts as wrong), ``judged``
(predictions with a verdict), ``pass_at_k`` (a question counts when any of its K samples is
right), ``majority_accuracy`` (majority vote over the K extracted answers), ``errors``,
``finish_reasons``, ``mean_tokens``, ``seconds``, ``model``, ``backend``, ``out``. For a suite:
``members`` (each set's group, source and those figures, or ``status: skipped`` and why),
``id_average``, ``ood_average``, ``average`` (macro means over the evaluated sets).

From Python (e.g. a trainer at the end of training, in-process), with the decoding library
:mod:`distill.eval_decode`, whose public names this module re-exports::

    from distill.evaluate import evaluate_model, evaluate_splits
    result = evaluate_model(model, tokenizer, questions, batch_size=32, max_new_tokens=256)
    results = evaluate_splits(model, tokenizer, ["test", "ood_steps"], num_questions=200)

The model's train/eval mode (of every submodule) is restored afterwards.
Exit status 2: missing model folder, unknown split, suite, source or backend, unreadable questions,
missing ``--gpqa_path`` file, vLLM not installed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.eval_backends import BackendChoice
from distill.eval_decode import (
    Progress,
    build_requests,
    evaluate_backend,
    evaluate_loop,
    evaluate_model,
    evaluate_splits,
)
from distill.eval_records import PREDICTION_SCHEMA, EvalResult, Scores, score_predictions, write_predictions
from distill.formatting import resolve_style
from distill.question_sets import DEFAULT_SYNTHETIC_QUESTIONS, SYNTHETIC_SPLITS, load_split_questions
from pipeline.hub import looks_local
from pipeline.teachers.base import TeacherBackend

# the decoding library (distill.eval_decode), the records (distill.eval_records) and load_split_questions
# (distill.question_sets) are re-exported: evaluation's public names in one place
__all__ = [
    "PREDICTION_SCHEMA",
    "EvalResult",
    "Scores",
    "build_requests",
    "evaluate_backend",
    "evaluate_loop",
    "evaluate_model",
    "evaluate_splits",
    "load_split_questions",
    "main",
    "score_predictions",
    "write_predictions",
]

# ---------------------------------------------------------------- command line
def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=KIND:PATH, got {text!r}")
    return key.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m distill.evaluate",
        description="Decode a student on a question split (--split) or an evaluation suite (--suite paper), "
        "verify the answers, report accuracy (last stdout line: JSON summary) and write per-question "
        "predictions to Parquet.",
    )

    def add(*names: str, **kw: Any) -> None:  # --foo_bar also as --foo-bar (and vice versa)
        swap = {"_": "-", "-": "_"}
        alias = ["--" + "".join(swap.get(c, c) for c in n[2:]) for n in names if n.startswith("--")]
        ap.add_argument(*names, *[a for a in alias if a not in names], **kw)

    add("--model", required=True,
        help="the student: a local folder or a Hugging Face hub id (transformers, vllm: from_pretrained model + "
        "tokenizer; the local cache first, no download with HF_HUB_OFFLINE=1); with --backend openai:URL the model "
        "name the server serves")  # fmt: skip
    add("--split", default=None,
        help=f"synthetic split ({', '.join(SYNTHETIC_SPLITS)}) or, with --source, a label (or use --suite)")  # fmt: skip
    add("--suite", default=None, help="evaluation suite instead of --split: paper (ID MATH500, GSM8K, SVAMP; "
        "OOD CommonsenseQA, StrategyQA, GPQA-Diamond with --gpqa_path)")  # fmt: skip
    add("--backend", default="transformers",
        help="transformers (default: in-process, batched), vllm (offline vllm.LLM; GPU) or openai:URL "
        "(an OpenAI-compatible server such as `vllm serve`, e.g. openai:http://127.0.0.1:8000/v1)")  # fmt: skip
    add("--backend_option", "-B", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="a VLLMConfig / OpenAIConfig field for --backend vllm / openai (e.g. tensor_parallel_size=2, "
        "max_model_len=4096, max_concurrency=64); repeatable")  # fmt: skip
    add("--tokenizer", default=None,
        help="--backend openai:URL with --prompt_style auto: the student's folder, to see its chat template")
    add("--source", default=None,
        help="KIND[:PATH] of pipeline.sources (gsm8k:FILE, svamp:FILE, mentor-kd:FILE, math500:FILE, "
        "commonsense_qa:FILE, strategyqa:FILE, gpqa:CSV, jsonl:FILE, parquet:FILE, hf-disk:DIR) or questions:DIR "
        "(a stored questions run, rows of --split)")  # fmt: skip
    add("--source-option", "-O", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="option of the source (e.g. question_field=q, task=arith); repeatable; "
        "VALUE parsed as JSON if it can be")  # fmt: skip
    add("--num-questions", "--limit", type=int, default=None,
        help=f"first N questions of the split, or of each suite member (default: all of a source, "
        f"{DEFAULT_SYNTHETIC_QUESTIONS} of a synthetic split)")  # fmt: skip
    add("--gpqa_path", default=None,
        help="--suite paper: your copy of the official GPQA-Diamond CSV (not shipped; without it GPQA is skipped)")
    add("--data_dir", default=None,
        help="--suite: folder of the shared data (default: $MIND_SHARED_DATA; with neither, the public hub data sets)")
    add("--suite_source", action="append", type=_pair, default=[], metavar="NAME=KIND:PATH",
        help="--suite: another source for one member, e.g. SVAMP=mentor-kd:DATA/mentor_kd/svamp_test.json")
    add("--world_seed", type=int, default=None, help="synthetic world seed (default: the world's default, 0)")
    add("--world", default=None, help="synthetic WorldConfig as a JSON object or a JSON file")
    add("--out", type=Path, default=None,
        help="predictions Parquet (default <model>/eval/<split>.parquet); with --suite a folder "
        "(default <model>/eval/<suite>/, one <member>.parquet each)")  # fmt: skip
    add("--output_json", type=Path, default=None,
        help="also write the JSON summary here (--suite: default <model>/eval/<suite>.json)")
    add("--batch_size", type=int, default=32, help="transformers: questions per batch (default 32)")
    add("--max_new_tokens", type=int, default=256, help="generated tokens at most (default 256)")
    add("--n", type=int, default=1, help="samples per question (needs --temperature > 0; default 1)")
    add("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    add("--top_p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    add("--seed", type=int, default=0, help="sampling seed (default 0)")
    add("--prompt_style", choices=("auto", "plain", "chat"), default="auto",
        help="as in training: chat when the tokenizer has a template (auto), or forced")  # fmt: skip
    add("--device", default="auto", help="transformers: auto, cpu, cuda or cuda:N (default auto)")
    add("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
        help="transformers: auto = float32 (batch-invariant outputs)")  # fmt: skip
    add("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    add("--quiet", action="store_true", help="no progress bar")
    return ap


def _fail(message: str) -> int:
    print(f"distill.evaluate: error: {message}", file=sys.stderr)
    return 2


def _world_arg(text: str | None) -> Any:
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        raw = text
    elif Path(text).is_file():
        raw = Path(text).read_text()
    else:
        raise ValueError(f"--world: {text!r} is neither a JSON object nor a file")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--world: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("--world must be a JSON object of WorldConfig fields")
    return value


def _check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the command line, or None."""
    if (args.split is None) == (args.suite is None):
        return "give either --split NAME (one question set) or --suite NAME (e.g. --suite paper)"
    if args.suite is None and (args.gpqa_path or args.suite_source or args.data_dir):
        return "--gpqa_path, --suite_source and --data_dir go with --suite"
    if args.suite is not None and (args.source or args.source_option or args.world):
        return "--source, --source-option and --world go with --split, not --suite"
    for name in ("num_questions", "batch_size", "max_new_tokens", "n"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "num_questions" else 1):
            return f"--{name} must be >= {0 if name == 'num_questions' else 1}, got {value}"
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        return "--temperature must be >= 0 and --top_p in (0, 1]"
    if args.n > 1 and args.temperature == 0:
        return "--n > 1 needs --temperature > 0 (greedy samples are identical)"
    return None


def _safe_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_") or "model"


class _CommandError(Exception):
    """A problem with the command line or what it names: one line on stderr, exit status 2."""


Runner = Callable[[list[dict[str, Any]], str, Progress | None], EvalResult]


@dataclass
class _Engine:
    """What decodes: ``run(questions, split, progress)``, the prompt style it uses, where it runs
    (for the header line) and the backend to close at the end (None: nothing to close)."""

    run: Runner
    style: str
    where: str
    backend: TeacherBackend | None = None


def _backend_choice(args: argparse.Namespace) -> BackendChoice:
    """The parsed ``--backend``, after the checks of the command line and of the model folder."""
    from distill.eval_backends import parse_backend

    if problem := _check_args(args):
        raise _CommandError(problem)
    try:
        choice = parse_backend(args.backend)
    except ValueError as exc:
        raise _CommandError(str(exc)) from None
    if choice.kind == "transformers" and args.backend_option:
        raise _CommandError("--backend_option is for --backend vllm or openai:URL (transformers: --device, --dtype)")
    model_dir = Path(args.model)
    if choice.kind == "transformers" and looks_local(args.model):  # else a hub id, for from_pretrained
        if not model_dir.is_dir():
            raise _CommandError(f"model folder {str(model_dir)!r} does not exist")
        if not (model_dir / "config.json").exists():
            raise _CommandError(f"{str(model_dir)!r} is not a model folder (no config.json)")
    return choice


def _question_sets(args: argparse.Namespace) -> tuple[dict[str, list[dict[str, Any]]], Any]:
    """``(sets, plan)``: the questions of ``--split`` (plan None), or those of each member of
    ``--suite`` with the suite's plan."""
    from data_schemas import ContractError

    try:
        if args.suite is None:
            world = _world_arg(args.world)
            questions = load_split_questions(
                args.split, source=args.source, num_questions=args.num_questions, world_seed=args.world_seed,
                world=world, options=dict(args.source_option),
            )  # fmt: skip
            if not questions:
                raise _CommandError(f"no questions to evaluate in split {args.split!r}")
            return {args.split: questions}, None
        from distill.suites import load_suite_questions, plan_suite

        plan = plan_suite(args.suite, data_dir=args.data_dir, gpqa_path=args.gpqa_path,
                          sources=dict(args.suite_source))  # fmt: skip
        load_suite_questions(plan, limit=args.num_questions)
        return {pm.name: pm.questions for pm in plan if pm.questions}, plan
    except (ValueError, TypeError, ContractError, OSError) as exc:
        raise _CommandError(str(exc)) from None


def _local_engine(args: argparse.Namespace, sampling: dict[str, Any]) -> _Engine:
    """The student folder, loaded in this process and decoded by the transformers backend."""
    import torch

    from pipeline.teachers.transformers_backend import TransformersBackend, TransformersConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        loaded = TransformersBackend(
            TransformersConfig(model=args.model, device=args.device, dtype=args.dtype, use_chat="false")
        )
        style = resolve_style(loaded.tokenizer, args.prompt_style)
    except ValueError as exc:
        raise _CommandError(str(exc)) from None

    def run(questions: list[dict[str, Any]], split: str, progress: Progress | None) -> EvalResult:
        return evaluate_model(loaded.model, loaded.tokenizer, questions, batch_size=args.batch_size,
                              prompt_style=style, split=split, progress=progress, **sampling)  # fmt: skip

    return _Engine(run, style, str(loaded.device))


def _remote_engine(args: argparse.Namespace, choice: BackendChoice, sampling: dict[str, Any]) -> _Engine:
    """The ``vllm`` or ``openai:URL`` engine (:func:`distill.eval_backends.make_remote_backend`)."""
    from distill.eval_backends import make_remote_backend

    try:
        backend, style = make_remote_backend(
            choice, args.model, prompt_style=args.prompt_style, options=dict(args.backend_option),
            tokenizer=args.tokenizer,
        )  # fmt: skip
    except (ValueError, TypeError, ImportError) as exc:
        raise _CommandError(str(exc)) from None

    def run(questions: list[dict[str, Any]], split: str, progress: Progress | None) -> EvalResult:
        return evaluate_backend(backend, questions, prompt_style=style, split=split, progress=progress, **sampling)

    return _Engine(run, style, str(choice), backend)


def _with_bar(run: Runner, bar: Any, n: int) -> Callable[[list[dict[str, Any]], str], EvalResult]:
    """``run`` with one progress-bar task per question set (no bar: ``run`` without progress)."""

    def evaluate(questions: list[dict[str, Any]], split: str) -> EvalResult:
        if bar is None:
            return run(questions, split, None)
        task = bar.add_task(split, total=len(questions) * n)
        return run(questions, split, lambda done, _total: bar.update(task, completed=done))

    return evaluate


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    console = Console(stderr=True, emoji=False, highlight=False)
    sampling = dict(max_new_tokens=args.max_new_tokens, n=args.n, temperature=args.temperature, top_p=args.top_p,
                    seed=args.seed)  # fmt: skip
    try:
        choice = _backend_choice(args)
        sets, plan = _question_sets(args)
        if choice.kind == "transformers":
            engine = _local_engine(args, sampling)
        else:
            engine = _remote_engine(args, choice, sampling)
    except _CommandError as exc:
        return _fail(str(exc))

    model_dir = Path(args.model)
    local = model_dir.is_dir()
    base = model_dir / "eval" if local else Path("runs") / "eval" / _safe_name(args.model)
    label = args.split if args.suite is None else args.suite
    total = sum(len(q) for q in sets.values())
    console.print(
        f"evaluating [bold]{args.model}[/] on {label} ({total} questions x {args.n}, {engine.style} prompts, "
        f"{'greedy' if args.temperature == 0 else f'T={args.temperature}'}) with {choice.kind} on {engine.where}"
    )
    extra = {
        "model": str(model_dir) if local else args.model, "backend": str(choice),
        "temperature": args.temperature, "top_p": args.top_p,
        "seed": args.seed, "max_new_tokens": args.max_new_tokens,
    }  # fmt: skip
    try:
        with _progress(console, args.quiet) as bar:
            evaluate = _with_bar(engine.run, bar, args.n)
            if args.suite is None:
                return _finish_split(args, evaluate(sets[args.split], args.split), base, extra, console)
            return _finish_suite(args, plan, evaluate, base, {**extra, "prompt_style": engine.style}, console)
    except RuntimeError as exc:  # an engine error that fails every request alike: bad URL, model name, key; dead vLLM
        if type(exc).__name__ in ("OpenAIBackendError", "VLLMEngineError"):
            return _fail(str(exc))
        raise
    finally:
        if engine.backend is not None:
            engine.backend.close()


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(console: Any, quiet: bool) -> Any:
    if quiet:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    from data_schemas import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def _finish_split(args: argparse.Namespace, result: EvalResult, base: Path, extra: dict[str, Any], console: Any) -> int:
    out = args.out or base / f"{args.split}.parquet"
    extra = {**extra, "source": args.source or "synthetic", "out": str(out)}
    try:
        write_predictions(result, out, extra)
        summary = {**result.summary(), **extra}
        if args.output_json:
            _write_json(args.output_json, summary)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or out}: {exc}")
    s = result.scores
    if s.errors:
        first = next(r["error"] for r in result.rows if r["finish_reason"] == "error")
        console.print(f"[yellow]{s.errors} generation(s) failed[/], e.g. {first}")
    console.print(
        f"{args.split}: accuracy [bold]{s.accuracy:.2%}[/] over {s.samples} prediction(s) of {s.n} question(s) "
        f"(judged {s.judged}; pass@{s.k} {s.pass_at_k:.2%}; majority {s.majority_accuracy:.2%}) "
        f"in {result.seconds:.1f}s -> {out}"
    )
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


def _finish_suite(
    args: argparse.Namespace, plan: Any, evaluate: Callable[[list[dict[str, Any]], str], EvalResult], base: Path,
    extra: dict[str, Any], console: Any,
) -> int:  # fmt: skip
    from rich.console import Console

    from distill.suites import run_suite, suite_summary, suite_table

    out_dir = args.out or base / args.suite
    json_path = args.output_json or base / f"{args.suite}.json"
    t0 = time.perf_counter()
    try:
        results = run_suite(plan, evaluate, out_dir=out_dir, extra=extra)
        summary = suite_summary(
            args.suite, plan, results, **extra, limit=args.num_questions, out=str(out_dir), output_json=str(json_path),
            seconds=round(time.perf_counter() - t0, 3),
        )  # fmt: skip
        _write_json(json_path, summary)
    except OSError as exc:
        return _fail(f"cannot write {exc.filename or out_dir}: {exc}")
    errors = sum(r.scores.errors for r in results.values())
    if errors:
        console.print(f"[yellow]{errors} generation(s) failed[/] (finish_reason error; counted as wrong)")
    width = None if sys.stdout.isatty() else 120  # a file or pipe: wide enough not to wrap the rows
    Console(emoji=False, highlight=False, width=width).print(suite_table(summary))
    console.print(f"predictions -> {out_dir}, summary -> {json_path}")
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
