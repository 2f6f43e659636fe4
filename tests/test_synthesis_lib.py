"""Synthesis as a library (pipeline.synthesis), without Prefect: config, run ids, shards, one shard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_schemas import RATIONALE_COLUMNS, SCHEMA_VERSION, ContractError, load_manifest, read_rationales
from pipeline.ids import derive_seed
from pipeline.perspectives import load_perspective_set, prompt_hash
from pipeline.sources import load_questions
from pipeline.synthesis import (
    SynthesisConfig,
    iter_question_shards,
    load_config,
    run_shard,
)
from pipeline.synthetic import PERSPECTIVES, TEACHER_NAME
from pipeline.verify import verify
from tests.synthesis_groups import merge_groups

REPO_ROOT = Path(__file__).resolve().parents[1]
REQUIRED = [c.name for c in RATIONALE_COLUMNS if c.required]
NOT_NULL = [c.name for c in RATIONALE_COLUMNS if c.required and not c.nullable]
KEY = ("question_id", "perspective", "teacher", "sample_index")


def _error(**fields) -> str:
    with pytest.raises(ContractError) as info:
        load_config(**fields)
    return str(info.value)


def _run_dir(tmp_path: Path, cfg: SynthesisConfig) -> tuple[Path, str]:
    run_id = cfg.run_id()
    return tmp_path / run_id, run_id


def _run_all(cfg: SynthesisConfig, run_dir: Path, run_id: str) -> list:
    return [run_shard(cfg, run_dir, run_id, name, qs) for name, qs in iter_question_shards(cfg)]


# ---------------------------------------------------------------- configuration errors
def test_defaults_are_valid() -> None:
    cfg = load_config()
    assert cfg == SynthesisConfig()
    assert cfg.set_name == "synthetic"
    assert cfg.resolved_perspectives() == list(PERSPECTIVES)
    assert [t.teacher_name for t in cfg.teachers] == [TEACHER_NAME]
    assert cfg.run_id().startswith("synth-")


def test_unknown_field_is_named() -> None:
    msg = _error(shards=4)
    assert "field 'shards'" in msg and "Extra inputs are not permitted" in msg
    msg = _error(sampling={"temprature": 0.5})
    assert "field 'sampling.temprature'" in msg


def test_bad_values_name_the_field() -> None:
    assert "field 'samples'" in _error(samples=0)
    assert "field 'sampling.top_p'" in _error(sampling={"top_p": 1.5})
    assert "field 'task_runner'" in _error(task_runner="slurm")
    assert "field 'num_questions'" in _error(num_questions=0)


def test_bad_teacher_string() -> None:
    msg = _error(teachers=["gpt4"])
    assert "field 'teachers.0'" in msg
    assert "teacher 'gpt4'" in msg and "transformers:PATH" in msg
    msg = _error(teachers=["synthetic", {"backend": "synthetic", "name": "b", "options": {"slip": 1}}])
    assert "field 'teachers.1'" in msg and "unknown synthetic option(s) ['slip']" in msg


def test_unknown_synthetic_perspective() -> None:
    msg = _error(perspectives=["stepwise", "haiku"])
    assert "perspectives" in msg and "'haiku'" in msg
    # a prompt set with a perspective the synthetic teacher cannot write
    msg = _error(perspective_set="math")
    assert "perspectives" in msg and "'program'" in msg
    # a name the prompt set does not have
    msg = _error(perspective_set="math", perspectives=["stepwise", "haiku"], teachers=["transformers:/m"])
    assert "haiku" in msg and "math" in msg


def test_model_teacher_needs_a_prompt_set() -> None:
    msg = _error(teachers=["transformers:/models/x"], perspective_set="synthetic")
    assert "perspective_set" in msg and "prompt set" in msg
    # the default set for model teachers is 'math'
    cfg = load_config(teachers=["transformers:/models/x"])
    assert cfg.set_name == "math"
    assert [p.name for p in cfg.resolved_perspectives()] == [p.name for p in load_perspective_set("math")]


def test_duplicate_teacher_names() -> None:
    msg = _error(teachers=["synthetic", {"backend": "synthetic", "options": {"slip_rate": 0.5}}])
    assert "teachers" in msg and "distinct" in msg and "synthetic/reference" in msg
    cfg = load_config(teachers=["synthetic", {"backend": "synthetic", "name": "synthetic/noisy"}])
    assert [t.teacher_name for t in cfg.teachers] == ["synthetic/reference", "synthetic/noisy"]
    assert "at least one teacher" in _error(teachers=[])


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\nsamples: 2\nteachers: [synthetic\nshard_size: 10\n")
    with pytest.raises(ContractError) as info:
        load_config(path)
    assert info.value.where.startswith(f"{path}:")
    line = int(info.value.where.rsplit(":", 1)[1])
    assert 3 <= line <= 5
    assert "invalid YAML" in str(info.value)


def test_yaml_wrong_type_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("seed: 1\nsamples: lots\n")
    with pytest.raises(ContractError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and "field 'samples'" in msg and "integer" in msg

    path.write_text("- seed: 1\n")
    with pytest.raises(ContractError, match="expected a mapping"):
        load_config(path)
    with pytest.raises(ContractError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_config_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("seed: 3\nsamples: 1\nperspectives: [stepwise, equation]\n")
    cfg = load_config(path, samples=4, num_questions=None)  # None overrides are ignored
    assert (cfg.seed, cfg.samples, cfg.num_questions) == (3, 4, 200)
    assert cfg.resolved_perspectives() == ["stepwise", "equation"]
    path.write_text("")  # an empty file is the default config
    assert load_config(path) == SynthesisConfig()


# ---------------------------------------------------------------- run ids
BASE = dict(num_questions=20, seed=1, samples=2, shard_size=10)


def test_run_id_stable_across_calls_and_processes() -> None:
    cfg = SynthesisConfig(**BASE)
    assert cfg.run_id() == cfg.run_id() == SynthesisConfig(**BASE).run_id()
    code = (
        "import json,sys; from pipeline.synthesis import SynthesisConfig; "
        "print(SynthesisConfig(**json.loads(sys.argv[1])).run_id())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(BASE)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )  # fmt: skip
    assert out.stdout.strip() == cfg.run_id()


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 2},
        {"samples": 3},
        {"num_questions": 30},
        {"shard_size": 5},
        {"perspectives": ["stepwise", "equation"]},
        {"perspectives": list(reversed(PERSPECTIVES))},
        {"sampling": {"temperature": 0.0}},
        {"sampling": {"max_tokens": 64}},
        {"sampling": {"stop": ["\n\n"]}},
        {"teachers": [{"backend": "synthetic", "options": {"slip_rate": 0.3}}]},
        {"teachers": [{"backend": "synthetic", "name": "synthetic/other"}]},
        {"source": {"kind": "synthetic", "options": {"split": "test"}}},
    ],
)
def test_run_id_changes_with_outputs(change: dict) -> None:
    assert SynthesisConfig(**{**BASE, **change}).run_id() != SynthesisConfig(**BASE).run_id()


@pytest.mark.parametrize(
    "change",
    [
        {"max_concurrency": 16},
        {"task_runner": "dask", "task_runner_options": {"cluster_kwargs": {"n_workers": 2}}},
        {"task_retries": 0},
        {"teachers": [{"backend": "synthetic", "options": {"latency_s": 0.5}}]},
        {"perspectives": list(PERSPECTIVES)},  # the default, spelled out
    ],
)
def test_run_id_ignores_speed_options(change: dict) -> None:
    assert SynthesisConfig(**{**BASE, **change}).run_id() == SynthesisConfig(**BASE).run_id()


def test_run_id_model_teacher_options() -> None:
    base = dict(BASE, perspective_set="math")

    def rid(**options) -> str:
        teacher = {"backend": "transformers", "options": {"model": "/models/tiny", **options}}
        return SynthesisConfig(**base, teachers=[teacher]).run_id()

    assert rid() == rid(batch_size=64) == rid(device="cpu")
    assert rid() != rid(dtype="bfloat16")
    assert rid() != rid(use_chat=False)
    # a changed prompt set (another set, or a subset) is another run
    assert rid() != SynthesisConfig(
        **{**base, "perspectives": ["stepwise"]}, teachers=["transformers:/models/tiny"]
    ).run_id()


# ---------------------------------------------------------------- planning
def test_iter_question_shards_chunks() -> None:
    cfg = SynthesisConfig(num_questions=23, shard_size=10)
    shards = list(iter_question_shards(cfg))
    assert [name for name, _ in shards] == ["shard-00000", "shard-00001", "shard-00002"]
    assert [len(qs) for _, qs in shards] == [10, 10, 3]
    ids = [q["question_id"] for _, qs in shards for q in qs]
    assert ids == [q["question_id"] for q in load_questions("synthetic", split="train", n=23)]
    assert len(set(ids)) == 23

    exact = list(iter_question_shards(SynthesisConfig(num_questions=20, shard_size=10)))
    assert [len(qs) for _, qs in exact] == [10, 10]
    one = list(iter_question_shards(SynthesisConfig(num_questions=3, shard_size=100)))
    assert [(n, len(qs)) for n, qs in one] == [("shard-00000", 3)]


def test_iter_question_shards_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "qs.jsonl"
    path.write_text("".join(json.dumps({"q": f"What is {i} + {i}?", "a": 2 * i}) + "\n" for i in range(7)))
    source = {"kind": "jsonl", "path": str(path), "options": {"question_field": "q", "answer_field": "a", "task": "arith"}}
    cfg = SynthesisConfig(source=source, num_questions=5, shard_size=2, teachers=["transformers:/m"])
    shards = list(iter_question_shards(cfg))
    assert [len(qs) for _, qs in shards] == [2, 2, 1]  # the num_questions limit cuts the file
    rows = [q for _, qs in shards for q in qs]
    assert [r["question"] for r in rows] == [f"What is {i} + {i}?" for i in range(5)]
    assert [r["gold_answer"] for r in rows] == [str(2 * i) for i in range(5)]
    assert {r["task"] for r in rows} == {"arith"} and {r["source"] for r in rows} == {"qs"}

    everything = cfg.model_copy(update={"num_questions": None})
    assert sum(len(qs) for _, qs in iter_question_shards(everything)) == 7


# ---------------------------------------------------------------- one shard
@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory):
    cfg = SynthesisConfig(num_questions=7, shard_size=4, samples=2, seed=11)
    run_id = cfg.run_id()
    run_dir = tmp_path_factory.mktemp("synth") / run_id
    results = _run_all(cfg, run_dir, run_id)
    return cfg, run_dir, run_id, results


def test_run_shard_writes_contract_rows(synthetic_run) -> None:
    cfg, run_dir, run_id, results = synthetic_run
    n_persp, n_teach = len(PERSPECTIVES), 1
    assert [r.rows for r in results] == [4 * n_persp * 2 * n_teach, 3 * n_persp * 2 * n_teach]
    assert not any(r.skipped for r in results)
    manifest = load_manifest(run_dir)
    assert manifest.run_id == run_id
    assert [(s.name, s.rows) for s in manifest.shards] == [("shard-00000", 48), ("shard-00001", 36)]

    table = read_rationales(run_dir, verify_checksums=True)
    assert table.num_rows == 7 * n_persp * 2 * n_teach
    assert set(REQUIRED) <= set(table.column_names)
    for name in NOT_NULL:
        assert table.column(name).null_count == 0, name
    rows = table.to_pylist()
    keys = {tuple(r[k] for k in KEY) for r in rows}
    assert len(keys) == len(rows)
    assert {r["perspective"] for r in rows} == set(PERSPECTIVES)
    assert {r["sample_index"] for r in rows} == {0, 1}
    assert {r["run_id"] for r in rows} == {run_id}
    assert {r["schema_version"] for r in rows} == {SCHEMA_VERSION}
    assert {r["teacher"] for r in rows} == {TEACHER_NAME}
    assert {r["finish_reason"] for r in rows} == {"stop"}
    assert all(r["source"] == "synthetic" and r["split"] == "train" for r in rows)
    assert all(r["max_tokens"] == cfg.sampling.max_tokens for r in rows)
    assert all(r["temperature"] == pytest.approx(cfg.sampling.temperature) for r in rows)
    assert all(r["prompt_hash"] is None for r in rows)  # the synthetic set has no prompts
    assert all(r["rationale"].strip() and r["num_tokens"] > 0 for r in rows)
    # metadata: the question's scalar source fields (pipeline.synthesis.question_fields), not its steps
    questions = {q["question_id"]: q for _, qs in iter_question_shards(cfg) for q in qs}
    for r in rows:
        carried = json.loads(r["metadata"])["question"]
        q = questions[r["question_id"]]
        assert carried["difficulty"] == q["difficulty"] and carried["index"] == json.loads(q["metadata"])["index"]
        assert "steps" not in carried and "step_templates" not in carried


def test_run_shard_seeds_are_derived_and_distinct(synthetic_run) -> None:
    cfg, run_dir, _, _ = synthetic_run
    rows = read_rationales(run_dir).to_pylist()
    for r in rows:
        assert r["seed"] == derive_seed(cfg.seed, r["question_id"], r["perspective"], r["teacher"], r["sample_index"])
    assert len({r["seed"] for r in rows}) == len(rows)


def test_run_shard_verification_consistent(synthetic_run) -> None:
    _, run_dir, _, results = synthetic_run
    rows = read_rationales(run_dir).to_pylist()
    for r in rows:
        predicted, correct = verify(r["rationale"], r["gold_answer"], r["task"])
        assert (r["predicted_answer"], r["is_correct"]) == (predicted, correct)
    n_correct = sum(r["is_correct"] is True for r in rows)
    assert 0 < n_correct < len(rows)  # the default teacher slips now and then
    groups = merge_groups(results)
    assert set(groups) == {(p, TEACHER_NAME) for p in PERSPECTIVES}
    assert sum(g.rows for g in groups.values()) == len(rows)
    assert sum(g.correct for g in groups.values()) == n_correct
    assert sum(g.errors for g in groups.values()) == 0
    assert sum(g.tokens for g in groups.values()) == sum(r["num_tokens"] for r in rows)
    assert {p: g.rows for (p, _), g in groups.items()} == dict.fromkeys(PERSPECTIVES, 14)


def test_run_shard_skips_finished(synthetic_run) -> None:
    cfg, run_dir, run_id, _ = synthetic_run
    path = run_dir / "shards" / "shard-00000.parquet"
    before = (path.stat().st_mtime_ns, load_manifest(run_dir).shard("shard-00000").sha256)
    name, questions = next(iter_question_shards(cfg))
    again = run_shard(cfg, run_dir, run_id, name, questions)
    assert again.skipped and again.rows == 0 and not again.groups
    assert (path.stat().st_mtime_ns, load_manifest(run_dir).shard("shard-00000").sha256) == before


def test_run_shard_reproducible(synthetic_run, tmp_path: Path) -> None:
    cfg, run_dir, run_id, _ = synthetic_run
    name, questions = next(iter_question_shards(cfg))
    run_shard(cfg, tmp_path / run_id, run_id, name, questions)
    a = pq.read_table(run_dir / "shards" / f"{name}.parquet").drop_columns(["latency_s"])
    b = pq.read_table(tmp_path / run_id / "shards" / f"{name}.parquet").drop_columns(["latency_s"])
    assert a.equals(b)


def test_run_shard_two_teachers(tmp_path: Path) -> None:
    cfg = SynthesisConfig(
        num_questions=3, shard_size=3, samples=1, perspectives=["stepwise", "shortcut"],
        teachers=["synthetic", {"backend": "synthetic", "name": "synthetic/clean", "options": {"slip_rate": 0, "flaw_rate": 0}}],
    )  # fmt: skip
    run_dir, run_id = _run_dir(tmp_path, cfg)
    (result,) = _run_all(cfg, run_dir, run_id)
    assert result.rows == 3 * 2 * 1 * 2
    rows = read_rationales(run_dir).to_pylist()
    assert {r["teacher"] for r in rows} == {TEACHER_NAME, "synthetic/clean"}
    assert all(r["is_correct"] for r in rows if r["teacher"] == "synthetic/clean")
    seeds = {r["seed"] for r in rows}
    assert len(seeds) == len(rows)  # the teacher is part of the seed


def test_run_shard_error_completions(tmp_path: Path) -> None:
    cfg = SynthesisConfig(num_questions=3, shard_size=3, samples=2, perspectives=["stepwise", "equation"])
    run_dir, run_id = _run_dir(tmp_path, cfg)
    (name, questions), = iter_question_shards(cfg)
    broken = questions[1]["question_id"]
    questions[1] = {**questions[1], "metadata": json.dumps({"kind": "chain"})}  # no steps: the teacher fails
    result = run_shard(cfg, run_dir, run_id, name, questions)
    assert result.rows == 3 * 2 * 2
    rows = read_rationales(run_dir).to_pylist()
    bad = [r for r in rows if r["question_id"] == broken]
    good = [r for r in rows if r["question_id"] != broken]
    assert len(bad) == 4 and len(good) == 8
    for r in bad:
        assert r["finish_reason"] == "error"
        assert r["is_correct"] is None and r["predicted_answer"] is None
        assert r["rationale"] == ""
        meta = json.loads(r["metadata"])
        assert "no synthetic steps" in meta["error"]
        assert meta["question"] == {"kind": "chain", "difficulty": questions[1]["difficulty"]}
    # the good rows: the question's fields and the reference teacher's own noise label
    assert all(r["finish_reason"] == "stop" and set(json.loads(r["metadata"])) == {"question", "noise", "noise_step"}
               for r in good)  # fmt: skip
    assert all(json.loads(r["metadata"])["noise"] in ("none", "slip", "flaw") for r in good)
    groups = merge_groups([result])
    assert {k: g.errors for k, g in groups.items()} == {("stepwise", TEACHER_NAME): 2, ("equation", TEACHER_NAME): 2}
    assert {k: g.unjudged for k, g in groups.items()} == {("stepwise", TEACHER_NAME): 2, ("equation", TEACHER_NAME): 2}


# ---------------------------------------------------------------- a real model teacher
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "lm", chat_template=True)


def test_run_shard_transformers_teacher(tiny_model: Path, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher = {"backend": "transformers", "name": "tiny", "options": {"model": str(tiny_model), "device": "cpu"}}
        cfg = SynthesisConfig(
            num_questions=2, shard_size=2, samples=1, perspective_set="math", teachers=[teacher],
            sampling={"temperature": 0.0, "max_tokens": 6},
        )  # fmt: skip
        run_dir, run_id = _run_dir(tmp_path, cfg)
        (result,) = _run_all(cfg, run_dir, run_id)
    finally:
        torch.set_num_threads(threads)
    perspectives = load_perspective_set("math")
    assert result.rows == 2 * len(perspectives)
    rows = read_rationales(run_dir, verify_checksums=True).to_pylist()
    assert len(rows) == 2 * len(perspectives)
    hashes = {p.name: prompt_hash(p) for p in perspectives}
    for r in rows:
        assert r["teacher"] == "tiny"
        assert r["finish_reason"] in {"stop", "length"}, r["metadata"]
        assert r["prompt_hash"] == hashes[r["perspective"]]
        assert r["num_tokens"] is not None and 0 < r["num_tokens"] <= 6
        assert r["temperature"] == 0.0 and r["max_tokens"] == 6
        assert (r["predicted_answer"], r["is_correct"]) == tuple(verify(r["rationale"], r["gold_answer"], r["task"]))
    assert {r["perspective"] for r in rows} == set(hashes)
    assert len(set(hashes.values())) == len(hashes)
