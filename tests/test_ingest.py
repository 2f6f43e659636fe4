"""Ingest of existing rationale files (python -m pipeline.ingest), on the real files in the test data folder (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from data_schemas import MANIFEST_NAME, ContractError, load_manifest, read_rationales
from pipeline import ingest as ingest_mod
from pipeline.ingest import IngestError, RunConflictError, ingest, main

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.ingest", *map(str, args)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env,
    )


def _no_run(out: Path) -> None:
    """Nothing was written: the folder does not exist or holds no manifest and no shards."""
    assert not (out / MANIFEST_NAME).exists()
    assert not list(out.glob("**/*.parquet"))
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temp dir left behind"


def _write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


# ---------------------------------------------------------------- the real files, through the CLI
def test_cli_gsm8k_model_solutions(shared_data, tmp_path):
    out = tmp_path / "ms"
    res = _cli("gsm8k-model-solutions", shared_data / "gsm8k" / "example_model_solutions.jsonl", "--out", out)
    assert res.returncode == 0, res.stderr
    table = read_rationales(out)
    assert table.num_rows == 5276
    rows = table.to_pylist()
    assert Counter(r["teacher"] for r in rows) == {
        f"import/gsm8k-{k}": 1319 for k in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
    }
    assert {r["perspective"] for r in rows} == {"default"} and {r["sample_index"] for r in rows} == {0}
    assert len({r["question_id"] for r in rows}) == 1319 and "gsm8k:test:0" in {r["question_id"] for r in rows}
    labels = [json.loads(r["metadata"])["label_is_correct"] for r in rows]
    assert sum(labels) == 2001
    assert not any(re.search(r"<<[^<>]*>>", r["rationale"]) for r in rows)  # unclosed notes (5 truncated outputs) stay
    assert {r["finish_reason"] for r in rows} == {"stop"} and all(r["num_tokens"] is None for r in rows)
    assert {r["source"] for r in rows} == {"gsm8k"} and {r["split"] for r in rows} == {"test"}
    manifest = load_manifest(out)
    assert manifest.complete and manifest.run_id.startswith("ingest-gsm8k-model-solutions-")
    agreement = manifest.stats["label_agreement"]
    assert agreement["labelled"] == 5276 and agreement["pct_agree"] > 95
    assert "175b_verification" in res.stdout and "agreement" in res.stdout


def test_cli_mentor_kd(shared_data, tmp_path):
    out = tmp_path / "mkd"
    res = _cli("mentor-kd", shared_data / "mentor_kd" / "svamp_3_train.json", "--out", out)
    assert res.returncode == 0, res.stderr
    rows = read_rationales(out).to_pylist()
    assert len(rows) == 1953
    assert len({r["question_id"] for r in rows}) == 651
    assert {r["teacher"] for r in rows} == {"import/mentor-kd/gpt-3.5-turbo"} and {r["task"] for r in rows} == {"svamp"}
    per_q = Counter(r["question_id"] for r in rows)
    assert set(per_q.values()) == {3}
    by_q = {}
    for r in rows:
        by_q.setdefault(r["question_id"], set()).add(r["sample_index"])
    assert all(v == {0, 1, 2} for v in by_q.values())
    assert 0.5 < sum(bool(r["is_correct"]) for r in rows) / len(rows) < 1.0  # real teacher noise
    assert len({r["seed"] for r in rows}) == 1953


# ---------------------------------------------------------------- every format, through the API
def test_gsm8k_human_and_socratic_share_ids(shared_data, tmp_path):
    human = ingest("gsm8k", shared_data / "gsm8k" / "test.jsonl", tmp_path / "h")
    socratic = ingest("gsm8k-socratic", shared_data / "gsm8k" / "test_socratic.jsonl", tmp_path / "s")
    assert human.rows == socratic.rows == 1319
    h, s = read_rationales(tmp_path / "h").to_pylist(), read_rationales(tmp_path / "s").to_pylist()
    assert {(r["teacher"], r["perspective"]) for r in h} == {("human", "human")}
    assert {(r["teacher"], r["perspective"]) for r in s} == {("human", "socratic")}
    assert {r["question_id"] for r in h} == {r["question_id"] for r in s}
    assert all("<<" not in r["rationale"] for r in h + s)
    assert sum(r["is_correct"] is True for r in h) / len(h) > 0.99
    assert human.groups[0]["pct_correct"] > 99


def test_keep_calculator_notes(tmp_path):
    p = _write(tmp_path / "test.jsonl", [{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}])
    ingest("gsm8k", p, tmp_path / "a")
    ingest("gsm8k", p, tmp_path / "b", keep_calculator_notes=True)
    assert read_rationales(tmp_path / "a")["rationale"][0].as_py() == "1+1=2\n#### 2"
    assert read_rationales(tmp_path / "b")["rationale"][0].as_py() == "1+1=<<1+1=2>>2\n#### 2"


@pytest.mark.parametrize(
    ("stem", "task", "rows"),
    [("last_letter_concatenation_3_train", "last_letter", 1050), ("date_understanding_3_train", "date_understanding", 768)],
)
def test_mentor_kd_other_tasks(shared_data, tmp_path, stem, task, rows):
    summary = ingest("mentor-kd", shared_data / "mentor_kd" / f"{stem}.json", tmp_path / "o")
    assert summary.rows == rows and summary.questions == rows // 3
    table = read_rationales(tmp_path / "o")
    assert set(table["task"].to_pylist()) == {task}


def test_mentor_kd_repeated_question_continues_samples(shared_data, tmp_path):
    ingest("mentor-kd", shared_data / "mentor_kd" / "asdiv_3_train.json", tmp_path / "o")
    rows = read_rationales(tmp_path / "o").to_pylist()
    assert len(rows) == 4269 and len({r["question_id"] for r in rows}) == 1422
    dup = sorted(r["sample_index"] for r in rows if r["question_id"] == "mentor_kd/asdiv_3_train:450")
    assert dup == [0, 1, 2, 3, 4, 5]


def test_jsonl_defaults(tmp_path):
    p = _write(
        tmp_path / "mine.jsonl",
        [
            {"question": "2+3?", "answer": 5, "rationale": "2+3=5. The answer is 5.", "task": "arith"},
            {"question": "2+3?", "answer": 5, "rationale": "The answer is 6.", "task": "arith"},
            {"question": "Is fire hot?", "answer": "yes", "rationale": "Fire burns, so yes.", "task": "strategyqa",
             "perspective": "short", "teacher": "me", "id": "q7"},
        ],
    )
    summary = ingest("jsonl", p, tmp_path / "o")
    rows = sorted(read_rationales(tmp_path / "o").to_pylist(), key=lambda r: (r["question_id"], r["sample_index"]))
    assert summary.rows == 3 and summary.questions == 2
    arith = [r for r in rows if r["task"] == "arith"]
    assert [r["sample_index"] for r in arith] == [0, 1] and [r["is_correct"] for r in arith] == [True, False]
    assert {r["teacher"] for r in arith} == {"import/mine"} and {r["perspective"] for r in arith} == {"default"}
    other = next(r for r in rows if r["task"] == "strategyqa")
    assert (other["question_id"], other["teacher"], other["perspective"], other["is_correct"]) == ("q7", "me", "short", True)


def test_jsonl_field_flags(tmp_path, capsys):
    p = _write(
        tmp_path / "gen.jsonl",
        [{"prompt": "3*4?", "gold": "12", "output": "3*4=12", "style": "eq", "model": "m1", "uid": 1}],
    )
    out = tmp_path / "o"
    rc = main(["jsonl", str(p), "--out", str(out), "--question-field", "prompt", "--answer-field", "gold",
               "--rationale-field", "output", "--perspective-field", "style", "--teacher-field", "model",
               "--id-field", "uid", "--task", "arith", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    (row,) = read_rationales(out).to_pylist()
    assert (row["question_id"], row["perspective"], row["teacher"], row["gold_answer"], row["is_correct"]) == (
        "1", "eq", "m1", "12", True)
    out2 = tmp_path / "o2"
    assert main(["jsonl", str(p), "--out", str(out2), "--question-field", "prompt", "--answer-field", "gold",
                 "--rationale-field", "output", "--task", "arith", "--teacher", "t0", "--perspective", "p0",
                 "--quiet"]) == 0
    (row,) = read_rationales(out2).to_pylist()
    assert (row["teacher"], row["perspective"]) == ("t0", "p0")


def test_option_not_for_format(shared_data, tmp_path, capsys):
    rc = main(["gsm8k", str(shared_data / "gsm8k" / "test.jsonl"), "--out", str(tmp_path / "o"), "--answer-field", "x"])
    assert rc == 2 and "do not apply" in capsys.readouterr().err
    _no_run(tmp_path / "o")


def test_shards_of_bounded_size(shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_mod, "SHARD_ROWS", 600)
    summary = ingest("mentor-kd", shared_data / "mentor_kd" / "svamp_3_train.json", tmp_path / "o")
    manifest = load_manifest(tmp_path / "o")
    assert summary.shards == 4 and [s.rows for s in manifest.shards] == [600, 600, 600, 153]
    assert read_rationales(tmp_path / "o", verify_checksums=True).num_rows == 1953


# ---------------------------------------------------------------- bad input
GOOD = {"question": "1+1?", "answer": "1+1=2\n#### 2"}
BAD_CASES = {
    "malformed line": ("gsm8k", "test.jsonl", [GOOD, '{"question": "x", ', GOOD], 2, "invalid JSON"),
    "missing field": ("gsm8k", "test.jsonl", [GOOD, GOOD, {"question": "x"}], 3, "missing field 'answer'"),
    "non-numeric gold": ("gsm8k", "test.jsonl", [{"question": "x", "answer": "so\n#### many"}], 1, "not a number"),
    "socratic missing question": ("gsm8k-socratic", "test_socratic.jsonl", [{"answer": "#### 1"}], 1,
                                  "missing field 'question'"),
    "model solutions no A line": ("gsm8k-model-solutions", "ms.jsonl", [{"question": "q", "ground_truth": "4"}], 1,
                                  "no 'A: <answer>' line"),
    "model solutions missing key": ("gsm8k-model-solutions", "ms.jsonl", [
        {"question": "q", "ground_truth": "A: 4", "6b_finetuning": {"solution": "A: 4", "is_correct": True}}], 1,
        "missing field '6b_verification'"),
    "jsonl missing rationale": ("jsonl", "x.jsonl", [{"question": "q", "answer": "1", "task": "arith"}], 1,
                                "'rationale' is missing"),
    "jsonl no task": ("jsonl", "x.jsonl", [{"question": "q", "answer": "1", "rationale": "1"}], 1, "no task"),
    "jsonl unknown task": ("jsonl", "x.jsonl", [{"question": "q", "answer": "1", "rationale": "1", "task": "poetry"}],
                           1, "unknown task"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_fails_and_writes_nothing(tmp_path, capsys, case):
    fmt, name, lines, line, reason = BAD_CASES[case]
    p = _write(tmp_path / name, lines)
    out = tmp_path / "out"
    assert main([fmt, str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{p}:{line}: " in err and reason in err, err
    _no_run(out)
    assert not out.exists()


def test_bad_input_cli_exit_status(tmp_path):
    p = _write(tmp_path / "test.jsonl", [GOOD, "not json"])
    res = _cli("gsm8k", p, "--out", tmp_path / "out")
    assert res.returncode == 2 and f"{p}:2: invalid JSON" in res.stderr
    _no_run(tmp_path / "out")


def _mkd(path: Path, inputs: list[str], answer: str = "3") -> Path:
    rows = [{"input": q, "chain": f"So the answer is {answer}.", "answer": answer, "initial_correct": True}
            for q in inputs]
    path.write_text(json.dumps(rows, indent=4))  # element i starts at line 2 + 6*i
    return path


def test_mentor_kd_group_mismatch(tmp_path, capsys):
    p = _mkd(tmp_path / "svamp_3_train.json", ["a?"] * 3 + ["b?", "b?", "c?"] + ["d?"] * 3)
    out = tmp_path / "out"
    assert main(["mentor-kd", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{p}:{2 + 6 * 5}: 'input' differs from line {2 + 6 * 3}" in err
    _no_run(out)
    assert main(["mentor-kd", str(p), "--out", str(out), "--on-error", "skip", "--quiet"]) == 0
    rows = read_rationales(out).to_pylist()
    assert sorted({r["question_id"] for r in rows}) == ["mentor_kd/svamp_3_train:0", "mentor_kd/svamp_3_train:2"]
    (reject,) = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == 2 + 6 * 5 and "differs" in reject["reason"] and len(reject["raw"]) == 3


def test_malformed_json_array_always_fails(tmp_path, capsys):
    p = tmp_path / "svamp_3_train.json"
    p.write_text('[\n{"input": "a", "chain": "1", "answer": "1"},\n{"input": \n]')
    for mode in ("fail", "skip"):
        assert main(["mentor-kd", str(p), "--out", str(tmp_path / "out"), "--on-error", mode]) == 2
        assert f"{p}:4: invalid JSON" in capsys.readouterr().err
    _no_run(tmp_path / "out")


def test_on_error_skip(tmp_path, capsys):
    p = _write(tmp_path / "test.jsonl", [GOOD, '{"bad', {"question": "x"}, {"question": "y", "answer": "#### lots"}, GOOD])
    out = tmp_path / "out"
    assert main(["gsm8k", str(p), "--out", str(out), "--on-error", "skip"]) == 0
    assert "3 rejected" in capsys.readouterr().out
    rows = read_rationales(out).to_pylist()
    assert sorted(r["question_id"] for r in rows) == ["gsm8k:test:0", "gsm8k:test:4"]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rejects] == [(str(p), 2), (str(p), 3), (str(p), 4)]
    assert "invalid JSON" in rejects[0]["reason"] and rejects[0]["raw"] == '{"bad'
    assert "missing field 'answer'" in rejects[1]["reason"] and rejects[1]["raw"] == {"question": "x"}
    assert "not a number" in rejects[2]["reason"]
    assert load_manifest(out).stats["rejects"] == 3


# ---------------------------------------------------------------- re-runs and output conflicts
def test_idempotent_rerun(shared_data, tmp_path, capsys):
    src = shared_data / "mentor_kd" / "svamp_3_train.json"
    out = tmp_path / "out"
    first = ingest("mentor-kd", src, out)
    before = (out / MANIFEST_NAME).read_text()
    shard = next((out / "shards").iterdir())
    mtime = shard.stat().st_mtime_ns
    assert main(["mentor-kd", str(src), "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out / MANIFEST_NAME).read_text() == before and shard.stat().st_mtime_ns == mtime
    again = ingest("mentor-kd", src, out)
    assert again.already_complete and again.run_id == first.run_id and again.rows == first.rows


def test_other_run_in_out_dir(shared_data, tmp_path, capsys):
    out = tmp_path / "out"
    a = ingest("mentor-kd", shared_data / "mentor_kd" / "last_letter_concatenation_3_train.json", out)
    other = shared_data / "mentor_kd" / "date_understanding_3_train.json"
    assert main(["mentor-kd", str(other), "--out", str(out)]) == 2
    assert "holds another run" in capsys.readouterr().err and load_manifest(out).run_id == a.run_id
    with pytest.raises(RunConflictError):
        ingest("mentor-kd", other, out)
    assert main(["mentor-kd", str(other), "--out", str(out), "--overwrite", "--quiet"]) == 0
    manifest = load_manifest(out)
    assert manifest.run_id != a.run_id and manifest.rows == 768
    assert read_rationales(out).num_rows == 768
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or old folders left


def test_options_change_run_id(tmp_path):
    p = _write(tmp_path / "test.jsonl", [GOOD])
    a = ingest("gsm8k", p, tmp_path / "a")
    b = ingest("gsm8k", p, tmp_path / "b", keep_calculator_notes=True)
    c = ingest("gsm8k", p, tmp_path / "c")
    assert a.run_id == c.run_id != b.run_id


def test_refuses_foreign_folder(tmp_path, capsys):
    p = _write(tmp_path / "test.jsonl", [GOOD])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["gsm8k", str(p), "--out", str(out), "--overwrite"]) == 2
    assert "not a run directory" in capsys.readouterr().err and (out / "notes.txt").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ingest("gsm8k", p, empty).rows == 1


def test_api_errors(tmp_path):
    p = _write(tmp_path / "test.jsonl", [GOOD, {"question": "x"}, "nope"])
    with pytest.raises(IngestError) as exc:
        ingest("gsm8k", p, tmp_path / "out")
    assert [e.where for e in exc.value.errors] == [f"{p}:2", f"{p}:3"]
    assert isinstance(exc.value, ContractError) and exc.value.where == f"{p}:2"
    with pytest.raises(ContractError, match="no such file"):
        ingest("gsm8k", tmp_path / "nope.jsonl", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown ingest format"):
        ingest("csv", p, tmp_path / "out")
    _no_run(tmp_path / "out")
