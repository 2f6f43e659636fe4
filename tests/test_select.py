"""Hard-first selection (pipeline.select): difficulty, selection semantics, subset runs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_schemas import ContractError, RunWriter, load_manifest, read_rationales, rows_to_table
from pipeline.select import QuestionDifficulty, Selection, main, question_difficulty, select_hard_first, write_subset
from tests.conftest import make_rationale_row

PERSPECTIVES = ("stepwise", "verbose")
SAMPLES = 2
# failures (of 4 judged rationales) per question: q-00..q-19
FAILURES = {f"q-{i:02d}": f for i, f in enumerate([0, 1, 0, 4, 2, 0, 0, 1, 0, 3, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0])}
CONFIG = {"source": {"kind": "fixture", "options": {"n": 20}}, "samples": SAMPLES}


def _rows(run_id: str) -> list[dict]:
    rows = []
    for qid, failures in FAILURES.items():
        k = 0
        for perspective in PERSPECTIVES:
            for sample in range(SAMPLES):
                wrong = k < failures
                # one failure of q-03 is unjudged (is_correct null): still a failure
                is_correct = None if (qid == "q-03" and k == 0) else not wrong
                rows.append(make_rationale_row(
                    question_id=qid, perspective=perspective, sample_index=sample, is_correct=is_correct,
                    predicted_answer="4" if wrong else "5", run_id=run_id,
                ))  # fmt: skip
                k += 1
        # an errored extra sample: not judged, not a failure
        rows.append(make_rationale_row(question_id=qid, sample_index=SAMPLES, finish_reason="error",
                                       rationale="", is_correct=None, predicted_answer=None, run_id=run_id))  # fmt: skip
    return rows


def _make_run(root: Path, run_id: str = "run-fixture", config: dict | None = None) -> Path:
    run_dir = root / run_id
    writer = RunWriter(run_dir, run_id, kind="rationales", config=config or CONFIG)
    rows = _rows(run_id)
    half = len(rows) // 2
    writer.write_shard("shard-00000", rows_to_table(rows[:half], "rationales"))
    writer.write_shard("shard-00001", rows_to_table(rows[half:], "rationales"))
    writer.finalize({"rows": len(rows)})
    return run_dir


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return _make_run(tmp_path / "src")


@pytest.fixture
def difficulty(run: Path) -> dict[str, QuestionDifficulty]:
    return question_difficulty(run)


HARD = sorted((q for q, f in FAILURES.items() if f), key=lambda q: -FAILURES[q])
EASY = [q for q, f in FAILURES.items() if not f]


# ---------------------------------------------------------------- difficulty
def test_question_difficulty_counts_judged_rows(difficulty) -> None:
    assert set(difficulty) == set(FAILURES)
    for qid, d in difficulty.items():
        assert d == QuestionDifficulty(qid, rationales=4, failures=FAILURES[qid])
        assert d.failure_rate == FAILURES[qid] / 4
    assert QuestionDifficulty("x", 0, 0).failure_rate == 0.0


# ---------------------------------------------------------------- selection
def test_target_keeps_the_hardest_first(difficulty) -> None:
    sel = select_hard_first(difficulty, target=3)
    assert isinstance(sel, Selection) and sel.question_ids == tuple(sorted(sel.question_ids))
    assert set(sel.question_ids) == {"q-03", "q-09"} | ({"q-04", "q-12"} & set(sel.question_ids))
    assert len(sel.question_ids) == 3
    assert sel.counts["selected_hard"] == 3 and sel.counts["selected_easy"] == 0
    assert sel.counts["failures"] == {"2": 1, "3": 1, "4": 1}
    # exactly the hard ones, then hard + a sample of easy ones up to the target
    assert set(select_hard_first(difficulty, target=len(HARD)).question_ids) == set(HARD)
    sel = select_hard_first(difficulty, target=10)
    assert set(HARD) < set(sel.question_ids) and len(sel.question_ids) == 10
    assert sel.counts == {
        "available_hard": 7, "available_easy": 13, "excluded": 0,
        "selected_hard": 7, "selected_easy": 3, "selected": 10,
        "failures": {"0": 3, "1": 3, "2": 2, "3": 1, "4": 1}, "difficulty": "failures",
    }  # fmt: skip
    # more than there are: everything
    assert set(select_hard_first(difficulty, target=100).question_ids) == set(FAILURES)


def test_easy_fraction(difficulty) -> None:
    assert set(select_hard_first(difficulty, easy_fraction=0.0).question_ids) == set(HARD)
    assert set(select_hard_first(difficulty, easy_fraction=1.0).question_ids) == set(FAILURES)
    sel = select_hard_first(difficulty, easy_fraction=0.5)
    assert set(HARD) <= set(sel.question_ids)
    assert sel.counts["selected_easy"] == round(0.5 * 13 + 0.01) == 7  # rounded half up
    assert sel.counts["selected"] == 14


def test_hard_threshold(difficulty) -> None:
    sel = select_hard_first(difficulty, easy_fraction=0.0, hard_threshold=0.25)
    assert set(sel.question_ids) == {q for q, f in FAILURES.items() if f >= 2}
    assert sel.counts["available_easy"] == 16
    assert select_hard_first(difficulty, easy_fraction=0.0, hard_threshold=1.0).question_ids == ()


def test_seeded_and_deterministic(difficulty) -> None:
    a = select_hard_first(difficulty, target=12, seed=1)
    assert a == select_hard_first(dict(reversed(list(difficulty.items()))), target=12, seed=1)
    others = {select_hard_first(difficulty, target=12, seed=s).question_ids for s in range(2, 8)}
    assert len(others | {a.question_ids}) > 1  # other seeds draw other easy questions
    # ties among hard questions are seeded too: two hard of failure rate 0.5, room for one
    picks = {select_hard_first(difficulty, target=3, seed=s).question_ids for s in range(12)}
    assert {frozenset(p) - {"q-03", "q-09"} for p in picks} == {frozenset({"q-04"}), frozenset({"q-12"})}
    # a larger target keeps every question of a smaller one (same seed)
    assert set(select_hard_first(difficulty, target=9, seed=1).question_ids) < set(a.question_ids)


def test_exclude(difficulty) -> None:
    sel = select_hard_first(difficulty, target=8, exclude={"q-03", "q-00", "nope"})
    assert not {"q-03", "q-00"} & set(sel.question_ids) and len(sel.question_ids) == 8
    assert sel.counts["excluded"] == 2 and sel.counts["available_hard"] == 6
    assert sel.counts["available_easy"] == 12


@pytest.mark.parametrize(
    ("kw", "flag"),
    [({}, "--target"), ({"target": 3, "easy_fraction": 0.5}, "--easy-fraction"), ({"target": 0}, "--target"),
     ({"easy_fraction": 1.5}, "--easy-fraction"), ({"target": 3, "hard_threshold": -0.1}, "--hard-threshold")],
)  # fmt: skip
def test_bad_selection_arguments(difficulty, kw, flag) -> None:
    with pytest.raises(ValueError, match=flag):
        select_hard_first(difficulty, **kw)


# ---------------------------------------------------------------- subsets
def test_write_subset_copies_every_row_of_the_questions(run: Path, tmp_path: Path) -> None:
    ids = ["q-03", "q-09", "q-00"]
    out = write_subset(run, tmp_path / "subset", ids, {"method": "hard_first", "seed": 0})
    assert out == tmp_path / "subset"
    source = read_rationales(run).to_pylist()
    subset = read_rationales(out, verify_checksums=True).to_pylist()
    key = ("question_id", "perspective", "teacher", "sample_index")
    expected = sorted((r for r in source if r["question_id"] in ids), key=lambda r: tuple(r[k] for k in key))
    assert sorted(subset, key=lambda r: tuple(r[k] for k in key)) == expected
    assert len(subset) == 3 * (len(PERSPECTIVES) * SAMPLES + 1)  # incl. wrong and errored rows

    manifest = load_manifest(out)
    assert manifest.complete and manifest.stats == {"questions": 3, "rows": len(subset)}
    assert manifest.run_id.startswith("run-fixture-subset-")
    assert {k: v for k, v in manifest.config.items() if k != "selection"} == CONFIG
    assert manifest.config["selection"] == {
        "method": "hard_first", "seed": 0, "source": str(run), "source_runs": ["run-fixture"], "questions": 3,
    }  # fmt: skip
    # same ids, any order: a no-op; other ids into the same folder: an error
    before = [(s.name, s.sha256, s.created_at) for s in manifest.shards]
    write_subset(run, out, list(reversed(ids)), {"method": "hard_first", "seed": 0})
    assert [(s.name, s.sha256, s.created_at) for s in load_manifest(out).shards] == before
    with pytest.raises(ContractError, match="another output folder"):
        write_subset(run, out, ["q-01"], {})
    with pytest.raises(ValueError, match="not in"):
        write_subset(run, tmp_path / "other", ["q-01", "q-99"], {})
    with pytest.raises(ValueError, match="no questions"):
        write_subset(run, tmp_path / "other", [], {})


def test_write_subset_shards_of_500_rows(tmp_path: Path) -> None:
    run_id = "run-big"
    writer = RunWriter(tmp_path / "src" / run_id, run_id, config=CONFIG)
    rows = [make_rationale_row(question_id=f"q-{i:04d}", sample_index=s, run_id=run_id) for i in range(300) for s in range(4)]
    writer.write_shard("all", rows_to_table(rows, "rationales"))
    writer.finalize()
    ids = [f"q-{i:04d}" for i in range(0, 300, 2)]  # 150 questions x 4 = 600 rows
    out = write_subset(tmp_path / "src", tmp_path / "sub", ids, {})
    manifest = load_manifest(out)
    assert [(s.name, s.rows) for s in manifest.shards] == [("subset-00000", 500), ("subset-00001", 100)]
    assert set(read_rationales(out).column("question_id").to_pylist()) == set(ids)


def test_subset_of_a_synthetic_run_is_the_same_world(tmp_path: Path) -> None:
    from pipeline.sources.synthetic_world import synthetic_world_of
    from pipeline.synthesis import SynthesisConfig, iter_question_shards, run_shard
    from pipeline.synthetic import PERSPECTIVES as SYNTHETIC_PERSPECTIVES

    cfg = SynthesisConfig(num_questions=12, shard_size=6, samples=2, seed=5)
    run_id = cfg.run_id()
    run_dir = tmp_path / "synth" / run_id
    for name, qs in iter_question_shards(cfg):
        run_shard(cfg, run_dir, run_id, name, qs)
    world = synthetic_world_of(run_dir)
    assert world is not None

    difficulty = question_difficulty(run_dir)
    assert len(difficulty) == 12
    assert {d.rationales for d in difficulty.values()} == {len(SYNTHETIC_PERSPECTIVES) * 2}
    sel = select_hard_first(difficulty, target=5, seed=3)
    out = write_subset(run_dir, tmp_path / "subset", sel.question_ids, {"method": "hard_first"})
    manifest = load_manifest(out)
    assert manifest.config["source"] == load_manifest(run_dir).config["source"]
    assert synthetic_world_of(out) == world
    assert set(read_rationales(out).column("question_id").to_pylist()) == set(sel.question_ids)


# ---------------------------------------------------------------- CLI
def test_cli_writes_subset_and_selection_json(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sel"
    assert main([str(run), "--out", str(out), "--target", "9", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert "hard-first selection: 9 questions" in printed and "hard" in printed and "easy" in printed
    report = json.loads((out / "selection.json").read_text())
    assert report["counts"]["selected"] == 9 and report["args"]["target"] == 9 and report["args"]["seed"] == 4
    assert report["question_ids"] == list(select_hard_first(question_difficulty(run), target=9, seed=4).question_ids)
    assert set(read_rationales(out).column("question_id").to_pylist()) == set(report["question_ids"])
    assert load_manifest(out).config["selection"]["target"] == 9
    # resumable: the same command again is fine
    assert main([str(run), "--out", str(out), "--target", "9", "--seed", "4", "--quiet"]) == 0
    assert capsys.readouterr().out == ""

    # --exclude-from: a second, disjoint selection
    out2 = tmp_path / "sel2"
    assert main([str(run), "--out", str(out2), "--easy-fraction", "1", "--exclude-from", str(out), "--quiet"]) == 0
    second = set(json.loads((out2 / "selection.json").read_text())["question_ids"])
    assert second == set(FAILURES) - set(report["question_ids"])
    # another selection into a folder holding a run: refused
    assert main([str(run), "--out", str(out), "--target", "3", "--quiet"]) == 2
    assert "another output folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["--target", "3"], "RUN"), (["--easy-fraction", "0.5", "--target", "3"], "--easy-fraction"),
     ([], "--target"), (["--target", "0"], "--target"), (["--easy-fraction", "1.5"], "--easy-fraction"),
     (["--target", "3", "--exclude-from", "/nonexistent/x"], "--exclude-from"),
     (["--target", "3", "--hard-threshold", "2"], "--hard-threshold")],
)  # fmt: skip
def test_cli_bad_arguments_exit_2(run: Path, tmp_path: Path, capsys, args, flag) -> None:
    target = str(tmp_path / "missing") if flag == "RUN" else str(run)
    assert main([target, "--out", str(tmp_path / "o"), *args]) == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_missing_run_argument(capsys) -> None:
    assert main(["--target", "3", "--out", "x"]) == 2
    assert "RUN" in capsys.readouterr().err
