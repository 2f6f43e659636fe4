"""The viewer on a real trainer output_dir: a few MIND steps of the tiny student (``tests.trainer_fixtures``).

Checks that what ``MindTrainer`` actually writes (``mind_summary.json`` with its totals, compute
account and history; the checkpoints' ``trainer_state.json`` with its ``mind/*`` metrics) fills
every training chart and table, the MetaNet's included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pipeline.viewer import create_app
from tests.trainer_fixtures import TrainerAssets, make_trainer, trainer_assets  # noqa: F401

pytestmark = pytest.mark.slow

CHARTS = (
    "In-subset share per perspective",
    "Mean weight alpha of a kept candidate per perspective",
    "Mean score per perspective",
    "Inertia-filtered loss L_p per perspective",
    "Gradient share per perspective",
    "MetaNet meta-loss L_meta",
    "MetaNet ranking agreement",
    "Answer-consistency loss",
    "Subset size (kept candidates per question)",
    "Training loss",
)


def test_real_trainer_output_renders(
    trainer_assets: TrainerAssets,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    one_cpu_thread: None,
) -> None:
    out = tmp_path / "site" / "mind"
    trainer = make_trainer(
        trainer_assets,
        out,
        strategy="mind",
        max_steps=6,
        meta_warmup_steps=2,
        save_strategy="steps",
        save_steps=3,
        logging_steps=2,
        history_every=2,
        grad_share_every=2,
    )
    trainer.train()
    assert (out / "mind_summary.json").is_file() and (out / "checkpoint-6" / "trainer_state.json").is_file()
    with TestClient(create_app(tmp_path / "site")) as c:
        index = c.get("/").text
        assert 'href="/train/site/mind"' in index and f"{trainer.mind.flops:.3g}" in index
        r = c.get("/train/site/mind")
    assert r.status_code == 200, r.text[-800:]
    html = r.text
    assert "checkpoint-6/trainer_state.json" in html and "6 steps" in html and "strategy <strong>mind</strong>" in html
    views = trainer.mind.views
    for chart in CHARTS:
        fig = re.search(rf"<figure class=\"chart-box\"><figcaption>{re.escape(chart)}.*?</figure>", html, re.DOTALL)
        assert fig and 'class="mark line"' in fig.group(0), chart
    assert html.count('class="mark line"') >= 4 * len(views) + 5
    assert "no data in this run" not in html and 'id="omitted"' not in html
    totals = re.search(r'<table class="stats" id="view-totals">(.*?)</table>', html, re.DOTALL)
    assert totals and all(f"<tr><td>{v}</td>" in totals.group(1) for v in views)
    summary = trainer.summary()
    compute = re.search(r'<table class="stats" id="compute">(.*?)</table>', html, re.DOTALL)
    assert compute and f"{summary['compute']['params']:,}" in compute.group(1)
    assert f"{summary['compute']['backward_tokens']:,}" in compute.group(1)
    assert f"{summary['compute']['flops']:.3g}" in compute.group(1) and "MetaNet optimizer steps" in compute.group(1)
