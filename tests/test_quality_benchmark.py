"""The quality benchmark end to end at a tiny size: synthesis, tuning on validation, the comparison,
the report, and resumption (a second invocation trains nothing)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from benchmarks import quality, quality_data
from benchmarks.quality_data import Regime
from tests.recount import recounted_accuracy

pytestmark = pytest.mark.slow


def _config(tmp_path, student) -> str:
    cfg = {
        "world": {"value_range": [1, 9], "factor_range": [2, 3], "max_value": 30, "train_steps": [1, 2]},
        "synthesis": {"num_questions": 40, "samples": 1,
                      "teacher": {"slip_rate": 0.2, "flaw_rate": 0.05, "slip_per_step": True}},
        "student": str(student),
        "validation_questions": 6,
        "regimes": {"paper": {"select": {"target": 12, "seed": 0}, "train": {"max_steps": 3}}, "full": {}},
        "train": {
            "max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "max_length": 256,
            "meta_warmup_steps": 1, "history_every": 1, "eval_questions": 3,
            "eval_max_new_tokens": 8, "num_threads": 1, "logging_steps": 1,
        },
        "strategies": ["random", "mind"],
        "seeds": [0, 1],
        "variants": {"mind-no-fusion": {"strategy": "mind", "fusion": False}},
        "ablations": {"variants": ["mind-no-fusion"], "regimes": ["paper"], "seeds": [0]},
        "curve": {"start": 1.0e6, "ratio": 4.0, "points": 14, "splits": ["test"], "questions": 3},
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
    assert set(headline) == {"paper", "full", "wall_s"} and set(headline["paper"]) == {"random", "mind", "mind-no-fusion"}
    results = json.loads((tmp_path / "quality.json").read_text())
    # the regimes: a hard-first selection of the pool, and the whole pool; one validation hold-out for both
    paper, full = results["regimes"]["paper"], results["regimes"]["full"]
    assert paper["questions"] == 12 and full["questions"] == 40 - 6 and paper["validation"] == full["validation"]
    sel = paper["selection"]
    assert sel["selected"] == 12 and sel["selected_hard"] == min(12, sel["available_hard"])
    steps_runs = [r for r in results["runs"] if r["budget"] == "steps"]
    assert sorted((r["regime"], r["strategy"], r["seed"]) for r in steps_runs) == [
        ("full", "mind", 0), ("full", "mind", 1), ("full", "random", 0), ("full", "random", 1),
        ("paper", "mind", 0), ("paper", "mind", 1), ("paper", "mind-no-fusion", 0), ("paper", "random", 0),
        ("paper", "random", 1)]  # fmt: skip
    for r in steps_runs:
        assert set(r["metrics"]) == {"test", "ood_steps", "ood_template", "retention"}
        out = next((tmp_path / "work").rglob(f"*-{r['key']}")) / "out" / "eval"  # the run's predictions, recounted
        assert r["metrics"] == {s: pytest.approx(recounted_accuracy(out / f"{s}.parquet")) for s in r["metrics"]}
        assert r["n"]["test"] == 3 and r["n"]["validation"] == 6 and r["trained_tokens"] > 0
        assert r["steps"] == (3 if r["regime"] == "paper" else 2)
        c = r["compute"]
        assert c["trained_tokens"] == r["trained_tokens"] and r["flops"] == c["flops"] > 0
        assert c["flops"] == pytest.approx(6 * c["params"] * c["backward_tokens"] + 2 * c["params"] * c["forward_tokens"])
        assert "history" not in r and "curve" not in r
        base = "mind" if r["strategy"] == "mind-no-fusion" else r["strategy"]
        assert r["config"]["learning_rate"] == results["tuning"]["chosen"][r["regime"]][base]["learning_rate"]
    ablation = next(r for r in steps_runs if r["strategy"] == "mind-no-fusion")
    assert ablation["phase"] == "ablation" and ablation["config"]["fusion"] is False and "curve_flops" not in ablation["config"]
    # the FLOP-grid curve points of the headline runs: budget flops:<g>, reached in order, within a step
    points = [r for r in results["runs"] if r["budget"].startswith("flops:")]
    assert points and all(r["phase"] == "final" and set(r["metrics"]) == {"test"} and r["n"]["test"] == 3 for r in points)
    for r in points:
        g = float(r["budget"].split(":")[1])
        assert r["flops"] >= g
    curves = results["curves"]["paper"]
    assert curves["shared"] and set(curves["strategies"]) == {"random", "mind"}
    assert set(curves["vs"]) == {"random"} and curves["paired_at"] == curves["shared"][-1]
    assert set(curves["pairwise"]) == {"random"} and curves["pairwise"]["random"]["flops"] >= curves["paired_at"]
    assert results["devices"] == {"paper": {"cpu": 5}, "full": {"cpu": 4}}
    assert all(r["device"] == "cpu" for r in steps_runs)
    assert results["students"]["per_seed"] is False and len(results["students"]["by_stage0_seed"]) == 1  # one student
    # tuning: per regime 2 strategies x 2 rates (+ edge extensions), then one MIND setting; validation only
    tuning = results["tuning"]
    assert all(t["phase"] == "tune" and set(t["metrics"]) == set() for t in tuning["runs"])
    for regime in ("paper", "full"):
        for s in ("random", "mind"):
            mine = [t for t in tuning["runs"] if t["regime"] == regime and t["strategy"] == s and "fusion_beta" not in t["config"]]
            best = max(t["validation"] for t in mine)
            assert any(t["validation"] == best and t["config"]["learning_rate"] == tuning["chosen"][regime][s]["learning_rate"]
                       for t in mine)  # fmt: skip
        assert any("fusion_beta" in t["config"] for t in tuning["runs"] if t["regime"] == regime)
    summary = results["summary"]["paper"]
    assert summary["mind"]["test"]["std"] >= 0.0 and summary["mind"]["flops"] > 0 and summary["mind-no-fusion"]["phase"] == "ablation"
    dyn = results["mind_dynamics"]["paper"]
    assert dyn["steps"] == [1, 2, 3] and dyn["seeds"] == 2 and set(dyn["in_subset"]) <= set(ablation["views"])
    assert all(0.0 <= y <= 1.0 for ys in dyn["in_subset"].values() for y in ys if y is not None)
    vs = results["comparison"]["paper"]["vs"]
    assert set(vs) == {"random", "mind-no-fusion"} and vs["random"]["test"]["seeds"] == 2 and vs["mind-no-fusion"]["test"]["seeds"] == 1
    md = (tmp_path / "docs" / "results.md").read_text()
    assert "## Regime `paper`" in md and "## Regime `full`" in md and "| mind-no-fusion (ablation) |" in md
    assert "Equal training FLOPs" in md and "MIND minus each other strategy" in md and "<!-- BEGIN ANALYSIS -->" in md
    for name in ("paper-accuracy", "paper-flops", "paper-mind-insubset", "full-flops"):
        assert (tmp_path / "docs" / "img" / f"quality-{name}.png").stat().st_size > 1000
    assert len(results["invocations"]) == 1 and results["total_wall_seconds"] > 0 and results["busy_wall_seconds"] > 0
    assert results["runs_finished"] == results["runs_planned"] == 9

    # resumable: nothing is trained again; a hand-written analysis and the history survive the rewrite
    history = "<!-- BEGIN HISTORY -->\n## History: an earlier method\n<!-- END HISTORY -->"
    latent = "<!-- BEGIN LATENT -->\n## Latent space\n<!-- END LATENT -->"
    (tmp_path / "docs" / "results.md").write_text(md.replace("(analysis to be written)", "MIND wins, or not.") + latent + history)
    assert quality.main(argv + ["--report-only"]) == 0
    again = json.loads((tmp_path / "quality.json").read_text())
    assert again["runs_executed"] == 0
    assert len(again["invocations"]) == 2 and again["total_wall_seconds"] >= results["total_wall_seconds"]
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in results["runs"]]
    rewritten = (tmp_path / "docs" / "results.md").read_text()
    assert "MIND wins, or not." in rewritten and latent in rewritten and rewritten.rstrip().endswith(history)

    # the gradient-share diagnostic: MIND re-trained at its tuned settings with the measurement on
    from benchmarks import gradient_share

    out = tmp_path / "gradient_share.json"
    gs_argv = ["--config", config, "--work", str(tmp_path / "work"), "--entries", "mind", "--seeds", "0", "--every", "1",
               "--results", str(out), "--jobs", "1"]  # fmt: skip
    assert gradient_share.main(gs_argv) == 0
    gs = json.loads(out.read_text())
    (unchanged,) = gs["unchanged"]
    assert unchanged["equal"] is True  # same training as the benchmark's final run of seed 0
    (run,) = gs["runs"]
    assert run["config"]["grad_share_every"] == 1 and run["config"]["learning_rate"] == results["tuning"]["chosen"]["paper"]["mind"]["learning_rate"]
    measured = [e for e in run["history"] if "grad_share" in e]
    assert measured and all(sum(e["grad_share"].values()) == pytest.approx(1.0, abs=1e-3) for e in measured)
    views = gs["views"]["mind"]
    assert set(views) >= set(run["views"]) and all("grad_share" in v for v in views.values())
    with pytest.raises(SystemExit):
        gradient_share.main([*gs_argv[:4], "--entries", "golden"])  # not a headline entry of this config


def test_report_only_trains_nothing(tmp_path, tiny_lm_dirs):
    """--report-only on a fresh work folder: data prepared, no run executed, an empty report."""
    config = _config(tmp_path, tiny_lm_dirs["plain"])
    argv = ["--config", config, "--work", str(tmp_path / "work"), "--docs", str(tmp_path / "docs"),
            "--results", str(tmp_path / "quality.json"), "--report-only", "--regimes", "paper"]  # fmt: skip
    assert quality.main(argv) == 0
    results = json.loads((tmp_path / "quality.json").read_text())
    assert results["runs_finished"] == 0 and results["runs_planned"] == 2 * 2 + 1 and results["runs"] == []
    assert not (tmp_path / "work" / "main" / "runs").exists()


def test_quality_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"world": {}, "synthesis": {}, "train": {}, "strategies": ["best"], "seeds": [0]}))
    with pytest.raises(SystemExit, match="unknown"):
        quality.load_config(bad)
    bad.write_text(yaml.safe_dump({"world": {}}))
    with pytest.raises(SystemExit, match="missing key 'synthesis'"):
        quality.load_config(bad)


def test_a_run_key_names_the_student_by_its_weights(tmp_path):
    """A rebuilt student with other weights at the same path gets new run keys: no cached run of the
    earlier student is reused."""
    cfg = {"train": {"learning_rate": 1e-3}, "variants": {}}
    regime = Regime("full", tmp_path / "data", tmp_path / "val", {"max_steps": 7})
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text("{}")
    weights = student / "model.safetensors"
    stamps = iter(range(1, 10))

    def rewrite(data: bytes) -> None:  # a distinct mtime, as a rebuild minutes later has (hashes are cached by stat)
        weights.write_bytes(data)
        os.utime(weights, ns=(next(stamps) * 10**9,) * 2)

    def key() -> str:
        return quality.make_run(cfg, regime, student, "final", "all", 0).key

    rewrite(b"weights-1")

    first = key()
    assert key() == first  # the same weights: the same key
    rewrite(b"weights-2")
    assert key() != first
    rewrite(b"weights-1")
    assert key() == first


def test_run_key_changes_with_a_default(tmp_path, monkeypatch):
    """A run's key hashes MindConfig's defaults too: a run trained under an earlier default is not reused."""
    from distill.config import MindConfig

    cfg = {"train": {"learning_rate": 1e-3}}
    regime = Regime("full", tmp_path / "data", tmp_path / "val", {"max_steps": 7})

    def key() -> str:
        quality_data.train_defaults.cache_clear()
        return quality.make_run(cfg, regime, tmp_path / "student", "final", "mind", 0).key

    before = key()
    assert quality_data.train_defaults()["meta_target"] == MindConfig.__dataclass_fields__["meta_target"].default
    monkeypatch.setattr(MindConfig.__dataclass_fields__["meta_target"], "default", "changed")
    assert key() != before
    monkeypatch.undo()
    assert key() == before
    default = MindConfig.__dataclass_fields__["meta_target"].default
    same = quality.make_run(cfg, regime, tmp_path / "student", "final", "mind", 0, {"meta_target": default})
    assert same.key == before  # the default spelt out: the same training, the same run
    other = "inertia" if default != "inertia" else "instant"
    assert quality.make_run(cfg, regime, tmp_path / "student", "final", "mind", 0, {"meta_target": other}).key != before


def test_quality_variants_map_to_their_strategy(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump({
        "world": {}, "synthesis": {}, "train": {"learning_rate": 1e-3, "validation_questions": 10}, "seeds": [0],
        "strategies": ["golden", "golden-stepwise"],
        "variants": {"golden-stepwise": {"strategy": "golden", "golden_view": "stepwise"}},
    }))  # fmt: skip
    cfg = quality.load_config(path)
    regime = Regime("full", tmp_path / "data", tmp_path / "val", {"max_steps": 7})
    run = quality.make_run(cfg, regime, tmp_path / "student", "final", "golden-stepwise", 0, {"learning_rate": 3e-3})
    assert run.strategy == "golden-stepwise" and run.regime == "full"
    assert run.args["strategy"] == "golden" and run.args["golden_view"] == "stepwise" and run.args["learning_rate"] == 3e-3
    assert run.args["max_steps"] == 7 and run.args["validation_data"] == str(tmp_path / "val")
    assert "validation_questions" not in run.args and run.args["eval_splits"]
    assert quality.make_run(cfg, regime, tmp_path / "student", "tune", "golden", 0).args["eval_splits"] == ""
    plain = quality.make_run(cfg, regime, tmp_path / "student", "final", "golden", 0)
    assert "golden_view" not in plain.args and plain.key != run.key and "curve_flops" not in plain.args
    curved = quality.make_run(cfg, regime, tmp_path / "student", "final", "golden", 0, grid=[1e9, 2e9])
    assert curved.args["curve_flops"] == "1e+09,2e+09" and curved.key != plain.key
    path.write_text(yaml.safe_dump({**cfg, "variants": {"x": {"golden_view": "stepwise"}}}))
    with pytest.raises(SystemExit, match="variants.x"):
        quality.load_config(path)
    path.write_text(yaml.safe_dump({**cfg, "variants": {}, "strategies": ["golden"], "ablations": {"variants": ["nope"]}}))
    with pytest.raises(SystemExit, match="ablations.variants"):
        quality.load_config(path)
    path.write_text(yaml.safe_dump({**cfg, "variants": {}, "strategies": ["golden"], "regimes": {"paper": {"selct": {}}}}))
    with pytest.raises(SystemExit, match="regimes.paper"):
        quality.load_config(path)
    for bad, named in (({"student_per_seed": "yes"}, "student_per_seed"), ({"tuning": {"seeds": [1, 1]}}, "tuning.seeds")):
        path.write_text(yaml.safe_dump({**cfg, "variants": {}, "strategies": ["golden"], **bad}))
        with pytest.raises(SystemExit, match=f"{path}: {named}"):
            quality.load_config(path)
    # with a seed -> student mapping each seed's runs, headline and ablation, start from that seed's student
    cfg = {**cfg, "seeds": [0, 1], "ablations": {"variants": ["golden-stepwise"], "regimes": ["full"], "seeds": [2]}}
    runs = quality.planned_runs(cfg, {"full": regime}, lambda seed: tmp_path / f"student-{seed}", tmp_path, ["golden"],
                                {"full": {"golden": {}, "golden-stepwise": {}}})  # fmt: skip
    assert {(r.seed, r.phase, r.args["student"]) for r in runs} == {
        (0, "final", str(tmp_path / "student-0")), (1, "final", str(tmp_path / "student-1")),
        (2, "ablation", str(tmp_path / "student-2"))}  # fmt: skip


def test_variants_built_on_a_base_train_with_the_bases_tuned_settings(tmp_path):
    """An ablation of a headline variant (``base:``) takes the base's fixed settings, then its own,
    and trains at the base's tuned rate; MIND's ablations keep MIND's."""
    path = tmp_path / "q.yaml"
    cfg = {
        "world": {}, "synthesis": {}, "train": {"learning_rate": 1e-3}, "seeds": [0],
        "strategies": ["mind", "fixed"],
        "variants": {"fixed": {"strategy": "mind", "lr_schedule_after_meta_warmup": True},
                     "fixed-no-fusion": {"base": "fixed", "fusion": False},
                     "mind-no-fusion": {"strategy": "mind", "fusion": False}},
        "ablations": {"variants": ["fixed-no-fusion", "mind-no-fusion"], "regimes": ["paper"], "seeds": [0]},
        "regimes": {"paper": {}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    loaded = quality.load_config(path)
    assert quality.variant_settings(loaded, "fixed-no-fusion") == {
        "strategy": "mind", "lr_schedule_after_meta_warmup": True, "fusion": False}
    assert quality.tuned_entry(loaded, "fixed-no-fusion") == "fixed" and quality.tuned_entry(loaded, "mind-no-fusion") == "mind"
    regimes = {"paper": Regime("paper", tmp_path / "data", tmp_path / "val", {"max_steps": 5})}
    chosen = {"paper": {"mind": {"learning_rate": 7.5e-4}, "fixed": {"learning_rate": 3e-3}}}
    runs = quality.planned_runs(loaded, regimes, tmp_path / "student", tmp_path, ["mind", "fixed"], chosen)
    by_name = {r.strategy: r for r in runs}
    assert by_name["fixed-no-fusion"].phase == "ablation"
    assert by_name["fixed-no-fusion"].args["learning_rate"] == 3e-3 and by_name["fixed-no-fusion"].args["fusion"] is False
    assert by_name["fixed-no-fusion"].args["lr_schedule_after_meta_warmup"] is True
    assert by_name["mind-no-fusion"].args["learning_rate"] == 7.5e-4
    assert "lr_schedule_after_meta_warmup" not in by_name["mind-no-fusion"].args
    with pytest.raises(SystemExit, match="'fixed' is not among the headline"):
        quality.planned_runs(loaded, regimes, tmp_path / "student", tmp_path, ["mind"], {"paper": {"mind": {}}})
    for bad, message in (({"base": "fixed", "strategy": "mind"}, "not both"), ({"base": "nope"}, "neither a variant"),
                         ({"base": "loop"}, "circle")):  # fmt: skip
        path.write_text(yaml.safe_dump({**cfg, "variants": {**cfg["variants"], "loop": bad}}))
        with pytest.raises(SystemExit, match=message):
            quality.load_config(path)


def test_device_placement_stays_out_of_the_run_key(tmp_path):
    """--device decides where a run trains (fp32 on both), not what it is: the key and the record's
    config ignore it, so runs finished on a GPU machine resume on a CPU one and vice versa."""
    cfg = {"train": {"learning_rate": 1e-3}, "variants": {}}
    regime = Regime("paper", tmp_path / "data", tmp_path / "val", {"max_steps": 3})
    run = quality.make_run(cfg, regime, tmp_path / "student", "final", "all", 0)
    assert "bf16" not in run.args and "use_cpu" not in run.args
    assert quality.placement("cuda") == {"bf16": False} and quality.placement("cpu") == {"use_cpu": True}
    with pytest.raises(ValueError, match="--device"):
        quality.placement("tpu")
    assert quality.device_name("cpu") == "cpu"


def test_flop_grid_and_quick_config():
    assert quality.flop_grid({}) == []
    assert quality.flop_grid({"start": 1e11, "ratio": 2, "points": 3}) == [1e11, 2e11, 4e11]
    cfg = quality.load_config(quality.DEFAULT_CONFIG, quick=True)
    assert cfg["train"]["max_steps"] == 4 and all(r["train"]["max_steps"] == 4 for r in cfg["regimes"].values())
    assert len(cfg["tuning"]["learning_rate"]) == 2 and len(cfg["tuning"]["mind"]) == 1
    assert len(cfg["ablations"]["variants"]) == 1 and cfg["ablations"]["seeds"] == [0]
    assert cfg["regimes"]["paper"]["select"]["target"] == 20 and cfg["curve"]["questions"] == 4


def test_tuning_looks_beyond_the_grids_edge():
    def run(lr, val):
        return {"config": {"learning_rate": lr}, "validation": val}

    assert quality._beyond_edge([run(1e-3, 0.5), run(2e-3, 0.4), run(4e-3, 0.3)]) == 5e-4  # best at the low edge
    assert quality._beyond_edge([run(1e-3, 0.3), run(2e-3, 0.4), run(4e-3, 0.5)]) == 8e-3  # ... at the high edge
    assert quality._beyond_edge([run(1e-3, 0.3), run(2e-3, 0.5), run(4e-3, 0.3)]) is None  # inside: done
    assert quality._beyond_edge([run(1e-3, 0.5), run(2e-3, 0.5)]) == 5e-4  # a tie goes to the lower rate
    assert quality._beyond_edge([run(1e-3, 0.5)]) is None  # one rate: no range to extend


def test_tuning_over_seeds_picks_the_best_mean_validation_each_seed_from_its_student(tmp_path, monkeypatch):
    """With ``tuning.seeds`` every setting runs at every seed, from that seed's student, evaluated on every split
    (the phases reuse the runs); the choice is the best mean validation, never test. One seed decides otherwise."""
    val = {(1e-3, 0): 0.60, (1e-3, 1): 0.30, (1e-3, 2): 0.30,  # seed 0 alone prefers 1e-3 ...
           (2e-3, 0): 0.50, (2e-3, 1): 0.45, (2e-3, 2): 0.45}  # ... the mean over the seeds 2e-3  # fmt: skip
    asked: list = []

    def fake_run_all(runs, jobs, progress, label, execute_missing=True, device="cpu"):
        asked.extend(runs)
        out = []
        for r in runs:
            v = val[(r.args["learning_rate"], r.seed)] + (0.2 if r.args.get("meta_warmup_epochs") == 6 and r.seed else 0)
            out.append({"key": r.key, "regime": r.regime, "strategy": r.strategy, "seed": r.seed, "config": r.args,
                        "validation": v, "metrics": {"test": 1.0 - v}})  # test disagrees: it must not count
        return out

    monkeypatch.setattr(quality, "run_all", fake_run_all)
    tuning = {"learning_rate": [1e-3, 2e-3], "mind": [{"meta_warmup_epochs": 6}]}
    regime = Regime("paper", tmp_path / "data", tmp_path / "val", {})

    def tuned(tuning):
        asked.clear()
        cfg = {"train": {}, "variants": {}, "tuning": tuning}
        chosen, _ = quality.tune(cfg, {"paper": regime}, lambda seed: tmp_path / f"student-{seed}", tmp_path,
                                 ["all", "mind"], 1, None)  # fmt: skip
        return chosen["paper"]

    picked = tuned({**tuning, "seeds": [0, 1, 2]})
    assert picked["all"] == {"learning_rate": 2e-3} and picked["mind"] == {"learning_rate": 2e-3, "meta_warmup_epochs": 6}
    assert {(r.seed, r.args["student"]) for r in asked} == {(s, str(tmp_path / f"student-{s}")) for s in (0, 1, 2)}
    assert all(r.args["eval_splits"] == ",".join(quality.SPLITS) for r in asked)
    final = quality.make_run({"train": {}, "variants": {}, "tuning": {"seeds": [0, 1, 2]}}, regime, tmp_path / "student-1",
                             "final", "all", 1, {"learning_rate": 2e-3})  # fmt: skip
    assert final.key in {r.key for r in asked}  # the phase's run is a tuning run: trained once
    picked = tuned({**tuning, "seed": 0})  # seed 0 alone: its best rate; the MIND option ties there, defaults kept
    assert picked["all"] == {"learning_rate": 1e-3} and picked["mind"] == {"learning_rate": 1e-3}
    assert {r.seed for r in asked} == {0} and all(r.args["eval_splits"] == "" for r in asked)


def test_busy_wall_time_is_the_union_of_run_intervals():
    runs = [{"finished_at": 10.0, "wall_seconds": 10.0}, {"finished_at": 15.0, "wall_seconds": 10.0},  # 0-10, 5-15
            {"finished_at": 40.0, "wall_seconds": 5.0}, {"wall_seconds": 99.0}]  # 35-40; no timestamp: left out
    assert quality.busy_wall_seconds(runs) == 20.0
    assert quality.busy_wall_seconds([]) == 0.0


def test_learning_rate_check_pairs_and_summary():
    from benchmarks import quality_lr

    assert quality_lr.parse_pairs("mind:7.5e-4, all:3e-3") == [("mind", 7.5e-4, {}), ("all", 3e-3, {})]
    assert quality_lr.parse_pairs("mind:3e-3+lr_schedule_after_meta_warmup=true+warmup_steps=40") == [
        ("mind", 3e-3, {"lr_schedule_after_meta_warmup": True, "warmup_steps": 40})
    ]
    for bad in ("mind", "mind:fast", ":1e-3"):
        with pytest.raises(SystemExit, match="STRATEGY:LEARNING_RATE"):
            quality_lr.parse_pairs(bad)
    with pytest.raises(SystemExit, match="is not FIELD=VALUE"):
        quality_lr.parse_pairs("mind:3e-3+warmup_steps")
    records = [{"key": f"k{s}", "strategy": "mind", "seed": s, "validation": v, "trained_tokens": 10}
               for s, v in ((1, 0.5), (0, 0.3), (2, 0.9))]  # fmt: skip
    labels = {"k1": "mind:0.003", "k0": "mind:0.003", "k2": "mind:0.003+warmup_steps=40"}
    pairs = [("mind", 3e-3, {}), ("all", 3e-3, {}), ("mind", 3e-3, {"warmup_steps": 40})]
    (row, empty, other) = quality_lr.summarise(records, pairs, labels)
    assert row["seeds"] == [0, 1] and row["validation"] == [0.3, 0.5] and row["mean"] == pytest.approx(0.4)
    assert row["std"] == pytest.approx(0.1414, abs=1e-3) and empty["mean"] is None and empty["seeds"] == []
    assert other["validation"] == [0.9] and other["label"] == "mind:0.003+warmup_steps=40"


def test_flop_curves_pair_each_headline_variant_at_the_largest_point_both_reached(tmp_path):
    """A headline variant gets its own equal-FLOP comparison, not capped by MIND's or the cheapest budget."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.quality_report import flop_curves

    reached = {"mind": [1.0, 2.0], "all": [1.0, 2.0, 4.0], "fixed": [1.0, 2.0, 4.0]}
    correct = {"mind": [True, False, False, False], "all": [True, True, False, False], "fixed": [True] * 4}
    runs, folders = [], {}
    for s, points in reached.items():
        key = f"{s}-0"
        folders[key] = tmp_path / key
        curve = []
        for g in points:
            pred = folders[key] / "out" / f"curve-{g:g}"
            pred.mkdir(parents=True)
            pq.write_table(pa.table({"question_id": ["a", "b", "c", "d"], "sample_index": [0] * 4,
                                     "is_correct": correct[s]}), pred / "test.parquet")  # fmt: skip
            curve.append({"grid_flops": g, "step": int(g), "accuracy": {"test": sum(correct[s]) / 4},
                          "predictions": pred.name})  # fmt: skip
        runs.append({"key": key, "phase": "final", "strategy": s, "seed": 0, "curve": curve})
    out = flop_curves(runs, folders, ["mind", "all", "fixed"], ["test"], variants=("fixed",))
    assert out["shared"] == [1.0, 2.0] and out["paired_at"] == 2.0
    assert out["pairwise"]["all"]["flops"] == 2.0 and out["pairwise"]["all"]["vs"]["test"]["diff"] == pytest.approx(-0.25)
    fixed = out["variants_pairwise"]["fixed"]
    assert fixed["all"]["flops"] == 4.0 and fixed["all"]["vs"]["test"]["diff"] == pytest.approx(0.5)
    assert fixed["mind"]["flops"] == 2.0 and fixed["mind"]["vs"]["test"]["diff"] == pytest.approx(0.75)


def test_a_run_another_process_trains_is_waited_for_not_trained_twice(tmp_path, monkeypatch):
    """Two benchmark processes whose plans overlap: a run whose lock another holds is left for later,
    then waited for; its record is reused and nothing trains it a second time."""
    import threading

    from benchmarks._common import make_progress

    cfg = {"train": {"learning_rate": 1e-3}, "variants": {}}
    regime = Regime("paper", tmp_path / "data", tmp_path / "val", {"max_steps": 3})
    busy, free = (quality.make_run(cfg, regime, tmp_path / "student", "final", s, 0).place(tmp_path) for s in ("all", "mind"))
    trained = []

    def fake_train(run, device):
        trained.append(run.strategy)
        return _record(run)

    def _record(run):
        record = {"key": run.key, "compute": {}, "regime": run.regime, "strategy": run.strategy, "seed": run.seed,
                  "validation": 0.5, "metrics": {"test": 0.5}, "wall_seconds": 1.0, "finished_at": 0.0}  # fmt: skip
        run.result_file.write_text(json.dumps(record))
        return record

    monkeypatch.setattr(quality, "_train", fake_train)
    holding, release = threading.Event(), threading.Event()

    def other_process():  # holds the lock on `busy`, then finishes it
        with quality.claimed(busy, wait=True):
            holding.set()
            release.wait(10)
            _record(busy)

    other = threading.Thread(target=other_process)
    other.start()
    holding.wait(10)
    assert quality.execute(busy, wait=False) is None and not trained  # taken: not trained here
    threading.Timer(0.5, release.set).start()
    with make_progress() as progress:
        records = quality.run_all([busy, free], 2, progress, "test")
    other.join()
    assert trained == ["mind"] and {r["strategy"] for r in records} == {"all", "mind"}
