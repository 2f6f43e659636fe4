"""Sizes a reader can hold in mind: no source file over 600 lines and no function over 80 lines in the
packages (docs/design.md). Functions are measured with ``ast`` from their ``def`` (decorators excluded) to
their last line; a nested function counts on its own and inside its parent."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data_schemas", "pipeline", "flows", "distill", "benchmarks")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def long_files(paths: list[Path], limit: int = MAX_FILE_LINES) -> list[tuple[str, int]]:
    """``(file, lines)`` of every file longer than ``limit`` lines."""
    sized = ((p, p.read_text().count("\n")) for p in paths)
    return [(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p), n) for p, n in sized if n > limit]


def long_functions(source: str, name: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """``(file:function, lines)`` of every function of ``source`` longer than ``limit`` lines."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((f"{name}:{node.name}", lines))
    return found


def test_the_checkers_find_long_code(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    source = f"def short():\n    return 1\n\n\ndef long():\n{body}\n    return x0\n"
    assert long_functions(source, "m.py") == [("m.py:long", 82)]
    assert long_functions(source, "m.py", limit=82) == []
    big = tmp_path / "big.py"
    big.write_text("x = 1\n" * 601)
    small = tmp_path / "small.py"
    small.write_text("x = 1\n" * 600)
    assert [n for _, n in long_files([big, small])] == [601]


def test_no_source_file_over_the_limit():
    sources = _sources()
    assert len(sources) > 100  # the whole source was read
    assert long_files(sources) == []


def test_no_function_over_the_limit():
    found = [hit for p in _sources() for hit in long_functions(p.read_text(), str(p.relative_to(REPO)))]
    assert found == []
