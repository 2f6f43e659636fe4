"""Explicit answer markers in a rationale: ``#### x``, ``\\boxed{x}``, ``... answer is x``, ``A: x``,
``Answer: x`` / ``final answer: x``.

:func:`from_markers` tries the spans after them in that priority order (per marker, the last
occurrence first) with a per-kind span parser; the extractors of :mod:`pipeline.extract_numeric`
and :mod:`pipeline.extract_text` fall back to their own rules when no span yields an answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE_RE = re.compile(r"[{}]")
_ANSWER_IS_RE = re.compile(
    r"\b(?:answer(?:\s+(?:choice|option)|\s+to\s+(?:this|the)\s+(?:problem|question))?"
    r"|correct\s+(?:choice|option))"
    r"\s+(?:is|was|would\s+be|will\s+be|should\s+be|must\s+be)\b[\s:*]*([^\n]*)",
    re.IGNORECASE,
)
_A_LINE_RE = re.compile(r"^[ \t*#>]*A[ \t]*:[ \t*]*([^\n]*)", re.MULTILINE)
# "Answer:" at the start of a line, or "final answer:" anywhere (not "to check our answer: ...").
_ANSWER_COLON_RE = re.compile(
    r"(?:^[ \t*#>]*|\bfinal\s+)answer\s*\**\s*:[\s*]*([^\n]*)", re.IGNORECASE | re.MULTILINE
)
SENTENCE_END_RE = re.compile(r"(?<!\\)[.!?;](?=\s|$)|\n")  # not LaTeX's ``\!`` or ``\;``


def boxed_spans(text: str) -> Iterator[str]:
    """Contents of every ``\\boxed{...}`` (nested braces matched), last first; linear time."""
    openers = {m.end() - 1 for m in _BOXED_RE.finditer(text)}  # positions of the boxes' "{"
    bounds, stack = [], []
    for brace in _BRACE_RE.finditer(text):
        if brace.group() == "{":
            stack.append(brace.start())
        elif stack:
            start = stack.pop()
            if start in openers:
                bounds.append((start + 1, brace.start()))
    for start, end in sorted(bounds, reverse=True):
        yield text[start:end]


def _regex_spans(pattern: re.Pattern[str], text: str) -> list[str]:
    return [m.group(1) for m in pattern.finditer(text)][::-1]


def _marker_spans(text: str) -> Iterator[str]:
    """Spans after explicit answer markers, in priority order (last occurrence first per marker)."""
    if "####" in text:
        yield from _regex_spans(_HASH_RE, text)
    if "\\boxed" in text or "\\fbox" in text:
        yield from boxed_spans(text)
    lowered = text.lower()
    if "answer" in lowered or "correct" in lowered:
        yield from _regex_spans(_ANSWER_IS_RE, text)
    if "A" in text and ":" in text:
        yield from _regex_spans(_A_LINE_RE, text)
    if "answer" in lowered:
        yield from _regex_spans(_ANSWER_COLON_RE, text)


def from_markers(text: str, parse_span: Callable[[str], str | None]) -> str | None:
    """The first marker span (in priority order) that ``parse_span`` reads an answer from."""
    for span in _marker_spans(text):
        answer = parse_span(span)
        if answer is not None:
            return answer
    return None


def cut_sentence(span: str) -> str:
    """The first sentence of ``span`` (a ``.`` inside a number does not end it)."""
    m = SENTENCE_END_RE.search(span)
    return span[: m.start()] if m else span
