"""The student: a locally built tokenizer and tiny Llama for the synthetic world, and loading of
any local Hugging Face causal LM as a student (docs/design.md).

Nothing here downloads anything.

- :func:`build_world_tokenizer`: a byte-level BPE tokenizer trained deterministically on text of
  the synthetic world (questions of ``train`` and ``retention_train`` in the plain prompt format,
  and the reference teacher's rationales under every perspective). Digits are always single
  tokens (so arithmetic stays learnable); every text round-trips exactly (byte level: no unknown
  characters, not even for unseen templates). Merges may cross spaces (``"\\nThe answer is "``
  is one token), which keeps sequences short on a CPU. The tokenizer adds ``<bos>`` to plain text
  (what :func:`distill.formatting.encode_prompt` expects) and has no chat template.
- :func:`tiny_llama_config` / :func:`build_student`: a seeded, randomly initialised
  ``LlamaForCausalLM`` of a named size.
- :func:`load_student`: any local causal-LM folder (model + tokenizer), optionally wrapped in
  LoRA adapters (``peft``); :func:`check_tokenizer_matches` catches a tokenizer that does not
  belong to the model.
- the embedded default student (the tiny model after stage-0 pretraining) is built by
  :mod:`distill.default_student`, which uses this module and :mod:`distill.pretrain`.
- :func:`greedy_generate`: a small batched greedy decoder (used by stage 0 to measure retention).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.ids import derive_seed

from .formatting import PLAIN_TEMPLATE, PromptStyle, encode_prompt, resolve_style

if TYPE_CHECKING:  # pragma: no cover
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from pipeline.synthetic import WorldConfig

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SIZES",
    "UNK",
    "LoraSettings",
    "StudentLoadError",
    "TokenizerSettings",
    "TokenizerMismatchError",
    "apply_lora",
    "build_student",
    "build_world_tokenizer",
    "check_tokenizer_matches",
    "greedy_generate",
    "load_student",
    "set_torch_threads",
    "tiny_llama_config",
    "world_corpus",
]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3
TOKENIZER_VERSION = 1  # bump when the way the tokenizer is built changes

#: Named student sizes (``tiny`` is the embedded default).
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384),
    "small": dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=768),
}


# ---------------------------------------------------------------- threads
def set_torch_threads(num_threads: int | None) -> None:
    """Set torch's intra-op threads (``None``: leave torch's default). On a shared CPU, 1 thread
    avoids OpenMP oversubscription stalls when another process is busy."""
    if num_threads is None:
        return
    import torch

    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)


# ---------------------------------------------------------------- tokenizer
@dataclass(frozen=True)
class TokenizerSettings:
    """What the world tokenizer is trained on (all of it enters the default student's hash)."""

    vocab_size: int = 1024
    num_questions: int = 2000  # train-split questions in the corpus
    num_retention: int = 500  # retention_train questions in the corpus
    rationale_share: float = 0.25  # share of those questions written under every perspective
    cross_word_merges: bool = True  # False: GPT-2 style word-level pre-tokenization

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "version": TOKENIZER_VERSION}


def world_corpus(
    seed: int = 0, settings: TokenizerSettings | None = None, world: WorldConfig | None = None
) -> list[str]:
    """The tokenizer's training text: plain prompts of ``train`` and ``retention_train`` questions
    and, for a share of them, the reference teacher's rationale under every perspective
    (prompt and rationale are separate texts, as :mod:`distill.formatting` encodes them)."""
    from pipeline.synthetic import PERSPECTIVES, ReferenceTeacher, WorldConfig, iter_problems

    settings = settings or TokenizerSettings()
    world = world or WorldConfig()
    teacher = ReferenceTeacher()
    corpus: list[str] = []
    for split, n in (("train", settings.num_questions), ("retention_train", settings.num_retention)):
        n_rationales = round(n * settings.rationale_share)
        for i, problem in enumerate(iter_problems(world, split, 0, n)):
            corpus.append(PLAIN_TEMPLATE.format(question=problem.question.strip()))
            if i < n_rationales:
                for perspective in PERSPECTIVES:
                    s = derive_seed("world-tokenizer", seed, problem.question_id, perspective)
                    corpus.append(teacher.write(problem, perspective, s).text)
    return corpus


def build_world_tokenizer(
    seed: int = 0,
    vocab_size: int | None = None,
    *,
    settings: TokenizerSettings | None = None,
    world: WorldConfig | None = None,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE ``PreTrainedTokenizerFast`` for the synthetic world (see module doc).

    ``seed`` selects the teacher samples of the corpus; ``vocab_size`` overrides
    ``settings.vocab_size``. The same arguments give a byte-identical ``tokenizer.json``.
    Special tokens: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3 (never produced: every
    byte has a token).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    settings = settings or TokenizerSettings()
    if vocab_size is not None:
        settings = dataclasses.replace(settings, vocab_size=vocab_size)
    n_base = len(SPECIAL_TOKENS) + 256
    if settings.vocab_size < n_base:
        raise ValueError(f"vocab_size must be >= {n_base} (4 special tokens + 256 bytes), got {settings.vocab_size}")

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=not settings.cross_word_merges),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(world_corpus(seed, settings, world), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
        padding_side="right",
    )


# ---------------------------------------------------------------- model
def tiny_llama_config(tokenizer: Any, size: str = "tiny", **overrides: Any) -> LlamaConfig:
    """A ``LlamaConfig`` of a named size (:data:`SIZES`) for ``tokenizer`` (tied embeddings,
    1024 positions); ``overrides`` replace any field."""
    from transformers import LlamaConfig

    if size not in SIZES:
        raise ValueError(f"unknown student size {size!r}; choose one of {', '.join(SIZES)}")
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("the student's tokenizer needs an EOS and a PAD token")
    fields: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        attention_bias=False,
        attention_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        **SIZES[size],
    )
    fields["num_key_value_heads"] = fields["num_attention_heads"]
    fields.update(overrides)
    return LlamaConfig(**fields)


def build_student(tokenizer: Any, size: str = "tiny", seed: int = 0, **overrides: Any) -> LlamaForCausalLM:
    """A randomly initialised ``LlamaForCausalLM`` (float32); the weights depend only on
    (config, seed). Torch's global RNG state is left untouched."""
    import torch
    from transformers import LlamaForCausalLM

    config = tiny_llama_config(tokenizer, size, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


# ---------------------------------------------------------------- loading
class StudentLoadError(ValueError):
    """A student folder that is missing or does not hold a loadable causal LM + tokenizer."""


class TokenizerMismatchError(ValueError):
    """The tokenizer does not belong to the student model."""


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (``peft``) for the student: rank, scale, dropout and which modules get them
    (``"all-linear"`` or module names such as ``("q_proj", "v_proj")``)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))


def apply_lora(model: Any, settings: LoraSettings) -> Any:
    """Wrap ``model`` in LoRA adapters; only the adapters (and ``modules_to_save``) are trainable."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - peft is an optional extra
        raise ImportError("LoRA needs the 'peft' package: pip install 'mind-distill[peft]'") from exc
    target = settings.target_modules
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target if isinstance(target, str) else list(target),
        bias=settings.bias,
        modules_to_save=list(settings.modules_to_save) if settings.modules_to_save else None,
    )
    return get_peft_model(model, config)


def _config_eos_ids(model: Any) -> list[int]:
    eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, (list, tuple)) else [int(eos)]


def check_tokenizer_matches(model: Any, tokenizer: Any) -> Any:
    """Check that ``tokenizer`` can feed ``model``; fix what is safe to fix, with a warning.

    Raises :class:`TokenizerMismatchError` when a token id would index past the model's embedding
    matrix, or when there is no EOS token at all. A tokenizer without EOS takes the model
    config's; one without PAD uses EOS as PAD. Returns the (possibly updated) tokenizer.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    n_tokens = len(tokenizer)
    max_id = max(tokenizer.get_vocab().values(), default=-1) + 1
    if max(n_tokens, max_id) > rows:
        raise TokenizerMismatchError(
            f"the tokenizer has {max(n_tokens, max_id)} tokens but the student's embedding has only {rows} rows: "
            "this tokenizer does not belong to the model (load the tokenizer saved with the model)"
        )
    if tokenizer.eos_token_id is None:
        eos_ids = [e for e in _config_eos_ids(model) if 0 <= e < n_tokens]
        if not eos_ids:
            raise TokenizerMismatchError("neither the tokenizer nor the model config defines an EOS token")
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_ids[0])
        warnings.warn(f"the tokenizer has no EOS token; using the model's ({tokenizer.eos_token!r})", stacklevel=2)
    elif (eos_ids := _config_eos_ids(model)) and tokenizer.eos_token_id not in eos_ids:
        warnings.warn(
            f"the tokenizer's EOS id {tokenizer.eos_token_id} is not the model's ({eos_ids}); "
            "generation stops at the tokenizer's",
            stacklevel=2,
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
        warnings.warn(f"the tokenizer has no PAD token; using EOS ({tokenizer.eos_token!r}) as PAD", stacklevel=2)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def _resolve_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or dtype == "auto":
        return "auto" if dtype == "auto" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}  # fmt: skip
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}, 'auto' or a torch.dtype")
    return names[dtype]


def load_student(
    path: str | os.PathLike[str],
    *,
    lora: LoraSettings | None = None,
    dtype: Any = "float32",
    device: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a Hugging Face causal LM: a local folder (``save_pretrained`` output with
    its tokenizer) or a hub id (``Qwen/Qwen2.5-1.5B-Instruct``: the local cache first, a download only
    when the hub is reachable and ``HF_HUB_OFFLINE`` is off; ``revision`` a branch, tag or commit;
    ``trust_remote_code`` off by default). ``lora`` wraps the model in trainable LoRA adapters (a PEFT
    model); ``dtype`` is a name, a ``torch.dtype`` or ``"auto"``; ``device`` e.g. ``"cpu"``, ``"cuda"``
    (default: where ``from_pretrained`` puts it, the CPU). Failures raise :class:`StudentLoadError`
    with one line naming the folder or id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.hub import looks_local, missing_model_message

    name = os.fspath(path)
    if looks_local(name):
        folder = Path(name).expanduser()
        if not folder.exists():
            raise StudentLoadError(f"student model folder {folder} does not exist")
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise StudentLoadError(f"{folder} is not a Hugging Face model folder (no config.json)")
        name = str(folder)
    hub = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **hub)
    except (OSError, ValueError, TypeError) as exc:
        raise StudentLoadError(missing_model_message(name, "student tokenizer", exc)) from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=_resolve_dtype(dtype), **hub)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StudentLoadError(missing_model_message(name, "student model", exc)) from exc
    check_tokenizer_matches(model, tokenizer)
    if device is not None:
        model = model.to(device)
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


# ---------------------------------------------------------------- greedy decoding
def greedy_generate(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    style: PromptStyle = "plain",
) -> list[str]:
    """Greedy completions (text after the prompt, special tokens dropped) for ``questions``,
    prompted as :func:`distill.formatting.encode_prompt` does; batched, left-padded, shortest
    prompts batched together. The model is put in eval mode and restored after."""
    import torch

    resolved = resolve_style(tokenizer, style)
    prompts = [encode_prompt(tokenizer, q, resolved) for q in questions]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = max(len(prompts[i]) for i in idx)
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    p = prompts[i]
                    ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
                    mask[row, width - len(p) :] = 1
                gen = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=pad_id,
                )
                for row, i in enumerate(idx):
                    out[i] = tokenizer.decode(gen[row, width:], skip_special_tokens=True)
    finally:
        model.train(was_training)
    return out
