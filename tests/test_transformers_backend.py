"""The ``transformers`` teacher on a tiny random Llama built locally (tests/tiny_models.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pipeline.teachers.base import Completion, GenerationRequest, SamplingConfig
from pipeline.teachers.transformers_backend import TransformersBackend, TransformersConfig

PROMPTS = [
    "Tom has 3 apples.",
    "A train travels 60 miles in 2 hours. What is its speed?",
    "Is the sky blue?",
    "Let us think step by step. First, compute the total. Then subtract the rest.",
    "7 * 8 =",
    "Sara had 10 pencils and gave away 4. How many are left? Let us think.",
]


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="session")
def tiny_dirs(tiny_lm_dirs: dict[str, Path]) -> dict[str, Path]:
    return tiny_lm_dirs


@pytest.fixture(scope="session")
def backend(tiny_dirs: dict[str, Path]) -> TransformersBackend:
    config = TransformersConfig(model=str(tiny_dirs["plain"]), device="cpu", batch_size=4)
    return TransformersBackend(config)


def req(
    prompt: str,
    *,
    seed: int = 0,
    temperature: float = 0.0,
    max_tokens: int = 12,
    stop: tuple[str, ...] = (),
    qid: str = "q",
    sample_index: int = 0,
    messages: tuple[dict[str, str], ...] | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        question_id=qid,
        perspective="stepwise",
        teacher="tiny",
        sample_index=sample_index,
        seed=seed,
        messages=messages if messages is not None else ({"role": "user", "content": prompt},),
        prompt=prompt,
        sampling=SamplingConfig(
            temperature=temperature, top_p=0.95, max_tokens=max_tokens, stop=stop
        ),
    )


def same(a: Completion, b: Completion) -> bool:
    """Same output; log-probs may differ by float noise between batch shapes."""
    key_a = (a.text, a.finish_reason, a.num_tokens)
    key_b = (b.text, b.finish_reason, b.num_tokens)
    return key_a == key_b and math.isclose(
        a.cumulative_logprob, b.cumulative_logprob, rel_tol=1e-4, abs_tol=1e-4
    )


def test_greedy_batched_equals_loop(backend: TransformersBackend) -> None:
    # mixed lengths, duplicates (shared prefill), more requests than one batch, mixed max_tokens
    reqs = [req(p, qid=f"q{i}", max_tokens=8 + i % 3) for i, p in enumerate(PROMPTS + PROMPTS[:3])]
    batched = backend.generate(reqs)
    loop = backend.generate_unbatched(reqs)
    assert len(batched) == len(reqs)
    assert all(same(a, b) for a, b in zip(batched, loop, strict=True))
    assert all(c.finish_reason in ("stop", "length") and c.text for c in batched)


def test_greedy_matches_model_generate(backend: TransformersBackend) -> None:
    tok, model = backend.tokenizer, backend.model
    ids = tok(PROMPTS[1], return_tensors="pt")
    out = model.generate(**ids, do_sample=False, max_new_tokens=10, eos_token_id=None)
    expected = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert backend.generate([req(PROMPTS[1], max_tokens=10)])[0].text == expected


def test_order_preserved_with_mixed_prompt_lengths(backend: TransformersBackend) -> None:
    order = [3, 0, 5, 2, 4, 1]
    reqs = [req(PROMPTS[i], qid=f"q{i}", max_tokens=6) for i in order]
    batched = backend.generate(reqs)
    for r, c in zip(reqs, batched, strict=True):
        assert same(c, backend.generate([r])[0])


def test_seed_gives_same_sample_alone_and_in_batch(backend: TransformersBackend) -> None:
    target = req(PROMPTS[2], seed=1234, temperature=1.0, max_tokens=16)
    alone = backend.generate([target])[0]
    others = [
        req(p, seed=7 + i, temperature=0.8 + 0.1 * i, max_tokens=5 + 3 * i, qid=f"o{i}")
        for i, p in enumerate(PROMPTS)
    ]
    others.append(req(PROMPTS[2], max_tokens=16, qid="greedy-same-prompt"))  # shares the prefill
    for position in (0, 3, len(others)):
        batch = others[:position] + [target] + others[position:]
        assert same(backend.generate(batch)[position], alone)
    wide = TransformersBackend(backend.config, batch_size=len(others) + 1)
    assert same(wide.generate(others + [target])[-1], alone)
    assert same(backend.generate([target])[0], alone)  # a re-run reproduces it


def test_different_seeds_give_different_samples(backend: TransformersBackend) -> None:
    reqs = [
        req(PROMPTS[0], seed=s, temperature=1.0, max_tokens=16, sample_index=s) for s in range(4)
    ]
    reqs.append(req(PROMPTS[0], seed=0, temperature=1.0, max_tokens=16, sample_index=4))
    texts = [c.text for c in backend.generate(reqs)]
    assert len(set(texts[:4])) == 4
    assert texts[4] == texts[0]  # same seed, same prompt -> same sample


def test_max_tokens_gives_length(backend: TransformersBackend) -> None:
    for temperature in (0.0, 1.0):
        c = backend.generate([req(PROMPTS[3], max_tokens=5, temperature=temperature)])[0]
        assert c.finish_reason == "length"
        assert c.num_tokens == 5


def test_eos_gives_stop_and_counts_eos(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok, model = backend.tokenizer, backend.model
    ids = tok(PROMPTS[4], return_tensors="pt")
    out = model.generate(**ids, do_sample=False, max_new_tokens=10, eos_token_id=None)
    gen = out[0, ids["input_ids"].shape[1] :].tolist()
    k = next(i for i in range(2, len(gen)) if gen[i] not in gen[:i])
    monkeypatch.setattr(backend, "eos_ids", {gen[k]})  # pretend that token is EOS
    c = backend.generate([req(PROMPTS[4], max_tokens=10)])[0]
    assert c.finish_reason == "stop"
    assert c.num_tokens == k + 1
    assert c.text == tok.decode(gen[:k], skip_special_tokens=True)


def test_stop_string_truncates(backend: TransformersBackend) -> None:
    r = req(PROMPTS[5], max_tokens=24)
    full = backend.generate([r])[0]
    assert len(full.text) >= 6
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]
    cut = full.text.find(stop)
    assert cut > 0
    c = backend.generate([req(PROMPTS[5], max_tokens=24, stop=("@@never@@", stop))])[0]
    assert c.finish_reason == "stop"
    assert c.text == full.text[:cut]
    assert c.num_tokens < full.num_tokens
    assert c.cumulative_logprob > full.cumulative_logprob  # fewer tokens summed
    missing = backend.generate([req(PROMPTS[5], max_tokens=24, stop=("@@never@@",))])[0]
    assert same(missing, full)


def test_cumulative_logprob_finite_and_nonpositive(backend: TransformersBackend) -> None:
    reqs = [req(p, seed=i, temperature=t) for i, p in enumerate(PROMPTS) for t in (0.0, 0.7, 1.5)]
    for c in backend.generate(reqs):
        assert c.cumulative_logprob is not None
        assert math.isfinite(c.cumulative_logprob) and c.cumulative_logprob <= 0
        assert c.latency_s is not None and c.latency_s >= 0


def test_chat_template_used_when_present(tiny_dirs: dict[str, Path]) -> None:
    chat = TransformersBackend(model=str(tiny_dirs["chat"]), device="cpu")
    plain = TransformersBackend(model=str(tiny_dirs["chat"]), device="cpu", use_chat="false")
    assert chat.use_chat and not plain.use_chat
    messages = (
        {"role": "system", "content": "Be careful."},
        {"role": "user", "content": "What is 7 times 8?"},
    )
    a = req("prompt one", messages=messages)
    b = req("another plain prompt", messages=messages)
    rendered = chat.render_prompt(a)
    assert rendered == "<s><|system|>Be careful.\n<|user|>What is 7 times 8?\n<|assistant|>"
    assert chat._encode(a) == chat.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    ca, cb = chat.generate([a, b])
    assert same(ca, cb)  # the chat path ignores `prompt`
    pa, pb = plain.generate([a, b])
    assert plain.render_prompt(a) == "prompt one"
    assert pa.text != pb.text
    folded = TransformersBackend(model=str(tiny_dirs["chat"]), device="cpu", fold_system=True)
    assert folded.render_prompt(a) == "<s><|user|>Be careful.\n\nWhat is 7 times 8?\n<|assistant|>"
    # a tokenizer without a template falls back to the prompt; use_chat=true then is an error
    no_template = TransformersBackend(model=str(tiny_dirs["plain"]), device="cpu")
    assert not no_template.use_chat and no_template.render_prompt(a) == "prompt one"
    with pytest.raises(ValueError, match="chat template"):
        TransformersBackend(model=str(tiny_dirs["plain"]), device="cpu", use_chat=True)
    template = "Q: {{ messages[-1]['content'] }}\nA:"
    plain_dir = str(tiny_dirs["plain"])
    custom = TransformersBackend(model=plain_dir, device="cpu", chat_template=template)
    assert custom.use_chat and custom.render_prompt(a) == "Q: What is 7 times 8?\nA:"


def test_failed_batch_is_split_and_isolated(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    reqs = [req(p, qid=f"q{i}", max_tokens=6) for i, p in enumerate(PROMPTS[:4])]
    reqs[2] = req(PROMPTS[2], qid="bad", max_tokens=6)
    expected = backend.generate(reqs)
    real = backend._run_batch

    def flaky(batch):  # fails whenever the bad request is in it
        if any(p.request.question_id == "bad" for p in batch):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(batch)

    monkeypatch.setattr(backend, "_run_batch", flaky)
    got = backend.generate(reqs)
    assert got[2].finish_reason == "error" and "out of memory" in got[2].error
    assert all(same(got[i], expected[i]) for i in (0, 1, 3))


def test_bad_model_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match="no-such-model"):
        TransformersBackend(model=str(missing))
    empty = tmp_path / "empty-model-dir"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty-model-dir"):
        TransformersBackend(model=str(empty))
    with pytest.raises(ValueError, match="batch_size"):
        TransformersConfig(model=str(empty), batch_size=0)
    with pytest.raises(ValueError, match="dtype"):
        TransformersConfig(model=str(empty), dtype="float8")
    with pytest.raises(ValueError, match="use_chat"):
        TransformersConfig(model=str(empty), use_chat="maybe")


def test_generation_does_not_touch_global_rng(backend: TransformersBackend) -> None:
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    backend.generate([req(PROMPTS[0], seed=5, temperature=1.0, max_tokens=4)])
    assert torch.equal(torch.rand(3), expected)


def test_vectorised_decoding_equals_the_row_loop(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy and seeded sampling, mixed max_tokens, shared prompts, rows ending at EOS at
    different steps: the vectorised loop gives exactly the per-row loop's tokens and log-probs,
    and does no per-row work per token (it never calls the per-row stop test)."""
    rows = TransformersBackend.from_pretrained_objects(
        backend.model, backend.tokenizer, backend.config, vectorised=False
    )
    reqs = [
        req(PROMPTS[i % len(PROMPTS)], qid=f"q{i}", seed=100 + i, temperature=(0.0, 0.8, 1.4)[i % 3],
            max_tokens=6 + i % 5)  # fmt: skip
        for i in range(14)
    ]
    # every 5th token id ends a row: rows stop at different steps, some run to max_tokens
    monkeypatch.setattr(backend, "eos_ids", set(range(3, len(backend.tokenizer), 5)))
    monkeypatch.setattr(rows, "eos_ids", backend.eos_ids)

    def per_row_check(row):
        raise AssertionError("per-row stop test called by the vectorised loop")

    expected = rows.generate(reqs)
    monkeypatch.setattr(backend, "_check_finished", per_row_check)
    got = backend.generate(reqs)
    key = [(c.text, c.finish_reason, c.num_tokens, c.cumulative_logprob) for c in got]
    assert key == [(c.text, c.finish_reason, c.num_tokens, c.cumulative_logprob) for c in expected]
    reasons = {c.finish_reason for c in got}
    assert reasons == {"stop", "length"}
    assert len({c.num_tokens for c in got if c.finish_reason == "stop"}) > 1  # rows left at different steps
    (with_stop,) = backend.generate([req(PROMPTS[0], stop=("zz",))])  # stop strings take the per-row loop
    assert with_stop.finish_reason == "error" and "per-row stop test" in with_stop.error
