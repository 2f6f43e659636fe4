"""Answer extraction and verification per task (docs/design.md).

Every task has a *kind* that selects the extractor and the comparison:

``numeric``
    Answers are exact rationals written canonically: ``"18"``, ``"0.5"``, ``"-3"``,
    ``"1234.5"``; a rational without a finite decimal expansion is written ``"p/q"``
    (``"1/3"``). Thousands separators, currency signs, trailing units (``42 apples``) and a
    percent sign are dropped: ``42%`` reads as ``42``, the convention of GSM8K/SVAMP-style
    data, where a "what percent" question has the number of percent as its gold answer (so
    ``0.42`` does *not* match a gold ``42%``). Scientific notation reads as its value (``1e3`` is
    ``1000``); LaTeX decoration is dropped (``\\text{ cm}^2`` units, ``10,\\!080`` thin spaces;
    ``\\\\`` row breaks of a ``pmatrix`` are kept). Comparison: exact, else within relative 1e-6 /
    absolute 1e-9. An answer that is not a plain number (``2^{10}``, ``3 \\times 4``; in the
    *symbolic* task ``math`` also gold answers such as ``\\frac{\\sqrt{3}}{2}`` or ``x^2+1``) is
    kept as text and compared with ``math-verify``; that slow path runs only when the cheap
    numeric path cannot decide.
``yesno``
    ``"yes"`` / ``"no"`` (``true``/``false`` are accepted as synonyms).
``choice``
    An upper-case option letter ``"A"``..``"J"`` (``"(b)"``, ``"B)"`` and ``"b"`` normalise to it).
``string``
    Case-folded letters and digits only (``"OEH E"`` -> ``"oehe"``), e.g. last-letter concatenation.

Extraction order: explicit answer markers first -- ``#### x``, ``\\boxed{x}``, ``... answer is x``,
a line starting ``A: x``, a line starting ``Answer: x`` or ``final answer: x`` (per marker, the
last occurrence that yields an answer wins) -- then a per-kind fallback: the number the
concluding statement states (numeric, see :func:`_final_number`: an answer stated before its
explanation, before a closing note, or before a caveat that only speculates about numbers already
read, wins over later numbers, and so does a sentence's main clause over its parentheses and asides,
a gapped second conjunct, or the size of a group it distributes over), a sentence-initial ``Yes,`` /
``No.`` (yesno), the last ``(X)`` / ``option X`` (choice), the concluding line's quoted or final
token (string). When nothing is found the answer is ``None`` and so is the verdict ("cannot
judge"): the verifier never guesses.

Speed: everything before the symbolic fallback is precompiled regular expressions (tens of
thousands of rationales per second); math-verify (sympy) is imported on first need.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "KINDS",
    "Verdict",
    "extract_answer",
    "format_number",
    "judge",
    "normalize_gold",
    "register_task",
    "task_kind",
    "verify",
]

KINDS = ("numeric", "yesno", "choice", "string")

_TASKS: dict[str, str] = {
    "arith": "numeric",
    "gsm8k": "numeric",
    "svamp": "numeric",
    "asdiv": "numeric",
    "math": "numeric",
    "strategyqa": "yesno",
    "date_understanding": "choice",
    "commonsense_qa": "choice",
    "gpqa": "choice",
    "last_letter": "string",
}
#: Numeric tasks whose gold answers may be expressions (kept as text, compared with math-verify).
_SYMBOLIC_TASKS = frozenset({"math"})

_REL_TOL = Fraction(1, 10**6)
_ABS_TOL = Fraction(1, 10**9)
#: Longer strings never reach math-verify (it has no timeout outside the main thread).
_SYMBOLIC_MAX_CHARS = 300


class Verdict(NamedTuple):
    """Result of :func:`verify`."""

    predicted_answer: str | None  # normalised extracted answer, None if none found
    is_correct: bool | None  # None = cannot judge (no answer found, unparseable)


# --------------------------------------------------------------------------- task registry


def task_kind(task: str) -> str:
    """The kind of ``task`` (``numeric``, ``yesno``, ``choice``, ``string``)."""
    try:
        return _TASKS[task]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_TASKS))
        raise ValueError(
            f"unknown task {task!r}; known tasks: {known} (add one with register_task)"
        ) from None


def register_task(task: str, kind: str) -> None:
    """Register ``task`` with answer ``kind``; re-registering with a different kind is an error."""
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r} for task {task!r}; expected one of {KINDS}")
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"task name must be a non-empty string, got {task!r}")
    current = _TASKS.get(task)
    if current is not None and current != kind:
        raise ValueError(f"task {task!r} is already registered as {current!r}, not {kind!r}")
    _TASKS[task] = kind


# --------------------------------------------------------------------------- numbers

# One number token: ``\frac{a}{b}``, or ``-1,234.5`` / ``.5`` / ``3/4``. A minus sign counts only
# when it is not a binary minus (``16-3`` gives 16 and 3); a token never starts inside a word
# or another number, and dates such as ``04/21/2021`` are not numbers at all. The pattern starts
# with a plain character class, so the regex engine skips other characters fast (5x faster than
# leading look-behinds); look-behinds after that first character decide what it starts.
_NUMBER_RE = re.compile(
    r"""
    [-−\\\d.]
    (?:
        (?<=[-−])(?<![\w.)\]}/][-−])                      # a sign, not a binary minus
        (?: \s*\\[dt]?frac\s*\{\s*\d+(?:\.\d+)?\s*\}\s*\{\s*\d+(?:\.\d+)?\s*\}
          | (?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+(?![\w/]|\.\d)|(?:/\d+)?(?![\d/]|\.\d))
          | \.\d+(?:[eE][-+]?\d+(?![\w/]|\.\d)|(?:/\d+)?(?![\d/]|\.\d)) )
      | (?<=\\)[dt]?frac\s*\{\s*\d+(?:\.\d+)?\s*\}\s*\{\s*\d+(?:\.\d+)?\s*\}
      | (?<=\d)(?<![\w./]\d)(?:\d{0,2}(?:,\d{3})+|\d*)(?:\.\d+)?
        (?:[eE][-+]?\d+(?![\w/]|\.\d)|(?:/\d+)?(?![\d/]|\.\d))  # 1.5e-3: scientific notation
      | (?<=\.)(?<![\w./]\.)\d+(?:[eE][-+]?\d+(?![\w/]|\.\d)|(?:/\d+)?(?![\d/]|\.\d))
    )
    """,
    re.VERBOSE,
)
_FRAC_PARTS_RE = re.compile(r"\{\s*([\d.]+)\s*\}")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?:/\d+)?")
_DIGIT_RE = re.compile(r"\d")

# ``\text{ cm}^2``: a unit word, with the power of a unit (``m^2``) dropped along with the markup.
_LATEX_TEXT_RE = re.compile(
    r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
    r"(?:(?<=[A-Za-z ]\})\s*\^\s*(?:\{\s*[23]\s*\}|[23])(?![\d}]))?"
)
# Thin spaces inside a number (``10,\!080``, ``10\,080``) vanish; ``\\`` (a matrix row break) stays.
_LATEX_NUMBER_SPACE_RE = re.compile(r"(?<=[\d,])\\[,!]\s*(?=\d)")
_LATEX_DROP_RE = re.compile(
    r"\\\\|\\[,;:! ]|\\left|\\right|\\approx|\\sim|\^\s*\{?\s*\\circ\s*\}?|\\displaystyle|\\?\$|\\?%"
)
_LATEX_FRAC_RE = re.compile(r"\\[dt]frac")
_SYMBOLIC_RE = re.compile(r"\\(?!frac\b)[a-zA-Z]+|\^|√|π")
_MATHY_RE = re.compile(r"[\d\\^_+\-*/=()\[\]{}<>|]")


def _token_parts(token: str) -> tuple[bool, str, str | None]:
    """(negative, numerator text, denominator text or None) of a :data:`_NUMBER_RE` token."""
    negative = token[0] in "-−"
    body = token[1:] if negative else token
    if "frac" in body:
        num, den = _FRAC_PARTS_RE.findall(body)
        return negative, num, den
    num, _, den = body.replace(",", "").partition("/")
    return negative, num, den or None


def _token_value(m: re.Match[str]) -> Fraction | None:
    """Exact value of a :data:`_NUMBER_RE` match (None for a zero denominator)."""
    negative, num, den = _token_parts(m.group())
    value = Fraction(num)
    if den is not None:
        divisor = Fraction(den)
        if divisor == 0:
            return None
        value /= divisor
    return -value if negative else value


def _token_float(m: re.Match[str]) -> float | None:
    """Cheap float value of a match (to compare candidates); None for a zero denominator."""
    negative, num, den = _token_parts(m.group())
    value = float(num)
    if den is not None:
        divisor = float(den)
        if divisor == 0:
            return None
        value /= divisor
    return -value if negative else value


def format_number(value: Fraction | int) -> str:
    """Canonical text of an exact number: ``18``, ``0.5``, ``-3``, ``1234.5``, else ``p/q``."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    rest, twos, fives = value.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = value.numerator * 10**places // value.denominator  # exact
    digits = str(abs(scaled)).rjust(places + 1, "0")
    sign = "-" if scaled < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def _close(a: Fraction, b: Fraction) -> bool:
    """Equal within relative 1e-6 or absolute 1e-9 (exact arithmetic: no float overflow)."""
    if a == b:
        return True
    return abs(a - b) <= max(_REL_TOL * max(abs(a), abs(b)), _ABS_TOL)


def _clean_latex(text: str) -> str:
    """Drop decoration that never changes a number: ``$``, ``\\%``, ``\\text{}``, thin spaces."""
    if "\\" not in text and "$" not in text and "%" not in text:
        return text
    text = _LATEX_TEXT_RE.sub(r" \1 ", text)
    text = _LATEX_FRAC_RE.sub(r"\\frac", text.replace("{,}", ","))
    text = _LATEX_NUMBER_SPACE_RE.sub("", text)
    return _LATEX_DROP_RE.sub(_drop_latex, text)


def _drop_latex(m: re.Match[str]) -> str:
    return m.group() if m.group() == "\\\\" else " "


def _parse_strict(text: str) -> Fraction | None:
    """The number ``text`` consists of, allowing LaTeX decoration and trailing unit words."""
    cleaned = _clean_latex(text).strip().rstrip(".").strip()
    m = _NUMBER_RE.match(cleaned)
    if m is not None:
        rest = cleaned[m.end() :].replace(" ", "").replace(".", "")
        if not rest or rest.isalpha():
            return _token_value(m)
    return _parse_plain(cleaned)


def _parse_plain(text: str) -> Fraction | None:
    """Plain numeric text: canonical answers (``-3``, ``0.5``, ``1/3``), also ``1e-7``, ``+5``."""
    text = text.replace(",", "").strip()
    if not _PLAIN_NUMBER_RE.fullmatch(text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


# --------------------------------------------------------------------------- answer markers

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
_SENTENCE_END_RE = re.compile(r"(?<!\\)[.!?;](?=\s|$)|\n")  # not LaTeX's ``\!`` or ``\;``


def _boxed_spans(text: str) -> Iterator[str]:
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
        yield from _boxed_spans(text)
    lowered = text.lower()
    if "answer" in lowered or "correct" in lowered:
        yield from _regex_spans(_ANSWER_IS_RE, text)
    if "A" in text and ":" in text:
        yield from _regex_spans(_A_LINE_RE, text)
    if "answer" in lowered:
        yield from _regex_spans(_ANSWER_COLON_RE, text)


def _from_markers(text: str, parse_span: Callable[[str], str | None]) -> str | None:
    """The first marker span (in priority order) that ``parse_span`` reads an answer from."""
    for span in _marker_spans(text):
        answer = parse_span(span)
        if answer is not None:
            return answer
    return None


def _cut_sentence(span: str) -> str:
    """The first sentence of ``span`` (a ``.`` inside a number does not end it)."""
    m = _SENTENCE_END_RE.search(span)
    return span[: m.start()] if m else span


# --------------------------------------------------------------------------- numeric extraction

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


def _extract_numeric(text: str, symbolic_task: bool) -> str | None:
    found = _from_markers(text, lambda span: _numeric_from_span(span, symbolic_task))
    return found if found is not None else _final_number(text)


def _numeric_from_span(span: str, symbolic_task: bool) -> str | None:
    """The answer a marker's span states: a canonical number, or text for the symbolic path."""
    span = _cut_sentence(span).strip()
    if not span:
        return None
    if "\\" in span or "$" in span or "%" in span:
        span = _clean_latex(span).strip()
    if symbolic_task:  # the whole span is the answer: "(1, 2)" is not 1
        value = _parse_strict(span)
        return format_number(value) if value is not None else _symbolic_text(span, True)
    if "=" in span:  # "The answer is 20 - 2 = 18 apples"
        span = span.rsplit("=", 1)[1]
    if _SYMBOLIC_RE.search(span) and _parse_strict(span) is None:
        return _symbolic_text(span, False)  # "2^{10}": not its first number
    for m in _NUMBER_RE.finditer(span):
        value = _token_value(m)
        if value is not None:
            return format_number(value)
    return None


def _symbolic_text(span: str, symbolic_task: bool) -> str | None:
    """A span kept verbatim for the symbolic comparison, or None if it is not a usable answer.

    It must look like mathematics (a digit, a LaTeX command or an operator) or be at most two
    words (``Monday``, ``x``); outside symbolic tasks it must contain a digit.
    """
    span = span.strip(" \t\n.,:;*")
    if not span or len(span) > _SYMBOLIC_MAX_CHARS:
        return None
    if not symbolic_task:
        return span if _DIGIT_RE.search(span) else None
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
        tokens = [m for m in _NUMBER_RE.finditer(text, start, end) if _token_float(m) is not None]
        groups = [m.end() for m in _GROUP_RE.finditer(text, start, end)]
        if start == 0 or any(m.start() not in groups for m in tokens):
            break
        text = text[:start]  # the sentence only counts a group ("each of the 9 guests got none")
    asides = _aside_spans(text, start, end) + [(g, g + 1) for g in groups]
    main = [m for m in tokens if not any(a <= m.start() < b for a, b in asides)] or tokens
    stated = {_token_float(m) for m in main}
    if len(stated) > 1:
        for result in _equation_results(full):  # the explanation after an answer stated first too
            if _token_float(result) in stated:
                return format_number(_token_value(result))
    return format_number(_token_value(main[-1]))


def _drop_after_answer(text: str) -> str:
    """``text`` without a closing note or a speculating caveat, or up to an answer stated first.

    An answer stated first ("Dan spent $13. To see why, ...") stands unless the explanation
    comes to a conclusion of its own that does not restate it.
    """
    if len(text) > _TAIL_CHARS * 4:
        return text  # long texts: notes and answer-first openings are short-chain habits
    m = _EXPLANATION_RE.search(text, 0, _OPENING_CHARS)
    if m is not None:
        opening = [v for t in _NUMBER_RE.finditer(text, 0, m.start()) if (v := _token_float(t)) is not None]
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
    before = {v for m in _NUMBER_RE.finditer(text, 0, pos) if (v := _token_float(m)) is not None}
    after = [v for m in _NUMBER_RE.finditer(text, pos) if (v := _token_float(m)) is not None]
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
    return any(_token_float(t) == opening for t in _NUMBER_RE.finditer(text, sentence.start, sentence.stop))


def _has_number(text: str, start: int, end: int) -> bool:
    return any(_token_float(m) is not None for m in _NUMBER_RE.finditer(text, start, end))


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
    first = _NUMBER_RE.search(text, start, end)
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
        end = _SENTENCE_END_RE.search(text, conclusion.end())
        end_pos = end.start() if end else len(text)
        if _NUMBER_RE.search(text, conclusion.end(), end_pos):
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
        for m in reversed(list(_NUMBER_RE.finditer(text, start))):
            if _token_float(m) is not None:
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
        m = _NUMBER_RE.match(text, _RESULT_LEAD_RE.match(text, end).end())
        if m is not None and not _OPERATOR_AFTER_RE.match(text, m.end()):  # "= 2 + 8" is no result
            yield m


# --------------------------------------------------------------------------- yes/no, choice, string

_YESNO_WORDS = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}
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
_CHOICE_GOLD_RE = re.compile(r"\s*\(?\s*([A-Ja-j])\s*\)?\s*[.:]?\s*")

_QUOTED_RE = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”|(?<!\w)'([^'\n]+)'(?!\w)")
_STRING_LEAD_RE = re.compile(r"(?s).*(?::|=|\b(?:is|are|get|gives\s+us|gives|yields|be)\b)", re.IGNORECASE)
_SHORT_LINE_WORDS = 4
_NON_ALNUM_RE = re.compile(r"[\W_]+")


def _yesno_from_span(span: str) -> str | None:
    m = _YESNO_SPAN_RE.match(span)
    return _YESNO_WORDS[m.group(1).lower()] if m else None


def _extract_yesno(text: str) -> str | None:
    found = _from_markers(text, _yesno_from_span)
    if found is not None:
        return found
    last = None
    for last in _YESNO_SENTENCE_RE.finditer(text):  # noqa: B007 - keep the last match
        pass
    return _YESNO_WORDS[last.group(1).lower()] if last else None


def _choice_from_span(span: str) -> str | None:
    m = _CHOICE_SPAN_RE.match(span)
    if m is None:
        return None
    if m.group(2) and not m.group(2).isupper():  # a bare lower-case letter is a word ("a")
        return None
    return (m.group(1) or m.group(2)).upper()


def _extract_choice(text: str) -> str | None:
    found = _from_markers(text, _choice_from_span)
    if found is not None:
        return found
    last = None
    for last in _CHOICE_FALLBACK_RE.finditer(text):  # noqa: B007 - keep the last match
        pass
    return (last.group(1) or last.group(2)).upper() if last else None


def _normalize_string(text: str) -> str:
    return _NON_ALNUM_RE.sub("", text).casefold()


def _quoted_text(m: re.Match[str]) -> str:
    return next(g for g in m.groups() if g is not None)


def _string_from_span(span: str) -> str | None:
    quoted = _QUOTED_RE.search(span)
    answer = _normalize_string(_quoted_text(quoted) if quoted else _cut_sentence(span))
    return answer or None


def _extract_string(text: str) -> str | None:
    found = _from_markers(text, _string_from_span)
    if found is not None:
        return found
    # The concluding line, from the end: one that states the answer ("...: x", "... is x", a
    # quote), or a bare short line ("LNET", "n a o y"); chit-chat lines are skipped.
    for line in reversed(text.strip().splitlines()):
        lead = _STRING_LEAD_RE.match(line)
        quoted = _QUOTED_RE.search(line, lead.end() if lead else 0)
        if quoted:
            answer = _normalize_string(_quoted_text(quoted))
        elif lead:
            answer = _normalize_string(_cut_sentence(line[lead.end() :]))
        elif len(line.split()) <= _SHORT_LINE_WORDS:
            answer = _normalize_string(line)
        else:
            continue
        if answer:
            return answer
    return None


def extract_answer(text: str, task: str) -> str | None:
    """The normalised final answer stated in ``text`` for ``task``, or None if none is found."""
    kind = task_kind(task)
    if not text:
        return None
    if kind == "numeric":
        return _extract_numeric(text, task in _SYMBOLIC_TASKS)
    if kind == "yesno":
        return _extract_yesno(text)
    if kind == "choice":
        return _extract_choice(text)
    return _extract_string(text)


# --------------------------------------------------------------------------- gold answers


def normalize_gold(gold: str | int | float, task: str) -> str:
    """Canonical gold answer for ``task``; ValueError with the reason if it is not valid."""
    kind = task_kind(task)
    if kind == "numeric":
        return _normalize_numeric_gold(gold, task)
    if not isinstance(gold, str | bool) or (isinstance(gold, bool) and kind != "yesno"):
        raise ValueError(f"gold answer {gold!r} is not text (task {task!r}, kind {kind!r})")
    if kind == "yesno":
        word = str(gold).strip().strip(".").lower()
        if word not in _YESNO_WORDS:
            raise ValueError(f"gold answer {gold!r} is not yes/no (task {task!r})")
        return _YESNO_WORDS[word]
    if kind == "choice":
        m = _CHOICE_GOLD_RE.fullmatch(gold)
        if m is None:
            raise ValueError(f"gold answer {gold!r} is not an option letter A-J (task {task!r})")
        return m.group(1).upper()
    text = _normalize_string(gold)
    if not text:
        raise ValueError(f"gold answer {gold!r} has no letters or digits (task {task!r})")
    return text


def _normalize_numeric_gold(gold: object, task: str) -> str:
    if isinstance(gold, bool) or gold is None:
        raise ValueError(f"gold answer {gold!r} is not a number or text (task {task!r})")
    if isinstance(gold, int):
        return format_number(gold)
    if isinstance(gold, float):
        if gold != gold or gold in (float("inf"), float("-inf")):
            raise ValueError(f"gold answer {gold!r} is not a finite number (task {task!r})")
        return format_number(Fraction(repr(gold)))  # repr: 0.1 is 0.1, not its binary expansion
    if not isinstance(gold, str):
        raise ValueError(f"gold answer {gold!r} is not a number or text (task {task!r})")
    text = _unbox(gold.strip().removeprefix("####"))
    value = _parse_strict(text)
    if value is not None:
        return format_number(value)
    if task in _SYMBOLIC_TASKS and text.strip("$ \t\n"):
        return text.strip("$ \t\n")
    raise ValueError(f"gold answer {gold!r} is not a number (task {task!r})")


def _unbox(text: str) -> str:
    """The content of the first ``\\boxed{}`` if ``text`` starts with one."""
    text = text.strip()
    if text.startswith(("\\boxed", "\\fbox")):
        spans = list(_boxed_spans(text))
        if spans:
            return spans[-1]
    return text


@lru_cache(maxsize=65536, typed=True)
def _gold_cached(gold: str | int | float, task: str) -> tuple[str, Fraction | None]:
    """Normalised gold text and its numeric value (None unless numeric); cached: golds repeat."""
    text = normalize_gold(gold, task)
    return text, _parse_plain(text) if task_kind(task) == "numeric" else None


# --------------------------------------------------------------------------- judging


def judge(predicted: str | None, gold: str, task: str) -> bool | None:
    """Is ``predicted`` the ``gold`` answer of ``task``? None when it cannot be judged."""
    try:
        gold_text, gold_value = _gold_cached(gold, task)
    except TypeError:  # unhashable gold: let normalize_gold name the problem
        normalize_gold(gold, task)
        raise
    if predicted is None:
        return None
    kind = task_kind(task)
    if kind == "numeric":
        return _judge_numeric(predicted, gold_text, gold_value, task in _SYMBOLIC_TASKS)
    if kind == "yesno":
        word = predicted.strip().strip(".").lower()
        return _YESNO_WORDS[word] == gold_text if word in _YESNO_WORDS else None
    if kind == "choice":
        m = _CHOICE_GOLD_RE.fullmatch(predicted)
        return m.group(1).upper() == gold_text if m else None
    pred = _normalize_string(predicted)
    return pred == gold_text if pred else None


def _judge_numeric(
    predicted: str, gold_text: str, gold_value: Fraction | None, symbolic_task: bool
) -> bool | None:
    if predicted == gold_text:  # both canonical already: the common case needs no parsing
        return True
    pred_value = _parse_plain(predicted)
    if pred_value is None and not _SYMBOLIC_RE.search(_clean_latex(predicted)):
        pred_value = _parse_strict(predicted)  # raw text such as "$1,234.50"
    if pred_value is not None and gold_value is not None:
        return _close(pred_value, gold_value)
    if not symbolic_task and not _DIGIT_RE.search(predicted):
        return None  # no number at all: nothing to compare
    return _symbolic_equal(predicted.strip(), gold_text)


def _as_math(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


@lru_cache(maxsize=8192)
def _symbolic_equal(predicted: str, gold: str) -> bool | None:
    """Compare with math-verify; None if either side cannot be parsed (or is too long)."""
    if not predicted or len(predicted) > _SYMBOLIC_MAX_CHARS or len(gold) > _SYMBOLIC_MAX_CHARS:
        return None
    from math_verify import parse, verify as math_verify  # heavy (sympy): imported on first need

    # math-verify's timeout uses signal.alarm, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(_as_math(gold), parsing_timeout=timeout)
        pred_parsed = parse(_as_math(predicted), parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(math_verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - a parser failure means "cannot judge", never a crash
        return None


def verify(text: str, gold: str, task: str) -> Verdict:
    """Extract the answer from ``text`` and judge it against ``gold`` for ``task``."""
    predicted = extract_answer(text, task)
    return Verdict(predicted, judge(predicted, gold, task))
