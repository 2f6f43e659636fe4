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
from tests.recount import recounted_accuracy
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
        "--validation_questions", "4", "--meta_warmup_steps", "1", "--history_every", "2", "--save_steps", "2",
        "--logging_steps", "1",
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


def _check_trained(out: Path, result: dict[str, Any], strategy: str, splits=SPLITS) -> None:
    import pyarrow.parquet as pq

    assert result["strategy"] == strategy
    assert result["steps"] == MAX_STEPS
    assert result["output_dir"] == str(out)
    assert set(result["accuracy"]) == {"validation", *splits}
    assert result["n"]["validation"] == 4
    for split in splits:
        assert result["accuracy"][split] == pytest.approx(recounted_accuracy(out / "eval" / f"{split}.parquet"))
        assert result["n"][split] == EVAL_QUESTIONS
        table = pq.read_table(out / "eval" / f"{split}.parquet")
        assert table.num_rows == EVAL_QUESTIONS
    assert sorted(p.name for p in (out / "eval").glob("*.parquet")) == sorted(f"{s}.parquet" for s in ("validation", *splits))
    assert json.loads((out / "eval_results.json").read_text()).keys() == {"validation", *splits}
    # the student is saved with its tokenizer, loadable as a student again
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert any(out.glob("*.safetensors"))
    summary = json.loads((out / "mind_summary.json").read_text())
    assert summary["strategy"] == strategy
    kept = sum(v["kept"] for v in summary["views"].values())
    present = sum(v["present"] for v in summary["views"].values())
    if strategy == "all":
        assert kept == present >= MAX_STEPS * BATCH * 2  # every candidate of every question
    elif strategy in ("golden", "random", "lowest_loss"):
        assert kept == MAX_STEPS * BATCH  # one candidate per question per step
    elif strategy == "mcc_kd":
        assert kept == MAX_STEPS * BATCH * 2  # a pair per question per step
    assert sum(result["kept_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["compute"] == summary["compute"] and summary["compute"]["flops"] > 0
    assert [h["step"] for h in summary["history"]] == [2, 4]
    assert (out / f"checkpoint-{MAX_STEPS}" / "mind_state.pt").is_file()


# ------------------------------------------------------------------ every strategy, end to end
@pytest.mark.parametrize(
    ("strategy", "extra"),
    [("golden", ()), ("all", ()), ("mcc_kd", ()), ("random", ()), ("lowest_loss", ()), ("instant", ()), ("mind", ()),
     ("mind", ("--meta_attention", "false", "--fusion", "false", "--consistency_weight", "0", "--meta_target", "instant",
               "--meta_warmup_steps", "0", "--scoring", "separate"))],
    ids=["golden", "all", "mcc_kd", "random", "lowest_loss", "instant", "mind", "mind-ablations"],
)  # fmt: skip
def test_every_strategy_trains_and_evaluates(trainer_assets, tmp_path, capsys, strategy, extra) -> None:  # noqa: F811
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", strategy, *extra)
    code, result, err = _run(capsys, argv)
    assert code == 0, err[-3000:]
    _check_trained(out, result, strategy)
    assert "data: " in err and "accuracy: validation" in err and "compute:" in err
    history = json.loads((out / "mind_summary.json").read_text())["history"]
    if strategy == "mind":
        assert "meta_loss" in history[-1] and "meta_spearman" in history[-1]
        if extra:  # fusion off: one candidate per question
            assert all(h["subset_size"] == 1 for h in history)
    from distill.student import load_student

    load_student(out)  # config + weights + matching tokenizer


def test_subprocess_entry_point(trainer_assets, tmp_path) -> None:  # noqa: F811
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "instant", splits="test")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "distill.train", *argv], capture_output=True, text=True, timeout=180, env=env,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_trained(out, _result(proc.stdout), "instant", splits=("test",))


# ------------------------------------------------------------------ configuration and resuming
def test_yaml_config_with_flag_override(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    import yaml

    out = tmp_path / "out"
    config = {
        "student": str(trainer_assets.model_dir), "data": str(trainer_assets.data_dir), "output_dir": str(out),
        "strategy": "lowest_loss", "max_steps": MAX_STEPS, "per_device_train_batch_size": BATCH,
        "learning_rate": 1e-3, "validation_questions": 4, "history_every": 2, "save_steps": 2, "eval_splits": "test",
        "eval_questions": EVAL_QUESTIONS, "eval_max_new_tokens": 8, "use_cpu": True, "bf16": False,
        "report_to": "none", "disable_tqdm": True, "seed": 0, "picks_per_question": 2,
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    code, result, err = _run(capsys, ["--config", str(path), "--seed", "3"])
    assert code == 0, err[-3000:]
    assert result["seed"] == 3  # the flag wins over the file
    summary = json.loads((out / "mind_summary.json").read_text())
    assert sum(v["kept"] for v in summary["views"].values()) == MAX_STEPS * BATCH * 2  # picks_per_question from the file
    saved = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert saved["max_steps"] == MAX_STEPS
    import torch

    args = torch.load(out / "training_args.bin", weights_only=False)
    assert (args.strategy, args.picks_per_question, args.seed) == ("lowest_loss", 2, 3)


def test_resume_from_checkpoint(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "out"
    base = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "mind", splits="")
    code, first, err = _run(capsys, base)
    assert code == 0, err[-3000:]
    assert set(first["accuracy"]) == {"validation"}  # no evaluation split asked for: the held-out questions only
    summary = json.loads((out / "mind_summary.json").read_text())

    resumed = [*base, "--max_steps", str(MAX_STEPS + 2), "--resume_from_checkpoint", str(out / f"checkpoint-{MAX_STEPS}")]
    code, second, err = _run(capsys, resumed)
    assert code == 0, err[-3000:]
    assert second["steps"] == MAX_STEPS + 2
    after = json.loads((out / "mind_summary.json").read_text())
    # the MIND state came back from the checkpoint: counts, compute and history continue
    assert after["compute"]["flops"] > summary["compute"]["flops"]
    assert [h["step"] for h in after["history"]] == [2, 4, 6]
    assert after["history"][:2] == summary["history"]
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
    assert f"data: {len(qids) - 2 - 4} training questions, 4 validation" in err
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
    [("--fusion_beta", "1.5", "--fusion_beta must be in (0, 1]"), ("--fusion_beta", "0", "--fusion_beta must be in (0, 1]"),
     ("--consistency_weight", "-1", "--consistency_weight must be >= 0"), ("--meta_learning_rate", "-0.1", "--meta_learning_rate"),
     ("--packing", "true", "packing and padding_free are not supported")],
)
def test_invalid_hyperparameters_exit_2(trainer_assets, tmp_path, capsys, flag, value, message) -> None:  # noqa: F811
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "out", flag, value))
    assert code == 2 and message in err


def test_meta_encoder_path_that_is_not_a_model_exits_2_before_training(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    (tmp_path / "enc").mkdir()
    out = tmp_path / "out"
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--meta_encoder", str(tmp_path / "enc")))
    assert code == 2 and "--meta_encoder" in err and "not a sentence-transformers model" in err
    assert not out.exists()  # nothing was trained


def test_unknown_strategy_is_an_argparse_error(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    with pytest.raises(SystemExit) as exc:
        main(_args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "out", "--strategy", "bogus"))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and "mcc_kd" in err


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


# ------------------------------------------------------------------ a frozen sentence encoder for the MetaNet
def test_meta_encoder_from_a_local_sentence_transformers_model(trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    """``--meta_encoder``: a sentence-transformers model built here (the tiny Llama + mean pooling)."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    backbone = Transformer(str(trainer_assets.model_dir), max_seq_length=128)
    if backbone.tokenizer.pad_token is None:
        backbone.tokenizer.pad_token = backbone.tokenizer.eos_token
    dim = backbone.get_embedding_dimension()
    pooling = Pooling(dim, pooling_mode="mean")
    encoder_dir = tmp_path / "encoder"
    SentenceTransformer(modules=[backbone, pooling], device="cpu").save(str(encoder_dir))
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "mind", "--meta_encoder", str(encoder_dir), splits="")
    code, result, err = _run(capsys, argv)
    assert code == 0, err[-3000:]
    assert f"meta encoder: {encoder_dir} ({dim}-d" in err
    import torch

    state = torch.load(out / f"checkpoint-{MAX_STEPS}" / "mind_state.pt", weights_only=False)
    assert state["strategy"]["metanet"]["rep_in.1.weight"].shape[1] == dim
    assert "meta_loss" in json.loads((out / "mind_summary.json").read_text())["history"][-1]


# ------------------------------------------------------------------ real-format data
def test_mind_trains_on_ingested_mentor_kd_rationales(shared_data, trainer_assets, tmp_path, capsys) -> None:  # noqa: F811
    """Real teacher rationales (mentor-kd SVAMP, three per question, re-verified on ingest) through
    the MetaNet: the canonical answer line replaces nothing it should not, spans exist for every
    candidate, and MIND trains on them."""
    from distill.data import load_questions_with_candidates
    from pipeline.ingest import main as ingest
    from tests.trainer_fixtures import load_tokenizer

    data = tmp_path / "mentor"
    assert ingest(["mentor-kd", str(shared_data / "mentor_kd" / "svamp_3_train.json"), "--out", str(data)]) == 0
    capsys.readouterr()
    questions, views, _ = load_questions_with_candidates(data, load_tokenizer(trainer_assets), "plain", max_length=512)
    assert len(questions) > 600 and views == ["default"]
    assert all(n > 0 for q in questions for v in q.views for n in v.answer_lens)
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, data, out, "--strategy", "mind", "--max_length", "512", splits="")
    code, result, err = _run(capsys, argv)
    assert code == 0, err[-3000:]
    assert result["steps"] == MAX_STEPS and result["compute"]["backward_tokens"] > 0
    assert "meta_loss" in json.loads((out / "mind_summary.json").read_text())["history"][-1]


def _weights(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(next(out.glob("*.safetensors"))))


def test_flop_curve_evaluates_at_each_grid_point_and_leaves_training_unchanged(trainer_assets, tmp_path, capsys):  # noqa: F811
    """--curve_flops: one evaluation per grid point reached (at the first step at or past it), the
    predictions kept per point; the trained student is bit-identical to a run without a curve."""
    import torch

    student, data = trainer_assets.model_dir, trainer_assets.data_dir
    plain = tmp_path / "plain"
    code, base, _ = _run(capsys, _args(student, data, plain, "--strategy", "mind", splits="test"))
    assert code == 0 and base["curve"] == []
    logged = json.loads((plain / "trainer_state.json").read_text())["log_history"]
    flops = {h["step"]: h["mind/flops"] for h in logged if "mind/flops" in h}  # cumulative, logged every step
    assert sorted(flops) == list(range(1, MAX_STEPS + 1))
    grid = [flops[1] * 0.5, flops[1] * 0.9, (flops[2] + flops[3]) / 2, flops[MAX_STEPS] * 100]  # steps 1, 1, 3, never
    curved = tmp_path / "curved"
    flags = ["--strategy", "mind", "--curve_flops", ",".join(f"{g:.6g}" for g in grid), "--curve_splits", "test,ood_steps",
             "--curve_questions", "3"]  # fmt: skip
    code, result, _ = _run(capsys, _args(student, data, curved, *flags, splits="test"))
    assert code == 0
    points = result["curve"]
    assert [p["grid_flops"] for p in points] == [float(f"{g:.6g}") for g in grid[:3]]
    assert [p["step"] for p in points] == [1, 1, 3]
    assert all(p["flops"] >= p["grid_flops"] and set(p["accuracy"]) == {"test", "ood_steps"} for p in points)
    assert all(p["n"] == {"test": 3, "ood_steps": 3} for p in points)
    assert points[0]["accuracy"] == points[1]["accuracy"]  # one evaluation served both points of step 1
    assert json.loads((curved / "curve.json").read_text()) == points
    assert points[1]["predictions"] == points[0]["predictions"] == f"curve/{points[0]['grid_flops']:.4g}"
    for p in points:
        assert (curved / p["predictions"] / "test.parquet").is_file() and (curved / p["predictions"] / "ood_steps.parquet").is_file()
    a, b = _weights(plain), _weights(curved)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert result["accuracy"] == base["accuracy"]


@pytest.mark.parametrize("flag,value,message", [
    ("--curve_flops", "1e9,5e8", "strictly increasing"),
    ("--curve_flops", "1e9,lots", "comma-separated numbers"),
    ("--curve_splits", "tset", "unknown split"),
    ("--curve_questions", "0", ">= 1"),
])  # fmt: skip
def test_bad_curve_flags_fail_before_training(trainer_assets, tmp_path, capsys, flag, value, message):  # noqa: F811
    extra = [flag, value] if flag == "--curve_flops" else ["--curve_flops", "1e9", flag, value]
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "o", *extra))
    assert code == 2 and flag in err and message in err
    assert not (tmp_path / "o" / "mind_summary.json").exists()


def test_validation_data_replaces_the_hold_out(trainer_assets, tmp_path, capsys):  # noqa: F811
    """--validation_data: its questions validate and are never trained on."""
    from pipeline.select import question_difficulty, write_subset

    ids = sorted(question_difficulty(trainer_assets.data_dir))
    held = ids[:5]
    val = write_subset(trainer_assets.data_dir, tmp_path / "val", held, {"role": "validation"})
    out = tmp_path / "out"
    code, result, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "all",
                                           "--validation_data", str(val), splits="test"))  # fmt: skip
    assert code == 0 and result["n"]["validation"] == 5
    assert f"{len(ids) - 5} training questions, 5 validation" in err
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(out / "eval" / "validation.parquet")["question_id"].to_pylist()) == held
    everything = write_subset(trainer_assets.data_dir, tmp_path / "everything", ids, {"role": "validation"})
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "o2",
                                      "--validation_data", str(everything)))  # fmt: skip
    assert code == 2 and "--validation_data" in err and "nothing left to train on" in err


# ------------------------------------------------------------------ --views and the teacher's noise labels
def test_views_trains_on_exactly_those_views(trainer_assets, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "all", "--views", "stepwise, equation",
                 splits="")  # fmt: skip
    code, result, err = _run(capsys, argv)
    assert code == 0, err[-3000:]
    summary = json.loads((out / "mind_summary.json").read_text())
    assert set(summary["views"]) == {"equation", "stepwise"} and set(result["kept_share"]) == {"equation", "stepwise"}
    # every question's candidates are exactly its verified rationales of those two views, each kept once per visit
    from distill.data import load_questions_with_candidates
    from tests.trainer_fixtures import load_tokenizer

    questions, views, _ = load_questions_with_candidates(str(trainer_assets.data_dir), load_tokenizer(trainer_assets), "plain",
                                                         max_length=320, views=["stepwise", "equation"])  # fmt: skip
    assert views == ["equation", "stepwise"]
    assert all(1 <= len(q.views) <= 2 for q in questions)
    present = {name: v["present"] for name, v in summary["views"].items()}
    assert sum(present.values()) == sum(v["kept"] for v in summary["views"].values())
    assert "rows of other views left out" in err


def test_unknown_view_exits_2_naming_the_flag_and_the_views(trainer_assets, tmp_path, capsys):  # noqa: F811
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "out", "--views", "stepwise,telepathy")
    code, _, err = _run(capsys, argv)
    assert code == 2
    assert "--views" in err and "telepathy" in err and "stepwise" in err and "socratic" in err


def test_flawed_shares_count_the_teachers_own_labels(trainer_assets, tmp_path, capsys):  # noqa: F811
    """``all`` keeps everything: per view, the flawed share among the kept equals the share among all
    candidates, and both equal the share of flawed rows the trainer visited (counted here from the shards)."""
    import pyarrow.compute as pc

    from data_schemas import read_rationales
    from distill.data import noise_label

    out = tmp_path / "out"
    code, _, err = _run(capsys, _args(trainer_assets.model_dir, trainer_assets.data_dir, out, "--strategy", "all",
                                      "--max_steps", "12", splits=""))  # fmt: skip
    assert code == 0, err[-3000:]
    views = json.loads((out / "mind_summary.json").read_text())["views"]
    table = read_rationales(str(trainer_assets.data_dir))
    labels = [noise_label(m) for m in table["metadata"].to_pylist()]
    assert all(x in (0, 1) for x in labels)  # the reference teacher labels every row
    flawed_rows = sum(labels)
    assert flawed_rows > 0 and pc.sum(pc.equal(table["perspective"], "stepwise")).as_py() > 0
    for v in views.values():
        assert v["flawed_share"] == pytest.approx(v["flawed_share_kept"])
    assert any(v["flawed_share"] > 0 for v in views.values())


def test_tally_counts_flawed_candidates_among_present_and_kept():
    """The per-view counts from hand-made micro-batches: exact numbers, unlabelled rows left out."""
    from collections import defaultdict
    import torch

    from distill.config import MindConfig
    from distill.run_record import MindState

    args = MindConfig(output_dir="unused", use_cpu=True, report_to="none")
    record, log = MindState(args, ["a", "b"], 10, 100), defaultdict(list)
    pending = [{
        "questions": 2, "forward_tokens": 0, "backward_tokens": 0, "trained_tokens": 0, "consistency": 0.0,
        "all_views": torch.tensor([0, 1, 0, 1]), "keep": torch.tensor([True, False, True, True]),
        "alpha": torch.tensor([1.0, 0.0, 0.5, 0.5]), "scores": None, "flawed": torch.tensor([1, 1, 0, -1]),
    }]  # fmt: skip
    sums = record.tally(pending, log)
    t = record.totals
    assert sums["questions"] == 2 and sums["kept"] == 3
    assert t["present"] == [2, 2] and t["kept"] == [2, 1]
    assert log["mind/in_subset/a"] == [1.0] and log["mind/in_subset/b"] == [0.5] and log["mind/alpha/a"] == [0.75]
    assert t["labelled"] == [2, 1] and t["flawed"] == [1, 1]
    assert t["labelled_kept"] == [2, 0] and t["flawed_kept"] == [1, 0]


def test_noise_label_reads_the_rows_metadata():
    from distill.data import noise_label

    assert noise_label('{"noise": "flaw", "noise_step": 0}') == 1
    assert noise_label('{"noise": "slip", "noise_step": 1}') == 0
    assert noise_label('{"noise": "none", "noise_step": null}') == 0
    assert noise_label('{"question": {"level": 3}}') == -1 and noise_label(None) == -1 and noise_label("not json") == -1


@pytest.mark.parametrize("which", ["file", "missing"])
def test_data_that_is_not_a_folder_exits_2_naming_it_before_the_student_loads(trainer_assets, tmp_path, capsys, which):  # noqa: F811
    shard = next(Path(trainer_assets.data_dir).rglob("*.parquet"))
    data = shard if which == "file" else tmp_path / "nowhere"
    argv = _args(tmp_path / "no-student-here", data, tmp_path / "out")  # the student folder does not exist either
    code, _, err = _run(capsys, argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--data" in lines[0] and str(data) in lines[0] and "Traceback" not in err


def test_no_pin_memory_warning_on_the_cpu(trainer_assets, tmp_path, capsys, recwarn):  # noqa: F811
    """A normal CPU run (no --use_cpu: the machine has no GPU) warns of nothing about pinned memory."""
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "out", "--strategy", "all", "--max_steps", "1",
                 splits="")  # fmt: skip
    i = argv.index("--use_cpu")
    code, _, err = _run(capsys, argv[:i] + argv[i + 2 :])
    assert code == 0, err[-2000:]
    assert "pin_memory" not in err and not [w for w in recwarn if "pin_memory" in str(w.message)]


def test_console_gets_a_compact_line_per_logging_step(trainer_assets, tmp_path, capsys):  # noqa: F811
    from distill.console import compact_line

    line = compact_line({"loss": 0.41234, "learning_rate": 0.0012, "mind/subset_size": 3.5, "mind/meta_top1": 0.625,
                         "mind/in_subset/stepwise": 1.0, "epoch": 1.0}, 50, 400)  # fmt: skip
    assert line == "step 50/400 | loss 0.4123 | lr 1.20e-03 | subset 3.50 | meta top1 0.62 | epoch 1.00"
    argv = _args(trainer_assets.model_dir, trainer_assets.data_dir, tmp_path / "out", "--strategy", "mind", splits="")
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0
    steps = [x for x in out.splitlines() if x.startswith("step ")]
    assert len(steps) == MAX_STEPS + 1 and steps[0].startswith("step 1/4 | loss ")  # logging_steps 1, then the summary
    assert "subset " in steps[-2] and "train loss" in steps[-1]
    assert "mind/in_subset" not in out and "{'loss'" not in out  # no dict of every metric
