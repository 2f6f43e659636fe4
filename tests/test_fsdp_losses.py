"""MIND's loss path under sharding: PyTorch's FSDP2 (``fully_shard``) runs on this CPU with gloo, so the obstacle
distill/sharding.py names (the LM head called on the answer spans after the model's forward, the hidden-state
hook) is tested here directly, outside the trainer: one SGD step of 2 sharded ranks leaves the same weights as
one process on the whole batch. The trainer itself still refuses sharding (accelerate ignores FSDP on a CPU,
so its integration cannot run here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _run(worlds: tuple[int, ...], tmp_path: Path) -> list[dict[str, torch.Tensor]]:
    """Every rank of every world at once (separate process groups); each world's rank-0 weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    outs = [tmp_path / f"weights-{w}.pt" for w in worlds]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.fsdp_losses_worker", str(r), str(w), str(tmp_path / f"init-{w}"),
                               str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for w, out in zip(worlds, outs, strict=True) for r in range(w)]  # fmt: skip
    logs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)[-3000:]
    return [torch.load(out) for out in outs]


@pytest.mark.slow
def test_two_sharded_ranks_update_the_student_as_one_process_does(tmp_path):
    one, two = _run((1, 2), tmp_path)
    assert one.keys() == two.keys()
    from tests.fsdp_losses_worker import tiny_student

    before = dict(tiny_student().named_parameters())
    moved = [n for n in one if not torch.equal(one[n], before[n].detach())]
    assert "model.embed_tokens.weight" in moved and len(moved) == len(one)  # every weight got a gradient
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
