"""The scale benchmark (benchmarks/scale.py): its grid, its fits, and one real cell end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import scale
from benchmarks.scale_runs import SIZES, build_model_and_tokenizer, build_questions


def test_the_grid_covers_small_sizes_fully_and_the_largest_by_two_sweeps():
    grid = {"sizes": ["1m", "100m"], "ks": [2, 8], "lengths": [256, 1024]}
    assert scale.cells(grid, full_grid=False) == [
        ("1m", 2, 256), ("1m", 2, 1024), ("1m", 8, 256), ("1m", 8, 1024), ("100m", 2, 256), ("100m", 8, 256),
        ("100m", 2, 1024)]  # fmt: skip
    assert len(scale.cells(grid, full_grid=True)) == 8


def test_slope_is_the_exponent_of_a_power_law():
    assert scale.slope([(2, 12.0), (4, 48.0), (8, 192.0)]) == pytest.approx(2.0)
    assert scale.slope([(2, 5.0), (4, 5.0)]) == pytest.approx(0.0)
    assert scale.slope([(2, 5.0)]) is None


def test_the_sizes_are_the_advertised_parameter_counts():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    for size, want in (("1m", 1e6), ("10m", 1e7), ("100m", 1e8), ("1.5b", 1.54e9)):
        with torch.device("meta"):  # shapes only
            model = Qwen2ForCausalLM(Qwen2Config(**SIZES[size], tie_word_embeddings=True))
        params = sum(p.numel() for p in model.parameters())
        assert want / 1.6 < params < want * 1.6, (size, params)
    model, tokenizer = build_model_and_tokenizer("1m")
    assert len(tokenizer) == SIZES["1m"]["vocab_size"] == model.config.vocab_size
    q = build_questions(2, 3, 64, 4096)
    assert [len(v.samples[0]) for v in q[0].views] == [64, 64, 64]
    spans = {tuple(v.samples[0][v.answer_starts[0] : v.answer_starts[0] + v.answer_lens[0]]) for v in q[0].views}
    assert len(spans) == 1  # the answer span is the same tokens in every candidate of a question


def _children_in_process(monkeypatch, module) -> None:
    """Run the benchmark's child processes' code in this process (the same code, without an interpreter's
    start-up per measurement)."""
    import torch

    from benchmarks.scale_runs import measure, vm_hwm_mb

    def run_child(name, args, result, log, timeout_s=0):
        state = {}
        measure(json.loads(Path(args[1]).read_text()), state)
        return {**state, "peak_rss_mb": vm_hwm_mb()}, 0.0

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave this process's threads alone

    monkeypatch.setattr(module, "run_child", run_child)


def test_one_cell_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(scale, "publish", lambda name, results, top, **kw: (tmp_path / "r.json").write_text(
        json.dumps(results)) and 0)  # fmt: skip
    _children_in_process(monkeypatch, scale)
    argv = ["--quick", "--ks", "2", "--lengths", "64", "--configs", "all,mind", "--torch-threads", "1"]
    assert scale.main(argv) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    runs = {r["config"]: r for r in results["runs"]}
    assert set(runs) == {"all", "mind"}
    model, _ = build_model_and_tokenizer("1m")
    for r in runs.values():
        assert r["params"] == sum(p.numel() for p in model.parameters())
        assert r["tokens_per_step"] == 1 * 2 * 64 and r["steps"] == 4 and len(r["periods_s"]) == 2
        assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / r["step_s"], rel=1e-3)
        assert r["train_mb"] == pytest.approx(r["vm_hwm_mb"] - r["vm_hwm_mb_before_train"], abs=1e-3)
    (row,) = results["ratios"]["1m"]
    assert row["mind_over_all"]["time"] == pytest.approx(runs["mind"]["step_s"] / runs["all"]["step_s"], rel=1e-3)
    with pytest.raises(SystemExit):
        scale.main(["--quick", "--configs", "nope"])


def test_the_gpu_script_dry_run(tmp_path, monkeypatch):
    """The prepared GPU run's own code on the CPU (the 1M shape): FLOPs per step from the trainer's compute account."""
    from benchmarks import gpu_scale

    assert gpu_scale.peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and gpu_scale.peak_flops("cpu") is None
    monkeypatch.setattr(gpu_scale, "publish", lambda name, results, top, **kw: (tmp_path / "g.json").write_text(
        json.dumps(results)) and 0)  # fmt: skip
    _children_in_process(monkeypatch, gpu_scale)
    assert gpu_scale.main(["--dry-run", "--configs", "all"]) == 0
    (run,) = json.loads((tmp_path / "g.json").read_text())["runs"]
    spec = gpu_scale.RUNS["dry-run"]
    tokens = spec["batch_questions"] * spec["k"] * spec["length"]
    assert run["tokens_per_step"] == tokens and run["mfu"] is None
    # every measured step trains every candidate (scoring shared): 6 x params x tokens
    assert run["flops_per_step"] == pytest.approx(6 * run["params"] * tokens, rel=1e-6)
    assert run["achieved_flops"] == pytest.approx(run["flops_per_step"] / run["step_s"], rel=1e-3)


def test_growth_figure_and_ratio_table(tmp_path):
    from benchmarks.scale_report import plot_growth, ratio_table, sweep_points

    grid = {"sizes": ["1m", "10m"], "ks": [2, 4], "lengths": [64, 128]}
    runs = [{"size": s, "k": k, "length": n, "config": c, "params": p, "step_s": k * n * p * (1.2 if c == "mind" else 1.0) / 1e9,
             "train_mb": 10.0 * k * n, "vm_hwm_mb": 100.0 + 10.0 * k * n}
            for s, p in (("1m", 1e6), ("10m", 1e7)) for k in (2, 4) for n in (64, 128) for c in ("all", "mind", "sft")]  # fmt: skip
    assert [x for x, _, _ in sweep_points(runs, grid, "k", "all")] == [2, 4]  # at the largest size, shortest length
    assert [x for x, _, _ in sweep_points(runs, grid, "params", "mind")] == [1e6, 1e7]
    results = {"runs": runs, "grid": grid, "ratios": {s: scale.ratios(runs, s) for s in grid["sizes"]}}
    assert plot_growth(results, tmp_path / "g.png").stat().st_size > 1000
    table = ratio_table(results, "10m").splitlines()
    assert len(table) == 2 + 4 and table[2].startswith("| 2 | 64 | 1.20 | 1.00 |")
