"""``benchmarks.interference --merge``: worlds reported by separate invocations combine into one report."""

from __future__ import annotations

import pytest

from benchmarks.interference_merge import merge_results


def _results(worlds: dict[str, float], tag: str, config: str = "configs/interference/default.yaml") -> dict:
    runs = [{"world": w, "strategy": s, "seed": 0, "metrics": {"test": x}, "tag": tag}
            for w, x in worlds.items() for s in ("all", "mind")]  # fmt: skip
    return {
        "config_file": config, "noisy_views": ["socratic", "verbose"], "machine": {"tag": tag}, "wall_seconds": 10.0,
        "worlds": {"clean": {}, "flaw-0.3": {}, "flaw-0.55": {}, "flaw-0.8": {}},
        "runs": runs, "calibration": [{"world": w, "strategy": "oracle", "tag": tag} for w in worlds if w == "flaw-0.8"],
        "phase": {w: {"flaw_rate": x, "tag": tag} for w, x in worlds.items()},
        "headline": {w: {"mind": {"minus_all": x}} for w, x in worlds.items()},
        "equal_flops": {}, "frontier": {}, "calibration_summary": {}, "calibration_gap": {},
        "frontier_runs": [{"world": w, "strategy": "all", "seed": 0, "tag": tag} for w in worlds],
        "tuning": {"chosen": {"clean": {}, "flaw-0.3": {}, "flaw-0.8": {}} | {w: {"all": {"learning_rate": x}} for w, x in worlds.items()},
                   "runs": [{"world": w, "tag": tag} for w in worlds]},
    }  # fmt: skip


def test_worlds_of_the_earlier_file_are_kept_and_shared_worlds_come_from_the_new_report() -> None:
    prior = _results({"clean": 0.05, "flaw-0.8": 0.8}, "old")
    new = _results({"flaw-0.3": 0.3, "flaw-0.8": 0.81}, "new")
    new["calibration_gap"] = {"clean": None}  # a world this invocation did not run says nothing about it
    prior["calibration_gap"] = {"clean": 0.5}
    merged = merge_results(prior, new)
    assert merged["calibration_gap"] == {"clean": 0.5}
    assert list(merged["phase"]) == ["clean", "flaw-0.3", "flaw-0.8"]  # the family's order, not the merge's
    assert merged["phase"]["clean"]["tag"] == "old"
    assert merged["phase"]["flaw-0.8"]["tag"] == merged["phase"]["flaw-0.3"]["tag"] == "new"  # never mixed
    by_world = {(r["world"], r["tag"]) for r in merged["runs"]}
    assert by_world == {("clean", "old"), ("flaw-0.3", "new"), ("flaw-0.8", "new")}
    assert len(merged["runs"]) == 6 and [r["tag"] for r in merged["calibration"]] == ["new"]
    assert {(r["world"], r["tag"]) for r in merged["frontier_runs"]} == by_world
    assert merged["tuning"]["chosen"]["clean"] == {"all": {"learning_rate": 0.05}}
    assert merged["tuning"]["chosen"]["flaw-0.8"] == {"all": {"learning_rate": 0.81}}
    assert {(r["world"], r["tag"]) for r in merged["tuning"]["runs"]} == by_world
    assert merged["headline"]["flaw-0.8"]["mind"]["minus_all"] == 0.81
    assert merged["merged"][-1]["worlds_kept"] == ["clean"] and merged["wall_seconds"] == 20.0


def test_results_of_another_study_are_refused() -> None:
    with pytest.raises(ValueError, match="another study"):
        merge_results(_results({"clean": 0.05}, "old", config="configs/interference/flaws.yaml"), _results({}, "new"))


def test_a_world_only_calibrated_again_keeps_its_earlier_phase_diagram() -> None:
    """Every invocation calibrates the calibration world; one that runs another world's phase diagram must not
    drop the calibration world's phase diagram from the earlier file (it re-reports only its calibration)."""
    prior = _results({"flaw-0.8": 0.8}, "old")
    prior["tuning"]["chosen"]["flaw-0.8"] = {"all": {"learning_rate": 1.0}, "mind": {"learning_rate": 2.0}}
    new = _results({"clean": 0.05}, "new")
    new["calibration"] = [{"world": "flaw-0.8", "strategy": "oracle", "tag": "new"}]
    new["calibration_gap"] = {"flaw-0.8": 0.14}
    new["tuning"]["chosen"]["flaw-0.8"] = {"all": {"learning_rate": 1.0}}  # the calibration's own tuning
    merged = merge_results(prior, new)
    assert list(merged["phase"]) == ["clean", "flaw-0.8"] and merged["phase"]["flaw-0.8"]["tag"] == "old"
    assert {(r["world"], r["tag"]) for r in merged["runs"]} == {("clean", "new"), ("flaw-0.8", "old")}
    assert [r["tag"] for r in merged["calibration"]] == ["new"] and merged["calibration_gap"] == {"flaw-0.8": 0.14}
    assert merged["tuning"]["chosen"]["flaw-0.8"] == {"all": {"learning_rate": 1.0}, "mind": {"learning_rate": 2.0}}
    assert merged["merged"][-1]["worlds_kept"] == ["flaw-0.8"]
