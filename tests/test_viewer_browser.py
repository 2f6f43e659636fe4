"""pipeline.viewer in a real headless browser: Playwright driving Debian's chromium.

The viewer runs in-process (``ViewerThread``, 127.0.0.1, a free port) over the data of
``tests/test_viewer.py``. Screenshots go to ``test-artifacts/viewer/`` (git-ignored; the path
is printed). Skipped, with the reason, only when the ``playwright`` package or a ``chromium``
executable is missing; ``scripts/setup.sh`` installs both (the browser with apt-get, never
``playwright install``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.viewer import ViewerThread
from tests.test_viewer import SCRIPT, build_viewer_root

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "viewer"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')"
)
if CHROMIUM is None:
    pytest.skip("no chromium executable on PATH (scripts/setup.sh installs Debian's chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("viewer-browser") / "site"
    root.mkdir()
    keys = build_viewer_root(root)
    with ViewerThread(root) as url:
        yield url, keys


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; fails the test on any console error (a CSP violation, a missing asset).
    The errors are in ``request.node.console_errors`` (a test expecting one clears it)."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    request.node.console_errors = errors
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, errors


def shot(pg: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def visible_marks(pg: Any, selector: str) -> int:
    """Visible data marks (with a non-empty box) in the charts matched by ``selector``."""
    marks = pg.locator(f"{selector} .mark")
    return sum(
        1 for i in range(marks.count()) if (b := marks.nth(i).bounding_box()) and b["width"] > 0 and b["height"] > 0
    )


def test_runs_page_to_run_page_charts(page: Any, served: tuple[str, dict[str, str]]) -> None:
    url, _ = served
    page.goto(url + "/")
    assert page.title() == "Runs · MIND"
    assert page.get_by_role("link", name="run-hand").is_visible()
    shot(page, "runs")
    page.get_by_role("link", name="run-hand").click()
    page.wait_for_url(re.compile(r"/run/"))
    assert page.locator("h1").first.inner_text().startswith("run-hand")
    charts = page.locator("svg.chart")
    assert charts.count() >= 6 and charts.first.is_visible()
    assert visible_marks(page, "svg.chart") >= 4 + 4 + 4  # accuracy segments, length bars, histogram bars
    assert page.locator("svg.chart rect.seg-correct").first.is_visible()
    shot(page, "run")


def test_filter_then_step_through_questions(page: Any, served: tuple[str, dict[str, str]]) -> None:
    url, keys = served
    page.goto(f"{url}/run/{keys['hand']}")
    page.locator("form.filters select[name=verdict]").select_option("incorrect")
    page.locator("form.filters button[type=submit]").click()
    page.wait_for_url(re.compile(r"/questions/.*verdict=incorrect"))
    assert page.locator("#result-count").inner_text().startswith("2 question(s)")
    assert page.locator("table.questions tbody tr").count() == 2
    shot(page, "questions-incorrect")

    page.get_by_role("link", name="q-01").click()
    page.wait_for_url(re.compile(r"/question/.*id=q-01"))
    assert page.locator("article.card").count() == 4
    assert page.locator("article.card.match").count() == 1  # the one incorrect rationale is outlined
    # click through the perspectives
    page.locator("nav.tabs").get_by_role("link", name="socratic").click()
    page.wait_for_url(re.compile(r"view=socratic"))
    cards = page.locator("article.card")
    assert cards.count() == 1 and cards.first.get_attribute("data-perspective") == "socratic"
    assert cards.first.locator(".verdict").inner_text() == "✗ incorrect"
    assert cards.first.locator("pre mark.answer").inner_text() == "6"
    # next / previous among the questions with an incorrect rationale, keeping the perspective
    page.locator("#next").click()
    page.wait_for_url(re.compile(r"id=q-02"))
    assert "view=socratic" in page.url and "verdict=incorrect" in page.url
    assert page.locator("#next").count() == 0  # q-03 has no incorrect rationale
    page.locator("#prev").click()
    page.wait_for_url(re.compile(r"id=q-01"))
    page.keyboard.press("j")  # keyboard: next
    page.wait_for_url(re.compile(r"id=q-02"))
    page.locator("nav.tabs").get_by_role("link", name=re.compile(r"^all")).click()
    page.wait_for_url(lambda u: "view=" not in u)
    assert page.locator("article.card").count() == 3


def test_script_in_a_rationale_is_inert(page: Any, served: tuple[str, dict[str, str]]) -> None:
    url, keys = served
    page.goto(f"{url}/question/{keys['hand']}?id=q-02")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    card = page.locator("article.card", has_text=SCRIPT)
    assert card.count() == 1 and card.is_visible()  # shown literally, as text
    assert SCRIPT in card.locator("pre.rationale").inner_text()
    assert page.locator("pre.rationale script").count() == 0
    assert "<img src=x" in page.locator("#question-text").inner_text()  # the question's tag is text too
    assert page.locator("#question-text img").count() == 0
    shot(page, "question-script")


def test_search(page: Any, served: tuple[str, dict[str, str]]) -> None:
    url, keys = served
    page.goto(f"{url}/questions/{keys['synth']}")
    assert page.locator("#result-count").inner_text().startswith("40 question(s)")
    page.locator("input[name=q]").fill("q-definitely-absent")
    page.locator("input[name=q]").press("Enter")
    page.wait_for_url(re.compile(r"q=q-definitely-absent"))
    assert page.locator("#result-count").inner_text().startswith("0 question(s)")
    assert page.get_by_text("No question matches these filters.").is_visible()


def test_training_page_charts(page: Any, served: tuple[str, dict[str, str]]) -> None:
    url, keys = served
    page.goto(url + "/")
    page.get_by_role("link", name=keys["train"]).click()
    page.wait_for_url(re.compile(r"/train/"))
    for caption in (
        "In-subset share per perspective",
        "Inertia-filtered loss L_p",
        "MetaNet meta-loss L_meta",
        "MetaNet ranking agreement",
        "Answer-consistency loss",
    ):
        fig = page.locator("figure.chart-box", has_text=caption)
        assert fig.count() == 1 and fig.locator("svg.chart").is_visible(), caption
        assert fig.locator("polyline.mark").count() >= 1, caption
    assert visible_marks(page, "figure.chart-box") > 30
    assert page.locator("#view-totals tbody tr").count() == 3 and page.locator("#compute").is_visible()
    shot(page, "training")
    page.get_by_role("link", name="predictions →").click()
    page.wait_for_url(re.compile(r"/eval/"))
    assert page.evaluate("typeof window.__pwned") == "undefined"
    page.get_by_role("link", name="incorrect", exact=True).click()
    page.wait_for_url(re.compile(r"verdict=incorrect"))
    assert page.locator("article.card").count() == 5
    assert page.locator("article.card", has_text=SCRIPT).is_visible()


def test_error_page_in_browser(page: Any, served: tuple[str, dict[str, str]], request: pytest.FixtureRequest) -> None:
    url, _ = served
    response = page.goto(url + "/run/..%2F..%2Fetc")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert "no rationale run" in page.locator(".error-message").inner_text()
    request.node.console_errors[:] = [e for e in request.node.console_errors if "status of 404" not in e]
