"""One measurement of the scale benchmark, inside its own process (``python -m benchmarks.scale _child``).

A random-weight student of the real architecture (a Qwen2 config: no download), a word-level tokenizer of
its vocabulary built with ``tokenizers``, and random token sequences shaped as the benchmark asks: questions
with ``K`` candidates of ``length`` tokens (a 32-token prompt, the rationale, a 4-token answer span shared by
the question's candidates, EOS). One trainer (``sft``: TRL's SFTTrainer over the same rows; ``all``,
``mind``, ``mind_separate``: the MindTrainer) trains ``warmup + measured`` steps; the child reports the
measured steps' median time, the tokens a step processes, and the process's peak resident memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks._common import median, report_at_exit, vm_hwm_mb

#: student sizes: Qwen2 shapes (tied embeddings) of about 1M, 10M and 100M parameters
SIZES: dict[str, dict[str, int]] = {
    "1m": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "intermediate_size": 384, "vocab_size": 4096},
    "10m": {"hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
            "intermediate_size": 768, "vocab_size": 16384},
    "100m": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4,
             "intermediate_size": 2048, "vocab_size": 32000},
    # Qwen2.5-1.5B's shape (config.json of the public model): the GPU script's student
    "1.5b": {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
             "intermediate_size": 8960, "vocab_size": 151936},
}  # fmt: skip
#: trainer configurations: ``sft`` = TRL's SFTTrainer, else MindConfig fields of a MindTrainer
CONFIGS: dict[str, dict[str, Any]] = {
    "sft": {"trainer": "sft"},
    "all": {"strategy": "all"},
    "mind": {"strategy": "mind"},
    "mind_separate": {"strategy": "mind", "scoring": "separate"},
}
PROMPT_TOKENS = 32
ANSWER_TOKENS = 4
SEED = 0


def build_model_and_tokenizer(size: str) -> tuple[Any, Any]:
    """A seeded random Qwen2 causal LM of ``SIZES[size]`` and a tokenizer of its vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    shape = SIZES[size]
    vocab = {f"t{i}": i for i in range(shape["vocab_size"])}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t3"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="t0", eos_token="t1", bos_token="t2",
                                        unk_token="t3")  # fmt: skip
    config = Qwen2Config(**shape, tie_word_embeddings=True, max_position_embeddings=2048, pad_token_id=0,
                         eos_token_id=1, bos_token_id=2)  # fmt: skip
    torch.manual_seed(SEED)
    return Qwen2ForCausalLM(config), tokenizer


def build_questions(num_questions: int, k: int, length: int, vocab: int) -> list[Any]:
    """Random questions with ``k`` candidates of ``length`` tokens each (prompt, rationale, answer, EOS)."""
    import torch

    from distill.data import QuestionCandidates, View

    g = torch.Generator().manual_seed(SEED)
    questions = []
    body = length - PROMPT_TOKENS - ANSWER_TOKENS - 1
    for q in range(num_questions):
        prompt = torch.randint(4, vocab, (PROMPT_TOKENS,), generator=g).tolist()
        answer = torch.randint(4, vocab, (ANSWER_TOKENS,), generator=g).tolist()
        views = []
        for v in range(k):
            ids = prompt + torch.randint(4, vocab, (body,), generator=g).tolist() + answer + [1]
            views.append(View(v, [ids], [PROMPT_TOKENS], answer_starts=[length - ANSWER_TOKENS - 1],
                              answer_lens=[ANSWER_TOKENS], flawed=[-1]))  # fmt: skip
        questions.append(QuestionCandidates(f"q{q}", "", "0", "arith", views))
    return questions


def make_trainer(spec: dict[str, Any], out: Path) -> tuple[Any, int]:
    """The configuration's trainer over fresh random data, and the tokens one step processes."""
    model, tokenizer = build_model_and_tokenizer(spec["size"])
    k, length, batch = spec["k"], spec["length"], spec["batch_questions"]
    steps = spec["warmup_steps"] + spec["measured_steps"]
    questions = build_questions(batch * steps, k, length, SIZES[spec["size"]]["vocab_size"])
    cuda = spec.get("device", "cpu") == "cuda"  # a GPU trains in bf16, as users run it; the CPU in fp32
    common = dict(output_dir=str(out), max_steps=steps, learning_rate=1e-4, seed=SEED, max_length=length,
                  activation_checkpointing=True, bf16=cuda, use_cpu=not cuda, report_to=[], save_strategy="no",
                  logging_steps=10**9, disable_tqdm=True, dataloader_num_workers=0,
                  train_sampling_strategy="sequential")  # fmt: skip
    conf = CONFIGS[spec["config"]]
    if conf.get("trainer") == "sft":  # the same rows as independent prompt/completion examples
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        rows = [(v.samples[0], v.prompt_lens[0]) for q in questions for v in q.views]
        data = Dataset.from_dict({"input_ids": [ids for ids, _ in rows],
                                  "completion_mask": [[0] * p + [1] * (len(ids) - p) for ids, p in rows]})  # fmt: skip
        args = SFTConfig(**common, per_device_train_batch_size=batch * k, completion_only_loss=True)
        return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer), batch * k * length
    from distill.config import MindConfig
    from distill.data import CandidateStore
    from distill.trainer import MindTrainer

    extra = {"meta_warmup_steps": 1} if conf["strategy"] == "mind" else {}  # inside the discarded steps
    args = MindConfig(**common, per_device_train_batch_size=batch, **extra, **conf)
    store = CandidateStore(questions, k, SEED)
    trainer = MindTrainer(model, args, store, [f"v{i}" for i in range(k)], processing_class=tokenizer)
    return trainer, batch * k * length


def child(spec_path: str, result_path: str) -> None:
    """The child process: one measurement, written to ``result_path`` when the process exits (also after a
    failure, with what was measured so far)."""
    state: dict[str, Any] = {}
    report_at_exit(result_path, lambda: state)
    measure(json.loads(Path(spec_path).read_text()), state)


def measure(spec: dict[str, Any], state: dict[str, Any]) -> None:
    """Train one configuration of one cell (or decode) into ``state``: step times, tokens, memory, FLOPs."""
    import torch
    from transformers import TrainerCallback

    torch.set_num_threads(spec["torch_threads"])
    if spec["config"] == "decode":
        state.update(decode(spec))
        return
    trainer, tokens = make_trainer(spec, Path(spec["tmp"]) / "out")
    ends: list[float] = []
    flops: list[float] = []  # the MIND trainer's compute account after every step
    mind = getattr(trainer, "mind", None)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state_, control, **kwargs):  # noqa: ANN001
            if spec.get("device") == "cuda":
                torch.cuda.synchronize()
            ends.append(time.perf_counter())
            flops.append(mind.flops if mind is not None else 0.0)

    trainer.add_callback(Clock())
    cuda = spec.get("device", "cpu") == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    state["vm_hwm_mb_before_train"] = vm_hwm_mb()
    start = time.perf_counter()
    trainer.train()
    warm = spec["warmup_steps"]
    periods = [b - a for a, b in zip(ends[warm - 1 : -1], ends[warm:], strict=True)]
    state.update(
        params=sum(p.numel() for p in trainer.model.parameters()), steps=len(ends), train_s=time.perf_counter() - start,
        step_s=median(periods), periods_s=periods, tokens_per_step=tokens, tokens_per_s=tokens / median(periods),
        vm_hwm_mb=vm_hwm_mb(),
    )  # fmt: skip
    # what training adds to the process's peak (activations, gradients, optimizer state): the part that grows
    state["train_mb"] = state["vm_hwm_mb"] - state["vm_hwm_mb_before_train"]
    state["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    # FLOPs of a measured step: the MIND trainer's account (6 N D trained + 2 N D forward-only), or 6 N D for SFT
    measured = len(ends) - warm
    state["flops_per_step"] = ((flops[-1] - flops[warm - 1]) / measured if mind is not None
                               else 6.0 * state["params"] * tokens)  # fmt: skip


def decode(spec: dict[str, Any]) -> dict[str, Any]:
    """Batched greedy decoding (``distill.eval_decode.evaluate_model``, the evaluator's path) of
    ``decode_questions`` random prompts of ``length // 8`` tokens, ``decode_new_tokens`` each."""
    import torch

    from distill.eval_decode import evaluate_model

    model, tokenizer = build_model_and_tokenizer(spec["size"])
    cuda = spec.get("device", "cpu") == "cuda"
    model = model.to("cuda", dtype=torch.bfloat16) if cuda else model
    g = torch.Generator().manual_seed(SEED)
    vocab = SIZES[spec["size"]]["vocab_size"]
    prompt = max(spec["length"] // 8, 8)
    questions = [{"question": " ".join(f"t{i}" for i in torch.randint(4, vocab, (prompt,), generator=g).tolist()),
                  "gold_answer": "1", "task": "arith", "question_id": f"q{n}"}
                 for n in range(spec["decode_questions"])]  # fmt: skip
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    evaluate_model(model, tokenizer, questions[:2], batch_size=2, max_new_tokens=4, prompt_style="plain")  # warm-up
    start = time.perf_counter()
    result = evaluate_model(model, tokenizer, questions, batch_size=spec["decode_batch"],
                            max_new_tokens=spec["decode_new_tokens"], prompt_style="plain")  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    generated = sum(r["num_tokens"] or 0 for r in result.rows)
    return {"params": sum(p.numel() for p in model.parameters()), "decode_s": seconds, "generated_tokens": generated,
            "decode_tokens_per_s": generated / seconds, "vm_hwm_mb": vm_hwm_mb(),
            "cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}  # fmt: skip
