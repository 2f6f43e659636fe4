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

import re
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


# ---------------------------------------------------------------- training targets with an answer span
DEFAULT_ANSWER_TEMPLATE = "The answer is {answer}."
# a rationale's own closing statement of its answer ("The answer is 12.", "#### 12", "Answer: 12",
# "\\boxed{12}" alone on the last line): replaced by the canonical answer line, never repeated after it
_FINAL_LINE = re.compile(r"^\s*(?:#{2,}|(?:so,?\s+|therefore,?\s+|thus,?\s+)?the\s+(?:final\s+)?answer\s+is\b|answer\s*:|\\boxed\{)", re.I)


@dataclass(frozen=True)
class TrainingExample(Encoded):
    """``Encoded`` plus the answer span: ``input_ids[answer_start : answer_start + answer_len]`` are the
    final answer's tokens inside the canonical answer line (``answer_len`` 0: no answer line)."""

    answer_start: int = 0
    answer_len: int = 0


def split_final_line(rationale: str) -> str:
    """The rationale without its last line when that line is its own final-answer statement."""
    text = rationale.strip()
    body, _, last = text.rpartition("\n")
    return body.rstrip() if body and _FINAL_LINE.match(last) else text


def answer_line_ids(tokenizer: Any, gold_answer: str, template: str) -> tuple[list[int], int, int]:
    """``(ids, start, length)`` of ``"\\n" + template.format(answer=gold)`` and of the answer's tokens in it.

    The line is tokenised on its own, so every view of a question ends with the very same tokens:
    the answer spans of a question's candidates align token for token (the consistency terms compare
    the student's distributions at these positions)."""
    line = "\n" + template.format(answer=gold_answer.strip())
    enc = tokenizer(line, add_special_tokens=False, return_offsets_mapping=True)
    lo = 1 + template.index("{answer}") if gold_answer.strip() else -1
    hi = lo + len(gold_answer.strip())
    toks = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > lo and a < hi] if lo >= 0 else []
    if not toks:
        raise ValueError(f"answer {gold_answer!r} has no tokens in the answer line {line!r}")
    return list(enc["input_ids"]), toks[0], toks[-1] - toks[0] + 1


def encode_training_example(
    tokenizer: Any,
    question: str,
    rationale: str,
    gold_answer: str,
    style: Literal["plain", "chat"],
    max_length: int | None = None,
    answer_template: str | None = DEFAULT_ANSWER_TEMPLATE,
) -> TrainingExample:
    """Prompt + rationale + canonical answer line + EOS, with the answer's token span.

    With ``answer_template`` the rationale's own final-answer line (if any) is replaced by
    ``template.format(answer=gold)``; a too-long example loses the end of its rationale body, never
    the answer line. ``answer_template=None`` keeps the rationale as it is (no span; as
    :func:`encode_example`)."""
    if not answer_template:
        enc = encode_example(tokenizer, question, rationale, style, max_length)
        return TrainingExample(enc.input_ids, enc.prompt_len)
    if tokenizer.eos_token_id is None:
        raise ValueError("the student's tokenizer has no EOS token")
    prompt = encode_prompt(tokenizer, question, style)
    body = tokenizer(split_final_line(rationale), add_special_tokens=False)["input_ids"]
    line, start, length = answer_line_ids(tokenizer, gold_answer, answer_template)
    tail = line + [tokenizer.eos_token_id]
    if max_length is not None and len(prompt) + len(body) + len(tail) > max_length:
        room = max_length - len(prompt) - len(tail)
        if room < 0:
            raise ValueError(f"prompt of {len(prompt)} tokens plus the answer line does not fit max_length={max_length}")
        body = body[:room]
    ids = prompt + body + tail
    return TrainingExample(ids, len(prompt), len(prompt) + len(body) + start, length)
