"""``python -m distill.train`` end to end: every strategy trains, saves and evaluates on
synthetic-world shards; YAML configs, resuming, and clear exits (code 2) on bad input.

Most cases call ``distill.train.main([...])`` in-process (fast); one runs the real module in a
subprocess. Everything runs on the CPU in float32 (``--bf16 false``: TRL's ``SFTConfig``
would otherwise turn on bf16 autocast on the CPU) with a tiny random student.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from distill.train import main
from tests.trainer_fixtures import trainer_assets  # noqa: F401  (session fixture)

SPLITS = ("test", "ood_steps", "ood_template", "retention")
EVAL_QUESTIONS = 4
MAX_STEPS = 4
BATCH = 4


pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # conftest: the tiny models run on one thread


def _args(student: str | Path, data: str | Path, out: Path, *extra: str, splits: str = ",".join(SPLITS)) -> list[str]:
    return [
        "--student", str(student), "--data", str(data), "--output_dir", str(out),
        "--max_steps", str(MAX_STEPS), "--per_device_train_batch_size", str(BATCH), "--learning_rate", "1e-3",
        "--probe_questions", "4", "--probe_every", "2", "--save_steps", "2", "--logging_steps", "1",
        "--eval_splits", splits, "--eval_questions", str(EVAL_QUESTIONS), "--eval_max_new_tokens", "8",
        "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
        *extra,
    ]  # fmt: skip


def _result(out: str) -> dict[str, Any]:
    """The JSON summary: the last line printed to stdout."""
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert lines, "nothing printed to stdout"
    return json.loads(lines[-1])


def _run(capsys, argv: list[str]) -> tuple[int, dict[str, Any] | None, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, (_result(captured.out) if code == 0 else None), captured.err


def _check_trained(out: Path, result: dict[str, Any], strategy: str, feedback: str = "inertia", splits=SPLITS) -> None:
    import pyarrow.parquet as pq

    assert result["strategy"] == strategy and result["feedback"] == feedback
    assert result["steps"] == MAX_STEPS
    assert result["output_dir"] == str(out)
    assert set(result["accuracy"]) == set(splits)
    for split in splits:
        assert 0.0 <= result["accuracy"][split] <= 1.0
        assert result["n"][split] == EVAL_QUESTIONS
        table = pq.read_table(out / "eval" / f"{split}.parquet")
        assert table.num_rows == EVAL_QUESTIONS
    assert sorted(p.name for p in (out / "eval").glob("*.parquet")) == sorted(f"{s}.parquet" for s in splits)
    assert json.loads((out / "eval_results.json").read_text()).keys() == set(splits)
    # the student is saved with its tokenizer, loadable as a student again
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert any(out.glob("*.safetensors"))
    summary = json.loads((out / "mind_summary.json").read_text())
    assert summary["strategy"] == strategy and summary["feedback"] == feedback
    picks = sum(v["picks"] for v in summary["views"].values())
    if strategy == "all":
        assert picks >= MAX_STEPS * BATCH * 2  # every candidate of every question
    else:
        assert picks == MAX_STEPS * BATCH  # one pick per question per step
    assert sum(result["pick_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert (out / f"checkpoint-{MAX_STEPS}" / "mind_state.pt").is_file()


# ------------------------------------------------------------------ every strategy, end to end
@pytest.mark.parametrize(
    ("strategy", "feedback"),
    [("golden", "inertia"), ("all", "inertia"), ("random", "inertia"), ("lowest_loss", "inertia"),
     ("inertia", "inertia"), ("mind", "inertia"), ("mind", "fresh")],
)  # fmt: skip
def test_every_strategy_trains_and_evaluates(trainer_assets, tmp_path, capsys, strategy, feedback) -> None:  # noqa: F811
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", strategy, "--feedback", feedback)
    code, result, err = _run(capsys, argv)
    assert code == 0, err[-3000:]
    _check_trained(out, result, strategy, feedback)
    assert "data: " in err and "accuracy: test" in err
    if strategy in ("mind", "inertia", "lowest_loss"):
        probes = json.loads((out / "mind_summary.json").read_text())["probes"]
        assert [p["step"] for p in probes] == [2, 4]
        if strategy == "mind":
            assert "ta_reward" in probes[-1]
    from distill.student import load_student

    load_student(out)  # config + weights + matching tokenizer


def test_subprocess_entry_point(trainer_assets, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "inertia", splits="test")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "distill.train", *argv], capture_output=True, text=True, timeout=180, env=env,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_trained(out, _result(proc.stdout), "inertia", splits=("test",))


# ------------------------------------------------------------------ configuration and resuming
def test_yaml_config_with_flag_override(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    import yaml

    out = tmp_path / "out"
    config = {
        "student": str(trainer_assets.model_dir), "data": str(trainer_assets.data_dir), "output_dir": str(out),
        "strategy": "lowest_loss", "max_steps": MAX_STEPS, "per_device_train_batch_size": BATCH,
        "learning_rate": 1e-3, "probe_questions": 4, "probe_every": 2, "save_steps": 2, "eval_splits": "test",
        "eval_questions": EVAL_QUESTIONS, "eval_max_new_tokens": 8, "use_cpu": True, "bf16": False,
        "report_to": "none", "disable_tqdm": True, "seed": 0, "gamma": 2.5,
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    code, result, err = _run(capsys, ["--config", str(path), "--seed", "3"])
    assert code == 0, err[-3000:]
    _check_trained(out, result, "lowest_loss", splits=("test",))
    assert result["seed"] == 3  # the flag wins over the file
    saved = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert saved["max_steps"] == MAX_STEPS
    import torch

    args = torch.load(out / "training_args.bin", weights_only=False)
    assert (args.strategy, args.gamma, args.seed) == ("lowest_loss", 2.5, 3)


def test_resume_from_checkpoint(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "out"
    base = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "mind", splits="")
    code, first, err = _run(capsys, base)
    assert code == 0, err[-3000:]
    assert first["accuracy"] == {}  # no evaluation split asked for
    summary = json.loads((out / "mind_summary.json").read_text())

    resumed = [*base, "--max_steps", str(MAX_STEPS + 2), "--resume_from_checkpoint", str(out / f"checkpoint-{MAX_STEPS}")]
    code, second, err = _run(capsys, resumed)
    assert code == 0, err[-3000:]
    assert second["steps"] == MAX_STEPS + 2
    after = json.loads((out / "mind_summary.json").read_text())
    # the MIND state came back from the checkpoint: counts and probe history continue
    assert sum(v["picks"] for v in after["views"].values()) == (MAX_STEPS + 2) * BATCH
    assert [p["step"] for p in after["probes"]] == [2, 4, 6]
    assert after["probes"][:2] == summary["probes"]
    state = json.loads((out / f"checkpoint-{MAX_STEPS + 2}" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == list(range(1, MAX_STEPS + 3))


def test_resume_from_a_folder_without_mind_state_fails_clearly(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--resume_from_checkpoint", str(tmp_path / "nothing"))
    code, _, err = _run(capsys, argv)
    assert code == 2
    assert "mind_state.pt" in err and "not a MIND checkpoint" in err


# ------------------------------------------------------------------ bad input
def _rewrite_shards(src: Path, dst: Path, incorrect_questions: set[str] | None) -> list[str]:
    """Copy the rationales of ``src`` into a new run at ``dst`` with the rows of
    ``incorrect_questions`` (all questions if None) marked incorrect. Returns the question ids."""
    import pyarrow as pa

    from data_schemas import RunWriter, read_rationales

    table = read_rationales(src)
    qids = table["question_id"].to_pylist()
    flags = table["is_correct"].to_pylist()
    flags = [False if incorrect_questions is None or q in incorrect_questions else c for q, c in zip(qids, flags, strict=True)]
    table = table.set_column(table.schema.get_field_index("is_correct"), "is_correct", pa.array(flags, pa.bool_()))
    RunWriter(dst / "run-edited", "run-edited").write_shard("shard-00000", table)
    return sorted(set(qids))


def test_empty_data_folder_exits_2(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    (tmp_path / "data").mkdir()
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, tmp_path / "data", tmp_path / "out"))
    assert code == 2
    assert "error:" in err and "no finished rationales shards found" in err and str(tmp_path / "data") in err


def test_missing_data_flag_exits_2(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    argv = _args(trainer_assets.model_dir, "x", tmp_path / "out")
    argv = argv[:2] + argv[4:]  # drop --data
    code, _, err = _run(capsys, argv)
    assert code == 2 and "--data" in err and "required" in err


def test_question_without_correct_candidate_is_skipped_and_reported(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    qids = _rewrite_shards(trainer_assets.data_dir, tmp_path / "data", None)
    shutil.rmtree(tmp_path / "data")
    _rewrite_shards(trainer_assets.data_dir, tmp_path / "data", {qids[0], qids[1]})
    out = tmp_path / "out"
    code, result, err = _run(capsys, _args(trainer_assets.model_dir, tmp_path / "data", out, "--strategy", "random", splits="test"))
    assert code == 0, err[-3000:]
    assert f"{len(qids) - 2} questions with candidates; 2 skipped (no usable rationale)" in err
    assert f"data: {len(qids) - 2 - 4} training questions, 4 probe" in err
    _check_trained(out, result, "random", splits=("test",))


def test_no_correct_candidate_at_all_exits_2_with_hint(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    _rewrite_shards(trainer_assets.data_dir, tmp_path / "data", None)
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, tmp_path / "data", tmp_path / "out"))
    assert code == 2
    assert "no question has a usable rationale" in err and "--include_incorrect" in err


def test_include_incorrect_trains_on_unverified_rows(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    _rewrite_shards(trainer_assets.data_dir, tmp_path / "data", None)
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, tmp_path / "data", out, "--strategy", "random", "--include_incorrect", "true", splits="test")
    code, result, err = _run(capsys, argv)
    assert code == 0, err[-3000:]
    assert "0 skipped" in err
    _check_trained(out, result, "random", splits=("test",))


def test_tokenizer_that_does_not_fit_the_student_exits_2(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student = tmp_path / "student"
    tokenizer = AutoTokenizer.from_pretrained(trainer_assets.model_dir)
    model = AutoModelForCausalLM.from_pretrained(trainer_assets.model_dir)
    model.resize_token_embeddings(len(tokenizer) - 8)  # embedding smaller than the tokenizer's vocabulary
    model.save_pretrained(student)
    tokenizer.save_pretrained(student)
    code, _, err = _run(capsys, _args(student, trainer_assets.data_dir, tmp_path / "out"))
    assert code == 2
    assert f"the tokenizer has {len(tokenizer)} tokens but the student's embedding has only {len(tokenizer) - 8} rows" in err
    assert not (tmp_path / "out" / "mind_summary.json").exists()


def test_unknown_eval_split_exits_2_before_training(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "out"
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, out, splits="test, bogus"))
    assert code == 2
    assert "--eval_splits: unknown split(s) bogus; choose from" in err
    assert not out.exists()  # nothing was trained


def test_student_folder_that_is_not_a_model_exits_2(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, _args(tmp_path / "empty", trainer_assets.data_dir, tmp_path / "out"))
    assert code == 2 and "no config.json" in err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--beta", "1.5", "beta must be in [0, 1)"), ("--packing", "true", "packing and padding_free are not supported")],
)
def test_invalid_hyperparameters_exit_2(trainer_assets, tmp_path, capsys, flag, value, message) -> None:  # noqa: F811
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "out", flag, value))
    assert code == 2 and message in err


def test_unknown_strategy_is_an_argparse_error(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        main(_args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "out", "--strategy", "bogus"))
    assert exc.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


# ------------------------------------------------------------------ the scratch student
def test_scratch_student(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    """An untrained world student built on the spot (world tokenizer + tiny Llama: ~3 s here)."""
    out = tmp_path / "out"
    code, result, err = _run(capsys, _args("scratch", trainer_assets.data_dir, out, "--strategy", "random", splits="test"))
    assert code == 0, err[-3000:]
    assert "student: scratch (untrained tiny student)" in err
    _check_trained(out, result, "random", splits=("test",))
    from distill.student import load_student

    model, tokenizer = load_student(out)
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
