"""Build a tiny, random-weight causal LM and its tokenizer in a local folder (no model hub).

``build_tiny_causal_lm(path)`` trains a small character-level BPE tokenizer with the
``tokenizers`` library on a built-in corpus, wraps it in ``PreTrainedTokenizerFast`` and saves
it with ``save_pretrained`` next to a tiny ``LlamaForCausalLM`` with random weights, so that
``AutoTokenizer.from_pretrained(path)`` and ``AutoModelForCausalLM.from_pretrained(path)``
work offline. Building is deterministic for a given ``seed`` (and torch version).

Every token decodes to printable ASCII (``Metaspace`` pre-tokenizer, ASCII initial alphabet,
``<unk>`` for anything else), so decoded generations are easy to compare in tests.
"""

from __future__ import annotations

import string
from pathlib import Path

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"

#: A simple chat template: ``<|role|>content`` lines, then ``<|assistant|>`` when asked.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_CORPUS = [
    "Tom has 3 apples and buys 2 more. How many apples does he have? 3 + 2 = 5. The answer is 5.",
    "A train travels 60 miles in 2 hours. What is its speed? 60 / 2 = 30. The answer is 30.",
    "Sara had 10 pencils and gave away 4. 10 - 4 = 6. The answer is 6.",
    "Let us think step by step. First, compute the total. Then subtract. #### 42",
    "Question: Is the sky blue? Answer: yes. Question: Is fire cold? Answer: no.",
    "<|system|>You are a careful teacher.\n<|user|>What is 7 times 8?\n<|assistant|>7 * 8 = 56.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat.",
]


def build_tiny_tokenizer(vocab: int = 256, chat_template: bool = False):
    """A ``PreTrainedTokenizerFast`` with at most ``vocab`` tokens (BOS added to plain text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(set(string.printable) - set(" \t\r\x0b\x0c"))  # space is "▁"
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=[*alphabet, "▁"],
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    if chat_template:
        hf_tok.chat_template = CHAT_TEMPLATE
    return hf_tok


def build_tiny_causal_lm(
    path: str | Path,
    vocab: int = 256,
    hidden: int = 32,
    layers: int = 2,
    chat_template: bool = False,
    *,
    heads: int = 4,
    seed: int = 0,
    initializer_range: float = 0.2,
) -> Path:
    """Save a tiny random ``LlamaForCausalLM`` and its tokenizer into ``path``; return ``path``.

    ``vocab`` bounds the tokenizer's vocabulary (the model's vocabulary is the tokenizer's
    size); ``chat_template`` adds :data:`CHAT_TEMPLATE`. A larger ``initializer_range`` than
    Llama's default makes the random model's next-token distributions less flat.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(vocab=vocab, chat_template=chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
