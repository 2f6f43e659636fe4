"""The ``select`` Prefect flow: the hard-first selection as a task, its artifact, the CLI, bad arguments.

Runs against the session's ``prefect_harness`` (one temporary server for all flow tests); the
rationale run is the small hand-made one of ``tests/test_select.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_schemas import load_manifest, read_rationales
from flows import select as select_flow
from pipeline.select import question_difficulty, select_hard_first
from tests.test_select import FAILURES, _make_run
from tests.test_select_field import math_run  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_flow_selects_writes_the_subset_and_publishes_counts(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    src = _make_run(tmp_path / "src")
    out = tmp_path / "sel"
    state = select_flow.select(run=str(src), out=str(out), target=9, seed=4, return_state=True)
    assert state.is_completed()
    report = state.result()
    expected = select_hard_first(question_difficulty(src), target=9, seed=4)
    assert report["question_ids"] == list(expected.question_ids) and report["counts"] == expected.counts
    assert report["run_id"] == load_manifest(out).run_id
    assert json.loads((out / "selection.json").read_text())["question_ids"] == report["question_ids"]
    assert set(read_rationales(out).column("question_id").to_pylist()) == set(report["question_ids"])

    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    table = next(a for a in artifacts if a.key == "select-counts")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    by_bucket = {r["bucket"]: r for r in rows}
    hard = sum(1 for f in FAILURES.values() if f)
    assert by_bucket["hard"] == {"bucket": "hard", "available": hard, "selected": hard}
    assert by_bucket["total"]["selected"] == 9
    assert sum(r["selected"] for b, r in by_bucket.items() if b.endswith(" failed")) == 9


def test_cli_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _make_run(tmp_path / "src")
    out = tmp_path / "sel"
    assert select_flow.main([str(src), "--out", str(out), "--easy-fraction", "0"]) == 0
    printed = capsys.readouterr().out
    hard = sum(1 for f in FAILURES.values() if f)
    assert f"hard-first selection: {hard} questions" in printed and f"wrote {hard} questions to {out}" in printed

    # checked before Prefect starts: nothing written, the argument named
    for args, needle in (
        (["--target", "0"], "target (--target)"),
        (["--target", "3", "--easy-fraction", "0.5"], "exactly one of"),
        (["--target", "3", "--exclude-from", str(tmp_path / "nope")], "exclude_from (--exclude-from)"),
    ):
        assert select_flow.main([str(src), "--out", str(tmp_path / "o"), *args]) == 2, args
        assert needle in capsys.readouterr().err, args
    assert select_flow.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--target", "3"]) == 2
    assert "RUN: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="easy_fraction"):
        select_flow.run(src, tmp_path / "o", easy_fraction=1.5)


def test_flow_passes_the_difficulty_field_through(math_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``difficulty="field:level"`` reaches the task: selection by MATH level, its counts in the artifact rows."""
    run_dir, levels = math_run
    hard = {q for q, v in levels.items() if v >= 4}
    state = select_flow.select(run=str(run_dir), out=str(tmp_path / "sel"), easy_fraction=0.0,
                               difficulty="field:level", hard_threshold=4, return_state=True)  # fmt: skip
    assert state.is_completed()
    report = state.result()
    assert set(report["question_ids"]) == hard and report["args"]["difficulty"] == "field:level"
    difficulty = question_difficulty(run_dir, "level")
    expected = select_hard_first(difficulty, easy_fraction=0.0, hard_threshold=4, field="level")
    assert report["counts"] == expected.counts
    rows = {r["bucket"]: r["selected"] for r in select_flow.counts_table(report["counts"])}
    assert sum(n for b, n in rows.items() if b.startswith("level=")) == len(hard) == rows["hard"]

    # the CLI passes --difficulty; bad ones are refused before Prefect starts
    out = tmp_path / "cli"
    args = [str(run_dir), "--out", str(out), "--difficulty", "field:level", "--hard-threshold", "5", "--target", "2"]
    assert select_flow.main(args) == 0
    assert json.loads((out / "selection.json").read_text())["args"]["difficulty"] == "field:level"
    assert select_flow.main([*args[:3], "--difficulty", "field:level", "--target", "2"]) == 2
    assert "--hard-threshold) is required" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--difficulty"):
        select_flow.run(run_dir, tmp_path / "o", target=2, difficulty="lvl")
    assert not (tmp_path / "o").exists()
