"""The answers of the non-numeric kinds: ``yes``/``no``, an option letter, a normalised string.

Each kind reads an explicit marker's span first (:mod:`pipeline.answer_markers`), then falls back
to its own rule: a sentence-initial ``Yes,`` / ``No.``; the last ``(X)`` / ``option X``; the
concluding line's quoted or final token.
"""

from __future__ import annotations

import re

from .answer_markers import cut_sentence, from_markers

#: Accepted yes/no words and the canonical answer each means.
YESNO_WORDS = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}
_YESNO_SPAN_RE = re.compile(r"[\W_]*(yes|no|true|false)\b", re.IGNORECASE)
_YESNO_SENTENCE_RE = re.compile(
    r"(?:^|[.!?:;]\s+|\n\s*|\b(?:so|thus|therefore|hence|overall|in\s+conclusion|in\s+summary)\s*,?\s*)"
    r"[*_\"']*(yes|no)[*_\"']*\s*(?:[,.!;:]|$)",
    re.IGNORECASE,
)

_CHOICE_SPAN_RE = re.compile(
    r"[\s*:\"']*(?:(?:option|choice)\s*)?(?:\(([A-Ja-j])\)|([A-J])(?:\)|(?![\w'])))", re.IGNORECASE
)
_CHOICE_FALLBACK_RE = re.compile(r"\(([A-Ja-j])\)|\b(?:[Oo]ption|[Cc]hoice)\s+([A-J])\b")
#: An option letter alone, as gold answers and predicted answers are written ("(b)", "B)", "b").
CHOICE_GOLD_RE = re.compile(r"\s*\(?\s*([A-Ja-j])\s*\)?\s*[.:]?\s*")

_QUOTED_RE = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”|(?<!\w)'([^'\n]+)'(?!\w)")
_STRING_LEAD_RE = re.compile(r"(?s).*(?::|=|\b(?:is|are|get|gives\s+us|gives|yields|be)\b)", re.IGNORECASE)
_SHORT_LINE_WORDS = 4
_NON_ALNUM_RE = re.compile(r"[\W_]+")


def _yesno_from_span(span: str) -> str | None:
    m = _YESNO_SPAN_RE.match(span)
    return YESNO_WORDS[m.group(1).lower()] if m else None


def extract_yesno(text: str) -> str | None:
    """``yes`` / ``no`` from a marker, else the last sentence that opens (or concludes) with one."""
    found = from_markers(text, _yesno_from_span)
    if found is not None:
        return found
    last = None
    for last in _YESNO_SENTENCE_RE.finditer(text):  # noqa: B007 - keep the last match
        pass
    return YESNO_WORDS[last.group(1).lower()] if last else None


def _choice_from_span(span: str) -> str | None:
    m = _CHOICE_SPAN_RE.match(span)
    if m is None:
        return None
    if m.group(2) and not m.group(2).isupper():  # a bare lower-case letter is a word ("a")
        return None
    return (m.group(1) or m.group(2)).upper()


def extract_choice(text: str) -> str | None:
    """The option letter from a marker, else the last ``(X)`` / ``option X``."""
    found = from_markers(text, _choice_from_span)
    if found is not None:
        return found
    last = None
    for last in _CHOICE_FALLBACK_RE.finditer(text):  # noqa: B007 - keep the last match
        pass
    return (last.group(1) or last.group(2)).upper() if last else None


def normalize_string(text: str) -> str:
    """Case-folded letters and digits only (``"OEH E"`` -> ``"oehe"``)."""
    return _NON_ALNUM_RE.sub("", text).casefold()


def _quoted_text(m: re.Match[str]) -> str:
    return next(g for g in m.groups() if g is not None)


def _string_from_span(span: str) -> str | None:
    quoted = _QUOTED_RE.search(span)
    answer = normalize_string(_quoted_text(quoted) if quoted else cut_sentence(span))
    return answer or None


def extract_string(text: str) -> str | None:
    """The normalised string answer from a marker, else from the concluding line."""
    found = from_markers(text, _string_from_span)
    if found is not None:
        return found
    # The concluding line, from the end: one that states the answer ("...: x", "... is x", a
    # quote), or a bare short line ("LNET", "n a o y"); chit-chat lines are skipped.
    for line in reversed(text.strip().splitlines()):
        lead = _STRING_LEAD_RE.match(line)
        quoted = _QUOTED_RE.search(line, lead.end() if lead else 0)
        if quoted:
            answer = normalize_string(_quoted_text(quoted))
        elif lead:
            answer = normalize_string(cut_sentence(line[lead.end() :]))
        elif len(line.split()) <= _SHORT_LINE_WORDS:
            answer = normalize_string(line)
        else:
            continue
        if answer:
            return answer
    return None
