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
concluding statement states (numeric, see :func:`pipeline.extract_numeric._final_number`: an answer stated before its
explanation, before a closing note, or before a caveat that only speculates about numbers already
read, wins over later numbers, and so does a sentence's main clause over its parentheses and asides,
a gapped second conjunct, or the size of a group it distributes over), a sentence-initial ``Yes,`` /
``No.`` (yesno), the last ``(X)`` / ``option X`` (choice), the concluding line's quoted or final
token (string). When nothing is found the answer is ``None`` and so is the verdict ("cannot
judge"): the verifier never guesses.

Speed: everything before the symbolic fallback is precompiled regular expressions (tens of
thousands of rationales per second); math-verify (sympy) is imported on first need.

Layout: this module holds the task registry, gold normalisation and the verdict; the numbers
(parsing, canonical text, comparison, math-verify) are in :mod:`pipeline.answer_numbers`, the
answer markers in :mod:`pipeline.answer_markers`, and the extractors per kind in
:mod:`pipeline.extract_numeric` and :mod:`pipeline.extract_text`.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

from .answer_markers import boxed_spans
from .answer_numbers import (
    DIGIT_RE,
    SYMBOLIC_RE,
    clean_latex,
    format_number,
    numbers_close,
    parse_plain,
    parse_strict,
    symbolic_equal,
)
from .extract_numeric import extract_numeric
from .extract_text import CHOICE_GOLD_RE, YESNO_WORDS, extract_choice, extract_string, extract_yesno, normalize_string

__all__ = [
    "KINDS",
    "Verdict",
    "extract_answer",
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


# --------------------------------------------------------------------------- extraction


def extract_answer(text: str, task: str) -> str | None:
    """The normalised final answer stated in ``text`` for ``task``, or None if none is found."""
    kind = task_kind(task)
    if not text:
        return None
    if kind == "numeric":
        return extract_numeric(text, task in _SYMBOLIC_TASKS)
    if kind == "yesno":
        return extract_yesno(text)
    if kind == "choice":
        return extract_choice(text)
    return extract_string(text)


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
        if word not in YESNO_WORDS:
            raise ValueError(f"gold answer {gold!r} is not yes/no (task {task!r})")
        return YESNO_WORDS[word]
    if kind == "choice":
        m = CHOICE_GOLD_RE.fullmatch(gold)
        if m is None:
            raise ValueError(f"gold answer {gold!r} is not an option letter A-J (task {task!r})")
        return m.group(1).upper()
    text = normalize_string(gold)
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
    value = parse_strict(text)
    if value is not None:
        return format_number(value)
    if task in _SYMBOLIC_TASKS and text.strip("$ \t\n"):
        return text.strip("$ \t\n")
    raise ValueError(f"gold answer {gold!r} is not a number (task {task!r})")


def _unbox(text: str) -> str:
    """The content of the first ``\\boxed{}`` if ``text`` starts with one."""
    text = text.strip()
    if text.startswith(("\\boxed", "\\fbox")):
        spans = list(boxed_spans(text))
        if spans:
            return spans[-1]
    return text


@lru_cache(maxsize=65536, typed=True)
def _gold_cached(gold: str | int | float, task: str) -> tuple[str, Fraction | None]:
    """Normalised gold text and its numeric value (None unless numeric); cached: golds repeat."""
    text = normalize_gold(gold, task)
    return text, parse_plain(text) if task_kind(task) == "numeric" else None


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
        return YESNO_WORDS[word] == gold_text if word in YESNO_WORDS else None
    if kind == "choice":
        m = CHOICE_GOLD_RE.fullmatch(predicted)
        return m.group(1).upper() == gold_text if m else None
    pred = normalize_string(predicted)
    return pred == gold_text if pred else None


def _judge_numeric(
    predicted: str, gold_text: str, gold_value: Fraction | None, symbolic_task: bool
) -> bool | None:
    if predicted == gold_text:  # both canonical already: the common case needs no parsing
        return True
    pred_value = parse_plain(predicted)
    if pred_value is None and not SYMBOLIC_RE.search(clean_latex(predicted)):
        pred_value = parse_strict(predicted)  # raw text such as "$1,234.50"
    if pred_value is not None and gold_value is not None:
        return numbers_close(pred_value, gold_value)
    if not symbolic_task and not DIGIT_RE.search(predicted):
        return None  # no number at all: nothing to compare
    return symbolic_equal(predicted.strip(), gold_text)


def verify(text: str, gold: str, task: str) -> Verdict:
    """Extract the answer from ``text`` and judge it against ``gold`` for ``task``."""
    predicted = extract_answer(text, task)
    return Verdict(predicted, judge(predicted, gold, task))
