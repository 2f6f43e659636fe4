"""The front page and the docs: the README stays a front page (short, a results table and a plot), and
every relative link of the README and docs/ points to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_is_a_front_page():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert re.search(r"^\|.*\|\n\|[-| ]+\|\n\|", text, re.M)  # a Markdown table
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and all((REPO / p).is_file() for p in images)
    for command in ("bash scripts/demo.sh", "bash scripts/test.sh", "prefect deployment run", "python -m distill.train",
                    "python -m pipeline.browse"):  # fmt: skip
        assert command in text


def test_relative_links_point_to_files():
    broken, checked = [], 0
    for page in _pages():
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            checked += 1
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert checked >= 30 and broken == []
