"""Models named by a Hugging Face hub id (issue: real users name their students ``Qwen/...``): loaded offline
from a local cache laid out as the hub client lays it out (``models--ORG--NAME/refs/main`` ->
``snapshots/<commit>/``), with ``HF_HUB_OFFLINE=1``; an id missing from the cache fails in one line naming
the id and the setting. The hub client reads its settings when imported, so each check runs in a fresh
process with the cache's environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_ID = "mind-test/tiny-student"


@pytest.fixture(scope="module")
def hub_cache(tiny_lm_dirs, tmp_path_factory) -> Path:
    """A Hugging Face hub cache holding the tiny plain student as ``mind-test/tiny-student`` at ``main``."""
    cache = tmp_path_factory.mktemp("hf-cache")
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    shutil.copytree(tiny_lm_dirs["plain"], repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def _offline(cache: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_student_by_hub_id_trains_and_evaluates_offline_from_the_cache(hub_cache, tiny_lm_dirs, tmp_path):
    """One offline process: the student by id equals the folder's; pinned to the commit; distill.train's
    loader and distill.evaluate take the id; an id missing from the cache fails in one line."""
    preds = tmp_path / "preds.parquet"
    code = f"""
import contextlib, io, json, torch
from distill.student import StudentLoadError, load_student
by_id, tok = load_student({HUB_ID!r})
by_folder, _ = load_student({str(tiny_lm_dirs["plain"])!r})
same = all(torch.equal(a, b) for a, b in zip(by_id.state_dict().values(), by_folder.state_dict().values()))
pinned, _ = load_student({HUB_ID!r}, revision={COMMIT!r})
try:
    load_student("mind-test/not-cached")
    missing = None
except StudentLoadError as exc:
    missing = str(exc)
from distill.config import MindConfig, MindParser, MindScriptArguments
from distill.train import load_model
script, args = MindParser((MindScriptArguments, MindConfig)).parse_args_and_config(
    ["--model_name_or_path", {HUB_ID!r}, "--output_dir", "unused", "--use_cpu", "true"])
trained, _, described = load_model(script, args)
same = same and all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), by_folder.state_dict().values()))
from distill.evaluate import main
evaluate = ["--split", "test", "--num-questions", "2", "--max_new_tokens", "4", "--out", {str(preds)!r}, "--quiet"]
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code_ok = main(["--model", {HUB_ID!r}, *evaluate])
    code_missing = main(["--model", "mind-test/not-cached", *evaluate])
print(json.dumps({{"same": same, "vocab": len(tok), "pinned": pinned.config.vocab_size, "missing": missing,
                  "described": described, "codes": [code_ok, code_missing],
                  "summary": json.loads(out.getvalue().strip().splitlines()[-1]), "err": err.getvalue()}}))
"""
    proc = _offline(hub_cache, code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["same"] is True and out["vocab"] == out["pinned"] and out["described"] == HUB_ID
    assert out["missing"].startswith("student tokenizer 'mind-test/not-cached' is not a local folder and not in the "
                                      "Hugging Face cache; HF_HUB_OFFLINE is set")  # fmt: skip
    assert out["codes"] == [0, 2] and out["summary"]["model"] == HUB_ID and out["summary"]["n"] == 2 and preds.is_file()
    assert "'mind-test/not-cached' is not a local folder and not in the Hugging Face cache" in out["err"]


def test_train_names_the_student_as_trl_does(tmp_path):
    """``--model_name_or_path`` (TRL's name), ``--student`` and a YAML ``student:`` key are one setting."""
    from distill.config import MindConfig, MindParser, MindScriptArguments

    parser = MindParser((MindScriptArguments, MindConfig))
    base = ["--output_dir", str(tmp_path / "o"), "--use_cpu", "true"]
    for argv in (["--model_name_or_path", HUB_ID], ["--student", HUB_ID]):
        script, args = parser.parse_args_and_config([*argv, *base])
        assert script.model_name_or_path == HUB_ID and script.model_revision is None and not args.trust_remote_code
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"student": HUB_ID, "model_revision": "v1"}))
    script, _ = MindParser((MindScriptArguments, MindConfig)).parse_args_and_config(["--config", str(config), *base])
    assert script.model_name_or_path == HUB_ID and script.model_revision == "v1"
    config.write_text(yaml.safe_dump({"student": HUB_ID, "model_name_or_path": HUB_ID}))
    with pytest.raises(ValueError, match="'student' and 'model_name_or_path' name the same setting"):
        MindParser((MindScriptArguments, MindConfig)).parse_args_and_config(["--config", str(config), *base])


# ---------------------------------------------------------------- data sets by hub id
def _cache_dataset(cache: Path, dataset_id: str, config: str, splits: dict[str, Path]) -> None:
    """Prepare ``dataset_id`` (``config``) in a ``datasets`` cache as ``load_dataset`` leaves it after a
    download (``ORG___NAME/CONFIG/0.0.0/COMMIT/NAME-SPLIT.arrow`` + ``dataset_info.json``), from local files."""
    from datasets.naming import camelcase_to_snakecase
    from datasets.packaged_modules.json.json import Json

    org, name = dataset_id.split("/")
    name = camelcase_to_snakecase(name)  # as the cache names it: ChilleD___strategy_qa
    builder = Json(cache_dir=str(cache / "build"), dataset_name=f"{org}___{name}", config_name=config, hash=COMMIT,
                   data_files={s: str(p) for s, p in splits.items()})  # fmt: skip
    builder.download_and_prepare()
    built = Path(builder.cache_dir)
    target = cache / f"{org}___{name}" / config / "0.0.0" / COMMIT
    target.mkdir(parents=True)
    for f in built.iterdir():
        if f.suffix == ".json":
            shutil.copy(f, target / f.name)
        elif f.suffix == ".arrow":  # BUILDER-SPLIT.arrow -> NAME-SPLIT.arrow
            shutil.copy(f, target / f"{name}-{f.name.rsplit('-', 1)[1]}")


@pytest.fixture(scope="module")
def datasets_cache(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds-cache")
    head = root / "gsm8k-test-head.jsonl"  # the first GSM8K test questions, as the hub's openai/gsm8k holds them
    head.write_text("".join((shared_data / "gsm8k" / "test.jsonl").read_text().splitlines(keepends=True)[:5]))
    _cache_dataset(root, "mind-test/gsm8k", "main", {"test": head})
    arith = root / "arith.jsonl"
    arith.write_text("".join(json.dumps({"id": f"a{i}", "q": f"What is {i} + {i}?", "a": 2 * i}) + "\n" for i in range(4)))
    _cache_dataset(root, "mind-test/arith", "default", {"train": arith})
    return root


def test_question_sources_take_a_hub_dataset_id_offline(datasets_cache, tmp_path):
    head = datasets_cache / "gsm8k-test-head.jsonl"
    code = f"""
import json
from pipeline.sources import load_questions
hub = list(load_questions("gsm8k", "hf:mind-test/gsm8k", config="main", split="test"))
local = list(load_questions("gsm8k", {str(head)!r}, split="test"))
arith = list(load_questions("hub", "mind-test/arith", split="train", question_field="q", answer_field="a",
                            id_field="id", task="arith"))
try:
    list(load_questions("hub", "mind-test/absent", split="test", task="arith"))
    missing = None
except ValueError as exc:
    missing = str(exc)
print(json.dumps({{"same": hub == local, "ids": [r["question_id"] for r in hub], "arith": [(r["question_id"],
                  r["gold_answer"], r["source"]) for r in arith], "missing": missing}}))
"""
    env = {**os.environ, "HF_DATASETS_CACHE": str(datasets_cache), "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["same"] is True and out["ids"] == [f"gsm8k:test:{i}" for i in range(5)]
    assert out["arith"] == [[f"a{i}", str(2 * i), "arith"] for i in range(4)]
    assert out["missing"] == ("hub data set 'mind-test/absent', split 'test' is not in the local datasets cache; "
                              "HF_HUB_OFFLINE is set, so nothing is downloaded")  # fmt: skip


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_paper_suite_reads_the_public_hub_data_sets_when_no_data_folder_is_set(shared_data, tmp_path):
    """Each member's hub data set (its real id, in its hub layout, built here from the shared files' first
    rows) gives the questions and gold answers of the member's local file, offline, with no data folder."""
    n = 6
    math = [json.loads(x) for x in (shared_data / "math500" / "test.jsonl").read_text().splitlines()[:n]]
    gsm = [json.loads(x) for x in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:n]]
    svamp = json.loads((shared_data / "svamp" / "SVAMP.json").read_text())[:n]
    csqa = json.loads((shared_data / "mentor_kd" / "commonsense_qa_test.json").read_text())[:n]
    sqa = json.loads((shared_data / "mentor_kd" / "strategy_qa_test.json").read_text())[:n]

    def tau(i: int, r: dict) -> dict:  # back from mentor-kd's rendering to tau/commonsense_qa's fields
        stem, options = r["input"].split(" Answer Choices:\n")
        pairs = [line.split(". ", 1) for line in options.strip().splitlines()]
        return {"id": f"q{i}", "question": stem, "question_concept": "c", "answerKey": r["answer"],
                "choices": {"label": [p[0] for p in pairs], "text": [p[1] for p in pairs]}}  # fmt: skip

    cache = tmp_path / "ds-cache"
    for dataset_id, config, split, records in [
        ("HuggingFaceH4/MATH-500", "default", "test", math),
        ("openai/gsm8k", "main", "test", gsm),
        ("MU-NLPC/Calc-svamp", "default", "test", [{"id": r["ID"], "question": f"{r['Body']} {r['Question']}",
            "result": f"{r['Answer']:g}", "equation": r["Equation"], "problem_type": r["Type"]} for r in svamp]),
        ("tau/commonsense_qa", "default", "validation", [tau(i, r) for i, r in enumerate(csqa)]),
        ("ChilleD/StrategyQA", "default", "test", [{"qid": f"s{i}", "question": r["input"], "answer": r["answer"] == "Yes"}
                                                   for i, r in enumerate(sqa)]),
    ]:  # fmt: skip
        _cache_dataset(cache, dataset_id, config, {split: _jsonl(tmp_path / f"{dataset_id.replace('/', '_')}.jsonl", records)})
    code = f"""
import json
from distill.suites import load_suite_questions, plan_suite
hub, local = plan_suite("paper"), plan_suite("paper", data_dir={str(shared_data)!r})
load_suite_questions(hub, limit={n})
load_suite_questions(local, limit={n})
print(json.dumps({{h.name: [[[q["question_id"], q["question"], q["gold_answer"], q["task"]] for q in x.questions]
                           for x in (h, l)] for h, l in zip(hub, local)}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "MIND_SHARED_DATA"}
    env |= {"HF_DATASETS_CACHE": str(cache), "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("MATH500", "GSM8K", "SVAMP", "CommonsenseQA", "StrategyQA"):
        hub, local = out[name]
        assert len(hub) == len(local) == n, name
        same_ids = name in ("MATH500", "GSM8K", "SVAMP")  # CommonsenseQA and StrategyQA: the hub's own ids
        assert [q[int(not same_ids):] for q in hub] == [q[int(not same_ids):] for q in local], name
    assert out["GPQA-Diamond"] == [[], []]
