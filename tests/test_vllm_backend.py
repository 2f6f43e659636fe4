"""The ``vllm`` teacher, tested without vLLM through a FAKE of vLLM's documented offline API.

``FakeVLLM`` below is NOT vLLM: it mimics only the documented surface the backend uses
(``vllm.LLM(model, ...)``, ``LLM.get_tokenizer()``, ``LLM.generate(prompts, sampling_params=,
use_tqdm=)``, ``LLM.chat(messages, sampling_params=, use_tqdm=, chat_template=,
chat_template_kwargs=)``, ``vllm.SamplingParams(n, temperature, top_p, max_tokens, stop, seed,
logprobs)``, ``RequestOutput.outputs`` and ``CompletionOutput(index, text, token_ids,
cumulative_logprob, logprobs, finish_reason, stop_reason)``). Tests against the real package are
``pytest.importorskip("vllm")``; the end-to-end GPU test also needs ``MIND_VLLM_TEST_MODEL``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.perspectives import load_perspective_set, render_messages, render_prompt
from pipeline.teachers.base import GenerationRequest, SamplingConfig
from pipeline.teachers.vllm_backend import (
    INSTALL_HINT,
    VLLMBackend,
    VLLMConfig,
    VLLMEngineError,
    VLLMNotInstalledError,
    import_vllm,
    llm_kwargs,
    resolve_use_chat,
    to_completion,
    to_sampling_params,
)

# ----------------------------------------------------------------- fake of the vLLM API


class FakeSamplingParams:
    """Fake of ``vllm.SamplingParams`` (documented keyword fields only)."""

    def __init__(self, *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0, max_tokens: int | None = 16,
                 stop: str | list[str] | None = None, seed: int | None = None, logprobs: int | None = None) -> None:
        self.n, self.temperature, self.top_p, self.max_tokens = n, temperature, top_p, max_tokens
        self.stop, self.seed, self.logprobs = stop, seed, logprobs


@dataclass
class FakeLogprob:
    """Fake of ``vllm.logprobs.Logprob``."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class FakeCompletionOutput:
    """Fake of ``vllm.outputs.CompletionOutput``."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, FakeLogprob]] | None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class FakeRequestOutput:
    """Fake of ``vllm.outputs.RequestOutput``."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[FakeCompletionOutput]
    finished: bool = True


class EngineDeadError(RuntimeError):
    """Same class name as vLLM's ``vllm.v1.engine.exceptions.EngineDeadError``."""


@dataclass
class FakeTokenizer:
    chat_template: str | None = "{% for m in messages %}{{ m.content }}{% endfor %}"


@dataclass
class FakeLLM:
    """Fake of ``vllm.LLM``: echoes its input; ``TOO_LONG`` in a prompt fails the whole call."""

    model: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    tokenizer: FakeTokenizer = field(default_factory=FakeTokenizer)
    calls: list[tuple[str, list[Any], list[FakeSamplingParams], dict[str, Any]]] = field(default_factory=list)
    dead: bool = False

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tokenizer

    def generate(self, prompts: Any, sampling_params: Any = None, *, use_tqdm: bool = True,
                 lora_request: Any = None) -> list[FakeRequestOutput]:
        return self._run("generate", list(prompts), sampling_params, {"use_tqdm": use_tqdm})

    def chat(self, messages: Any, sampling_params: Any = None, use_tqdm: bool = True, lora_request: Any = None,
             chat_template: str | None = None, chat_template_content_format: str = "auto",
             add_generation_prompt: bool = True, continue_final_message: bool = False, tools: Any = None,
             chat_template_kwargs: dict[str, Any] | None = None,
             mm_processor_kwargs: dict[str, Any] | None = None) -> list[FakeRequestOutput]:
        extra = {"use_tqdm": use_tqdm, "chat_template": chat_template, "chat_template_kwargs": chat_template_kwargs}
        return self._run("chat", list(messages), sampling_params, extra)

    def _run(self, method: str, inputs: list[Any], params: Any, extra: dict[str, Any]) -> list[FakeRequestOutput]:
        params = list(params) if isinstance(params, list) else [params] * len(inputs)
        assert len(params) == len(inputs), "a list of sampling params pairs one-to-one with the prompts"
        self.calls.append((method, inputs, params, extra))
        if self.dead:
            raise EngineDeadError("EngineCore encountered an issue")
        texts = [x if isinstance(x, str) else x[-1]["content"] for x in inputs]
        for t in texts:
            if "TOO_LONG" in t:
                raise ValueError("The decoder prompt (length 9000) is longer than the maximum model length of 4096.")
        return [self._output(i, t, p) for i, (t, p) in enumerate(zip(texts, params, strict=True))]

    @staticmethod
    def _output(i: int, text: str, p: FakeSamplingParams) -> FakeRequestOutput:
        token_ids = [11, 12, 13]
        lps = None
        if p.logprobs is not None:
            lps = [{11: FakeLogprob(-0.5)}, {12: FakeLogprob(-0.25)}, {13: FakeLogprob(-0.25)}]
        out = FakeCompletionOutput(
            index=0, text=f"seed={p.seed} {text}\nThe answer is 5.", token_ids=token_ids,
            cumulative_logprob=-1.0 if p.logprobs is not None else None, logprobs=lps,
            finish_reason="length" if "LENGTH" in text else "stop",
        )
        return FakeRequestOutput(str(i), text, [1, 2], None, [out])


def fake_vllm(tokenizer: FakeTokenizer | None = None) -> SimpleNamespace:
    """A fake ``vllm`` module object: ``LLM`` and ``SamplingParams``."""
    created: list[FakeLLM] = []

    def make_llm(model: str, **kwargs: Any) -> FakeLLM:
        llm = FakeLLM(model=model, kwargs=kwargs, tokenizer=tokenizer or FakeTokenizer())
        created.append(llm)
        return llm

    return SimpleNamespace(LLM=make_llm, SamplingParams=FakeSamplingParams, created=created)


def make_request(text: str, seed: int = 5, index: int = 0, sampling: SamplingConfig | None = None) -> GenerationRequest:
    return GenerationRequest(
        question_id=f"q{index}", perspective="stepwise", teacher="vllm/test", sample_index=0, seed=seed,
        messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": text}),
        prompt=f"PLAIN {text}",
        sampling=sampling or SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=128, stop=("###",)),
    )


# ------------------------------------------------------------------------------ mapping


def test_sampling_params_per_request():
    req = make_request("x", seed=(1 << 62) + 3)
    sp = to_sampling_params(fake_vllm(), req)
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.seed) == (1, 0.7, 0.9, 128, (1 << 62) + 3)
    assert sp.stop == ["###"] and sp.logprobs is None
    sp = to_sampling_params(fake_vllm(), make_request("y", sampling=SamplingConfig(max_tokens=7)), logprobs=True)
    assert sp.stop is None and sp.max_tokens == 7 and sp.logprobs == 0


def test_llm_kwargs_from_config():
    cfg = VLLMConfig(model="m", tensor_parallel_size=2, max_model_len=4096, gpu_memory_utilization=0.8,
                     dtype="bfloat16", seed=3, trust_remote_code=True, enable_prefix_caching=False,
                     engine_kwargs={"enforce_eager": True})
    assert llm_kwargs(cfg) == dict(model="m", tensor_parallel_size=2, max_model_len=4096, gpu_memory_utilization=0.8,
                                   dtype="bfloat16", seed=3, trust_remote_code=True, enable_prefix_caching=False,
                                   enforce_eager=True)
    assert "max_model_len" not in llm_kwargs(VLLMConfig(model="m"))


def test_config_validation_and_use_chat_normalisation():
    assert VLLMConfig(model="m", use_chat=True).use_chat == "true"
    assert VLLMConfig(model="m", use_chat="FALSE").use_chat == "false"
    for bad in [dict(model=""), dict(model="m", use_chat="maybe"), dict(model="m", tensor_parallel_size=0),
                dict(model="m", gpu_memory_utilization=1.5), dict(model="m", max_model_len=0)]:
        with pytest.raises(ValueError):
            VLLMConfig(**bad)


def test_resolve_use_chat():
    with_t, without = FakeTokenizer(), FakeTokenizer(chat_template=None)
    assert resolve_use_chat("auto", with_t) is True
    assert resolve_use_chat("auto", without) is False
    assert resolve_use_chat("false", with_t) is False
    assert resolve_use_chat("true", without, chat_template="{{ x }}") is True
    with pytest.raises(ValueError, match="no chat template"):
        resolve_use_chat("true", without)


def test_to_completion_fields():
    out = FakeLLM._output(0, "hi LENGTH", FakeSamplingParams(seed=1, logprobs=0))
    c = to_completion(out, logprobs=True, latency_s=0.5)
    assert c.text == "seed=1 hi LENGTH\nThe answer is 5." and c.finish_reason == "length"
    assert c.num_tokens == 3 and c.cumulative_logprob == -1.0 and c.latency_s == 0.5
    assert to_completion(out).cumulative_logprob is None
    out.outputs[0].cumulative_logprob = None  # summed from per-token log-probs instead
    assert to_completion(out, logprobs=True).cumulative_logprob == pytest.approx(-1.0)
    out.outputs[0].finish_reason = None
    assert to_completion(out).finish_reason == "unknown"
    empty = FakeRequestOutput("0", "p", None, None, [])
    assert to_completion(empty).finish_reason == "error"


# ------------------------------------------------------------------------------ backend


def test_backend_chat_path_with_messages_and_seeds():
    fake = fake_vllm()
    backend = VLLMBackend(VLLMConfig(model="tiny", max_model_len=2048), vllm_module=fake)
    llm = fake.created[0]
    assert llm.model == "tiny" and llm.kwargs["max_model_len"] == 2048 and backend.use_chat
    reqs = [make_request(f"question {i}", seed=100 + i, index=i) for i in range(4)]
    out = backend.generate(reqs)
    assert [c.text.split()[0] for c in out] == [f"seed={100 + i}" for i in range(4)]
    assert all(c.finish_reason == "stop" and c.num_tokens == 3 and c.error is None for c in out)
    ((method, inputs, params, extra),) = llm.calls
    assert method == "chat" and extra["use_tqdm"] is False
    assert inputs[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "question 0"}]
    assert [p.seed for p in params] == [100, 101, 102, 103] and all(p.n == 1 for p in params)
    assert extra["chat_template"] is None and extra["chat_template_kwargs"] is None


def test_backend_plain_prompt_without_chat_template():
    fake = fake_vllm(FakeTokenizer(chat_template=None))
    backend = VLLMBackend(model="base-model", vllm_module=fake)
    out = backend.generate([make_request("q")])
    ((method, inputs, _, _),) = fake.created[0].calls
    assert method == "generate" and inputs == ["PLAIN q"]
    assert out[0].text.startswith("seed=5 PLAIN q")


def test_backend_chat_options_and_fold_system():
    fake = fake_vllm()
    cfg = VLLMConfig(model="m", fold_system=True, chat_template="{{ t }}",
                     chat_template_kwargs={"enable_thinking": False}, logprobs=True)
    out = VLLMBackend(cfg, vllm_module=fake).generate([make_request("q")])
    ((_, inputs, params, extra),) = fake.created[0].calls
    assert inputs[0] == [{"role": "user", "content": "Be brief.\n\nq"}]
    assert extra["chat_template"] == "{{ t }}" and extra["chat_template_kwargs"] == {"enable_thinking": False}
    assert params[0].logprobs == 0 and out[0].cumulative_logprob == -1.0


def test_failing_request_isolated_by_bisection():
    fake = fake_vllm()
    backend = VLLMBackend(model="m", vllm_module=fake)
    reqs = [make_request(f"q{i}" + (" TOO_LONG" if i == 5 else ""), index=i) for i in range(8)]
    out = backend.generate(reqs)
    assert [c.finish_reason for c in out] == ["stop"] * 5 + ["error"] + ["stop"] * 2
    assert "maximum model length" in out[5].error and out[5].text == ""
    assert len(fake.created[0].calls) <= 1 + 2 * 3 * 2  # a few halvings, not one call per request


def test_failing_batch_without_bisection_is_all_errors():
    backend = VLLMBackend(model="m", bisect_on_error=False, vllm_module=fake_vllm())
    out = backend.generate([make_request("a"), make_request("b TOO_LONG")])
    assert [c.finish_reason for c in out] == ["error", "error"]


def test_dead_engine_raises():
    fake = fake_vllm()
    backend = VLLMBackend(model="m", vllm_module=fake)
    fake.created[0].dead = True
    with pytest.raises(VLLMEngineError, match="died"):
        backend.generate([make_request("a"), make_request("b")])


def test_empty_and_closed():
    backend = VLLMBackend(model="m", vllm_module=fake_vllm())
    assert backend.generate([]) == []
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.generate([make_request("a")])


def test_use_chat_true_without_template_is_a_config_error():
    with pytest.raises(ValueError, match="chat template"):
        VLLMBackend(model="m", use_chat="true", vllm_module=fake_vllm(FakeTokenizer(chat_template=None)))


def test_real_perspective_messages_pass_through():
    p = load_perspective_set("math", names=["socratic"])[0]
    q = "Ann has 3 pens and buys 4 more. How many pens does she have?"
    req = GenerationRequest("q", p.name, "t", 0, 9, render_messages(p, q), render_prompt(p, q), SamplingConfig())
    fake = fake_vllm()
    VLLMBackend(model="m", vllm_module=fake).generate([req])
    sent = fake.created[0].calls[0][1][0]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert q in sent[-1]["content"]


# ------------------------------------------------------------------------- missing vLLM


def test_missing_vllm_error_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(VLLMNotInstalledError) as info:
        import_vllm()
    msg = str(info.value)
    assert INSTALL_HINT in msg and "GPU" in msg and "openai" in msg
    with pytest.raises(ImportError, match="mind-distill\\[vllm\\]"):
        VLLMBackend(model="m")


def test_module_import_does_not_import_vllm():
    import pipeline.teachers.vllm_backend as mod

    assert "vllm" not in vars(mod)


# -------------------------------------------------------------------------- real vLLM


def test_mapping_with_real_vllm_classes():
    vllm = pytest.importorskip("vllm")
    from vllm.outputs import CompletionOutput

    sp = to_sampling_params(vllm, make_request("x", seed=42), logprobs=True)
    assert isinstance(sp, vllm.SamplingParams)
    assert (sp.n, sp.seed, sp.max_tokens, sp.temperature, sp.top_p, sp.logprobs) == (1, 42, 128, 0.7, 0.9, 0)
    out = CompletionOutput(index=0, text="The answer is 5.", token_ids=[1, 2], cumulative_logprob=-0.5,
                           logprobs=None, finish_reason="stop")
    c = to_completion(SimpleNamespace(outputs=[out]), logprobs=True)
    assert (c.text, c.finish_reason, c.num_tokens, c.cumulative_logprob) == ("The answer is 5.", "stop", 2, -0.5)


@pytest.mark.slow
def test_end_to_end_on_gpu():
    pytest.importorskip("vllm")
    model = os.environ.get("MIND_VLLM_TEST_MODEL")
    if not model:
        pytest.skip("set MIND_VLLM_TEST_MODEL to a small local model to run vLLM end to end")
    backend = VLLMBackend(VLLMConfig(model=model, max_model_len=2048, gpu_memory_utilization=0.5, logprobs=True))
    try:
        p = load_perspective_set("math", names=["stepwise"])[0]
        q = "Tom has 3 apples and buys 2 more. How many apples does he have?"
        sampling = SamplingConfig(temperature=0.8, max_tokens=64)
        messages, prompt = render_messages(p, q), render_prompt(p, q)
        reqs = [GenerationRequest("q", p.name, "t", i, 1000 + i % 2, messages, prompt, sampling) for i in range(3)]
        out = backend.generate(reqs)
        assert all(c.finish_reason in {"stop", "length"} and c.num_tokens for c in out)
        assert all(c.cumulative_logprob is not None for c in out)
        assert out[0].text == out[2].text  # same seed, same prompt -> same sample
    finally:
        backend.close()
