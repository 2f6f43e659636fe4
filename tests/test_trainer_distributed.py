"""One process equals two: ``python -m distill.train``'s entry point under ``accelerate launch``.

The same global batch (1 process x 4 questions, or 2 processes x 2 questions) must give the
same logged losses, the same statistics and MetaNet, the same subsets and the same model, for
``mind`` (MetaNet warm-up, then fusion and the consistency term; the MetaNet learning every step)
and ``mcc_kd`` (random diverse pairs and the bidirectional-KL term).
Every rank must also hold identical MIND state (docs/method.md: "identical on every rank").

Notes on the set-up (each one was needed for an exact comparison):

- two CPU processes come from ``accelerate launch --multi_gpu --num_processes 2``: accelerate
  starts them with torchrun and, because the trainer runs with ``use_cpu``, uses the gloo
  backend (``MULTI_CPU``). ``accelerate launch --cpu --num_processes 2`` would *silently start
  one process* (its simple launcher only spawns several CPU processes through ``mpirun``);
- ``--bf16 false``: TRL's ``SFTConfig`` defaults to ``bf16=True``, i.e. CPU bf16 autocast,
  whose rounding depends on the padded batch shape (gradients then differ by ~1e-3 relative);
- plain SGD without effective clipping: Adam is invariant to a constant gradient scale, so a
  loss-scaling bug across ranks would not show in the weights; with SGD it does (the logged
  ``grad_norm`` is the pre-clipping norm and shows it too).

Each run uses ``distill.train.main`` through a small driver that subclasses ``MindTrainer`` to
dump, on every rank, its MIND state, log history, parameters and the question indices it saw.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_fixtures import trainer_assets  # noqa: F401  (session fixture)

pytestmark = pytest.mark.slow

STRATEGIES = ("mind", "mcc_kd")
ACCELERATE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / "ddp_cpu.yaml"
GLOBAL_BATCH = 4
MAX_STEPS = 6
TIMEOUT_S = 120

DRIVER = '''
import json, sys
from pathlib import Path

import torch

torch.set_num_threads(1)
import torch.distributed as dist

import distill.train as entry
from distill.trainer import MindTrainer


class DumpingTrainer(MindTrainer):
    """Records the questions of every micro-batch; dumps this rank's state after training."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        self.seen = getattr(self, "seen", [])
        self.seen.append(inputs["question_index"].tolist())
        return super().compute_loss(model, inputs, *args, **kwargs)

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        model = self.accelerator.unwrap_model(self.model)
        torch.save(
            {
                "world_size": self.args.world_size,
                "backend": dist.get_backend() if dist.is_initialized() else None,
                "mind": self.mind.state_dict(),
                "strategy": self.strategy.state_dict(),
                "log_history": self.state.log_history,
                "seen": self.seen,
                "params": {n: p.detach().cpu().clone() for n, p in model.named_parameters()},
            },
            Path(self.args.output_dir) / f"rank-{self.args.process_index}.pt",
        )
        return result


entry.MindTrainer = DumpingTrainer
codes = [entry.main(argv) for argv in json.loads(Path(sys.argv[1]).read_text())]
sys.exit(max(codes))
'''

#: values that legitimately differ between the runs (timings, a FLOP estimate from padded shapes)
VOLATILE = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos"}
#: the MetaNet's inputs come from forwards over other padded shapes on each rank (float32 differences
#: ~1e-7); Adam normalises its meta-gradients, so its weights, its scores and what is summed from
#: them agree to ~1e-4 rather than 1e-6 (a rare weight with a near-zero gradient to ~1e-3, far below
#: one Adam step)
ILL_CONDITIONED = ("metanet", "optimizer", "grads", "score", "alpha", "meta_loss", "meta_top1", "meta_spearman")
ILL_CONDITIONED_RTOL = 1e-3
ILL_CONDITIONED_ATOL = 1e-4


def _argv(assets: Any, out: Path, strategy: str, per_device: int) -> list[str]:
    argv = [
        "--student", str(assets.model_dir), "--data", str(assets.data_dir), "--output_dir", str(out),
        "--strategy", strategy, "--max_steps", str(MAX_STEPS), "--per_device_train_batch_size", str(per_device),
        "--optim", "sgd", "--learning_rate", "0.05", "--max_grad_norm", "1000", "--lr_scheduler_type", "constant",
        "--bf16", "false", "--use_cpu", "true", "--seed", "0", "--logging_steps", "1",
        "--save_steps", "3", "--save_only_model", "false", "--report_to", "none", "--disable_tqdm", "true",
        "--eval_splits", "", "--history_every", "1",
    ]  # fmt: skip
    if strategy == "mind":  # a MetaNet that learns fast, so its scores really shape the subsets; all its loss
        # features: without the candidate's own (the default), a weight with a near-zero gradient picks up the
        # ranks' rounding differences through Adam at this large rate (see tests/test_trainer.py MIND_KW)
        argv += ["--meta_warmup_steps", "2", "--meta_accumulation_steps", "1", "--meta_learning_rate", "0.05",
                 "--meta_features", "full"]
    return argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen, Any]:
    fh = open(log, "w")  # noqa: SIM115 (closed in _finish)
    proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, fh


def _finish(proc: subprocess.Popen, fh: Any, log: Path, what: str) -> None:
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every rank it started
        proc.wait()
        fh.close()
        pytest.fail(f"{what} timed out after {TIMEOUT_S}s; log tail:\n{log.read_text()[-4000:]}")
    fh.close()
    assert proc.returncode == 0, f"{what} exited {proc.returncode}; log tail:\n{log.read_text()[-4000:]}"


@pytest.fixture(scope="module")
def runs(trainer_assets, tmp_path_factory) -> Path:  # noqa: F811
    """Train every strategy with one process (batch 4) and with two (batch 2 each)."""
    root = tmp_path_factory.mktemp("distributed")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    for procs in (1, 2):
        argvs = [_argv(trainer_assets, root / f"p{procs}-{s}", s, GLOBAL_BATCH // procs) for s in STRATEGIES]
        (root / f"argv{procs}.json").write_text(json.dumps(argvs))
    env = {
        **os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf-home"),  # no user accelerate config is picked up
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIG),  # the shipped file
        "--main_process_port", str(_free_port()), str(driver), str(root / "argv2.json"),
    ]  # fmt: skip
    one = _start([sys.executable, str(driver), str(root / "argv1.json")], env, root / "p1.log")
    two = _start(launch, env, root / "p2.log")
    _finish(*one, root / "p1.log", "the one-process run")
    _finish(*two, root / "p2.log", "accelerate launch (2 processes)")
    return root


# ------------------------------------------------------------------ comparison helpers
def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    import torch

    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k in VOLATILE:
                continue
            out.update(_flatten(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    if isinstance(obj, torch.Tensor):
        return {prefix: obj.detach().cpu()}
    return {prefix: obj}


def _mismatches(a: Any, b: Any, rtol: float, atol: float) -> list[str]:
    import torch

    fa, fb = _flatten(a), _flatten(b)
    bad = [f"{k}: only in one" for k in sorted(set(fa) ^ set(fb))]
    for k in sorted(set(fa) & set(fb)):
        x, y = fa[k], fb[k]
        ill = any(t in k for t in ILL_CONDITIONED)
        tol = max(rtol, ILL_CONDITIONED_RTOL) if ill else rtol
        a_tol = max(atol, ILL_CONDITIONED_ATOL) if ill else atol
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype:
                bad.append(f"{k}: shape/dtype {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}")
            elif x.is_floating_point():
                if not torch.allclose(x.double(), y.double(), rtol=tol, atol=a_tol, equal_nan=True):
                    diff = (x.double() - y.double()).abs().nan_to_num(float("inf")).max()
                    bad.append(f"{k}: max abs diff {float(diff):.3g}")
            elif not torch.equal(x, y):
                bad.append(f"{k}: {x.tolist()} vs {y.tolist()}")
        elif isinstance(x, float) and isinstance(y, (int, float)) or isinstance(y, float) and isinstance(x, int):
            if not (math.isnan(x) and math.isnan(y)) and not math.isclose(x, y, rel_tol=tol, abs_tol=a_tol):
                bad.append(f"{k}: {x!r} vs {y!r}")
        elif x != y:
            bad.append(f"{k}: {x!r} vs {y!r}")
    return bad


def _assert_same(a: Any, b: Any, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    bad = _mismatches(a, b, rtol, atol)
    assert not bad, f"{what}: {len(bad)} difference(s):\n" + "\n".join(bad[:30])


def _load(path: Path) -> Any:
    import torch

    return torch.load(path, weights_only=False)


def _checkpoint(out: Path) -> Path:
    return out / f"checkpoint-{MAX_STEPS}"


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_really_ran_and_split_each_global_batch(runs: Path, strategy: str) -> None:
    one = _load(runs / f"p1-{strategy}" / "rank-0.pt")
    r0, r1 = (_load(runs / f"p2-{strategy}" / f"rank-{r}.pt") for r in (0, 1))
    assert one["world_size"] == 1 and one["backend"] is None
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["backend"] == r1["backend"] and r0["backend"] in ("gloo", "mpi")  # CPU backends
    assert len(one["seen"]) == MAX_STEPS and all(len(b) == GLOBAL_BATCH for b in one["seen"])
    # each optimizer step: rank 0 gets the first half of the one-process batch, rank 1 the second
    assert [a + b for a, b in zip(r0["seen"], r1["seen"], strict=True)] == one["seen"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_ranks_hold_identical_state(runs: Path, strategy: str) -> None:
    r0, r1 = (_load(runs / f"p2-{strategy}" / f"rank-{r}.pt") for r in (0, 1))
    for key in ("mind", "strategy", "log_history", "params"):
        _assert_same(r0[key], r1[key], f"{strategy}: rank 0 vs rank 1 {key}", rtol=0.0, atol=0.0)
    # only rank 0 saves; what it saved is what every rank holds
    saved = _load(_checkpoint(runs / f"p2-{strategy}") / "mind_state.pt")
    _assert_same(saved["mind"], r1["mind"], f"{strategy}: checkpoint vs rank 1", rtol=0.0, atol=0.0)
    _assert_same(saved["strategy"], r1["strategy"], f"{strategy}: checkpoint strategy vs rank 1", rtol=0.0, atol=0.0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_process_equals_two(runs: Path, strategy: str) -> None:
    one_dir, two_dir = runs / f"p1-{strategy}", runs / f"p2-{strategy}"

    # logged losses and statistics, step by step (trainer_state.json of the last checkpoint)
    logs = [json.loads((_checkpoint(d) / "trainer_state.json").read_text())["log_history"] for d in (one_dir, two_dir)]
    assert len(logs[0]) == MAX_STEPS and [e["step"] for e in logs[0]] == list(range(1, MAX_STEPS + 1))
    keys = ["loss", "grad_norm", "mind/subset_size", "mind/consistency", "mind/flops"]
    keys += ["mind/meta_loss", "mind/meta_top1", "mind/meta_spearman"] if strategy == "mind" else []
    for key in keys:
        assert all(key in e for e in logs[0][1:]), f"{key} not logged"
    if strategy == "mcc_kd":
        assert all(e["mind/subset_size"] == 2 for e in logs[0])  # a pair per question
    assert any(e["mind/consistency"] > 0 for e in logs[0])
    _assert_same(logs[0], logs[1], f"{strategy}: log history")

    # the final summary: per-view totals, compute, history
    summaries = [json.loads((d / "mind_summary.json").read_text()) for d in (one_dir, two_dir)]
    assert len(summaries[0]["history"]) == MAX_STEPS
    _assert_same(summaries[0], summaries[1], f"{strategy}: mind_summary.json")

    # the saved state: inertia statistics, the MetaNet, its optimizer and accumulation, totals
    for name in ("", "checkpoint-3"):
        states = [_load((_checkpoint(d) if not name else d / name) / "mind_state.pt") for d in (one_dir, two_dir)]
        meta = [st.pop("strategy") for st in states]
        _assert_same(states[0], states[1], f"{strategy}: {name or 'last'} checkpoint mind_state.pt")
        _assert_same(meta[0], meta[1], f"{strategy}: {name or 'last'} checkpoint MetaNet", rtol=1e-3, atol=1e-3)

    # and the student itself
    params = [_load(d / "rank-0.pt")["params"] for d in (one_dir, two_dir)]
    _assert_same(params[0], params[1], f"{strategy}: student parameters", rtol=1e-5, atol=1e-6)


def test_mind_run_exercised_the_metanet(runs: Path) -> None:
    """Guard against a vacuous comparison: the MetaNet learned and its fusion dropped candidates."""
    state = _load(_checkpoint(runs / "p1-mind") / "mind_state.pt")
    assert state["strategy"]["meta_steps"] == MAX_STEPS
    assert float(state["strategy"]["metanet"]["head_w2"].abs().max()) > 1e-3  # zero at the start
    logs = json.loads((_checkpoint(runs / "p1-mind") / "trainer_state.json").read_text())["log_history"]
    sizes = [e["mind/subset_size"] for e in logs if e["step"] > 2]
    assert min(sizes) < max(e["mind/subset_size"] for e in logs if e["step"] <= 2), "fusion never dropped a candidate"
