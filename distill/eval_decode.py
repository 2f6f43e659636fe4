"""Decode a student on questions and score its answers: the library behind ``python -m distill.evaluate``.

One request builder serves every engine (:func:`build_requests`): a request carries the plain training
prompt and the question as the one user turn, and the engine's ``use_chat`` picks one. The
``transformers`` engine decodes in this process (:func:`evaluate_model`, batched and vectorised;
:func:`evaluate_loop`, one prediction at a time), checking every prompt's ids against
:func:`distill.formatting.encode_prompt`; ``vllm`` and ``openai`` render the prompt themselves
(:func:`evaluate_backend`). Rows and scores are :mod:`distill.eval_records`'.

From Python (e.g. a trainer at the end of training, in-process)::

    from distill.evaluate import evaluate_model, evaluate_splits
    result = evaluate_model(model, tokenizer, questions, batch_size=32, max_new_tokens=256)
    results = evaluate_splits(model, tokenizer, ["test", "ood_steps"], num_questions=200)

The model's train/eval mode (of every submodule) is restored afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.eval_records import EvalResult, score_predictions, write_predictions
from distill.formatting import PLAIN_TEMPLATE, PromptStyle, encode_prompt, resolve_style
from distill.question_sets import load_split_questions
from pipeline.ids import content_question_id, derive_seed
from pipeline.teachers.base import Completion, GenerationRequest, SamplingConfig, TeacherBackend

__all__ = ["Progress", "build_requests", "evaluate_backend", "evaluate_loop", "evaluate_model", "evaluate_splits"]

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
    questions: Sequence[Mapping[str, Any]],
    *,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    seed: int = 0,
) -> list[GenerationRequest]:
    """One request per (question, sample), question-major, for every engine: ``prompt`` is the
    plain training prompt (``"Question: ...\\nAnswer:\\n"``) and ``messages`` the question as the
    one user turn; the backend's ``use_chat`` picks one (the transformers backend renders the
    messages with the tokenizer's chat template, so the prompt ids equal
    :func:`distill.formatting.encode_prompt` in either style). Sampling: ``temperature``, ``top_p``,
    ``max_new_tokens`` tokens at most, no stop strings (the student stops at its EOS token); each
    sample's seed is derived from ``seed``, the question id and the sample index (greedy: ``seed``)."""
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


def _length_order(backend: Any, tokenizer: Any, requests: Sequence[GenerationRequest], n: int, style: str) -> list[int]:
    """Request indices ordered by prompt ids (length, then content), as the backend orders a batch, so
    that batches are tight and progress can be reported batch by batch with the same batches as one
    call; ``RuntimeError`` when a prompt's ids differ from training's (:func:`encode_prompt`)."""
    ids: list[list[int]] = []
    for req in requests[::n]:  # question-major: the first sample of each question
        expected = encode_prompt(tokenizer, req.question["question"], style)  # type: ignore[arg-type]
        got = backend.prompt_ids(req)
        if list(expected) != got:
            raise RuntimeError(
                f"prompt of {req.question_id!r} tokenizes differently from distill.formatting "
                f"({len(got)} vs {len(expected)} tokens)"
            )
        ids.append(got)
    return sorted(range(len(requests)), key=lambda i: (len(ids[i // n]), ids[i // n]))


def _decode_in_order(
    model: Any, backend: Any, requests: Sequence[GenerationRequest], order: list[int], *, batched: bool, step: int,
    progress: Progress | None,
) -> list[Completion | None]:  # fmt: skip
    """Completions (request order) of ``requests`` decoded ``step`` at a time in ``order``, with
    ``model`` in eval mode; the train/eval mode of every submodule is restored afterwards."""
    completions: list[Completion | None] = [None] * len(requests)
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
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
    return completions


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
    if style not in ("plain", "chat"):
        raise ValueError(f"style must be plain or chat, got {style!r}")
    requests = build_requests(
        questions, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    order = _length_order(backend, tokenizer, requests, n, style)
    t0 = time.perf_counter()
    step = batch_size if batched else 1
    completions = _decode_in_order(model, backend, requests, order, batched=batched, step=step, progress=progress)
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
    batch_size: int | None = None,  # accepted for a drop-in call; unused
    **options: Any,
) -> EvalResult:
    """:func:`evaluate_model` one prediction at a time (the reference the batched path must
    match, and the baseline of the batched-vs-loop benchmark); the same keyword options."""
    del batch_size
    settings = {"max_new_tokens": 256, "prompt_style": "auto", "n": 1, "temperature": 0.0, "top_p": 1.0, "seed": 0,
                "split": None, "progress": None, "vectorised": True, **options}  # fmt: skip
    return _evaluate(model, tokenizer, questions, batched=False, batch_size=1, **settings)


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
    requests of :func:`build_requests`. ``prompt_style`` (``plain`` or ``chat``: what the
    backend was set to use) only labels the result. ``chunk_size`` requests per ``generate``
    call (default: all at once, so the engine schedules them); ``progress`` after each call."""
    _check_sampling(n, temperature, max_new_tokens)
    questions = list(questions)
    requests = build_requests(
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
