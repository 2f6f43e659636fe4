"""The quality benchmark end to end at a tiny size: synthesis, tuning on validation, the comparison,
the report, and resumption (a second invocation trains nothing)."""

from __future__ import annotations

import json

import pytest
import yaml

from benchmarks import quality

pytestmark = pytest.mark.slow


def _config(tmp_path, student) -> str:
    cfg = {
        "world": {"value_range": [1, 9], "factor_range": [2, 3], "max_value": 30, "train_steps": [1, 2]},
        "synthesis": {"num_questions": 40, "samples": 1, "teacher": {"slip_rate": 0.1, "flaw_rate": 0.05}},
        "student": str(student),
        "train": {
            "max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "max_length": 256,
            "meta_warmup_steps": 1, "history_every": 1, "validation_questions": 6, "eval_questions": 3,
            "eval_max_new_tokens": 8, "num_threads": 1, "logging_steps": 1,
        },
        "strategies": ["random", "mind"],
        "seeds": [0, 1],
        "tuning": {"seed": 0, "learning_rate": [1e-3, 2e-3], "mind": [{"fusion_beta": 0.3}]},
    }  # fmt: skip
    path = tmp_path / "quality.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_quality_benchmark_end_to_end(tmp_path, tiny_lm_dirs, capsys):
    config = _config(tmp_path, tiny_lm_dirs["plain"])
    argv = ["--config", config, "--work", str(tmp_path / "work"), "--docs", str(tmp_path / "docs"),
            "--results", str(tmp_path / "quality.json"), "--jobs", "2"]  # fmt: skip
    assert quality.main(argv) == 0
    headline = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(headline) == {"random", "mind", "wall_s"}
    results = json.loads((tmp_path / "quality.json").read_text())
    runs = results["runs"]
    assert sorted((r["strategy"], r["seed"]) for r in runs) == [("mind", 0), ("mind", 1), ("random", 0), ("random", 1)]
    for r in runs:
        assert set(r["metrics"]) == {"test", "ood_steps", "ood_template", "retention"}
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values())
        assert r["n"]["test"] == 3 and r["steps"] == 3 and r["trained_tokens"] > 0
        c = r["compute"]  # the trainer's compute account beside the trained tokens
        assert c["trained_tokens"] == r["trained_tokens"] and c["backward_tokens"] > 0 and c["flops"] > 0
        assert c["flops"] == pytest.approx(6 * c["params"] * c["backward_tokens"] + 2 * c["params"] * c["forward_tokens"])
        assert set(r["in_subset"]) == set(r["kept_share"]) == set(r["views"]) and "history" not in r
        assert r["config"]["learning_rate"] == results["tuning"]["chosen"][r["strategy"]]["learning_rate"]
    # tuning: 2 strategies x 2 learning rates, then one MIND setting; chosen on validation only
    tuning = results["tuning"]
    assert len(tuning["runs"]) == 5 and all(t["phase"] == "tune" for t in tuning["runs"])
    for s in ("random", "mind"):
        mine = [t for t in tuning["runs"] if t["strategy"] == s and "fusion_beta" not in t["config"]]
        best = max(t["validation"] for t in mine)
        assert any(t["validation"] == best and t["config"]["learning_rate"] == tuning["chosen"][s]["learning_rate"] for t in mine)
    assert results["summary"]["mind"]["test"]["std"] >= 0.0
    assert results["summary"]["mind"]["flops"] > 0 and results["summary"]["random"]["backward_tokens"] > 0
    # MIND's warm-up (step 1: the student frozen, scored by no-grad forwards) shows in its account
    mind_runs = [r for r in runs if r["strategy"] == "mind"]
    assert all(r["compute"]["forward_tokens"] > 0 for r in mind_runs)
    assert all(r["compute"]["forward_tokens"] == 0 for r in runs if r["strategy"] == "random")
    curves = results["mind_subset_over_steps"]  # from the runs' mind_summary.json history
    assert curves["steps"] == [1, 2, 3] and curves["seeds"] == 2
    assert set(curves["in_subset"]) == set(mind_runs[0]["views"]) and set(curves["alpha"]) <= set(curves["in_subset"])
    assert all(y in (None, 1.0) for ys in curves["in_subset"].values() for y in ys[:1])  # warm-up: all kept
    assert all(0.0 <= y <= 1.0 for ys in curves["in_subset"].values() for y in ys if y is not None)
    assert results["mind_losses_over_steps"]["steps"] == [1, 2, 3]
    md = (tmp_path / "docs" / "results.md").read_text()
    assert "| mind |" in md and "<!-- BEGIN ANALYSIS -->" in md and "| FLOPs |" in md
    assert (tmp_path / "docs" / "img" / "quality-accuracy.png").stat().st_size > 1000
    assert (tmp_path / "docs" / "img" / "quality-mind-subset.png").stat().st_size > 1000
    assert (tmp_path / "docs" / "img" / "quality-mind-alpha.png").stat().st_size > 1000
    assert (tmp_path / "docs" / "img" / "quality-mind-losses.png").stat().st_size > 1000
    vs_random = results["comparison"]["vs"]["random"]  # paired MIND - random, from the runs' predictions
    assert set(vs_random) == {"test", "ood_steps", "ood_template", "retention", "validation"}
    assert vs_random["test"]["seeds"] == 2 and -1.0 <= vs_random["test"]["diff"] <= 1.0
    assert "MIND minus each other strategy" in md
    assert len(results["invocations"]) == 1 and results["total_wall_seconds"] > 0 and results["busy_wall_seconds"] > 0

    # resumable: nothing is trained again; a hand-written analysis and the history survive the rewrite
    history = "<!-- BEGIN HISTORY -->\n## History: an earlier method\n<!-- END HISTORY -->"
    (tmp_path / "docs" / "results.md").write_text(md.replace("(analysis to be written)", "MIND wins, or not.") + history)
    assert quality.main(argv) == 0
    again = json.loads((tmp_path / "quality.json").read_text())
    assert again["runs_executed"] == 0
    assert len(again["invocations"]) == 2 and again["total_wall_seconds"] > results["total_wall_seconds"]
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in runs]
    rewritten = (tmp_path / "docs" / "results.md").read_text()
    assert "MIND wins, or not." in rewritten and rewritten.rstrip().endswith(history)


def test_quality_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"world": {}, "synthesis": {}, "train": {}, "strategies": ["best"], "seeds": [0]}))
    with pytest.raises(SystemExit, match="unknown"):
        quality.load_config(bad)
    bad.write_text(yaml.safe_dump({"world": {}}))
    with pytest.raises(SystemExit, match="missing key 'synthesis'"):
        quality.load_config(bad)


def test_quality_variants_map_to_their_strategy(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump({
        "world": {}, "synthesis": {}, "train": {"learning_rate": 1e-3}, "seeds": [0],
        "strategies": ["golden", "golden-stepwise"],
        "variants": {"golden-stepwise": {"strategy": "golden", "golden_view": "stepwise"}},
    }))  # fmt: skip
    cfg = quality.load_config(path)
    run = quality.make_run(cfg, tmp_path, tmp_path / "student", "final", "golden-stepwise", 0, {"learning_rate": 3e-3})
    assert run.strategy == "golden-stepwise"
    assert run.args["strategy"] == "golden" and run.args["golden_view"] == "stepwise" and run.args["learning_rate"] == 3e-3
    plain = quality.make_run(cfg, tmp_path, tmp_path / "student", "final", "golden", 0)
    assert "golden_view" not in plain.args and plain.key != run.key
    path.write_text(yaml.safe_dump({**cfg, "variants": {"x": {"golden_view": "stepwise"}}}))
    with pytest.raises(SystemExit, match="variants.x"):
        quality.load_config(path)


def test_tuning_looks_beyond_the_grids_edge():
    def run(lr, val):
        return {"config": {"learning_rate": lr}, "validation": val}

    assert quality._beyond_edge([run(1e-3, 0.5), run(2e-3, 0.4), run(4e-3, 0.3)]) == 5e-4  # best at the low edge
    assert quality._beyond_edge([run(1e-3, 0.3), run(2e-3, 0.4), run(4e-3, 0.5)]) == 8e-3  # ... at the high edge
    assert quality._beyond_edge([run(1e-3, 0.3), run(2e-3, 0.5), run(4e-3, 0.3)]) is None  # inside: done
    assert quality._beyond_edge([run(1e-3, 0.5), run(2e-3, 0.5)]) == 5e-4  # a tie goes to the lower rate
    assert quality._beyond_edge([run(1e-3, 0.5)]) is None  # one rate: no range to extend


def test_busy_wall_time_is_the_union_of_run_intervals():
    runs = [{"finished_at": 10.0, "wall_seconds": 10.0}, {"finished_at": 15.0, "wall_seconds": 10.0},  # 0-10, 5-15
            {"finished_at": 40.0, "wall_seconds": 5.0}, {"wall_seconds": 99.0}]  # 35-40; no timestamp: left out
    assert quality.busy_wall_seconds(runs) == 20.0
    assert quality.busy_wall_seconds([]) == 0.0
