"""Teacher configuration strings, the factory and the per-process cache (pipeline.teachers)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pipeline.ids import derive_seed
from pipeline.sources import load_questions
from pipeline.synthetic import PERSPECTIVES, TEACHER_NAME
from pipeline.teachers import (
    NON_OUTPUT_OPTIONS,
    GenerationRequest,
    SamplingConfig,
    TeacherBackend,
    TeacherSpec,
    cached_teacher,
    make_teacher,
)
from pipeline.teachers.synthetic_backend import SyntheticBackend, SyntheticConfig
from pipeline.verify import verify


def _requests(rows: list[dict], perspectives=PERSPECTIVES, samples: int = 1) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            row["question_id"], p, TEACHER_NAME, k, derive_seed(0, row["question_id"], p, TEACHER_NAME, k),
            (), row["question"], SamplingConfig(), row,
        )
        for row in rows
        for p in perspectives
        for k in range(samples)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return list(load_questions("synthetic", split="train", n=5))


# ---------------------------------------------------------------- config strings
@pytest.mark.parametrize(
    ("text", "backend", "options", "name"),
    [
        ("synthetic", "synthetic", {}, "synthetic/reference"),
        ("transformers:/models/tiny-lm", "transformers", {"model": "/models/tiny-lm"}, "/models/tiny-lm"),
        ("vllm:Qwen/Qwen2.5-7B-Instruct", "vllm", {"model": "Qwen/Qwen2.5-7B-Instruct"}, "Qwen/Qwen2.5-7B-Instruct"),
        (
            "openai:qwen-7b@http://127.0.0.1:8000/v1",
            "openai",
            {"model": "qwen-7b", "base_url": "http://127.0.0.1:8000/v1"},
            "qwen-7b",
        ),
        ("openai:qwen-7b", "openai", {"model": "qwen-7b"}, "qwen-7b"),
    ],
)
def test_spec_string_forms(text: str, backend: str, options: dict, name: str) -> None:
    spec = TeacherSpec.model_validate(text)
    assert spec.backend == backend
    assert spec.options == options
    assert spec.name is None
    assert spec.teacher_name == name
    # the string and the mapping forms are the same spec
    assert TeacherSpec.model_validate({"backend": backend, "options": options}) == spec


@pytest.mark.parametrize("text", ["", "nope", "transformers", "transformers:", "vllm", "vllm:", "hf:gpt2", "Synthetic"])
def test_bad_spec_strings(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        TeacherSpec.model_validate(text)
    msg = str(info.value)
    assert f"teacher {text!r}" in msg
    assert "transformers:PATH" in msg and "openai:MODEL@URL" in msg


@pytest.mark.parametrize("text", ["openai:", "openai:@http://127.0.0.1:8000/v1"])
def test_openai_string_without_model(text: str) -> None:
    with pytest.raises(ValidationError, match=r"the openai backend needs options\.model"):
        TeacherSpec.model_validate(text)


def test_mapping_errors() -> None:
    with pytest.raises(ValidationError, match=r"unknown synthetic option\(s\) \['temperature'\]"):
        TeacherSpec(backend="synthetic", options={"temperature": 0.5})
    with pytest.raises(ValidationError, match=r"unknown transformers option\(s\) \['bogus', 'gpu'\].*known: \["):
        TeacherSpec(backend="transformers", options={"model": "/m", "gpu": 1, "bogus": 2})
    with pytest.raises(ValidationError, match=r"the transformers backend needs options\.model"):
        TeacherSpec(backend="transformers")
    with pytest.raises(ValidationError, match="backend"):
        TeacherSpec.model_validate({"backend": "llamacpp", "options": {"model": "x"}})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TeacherSpec.model_validate({"backend": "synthetic", "model": "x"})


def test_teacher_name_and_identity() -> None:
    named = TeacherSpec(backend="transformers", name="tiny", options={"model": "/m", "batch_size": 4, "device": "cpu"})
    assert named.teacher_name == "tiny"
    # speed/robustness options are not part of the identity; output options are
    assert named.identity() == {"backend": "transformers", "name": "tiny", "options": {"model": "/m"}}
    other = TeacherSpec(backend="transformers", name="tiny", options={"model": "/m", "dtype": "bfloat16"})
    assert other.identity()["options"] == {"dtype": "bfloat16", "model": "/m"}

    slow = TeacherSpec(backend="synthetic", options={"latency_s": 2.0})
    noisy = TeacherSpec(backend="synthetic", options={"slip_rate": 0.5})
    assert slow.identity() == TeacherSpec(backend="synthetic").identity()
    assert noisy.identity() != TeacherSpec(backend="synthetic").identity()
    assert "latency_s" in NON_OUTPUT_OPTIONS and "batch_size" in NON_OUTPUT_OPTIONS

    api = TeacherSpec.model_validate("openai:m@http://h:1/v1")
    api2 = TeacherSpec(backend="openai", options={"model": "m", "base_url": "http://h:1/v1", "max_concurrency": 64})
    assert api.identity() == api2.identity()
    json.dumps(api.identity())  # identities are JSON (they feed run ids)


# ---------------------------------------------------------------- factory
def test_make_teacher_synthetic_writes_correct_rationales(questions: list[dict]) -> None:
    assert len(questions) == 5
    for form in ("synthetic", {"backend": "synthetic"}, TeacherSpec(backend="synthetic")):
        teacher = make_teacher(form)
        assert isinstance(teacher, SyntheticBackend) and isinstance(teacher, TeacherBackend)
        assert teacher.name == TEACHER_NAME

    teacher = make_teacher({"backend": "synthetic", "options": {"slip_rate": 0.0, "flaw_rate": 0.0}})
    requests = _requests(questions, samples=2)
    completions = teacher.generate(requests)
    assert len(completions) == len(requests) == 5 * len(PERSPECTIVES) * 2
    for req, comp in zip(requests, completions, strict=True):
        assert comp.finish_reason == "stop", comp.error
        assert comp.text.strip() and comp.num_tokens and comp.num_tokens > 0
        verdict = verify(comp.text, req.question["gold_answer"], req.question["task"])
        assert verdict.is_correct is True, (req.perspective, comp.text, req.question["gold_answer"])
    # deterministic for a seed: the same requests give the same texts
    again = teacher.generate(requests)
    assert [c.text for c in again] == [c.text for c in completions]
    # perspectives render differently
    first_q = {c.text for r, c in zip(requests, completions, strict=True) if r.question_id == questions[0]["question_id"]}
    assert len(first_q) >= len(PERSPECTIVES)


def test_make_teacher_named_and_configured() -> None:
    teacher = make_teacher({"backend": "synthetic", "name": "synthetic/noisy", "options": {"slip_rate": 0.3}})
    assert teacher.name == "synthetic/noisy"
    assert isinstance(teacher.config, SyntheticConfig) and teacher.config.slip_rate == 0.3
    with pytest.raises(ValidationError, match="unknown synthetic option"):
        make_teacher({"backend": "synthetic", "options": {"slip": 0.3}})
    with pytest.raises(ValidationError):
        make_teacher("gpt-4")


def test_make_teacher_bad_rate_raises_at_construction() -> None:
    with pytest.raises(ValueError, match="slip"):
        make_teacher({"backend": "synthetic", "options": {"slip_rate": 1.5}})


def test_cached_teacher_same_instance() -> None:
    spec = TeacherSpec(backend="synthetic", name="synthetic/cache-test", options={"slip_rate": 0.2})
    a = cached_teacher(spec)
    assert cached_teacher(spec) is a
    # an equal spec built another way hits the same entry
    assert cached_teacher(TeacherSpec.model_validate(spec.model_dump())) is a
    # a different spec (even a non-output option) is another backend
    b = cached_teacher(TeacherSpec(backend="synthetic", name="synthetic/cache-test", options={"slip_rate": 0.3}))
    assert b is not a and b.config.slip_rate == 0.3
    assert a.name == "synthetic/cache-test"


def test_synthetic_backend_error_completion_on_bad_row(questions: list[dict]) -> None:
    teacher = make_teacher("synthetic")
    good = questions[0]
    no_steps = {**questions[1], "metadata": None}
    wrong_gold = {**questions[2], "gold_answer": str(int(questions[2]["gold_answer"]) + 1)}
    garbage = {**questions[3], "metadata": json.dumps({"steps": [["+", "x", 1, 2]]})}
    requests = _requests([good, no_steps, wrong_gold, garbage], perspectives=("stepwise",))
    completions = teacher.generate(requests)
    assert len(completions) == 4
    assert completions[0].finish_reason == "stop" and completions[0].error is None
    for comp, needle in zip(completions[1:], ("no synthetic steps", "gold answer is", "ValueError"), strict=True):
        assert comp.finish_reason == "error"
        assert comp.text == ""
        assert comp.error and needle in comp.error, comp.error


def test_synthetic_string_with_a_suffix_is_refused() -> None:
    with pytest.raises(ValidationError, match="teacher 'synthetic:gpt2'"):
        TeacherSpec.model_validate("synthetic:gpt2")
