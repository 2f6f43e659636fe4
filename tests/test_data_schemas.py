"""The data contract: schemas, row validation, atomic shard writes, manifest, validated reads."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import data_schemas as ds
from data_schemas import io as ds_io
from tests.conftest import make_rationale_row


def _table(n: int = 3, **overrides) -> pa.Table:
    return ds.rows_to_table([make_rationale_row(question_id=f"q-{i}", **overrides) for i in range(n)])


def test_required_columns_match_design():
    required = [c.name for c in ds.RATIONALE_COLUMNS if c.required]
    assert required == [
        "question_id", "question", "gold_answer", "task", "perspective", "teacher", "sample_index",
        "rationale", "predicted_answer", "is_correct", "finish_reason", "num_tokens", "seed", "run_id",
        "schema_version",
    ]
    types = {f.name: f.type for f in ds.RATIONALE_SCHEMA}
    assert types["sample_index"] == pa.int32() and types["seed"] == pa.int64()
    assert types["schema_version"] == pa.int16() and types["is_correct"] == pa.bool_()
    assert ds.RATIONALE_SCHEMA.field("predicted_answer").nullable
    assert not ds.RATIONALE_SCHEMA.field("question_id").nullable


def test_rows_to_table_fills_defaults_and_optional_columns():
    t = _table(2)
    assert t.schema.equals(ds.RATIONALE_SCHEMA)
    assert t.column("schema_version").to_pylist() == [ds.SCHEMA_VERSION] * 2
    assert t.column("temperature").null_count == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"question_id": None}, "field 'question_id' is null but required"),
        ({"sample_index": "zero"}, "field 'sample_index': expected an integer"),
        ({"is_correct": "yes"}, "field 'is_correct': expected true/false"),
        ({"seed": 2**70}, "field 'seed': "),
        ({"temperature": float("nan")}, "field 'temperature': expected a finite number"),
        ({"task": "  "}, "field 'task' is empty"),
        ({"colour": "red"}, "unknown field(s) 'colour'"),
    ],
)
def test_row_errors_name_row_and_field(override, message):
    rows = [make_rationale_row(), make_rationale_row(**override)]
    with pytest.raises(ds.ContractError) as err:
        ds.rows_to_table(rows, where="in.jsonl")
    assert str(err.value).startswith("in.jsonl: row 1: ")
    assert message in str(err.value)


def test_missing_required_field_is_reported():
    row = make_rationale_row()
    del row["teacher"]
    with pytest.raises(ValueError, match="field 'teacher' is missing but required"):
        ds.validate_row(row)


def test_nullable_fields_accept_none():
    row = ds.validate_row(make_rationale_row(predicted_answer=None, is_correct=None, num_tokens=None))
    assert row["predicted_answer"] is None and row["is_correct"] is None


def test_question_rows_validate():
    row = dict(question_id="gsm8k:test:0", question="2+2?", gold_answer="4", task="gsm8k", source="gsm8k", split="test")
    t = ds.rows_to_table([row], "questions")
    assert t.schema.equals(ds.QUESTION_SCHEMA)
    with pytest.raises(ds.ContractError, match="field 'source' is missing"):
        ds.rows_to_table([{k: v for k, v in row.items() if k != "source"}], "questions")


def test_writer_round_trip_sorted_and_manifest(tmp_path):
    w = ds.RunWriter(tmp_path / "run", "run-1", config={"seed": 3})
    rows = [make_rationale_row(question_id=f"q-{i}") for i in (3, 1, 2)]
    info = w.write_shard("shard-00000", ds.rows_to_table(rows))
    assert info.rows == 3 and len(info.sha256) == 64
    manifest = ds.load_manifest(tmp_path / "run")
    assert manifest.run_id == "run-1" and manifest.config == {"seed": 3} and not manifest.complete
    assert [s.name for s in manifest.shards] == ["shard-00000"]
    assert w.has_shard("shard-00000") and not w.has_shard("shard-00001")
    table = ds.read_rationales(tmp_path, verify_checksums=True)
    assert table.column("question_id").to_pylist() == ["q-1", "q-2", "q-3"]
    assert w.finalize({"rows": 3}).complete
    assert ds.load_manifest(tmp_path / "run").stats == {"rows": 3}


def test_manifest_and_shards_get_the_same_ordinary_permissions(tmp_path):
    """A collaborator who can read one file of a run can read them all: no private 0600 manifest."""
    old = os.umask(0o027)
    try:
        w = ds.RunWriter(tmp_path / "run", "run-1")
        w.write_shard("shard-00000", _table(2))
        w.finalize({"rows": 2})
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and not p.name.startswith(".")]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert "manifest.json" in modes and any(n.endswith(".parquet") for n in modes)
    assert set(modes.values()) == {0o640}, modes


def test_rewriting_a_shard_replaces_it(tmp_path):
    w = ds.RunWriter(tmp_path, "run-1")
    w.write_shard("a", _table(3))
    w.write_shard("a", _table(2))
    assert ds.load_manifest(tmp_path).rows == 2
    assert ds.read_rationales(tmp_path).num_rows == 2


def test_writer_refuses_other_run_in_same_folder(tmp_path):
    ds.RunWriter(tmp_path, "run-1")
    with pytest.raises(ds.ContractError, match="belongs to run 'run-1'"):
        ds.RunWriter(tmp_path, "run-2")


def test_writer_refuses_non_conforming_table(tmp_path):
    w = ds.RunWriter(tmp_path, "run-1")
    bad = _table(2).drop_columns(["teacher"])
    with pytest.raises(ds.ContractError, match="missing required column 'teacher'"):
        w.write_shard("s", bad)
    assert not list((tmp_path).glob("shards/*"))
    assert ds.load_manifest(tmp_path).shards == []


def _unlisted_shard_only(tmp_path: Path) -> None:
    """A shard file on disk that the manifest does not list is not part of the run."""
    w = ds.RunWriter(tmp_path, "run-1")
    w.write_shard("done", _table(2))
    ds.write_parquet_atomic(_table(5), tmp_path / "shards" / "orphan.parquet")


def test_only_manifest_listed_shards_are_read(tmp_path):
    _unlisted_shard_only(tmp_path)
    assert ds.read_rationales(tmp_path).num_rows == 2


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.parquet"

    def boom(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")  # simulate a half-written temp file
        raise OSError("disk full")

    monkeypatch.setattr(ds_io.pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        ds.write_parquet_atomic(_table(1), target)
    assert list(tmp_path.iterdir()) == []


def _child_writes_then_dies(run_dir: str) -> None:
    """Start writing a shard and get killed in the middle (between temp write and rename)."""
    w = ds.RunWriter(run_dir, "run-1")
    real_replace = os.replace

    def die(src, dst):
        os._exit(9)

    ds_io.os.replace = die
    try:
        w.write_shard("killed", _table(4))
    finally:
        ds_io.os.replace = real_replace


def test_killed_writer_leaves_no_visible_shard(tmp_path):
    ds.RunWriter(tmp_path, "run-1").write_shard("ok", _table(1))
    proc = mp.get_context("fork").Process(target=_child_writes_then_dies, args=(str(tmp_path),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 9
    assert not (tmp_path / "shards" / "killed.parquet").exists()
    assert [s.name for s in ds.load_manifest(tmp_path).shards] == ["ok"]
    assert ds.read_rationales(tmp_path).num_rows == 1


def _add_shards(run_dir: str, start: int) -> None:
    w = ds.RunWriter(run_dir, "run-1")
    for i in range(start, start + 5):
        w.write_shard(f"s{i:03d}", _table(1))


def test_concurrent_processes_do_not_lose_manifest_entries(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_add_shards, args=(str(tmp_path), k * 5)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert len(ds.load_manifest(tmp_path).shards) == 20


def test_read_names_file_and_column_on_wrong_type(tmp_path):
    ds.RunWriter(tmp_path, "run-1").write_shard("s", _table(2))
    path = tmp_path / "shards" / "s.parquet"
    t = pq.read_table(path)
    t = t.set_column(t.schema.get_field_index("is_correct"), "is_correct", pa.array(["yes", "no"]))
    pq.write_table(t, path)
    with pytest.raises(ds.ContractError) as err:
        ds.read_rationales(tmp_path)
    assert str(path) in str(err.value) and "column 'is_correct' has type string, expected bool" in str(err.value)


def test_read_names_file_on_missing_column_and_nulls(tmp_path):
    path = tmp_path / "f.parquet"
    pq.write_table(_table(2).drop_columns(["rationale"]), path)
    with pytest.raises(ds.ContractError, match=rf"{path}: missing required column 'rationale'"):
        ds.read_table(path)
    t = _table(2)
    arr = pa.array(["x", None])
    t = t.set_column(t.schema.get_field_index("teacher"), pa.field("teacher", pa.string()), arr)
    pq.write_table(t, path)
    with pytest.raises(ds.ContractError, match="column 'teacher' has 1 null value.*first at row 1"):
        ds.read_table(path)


def test_read_casts_lossless_types(tmp_path):
    path = tmp_path / "f.parquet"
    t = _table(2)
    t = t.set_column(t.schema.get_field_index("sample_index"), "sample_index", pa.array([0, 1], pa.int64()))
    pq.write_table(t, path)
    assert ds.read_table(path).schema.field("sample_index").type == pa.int32()


def test_unreadable_and_checksum_errors_name_the_file(tmp_path):
    w = ds.RunWriter(tmp_path, "run-1")
    w.write_shard("s", _table(2))
    path = tmp_path / "shards" / "s.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ds.ContractError, match=rf"{path}: "):
        ds.read_rationales(tmp_path, verify_checksums=True)
    with pytest.raises(ds.ContractError, match="unreadable Parquet"):
        ds.read_rationales(tmp_path)


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "f.parquet"
    t = _table(1)
    t = t.replace_schema_metadata({b"mind.schema_version": b"99"})
    pq.write_table(t, path)
    with pytest.raises(ds.ContractError, match="newer than supported"):
        ds.read_table(path)


def test_bad_manifest_names_file_and_field(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ds.ContractError, match=r"manifest.json:1: invalid JSON"):
        ds.load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"run_id": "r", "shards": [{"name": "a"}]}))
    with pytest.raises(ds.ContractError, match=r"field 'shards.0.rows'"):
        ds.load_manifest(tmp_path)


def test_find_runs_and_kinds(tmp_path):
    ds.RunWriter(tmp_path / "a" / "rationales", "r1").write_shard("s", _table(2))
    q = dict(question_id="q", question="?", gold_answer="1", task="arith", source="s", split="train")
    ds.RunWriter(tmp_path / "a" / "questions", "q1", kind="questions").write_shard("train", ds.rows_to_table([q], "questions"))
    assert [p.name for p in ds.find_runs(tmp_path)] == ["questions", "rationales"]
    assert ds.read_questions(tmp_path).num_rows == 1
    assert ds.read_rationales(tmp_path).num_rows == 2
    with pytest.raises(ds.ContractError, match="no finished rationales shards"):
        ds.read_rationales(tmp_path / "a" / "questions")
    with pytest.raises(ds.ContractError, match="no such directory"):
        ds.find_runs(tmp_path / "missing")


def test_light_import_and_fast_manifest_reader(tmp_path):
    """``data_schemas`` imports pyarrow / pydantic only on first use of what needs them, and
    ``read_manifest_fast`` agrees with ``load_manifest`` (its errors included)."""
    import subprocess
    import sys

    code = (
        "import sys, data_schemas, data_schemas.light\n"
        "assert not [m for m in ('pyarrow', 'pydantic') if m in sys.modules]\n"
        "from data_schemas import RunWriter, ContractError, load_manifest\n"
        "assert 'pyarrow' in sys.modules and 'pydantic' in sys.modules\n"
        "assert data_schemas.validate.ContractError is ContractError is data_schemas.light.ContractError\n"
        "assert data_schemas.io.find_runs is data_schemas.find_runs\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    from data_schemas.fast_manifest import read_manifest_fast

    run = tmp_path / "run"
    run.mkdir()
    shard = {"name": "s-0", "rows": 3, "sha256": "ab", "bytes": 10}
    cases = [
        {"run_id": "r", "complete": True, "shards": [shard, {**shard, "name": "s-1", "rows": 4}]},
        {"run_id": "r"},  # defaults
        {"run_id": "r", "kind": "questions", "shards": [{**shard, "rows": "5"}]},  # coerced by pydantic
        {"run_id": "r", "shards": [{**shard, "rows": "many"}]},  # refused
        {"run_id": 3},
        {"run_id": "r", "schema_version": 99},
        ["not", "a", "manifest"],
    ]
    for raw in cases:
        (run / "manifest.json").write_text(json.dumps(raw))
        try:
            m = ds.load_manifest(run)
        except ds.ContractError as exc:
            with pytest.raises(ds.ContractError) as got:
                read_manifest_fast(run)
            assert str(got.value) == str(exc)
            continue
        v = read_manifest_fast(run)
        assert (v.run_id, v.kind, v.schema_version, v.complete, v.rows) == (
            m.run_id, m.kind, m.schema_version, m.complete, m.rows
        )
        assert [(s.name, s.rows) for s in v.shards] == [(s.name, s.rows) for s in m.shards]
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(ds.ContractError, match="invalid JSON"):
        read_manifest_fast(run)
    (run / "manifest.json").unlink()
    with pytest.raises(ds.ContractError, match="no manifest"):
        read_manifest_fast(run)
