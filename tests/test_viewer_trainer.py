"""The viewer on a real trainer output_dir: a few MIND steps of the tiny student (``tests.trainer_fixtures``).

Checks that what ``MindTrainer`` actually writes (``mind_summary.json``, the checkpoints'
``trainer_state.json`` with its ``mind/*`` metrics) fills every training chart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipeline.viewer import create_app
from tests.trainer_fixtures import TrainerAssets, make_trainer, trainer_assets  # noqa: F401

pytestmark = pytest.mark.slow


def test_real_trainer_output_renders(
    trainer_assets: TrainerAssets,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    one_cpu_thread: None,
) -> None:
    out = tmp_path / "site" / "mind"
    trainer = make_trainer(
        trainer_assets, out, max_steps=6, save_strategy="steps", save_steps=3, probe_every=2, logging_steps=2
    )
    trainer.train()
    assert (out / "mind_summary.json").is_file() and (out / "checkpoint-6" / "trainer_state.json").is_file()
    with TestClient(create_app(tmp_path / "site")) as c:
        assert 'href="/train/site/mind"' in c.get("/").text
        r = c.get("/train/site/mind")
    assert r.status_code == 200, r.text[-800:]
    html = r.text
    assert "checkpoint-6/trainer_state.json" in html and "6 steps" in html
    views = trainer.mind.views
    for chart in (
        "Pick share per perspective",
        "Mean weight of a pick",
        "Inertia-filtered loss L_p",
        "TA reward",
        "Policy entropy",
        "Training and probe loss",
    ):
        fig = re.search(rf"<figure class=\"chart-box\"><figcaption>{re.escape(chart)}.*?</figure>", html, re.DOTALL)
        assert fig and 'class="mark line"' in fig.group(0), chart
    assert html.count('class="mark line"') >= 3 * len(views) + 3
    assert "no data in this run" not in html
