"""How a question and a rationale become student tokens, for training and evaluation alike.

Two prompt styles:

- **plain** (a base model, or the embedded tiny student): ``"Question: {question}\\nAnswer:\\n"``
  followed by the rationale and the EOS token;
- **chat** (a tokenizer with a chat template): the question as the user turn, rendered with
  ``apply_chat_template(add_generation_prompt=True)``; the rationale is the assistant's reply,
  followed by EOS.

``style="auto"`` picks chat when the tokenizer has a template. Loss is taken on the completion
(rationale + EOS) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

PLAIN_TEMPLATE = "Question: {question}\nAnswer:\n"

PromptStyle = Literal["auto", "plain", "chat"]


def resolve_style(tokenizer: Any, style: PromptStyle = "auto") -> Literal["plain", "chat"]:
    """``chat`` when asked for (the tokenizer must have a template) or available under ``auto``."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if style == "chat" and not has_template:
        raise ValueError("prompt style 'chat' needs a tokenizer with a chat template")
    if style == "auto":
        return "chat" if has_template else "plain"
    return style


def prompt_text(tokenizer: Any, question: str, style: Literal["plain", "chat"]) -> str:
    """The text the student sees before it writes the rationale."""
    question = question.strip()
    if style == "chat":
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    return PLAIN_TEMPLATE.format(question=question)


@dataclass(frozen=True)
class Encoded:
    """Token ids of prompt + completion; ``prompt_len`` tokens of context, the rest is trained."""

    input_ids: list[int]
    prompt_len: int

    @property
    def completion_len(self) -> int:
        return len(self.input_ids) - self.prompt_len


def encode_prompt(tokenizer: Any, question: str, style: Literal["plain", "chat"]) -> list[int]:
    """Prompt token ids (special tokens as the template or tokenizer adds them)."""
    text = prompt_text(tokenizer, question, style)
    # a chat template already contains its special tokens; a plain prompt gets the tokenizer's BOS
    return tokenizer(text, add_special_tokens=style == "plain")["input_ids"]


def encode_example(
    tokenizer: Any, question: str, rationale: str, style: Literal["plain", "chat"], max_length: int | None = None
) -> Encoded:
    """Prompt + rationale + EOS, truncated from the end of the completion to ``max_length``."""
    prompt = encode_prompt(tokenizer, question, style)
    completion = tokenizer(rationale.strip(), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is None:
        raise ValueError("the student's tokenizer has no EOS token")
    ids = prompt + completion + [tokenizer.eos_token_id]
    if max_length is not None and len(ids) > max_length:
        if len(prompt) >= max_length:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit max_length={max_length}")
        ids = ids[:max_length]
    return Encoded(ids, len(prompt))
