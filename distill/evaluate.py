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

From Python (e.g. a trainer at the end of training, in-process)::

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.eval_records import PREDICTION_SCHEMA, EvalResult, Scores, score_predictions, write_predictions
from distill.formatting import PLAIN_TEMPLATE, PromptStyle, encode_prompt, prompt_text, resolve_style
from distill.question_sets import DEFAULT_SYNTHETIC_QUESTIONS, SYNTHETIC_SPLITS, load_split_questions
from pipeline.ids import content_question_id, derive_seed
from pipeline.teachers.base import Completion, GenerationRequest, SamplingConfig, TeacherBackend

# PREDICTION_SCHEMA, EvalResult, Scores, score_predictions, write_predictions (distill.eval_records) and
# load_split_questions (distill.question_sets) are re-exported: evaluation's public names in one place
__all__ = [
    "PREDICTION_SCHEMA",
    "EvalResult",
    "Scores",
    "build_remote_requests",
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

Progress = Callable[[int, int], None]  # (predictions done, total)


def _question_fields(q: Mapping[str, Any], index: int) -> tuple[str, str, str, str]:
    for key in ("question", "gold_answer", "task"):
        if q.get(key) is None or not str(q[key]).strip():
            raise ValueError(f"question {index} has no {key!r} (keys: {', '.join(sorted(q))})")
    question = str(q["question"])
    qid = q.get("question_id") or content_question_id("eval", question)
    return str(qid), question, str(q["gold_answer"]), str(q["task"])


def _sample_seed(seed: int, question_id: str, sample_index: int) -> int:
    return derive_seed("distill.evaluate", seed, question_id, sample_index)


def build_requests(
    tokenizer: Any,
    questions: Sequence[Mapping[str, Any]],
    *,
    style: str,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    seed: int = 0,
) -> list[GenerationRequest]:
    """One request per (question, sample), question-major. ``style`` is ``plain`` (the
    backend must not use chat: ``request.prompt`` is the formatted prompt) or ``chat`` (the
    backend renders ``request.messages`` -- the question as the user turn -- with the
    template); either way the prompt ids equal :func:`distill.formatting.encode_prompt`."""
    if style not in ("plain", "chat"):
        raise ValueError(f"style must be plain or chat, got {style!r}")
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens)
    requests = []
    for i, q in enumerate(questions):
        qid, question, _, _ = _question_fields(q, i)
        prompt = prompt_text(tokenizer, question, style)  # type: ignore[arg-type]
        messages = ({"role": "user", "content": question.strip()},) if style == "chat" else ()
        for k in range(n):
            requests.append(
                GenerationRequest(
                    question_id=qid,
                    perspective="eval",
                    teacher="student",
                    sample_index=k,
                    seed=_sample_seed(seed, qid, k) if temperature > 0 else seed,
                    messages=messages,
                    prompt=prompt,
                    sampling=sampling,
                    question=dict(q),
                )
            )
    return requests


def build_remote_requests(
    questions: Sequence[Mapping[str, Any]],
    *,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    seed: int = 0,
) -> list[GenerationRequest]:
    """Requests for a backend that renders prompts itself (``vllm``, ``openai``): ``prompt`` is
    the plain training prompt (``"Question: ...\\nAnswer:\\n"``) and ``messages`` the question as
    the one user turn; the backend's ``use_chat`` picks one. Ids, seeds and order as
    :func:`build_requests`."""
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens)
    requests = []
    for i, q in enumerate(questions):
        qid, question, _, _ = _question_fields(q, i)
        text = question.strip()
        for k in range(n):
            requests.append(
                GenerationRequest(
                    question_id=qid,
                    perspective="eval",
                    teacher="student",
                    sample_index=k,
                    seed=_sample_seed(seed, qid, k) if temperature > 0 else seed,
                    messages=({"role": "user", "content": text},),
                    prompt=PLAIN_TEMPLATE.format(question=text),
                    sampling=sampling,
                    question=dict(q),
                )
            )
    return requests


def _check_sampling(n: int, temperature: float, max_new_tokens: int, batch_size: int = 1) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 1 and temperature <= 0:
        raise ValueError("n > 1 samples per question need a temperature > 0 (greedy samples are identical)")
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be >= 1")


def _result(
    requests: Sequence[GenerationRequest],
    completions: Sequence[Completion | None],
    questions: Sequence[Mapping[str, Any]],
    *,
    split: str | None,
    seconds: float,
    style: str,
) -> EvalResult:
    """Prediction rows (request order) of ``completions``, scored."""
    rows = []
    for req, c in zip(requests, completions, strict=True):
        assert c is not None
        q = req.question
        rows.append(
            {
                "question_id": req.question_id,
                "question": str(q["question"]),
                "gold_answer": str(q["gold_answer"]),
                "task": str(q["task"]),
                "split": split if split is not None else str(q.get("split") or ""),
                "sample_index": req.sample_index,
                "seed": req.seed,
                "prediction": c.text,
                "num_tokens": c.num_tokens,
                "finish_reason": c.finish_reason,
                "error": c.error,
            }
        )
    scores = score_predictions(rows)
    label = split if split is not None else (str(questions[0].get("split") or "") if questions else "")
    return EvalResult(split=label, scores=scores, rows=rows, seconds=seconds, prompt_style=style)


def _unwrap(model: Any) -> Any:
    """The module that generates: DDP/accelerate wrappers off; a PEFT model's base model
    (whose layers carry the injected adapters) so that position ids reach the forward pass."""
    while hasattr(model, "module") and not hasattr(model, "generation_config"):
        model = model.module
    peft_config = getattr(model, "active_peft_config", None)
    if hasattr(model, "get_base_model") and not getattr(peft_config, "is_prompt_learning", False):
        model = model.get_base_model()
    return model


def _evaluate(
    model: Any,
    tokenizer: Any,
    questions: Iterable[Mapping[str, Any]],
    *,
    batched: bool,
    batch_size: int,
    max_new_tokens: int,
    prompt_style: PromptStyle,
    n: int,
    temperature: float,
    top_p: float,
    seed: int,
    split: str | None,
    progress: Progress | None,
    vectorised: bool = True,
) -> EvalResult:
    from pipeline.teachers.transformers_backend import TransformersBackend

    _check_sampling(n, temperature, max_new_tokens, batch_size)
    questions = list(questions)
    style = resolve_style(tokenizer, prompt_style)
    gen_model = _unwrap(model)
    backend = TransformersBackend.from_pretrained_objects(
        gen_model,
        tokenizer,
        model="<student>",
        batch_size=batch_size,
        use_chat="true" if style == "chat" else "false",
        vectorised=vectorised,
    )
    requests = build_requests(
        tokenizer, questions, style=style, n=n, temperature=temperature, top_p=top_p,
        max_new_tokens=max_new_tokens, seed=seed,
    )  # fmt: skip
    # Same prompt ids as training; order by length (as the backend does) so that batches are
    # tight and progress can be reported batch by batch with the same batches as one call.
    ids: list[list[int]] = []
    for req in requests[::n]:  # question-major: the first sample of each question
        expected = encode_prompt(tokenizer, req.question["question"], style)
        got = backend.prompt_ids(req)
        if list(expected) != got:
            raise RuntimeError(
                f"prompt of {req.question_id!r} tokenizes differently from distill.formatting "
                f"({len(got)} vs {len(expected)} tokens)"
            )
        ids.append(got)
    order = sorted(range(len(requests)), key=lambda i: (len(ids[i // n]), ids[i // n]))
    completions: list[Completion | None] = [None] * len(requests)

    modes = [(m, m.training) for m in model.modules()]
    t0 = time.perf_counter()
    try:
        model.eval()
        step = batch_size if batched else 1
        done = 0
        if progress:
            progress(0, len(requests))
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            batch = [requests[i] for i in chunk]
            outs = backend.generate(batch) if batched else backend.generate_unbatched(batch)
            for i, c in zip(chunk, outs, strict=True):
                completions[i] = c
            done += len(chunk)
            if progress:
                progress(done, len(requests))
    finally:
        for m, training in modes:
            m.training = training
    seconds = time.perf_counter() - t0
    return _result(requests, completions, questions, split=split, seconds=seconds, style=style)


def evaluate_model(
    model: Any,
    tokenizer: Any,
    questions: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 256,
    prompt_style: PromptStyle = "auto",
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    split: str | None = None,
    progress: Progress | None = None,
    vectorised: bool = True,
) -> EvalResult:
    """Decode ``model`` on ``questions`` (dicts with ``question``, ``gold_answer``, ``task``,
    optionally ``question_id`` and ``split``) in batches of ``batch_size`` and score them.

    Greedy when ``temperature == 0``; else ``n`` seeded samples per question. ``split`` labels
    the rows (default: each question's own ``split``). ``progress(done, total)`` is called
    after every batch. The model runs where it is, in its dtype, in eval mode; the train/eval
    mode of every submodule is restored afterwards. ``vectorised=False`` decodes with the
    backend's per-row loop (same outputs, slower: the baseline of ``benchmarks/evaluate.py``).
    """
    return _evaluate(
        model, tokenizer, questions, batched=True, batch_size=batch_size, max_new_tokens=max_new_tokens,
        prompt_style=prompt_style, n=n, temperature=temperature, top_p=top_p, seed=seed, split=split,
        progress=progress, vectorised=vectorised,
    )  # fmt: skip


def evaluate_loop(
    model: Any,
    tokenizer: Any,
    questions: Iterable[Mapping[str, Any]],
    *,
    max_new_tokens: int = 256,
    prompt_style: PromptStyle = "auto",
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    split: str | None = None,
    progress: Progress | None = None,
    batch_size: int | None = None,  # accepted for a drop-in call; unused
    vectorised: bool = True,
) -> EvalResult:
    """:func:`evaluate_model` one prediction at a time (the reference the batched path must
    match, and the baseline of the batched-vs-loop benchmark)."""
    del batch_size
    return _evaluate(
        model, tokenizer, questions, batched=False, batch_size=1, max_new_tokens=max_new_tokens,
        prompt_style=prompt_style, n=n, temperature=temperature, top_p=top_p, seed=seed, split=split,
        progress=progress, vectorised=vectorised,
    )  # fmt: skip


def evaluate_backend(
    backend: TeacherBackend,
    questions: Iterable[Mapping[str, Any]],
    *,
    prompt_style: str,
    max_new_tokens: int = 256,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    split: str | None = None,
    progress: Progress | None = None,
    chunk_size: int | None = None,
) -> EvalResult:
    """Evaluate through any teacher backend that renders prompts itself (``vllm``: one
    ``LLM.generate``/``LLM.chat`` call per chunk; ``openai``: concurrent requests), with the
    requests of :func:`build_remote_requests`. ``prompt_style`` (``plain`` or ``chat``: what the
    backend was set to use) only labels the result. ``chunk_size`` requests per ``generate``
    call (default: all at once, so the engine schedules them); ``progress`` after each call."""
    _check_sampling(n, temperature, max_new_tokens)
    questions = list(questions)
    requests = build_remote_requests(
        questions, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    step = chunk_size or max(len(requests), 1)
    completions: list[Completion | None] = []
    t0 = time.perf_counter()
    if progress:
        progress(0, len(requests))
    for start in range(0, len(requests), step):
        chunk = requests[start : start + step]
        outs = backend.generate(chunk)
        if len(outs) != len(chunk):
            raise RuntimeError(f"backend returned {len(outs)} completions for {len(chunk)} requests")
        completions.extend(outs)
        if progress:
            progress(len(completions), len(requests))
    seconds = time.perf_counter() - t0
    return _result(requests, completions, questions, split=split, seconds=seconds, style=prompt_style)


def evaluate_splits(
    model: Any,
    tokenizer: Any,
    splits: Mapping[str, Sequence[Mapping[str, Any]]] | Sequence[str],
    *,
    num_questions: int | None = None,
    world_seed: int | None = None,
    world: Any = None,
    out_dir: str | Path | None = None,
    **kwargs: Any,
) -> dict[str, EvalResult]:
    """:func:`evaluate_model` on several splits: a mapping ``name -> questions``, or a list of
    synthetic-world split names (questions from :func:`load_split_questions`). With
    ``out_dir``, each split's predictions go to ``out_dir/<split>.parquet``. ``kwargs`` are
    those of :func:`evaluate_model` (batch_size, max_new_tokens, prompt_style, n, ...)."""
    if isinstance(splits, Mapping):
        sets = {name: list(qs) for name, qs in splits.items()}
    else:
        sets = {
            name: load_split_questions(name, num_questions=num_questions, world_seed=world_seed, world=world)
            for name in splits
        }
    results = {}
    for name, questions in sets.items():
        results[name] = evaluate_model(model, tokenizer, questions, split=name, **kwargs)
        if out_dir is not None:
            write_predictions(results[name], Path(out_dir) / f"{name}.parquet")
    return results


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
        help="student folder (transformers, vllm: from_pretrained model + tokenizer; vllm also a hub id); "
        "with --backend openai:URL the model name the server serves")  # fmt: skip
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
        help="--suite: folder of the shared data (default $MIND_SHARED_DATA or the shared/data folder beside the repository)")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from distill.eval_backends import make_remote_backend, parse_backend

    console = Console(stderr=True, emoji=False, highlight=False)
    if problem := _check_args(args):
        return _fail(problem)
    try:
        choice = parse_backend(args.backend)
    except ValueError as exc:
        return _fail(str(exc))
    if choice.kind == "transformers" and args.backend_option:
        return _fail("--backend_option is for --backend vllm or openai:URL (transformers: --device, --dtype)")
    model_dir = Path(args.model)
    if choice.kind == "transformers":
        if not model_dir.is_dir():
            return _fail(f"model folder {str(model_dir)!r} does not exist")
        if not (model_dir / "config.json").exists():
            return _fail(f"{str(model_dir)!r} is not a model folder (no config.json)")

    from data_schemas import ContractError

    label = args.split if args.suite is None else args.suite
    try:
        if args.suite is None:
            world = _world_arg(args.world)
            questions = load_split_questions(
                args.split, source=args.source, num_questions=args.num_questions, world_seed=args.world_seed,
                world=world, options=dict(args.source_option),
            )  # fmt: skip
            if not questions:
                return _fail(f"no questions to evaluate in split {args.split!r}")
            sets = {args.split: questions}
        else:
            from distill.suites import load_suite_questions, plan_suite

            plan = plan_suite(args.suite, data_dir=args.data_dir, gpqa_path=args.gpqa_path,
                              sources=dict(args.suite_source))  # fmt: skip
            load_suite_questions(plan, limit=args.num_questions)
            sets = {pm.name: pm.questions for pm in plan if pm.questions}
    except (ValueError, TypeError, ContractError, OSError) as exc:
        return _fail(str(exc))

    sampling = dict(max_new_tokens=args.max_new_tokens, n=args.n, temperature=args.temperature, top_p=args.top_p,
                    seed=args.seed)  # fmt: skip
    backend: Any = None
    if choice.kind == "transformers":
        import torch

        from pipeline.teachers.transformers_backend import TransformersBackend, TransformersConfig

        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            loaded = TransformersBackend(
                TransformersConfig(model=str(model_dir), device=args.device, dtype=args.dtype, use_chat="false")
            )
            style = resolve_style(loaded.tokenizer, args.prompt_style)
        except ValueError as exc:
            return _fail(str(exc))
        where = str(loaded.device)

        def run(questions: list[dict[str, Any]], split: str, progress: Progress | None) -> EvalResult:
            return evaluate_model(loaded.model, loaded.tokenizer, questions, batch_size=args.batch_size,
                                  prompt_style=style, split=split, progress=progress, **sampling)  # fmt: skip
    else:
        try:
            backend, style = make_remote_backend(
                choice, args.model, prompt_style=args.prompt_style, options=dict(args.backend_option),
                tokenizer=args.tokenizer,
            )  # fmt: skip
        except (ValueError, TypeError, ImportError) as exc:
            return _fail(str(exc))
        where = str(choice)

        def run(questions: list[dict[str, Any]], split: str, progress: Progress | None) -> EvalResult:
            return evaluate_backend(backend, questions, prompt_style=style, split=split, progress=progress, **sampling)

    local = model_dir.is_dir()
    base = model_dir / "eval" if local else Path("runs") / "eval" / _safe_name(args.model)
    total = sum(len(q) for q in sets.values())
    console.print(
        f"evaluating [bold]{args.model}[/] on {label} ({total} questions x {args.n}, {style} prompts, "
        f"{'greedy' if args.temperature == 0 else f'T={args.temperature}'}) with {choice.kind} on {where}"
    )
    extra = {
        "model": str(model_dir) if local else args.model, "backend": str(choice),
        "temperature": args.temperature, "top_p": args.top_p,
        "seed": args.seed, "max_new_tokens": args.max_new_tokens,
    }  # fmt: skip
    try:
        with _progress(console, args.quiet) as bar:

            def evaluate(questions: list[dict[str, Any]], split: str) -> EvalResult:
                if bar is None:
                    return run(questions, split, None)
                task = bar.add_task(split, total=len(questions) * args.n)
                return run(questions, split, lambda done, _total: bar.update(task, completed=done))

            if args.suite is None:
                return _finish_split(args, evaluate(sets[args.split], args.split), base, extra, console)
            return _finish_suite(args, plan, evaluate, base, {**extra, "prompt_style": style}, console)
    except RuntimeError as exc:  # an engine error that fails every request alike: bad URL, model name, key; dead vLLM
        if type(exc).__name__ in ("OpenAIBackendError", "VLLMEngineError"):
            return _fail(str(exc))
        raise
    finally:
        if backend is not None:
            backend.close()


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
