"""``distill.evaluate`` on tiny random students built locally (tests/tiny_models.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from distill.evaluate import (
    PREDICTION_SCHEMA,
    build_requests,
    evaluate_loop,
    evaluate_model,
    evaluate_splits,
    load_split_questions,
    main,
    score_predictions,
)
from distill.formatting import encode_prompt
from pipeline.teachers.transformers_backend import TransformersBackend
from tests.conftest import REPO_ROOT
from tests.recount import recounted_accuracy

MAX_NEW = 24


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def tiny(tiny_lm_dirs: dict[str, Path]) -> dict[str, Path]:
    return tiny_lm_dirs


@pytest.fixture(scope="module")
def loaded(tiny: dict[str, Path]) -> dict[str, tuple]:
    return {
        style: (AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path))
        for style, path in tiny.items()
    }


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    # mixed prompt lengths: in-distribution and longer out-of-distribution questions
    return load_split_questions("test", num_questions=5) + load_split_questions("ood_steps", num_questions=3)


def key(rows: list[dict]) -> list[tuple]:
    return [(r["question_id"], r["sample_index"], r["prediction"], r["num_tokens"], r["finish_reason"]) for r in rows]


# ---------------------------------------------------------------- prompts
@pytest.mark.parametrize("style", ["plain", "chat"])
def test_prompt_ids_equal_training_format(loaded, questions, style: str) -> None:
    model, tok = loaded[style]
    backend = TransformersBackend.from_pretrained_objects(model, tok, use_chat="true" if style == "chat" else "false")
    reqs = build_requests(questions)  # one request for every style and engine: use_chat picks its form
    assert len(reqs) == len(questions)
    for q, r in zip(questions, reqs, strict=True):
        expected = encode_prompt(tok, q["question"], style)
        assert backend.prompt_ids(r) == expected
        assert expected.count(tok.bos_token_id) == 1  # no doubled BOS from template + tokenizer
    if style == "chat":
        assert "<|user|>" in tok.decode(backend.prompt_ids(reqs[0]))


def test_from_pretrained_objects_leaves_model_alone(loaded) -> None:
    model, tok = loaded["plain"]
    model.train()
    backend = TransformersBackend.from_pretrained_objects(model, tok)
    assert backend.model is model and model.training and backend.device.type == "cpu"
    model.eval()


# ---------------------------------------------------------------- batched vs loop
@pytest.mark.parametrize("style", ["plain", "chat"])
def test_batched_equals_loop(loaded, questions, style: str) -> None:
    model, tok = loaded[style]
    batched = evaluate_model(model, tok, questions, batch_size=3, max_new_tokens=MAX_NEW)
    loop = evaluate_loop(model, tok, questions, max_new_tokens=MAX_NEW)
    assert batched.prompt_style == style
    assert key(batched.rows) == key(loop.rows)
    assert [r["question_id"] for r in batched.rows] == [q["question_id"] for q in questions]  # input order
    assert batched.accuracy == loop.accuracy
    assert all(r["finish_reason"] in ("stop", "length") for r in batched.rows)
    assert all(0 < r["num_tokens"] <= MAX_NEW for r in batched.rows)


def test_sampling_reproducible_and_batch_independent(loaded, questions) -> None:
    model, tok = loaded["plain"]
    kw = dict(n=3, temperature=1.0, max_new_tokens=12, seed=5)
    a = evaluate_model(model, tok, questions[:4], batch_size=5, **kw)
    b = evaluate_model(model, tok, questions[:4], batch_size=2, **kw)
    c = evaluate_loop(model, tok, questions[:4], **kw)
    assert key(a.rows) == key(b.rows) == key(c.rows)
    assert len(a.rows) == 12 and a.n == 4 and a.scores.k == 3
    assert [r["sample_index"] for r in a.rows[:3]] == [0, 1, 2]
    assert len({r["prediction"] for r in a.rows}) > 4  # the samples differ
    other = evaluate_model(model, tok, questions[:4], batch_size=5, **{**kw, "seed": 6})
    assert key(other.rows) != key(a.rows)
    with pytest.raises(ValueError, match="temperature"):
        evaluate_model(model, tok, questions[:1], n=2, temperature=0.0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_vectorised_equals_row_loop_decoding(loaded, questions, temperature: float) -> None:
    """The vectorised decoding (default) and the backend's per-row loop (the pre-issue-14 path,
    the benchmark's baseline) give identical predictions."""
    model, tok = loaded["chat"]
    kw = dict(batch_size=3, max_new_tokens=MAX_NEW, temperature=temperature, n=2 if temperature else 1, seed=2)
    fast = evaluate_model(model, tok, questions, **kw)
    rows = evaluate_model(model, tok, questions, vectorised=False, **kw)
    assert key(fast.rows) == key(rows.rows) and len(fast.rows) == len(questions) * kw["n"]

def test_train_mode_restored(loaded, questions) -> None:
    model, tok = loaded["plain"]
    model.train()
    model.model.layers[0].eval()  # a submodule in another mode stays so
    try:
        evaluate_model(model, tok, questions[:2], max_new_tokens=4)
        assert model.training and model.model.layers[1].training
        assert not model.model.layers[0].training
    finally:
        model.eval()
    evaluate_model(model, tok, questions[:2], max_new_tokens=4)
    assert not any(m.training for m in model.modules())


# ---------------------------------------------------------------- scoring
def test_score_predictions_known_rows() -> None:
    def row(qid: str, k: int, text: str, gold: str = "5", task: str = "arith") -> dict:
        return dict(question_id=qid, sample_index=k, prediction=text, gold_answer=gold, task=task,
                    num_tokens=3, finish_reason="stop")  # fmt: skip

    rows = [
        row("a", 0, "2 + 3 = 5\nThe answer is 5."),  # right
        row("a", 1, "#### 6"),  # wrong
        row("a", 2, "The answer is 5"),  # right: majority 5
        row("b", 0, "no idea", gold="7"),  # cannot judge -> wrong
        row("b", 1, "#### 8", gold="7"),  # wrong
        row("b", 2, "The answer is 8.", gold="7"),  # wrong
        row("c", 0, "#### 9", gold="2"),  # wrong; its two others are right
        row("c", 1, "so 2", gold="2"),
        row("c", 2, "The answer is 2", gold="2"),
        row("d", 0, "Yes, it is.", gold="yes", task="strategyqa"),
        row("d", 1, "No.", gold="yes", task="strategyqa"),
        row("d", 2, "", gold="yes", task="strategyqa"),
    ]
    s = score_predictions(rows)
    verdicts = [True, False, True, None, False, False, False, True, True, True, False, None]
    assert [r["is_correct"] for r in rows] == verdicts
    assert rows[0]["predicted_answer"] == "5" and rows[3]["predicted_answer"] is None
    assert (s.n, s.samples, s.k) == (4, 12, 3)
    assert s.accuracy == pytest.approx(5 / 12)
    assert s.judged == 10
    assert s.pass_at_k == pytest.approx(3 / 4)  # a, c, d
    assert s.majority_accuracy == pytest.approx(3 / 4)  # a: 5; b: 8; c: 2; d: tie yes/no -> first (yes)
    assert s.finish_reasons == {"stop": 12} and s.errors == 0
    assert score_predictions([]).accuracy == 0.0


def test_gold_equal_to_the_students_answers_scores_perfectly(loaded, questions) -> None:
    """No fakes: take what the student answers as the gold, evaluate again: all correct."""
    model, tok = loaded["plain"]
    first = evaluate_model(model, tok, questions, batch_size=4, max_new_tokens=MAX_NEW)
    answered = [
        {**q, "gold_answer": r["predicted_answer"]}
        for q, r in zip(questions, first.rows, strict=True)
        if r["predicted_answer"] is not None
    ]
    assert answered
    again = evaluate_model(model, tok, answered, batch_size=4, max_new_tokens=MAX_NEW)
    assert again.accuracy == 1.0 and again.scores.judged == len(answered)


# ---------------------------------------------------------------- command line
def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.parametrize("style", ["plain", "chat"])
def test_main_end_to_end(tiny, capsys, tmp_path: Path, style: str) -> None:
    out = tmp_path / f"{style}.parquet"
    argv = ["--model", str(tiny[style]), "--split", "test", "--num-questions", "6", "--max_new_tokens", "16",
            "--batch_size", "4", "--out", str(out)]  # fmt: skip
    if style == "chat":
        argv += ["--n", "2", "--temperature", "0.8", "--seed", "3"]
    assert main(argv) == 0
    summary = last_json(capsys.readouterr().out)
    k = 2 if style == "chat" else 1
    assert summary["split"] == "test" and summary["n"] == 6 and summary["samples"] == 6 * k
    assert summary["prompt_style"] == style and summary["model"] == str(tiny[style])
    assert summary["judged"] <= 6 * k and summary["seconds"] >= 0
    assert summary["accuracy"] == pytest.approx(recounted_accuracy(out))
    table = pq.read_table(out)
    assert table.schema.names == PREDICTION_SCHEMA.names
    for col in ("question_id", "question", "gold_answer", "task", "split", "sample_index", "prediction",
                "predicted_answer", "is_correct", "num_tokens", "finish_reason"):  # fmt: skip
        assert col in table.schema.names
    rows = table.to_pylist()
    assert len(rows) == 6 * k and {r["split"] for r in rows} == {"test"}
    assert summary["accuracy"] == pytest.approx(sum(r["is_correct"] is True for r in rows) / len(rows))
    meta = json.loads(table.schema.metadata[b"mind.eval"])
    assert meta["accuracy"] == summary["accuracy"]


def test_main_default_out_and_sources(tiny, capsys, shared_data: Path) -> None:
    gsm8k = shared_data / "gsm8k" / "test.jsonl"
    argv = ["--model", str(tiny["plain"]), "--split", "gsm8k-test", "--source", f"gsm8k:{gsm8k}",
            "--num-questions", "3", "--max-new-tokens", "8", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["n"] == 3 and summary["source"] == f"gsm8k:{gsm8k}"
    rows = pq.read_table(tiny["plain"] / "eval" / "gsm8k-test.parquet").to_pylist()
    assert [r["question_id"] for r in rows] == ["gsm8k:test:0", "gsm8k:test:1", "gsm8k:test:2"]
    assert {r["task"] for r in rows} == {"gsm8k"} and {r["split"] for r in rows} == {"gsm8k-test"}


def test_main_stored_questions_run(tiny, capsys, tmp_path: Path) -> None:
    from pipeline.synthetic.run import SynthesisConfig, synthesize

    synthesize(SynthesisConfig(out=tmp_path, num_questions=2, eval_questions=3, retention_train_questions=1, samples=1))
    argv = ["--model", str(tiny["plain"]), "--split", "ood_template", "--source", f"questions:{tmp_path / 'questions'}",
            "--max_new_tokens", "4", "--out", str(tmp_path / "e.parquet"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["n"] == 3
    # the stored split is the generated one: same ids as the synthetic source gives
    stored = [r["question_id"] for r in pq.read_table(tmp_path / "e.parquet").to_pylist()]
    assert stored == [q["question_id"] for q in load_split_questions("ood_template", num_questions=3)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "nope"], "unknown synthetic split"),
        (["--split", "x", "--source", "nosuch:file"], "unknown question source"),
        (["--split", "x", "--source", "gsm8k:/does/not/exist.jsonl"], "does not exist"),
        (["--split", "test", "--n", "2"], "temperature"),
    ],
)
def test_main_errors_exit_2(tiny, capsys, extra: list[str], message: str) -> None:
    assert main(["--model", str(tiny["plain"]), *extra]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_main_missing_model_exits_2(capsys, tmp_path: Path) -> None:
    assert main(["--model", str(tmp_path / "missing"), "--split", "test"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--split", "test"]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_subprocess_cli(tiny, tmp_path: Path) -> None:
    out = tmp_path / "sub.parquet"
    cmd = [sys.executable, "-m", "distill.evaluate", "--model", str(tiny["chat"]), "--split", "retention",
           "--num-questions", "4", "--max_new_tokens", "8", "--threads", "1", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = last_json(proc.stdout)
    assert summary["split"] == "retention" and summary["n"] == 4
    assert summary["accuracy"] == pytest.approx(recounted_accuracy(out))
    assert pq.read_table(out).num_rows == 4


def test_evaluate_splits(loaded, questions, tmp_path: Path) -> None:
    model, tok = loaded["plain"]
    by_name = evaluate_splits(model, tok, ["test", "retention"], num_questions=2, max_new_tokens=4, out_dir=tmp_path)
    assert set(by_name) == {"test", "retention"}
    assert all(r.n == 2 and r.accuracy == pytest.approx(recounted_accuracy(tmp_path / f"{s}.parquet")) for s, r in by_name.items())
    assert {r["split"] for r in by_name["retention"].rows} == {"retention"}
    assert pq.read_table(tmp_path / "test.parquet").num_rows == 2
    given = evaluate_splits(model, tok, {"mine": questions[:3]}, max_new_tokens=4)
    assert given["mine"].n == 3 and given["mine"].split == "mine"
