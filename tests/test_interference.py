"""The interference benchmark (the view-quality axis): the family config's checks, the worlds it builds
(identical except for which rationales are flawed), and the whole benchmark at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks import interference


def _family(tmp_path, student=None, **changes) -> str:
    base = {
        "world": {"value_range": [1, 9], "factor_range": [2, 3], "max_value": 30, "train_steps": [2, 2]},
        "synthesis": {"num_questions": 36, "samples": 1,
                      "teacher": {"slip_rate": 0.1, "flaw_rate": 0.05, "slip_per_step": True}},
        "validation_questions": 6,
        "regimes": {"paper": {"select": {"target": 16, "seed": 0}, "train": {"max_steps": 2}}},
        "train": {"per_device_train_batch_size": 4, "learning_rate": 1e-3, "max_length": 256,  # max_steps: the regime's, as in the real config
                  "meta_warmup_steps": 1, "history_every": 1, "eval_questions": 3, "eval_max_new_tokens": 8,
                  "num_threads": 1, "logging_steps": 1},
        "strategies": ["all"],
        "seeds": [0],
    }  # fmt: skip
    if student is not None:
        base["student"] = str(student)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    fam = {
        "base": "base.yaml",
        "regime": "paper",
        "noisy_views": ["stepwise", "equation"],
        "worlds": {"clean": {"flaw_rate": 0.05}, "noisy": {"flaw_rate": 0.7}},
        "calibration": {"worlds": ["noisy"], "strategies": ["all", "oracle"], "seeds": [0], "min_gap": -100.0},
        "strategies": ["all", "oracle", "lowest_loss"],
        "seeds": {"default": [0], "noisy": [0, 1]},
        "tuning": {"seed": 0, "learning_rate": [1e-3]},
        **changes,
    }
    path = tmp_path / "family.yaml"
    path.write_text(yaml.safe_dump(fam))
    return str(path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"noisy_views": ["stepwise", "telepathy"]}, "noisy_views"),
        ({"worlds": {"w": {"flaw_rate": 1.5}}}, "worlds.w.flaw_rate"),
        ({"worlds": {"w": {"flaw_rate": -0.1}}}, "worlds.w.flaw_rate"),
        ({"worlds": {"w": {"flaw_rate": "high"}}}, "worlds.w.flaw_rate"),
        ({"worlds": {"w": {"flaw_rate": 0.2, "per_perspective": {"telepathy": {"flaw_rate": 0.1}}}}},
         "worlds.w.per_perspective.telepathy"),
        ({"worlds": {"w": {"flaw_rate": 0.2, "per_perspective": {"socratic": {"flaw_rate": 2}}}}},
         "worlds.w.per_perspective.socratic.flaw_rate"),
        ({"worlds": {"w": {"flaw_rate": 0.95}}}, "worlds.w"),  # + the base teacher's slips > 1
        ({"worlds": {"w": {}}}, "worlds.w"),
        ({"strategies": ["all", "magic"]}, "strategies"),
        ({"calibration": {"worlds": ["nowhere"]}}, "calibration.worlds"),
        ({"seeds": {"default": [0], "nowhere": [1]}}, "seeds"),
        ({"regime": "full"}, "regime"),
        ({"flaw_mode": "sideways"}, "flaw_mode"),
        ({"ablations": {"variants": ["nothing"]}}, "ablations.variants"),
        ({"frontier": {"worlds": ["nowhere"]}}, "frontier.worlds"),
        ({"select_on_validation": {"pick": ["all", "golden"]}}, "select_on_validation"),  # golden: not run
        ({"select_on_validation": {"pick": ["all"]}}, "select_on_validation"),
        ({"select_on_validation": {"oracle": ["all", "lowest_loss"]}}, "select_on_validation"),
        ({"student_per_seed": "yes"}, "student_per_seed"),
        ({"validation_questions": 0}, "validation_questions"),
        ({"tuning": {"seeds": []}}, "tuning.seeds"),
        ({"tuning": {"seeds": [0, 0]}}, "tuning.seeds"),
        ({"tuning": {"seeds": "0,1"}}, "tuning.seeds"),
        ({"tuning": {"seed": 0, "seeds": [1, 2]}}, "tuning"),
    ],
)  # fmt: skip
def test_bad_family_configs_fail_naming_the_key(tmp_path, change, named):
    path = _family(tmp_path, **change)
    with pytest.raises(SystemExit) as err:
        interference.load_family(path)
    assert f"{path}: {named}:" in str(err.value)


def test_each_seed_starts_from_its_own_student_only_when_asked(tmp_path):
    from benchmarks.students import Students

    built = []

    def builder(cfg, seed):
        built.append(seed)
        return tmp_path / f"student-{seed}"

    shared = Students({"stage0": {"seed": 3}}, per_seed=False, builder=builder)
    assert shared(0) == shared(5) == tmp_path / "student-3" and built == [3]
    per_seed = Students({"stage0": {"seed": 3}}, per_seed=True, builder=builder)
    per_seed.prepare([2, 0, 2, 1])
    assert built == [3, 0, 1, 2] and per_seed(1) == tmp_path / "student-1" and built[-1] == 2  # built once each
    record = per_seed.record()
    assert record["per_seed"] is True and list(record["by_stage0_seed"]) == ["0", "1", "2"]
    assert record["by_stage0_seed"]["2"] == {"path": str(tmp_path / "student-2"), "weights": "missing"}
    # the students to build before any run: every seed any phase uses
    fam = interference.load_family(_family(tmp_path, student_per_seed=True, tuning={"seed": 7, "learning_rate": []},
                                           frontier={"learning_rate": [1e-3], "seeds": [5]}, budgets={"flops": [1e9]}))
    assert fam["student_per_seed"] is True and interference.family_seeds(fam) == {0, 1, 5, 7}
    fam = interference.load_family(_family(tmp_path, student_per_seed=True, tuning={"seeds": [8, 9], "learning_rate": []}))
    assert interference.family_seeds(fam) == {0, 1, 8, 9}
    fam = interference.load_family(_family(tmp_path, student_per_seed=True, tuning={"seeds": [8, 9], "learning_rate": []},
                                           calibration={"worlds": [], "seeds": [3]}))  # fmt: skip
    assert interference.family_seeds(fam) == {0, 1, 8, 9}  # no calibration worlds: its seed 3 is not needed


def test_family_training_settings_override_the_base(tmp_path):
    fam = interference.load_family(_family(tmp_path, train={"meta_warmup_steps": None, "history_every": 2}))
    cfg = interference.world_config(fam, "clean")  # the family's training settings: null removes the base's
    assert "meta_warmup_steps" not in cfg["train"] and cfg["train"]["history_every"] == 2
    assert cfg["regimes"]["paper"]["train"]["max_steps"] == 2 and "max_steps" not in cfg["train"]
    assert cfg["synthesis"]["teacher"]["per_perspective"]["stepwise"]["flaw_rate"] == 0.05
    assert cfg["validation_questions"] == 6  # the base's, unless the family holds out another number
    fam = interference.load_family(_family(tmp_path, validation_questions=9))
    assert interference.world_config(fam, "clean")["validation_questions"] == 9


def test_a_family_extends_another_stating_only_what_it_changes(tmp_path):
    parent = _family(tmp_path, variants={"mind-a": {"strategy": "mind", "meta_explore": 0.1}})
    sub = tmp_path / "studies"
    sub.mkdir()  # the child lives elsewhere: its own paths are relative to itself, the parent's to the parent
    child = sub / "child.yaml"
    child.write_text(yaml.safe_dump({"extends": "../family.yaml", "noisy_views": ["socratic"],
                                     "worlds": {"noisy": {"flaw_rate": 0.9}},
                                     "variants": {"mind-b": {"strategy": "mind", "meta_target": "instant"}}}))
    fam = interference.load_family(child)
    assert fam["noisy_views"] == ["socratic"] and list(fam["worlds"]) == ["noisy"]  # replaced
    assert set(fam["variants"]) == {"mind-a", "mind-b"}  # merged
    assert fam["strategies"] == interference.load_family(parent)["strategies"]  # inherited
    assert fam["base_config"]["validation_questions"] == 6  # the parent's base, found relative to the parent
    cfg = interference.world_config(fam, "noisy")
    assert cfg["synthesis"]["teacher"]["per_perspective"]["socratic"]["flaw_rate"] == 0.9


@pytest.mark.parametrize("target", ["nowhere.yaml", "self"])
def test_a_bad_extends_fails_naming_the_key(tmp_path, target):
    path = tmp_path / "child.yaml"
    path.write_text(yaml.safe_dump({"extends": "child.yaml" if target == "self" else target}))
    with pytest.raises(SystemExit) as err:
        interference.load_family(path)
    assert f"{path}: extends:" in str(err.value)


def _run(world, strategy, seed, validation, flops=1.0):
    return {"world": world, "strategy": strategy, "seed": seed, "validation": validation, "flops": flops,
            "budget": "steps", "key": f"{world}-{strategy}-{seed}"}  # fmt: skip


def test_the_report_shows_each_rates_mean_validation_over_the_tuning_seeds_and_the_choice():
    from benchmarks.interference_report import _tuning_lines

    def run(world, strategy, lr, seed, val):
        return {"world": world, "strategy": strategy, "seed": seed, "config": {"learning_rate": lr}, "validation": val}

    runs = [run("clean", "all", 1e-3, 0, 0.5), run("clean", "all", 1e-3, 1, 0.3), run("clean", "all", 2e-3, 0, 0.4),
            run("clean", "all", 2e-3, 1, 0.6), run("clean", "mind", 2e-3, 0, 0.2)]  # fmt: skip
    lines = _tuning_lines({"tuning": {"runs": runs, "chosen": {"clean": {"all": {"learning_rate": 2e-3}, "mind": {}}}}})
    assert lines[0].startswith("### Tuning: world `clean`") and lines[2] == "| strategy | 0.001 | 0.002 |"
    assert "| all | 40.0 (2) | 50.0 (2)* |" in lines and "| mind | – | 20.0 (1) |" in lines
    assert _tuning_lines({}) == []


def test_chosen_on_validation_picks_per_world_and_seed_and_counts_every_runs_flops():
    from benchmarks.interference_report import chosen_on_validation

    runs = [_run("w", "all", 0, 0.5), _run("w", "mind", 0, 0.6, 2.0), _run("w", "all", 1, 0.4), _run("w", "mind", 1, 0.4),
            _run("w", "all", 2, 0.3), _run("v", "all", 0, 0.7), _run("v", "mind", 0, 0.1)]  # fmt: skip
    picked = {(r["world"], r["seed"]): r for r in chosen_on_validation(runs, {"pick": ["all", "mind"]})}
    assert set(picked) == {("w", 0), ("w", 1), ("v", 0)}  # w seed 2 has no mind run
    assert picked["w", 0]["picked"] == "mind" and picked["w", 0]["key"] == "w-mind-0" and picked["w", 0]["flops"] == 3.0
    assert picked["w", 1]["picked"] == "all"  # a tie goes to the first listed
    assert picked["v", 0]["picked"] == "all" and {r["strategy"] for r in picked.values()} == {"pick"}
    assert not any(r["strategy"] == "pick" for r in runs)  # the inputs are left as they were


COMMITTED = sorted((Path(__file__).resolve().parents[1] / "configs" / "interference").glob("*.yaml"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_every_committed_family_loads_and_its_variants_name_real_flags(path):
    """A study config is read weeks after it was written: it must still load, and each variant must
    resolve to a strategy and to flags ``distill.train`` knows."""
    import dataclasses

    from benchmarks.quality import variant_settings
    from distill.config import MindConfig
    from distill.strategies import STRATEGIES

    fam = interference.load_family(path)
    flags = {f.name for f in dataclasses.fields(MindConfig)}
    for name in fam["variants"]:
        settings = variant_settings(fam, name)
        assert settings["strategy"] in STRATEGIES, (path.name, name)
        assert not set(settings) - flags, (path.name, name, sorted(set(settings) - flags))


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory, tiny_lm_dirs):
    """One tiny run of the whole benchmark (calibration, phase diagram, equal FLOPs, frontier) that the
    tests below read: its folder, its command line and its results."""
    tmp_path = tmp_path_factory.mktemp("interference")
    # no tuning here (the quality benchmark's test covers it): the base config's learning rate
    config = _family(tmp_path, student=tiny_lm_dirs["plain"], tuning={"learning_rate": []}, strategies=["all", "oracle"],
                     budgets={"flops": [2.0e9], "worlds": ["noisy"], "strategies": ["all"], "seeds": [0]},
                     frontier={"worlds": ["noisy"], "strategies": ["all"], "learning_rate": [1e-3, 3e-3], "seeds": [0]},
                     select_on_validation={"best": ["all", "oracle"]})
    argv = ["--config", config, "--work", str(tmp_path / "work"), "--docs", str(tmp_path / "docs"),
            "--results", str(tmp_path / "interference.json"), "--jobs", "2"]  # fmt: skip
    assert interference.main(argv) == 0
    return tmp_path, argv, json.loads((tmp_path / "interference.json").read_text())


@pytest.mark.slow
def test_worlds_differ_only_in_the_flawed_rationales(benchmark_run):
    """Same questions, same slips, same verdicts, same validation hold-out and selection; a rationale
    differs between the worlds only where one of them flawed it, and only the noisy views get more flaws."""
    from data_schemas import read_rationales

    tmp_path, argv, _ = benchmark_run
    fam = interference.load_family(argv[1])
    built = {w: interference.world_regime(fam, w, tmp_path / "work" / "main") for w in ("clean", "noisy")}  # built already
    rows = {}
    for w, (cfg, regime) in built.items():
        oracle = cfg["variants"]["oracle"]
        assert regime.name == w and oracle["strategy"] == "all"
        assert set(oracle["views"].split(",")) == {"backward", "shortcut", "socratic", "verbose"}
        table = read_rationales(str(regime.data)).to_pylist()
        rows[w] = {(r["question_id"], r["perspective"]): (r["rationale"], r["is_correct"], json.loads(r["metadata"])["noise"])
                   for r in table}  # fmt: skip
        rows[w + "/validation"] = sorted({r["question_id"] for r in read_rationales(str(regime.validation)).to_pylist()})
    clean, noisy = rows["clean"], rows["noisy"]
    assert clean.keys() == noisy.keys() and rows["clean/validation"] == rows["noisy/validation"]
    assert all(clean[k][1] == noisy[k][1] for k in clean)  # the verifier's verdicts: slips are the same
    differ = [k for k in clean if clean[k] != noisy[k]]
    assert differ and all("flaw" in (clean[k][2], noisy[k][2]) for k in differ)
    def flawed(w, views):
        return sum(rows[w][k][2] == "flaw" for k in rows[w] if k[1] in views)

    noisy_views = {"stepwise", "equation"}
    assert flawed("noisy", noisy_views) > 2 * flawed("clean", noisy_views)
    others = {"backward", "shortcut", "socratic", "verbose"}
    assert flawed("noisy", others) == flawed("clean", others)


@pytest.mark.slow
def test_interference_benchmark_end_to_end(benchmark_run, capsys):
    tmp_path, argv, results = benchmark_run
    assert results["calibration_passed"] is True and set(results["calibration_gap"]) == {"noisy"}
    students = results["students"]  # one student for every run (the config names it), by content
    assert students["per_seed"] is False and list(students["by_stage0_seed"]) == ["0"]
    assert len(students["by_stage0_seed"]["0"]["weights"]) == 16 and results["machine"]["cpu_kernels"]["torch_cpu_capability"]
    cal = results["calibration"]
    assert sorted((r["world"], r["strategy"], r["seed"]) for r in cal) == [("noisy", "all", 0), ("noisy", "oracle", 0)]
    budgeted = [r for r in results["runs"] if r["budget"] != "steps"]
    runs = [r for r in results["runs"] if r["budget"] == "steps" and r["phase"] != "selection"]
    # chosen on validation: per world and seed the better of all and the oracle, paired with all like a strategy
    chosen = [r for r in results["runs"] if r["phase"] == "selection"]
    assert sorted((r["world"], r["seed"]) for r in chosen) == [("clean", 0), ("noisy", 0), ("noisy", 1)]
    for r in chosen:
        pair = [x for x in runs if (x["world"], x["seed"]) == (r["world"], r["seed"])]
        assert r["strategy"] == "best" and r["validation"] == max(x["validation"] for x in pair)
        assert r["flops"] == sum(x["flops"] for x in pair) and r["picked"] in {"all", "oracle"}
    assert sum(results["phase"]["noisy"]["summary"]["best"]["picked"].values()) == 2
    assert results["phase"]["noisy"]["vs_all"]["best"]["test"]["seeds"] == 2
    # equal FLOPs: each strategy's whole schedule sized to the budget from its own measured FLOPs per step
    assert sorted((r["strategy"], r["budget"]) for r in budgeted) == [("all", 2.0e9)]
    for r in budgeted:
        mine = [x for x in runs if x["world"] == "noisy" and x["strategy"] == r["strategy"]]
        per_step = sum(x["flops"] / x["steps"] for x in mine) / len(mine)
        assert r["steps"] == max(1, round(2.0e9 / per_step)) and r["phase"] == "budget"
    assert set(results["equal_flops"]["noisy"]["2e+09"]["summary"]) == {"all"}
    # the frontier: all at two learning rates (the tuned one is the phase diagram's own run)
    points = results["frontier"]["noisy"]["all"]
    assert [p["learning_rate"] for p in points] == [1e-3, 3e-3] and all(p["seeds"] == [0] for p in points)
    assert sorted((r["world"], r["strategy"], r["seed"], r["learning_rate"], r["phase"]) for r in results["frontier_runs"]) == [
        ("noisy", "all", 0, 1e-3, "frontier"), ("noisy", "all", 0, 3e-3, "frontier")]  # every run, per seed  # fmt: skip
    assert (tmp_path / "docs" / "img" / "interference-frontier.png").stat().st_size > 1000
    assert sorted((r["world"], r["strategy"], r["seed"]) for r in runs) == [
        ("clean", "all", 0), ("clean", "oracle", 0), ("noisy", "all", 0), ("noisy", "all", 1),
        ("noisy", "oracle", 0), ("noisy", "oracle", 1)]  # fmt: skip
    for r in runs:
        assert r["flaw_rate"] == {"clean": 0.05, "noisy": 0.7}[r["world"]] and r["budget"] == "steps"
        assert set(r["metrics"]) == {"test", "ood_steps", "ood_template", "retention"} and r["n"]["test"] == 3
        assert r["learning_rate"] == 1e-3
        if r["strategy"] == "oracle":  # trained on the clean views only
            assert set(r["kept"]) == {"backward", "shortcut", "socratic", "verbose"}
        else:
            assert {"stepwise", "equation"} <= set(r["kept"])
    noisy_all = next(r for r in runs if r["world"] == "noisy" and r["strategy"] == "all")
    assert noisy_all["kept"]["stepwise"]["flawed_share"] > noisy_all["kept"]["socratic"]["flawed_share"]
    phase = results["phase"]["noisy"]
    assert phase["vs_all"]["oracle"]["test"]["seeds"] == 2 and set(phase["vs_all"]) == {"oracle", "best"}
    md = (tmp_path / "docs" / "results.md").read_text()
    assert "<!-- BEGIN INTERFERENCE -->" in md and "### World `noisy` (flaw rate 0.7)" in md and "What each strategy kept" in md
    assert (tmp_path / "docs" / "img" / "interference-phase.png").stat().st_size > 1000
    # resumable: --report-only trains nothing and reports the same runs
    assert interference.main(argv + ["--report-only"]) == 0
    again = json.loads((tmp_path / "interference.json").read_text())
    assert [r["metrics"] for r in again["runs"]] == [r["metrics"] for r in results["runs"]]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("{")
