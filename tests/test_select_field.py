"""Selection by a source field (``pipeline.select --difficulty field:NAME``): MATH500's ``level``.

The run is a tiny synthesis of the first real MATH500 questions (``$MIND_SHARED_DATA/math500``) by
a scripted teacher (always right, so every question is easy by failures): synthesis carries the
question's source fields into each row's ``metadata["question"]``, and the selection reads them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from data_schemas import RunWriter, load_manifest, read_rationales, rows_to_table
from pipeline import synthesis as synthesis_mod
from pipeline.select import main, parse_difficulty, question_difficulty, run_selection, select_hard_first
from pipeline.sources import load_questions
from pipeline.synthesis import SynthesisConfig, iter_question_shards, run_shard
from pipeline.teachers import Completion, GenerationRequest, TeacherBackend
from tests.conftest import make_rationale_row

N = 12
SCRIPTED_TEACHER = {"backend": "transformers", "name": "scripted-math", "options": {"model": "/nonexistent/scripted"}}


class RightTeacher(TeacherBackend):
    """States the gold answer, boxed: every rationale is judged correct."""

    name = "scripted-math"
    thread_safe = True

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        gold = [r.question["gold_answer"] for r in requests]
        return [Completion(text=f"So the answer is $\\boxed{{{g}}}$.", finish_reason="stop", num_tokens=9) for g in gold]


@pytest.fixture(scope="module")
def math_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, dict[str, int]]:
    """(run folder, level by question id) of a 12-question MATH500 run, 1 view x 2 samples."""
    source = {"kind": "math500", "path": str(shared_data / "math500")}
    cfg = SynthesisConfig.model_validate({
        "source": source, "num_questions": N, "shard_size": 5, "samples": 2, "perspective_set": "math",
        "perspectives": ["stepwise"], "teachers": [SCRIPTED_TEACHER], "sampling": {"temperature": 0.0, "max_tokens": 16},
    })  # fmt: skip
    teacher = RightTeacher()
    real = synthesis_mod.teacher_in_process
    run_dir = tmp_path_factory.mktemp("math") / cfg.run_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synthesis_mod, "teacher_in_process",
                   lambda spec: (teacher, False) if spec.name == "scripted-math" else real(spec))  # fmt: skip
        for name, qs in iter_question_shards(cfg):
            run_shard(cfg, run_dir, cfg.run_id(), name, qs)
    questions = list(load_questions("math500", shared_data / "math500"))[:N]
    return run_dir, {q["question_id"]: json.loads(q["metadata"])["level"] for q in questions}


def test_synthesis_carries_the_source_fields(math_run) -> None:
    run_dir, levels = math_run
    rows = read_rationales(run_dir).to_pylist()
    assert len(rows) == N * 2 and {r["question_id"] for r in rows} == set(levels)
    assert all(r["is_correct"] is True for r in rows)  # the scripted teacher never fails
    for r in rows:
        carried = json.loads(r["metadata"])["question"]
        assert carried["level"] == carried["difficulty"] == levels[r["question_id"]]
        assert carried["subject"] and r["question_id"] == f"math500:{carried['unique_id']}"


def test_difficulty_and_selection_by_level(math_run) -> None:
    run_dir, levels = math_run
    assert len(set(levels.values())) >= 3  # the first questions span several levels
    difficulty = question_difficulty(run_dir, "level")
    assert {q: d.value for q, d in difficulty.items()} == {q: float(v) for q, v in levels.items()}
    assert all(d.failures == 0 and d.rationales == 2 for d in difficulty.values())

    hard = {q for q, v in levels.items() if v >= 4}
    assert 0 < len(hard) < N
    sel = select_hard_first(difficulty, easy_fraction=0.0, hard_threshold=4, field="level")
    assert set(sel.question_ids) == hard
    assert sel.counts["difficulty"] == "field:level" and sel.counts["selected_hard"] == len(hard)
    by_level = {str(v): sum(1 for x in levels.values() if x == v) for v in (4, 5) if v in levels.values()}
    assert sel.counts["values"] == by_level
    # by failures the same run has no hard question at all
    assert select_hard_first(question_difficulty(run_dir), easy_fraction=0.0).question_ids == ()
    # a target keeps the highest levels first, then a seeded sample of the easy ones
    top = sorted(levels, key=lambda q: -levels[q])
    fives = {q for q in top if levels[q] == 5}
    small = select_hard_first(difficulty, target=len(fives), hard_threshold=4, field="level")
    assert set(small.question_ids) == fives
    big = select_hard_first(difficulty, target=len(hard) + 2, hard_threshold=4, field="level", seed=7)
    assert hard < set(big.question_ids) and big.counts["selected_easy"] == 2
    assert big == select_hard_first(difficulty, target=len(hard) + 2, hard_threshold=4, field="level", seed=7)


def test_cli_selects_by_level(math_run, tmp_path: Path, capsys) -> None:
    run_dir, levels = math_run
    out = tmp_path / "hard"
    args = [str(run_dir), "--out", str(out), "--difficulty", "field:level", "--hard-threshold", "4",
            "--easy-fraction", "0"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    hard = {q for q, v in levels.items() if v >= 4}
    assert f"hard-first selection: {len(hard)} questions" in printed and "difficulty: field:level" in printed
    assert "selected by level" in printed
    report = json.loads((out / "selection.json").read_text())
    assert set(report["question_ids"]) == hard
    assert report["args"]["difficulty"] == "field:level" and report["args"]["hard_threshold"] == 4.0
    assert load_manifest(out).config["selection"]["difficulty"] == "field:level"
    rows = read_rationales(out).to_pylist()
    assert {r["question_id"] for r in rows} == hard and len(rows) == 2 * len(hard)
    assert all(json.loads(r["metadata"])["question"]["level"] >= 4 for r in rows)  # the subset keeps the fields
    # a subset is a run like any other: select from it again by the same field
    again = run_selection(out, tmp_path / "fives", target=1, difficulty="field:level", hard_threshold=5)
    assert levels[again["question_ids"][0]] == max(levels[q] for q in hard)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--difficulty", "level", "--hard-threshold", "4"], "--difficulty"),
     (["--difficulty", "field:", "--hard-threshold", "4"], "'failures' or 'field:NAME'"),
     (["--difficulty", "field:level"], "--hard-threshold) is required with difficulty field:level"),
     (["--difficulty", "field:level", "--hard-threshold", "nan"], "finite number")],
)  # fmt: skip
def test_cli_bad_difficulty_arguments(math_run, tmp_path: Path, capsys, args, needle) -> None:
    run_dir, _ = math_run
    assert main([str(run_dir), "--out", str(tmp_path / "o"), "--target", "3", *args]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_or_non_numeric_field_is_named_with_the_run(math_run, tmp_path: Path, capsys) -> None:
    run_dir, _ = math_run
    base = [str(run_dir), "--out", str(tmp_path / "o"), "--target", "3", "--hard-threshold", "1"]
    assert main([*base, "--difficulty", "field:grade"]) == 2
    err = capsys.readouterr().err
    assert "field 'grade' is missing from any question(s) of the run" in err and str(run_dir) in err
    assert main([*base, "--difficulty", "field:subject"]) == 2
    err = capsys.readouterr().err
    assert "field 'subject' must be a number" in err and str(run_dir) in err
    assert not (tmp_path / "o").exists()


def test_rows_without_carried_fields(tmp_path: Path) -> None:
    """Older runs (no ``metadata["question"]``) fail clearly; a top-level key (imported labels) counts."""
    run_dir = tmp_path / "r"
    writer = RunWriter(run_dir, "run-r", kind="rationales", config={"source": {"kind": "fixture"}})
    rows = [
        make_rationale_row(question_id="a", metadata=json.dumps({"level": "5"})),
        make_rationale_row(question_id="a", sample_index=1, metadata=None),
        make_rationale_row(question_id="b", metadata=json.dumps({"question": {"level": 2}, "error": "x"})),
        make_rationale_row(question_id="c", metadata=None),
    ]
    writer.write_shard("s", rows_to_table(rows, "rationales"))
    writer.finalize({})
    with pytest.raises(ValueError, match=r"'level' is missing from 1 of 3 question\(s\) of the run .*\(e\.g\. c\)"):
        question_difficulty(run_dir, "level")
    writer = RunWriter(tmp_path / "r2", "run-r2", kind="rationales", config={"source": {"kind": "fixture"}})
    writer.write_shard("s", rows_to_table(rows[:3], "rationales"))
    writer.finalize({})
    assert {q: d.value for q, d in question_difficulty(tmp_path / "r2", "level").items()} == {"a": 5.0, "b": 2.0}


def test_parse_difficulty() -> None:
    assert parse_difficulty("failures") is None
    assert parse_difficulty("field:level") == "level"
    for bad in ("level", "field:", "field: ", "Failures"):
        with pytest.raises(ValueError, match="--difficulty"):
            parse_difficulty(bad)
