"""``distill.evaluate --suite paper`` and ``--backend transformers|vllm|openai:URL``.

The suite reads the real files of the test data folder (the GPQA CSV is a small file in the official
columns written here: the real one is not shipped). Tiny random students (tests/tiny_models.py)
answer nonsense, so their runs check structure and counts; the answer checking is checked with
scripted engines that answer each question's gold answer (must score 100%) or a wrong answer of
the right kind (must score 0% with every answer judged).

vLLM is NOT installed here: ``--backend vllm`` runs against ``FakeLLM`` of
tests/test_vllm_backend.py (a fake of vLLM's documented offline API, injected as the ``vllm``
module). ``--backend openai:URL`` runs against a real HTTP server on 127.0.0.1 that speaks the
OpenAI completions and chat-completions API.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest

from distill.eval_backends import BackendChoice, parse_backend
from distill.evaluate import evaluate_backend, main
from distill.formatting import PLAIN_TEMPLATE
from distill.suites import load_suite_questions, plan_suite, run_suite, suite_summary, suite_table
from pipeline.teachers.base import Completion, GenerationRequest, TeacherBackend
from pipeline.verify import task_kind
from tests.openai_fake import FakeOpenAIServer
from tests.recount import recounted_accuracy
from tests.test_sources import _gpqa_csv
from tests.test_vllm_backend import FakeCompletionOutput, FakeLLM, FakeRequestOutput, FakeSamplingParams, FakeTokenizer

pytestmark = [pytest.mark.usefixtures("one_cpu_thread"), pytest.mark.timeout(300)]

PAPER = ["MATH500", "GSM8K", "SVAMP", "CommonsenseQA", "StrategyQA", "GPQA-Diamond"]
TASKS = {"MATH500": "math", "GSM8K": "gsm8k", "SVAMP": "svamp", "CommonsenseQA": "commonsense_qa",
         "StrategyQA": "strategyqa", "GPQA-Diamond": "gpqa"}  # fmt: skip


def wrong_answer(gold: str, task: str) -> str:
    """An answer of the task's kind that is not ``gold``."""
    kind = task_kind(task)
    if kind == "yesno":
        return "no" if gold == "yes" else "yes"
    if kind == "choice":
        return "A" if gold != "A" else "B"
    return "987654321"


class ScriptedBackend(TeacherBackend):
    """Answers every request from its question row: the gold answer, or a wrong one of its kind."""

    name = "scripted"

    def __init__(self, right: bool = True) -> None:
        self.right = right
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.requests.extend(requests)
        out = []
        for r in requests:
            gold, task = r.question["gold_answer"], r.question["task"]
            answer = gold if self.right else wrong_answer(gold, task)
            out.append(Completion(text=f"Let me think.\nThe answer is {answer}.", finish_reason="stop", num_tokens=9))
        return out


@pytest.fixture()
def gpqa_csv(tmp_path: Path) -> Path:
    return _gpqa_csv(tmp_path / "gpqa_diamond.csv")


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# ---------------------------------------------------------------- backend strings
def test_parse_backend_forms_and_errors() -> None:
    assert parse_backend("transformers") == BackendChoice("transformers")
    assert parse_backend(" vllm ") == BackendChoice("vllm")
    choice = parse_backend("openai:http://127.0.0.1:8000/v1")
    assert (choice.kind, choice.url, str(choice)) == ("openai", "http://127.0.0.1:8000/v1", "openai:http://127.0.0.1:8000/v1")
    for bad, message in [("tgi", "unknown --backend"), ("openai", "needs the server's URL"),
                         ("openai:localhost:8000", "http://"), ("vllm:Qwen/Qwen2.5-1.5B", "unknown --backend"),
                         ("", "unknown --backend")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_backend(bad)


# ---------------------------------------------------------------- suite plan
def test_paper_suite_plan_on_the_shared_data(shared_data: Path, gpqa_csv: Path) -> None:
    plan = plan_suite("paper", data_dir=shared_data)
    assert [pm.name for pm in plan] == PAPER
    assert [pm.member.group for pm in plan] == ["id", "id", "id", "ood", "ood", "ood"]
    assert plan[-1].source is None and plan[-1].skipped == "no --gpqa_path given"
    assert all(Path(pm.source.partition(":")[2]).is_file() for pm in plan[:-1])
    load_suite_questions(plan, limit=4)
    for pm in plan[:-1]:
        assert len(pm.questions) == 4 and {q["task"] for q in pm.questions} == {TASKS[pm.name]}
    assert plan[-1].questions == []
    full = plan_suite("paper", data_dir=shared_data, gpqa_path=gpqa_csv)
    assert full[-1].source == f"gpqa:{gpqa_csv}" and full[-1].skipped is None
    load_suite_questions(full)
    assert [q["question_id"] for q in full[-1].questions] == ["gpqa:recAAA", "gpqa:recBBB", "gpqa:recCCC"]
    assert len(full[0].questions) == 500 and len(full[1].questions) == 1319  # no limit: every question
    swapped = plan_suite("paper", data_dir=shared_data,
                         sources={"svamp": f"mentor-kd:{shared_data / 'mentor_kd' / 'svamp_test.json'}"})  # fmt: skip
    assert swapped[2].source.startswith("mentor-kd:")


def test_paper_suite_plan_errors(shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="unknown suite 'nope'; known: paper"):
        plan_suite("nope")
    with pytest.raises(ValueError, match="--gpqa_path .*no such file"):
        plan_suite("paper", data_dir=shared_data, gpqa_path=tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="--gpqa_path .*a folder"):
        plan_suite("paper", data_dir=shared_data, gpqa_path=tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        plan_suite("paper", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no member BoolQ"):
        plan_suite("paper", data_dir=shared_data, sources={"BoolQ": "jsonl:x"})
    monkeypatch.delenv("MIND_SHARED_DATA")  # no data folder set: the public hub data sets, never a guessed folder
    hub = plan_suite("paper")
    assert [(m.source, m.options) for m in hub[:5]] == [
        ("math500:hf:HuggingFaceH4/MATH-500", {"split": "test"}),
        ("gsm8k:hf:openai/gsm8k", {"split": "test", "config": "main"}),
        ("svamp:hf:MU-NLPC/Calc-svamp", {"split": "test", "config": "default"}),
        ("commonsense_qa:hf:tau/commonsense_qa", {"split": "validation"}),
        ("strategyqa:hf:ChilleD/StrategyQA", {"split": "test"}),
    ]  # tests/test_hub_ids.py reads them from an offline cache
    assert hub[5].skipped == "no --gpqa_path given"
    monkeypatch.setenv("MIND_SHARED_DATA", str(shared_data))
    assert [m.source for m in plan_suite("paper")] == [m.source for m in plan_suite("paper", data_dir=shared_data)]


# ---------------------------------------------------------------- answer checking per member
@pytest.mark.parametrize("right", [True, False])
def test_suite_checks_answers_with_each_members_checker(shared_data: Path, gpqa_csv: Path, right: bool) -> None:
    """Gold answers score 100% on every member, wrong answers of the right kind 0%, all judged."""
    plan = plan_suite("paper", data_dir=shared_data, gpqa_path=gpqa_csv)
    load_suite_questions(plan, limit=12)
    backend = ScriptedBackend(right=right)
    results = run_suite(plan, lambda qs, split: evaluate_backend(backend, qs, prompt_style="plain", split=split))
    assert list(results) == PAPER
    for name, r in results.items():
        n = 3 if name == "GPQA-Diamond" else 12
        assert (r.n, r.scores.judged) == (n, n), name
        assert r.accuracy == (1.0 if right else 0.0), name
        assert {row["task"] for row in r.rows} == {TASKS[name]} and {row["split"] for row in r.rows} == {name}
    summary = suite_summary("paper", plan, results, model="scripted")
    assert summary["id_average"] == summary["ood_average"] == summary["average"] == (1.0 if right else 0.0)
    assert summary["evaluated"] == PAPER and summary["skipped"] == []
    # the requests carry the training prompt (plain) and the chat form
    req = backend.requests[0]
    question = plan[0].questions[0]["question"].strip()
    assert req.prompt == PLAIN_TEMPLATE.format(question=question)
    assert req.messages == ({"role": "user", "content": question},)
    assert (req.sampling.temperature, req.sampling.max_tokens) == (0.0, 256)


def test_summary_averages_and_table_with_a_skipped_member(shared_data: Path) -> None:
    plan = plan_suite("paper", data_dir=shared_data)
    load_suite_questions(plan, limit=2)

    class Half(ScriptedBackend):  # right on ID sets, wrong on OOD sets
        def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
            self.right = requests[0].question["task"] in ("math", "gsm8k", "svamp")
            return super().generate(requests)

    backend = Half()
    results = run_suite(plan, lambda qs, split: evaluate_backend(backend, qs, prompt_style="plain", split=split))
    summary = suite_summary("paper", plan, results, model="m")
    assert (summary["id_average"], summary["ood_average"], summary["average"]) == (1.0, 0.0, 0.6)
    assert summary["members"]["GPQA-Diamond"] == {"group": "ood", "source": None, "status": "skipped",
                                                  "reason": "no --gpqa_path given"}  # fmt: skip
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(suite_table(summary))
    text = console.export_text()
    for needle in ("MATH500", "GSM8K", "SVAMP", "CommonsenseQA", "StrategyQA", "skipped: no --gpqa_path given",
                   "ID average", "OOD average", "100.00%", "0.00%"):  # fmt: skip
        assert needle in text


# ---------------------------------------------------------------- transformers, end to end
@pytest.mark.parametrize("style", ["plain", "chat"])
def test_cli_suite_transformers_tiny(tiny_lm_dirs, shared_data, gpqa_csv, capsys, style: str) -> None:
    model = tiny_lm_dirs[style]
    argv = ["--model", str(model), "--suite", "paper", "--limit", "3", "--max_new_tokens", "6", "--batch_size", "4",
            "--data_dir", str(shared_data), "--quiet"]  # fmt: skip
    if style == "chat":
        argv += ["--gpqa_path", str(gpqa_csv)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = last_json(out)
    assert "ID average" in out and "OOD average" in out  # the table, before the JSON line
    assert summary["suite"] == "paper" and summary["backend"] == "transformers" and summary["limit"] == 3
    assert summary["prompt_style"] == style and list(summary["members"]) == PAPER
    evaluated = PAPER if style == "chat" else PAPER[:-1]
    assert summary["evaluated"] == evaluated
    for name in evaluated:
        m = summary["members"][name]
        assert m["status"] == "evaluated" and m["n"] == 3 and m["samples"] == 3
        assert m["accuracy"] == pytest.approx(recounted_accuracy(model / "eval" / "paper" / f"{name}.parquet"))
        assert m["mean_tokens"] <= 6
        rows = pq.read_table(model / "eval" / "paper" / f"{name}.parquet").to_pylist()
        assert len(rows) == 3 and {r["task"] for r in rows} == {TASKS[name]}
        assert m["accuracy"] == pytest.approx(sum(r["is_correct"] is True for r in rows) / 3)
    if style == "plain":
        assert summary["members"]["GPQA-Diamond"]["status"] == "skipped"
    ids = [summary["members"][n]["accuracy"] for n in PAPER[:3]]
    assert summary["id_average"] == pytest.approx(sum(ids) / 3)
    assert json.loads((model / "eval" / "paper.json").read_text()) == summary


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["--suite", "paper", "--gpqa_path", "/no/such/gpqa_diamond.csv"], "no such file"),
        (["--suite", "paper", "--backend", "tgi"], "unknown --backend 'tgi'"),
        (["--suite", "paper", "--split", "test"], "either --split"),
        ([], "either --split"),
        (["--split", "test", "--gpqa_path", "x.csv"], "go with --suite"),
        (["--suite", "paper", "-B", "max_model_len=4"], "--backend_option is for"),
        (["--suite", "paper", "--backend", "vllm", "-B", "tensor_parallel=2"], "unknown --backend_option"),
    ],
)
def test_cli_errors_exit_2(tiny_lm_dirs, shared_data, capsys, monkeypatch, extra: list[str], message: str) -> None:
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm_module({}))
    argv = ["--model", str(tiny_lm_dirs["plain"]), *extra]
    if "--suite" in extra:
        argv += ["--data_dir", str(shared_data)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


# ---------------------------------------------------------------- vllm (fake of the documented API)
class GoldLLM(FakeLLM):
    """``FakeLLM`` (tests/test_vllm_backend.py) that answers with the gold of the question it sees."""

    golds: dict[str, str] = {}

    def _run(self, method: str, inputs: list[Any], params: Any, extra: dict[str, Any]) -> list[FakeRequestOutput]:
        self.calls.append((method, inputs, list(params), extra))
        outs = []
        for i, x in enumerate(inputs):
            text = x if isinstance(x, str) else x[-1]["content"]
            gold = next(g for q, g in self.golds.items() if q in text)
            out = FakeCompletionOutput(0, f"So the answer is {gold}.", [5, 6, 7], None, None, "stop")
            outs.append(FakeRequestOutput(str(i), text, [1, 2], None, [out]))
        return outs


def fake_vllm_module(golds: dict[str, str], chat_template: str | None = None) -> SimpleNamespace:
    created: list[GoldLLM] = []

    def make_llm(model: str, **kwargs: Any) -> GoldLLM:
        llm = GoldLLM(model=model, kwargs=kwargs, tokenizer=FakeTokenizer(chat_template=chat_template))
        llm.golds = golds
        created.append(llm)
        return llm

    return SimpleNamespace(LLM=make_llm, SamplingParams=FakeSamplingParams, created=created)


def golds_of(shared_data: Path, limit: int) -> dict[str, str]:
    plan = plan_suite("paper", data_dir=shared_data)
    load_suite_questions(plan, limit=limit)
    return {q["question"].strip(): q["gold_answer"] for pm in plan for q in pm.questions}


@pytest.mark.parametrize("chat", [False, True])
def test_cli_suite_vllm_fake(tiny_lm_dirs, shared_data, tmp_path, capsys, monkeypatch, chat: bool) -> None:
    golds = golds_of(shared_data, 2)
    fake = fake_vllm_module(golds, chat_template="{{ x }}" if chat else None)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    out_json = tmp_path / "paper.json"
    argv = ["--model", str(tiny_lm_dirs["plain"]), "--suite", "paper", "--limit", "2", "--backend", "vllm",
            "-B", "max_model_len=2048", "--data_dir", str(shared_data), "--out", str(tmp_path / "pred"),
            "--output_json", str(out_json), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["backend"] == "vllm" and summary["prompt_style"] == ("chat" if chat else "plain")
    assert summary["evaluated"] == PAPER[:-1] and summary["id_average"] == summary["ood_average"] == 1.0
    assert all(summary["members"][n]["n"] == 2 for n in PAPER[:-1])
    assert json.loads(out_json.read_text()) == summary
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == sorted(f"{n}.parquet" for n in PAPER[:-1])
    (llm,) = fake.created
    assert llm.model == str(tiny_lm_dirs["plain"]) and llm.kwargs["max_model_len"] == 2048
    assert len(llm.calls) == 5  # one engine call per set: vLLM schedules the batch itself
    method, inputs, params, _ = llm.calls[1]  # GSM8K
    plan = plan_suite("paper", data_dir=shared_data)
    load_suite_questions(plan, limit=2)
    gsm8k = [q["question"].strip() for q in plan[1].questions]
    if chat:
        assert method == "chat" and inputs == [[{"role": "user", "content": q}] for q in gsm8k]
    else:
        assert method == "generate" and inputs == [PLAIN_TEMPLATE.format(question=q) for q in gsm8k]
    assert [(p.n, p.temperature, p.top_p, p.max_tokens, p.seed, p.stop) for p in params] == [(1, 0.0, 1.0, 256, 0, None)] * 2


def test_cli_vllm_sampling_seeds_and_missing_vllm(tiny_lm_dirs, shared_data, tmp_path, capsys, monkeypatch) -> None:
    fake = fake_vllm_module(golds_of(shared_data, 1))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    argv = ["--model", str(tiny_lm_dirs["plain"]), "--split", "gsm8k", "--source",
            f"gsm8k:{shared_data / 'gsm8k' / 'test.jsonl'}", "--limit", "1", "--backend", "vllm", "--n", "3",
            "--temperature", "0.7", "--seed", "4", "--out", str(tmp_path / "g.parquet"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["n"], summary["samples"], summary["accuracy"], summary["backend"]) == (1, 3, 1.0, "vllm")
    params = fake.created[0].calls[0][2]
    assert len({p.seed for p in params}) == 3 and all(p.temperature == 0.7 for p in params)
    assert pq.read_table(tmp_path / "g.parquet").column("seed").to_pylist() == [p.seed for p in params]
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs vLLM" in err and "pip install 'mind-distill[vllm]'" in err


# ---------------------------------------------------------------- openai:URL (real loopback server)
class GoldServer(FakeOpenAIServer):
    """An OpenAI-compatible server on 127.0.0.1 answering each question's gold; records bodies."""

    def __init__(self, golds: dict[str, str]) -> None:
        super().__init__()
        self.golds = golds
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    def respond(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat = path == "/v1/chat/completions"
        if not chat and path != "/v1/completions":
            return self.not_found(path)
        with self.lock:
            self.bodies.append((path, body))
        text = body["messages"][-1]["content"] if chat else body["prompt"]
        gold = next(g for q, g in self.golds.items() if q in text)
        answer = f"So the answer is {gold}."
        choice = {"index": 0, "finish_reason": "stop"}
        choice.update({"message": {"role": "assistant", "content": answer}} if chat else {"text": answer})
        return 200, {"id": "x", "choices": [choice], "usage": {"completion_tokens": 6}}


@pytest.fixture()
def gold_server(shared_data: Path) -> Iterator[GoldServer]:
    with GoldServer(golds_of(shared_data, 2)) as server:
        yield server


@pytest.mark.parametrize("style", ["plain", "chat", "auto-tokenizer"])
def test_cli_suite_openai_server(tiny_lm_dirs, shared_data, gold_server, tmp_path, capsys, style: str) -> None:
    argv = ["--model", "student-7b", "--suite", "paper", "--limit", "2", "--backend", f"openai:{gold_server.url}",
            "-B", "max_concurrency=4", "--data_dir", str(shared_data), "--out", str(tmp_path / "pred"),
            "--output_json", str(tmp_path / "s.json"), "--quiet"]  # fmt: skip
    argv += ["--tokenizer", str(tiny_lm_dirs["chat"])] if style == "auto-tokenizer" else ["--prompt_style", style]
    assert main(argv) == 0
    summary = last_json(capsys.readouterr().out)
    chat = style != "plain"
    assert summary["prompt_style"] == ("chat" if chat else "plain")
    assert summary["evaluated"] == PAPER[:-1] and summary["average"] == 1.0
    assert len(gold_server.bodies) == 10
    paths = {p for p, _ in gold_server.bodies}
    assert paths == {"/v1/chat/completions" if chat else "/v1/completions"}
    body = gold_server.bodies[0][1]
    assert (body["model"], body["n"], body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        "student-7b", 1, 0.0, 1.0, 256, 0)
    if chat:
        assert body["messages"] == [{"role": "user", "content": body["messages"][0]["content"]}]
    else:
        assert body["prompt"].startswith("Question: ") and body["prompt"].endswith("\nAnswer:\n")


def test_cli_openai_wrong_endpoint_exits_2(shared_data, gold_server, capsys) -> None:
    base = gold_server.url.removesuffix("/v1") + "/wrong/v1"
    argv = ["--model", "student-7b", "--suite", "paper", "--limit", "1", "--backend", f"openai:{base}",
            "--prompt_style", "plain", "--data_dir", str(shared_data), "--out", "/nonexistent/unused", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "HTTP 404" in captured.err and "/wrong/v1/completions" in captured.err and captured.out == ""


def test_cli_openai_needs_a_prompt_style(shared_data, capsys) -> None:
    argv = ["--model", "student-7b", "--suite", "paper", "--backend", "openai:http://127.0.0.1:9/v1",
            "--data_dir", str(shared_data)]  # fmt: skip
    assert main(argv) == 2
    assert "--prompt_style plain or chat" in capsys.readouterr().err
