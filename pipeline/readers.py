"""Line-aware readers for JSON Lines and JSON-array files.

Every record comes with the 1-based line number where it starts, so that a bad record can be
reported as ``FILE:LINE: reason`` (a :class:`data_schemas.ContractError`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from data_schemas import ContractError

#: Called with the error and the raw text of a bad line instead of raising (``iter_jsonl``).
OnBadLine = Callable[[ContractError, str], None]

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _read_text(path: str | Path) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ContractError(str(path), f"cannot read file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ContractError(f"{path}:{line}", f"not UTF-8 text ({exc.reason})") from None


def iter_jsonl(path: str | Path, on_error: OnBadLine | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_no, obj)`` for every non-blank line of a JSON Lines file (1-based lines).

    A malformed line raises ``ContractError("FILE:LINE", "invalid JSON: ...")``, or, when
    ``on_error`` is given, is passed to it (with the raw line) and skipped.
    """
    text = _read_text(path)
    for line_no, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            err = ContractError(f"{path}:{line_no}", f"invalid JSON: {exc.msg} (column {exc.colno})")
            if on_error is None:
                raise err from None
            on_error(err, line.rstrip("\r"))
            continue
        yield line_no, obj


def iter_json_array(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_no, element)`` for each element of a file holding one JSON list.

    The array is walked element by element with :meth:`json.JSONDecoder.raw_decode`, so each
    element carries the line where it starts, and a syntax error names its own line. A
    malformed array cannot be resynchronised: the first error always raises ``ContractError``.
    """
    text = _read_text(path)
    n = len(text)
    pos = _WS.match(text, 0).end()
    line = 1 + text.count("\n", 0, pos)

    def fail(at: int, reason: str) -> ContractError:
        return ContractError(f"{path}:{1 + text.count(chr(10), 0, at)}", reason)

    if pos >= n or text[pos] != "[":
        raise fail(pos, "expected a JSON array ('[' ... ']') of records")
    last = pos
    pos = _WS.match(text, pos + 1).end()
    if pos < n and text[pos] == "]":
        pos += 1
    else:
        while True:
            line += text.count("\n", last, pos)
            last = pos
            try:
                obj, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise ContractError(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
            yield line, obj
            pos = _WS.match(text, end).end()
            if pos < n and text[pos] == ",":
                pos = _WS.match(text, pos + 1).end()
                continue
            if pos < n and text[pos] == "]":
                pos += 1
                break
            raise fail(pos, "invalid JSON: expected ',' or ']' after an array element")
    pos = _WS.match(text, pos).end()
    if pos < n:
        raise fail(pos, "invalid JSON: extra data after the array")


def iter_records(path: str | Path, on_error: OnBadLine | None = None) -> Iterator[tuple[int, Any]]:
    """JSON Lines or a JSON array, chosen by content (a file starting with ``[`` is an array)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        raise ContractError(str(path), f"cannot read file ({exc.strerror or exc})") from None
    if head.startswith(b"["):
        yield from iter_json_array(path)
    else:
        yield from iter_jsonl(path, on_error)
