"""The browse, evaluate, trainer and start-up benchmarks' core functions at a tiny size: they run and give their keys.

No timing is asserted (the numbers of a tiny run on a shared machine mean nothing); the full
benchmarks are ``python -m benchmarks.browse``, ``python -m benchmarks.evaluate`` and
``python -m benchmarks.trainer``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import browse as browse_bench
from benchmarks import evaluate as evaluate_bench
from benchmarks import startup as startup_bench
from benchmarks import trainer as trainer_bench


@pytest.mark.slow  # six child processes (one per browse operation)
def test_browse_benchmark_tiny(tmp_path: Path) -> None:
    ticks: list[int] = []
    results = browse_bench.run_benchmark(
        (250,), rounds=1, small_rounds=1, warm_repeats=1, cmd_repeats=1, cache=tmp_path, tick=lambda: ticks.append(1),
        commands=False,
    )  # fmt: skip
    assert len(ticks) == browse_bench.plan_steps((250,), 1, 1, cmd_repeats=0)  # commands=False: no command runs
    (size,) = results["sizes"]
    assert size["data"]["rows"] == 250 * browse_bench.ROWS_PER_QUESTION
    assert size["data"]["cached"] is False
    timing = size["in_process"]
    assert set(timing) == set(browse_bench.OPERATIONS)
    assert timing["show"]["result_size"] == browse_bench.ROWS_PER_QUESTION  # every rationale of the question
    assert timing["show_unpruned"]["result_size"] == browse_bench.ROWS_PER_QUESTION
    assert timing["list"]["result_size"] == 20
    assert timing["summary"]["result_size"] == size["data"]["rows"]
    headline = browse_bench.headline_of(results, quick=True)
    for key in ("stats_1m_rows_s", "show_1m_rows_s", "list_1m_rows_s"):
        assert headline[key] > 0
    assert headline["rows"] == size["data"]["rows"] and headline["flow_layout_s"] is None
    # the flow's shard layout of the same rows, and the cache being reused
    flow = browse_bench.ensure_flow_layout(tmp_path, size["data"])
    assert flow["rows"] == size["data"]["rows"] and flow["shards"] == 3 and flow["rows_per_shard_max"] == 1200
    assert browse_bench.ensure_run(tmp_path, 250)["cached"] is True


@pytest.mark.slow  # a long-running Prefect server and three synthesis processes (about a minute)
def test_startup_benchmark_tiny(tmp_path: Path) -> None:
    spec = {"browse_questions": 20, "synth_questions": (2,)}
    steps: list[str] = []
    results = startup_bench.run_benchmark(
        {"this": startup_bench.REPO_ROOT}, spec, rounds=1, tmp=tmp_path, step=steps.append, cache=tmp_path / "browse"
    )
    this = results["by_tree"]["this"]
    for mode in ("embedded", "server"):
        run = this[f"synthesize_24_{mode}"]
        assert 0 < run["first_shard_s"] <= run["wall_s"] and 0 <= run["flow_s"] < run["wall_s"], run
    assert this["first_run_204"]["wall_s"] > 0
    headline = startup_bench.headline_of(results)
    assert {"show", "list", "stats", "synthesize_24_server_wall_s"} <= set(headline) and "before_over_after" not in headline
    assert any("server" in s for s in steps)


def test_evaluate_benchmark_tiny(tiny_lm_dirs: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dirs["plain"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dirs["plain"])
    size = {
        "split": "test", "questions": 3, "batch_size": 2, "max_new_tokens": 6, "rounds": 2, "loop_rounds": 1,
        "sweep": (3,), "extra_splits": {"retention": 2},
    }  # fmt: skip
    ticks: list[int] = []
    results = evaluate_bench.run_benchmark(size, model=model, tokenizer=tokenizer, tick=lambda: ticks.append(1))
    assert len(ticks) == evaluate_bench.plan_steps(size)
    test = results["splits"]["test"]
    assert len(test["batched_cpu_s"]) == 2 and len(test["loop_cpu_s"]) == 1
    assert test["predictions_identical"] and not test["mismatches"]
    assert [row["batch_size"] for row in test["batch_size_sweep"]] == [3]
    assert results["splits"]["retention"]["questions"] == 2
    headline = evaluate_bench.headline_of(results, "test", "cpu")
    assert headline["batched_over_loop"] > 0 and headline["predictions_identical"] is True
    assert len(test["rows_cpu_s"]) == 2 and headline["vectorised_over_rows"] > 0  # the per-row loop, compared too
    assert headline["torch_threads"] == 1 and headline["student"] == "given by the caller"
    assert set(results["targets_met"]) == {"batched_over_loop", "predictions_identical"}


@pytest.mark.slow  # the --quick sizes: a timing process and two memory processes (about a minute and a half)
def test_trainer_benchmark_quick() -> None:
    results = trainer_bench.run_benchmark(dict(trainer_bench.SIZES["quick"]), progress=False)
    headline = results["headline"]
    targets = {"mind_over_all", "mem_mind_over_all", "meta_share", "all_over_sft"}
    assert set(results["targets_met"]) == targets
    for key in (*targets, "mind_separate_over_all", "meta_share_separate"):
        assert headline[key] > 0, key
    assert headline["meta_share"] < 1 and headline["meta_warmup_steps"] < results["sizes"]["warmup_steps"]
    assert set(headline["s_per_step"]) == set(trainer_bench.HEADLINE_CONFIGS)
    # the same rows per step: TRL's SFT, all and mind (shared scoring) run fwd+bwd over the same tokens;
    # separate scoring adds a no-grad forward over every candidate
    compute = results["compute_per_step"]
    assert compute["sft"]["backward_tokens"] == compute["all"]["backward_tokens"] == compute["mind"]["backward_tokens"]
    assert compute["sft"]["trained_tokens"] == compute["all"]["trained_tokens"]
    assert compute["mind"]["forward_tokens"] == 0
    assert compute["mind_separate"]["forward_tokens"] == compute["all"]["backward_tokens"]
    timers = results["timers_s_per_step"]["mind"]
    assert timers["Mind.plan"] > 0 and timers["Mind.end_of_step"] > 0 and timers["answer_consistency"] > 0
