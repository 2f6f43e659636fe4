"""The paper's set-up with real models (docs/real-teacher.md), every step up to the GPU.

The doc is a sequence of commands a user with a GPU runs in order: ``flows.synthesize`` with
``configs/synthesize/paper-mind8-vllm.yaml`` (a vLLM teacher, the ``mind8`` perspectives, a judge
on the same engine), ``pipeline.select`` (~500 questions hard-first, plus a disjoint validation
set), ``distill.train`` with ``configs/train/paper-qwen1.5b-mind.yaml`` (Qwen2.5-1.5B-Instruct,
``--strategy mind``) and ``distill.evaluate --suite paper``. Here:

* the two config files are read by the loaders the commands use, and their paper settings checked;
* every command line of the doc is parsed by its command's own parser (and the synthesis command's
  config with its flags validated), so a renamed flag, a config that no longer loads or a typo in
  the doc fails a test;
* one test walks the same steps, through the same entry points and the same config files, with
  tiny local stand-ins where a real model is needed, and checks what each step hands to the next.

Stand-ins (nothing is downloaded; vLLM and a GPU are not available here): the teacher is a tiny
random-weight chat model through the ``transformers`` backend (``--teacher transformers:DIR`` in
place of the config's vLLM teacher); its generation config declares extra end-of-sequence ids, as
real models do (e.g. Llama 3's two), so that its CoTs end with ``stop`` within a few tokens instead
of running to the config's 1,024-token budget. Its CoTs are garbage, never right by the rule
verifier; the judge is a scripted OpenAI-compatible server on 127.0.0.1 (``--judge-teacher
openai:...@URL``, ``--judge-prefer judge``) that calls the first *i* CoTs of the *i*-th question
incorrect: known difficulties for the selection to rank. The student is another tiny chat model,
trained for 2 steps on the CPU (``--bf16 false --use_cpu true``, a small batch, a 1-step MetaNet
warm-up), then evaluated with the ``transformers`` engine (``--backend vllm`` is tested against a
stand-in of vLLM's API in tests/test_evaluate_suite.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from tests.openai_fake import FakeOpenAIServer
from tests.recount import recounted_accuracy

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "real-teacher.md"
SYNTH_CONFIG = REPO_ROOT / "configs" / "synthesize" / "paper-mind8-vllm.yaml"
TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "paper-qwen1.5b-mind.yaml"
MIND8 = ["formal_symbolic", "intuitive", "decomposition", "planning", "analogy", "socratic", "contrastive",
         "counterfactual"]  # fmt: skip
PAPER_SUITE = ["MATH500", "GSM8K", "SVAMP", "CommonsenseQA", "StrategyQA", "GPQA-Diamond"]

#: The e2e walk's sizes: POOL GSM8K train questions, SELECTED kept hard-first, VALIDATION more.
POOL, SELECTED, VALIDATION = 6, 3, 2
#: The train config overridden for a 2-step CPU run of a tiny student (everything else as on the GPU).
CPU_TRAIN = [
    "--bf16", "false", "--use_cpu", "true", "--num_threads", "1", "--max_steps", "2",
    "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
    "--meta_warmup_steps", "1", "--history_every", "1",
    "--eval_max_new_tokens", "8", "--per_device_eval_batch_size", "4",
]  # fmt: skip


def last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert lines, "nothing on stdout"
    return json.loads(lines[-1])


def parse_train_args(argv: list[str]) -> tuple[Any, Any]:
    """``distill.train``'s own parsing of its command line (TRL's parser, the trainer's classes)."""
    from distill.config import MindConfig, MindParser, MindScriptArguments

    return MindParser((MindScriptArguments, MindConfig)).parse_args_and_config(argv)


# ---------------------------------------------------------------- the config files, by the commands' loaders
def test_paper_synthesis_config() -> None:
    """What ``flows.synthesize --config`` reads: the paper's eight perspectives, one CoT each, a vLLM
    teacher, and a judge that is the very same spec (so one cached engine serves both)."""
    from pipeline.synthesis import load_config

    raw = yaml.safe_load(SYNTH_CONFIG.read_text())
    cfg = load_config(SYNTH_CONFIG)  # valid without vLLM installed: the backend's options are checked
    assert [p.name for p in cfg.resolved_perspectives()] == MIND8 and cfg.perspective_set == "mind8"
    assert cfg.source.kind == "gsm8k" and cfg.source.path == "$MIND_SHARED_DATA/gsm8k/train.jsonl"
    assert Path(os.path.expandvars(cfg.source.path)).is_file()  # the tests' conftest names the data folder
    assert cfg.samples == 1 and cfg.num_questions is not None and cfg.num_questions >= 1000  # a pool for ~500
    (teacher,) = cfg.teachers
    assert teacher.backend == "vllm" and teacher.options["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert cfg.judge.mode == "all" and cfg.judge.prefer == "rule" and cfg.judge.prompt == "default"
    assert cfg.judge.teacher == teacher  # the YAML alias: change the teacher once, the judge follows
    assert raw["judge"]["teacher"] is raw["teachers"][0]
    assert cfg.sampling.max_tokens + 600 <= teacher.options["max_model_len"]  # the few-shot prompt fits beside


@pytest.mark.slow
def test_paper_train_config() -> None:
    """What ``distill.train --config`` reads (TRL's parser: an unknown key fails)."""
    raw = yaml.safe_load(TRAIN_CONFIG.read_text())
    script, args = parse_train_args(["--config", str(TRAIN_CONFIG), "--output_dir", "x", "--bf16", "false"])
    assert raw["bf16"] is True and args.bf16 is False  # bf16 on the GPU; the CPU run turns it off
    assert args.strategy == "mind" and script.lora_r == 0 and script.eval_splits == ""
    assert args.prompt_style == "auto" and args.max_length >= 1024 + 256  # the teacher's CoT fits
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 16
    assert args.meta_warmup_steps is None and args.validation_questions == 0
    assert 0 < args.meta_warmup_steps_for(497) < args.max_steps  # one epoch of the paper's 497 questions: 32 steps
    assert args.activation_checkpointing and args.save_strategy == "no"
    # the baselines and ablations of step 5 are flags of the same command (parsed in test_doc_commands_parse)
    from distill.config import STRATEGIES

    assert {"golden", "mcc_kd", "all", "instant", "mind"} <= set(STRATEGIES)


# ---------------------------------------------------------------- the doc's commands, by the commands' parsers
#: Values for the shell variables of the doc's loops.
DOC_VARIABLES = {"strategy": "mind", "seed": "0"}


def doc_commands(text: str) -> list[list[str]]:
    """The ``python -m ...`` command lines of the doc's bash blocks, continuations joined, shell
    variables replaced (an unknown variable fails), comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if "python -m " not in line:
                continue
            line = line[line.index("python -m ") :]
            line = line.split(" | ")[0].split(" > ")[0].split(" && ")[0].split("; ")[0]

            def var(m: re.Match[str]) -> str:
                name = m.group(1) or m.group(2)
                assert name in DOC_VARIABLES, f"docs/real-teacher.md: unknown shell variable ${name} in {line!r}"
                return DOC_VARIABLES[name]

            line = re.sub(r"\$\{(\w+)\}|\$(\w+)", var, line)
            commands.append(shlex.split(line, comments=True))
    return commands


class _Parsed(Exception):  # noqa: N818 - a signal, not an error
    """Raised by the stand-in of ``flows.synthesize.run`` once the config and flags are validated."""


def check_doc_command(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Parse one doc command with its module's own parser; return the module name."""
    assert argv[:2] == ["python", "-m"], argv
    module, args = argv[2], argv[3:]
    if module == "flows.synthesize":
        import flows.synthesize as synth
        from pipeline.synthesis import load_config

        def validate(out: str, config: str | None = None, **overrides: Any) -> dict[str, Any]:
            cfg = load_config(config, **{k: v for k, v in overrides.items() if v is not None})
            raise _Parsed(cfg)

        from prefect.settings import PREFECT_API_URL, temporary_settings

        monkeypatch.setattr(synth, "run", validate)
        # as if a Prefect server were configured: the CLI starts no temporary one (nothing reaches it)
        with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}), pytest.raises(_Parsed):
            code = synth.main(args)
            pytest.fail(f"flows.synthesize {args}: exit status {code} (see stderr)")
    elif module in ("pipeline.select", "flows.select"):
        from pipeline.select import _check_selection_args, build_parser

        ns = build_parser().parse_args(args)
        _check_selection_args(ns.target, ns.easy_fraction, ns.hard_threshold)
    elif module == "distill.train":
        parse_train_args([*args, "--bf16", "false"])  # bf16 cannot be checked on a CPU machine
    elif module == "distill.evaluate":
        from distill.eval_backends import parse_backend
        from distill.evaluate import build_parser
        from distill.suites import SUITES

        ns = build_parser().parse_args(args)
        choice = parse_backend(ns.backend)
        assert (ns.suite is None) != (ns.split is None) and (ns.suite is None or ns.suite in SUITES), args
        if ns.backend_option:  # -B KEY=VALUE: a field of the engine's config
            from pipeline.teachers.openai_backend import OpenAIConfig
            from pipeline.teachers.vllm_backend import VLLMConfig

            assert choice.kind != "transformers", f"-B goes with --backend vllm or openai:URL: {args}"
            fields = {f.name for f in dataclasses.fields(VLLMConfig if choice.kind == "vllm" else OpenAIConfig)}
            assert {k for k, _ in ns.backend_option} <= fields, args
    elif module == "pipeline.browse":
        from pipeline.browse import build_parser as browse_parser

        browse_parser().parse_args(args)
    else:
        pytest.fail(f"docs/real-teacher.md runs python -m {module}: add a check for it here")
    return module


@pytest.mark.slow
def test_doc_commands_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text()
    commands = doc_commands(text)
    modules = Counter(check_doc_command(argv, monkeypatch) for argv in commands)
    for module in ("flows.synthesize", "pipeline.select", "distill.train", "distill.evaluate"):
        assert modules[module] >= 1, f"the doc has no {module} command"
    configs = set(re.findall(r"configs/[\w./-]+\.yaml", text))
    assert {str(p.relative_to(REPO_ROOT)) for p in (SYNTH_CONFIG, TRAIN_CONFIG)} <= configs
    for path in configs:
        assert (REPO_ROOT / path).is_file(), f"docs/real-teacher.md names {path}, which does not exist"


# ---------------------------------------------------------------- stand-ins for the real models
class ScriptedJudgeServer(FakeOpenAIServer):
    """An OpenAI-compatible chat-completions server on 127.0.0.1 answering judge prompts: the
    first ``i`` CoTs it sees of the ``i``-th question (``questions``, in order) are incorrect, the
    rest correct. Order-independent counts: the ``i``-th question fails exactly ``min(i, 8)`` CoTs."""

    def __init__(self, questions: list[str]) -> None:
        super().__init__()
        self.questions = questions
        self.seen: Counter[int] = Counter()

    def respond(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path != "/v1/chat/completions":
            return self.not_found(path)
        prompt = body["messages"][-1]["content"]
        index = next(i for i, q in enumerate(self.questions) if f"Question:\n{q.strip()}\n" in prompt)
        with self.lock:
            k = self.seen[index]
            self.seen[index] += 1
        verdict = "incorrect" if k < index else "correct"
        choice = {"index": 0, "finish_reason": "stop",
                  "message": {"role": "assistant", "content": f"Verdict: {verdict}"}}  # fmt: skip
        return 200, {"id": "j", "choices": [choice], "usage": {"completion_tokens": 3}}


@pytest.fixture()
def judge_server(shared_data: Path) -> Iterator[ScriptedJudgeServer]:
    from pipeline.sources import load_questions

    source = load_questions("gsm8k", shared_data / "gsm8k" / "train.jsonl")
    questions = [q["question"] for _, q in zip(range(POOL), source, strict=False)]
    with ScriptedJudgeServer(questions) as server:
        yield server


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random chat model whose generation config also ends a sequence at any token with a
    full stop (and at every other token id): its CoTs end with ``stop`` after a few tokens."""
    from transformers import AutoTokenizer, GenerationConfig

    from tests.tiny_models import build_tiny_causal_lm

    path = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-teacher") / "lm", chat_template=True, seed=2)
    tok = AutoTokenizer.from_pretrained(path)
    specials = {tok.pad_token_id, tok.bos_token_id, tok.unk_token_id}
    ends = sorted({i for t, i in tok.get_vocab().items() if "." in t} | set(range(0, len(tok), 2)) - specials)
    gen = GenerationConfig.from_pretrained(path)
    gen.eos_token_id = [tok.eos_token_id, *ends]
    gen.save_pretrained(path)
    return path


# ---------------------------------------------------------------- the whole set-up, end to end
@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("prefect_harness")
def test_paper_setup_end_to_end(tmp_path, shared_data, tiny_lm_dirs, tiny_teacher, judge_server, monkeypatch,
                                capsys) -> None:  # fmt: skip
    import pyarrow.compute as pc

    from data_schemas import load_manifest, read_rationales
    from distill import evaluate as evaluate_cli
    from distill import train as train_cli
    from flows import synthesize as synth_cli
    from pipeline import browse
    from pipeline import select as select_cli

    # the config as the doc runs it: its source path names the data through MIND_SHARED_DATA
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("MIND_SHARED_DATA", str(shared_data))
    config = SYNTH_CONFIG

    # ---- step 1: synthesis (the doc's command; the tiny teacher and the scripted judge replace the models)
    pool = tmp_path / "paper" / "pool"
    argv = ["--config", str(config), "--out", str(pool), "--num-questions", str(POOL), "--shard-size", "3",
            "--teacher", f"transformers:{tiny_teacher}",
            "--judge-teacher", f"openai:scripted-judge@{judge_server.url}", "--judge-prefer", "judge"]  # fmt: skip
    code = synth_cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    (run_dir,) = [p for p in pool.iterdir() if p.is_dir()]
    manifest = load_manifest(run_dir)
    assert manifest.complete and len(manifest.shards) == 2
    assert manifest.config["config"]["perspective_set"] == "mind8" and manifest.config["judge"]["mode"] == "all"
    assert [p["name"] for p in manifest.config["perspectives"]] == MIND8
    rows = read_rationales(run_dir, verify_checksums=True).to_pylist()
    assert len(rows) == POOL * len(MIND8)
    assert Counter(r["perspective"] for r in rows) == {p: POOL for p in MIND8}
    assert {r["question_id"] for r in rows} == {f"gsm8k:train:{i}" for i in range(POOL)}
    assert {r["task"] for r in rows} == {"gsm8k"} and {r["teacher"] for r in rows} == {str(tiny_teacher)}
    assert {r["sample_index"] for r in rows} == {0}  # one CoT per perspective, as configured
    assert Counter(r["finish_reason"] for r in rows) == {"stop": len(rows)}  # the teacher's extra EOS ids
    assert {r["judge_model"] for r in rows} == {"scripted-judge"} and sum(judge_server.seen.values()) == len(rows)
    for r in rows:  # prefer judge: the judge's verdict is the final one; the rule's is kept beside it
        assert r["judge_verdict"] is not None and r["is_correct"] is r["judge_verdict"]
    failures = Counter(r["question_id"] for r in rows if r["is_correct"] is not True)
    assert {q: failures[q] for q in failures} == {f"gsm8k:train:{i}": i for i in range(1, POOL)}
    judge = browse.judge_stats(pool)
    assert judge is not None and judge["total"]["judged"] == len(rows) and judge["judges"] == ["scripted-judge"]

    # ---- step 2: hard-first selection, then a disjoint validation set
    selected, validation = tmp_path / "paper" / "selected", tmp_path / "paper" / "validation"
    assert select_cli.main([str(pool), "--out", str(selected), "--target", str(SELECTED), "--quiet"]) == 0
    assert select_cli.main([str(pool), "--out", str(validation), "--target", str(VALIDATION),
                            "--exclude-from", str(selected), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    by_rate = sorted(range(POOL), key=lambda i: -failures[f"gsm8k:train:{i}"])  # all 8 CoTs judged per question
    want_sel = {f"gsm8k:train:{i}" for i in by_rate[:SELECTED]}
    want_val = {f"gsm8k:train:{i}" for i in by_rate[SELECTED : SELECTED + VALIDATION]}
    assert want_sel == {"gsm8k:train:5", "gsm8k:train:4", "gsm8k:train:3"}
    report = json.loads((selected / "selection.json").read_text())
    assert set(report["question_ids"]) == want_sel and report["counts"]["selected_hard"] == SELECTED
    assert set(json.loads((validation / "selection.json").read_text())["question_ids"]) == want_val
    sub = read_rationales(selected)
    assert set(sub.column("question_id").to_pylist()) == want_sel and sub.num_rows == SELECTED * len(MIND8)
    assert pc.all(pc.equal(sub.column("judge_model"), "scripted-judge")).as_py()  # judge columns travel along
    assert load_manifest(selected).config["selection"]["target"] == SELECTED

    # ---- step 3: the MIND trainer with the paper's train config (CPU overrides only)
    student = tmp_path / "paper" / "train" / "mind-seed0"
    argv = ["--config", str(TRAIN_CONFIG), "--data", str(selected), "--validation_data", str(validation),
            "--student", str(tiny_lm_dirs["chat"]), "--output_dir", str(student), "--seed", "0",
            *CPU_TRAIN]  # fmt: skip
    code = train_cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert f"data: {SELECTED} training questions, {VALIDATION} validation (held out)" in captured.err
    assert "prompt style chat" in captured.err
    result = last_json(captured.out)
    assert result["strategy"] == "mind" and result["steps"] == 2 and result["n"] == {"validation": VALIDATION}
    assert set(result["in_subset"]) == set(MIND8)  # one view per perspective (one teacher)
    assert sum(result["kept_share"].values()) == pytest.approx(1.0, abs=1e-3)
    summary = json.loads((student / "mind_summary.json").read_text())
    assert set(summary["views"]) == set(MIND8) and [e["step"] for e in summary["history"]] == [1, 2]
    # the 3 selected questions failed 5, 4 and 3 of their 8 CoTs: 3 + 4 + 5 = 12 candidates to learn from
    assert "data: 24 rationale rows, 12 used (12 not verified correct, 0 not finished normally dropped)" in captured.err
    assert (student / "config.json").is_file() and (student / "tokenizer_config.json").is_file()
    val_rows = pq.read_table(student / "eval" / "validation.parquet").column("question_id").to_pylist()
    assert set(val_rows) == want_val

    # ---- step 4: the paper's suites on the trained student folder
    argv = ["--model", str(student), "--suite", "paper", "--limit", "2", "--max_new_tokens", "8", "--batch_size", "4",
            "--data_dir", str(shared_data), "--quiet"]  # fmt: skip
    code = evaluate_cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    suite = last_json(captured.out)
    assert json.loads((student / "eval" / "paper.json").read_text()) == suite
    assert list(suite["members"]) == PAPER_SUITE and suite["evaluated"] == PAPER_SUITE[:-1]
    assert suite["members"]["GPQA-Diamond"]["status"] == "skipped" and suite["skipped"] == ["GPQA-Diamond"]
    assert suite["model"] == str(student) and suite["prompt_style"] == "chat" and suite["limit"] == 2
    for name in PAPER_SUITE[:-1]:
        member = suite["members"][name]
        assert member["status"] == "evaluated" and member["n"] == 2
        assert member["accuracy"] == pytest.approx(recounted_accuracy(student / "eval" / "paper" / f"{name}.parquet"))
        assert pq.read_table(student / "eval" / "paper" / f"{name}.parquet").num_rows == 2
    assert [m["group"] for m in suite["members"].values()] == ["id"] * 3 + ["ood"] * 3
