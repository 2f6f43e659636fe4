"""The numeric answer of a rationale: a marker's span, else the number the concluding statement states.

A span after an explicit marker (:mod:`pipeline.answer_markers`) gives a canonical number, or text
kept for the symbolic comparison (``2^{10}``, and in symbolic tasks any mathematical answer).
Without a marker, :func:`_final_number` reads the concluding statement: text that follows an
answer without changing it (a verification, a closing note, an explanation, a speculating caveat)
is set aside, and within the concluding sentence numbers in asides do not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .answer_markers import SENTENCE_END_RE, cut_sentence, from_markers
from .answer_numbers import (
    DIGIT_RE,
    NUMBER_RE,
    SYMBOLIC_MAX_CHARS,
    SYMBOLIC_RE,
    clean_latex,
    format_number,
    parse_strict,
    token_float,
    token_value,
)

_MATHY_RE = re.compile(r"[\d\\^_+\-*/=()\[\]{}<>|]")  # what a symbolic answer looks like
_BREAK_RE = re.compile(r"(?<!\\)[.!?](?=\s)|\n")
_EQUALS_RE = re.compile(r"=")
_EQUALS_WORD_RE = re.compile(r"\bequals\b|\bis\s+equal\s+to\b")
_RESULT_LEAD_RE = re.compile(r"[\s$*]*")
_OPERATOR_AFTER_RE = re.compile(r"\s*(?:[-+*/×÷x^]\s*[\d(.$]|\()")
_CONCLUSION_RE = re.compile(r"(?:^|(?<=[.!?]\s)|(?<=\n))[ \t]*(?:therefore|thus|hence|so)\b", re.IGNORECASE)
_CHECK_RE = re.compile(
    r"\b(?:check|checking|checks|verify|verifying|verifies|confirm|confirms|confirming)\b", re.IGNORECASE
)
# A closing note, and a cue that the explanation of an answer already stated begins.
_NOTE_RE = re.compile(
    r"(?:^|(?<=[.!?]\s)|(?<=\n))[ \t*_]*(?:note\b|please\s+note\b|keep\s+in\s+mind\b"
    r"|it(?:'s|’s|\s+is)\s+(?:also\s+)?worth\s+(?:noting|mentioning)\b)",
    re.IGNORECASE,
)
# A generalisation or example after the answer: its numbers are hypothetical.
_GENERAL_RE = re.compile(
    r"(?:^|(?<=\n\n))[ \t*_]*(?:in\s+general|for\s+example|for\s+instance)\b", re.IGNORECASE
)
# A reservation after the answer ("However, in reality there can't be a discount of $106 ...").
_CAVEAT_RE = re.compile(
    r"(?:^|(?<=[.!?]\s)|(?<=\n))[ \t*_]*"
    r"(?:however|but|although|though|that\s+said|in\s+reality|realistically)\b",
    re.IGNORECASE,
)
_HEDGE_RE = re.compile(r"\b(?:possible|possibly|perhaps|maybe|might|may|could|intended)\b", re.IGNORECASE)
_EXPLANATION_RE = re.compile(
    r"(?:^|(?<=[.!?:]\s)|(?<=\n))[ \t*_]*(?:explanation\s*:|here(?:'s|’s|\s+is)\s+(?:the\s+|an\s+)?"
    r"(?:explanation|reasoning|breakdown|why|how)\b|to\s+see\s+(?:why|this|how)\b)",
    re.IGNORECASE,
)
# An aside in parentheses: words or operands ("(7 red + 3 green)"); not one that computes the
# answer ("(47+13=60)") nor a bare number restating the one before it ("nineteen (19) books").
_PAREN_RE = re.compile(r"\([^()=\n]*\)")
_BARE_PAREN_RE = re.compile(r"\(\s*\$?[\d.,]+\s*\)")
_RESTATED_RE = re.compile(  # "nineteen (19)", "3 (13)": the parenthesis is the number itself
    r"(?:\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
    r"|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
    r"|hundred|thousand|million))\s*$",
    re.IGNORECASE,
)
_ANY_PAREN_RE = re.compile(r"\([^()\n]*\)")
# Subordinate clauses: a reason, a manner, an accompanying detail ("..., scoring 12 points").
_CLAUSE_RE = re.compile(
    r",\s*(?:as|since|because|scoring|calculated|assuming|given)\b|\s(?:because|since|after)\b", re.IGNORECASE
)
_CLAUSE_END_RE = re.compile(r",\s")
# Gapping: a conjunct that starts with its number and re-uses the main clause's verb ("139 cakes
# left after selling 10 cakes, and 1 pastry left after selling 90 pastries"): the sentence's first
# number leads the same "<number> <noun> <word>" form (here "left"), and no list lies between.
_GAPPED_RE = re.compile(r",\s*and\s+\$?\d[\d,]*(?:\.\d+)?\s+[A-Za-z]+\s+([A-Za-z]+)\b")
_LEAD_RE = re.compile(r"\d[\d,]*(?:\.\d+)?\s+[A-Za-z]+\s+([A-Za-z]+)\b")
_LIST_ITEM_RE = re.compile(r",\s*\$?\d")
# The size of a group the sentence distributes over ("each of the absent 9 guests"): a label of
# the subject, never the quantity the sentence states. The word before the number is an adjective,
# not a plural noun: in "gave each of his friends 2 crackers" the 2 is what each got.
_GROUP_RE = re.compile(
    r"\beach\s+of\s+(?:the|these|those|his|her|their|its|our|your)\s+(?:[a-z]*[a-rt-z]\s+)?(?=\d)",
    re.IGNORECASE,
)
_THAN_RE = re.compile(r"\bthan\s+(?:the\s+|those\s+|what\s+)?\$?(?=\d)")  # "5 more than the 3 who stayed"
_OPENING_CHARS = 300
_TAIL_CHARS = 400
_SENTENCE_LOOKBACK = 600


def extract_numeric(text: str, symbolic_task: bool) -> str | None:
    """The numeric answer of ``text`` (canonical number, or text for the symbolic comparison)."""
    found = from_markers(text, lambda span: _numeric_from_span(span, symbolic_task))
    return found if found is not None else _final_number(text)


def _numeric_from_span(span: str, symbolic_task: bool) -> str | None:
    """The answer a marker's span states: a canonical number, or text for the symbolic path."""
    span = cut_sentence(span).strip()
    if not span:
        return None
    if "\\" in span or "$" in span or "%" in span:
        span = clean_latex(span).strip()
    if symbolic_task:  # the whole span is the answer: "(1, 2)" is not 1
        value = parse_strict(span)
        return format_number(value) if value is not None else _symbolic_text(span, True)
    if "=" in span:  # "The answer is 20 - 2 = 18 apples"
        span = span.rsplit("=", 1)[1]
    if SYMBOLIC_RE.search(span) and parse_strict(span) is None:
        return _symbolic_text(span, False)  # "2^{10}": not its first number
    for m in NUMBER_RE.finditer(span):
        value = token_value(m)
        if value is not None:
            return format_number(value)
    return None


def _symbolic_text(span: str, symbolic_task: bool) -> str | None:
    """A span kept verbatim for the symbolic comparison, or None if it is not a usable answer.

    It must look like mathematics (a digit, a LaTeX command or an operator) or be at most two
    words (``Monday``, ``x``); outside symbolic tasks it must contain a digit.
    """
    span = span.strip(" \t\n.,:;*")
    if not span or len(span) > SYMBOLIC_MAX_CHARS:
        return None
    if not symbolic_task:
        return span if DIGIT_RE.search(span) else None
    return span if _MATHY_RE.search(span) or len(span.split()) <= 2 else None


def _final_number(text: str) -> str | None:
    """The fallback numeric answer: the number the concluding statement states.

    Text that follows the answer without changing it is set aside first: a verification tail
    ("To check: 39 + 41 + 43 = 123") after a "Therefore/So/Thus/Hence" sentence, a closing note
    ("Note: the 6 marbles are not relevant"), everything after an answer stated first
    ("Robin has 405 pieces. Explanation: ..."), and a caveat that only speculates ("However, ...
    it is possible that the total was intended to be $1 per pack": no new number, a hedge). The
    concluding sentence is then the last one with a number in it, unless its only numbers size a
    group ("each of the absent 9 guests didn't receive any"): then the one before. Numbers in its
    asides -- a parenthesis ("10 peaches in each basket (7 red + 3 green)"), a trailing clause
    (", scoring 12 points", ", as 7 + 7 + 7 = 21"), a gapped conjunct parallel to the sentence's
    lead ("139 cakes left ..., and 1 pastry left ..."), a group's size -- are not the answer when
    its main clause states one. If the main clause restates the result
    of an equation (``... = 90``, ``... equals 90``) that result is the answer; otherwise its
    last number is.
    """
    full = _drop_verification_tail(text)
    text = _drop_after_answer(full)
    while True:
        last = _last_number_match(text)
        if last is None:
            return None
        start = _sentence_start(text, last.start())
        end = _sentence_end(text, last.end())
        tokens = [m for m in NUMBER_RE.finditer(text, start, end) if token_float(m) is not None]
        groups = [m.end() for m in _GROUP_RE.finditer(text, start, end)]
        if start == 0 or any(m.start() not in groups for m in tokens):
            break
        text = text[:start]  # the sentence only counts a group ("each of the 9 guests got none")
    asides = _aside_spans(text, start, end) + [(g, g + 1) for g in groups]
    main = [m for m in tokens if not any(a <= m.start() < b for a, b in asides)] or tokens
    stated = {token_float(m) for m in main}
    if len(stated) > 1:
        for result in _equation_results(full):  # the explanation after an answer stated first too
            if token_float(result) in stated:
                return format_number(token_value(result))
    return format_number(token_value(main[-1]))


def _drop_after_answer(text: str) -> str:
    """``text`` without a closing note or a speculating caveat, or up to an answer stated first.

    An answer stated first ("Dan spent $13. To see why, ...") stands unless the explanation
    comes to a conclusion of its own that does not restate it.
    """
    if len(text) > _TAIL_CHARS * 4:
        return text  # long texts: notes and answer-first openings are short-chain habits
    m = _EXPLANATION_RE.search(text, 0, _OPENING_CHARS)
    if m is not None:
        opening = [v for t in NUMBER_RE.finditer(text, 0, m.start()) if (v := token_float(t)) is not None]
        if opening and _explanation_agrees(text, m.end(), opening[-1]):
            return text[: m.start()]
    general = _GENERAL_RE.search(text)  # a paragraph that generalises or gives an example
    if general is not None and _has_number(text, 0, general.start()):
        text = text[: general.start()]
    note = None
    for note in _NOTE_RE.finditer(text):  # noqa: B007 - keep the last match
        pass
    if note is not None and _concludes(text[: note.start()]):
        return text[: note.start()]
    for caveat in _CAVEAT_RE.finditer(text):
        if _only_speculates(text, caveat.start()):
            return text[: caveat.start()]
    return text


def _only_speculates(text: str, pos: int) -> bool:
    """Is ``text[pos:]`` a reservation that only speculates about numbers already read?

    A caveat that recomputes brings a new number, and one that restates the answer does not
    hedge; one that reconsiders the premises ("it is possible that the total was intended to be
    $1 per pack") repeats earlier numbers, and its last sentence with a number hedges.
    """
    before = {v for m in NUMBER_RE.finditer(text, 0, pos) if (v := token_float(m)) is not None}
    after = [v for m in NUMBER_RE.finditer(text, pos) if (v := token_float(m)) is not None]
    if not before or not after or not all(v in before for v in after):
        return False
    last = _last_number_match(text)
    start = max(pos, _sentence_start(text, last.start()))
    return _HEDGE_RE.search(text, start, _sentence_end(text, last.end())) is not None


def _concludes(text: str) -> bool:
    """Is the last sentence of ``text`` with a number a concluding one ("Therefore, ... 28 ...")?"""
    last = _last_number_match(text)
    return last is not None and _CONCLUSION_RE.match(text, _sentence_start(text, last.start())) is not None


def _explanation_agrees(text: str, start: int, opening: float) -> bool:
    """No concluding sentence with a number after ``start``, or the last numbered one restates ``opening``."""
    concluding = (c.end() for c in _CONCLUSION_RE.finditer(text, start))
    if not any(_has_number(text, pos, _sentence_end(text, pos)) for pos in concluding):
        return True
    last = _last_number_match(text[start:])
    if last is None:
        return True
    sentence = range(_sentence_start(text, start + last.start()), _sentence_end(text, start + last.end()))
    return any(token_float(t) == opening for t in NUMBER_RE.finditer(text, sentence.start, sentence.stop))


def _has_number(text: str, start: int, end: int) -> bool:
    return any(token_float(m) is not None for m in NUMBER_RE.finditer(text, start, end))


def _sentence_end(text: str, pos: int) -> int:
    m = _BREAK_RE.search(text, pos)
    return m.start() if m else len(text)


def _aside_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Parentheses, comparands ("than the 3") and subordinate clauses of ``text[start:end]``.

    A clause reaches the next comma (``since 3 days are left, she spent 11``) or the end; only
    clauses after the first number of the sentence count (the answer precedes its asides). A
    parenthesis that computes (``(47+13=60)``) or restates a number (``nineteen (19)``) is no aside.
    """
    spans = [
        (m.start(), m.end())
        for m in _PAREN_RE.finditer(text, start, end)
        if not (_BARE_PAREN_RE.fullmatch(m.group()) and _RESTATED_RE.search(text, start, m.start()))
    ]
    spans += [(m.start(), m.end() + 1) for m in _THAN_RE.finditer(text, start, end)]
    first = NUMBER_RE.search(text, start, end)
    if first is not None:
        for clause in _CLAUSE_RE.finditer(text, first.end(), end):
            parens = [(m.start(), m.end()) for m in _ANY_PAREN_RE.finditer(text, clause.end(), end)]
            stop_pos = next(
                (c.start() for c in _CLAUSE_END_RE.finditer(text, clause.end(), end)
                 if not any(a <= c.start() < b for a, b in parens)),
                end,
            )
            spans.append((clause.start(), stop_pos))
        gap = _GAPPED_RE.search(text, first.end(), end)  # "5 red, 3 blue, and 2 green" is a list, no gapping
        if gap is not None and not _LIST_ITEM_RE.search(text, first.end(), gap.start()):
            lead = _LEAD_RE.match(text, first.start())
            if lead is not None and lead.group(1).lower() == gap.group(1).lower():
                spans.append((gap.start(), end))
    return spans


def _drop_verification_tail(text: str) -> str:
    """``text`` up to its last concluding sentence with a number, if a check/verification follows."""
    lowered = text.lower()
    if "check" not in lowered and "verif" not in lowered and "confirm" not in lowered:
        return text
    cut = None
    for conclusion in _CONCLUSION_RE.finditer(text):
        end = SENTENCE_END_RE.search(text, conclusion.end())
        end_pos = end.start() if end else len(text)
        if NUMBER_RE.search(text, conclusion.end(), end_pos):
            cut = end_pos
    if cut is not None and _CHECK_RE.search(text, cut):
        return text[:cut]
    return text


def _last_number_match(text: str) -> re.Match[str] | None:
    """The last number token with a valid value (the tail is scanned first: texts can be long)."""
    starts = [0]
    if len(text) > _TAIL_CHARS:
        cut = text.find(" ", len(text) - _TAIL_CHARS)  # cut at a space: never split a number
        if cut != -1:
            starts.insert(0, cut)
    for start in starts:
        for m in reversed(list(NUMBER_RE.finditer(text, start))):
            if token_float(m) is not None:
                return m
    return None


def _sentence_start(text: str, pos: int) -> int:
    """Start of the sentence (or line) around ``pos`` (looking back a bounded distance)."""
    start = max(0, pos - _SENTENCE_LOOKBACK)
    for brk in _BREAK_RE.finditer(text, start, pos):
        start = brk.end()
    return start


def _equation_results(text: str) -> Iterator[re.Match[str]]:
    """Right-hand sides of equations (``= 12``, ``equals 12``) that are plain results, last first."""
    signs = [m.end() for m in _EQUALS_RE.finditer(text)]
    if "equal" in text:
        signs = sorted(signs + [m.end() for m in _EQUALS_WORD_RE.finditer(text)])
    for end in reversed(signs):
        m = NUMBER_RE.match(text, _RESULT_LEAD_RE.match(text, end).end())
        if m is not None and not _OPERATOR_AFTER_RE.match(text, m.end()):  # "= 2 + 8" is no result
            yield m
