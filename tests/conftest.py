"""Shared fixtures: the real data (MIND_SHARED_DATA, else the shared/data folder beside the repository) and small contract rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MIND_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
# the product finds the real data only through this setting; the tests name theirs
os.environ.setdefault("MIND_SHARED_DATA", str(SHARED_DATA))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (MIND_SHARED_DATA). Missing data is an error, not a skip."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.fail(f"real test data not found at {SHARED_DATA}; set MIND_SHARED_DATA")
    return SHARED_DATA


def make_rationale_row(**overrides: object) -> dict:
    """A valid rationale row; override any field."""
    row = dict(
        question_id="q-0",
        question="Tom has 3 apples and buys 2 more. How many apples does he have?",
        gold_answer="5",
        task="arith",
        perspective="stepwise",
        teacher="synthetic/reference",
        sample_index=0,
        rationale="3 + 2 = 5\nThe answer is 5.",
        predicted_answer="5",
        is_correct=True,
        finish_reason="stop",
        num_tokens=12,
        seed=1234,
        run_id="run-test",
    )
    row.update(overrides)
    return row


@pytest.fixture
def rationale_row():
    return make_rationale_row


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server (and results dir) for every flow test of the session."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: storage}), prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def one_cpu_thread():
    """A tiny model is fastest on one thread; several spin badly on a shared, busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_lm_dirs(tmp_path_factory):
    """Two tiny local causal LMs (random weights): ``plain`` and ``chat`` (with a chat template)."""
    from tests.tiny_models import build_tiny_causal_lm

    root = tmp_path_factory.mktemp("tiny_lm")
    return {
        "plain": build_tiny_causal_lm(root / "plain", chat_template=False),
        "chat": build_tiny_causal_lm(root / "chat", chat_template=True, seed=1),
    }
