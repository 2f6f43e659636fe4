"""pipeline.browse: stats against a hand count, show, list filters, the CLI and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_schemas import RunWriter, rows_to_table
from pipeline import browse, shard_footers

REPO_ROOT = Path(__file__).resolve().parents[1]
MakeRow = Callable[..., dict]


def _row(make: MakeRow, qid: str, perspective: str, teacher: str, k: int, **kw: object) -> dict:
    return make(
        question_id=qid,
        question=f"What is question {qid}?",
        gold_answer="5",
        perspective=perspective,
        teacher=teacher,
        sample_index=k,
        seed=k,
        **kw,
    )


# stepwise · t1: 5 rows, 3 correct, 1 incorrect, 1 unjudged, tokens 10..50, finish stop×4 length×1
STEPWISE_T1 = [
    ("q-1", 0, True, 10, "stop"),
    ("q-1", 1, True, 20, "stop"),
    ("q-2", 0, False, 30, "length"),
    ("q-2", 1, None, 40, "stop"),
    ("q-3", 0, True, 50, "stop"),
]


def _rows_run_a(make: MakeRow) -> list[dict]:
    rows = [
        _row(
            make,
            q,
            "stepwise",
            "t1",
            k,
            is_correct=c,
            num_tokens=n,
            finish_reason=f,
            predicted_answer=None if c is None else ("5" if c else "7"),
            rationale=f"step {q} {k}\nThe answer is {'5' if c else '7'}.",
        )
        for q, k, c, n, f in STEPWISE_T1
    ]
    # socratic · t1: no token counts -> character lengths 10 and 30
    rows += [
        _row(make, "q-1", "socratic", "t1", 0, num_tokens=None, rationale="x" * 9 + "5", is_correct=True),
        _row(make, "q-2", "socratic", "t1", 0, num_tokens=None, rationale="y" * 29 + "7", is_correct=False,
             predicted_answer="7"),
    ]
    # equation · t2: one row with tokens, one without -> mixed unit; task gsm8k for the task filter
    rows += [
        _row(make, "q-3", "equation", "t2", 0, num_tokens=8, task="gsm8k", rationale="2 + 3 = 5"),
        _row(make, "q-3", "equation", "t2", 1, num_tokens=None, task="gsm8k", rationale="abcd", is_correct=None,
             predicted_answer=None, finish_reason="error"),
    ]
    return [r | {"run_id": "run-a"} for r in rows]


def _write_run(run_dir: Path, run_id: str, rows: list[dict], shards: int = 2) -> RunWriter:
    writer = RunWriter(run_dir, run_id)
    per = -(-len(rows) // shards)
    for i in range(shards):
        part = rows[i * per : (i + 1) * per]
        if part:
            writer.write_shard(f"part-{i:03d}", rows_to_table(part))
    writer.finalize()
    return writer


@pytest.fixture
def runs(tmp_path: Path, rationale_row: MakeRow) -> Path:
    """``runs/a`` (the hand-counted run, 2 shards) and ``runs/b`` (another run, 1 shard, 2 rows)."""
    root = tmp_path / "runs"
    make = rationale_row
    _write_run(root / "a", "run-a", _rows_run_a(make))
    rows_b = [
        _row(make, "q-9", "stepwise", "t1", 0, run_id="run-b", is_correct=False, predicted_answer="6"),
        _row(make, "q-9", "stepwise", "t1", 1, run_id="run-b", finish_reason="length"),
    ]
    _write_run(root / "b", "run-b", rows_b, shards=1)
    return root


def _group(groups: list[dict], perspective: str, teacher: str) -> dict:
    return next(g for g in groups if (g["perspective"], g["teacher"]) == (perspective, teacher))


# ---------------------------------------------------------------- stats
def test_stats_match_hand_count(runs: Path) -> None:
    groups = browse.stats(runs / "a")
    assert [(g["perspective"], g["teacher"]) for g in groups] == [
        ("equation", "t2"),
        ("socratic", "t1"),
        ("stepwise", "t1"),
    ]
    g = _group(groups, "stepwise", "t1")
    assert g["rows"] == 5
    assert g["correct"] == 3 and g["correct_pct"] == pytest.approx(60.0)
    assert g["unjudged"] == 1 and g["unjudged_pct"] == pytest.approx(20.0)
    assert g["judged_accuracy_pct"] == pytest.approx(75.0)
    assert g["tokens_mean"] == pytest.approx(30.0)
    assert g["tokens_p95"] == pytest.approx(48.0)  # linear: 40 + 0.8 * (50 - 40)
    assert g["len_unit"] == "tokens" and g["len_p95"] == pytest.approx(48.0)
    assert g["finish_reasons"] == {"stop": 4, "length": 1}
    assert list(g["finish_reasons"]) == ["stop", "length"]  # most frequent first

    s = _group(groups, "socratic", "t1")
    assert s["tokens_mean"] is None and s["tokens_p95"] is None
    assert s["len_unit"] == "chars"
    assert s["chars_mean"] == pytest.approx(20.0) and s["chars_p95"] == pytest.approx(29.0)
    assert s["len_mean"] == pytest.approx(20.0)
    assert s["correct_pct"] == pytest.approx(50.0) and s["unjudged_pct"] == 0

    e = _group(groups, "equation", "t2")
    assert e["len_unit"] == "mixed"
    assert e["len_mean"] == pytest.approx((8 + 4) / 2)  # num_tokens where present, else characters
    assert e["finish_reasons"] == {"error": 1, "stop": 1}


def test_summary_and_several_runs(runs: Path) -> None:
    info = browse.summary(runs)
    assert (info["runs"], info["shards"], info["rows"], info["questions"]) == (2, 3, 11, 4)
    assert info["tasks"] == ["arith", "gsm8k"]
    assert [r["run_id"] for r in info["run_list"]] == ["run-a", "run-b"]
    both = _group(browse.stats(runs), "stepwise", "t1")
    assert both["rows"] == 7 and both["finish_reasons"] == {"stop": 5, "length": 2}
    only_b = browse.stats(runs, run="run-b")
    assert [(g["perspective"], g["rows"], g["correct"]) for g in only_b] == [("stepwise", 2, 1)]
    assert browse.summary(runs, run="b")["rows"] == 2  # a directory name works too


def test_stats_cli_table_and_json(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert browse.main([str(runs), "stats", "--width", "160"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) · 3 shard(s) · 11 rows · 4 questions · tasks: arith, gsm8k" in out
    assert "run-a: 2 shard(s), 9 rows, complete" in out and "stop 5 · length 2" in out
    assert browse.main([str(runs / "a"), "stats", "--width", "160"]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) · 2 shard(s) · 9 rows · 3 questions" in out
    assert "stop 4 · length 1" in out and "60.0" in out and "30 / 48" in out and "– / –" in out

    assert browse.main([str(runs), "--run", "run-a", "stats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["rows"] == 9
    assert _group(data["groups"], "stepwise", "t1")["correct_pct"] == pytest.approx(60.0)
    assert browse.main([str(runs), "stats", "--run", "run-b", "--json"]) == 0  # --run after the command
    assert json.loads(capsys.readouterr().out)["summary"]["rows"] == 2


# ---------------------------------------------------------------- show
def test_show_all_perspectives_side_by_side(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = browse.show(runs, "q-2")
    assert data["gold_answer"] == "5" and data["question"] == "What is question q-2?"
    assert [(r["perspective"], r["sample_index"], r["verdict"]) for r in data["rationales"]] == [
        ("socratic", 0, "✗"),
        ("stepwise", 0, "✗"),
        ("stepwise", 1, "?"),
    ]
    assert browse.main([str(runs), "show", "q-3", "--width", "200"]) == 0
    out = capsys.readouterr().out
    for title in ("equation · t2 · #0", "equation · t2 · #1", "stepwise · t1 · #0"):
        assert title in out
    assert "✓ 5" in out and "? no answer" in out and "task gsm8k" in out and "gold 5" in out

    assert browse.main([str(runs), "show", "q-1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["perspectives"] == ["socratic", "stepwise"] and len(shown["rationales"]) == 3


def test_show_unknown_id(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert browse.main([str(runs), "show", "q-"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{runs}: unknown question id 'q-'") and "did you mean: q-1, q-2, q-3, q-9?" in err
    assert err.count("\n") == 1
    assert browse.main([str(runs), "--run", "run-b", "show", "q-1"]) == 2
    assert "unknown question id 'q-1'" in capsys.readouterr().err


# ---------------------------------------------------------------- list
def test_list_filters_and_limit(runs: Path) -> None:
    a = runs / "a"
    everything = browse.list_rows(a, limit=None)
    assert len(everything) == 9
    # shard order, sorted by question id inside a shard (part-000 holds the stepwise rows)
    assert [(r["question_id"], r["sample_index"]) for r in everything[:5]] == [
        ("q-1", 0), ("q-1", 1), ("q-2", 0), ("q-2", 1), ("q-3", 0)
    ]
    assert {r["perspective"] for r in browse.list_rows(a, perspective="socratic")} == {"socratic"}
    assert len(browse.list_rows(a, perspective="socratic")) == 2
    assert {r["teacher"] for r in browse.list_rows(a, teacher="t2")} == {"t2"}
    assert len(browse.list_rows(a, task="gsm8k")) == 2
    assert len(browse.list_rows(a, verdict="correct")) == 5
    assert {r["verdict"] for r in browse.list_rows(a, verdict="incorrect")} == {"✗"}
    assert len(browse.list_rows(a, verdict="incorrect")) == 2
    assert [(r["question_id"], r["perspective"]) for r in browse.list_rows(a, verdict="unjudged")] == [
        ("q-2", "stepwise"),
        ("q-3", "equation"),
    ]
    assert len(browse.list_rows(a, finish_reason="length")) == 1
    assert browse.list_rows(a, perspective="stepwise", verdict="correct", finish_reason="stop", limit=2)[1][
        "sample_index"
    ] == 1
    assert len(browse.list_rows(a, limit=3)) == 3
    assert browse.list_rows(a, perspective="nope") == []
    row = browse.list_rows(a, perspective="stepwise", limit=1)[0]
    assert row["excerpt"].endswith("The answer is 5.") and "\n" not in row["excerpt"]
    long = browse.list_rows(a, perspective="socratic", excerpt_chars=12)[1]["excerpt"]
    assert long == "…" + "y" * 10 + "7"


def test_list_cli(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert browse.main([str(runs), "list", "--incorrect", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["question_id"], r["predicted_answer"], r["gold_answer"]) for r in rows] == [
        ("run-a", "q-2", "7", "5"),
        ("run-a", "q-2", "7", "5"),
        ("run-b", "q-9", "6", "5"),
    ]
    for flags, n in (
        (["--perspective", "stepwise"], 7),
        (["--teacher", "t2"], 2),
        (["--task", "gsm8k"], 2),
        (["--correct"], 6),
        (["--unjudged"], 2),
        (["--finish-reason", "length"], 2),
        (["--limit", "4"], 4),
        (["--limit", "0"], 11),
    ):
        assert browse.main([str(runs), "list", *flags, "--json"]) == 0, flags
        assert len(json.loads(capsys.readouterr().out)) == n, flags
    assert browse.main([str(runs), "list", "--limit", "2", "--width", "150"]) == 0
    out = capsys.readouterr().out
    assert "question_id" in out and "The answer is 5." in out and "more rows match" in out
    with pytest.raises(SystemExit):
        browse.main([str(runs), "list", "--correct", "--incorrect"])


def test_cli_subprocess(runs: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.browse", str(runs / "a"), "stats", "--json"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["summary"]["rows"] == 9
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.browse", str(runs / "missing"), "stats"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60,
    )
    assert res.returncode == 2 and res.stderr == f"{runs / 'missing'}: no such directory\n"


# ---------------------------------------------------------------- difficulty (teacher failures per question)
# runs/a: q-1 3 judged, 0 failed; q-2 2 judged (one unjudged verdict counts as failed), 2 failed
# (its `length` row is not judged); q-3 2 judged (the `error` row is not), 0 failed. runs/b: q-9 1/1.
HAND_DIFFICULTY = {"q-1": (3, 0), "q-2": (2, 2), "q-3": (2, 0), "q-9": (1, 1)}


def test_difficulty_is_the_measure_of_select(runs: Path) -> None:
    from pipeline.select import question_difficulty

    got = browse.difficulty(runs)
    assert {q: (d["rationales"], d["failures"]) for q, d in got.items()} == HAND_DIFFICULTY
    assert got["q-2"]["failure_rate"] == 1.0 and got["q-1"]["failure_rate"] == 0.0
    expected = question_difficulty(runs)
    assert {q: (d.rationales, d.failures, d.failure_rate) for q, d in expected.items()} == {
        q: (d["rationales"], d["failures"], d["failure_rate"]) for q, d in got.items()
    }
    assert list(browse.difficulty(runs, ["q-9", "q-2", "nope"])) == ["q-2", "q-9"]
    assert browse.difficulty(runs, []) == {}
    assert list(browse.difficulty(runs, run="run-b")) == ["q-9"]


def test_show_and_list_give_the_question_difficulty(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert browse.show(runs, "q-2")["difficulty"] == {"rationales": 2, "failures": 2, "failure_rate": 1.0}
    assert browse.show(runs, "q-1")["difficulty"]["failures"] == 0
    assert browse.main([str(runs), "show", "q-2", "--width", "200"]) == 0
    assert "· teacher failed 2/2 (100%)" in capsys.readouterr().out

    # every row carries its question's difficulty, over all its rationales, not only the matching rows
    rows = browse.list_rows(runs, verdict="correct", limit=None)
    got = {r["question_id"]: (r["difficulty"]["rationales"], r["difficulty"]["failures"]) for r in rows}
    assert got == {q: HAND_DIFFICULTY[q] for q in ("q-1", "q-3", "q-9")}  # q-9: its correct row is a `length` one
    assert "difficulty" not in browse.list_rows(runs, limit=1, with_difficulty=False)[0]
    assert browse.main([str(runs), "list", "--incorrect", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["question_id"], r["difficulty"]["failures"]) for r in listed] == [("q-2", 2), ("q-2", 2), ("q-9", 1)]
    assert browse.main([str(runs), "list", "--incorrect", "--width", "160"]) == 0
    out = capsys.readouterr().out
    assert "failed" in out.splitlines()[0] and "2/2" in out and "1/1" in out


def test_stats_difficulty_histogram(runs: Path, tmp_path: Path, rationale_row: MakeRow,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    hist = browse.difficulty_histogram(runs / "a")
    assert hist == {
        "questions": 3, "hard": 1, "easy": 2, "unjudged": 0, "by_failures": {"0": 2, "2": 1},
        "by_rate": {"0%": 2, "≤25%": 0, "≤50%": 0, "≤75%": 0, "<100%": 0, "100%": 1},
    }  # fmt: skip
    assert browse.main([str(runs), "stats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["difficulty"]["questions"] == 4 and data["difficulty"]["by_failures"] == {"0": 2, "1": 1, "2": 1}
    assert browse.main([str(runs / "a"), "stats", "--width", "160"]) == 0
    out = capsys.readouterr().out
    assert "difficulty: 1 of 3 questions with a failed rationale (hard), 2 without" in out
    assert "questions by failed rationales" in out and "questions by failure rate" in out

    # a question without any judged rationale: failure rate 0 (easy, as for select), counted apart
    rows = [_row(rationale_row, "q-x", "stepwise", "t1", k, finish_reason="error", is_correct=None,
                 predicted_answer=None, run_id="run-x") for k in range(2)]  # fmt: skip
    rows.append(_row(rationale_row, "q-y", "stepwise", "t1", 0, is_correct=False, predicted_answer="7", run_id="run-x"))
    _write_run(tmp_path / "x", "run-x", rows, shards=1)
    hist = browse.difficulty_histogram(tmp_path / "x")
    assert (hist["questions"], hist["hard"], hist["unjudged"], hist["by_rate"]["0%"]) == (2, 1, 1, 1)
    assert browse.difficulty(tmp_path / "x")["q-x"] == {"rationales": 0, "failures": 0, "failure_rate": 0.0}
    assert browse.main([str(tmp_path / "x"), "show", "q-x"]) == 0
    assert "teacher failed – (none judged)" in capsys.readouterr().out


# ---------------------------------------------------------------- bad input
def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert browse.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    return captured.err


def test_bad_inputs(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails([str(tmp_path / "nope"), "stats"], capsys)
    assert err.startswith(f"{tmp_path / 'nope'}: no such directory")
    (tmp_path / "empty").mkdir()
    assert _fails([str(tmp_path / "empty"), "stats"], capsys).startswith(f"{tmp_path / 'empty'}: no rationale runs")
    assert "no run 'zzz' (runs: run-a, run-b)" in _fails([str(runs), "--run", "zzz", "stats"], capsys)

    shard = runs / "b" / "shards" / "part-000.parquet"
    shard.write_bytes(b"PAR1 this is not parquet")
    for cmd in (["stats"], ["list"], ["show", "q-1"]):
        assert _fails([str(runs), *cmd], capsys).startswith(f"{shard}: unreadable Parquet file")

    shard.unlink()
    assert _fails([str(runs), "stats"], capsys).startswith(f"{shard}: listed in")

    (runs / "a" / "manifest.json").write_text('{"run_id": "run-a",')
    assert _fails([str(runs), "stats"], capsys).startswith(f"{runs / 'a' / 'manifest.json'}:1: invalid JSON")


def test_missing_column_and_damaged_pages(
    tmp_path: Path, rationale_row: MakeRow, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "r"
    _write_run(root, "run-a", _rows_run_a(rationale_row))
    shard = root / "shards" / "part-001.parquet"
    good = shard.read_bytes()
    pq.write_table(pq.read_table(shard).drop_columns(["teacher"]), shard)
    err = _fails([str(root), "stats"], capsys)
    assert err.startswith(f"{shard}: missing required column 'teacher'")

    first = pq.read_table(root / "shards" / "part-000.parquet")
    pq.write_table(first.set_column(0, "question_id", pa.array([1] * first.num_rows)), shard)
    assert "column 'question_id' has type int64" in _fails([str(root), "stats"], capsys)

    # footer intact, a data page damaged: DuckDB's error is mapped to the file
    shard.write_bytes(good)
    meta = pq.ParquetFile(shard).metadata.row_group(0)
    col = meta.column(pq.read_schema(shard).get_field_index("rationale"))
    start, size = col.data_page_offset, col.total_compressed_size
    damaged = bytearray(good)
    for i in range(start + size // 2, start + size):
        damaged[i] ^= 0x5A
    shard.write_bytes(bytes(damaged))
    err = _fails([str(root), "list", "--limit", "0"], capsys)
    assert err.startswith(f"{shard}: cannot read shard data"), err


def test_show_list_stats_import_neither_pyarrow_nor_pydantic(runs: Path) -> None:
    """The terminal commands' start-up (issue 16): show / list / stats run on DuckDB's engine
    alone (not the duckdb package's Python layer, where the engine module can be imported on its
    own); the footers are read without pyarrow and the manifests without pydantic (checked in a
    fresh interpreter, where nothing else has imported them)."""
    code = (
        "import sys, contextlib, io\n"
        "from pipeline.browse import main\n"
        "for argv in (['stats'], ['show', 'q-1'], ['list', '--incorrect'], ['stats', '--json']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main([sys.argv[1], *argv]) == 0, argv\n"
        "heavy = ('pyarrow', 'pydantic', 'prefect', 'pandas', 'data_schemas.io', 'data_schemas.manifest')\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('_duckdb'):  # duckdb >= 2: the engine without the package's Python layer\n"
        "    heavy += ('duckdb', 'importlib.metadata')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", code, str(runs)], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_fast_footer_check_matches_the_contract() -> None:
    """The DuckDB footer check's required columns are the contract's, with the same kinds of type."""
    from data_schemas import RATIONALE_COLUMNS

    kinds = {}
    for col in RATIONALE_COLUMNS:
        if col.required:
            t = col.type
            kinds[col.name] = "string" if pa.types.is_string(t) else "integer" if pa.types.is_integer(t) else (
                "boolean" if pa.types.is_boolean(t) else str(t)
            )
    assert shard_footers._REQUIRED_KINDS == kinds


def test_footer_check_falls_back_to_pyarrow(runs: Path, tmp_path: Path) -> None:
    """A shard DuckDB cannot vouch for (a required column stored as a date) gets pyarrow's verdict and
    error, as before; valid shards are read identically by both paths (ranges, judge columns)."""
    sh = browse.Shards(runs)
    try:
        fast = shard_footers.read_footers(sh._con, sh.files)
        assert set(fast) == {str(p) for p in sh.files}
        for path in sh.files:
            footer = shard_footers.read_footer(path)
            assert fast[str(path)].id_range == shard_footers.question_id_range(footer)
            assert fast[str(path)].judged == (shard_footers.JUDGE_COLUMN in footer.schema.names)
    finally:
        sh.close()
    shard = sorted((runs / "a" / "shards").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    i = table.schema.get_field_index("seed")
    pq.write_table(table.set_column(i, "seed", pa.array([0] * table.num_rows, pa.date32())), shard)
    with pytest.raises(browse.ContractError, match="column 'seed' has type date32"):
        browse.Shards(runs)
