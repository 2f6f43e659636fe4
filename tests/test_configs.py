"""The shipped example configs validate and resolve their perspectives."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.synthesis import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "synthesize").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_synthesis_configs_validate(path):
    cfg = load_config(path)
    assert cfg.run_id().startswith("synth-")
    assert len(cfg.resolved_perspectives()) >= 4


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"default.yaml", "gsm8k-vllm.yaml", "gsm8k-openai.yaml"}
