"""The older GSM8K strategy grid (docs/real-teacher.md, last section) up to the GPU, with tiny local models.

The paper's set-up on that page is tested in tests/test_paper_track.py.

Every step of the recipe runs here on the CPU with the session's tiny random causal LMs in place
of the real teacher and student: the train config (``configs/train/gsm8k-real.yaml``, every key a
real field), the synthesis configs rewritten for a local teacher, the teacher-free track (ingest
of the real GSM8K rationales, ``distill.train`` with the config, ``distill.evaluate`` on GSM8K
test, SVAMP and ASDiv), and ``scripts/real_teacher_track.sh`` end to end (a tiny teacher through
the real ``synthesize`` flow, GSM8K's human view, a LoRA student, merge, evaluation, the table).
What cannot run here: vLLM, a GPU, real models (the doc says so).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.recount import recounted_accuracy

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_cpu_thread")]  # conftest: tiny models, one thread

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "gsm8k-real.yaml"
SYNTH_CONFIGS = {
    "vllm": REPO_ROOT / "configs" / "synthesize" / "gsm8k-vllm.yaml",
    "openai": REPO_ROOT / "configs" / "synthesize" / "gsm8k-openai.yaml",
}
SCRIPT = REPO_ROOT / "scripts" / "real_teacher_track.sh"
STRATEGIES = ("golden", "all", "mcc_kd", "random", "lowest_loss", "instant", "mind")
EVAL_QUESTIONS = 3

#: The config overridden for a 2-step CPU run of a tiny student (everything else as on the GPU):
#: MIND's MetaNet warms up for step 1 (student frozen), then steers step 2; one history entry per step.
CPU_TRAIN = [
    "--bf16", "false", "--use_cpu", "true", "--num_threads", "1", "--max_steps", "2",
    "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
    "--meta_warmup_steps", "1", "--history_every", "1",
    "--validation_questions", "3", "--eval_max_new_tokens", "8", "--per_device_eval_batch_size", "4",
]  # fmt: skip


def eval_sources(shared: Path) -> dict[str, str]:
    """The evaluation sets of the recipe: GSM8K test (ID), SVAMP and ASDiv (OOD)."""
    return {
        "gsm8k": f"gsm8k:{shared}/gsm8k/test.jsonl",
        "svamp": f"svamp:{shared}/svamp/SVAMP.json",
        "asdiv": f"mentor-kd:{shared}/mentor_kd/asdiv_test.json",
    }


def last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert lines, "nothing on stdout"
    return json.loads(lines[-1])


def _script_env(tmp_path: Path, shared: Path, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MIND_"))}
    base.update(
        MIND_VENV=str(Path(sys.executable).parents[1]), MIND_SHARED_DATA=str(shared), OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
        PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )  # fmt: skip
    base.update(env)
    return base


def _run_script(env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


# ---------------------------------------------------------------- the configs
def test_train_config_holds_only_real_fields() -> None:
    from distill.config import MindConfig, MindParser, MindScriptArguments

    raw = yaml.safe_load(TRAIN_CONFIG.read_text())
    script, args = MindParser((MindScriptArguments, MindConfig)).parse_args_and_config(
        ["--config", str(TRAIN_CONFIG), "--output_dir", "x", "--data", "y", "--bf16", "false"]
    )  # an unknown key would raise "Unknown arguments from config file"
    assert raw["bf16"] is True and args.bf16 is False  # bf16 on the GPU; the CPU run turns it off
    assert script.eval_splits == "" and script.lora_r == 0 and script.data == "y"
    assert args.prompt_style == "auto" and args.max_length == 1024 and args.learning_rate == pytest.approx(1e-5)
    assert args.max_steps > 0 and args.per_device_train_batch_size * args.gradient_accumulation_steps == 16
    assert args.validation_questions > 0 and 0 <= args.meta_warmup_steps < args.max_steps  # MIND steers after warm-up
    assert args.strategy in STRATEGIES and args.gradient_checkpointing
    for strategy in STRATEGIES:  # every strategy of the grid is accepted with this config
        _, a = MindParser((MindScriptArguments, MindConfig)).parse_args_and_config(
            ["--config", str(TRAIN_CONFIG), "--output_dir", "x", "--bf16", "false", "--strategy", strategy]
        )
        assert a.strategy == strategy


@pytest.mark.parametrize("backend", ["vllm", "openai"])
def test_script_rewrites_the_synthesis_config_for_a_local_teacher(tmp_path, shared_data, backend) -> None:
    from pipeline.synthesis import load_config

    out = tmp_path / "out"
    env = _script_env(
        tmp_path, shared_data, OUT=str(out), STAGES="synth", SYNTH_DRY_RUN="1",
        SYNTH_CONFIG=str(SYNTH_CONFIGS[backend]),
        TEACHER="/models/Qwen2.5-7B-Instruct", TEACHER_URL="http://127.0.0.1:8000/v1" if backend == "openai" else "",
    )  # fmt: skip
    proc = _run_script(env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SYNTH_DRY_RUN=1" in proc.stderr and not (out / "rationales").exists()
    written = yaml.safe_load((out / "synthesize.yaml").read_text())
    original = yaml.safe_load(SYNTH_CONFIGS[backend].read_text())
    (teacher,) = written["teachers"]
    assert teacher["backend"] == backend and teacher["name"] == "Qwen2.5-7B-Instruct"
    assert teacher["options"]["model"] == "/models/Qwen2.5-7B-Instruct"
    kept = {k: v for k, v in original["teachers"][0]["options"].items() if k != "model"}
    assert kept.items() <= teacher["options"].items()  # tensor_parallel_size, max_concurrency, ...
    if backend == "openai":
        assert teacher["options"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert written["source"] == {"kind": "gsm8k", "path": str(shared_data / "gsm8k" / "train.jsonl")}
    for key in ("perspective_set", "samples", "sampling", "num_questions"):
        assert written[key] == original[key]
    cfg = load_config(out / "synthesize.yaml")  # valid without vLLM installed
    assert [p.name for p in cfg.resolved_perspectives()] == ["stepwise", "equation", "socratic", "program", "backward"]


# ---------------------------------------------------------------- the teacher-free track, in-process
def test_ingested_real_rationales_train_and_evaluate(tmp_path, shared_data, tiny_lm_dirs, capsys) -> None:
    """Track B: the real rationales of the GSM8K test questions (human, socratic, four model
    solutions: six views), distilled with the recipe's config, evaluated on the three sets."""
    from distill import evaluate as evaluate_cli
    from distill import train as train_cli
    from pipeline import ingest

    data = tmp_path / "rationales"
    gsm = shared_data / "gsm8k"
    for fmt, name in (("gsm8k", "test.jsonl"), ("gsm8k-socratic", "test_socratic.jsonl"),
                      ("gsm8k-model-solutions", "example_model_solutions.jsonl")):  # fmt: skip
        assert ingest.main([fmt, str(gsm / name), "--out", str(data / fmt), "--quiet"]) == 0
    capsys.readouterr()

    out = tmp_path / "student"
    argv = ["--config", str(TRAIN_CONFIG), "--data", str(data), "--student", str(tiny_lm_dirs["chat"]),
            "--strategy", "mind", "--seed", "0", "--output_dir", str(out), *CPU_TRAIN]  # fmt: skip
    code = train_cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    result = last_json(captured.out)
    assert result["strategy"] == "mind" and result["steps"] == 2
    assert result["n"] == {"validation": 3}  # eval_splits "": only the held-out questions
    views = {"human@human", "socratic@human", *(f"default@import/gsm8k-{k}" for k in ingest.MODEL_SOLUTION_KEYS)}
    assert set(result["in_subset"]) == set(result["kept_share"]) == views
    assert sum(result["kept_share"].values()) == pytest.approx(1.0, abs=1e-3)
    compute = result["compute"]  # shared scoring, uniform warm-up (the defaults): every forward has its backward
    assert compute["forward_tokens"] == 0 and compute["backward_tokens"] > 0 and compute["flops"] > 0
    assert "prompt style chat" in captured.err
    assert (out / "config.json").is_file() and (out / "mind_summary.json").is_file()
    summary = json.loads((out / "mind_summary.json").read_text())
    assert set(summary["views"]) == views and summary["compute"] == compute
    assert [e["step"] for e in summary["history"]] == [1, 2] and set(summary["history"][0]["in_subset"]) <= views

    for split, source in eval_sources(shared_data).items():
        pred = tmp_path / "eval" / f"{split}.parquet"
        code = evaluate_cli.main(["--model", str(out), "--split", split, "--source", source,
                                  "--num-questions", str(EVAL_QUESTIONS), "--max_new_tokens", "8",
                                  "--batch_size", "4", "--out", str(pred), "--quiet"])  # fmt: skip
        captured = capsys.readouterr()
        assert code == 0, captured.err[-3000:]
        summary = last_json(captured.out)
        assert summary["split"] == split and summary["n"] == EVAL_QUESTIONS
        assert summary["accuracy"] == pytest.approx(recounted_accuracy(pred)) and summary["prompt_style"] == "chat"
        assert summary["source"] == source and pred.is_file()


# ---------------------------------------------------------------- the script, end to end
@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_script_runs_the_whole_track(tmp_path, shared_data, tiny_lm_dirs) -> None:
    """Track A through scripts/real_teacher_track.sh: the tiny chat model as the teacher (the
    transformers backend in place of vLLM) on 6 GSM8K train questions x 2 math perspectives,
    GSM8K's human view, a LoRA student (adapter merged before evaluation), 3 evaluation sets."""
    import pyarrow.compute as pc
    from prefect.settings import PREFECT_API_URL

    from data_schemas import read_rationales

    out = tmp_path / "out"
    chat = tiny_lm_dirs["chat"]
    env = _script_env(
        tmp_path, shared_data, PREFECT_API_URL=PREFECT_API_URL.value(),  # the harness's server, no start-up
        OUT=str(out), TEACHER=str(chat), TEACHER_BACKEND="transformers", TEACHER_NAME="tiny-chat",
        SYNTH_OVERRIDES=json.dumps({"num_questions": 6, "perspectives": ["stepwise", "socratic"], "samples": 1,
                                    "shard_size": 6, "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": 8}}),
        HUMAN_VIEW="1", STUDENT=str(chat), STRATEGIES="mind", SEEDS="0", STEPS="2",
        TRAIN_ARGS=" ".join([*CPU_TRAIN, "--lora_r", "4", "--learning_rate", "1e-4"]),
        EVAL_QUESTIONS=str(EVAL_QUESTIONS), EVAL_MAX_NEW_TOKENS="8", EVAL_BATCH="4", EVAL_ARGS="--threads 1",
    )  # fmt: skip
    proc = _run_script(env)
    assert proc.returncode == 0, proc.stderr[-4000:]

    synth = read_rationales(out / "rationales")
    mine = synth.filter(pc.equal(synth["teacher"], "tiny-chat"))
    assert mine.num_rows == 6 * 2
    assert set(mine["perspective"].to_pylist()) == {"stepwise", "socratic"}
    assert set(mine["question_id"].to_pylist()) == {f"gsm8k:train:{i}" for i in range(6)}
    assert set(mine["task"].to_pylist()) == {"gsm8k"}
    assert synth.num_rows - mine.num_rows == 7473  # the human view of every GSM8K train question

    run = out / "train" / "mind-seed0"
    train = json.loads((run / "train.json").read_text())
    assert train["strategy"] == "mind" and train["seed"] == 0 and train["steps"] == 2
    assert (run / "adapter_config.json").is_file() and (run / "merged" / "config.json").is_file()
    for split in ("gsm8k", "svamp", "asdiv"):
        e = json.loads((run / "eval" / f"{split}.json").read_text())
        assert e["split"] == split and e["n"] == EVAL_QUESTIONS
        assert e["accuracy"] == pytest.approx(recounted_accuracy(run / "eval" / f"{split}.parquet"))
        assert e["model"] == str(run / "merged")
    final = last_json(proc.stdout)
    assert final["runs"] == 1 and set(final["mean_accuracy"]["mind"]) == {"gsm8k", "svamp", "asdiv", "validation"}
    assert "| mind | 1 |" in (out / "results.md").read_text()
    (row,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["compute"] == train["compute"] and row["compute"]["flops"] > 0 and set(row["in_subset"]) == set(
        train["in_subset"]
    )

    again = _run_script({**env, "STAGES": "train eval collect"})  # finished runs and evaluations are skipped
    assert again.returncode == 0, again.stderr[-3000:]
    assert "mind-seed0: trained already" in again.stderr and "evaluating" not in again.stderr


def test_script_collects_means_over_seeds(tmp_path, shared_data) -> None:
    out = tmp_path / "out"
    for strategy, seed, acc in (("random", 0, 0.2), ("random", 1, 0.4), ("mind", 0, 0.5), ("mind", 1, 0.7)):
        run = out / "train" / f"{strategy}-seed{seed}"
        (run / "eval").mkdir(parents=True)
        compute = {"flops": 2e15 if strategy == "mind" else 1e15}
        (run / "train.json").write_text(json.dumps({"strategy": strategy, "seed": seed, "steps": 10, "compute": compute,
                                                    "train_seconds": 3.0, "accuracy": {"validation": acc}}))
        for split, n in (("gsm8k", 1319), ("svamp", 1000), ("asdiv", 314)):
            (run / "eval" / f"{split}.json").write_text(json.dumps({"split": split, "n": n, "accuracy": acc}))
    proc = _run_script(_script_env(tmp_path, shared_data, OUT=str(out), STAGES="collect"), timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    means = last_json(proc.stdout)["mean_accuracy"]
    assert means["random"]["gsm8k"] == pytest.approx(0.3) and means["mind"]["asdiv"] == pytest.approx(0.6)
    table = (out / "results.md").read_text()
    assert "| random | 2 | 30.0 ± 14.1 | 30.0 ± 14.1 | 30.0 ± 14.1 | 30.0 ± 14.1 | 3 | 1 |" in table
    assert "| mind | 2 | 60.0 ± 14.1 | 60.0 ± 14.1 | 60.0 ± 14.1 | 60.0 ± 14.1 | 3 | 2 |" in table
    assert "gsm8k (n=1319)" in table and "asdiv (n=314)" in table
    assert table.index("| random |") < table.index("| mind |")  # the strategies in the design's order
    assert len((out / "results.jsonl").read_text().splitlines()) == 4


def test_script_refuses_bad_settings(tmp_path, shared_data) -> None:
    bad = _run_script(_script_env(tmp_path, shared_data, OUT=str(tmp_path / "o"), STAGES="synth"), timeout=60)
    assert bad.returncode == 2 and "set TEACHER" in bad.stderr
    bad = _run_script(_script_env(tmp_path, shared_data, OUT=str(tmp_path / "o"), STAGES="collect", EVALS="mmlu"))
    assert bad.returncode == 2 and "unknown evaluation set 'mmlu'" in bad.stderr
    bad = _run_script(_script_env(tmp_path, shared_data, OUT=str(tmp_path / "o"), STAGES="train", TEACHER="none"))
    assert bad.returncode == 2 and "set STUDENT" in bad.stderr


def test_stats_of_a_teacher_whose_answers_cannot_be_judged(tmp_path, rationale_row) -> None:
    """A weak teacher (or the tiny one above) may write a whole view without a judgeable answer;
    the flow's closing statistics must count it as 0 correct, not fail (DuckDB's count_if over
    only NULLs is NULL)."""
    import data_schemas as ds
    from pipeline import browse

    rows = [rationale_row(question_id=f"q-{i}", perspective=p, sample_index=0, is_correct=None, predicted_answer=None)
            for i in range(3) for p in ("stepwise", "socratic")]  # fmt: skip
    rows[0].update(is_correct=False, predicted_answer="4")
    writer = ds.RunWriter(tmp_path / "run", run_id="r1")
    writer.write_shard("part-00000", ds.rows_to_table(rows))
    groups = {g["perspective"]: g for g in browse.stats(tmp_path / "run")}
    assert groups["socratic"]["correct"] == 0 and groups["socratic"]["incorrect"] == 0
    assert groups["socratic"]["unjudged_pct"] == 100.0 and groups["socratic"]["judged_accuracy_pct"] is None
    assert groups["stepwise"]["incorrect"] == 1 and groups["stepwise"]["correct"] == 0
