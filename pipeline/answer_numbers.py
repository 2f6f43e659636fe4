"""Numbers in answers: the number token, exact values, canonical text and comparison.

A number is read exactly (a :class:`~fractions.Fraction`) from its token in free text
(:data:`NUMBER_RE`) or from an answer span that may carry LaTeX decoration and unit words
(:func:`parse_strict`); :func:`format_number` writes the canonical text gold and predicted answers
are compared in. Two values are equal within relative 1e-6 / absolute 1e-9
(:func:`numbers_close`); answers that are not plain numbers are compared with ``math-verify``
(:func:`symbolic_equal`, imported on first need). Used by :mod:`pipeline.verify`.
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from functools import lru_cache
from typing import Any

_REL_TOL = Fraction(1, 10**6)
_ABS_TOL = Fraction(1, 10**9)
#: Longer strings never reach math-verify (it has no timeout outside the main thread).
SYMBOLIC_MAX_CHARS = 300

# One number token: ``\frac{a}{b}``, or ``-1,234.5`` / ``.5`` / ``3/4``. A minus sign counts only
# when it is not a binary minus (``16-3`` gives 16 and 3); a token never starts inside a word
# or another number, and dates such as ``04/21/2021`` are not numbers at all. The pattern starts
# with a plain character class, so the regex engine skips other characters fast (5x faster than
# leading look-behinds); look-behinds after that first character decide what it starts.
NUMBER_RE = re.compile(
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
DIGIT_RE = re.compile(r"\d")

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
SYMBOLIC_RE = re.compile(r"\\(?!frac\b)[a-zA-Z]+|\^|√|π")


def _token_parts(token: str) -> tuple[bool, str, str | None]:
    """(negative, numerator text, denominator text or None) of a :data:`NUMBER_RE` token."""
    negative = token[0] in "-−"
    body = token[1:] if negative else token
    if "frac" in body:
        num, den = _FRAC_PARTS_RE.findall(body)
        return negative, num, den
    num, _, den = body.replace(",", "").partition("/")
    return negative, num, den or None


def _token_number(m: re.Match[str], number: Any) -> Any:
    """The value of a match as ``number`` (Fraction or float) makes it; None for a zero denominator."""
    negative, num, den = _token_parts(m.group())
    value = number(num)
    if den is not None:
        divisor = number(den)
        if divisor == 0:
            return None
        value /= divisor
    return -value if negative else value


def token_value(m: re.Match[str]) -> Fraction | None:
    """Exact value of a :data:`NUMBER_RE` match (None for a zero denominator)."""
    return _token_number(m, Fraction)


def token_float(m: re.Match[str]) -> float | None:
    """Cheap float value of a match (to compare candidates); None for a zero denominator."""
    return _token_number(m, float)


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


def numbers_close(a: Fraction, b: Fraction) -> bool:
    """Equal within relative 1e-6 or absolute 1e-9 (exact arithmetic: no float overflow)."""
    if a == b:
        return True
    return abs(a - b) <= max(_REL_TOL * max(abs(a), abs(b)), _ABS_TOL)


def clean_latex(text: str) -> str:
    """Drop decoration that never changes a number: ``$``, ``\\%``, ``\\text{}``, thin spaces."""
    if "\\" not in text and "$" not in text and "%" not in text:
        return text
    text = _LATEX_TEXT_RE.sub(r" \1 ", text)
    text = _LATEX_FRAC_RE.sub(r"\\frac", text.replace("{,}", ","))
    text = _LATEX_NUMBER_SPACE_RE.sub("", text)
    return _LATEX_DROP_RE.sub(_drop_latex, text)


def _drop_latex(m: re.Match[str]) -> str:
    return m.group() if m.group() == "\\\\" else " "


def parse_strict(text: str) -> Fraction | None:
    """The number ``text`` consists of, allowing LaTeX decoration and trailing unit words."""
    cleaned = clean_latex(text).strip().rstrip(".").strip()
    m = NUMBER_RE.match(cleaned)
    if m is not None:
        rest = cleaned[m.end() :].replace(" ", "").replace(".", "")
        if not rest or rest.isalpha():
            return token_value(m)
    return parse_plain(cleaned)


def parse_plain(text: str) -> Fraction | None:
    """Plain numeric text: canonical answers (``-3``, ``0.5``, ``1/3``), also ``1e-7``, ``+5``."""
    text = text.replace(",", "").strip()
    if not _PLAIN_NUMBER_RE.fullmatch(text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def _as_math(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


@lru_cache(maxsize=8192)
def symbolic_equal(predicted: str, gold: str) -> bool | None:
    """Compare with math-verify; None if either side cannot be parsed (or is too long)."""
    if not predicted or len(predicted) > SYMBOLIC_MAX_CHARS or len(gold) > SYMBOLIC_MAX_CHARS:
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
