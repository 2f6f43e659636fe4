"""Question sources and line-aware readers, on the real files in the test data folder (tests/conftest.py)."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_schemas import QUESTION_COLUMNS, ContractError
from pipeline.ids import content_question_id
from pipeline.readers import iter_json_array, iter_jsonl, iter_records
from pipeline.sources import available_sources, load_questions, load_questions_from_config
from pipeline.sources.mentor_kd import mentor_kd_file
from tests.conftest import SHARED_DATA

COLUMNS = {c.name for c in QUESTION_COLUMNS}


def _check_rows(rows: list[dict], n: int) -> None:
    assert len(rows) == n
    assert all(set(r) == COLUMNS for r in rows)
    ids = [r["question_id"] for r in rows]
    assert len(set(ids)) == n, "ids must be unique"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- readers
def test_iter_jsonl_lines_and_errors(tmp_path):
    p = _write(tmp_path / "a.jsonl", '{"a": 1}\n\n{"a": 2}\n{"a": \n')
    it = iter_jsonl(p)
    assert next(it) == (1, {"a": 1})
    assert next(it) == (3, {"a": 2})
    with pytest.raises(ContractError) as exc:
        next(it)
    assert exc.value.where == f"{p}:4" and "invalid JSON" in exc.value.reason
    seen = []
    assert list(iter_jsonl(p, on_error=lambda e, raw: seen.append((e.where, raw)))) == [(1, {"a": 1}), (3, {"a": 2})]
    assert seen == [(f"{p}:4", '{"a": ')]
    q = tmp_path / "b.jsonl"
    q.write_bytes('{"t": "x\u2028y"}\r\n{"t": 2}\r\n'.encode())
    assert list(iter_jsonl(q)) == [(1, {"t": "x\u2028y"}), (2, {"t": 2})]


def test_iter_json_array_lines(tmp_path):
    p = _write(tmp_path / "a.json", '[\n  {"x": 1,\n   "y": 2},\n  {"x": 3}, {"x": 4}\n]\n')
    assert list(iter_json_array(p)) == [(2, {"x": 1, "y": 2}), (4, {"x": 3}), (4, {"x": 4})]
    assert list(iter_records(p)) == list(iter_json_array(p))
    assert list(iter_json_array(_write(tmp_path / "e.json", " [ ] "))) == []


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[\n {"x": 1},\n {"x": ,}\n]', 3),  # bad element
        ('[\n {"x": 1}\n {"x": 2}\n]', 3),  # missing comma
        ('[\n {"x": 1}\n]\n]', 4),  # extra data
        ('\n\n{"x": 1}', 3),  # not an array
        ('[\n {"x": 1},\n', 3),  # truncated
    ],
)
def test_iter_json_array_errors(tmp_path, text, line):
    p = _write(tmp_path / "bad.json", text)
    with pytest.raises(ContractError) as exc:
        list(iter_json_array(p))
    assert exc.value.where == f"{p}:{line}"


def test_reader_missing_file(tmp_path):
    with pytest.raises(ContractError, match="cannot read"):
        list(iter_jsonl(tmp_path / "nope.jsonl"))


# ---------------------------------------------------------------- GSM8K
def test_source_paths_name_the_data_setting(shared_data, monkeypatch):
    """A config's path names the data folder through the environment; an unset variable is named."""
    monkeypatch.setenv("MIND_SHARED_DATA", str(shared_data))
    via_setting = list(itertools.islice(load_questions("gsm8k", "$MIND_SHARED_DATA/gsm8k/test.jsonl"), 3))
    assert via_setting == list(itertools.islice(load_questions("gsm8k", shared_data / "gsm8k" / "test.jsonl"), 3))
    assert list(itertools.islice(load_questions("gsm8k", "${MIND_SHARED_DATA}/gsm8k/test.jsonl"), 3)) == via_setting
    monkeypatch.delenv("MIND_SHARED_DATA")
    with pytest.raises(ValueError, match=r"'\$MIND_SHARED_DATA/gsm8k/test.jsonl': the environment variable MIND_SHARED_DATA is not set"):
        load_questions("gsm8k", "$MIND_SHARED_DATA/gsm8k/test.jsonl")


def test_gsm8k_test(shared_data):
    rows = list(load_questions("gsm8k", shared_data / "gsm8k" / "test.jsonl"))
    _check_rows(rows, 1319)
    first = rows[0]
    assert first["question_id"] == "gsm8k:test:0"
    assert first["gold_answer"] == "18" and first["task"] == "gsm8k" and first["split"] == "test"
    assert first["reference_rationale"].startswith("Janet sells 16 - 3 - 4 = 9 duck eggs a day.")
    assert all("<<" not in r["reference_rationale"] and "####" not in r["reference_rationale"] for r in rows)
    assert all(r["gold_answer"].lstrip("-").isdigit() for r in rows)
    # ids are stable across reads
    again = list(load_questions("gsm8k", shared_data / "gsm8k" / "test.jsonl"))
    assert [r["question_id"] for r in again] == [r["question_id"] for r in rows]


def test_gsm8k_socratic_shares_ids(shared_data):
    plain = list(load_questions("gsm8k", shared_data / "gsm8k" / "test.jsonl"))
    socratic = list(load_questions("gsm8k", shared_data / "gsm8k" / "test_socratic.jsonl"))
    _check_rows(socratic, 1319)
    assert [r["question_id"] for r in socratic] == [r["question_id"] for r in plain]
    assert [r["gold_answer"] for r in socratic] == [r["gold_answer"] for r in plain]
    assert " ** " in socratic[0]["reference_rationale"] and "<<" not in socratic[0]["reference_rationale"]


def test_gsm8k_train_commas(shared_data):
    rows = list(load_questions("gsm8k", shared_data / "gsm8k" / "train.jsonl"))
    _check_rows(rows, 7473)
    raw = [json.loads(line) for line in (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()]
    golds = [r["answer"].rsplit("####", 1)[1].strip() for r in raw]
    with_comma = [i for i, g in enumerate(golds) if "," in g]
    assert with_comma
    for i in with_comma:
        assert rows[i]["gold_answer"] == golds[i].replace(",", "") and rows[i]["question_id"] == f"gsm8k:train:{i}"


# ---------------------------------------------------------------- SVAMP
def test_svamp(shared_data):
    rows = list(load_questions("svamp", shared_data / "svamp" / "SVAMP.json"))
    _check_rows(rows, 1000)
    r = rows[0]
    assert r["question_id"] == "svamp:chal-1"
    assert r["question"] == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack "
        "How much do you have to pay to buy each pack?"
    )
    assert r["gold_answer"] == "51" and r["task"] == "svamp"
    assert json.loads(r["metadata"])["equation"] == "( 76.0 - 25.0 )"
    assert all("." not in r["gold_answer"] for r in rows)


# ---------------------------------------------------------------- mentor-kd
MENTOR_KD = {
    "svamp_3_train": (651, "svamp"),
    "asdiv_3_train": (1422, "asdiv"),
    "strategy_qa_3_train": (1496, "strategyqa"),
    "last_letter_concatenation_3_train": (350, "last_letter"),
    "date_understanding_3_train": (256, "date_understanding"),
    "svamp_test": (150, "svamp"),
    "asdiv_test": (314, "asdiv"),
    "strategy_qa_test": (687, "strategyqa"),
    "commonsense_qa_test": (1221, "commonsense_qa"),
    "gsm8k_test": (659, "gsm8k"),
    "last_letter_concatenation_test": (150, "last_letter"),
    "date_understanding_test": (111, "date_understanding"),
}


@pytest.mark.parametrize("stem", sorted(MENTOR_KD))
def test_mentor_kd_files(shared_data, stem):
    n, task = MENTOR_KD[stem]
    rows = list(load_questions("mentor-kd", shared_data / "mentor_kd" / f"{stem}.json"))
    _check_rows(rows, n)
    assert {r["task"] for r in rows} == {task}
    assert rows[0]["question_id"] == f"mentor_kd/{stem}:0"
    indices = [int(r["question_id"].removeprefix(f"mentor_kd/{stem}:")) for r in rows]
    assert indices == sorted(indices)
    assert rows[0]["split"] == ("train" if "_train" in stem else "test")
    assert all(r["question"] == r["question"].strip() for r in rows)


def test_mentor_kd_gold_normalised(shared_data):
    rows = list(load_questions("mentor-kd", shared_data / "mentor_kd" / "strategy_qa_3_train.json"))
    assert {r["gold_answer"] for r in rows} == {"yes", "no"}
    first = rows[0]
    assert first["question"] == "Hydrogen's atomic number squared exceeds number of Spice Girls?"
    assert first["source"] == "mentor_kd/strategy_qa"


def test_mentor_kd_file_names():
    info = mentor_kd_file("x/last_letter_concatenation_3_train.json")
    assert (info.dataset, info.task, info.split, info.group_size) == ("last_letter_concatenation", "last_letter", "train", 3)
    assert mentor_kd_file("commonsense_qa_test.json").group_size == 1
    with pytest.raises(ContractError, match="unknown mentor-kd dataset"):
        mentor_kd_file("mystery_3_train.json")
    assert mentor_kd_file("mystery_3_train.json", task="arith").task == "arith"
    with pytest.raises(ContractError, match="not a mentor-kd file name"):
        mentor_kd_file("svamp.json")


def _mkd_rows(inputs: list[str], answer: str = "3") -> str:
    rows = [{"input": q, "chain": f"so {answer}", "answer": answer, "initial_correct": True} for q in inputs]
    return json.dumps(rows, indent=4)  # one element starts every 6 lines, at line 2 + 6*i


def test_mentor_kd_group_mismatch(tmp_path):
    p = _write(tmp_path / "svamp_3_train.json", _mkd_rows(["a?", "a?", "a?", "b?", "c?", "b?"]))
    with pytest.raises(ContractError) as exc:
        list(load_questions("mentor-kd", p))
    assert exc.value.where == f"{p}:{2 + 6 * 4}"  # the 5th row
    assert "'input' differs from line 20" in exc.value.reason


def test_mentor_kd_repeated_question(tmp_path, shared_data):
    p = _write(tmp_path / "svamp_3_train.json", _mkd_rows(["a?"] * 3 + ["b?"] * 3 + ["a?"] * 3))
    rows = list(load_questions("mentor-kd", p))
    assert [r["question_id"] for r in rows] == ["mentor_kd/svamp_3_train:0", "mentor_kd/svamp_3_train:1"]
    # asdiv_3_train.json repeats one question in two consecutive groups (450 and 451)
    asdiv = list(load_questions("mentor-kd", shared_data / "mentor_kd" / "asdiv_3_train.json"))
    ids = [r["question_id"] for r in asdiv]
    assert "mentor_kd/asdiv_3_train:450" in ids and "mentor_kd/asdiv_3_train:451" not in ids
    raw = json.loads(p.read_text())
    raw[6]["answer"] = raw[7]["answer"] = raw[8]["answer"] = "4"
    bad = _write(tmp_path / "asdiv_3_train.json", json.dumps(raw, indent=4))
    with pytest.raises(ContractError) as exc:
        list(load_questions("mentor-kd", bad))
    assert exc.value.where == f"{bad}:{2 + 6 * 6}" and "repeats the question of line 2" in exc.value.reason


def test_mentor_kd_incomplete_group(tmp_path):
    p = _write(tmp_path / "svamp_3_train.json", _mkd_rows(["a?", "a?", "a?", "b?", "b?"]))
    with pytest.raises(ContractError) as exc:
        list(load_questions("mentor-kd", p))
    assert exc.value.where == f"{p}:20" and "incomplete question 1" in exc.value.reason


# ---------------------------------------------------------------- the paper's evaluation sets
def _shared_path(*parts: str) -> Path:
    """A file or folder of the test data folder; skip (with the reason) where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (set MIND_SHARED_DATA to the real data)")
    return path


def test_math500():
    folder = _shared_path("math500")
    rows = list(load_questions("math500", folder))
    _check_rows(rows, 500)
    assert rows == list(load_questions("math-500", folder / "test.jsonl"))  # the folder or the file
    first = rows[0]
    assert first["question_id"] == "math500:test/precalculus/807.json"
    assert first["question"].startswith("Convert the point $(0,3)$ in rectangular coordinates")
    assert first["gold_answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert (first["task"], first["source"], first["split"], first["difficulty"]) == ("math", "math500", "test", 2)
    meta = json.loads(first["metadata"])
    assert meta == {"level": 2, "subject": "Precalculus", "unique_id": "test/precalculus/807.json"}
    assert r"\boxed{\left( 3, \frac{\pi}{2} \right)}" in first["reference_rationale"]
    # the README's counts: levels 1-5 and the seven subjects
    assert Counter(r["difficulty"] for r in rows) == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    subjects = Counter(json.loads(r["metadata"])["subject"] for r in rows)
    assert subjects["Algebra"] == 124 and subjects["Counting & Probability"] == 38 and len(subjects) == 7
    golds = {r["question_id"]: r["gold_answer"] for r in rows}
    assert golds["math500:test/precalculus/927.json"] == "90"  # 90^\circ
    assert golds["math500:test/algebra/2584.json"] == "14/3"  # \frac{14}{3}, canonical


def test_math500_gold_still_verifies():
    """The normalised gold (not the file's LaTeX) is what the verifier compares against: the
    gold solutions of a sample of MATH-500 (every subject) are still judged correct."""
    from pipeline.verify import verify

    rows = list(load_questions("math500", _shared_path("math500")))
    sample = rows[::25]
    verdicts = {r["question_id"]: verify(r["reference_rationale"], r["gold_answer"], "math") for r in sample}
    wrong = [qid for qid, v in verdicts.items() if v.is_correct is not True]
    assert not wrong


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"problem": "p", "answer": "1", "subject": "Algebra", "level": 7, "unique_id": "a"}\n', "integer 1-5"),
        ('{"problem": "p", "answer": "1", "subject": "Algebra", "level": "Level 6", "unique_id": "a"}\n', "1-5"),
        ('{"problem": "p", "answer": "1", "subject": "Algebra", "level": 1}\n', "missing field 'unique_id'"),
        ('{"problem": "p", "subject": "Algebra", "level": 1, "unique_id": "a"}\n', "missing field 'answer'"),
        ('{"problem": "p", "answer": "", "subject": "Algebra", "level": 1, "unique_id": "a"}\n', "is empty"),
    ],
)
def test_math500_bad_input(tmp_path, text, reason):
    p = _write(tmp_path / "test.jsonl", text)
    with pytest.raises(ContractError) as exc:
        list(load_questions("math500", tmp_path))
    assert exc.value.where == f"{p}:1" and reason in exc.value.reason


def test_math500_level_text_and_duplicates(tmp_path):
    line = '{"problem": "p%d", "answer": "\\\\frac{1}{2}", "subject": "Algebra", "level": "Level 3", '
    line += '"unique_id": "u%d"}\n'
    p = _write(tmp_path / "mine.jsonl", line % (0, 0) + line % (1, 1) + line % (2, 0))
    rows = load_questions("math500", p)
    first = next(rows)
    assert (first["difficulty"], first["gold_answer"], first["question_id"]) == (3, "0.5", "math500:u0")
    assert next(rows)["question_id"] == "math500:u1"
    with pytest.raises(ContractError) as exc:
        next(rows)
    assert exc.value.where == f"{p}:3" and f"duplicate unique_id 'u0' (first at {p}:1)" in exc.value.reason
    with pytest.raises(ContractError, match="cannot read file"):
        list(load_questions("math500", tmp_path / "missing.jsonl"))


def test_commonsense_qa_and_strategyqa():
    folder = _shared_path("mentor_kd")
    csqa = list(load_questions("commonsense_qa", folder))
    _check_rows(csqa, 1221)
    assert csqa == list(load_questions("mentor-kd", folder / "commonsense_qa_test.json"))  # same rows and ids
    assert list(load_questions("csqa", folder / "commonsense_qa_test.json")) == csqa
    assert {r["task"] for r in csqa} == {"commonsense_qa"} and {r["gold_answer"] for r in csqa} == set("ABCDE")
    assert csqa[0]["question_id"] == "mentor_kd/commonsense_qa_test:0"
    choices = "Answer Choices:\nA. bank\nB. library\nC. department store\nD. mall\nE. new york"
    assert csqa[0]["question"].endswith(choices)

    sqa = list(load_questions("strategyqa", folder))
    _check_rows(sqa, 687)
    assert sqa == list(load_questions("strategy_qa", folder / "strategy_qa_test.json"))
    assert {r["task"] for r in sqa} == {"strategyqa"} and {r["gold_answer"] for r in sqa} == {"yes", "no"}
    assert sqa[0]["question"] == "Is it common to see frost during some college commencements?"
    assert len(list(load_questions("strategyqa", folder / "strategy_qa_3_train.json"))) == 1496

    with pytest.raises(ContractError, match="a mentor-kd 'commonsense_qa' file, not 'strategy_qa'"):
        list(load_questions("strategyqa", folder / "commonsense_qa_test.json"))


def test_csqa_strategyqa_missing_file(tmp_path):
    with pytest.raises(ContractError, match="cannot read file"):
        list(load_questions("commonsense_qa", tmp_path))  # the folder lacks commonsense_qa_test.json
    with pytest.raises(ValueError, match="needs a path"):
        list(load_questions("strategyqa"))


GPQA_COLUMNS = ["Pre-Revision Question", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2",
                "Incorrect Answer 3", "Explanation", "Record ID", "High-level domain", "Subdomain"]  # fmt: skip
GPQA_ROWS = [
    {"Question": "What is the spin of a photon?", "Correct Answer": "1", "Incorrect Answer 1": "1/2",
     "Incorrect Answer 2": "0", "Incorrect Answer 3": "3/2", "Explanation": "A vector boson.\nSpin one.",
     "Record ID": "recAAA", "High-level domain": "Physics", "Subdomain": "Quantum Mechanics"},
    {"Question": "Which gas, at room temperature,\nis a noble gas?", "Correct Answer": " Argon ",
     "Incorrect Answer 1": "Nitrogen", "Incorrect Answer 2": "Oxygen", "Incorrect Answer 3": "Chlorine, \"Cl2\"",
     "Explanation": "", "Record ID": "recBBB", "High-level domain": "Chemistry", "Subdomain": "Chemistry (general)"},
    {"Question": "Which organelle makes ATP?", "Correct Answer": "Mitochondrion", "Incorrect Answer 1": "Ribosome",
     "Incorrect Answer 2": "Golgi apparatus", "Incorrect Answer 3": "Lysosome", "Explanation": "",
     "Record ID": "recCCC", "High-level domain": "Biology", "Subdomain": "Molecular Biology"},
]  # fmt: skip


def _gpqa_csv(path: Path, rows: list[dict] = GPQA_ROWS, columns: list[str] = GPQA_COLUMNS) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _options(question: str) -> dict[str, str]:
    return dict(re.findall(r"^\(([A-D])\) (.*)$", question, re.MULTILINE))


def test_gpqa_from_the_official_columns(tmp_path):
    from pipeline.verify import verify

    p = _gpqa_csv(tmp_path / "gpqa_diamond.csv")
    rows = list(load_questions("gpqa", p))
    _check_rows(rows, 3)
    assert [r["question_id"] for r in rows] == ["gpqa:recAAA", "gpqa:recBBB", "gpqa:recCCC"]
    assert {(r["task"], r["source"], r["split"]) for r in rows} == {("gpqa", "gpqa", "diamond")}
    for raw, row in zip(GPQA_ROWS, rows, strict=True):
        options = _options(row["question"])
        assert sorted(options) == ["A", "B", "C", "D"]
        assert options[row["gold_answer"]] == raw["Correct Answer"].strip()
        wrong = {raw[f"Incorrect Answer {i}"] for i in (1, 2, 3)}
        assert {v for k, v in options.items() if k != row["gold_answer"]} == wrong
        assert row["question"].startswith(raw["Question"] + "\n\n(")
        assert verify(f"So it is ({row['gold_answer']}).\nThe answer is ({row['gold_answer']}).", row["gold_answer"],
                      "gpqa").is_correct is True  # fmt: skip
    assert json.loads(rows[0]["metadata"]) == {
        "record_id": "recAAA", "domain": "Physics", "subdomain": "Quantum Mechanics", "choice_seed": 0
    }

    # seeded: the same seed gives the same order, whatever the other rows of the file
    assert list(load_questions("gpqa", p)) == rows
    alone = list(load_questions("gpqa", _gpqa_csv(tmp_path / "one.csv", GPQA_ROWS[2:])))
    assert alone[0]["question"] == rows[2]["question"] and alone[0]["split"] == "test"
    orders = {tuple(r["question"] for r in load_questions("gpqa", p, seed=s)) for s in range(8)}
    assert len(orders) > 1  # other seeds shuffle otherwise
    configs = [{"kind": "gpqa", "path": str(p), "seed": s} for s in range(8)]
    golds = {r["gold_answer"] for c in configs for r in load_questions_from_config(c)}
    assert len(golds) > 1


def test_gpqa_without_record_ids(tmp_path):
    columns = [c for c in GPQA_COLUMNS if c != "Record ID"]
    rows = list(load_questions("gpqa-diamond", _gpqa_csv(tmp_path / "g.csv", columns=columns)))
    assert rows[0]["question_id"] == content_question_id("gpqa", GPQA_ROWS[0]["Question"])
    assert "record_id" not in json.loads(rows[0]["metadata"])


def test_gpqa_errors(tmp_path):
    missing = tmp_path / "gpqa_diamond.csv"
    with pytest.raises(ContractError) as exc:
        list(load_questions("gpqa", missing))
    assert exc.value.where == str(missing)
    assert "no such file" in exc.value.reason and "official GPQA CSV" in exc.value.reason
    with pytest.raises(ValueError, match="not shipped"):
        list(load_questions("gpqa"))
    with pytest.raises(ContractError, match="a folder"):
        list(load_questions("gpqa", tmp_path))

    columns = [c for c in GPQA_COLUMNS if c != "Incorrect Answer 2"]
    p = _gpqa_csv(tmp_path / "cols.csv", columns=columns)
    with pytest.raises(ContractError) as exc:
        list(load_questions("gpqa", p))
    assert exc.value.where == f"{p}:1" and "missing column 'Incorrect Answer 2'" in exc.value.reason

    rows = [dict(r) for r in GPQA_ROWS]
    rows[2]["Correct Answer"] = "  "
    p = _gpqa_csv(tmp_path / "blank.csv", rows)
    with pytest.raises(ContractError) as exc:
        list(load_questions("gpqa", p))
    # header line 1; row 1 spans lines 2-3 (a newline in Explanation), row 2 lines 4-5
    assert exc.value.where == f"{p}:6" and "column 'Correct Answer' is empty" in exc.value.reason

    rows[2] = dict(GPQA_ROWS[2], **{"Record ID": "recAAA"})
    p = _gpqa_csv(tmp_path / "dup.csv", rows)
    with pytest.raises(ContractError, match="duplicate question id 'gpqa:recAAA'"):
        list(load_questions("gpqa", p))
    with pytest.raises(ContractError, match="empty file"):
        list(load_questions("gpqa", _write(tmp_path / "empty.csv", "")))
    with pytest.raises(ValueError, match="seed must be an integer"):
        list(load_questions("gpqa", _gpqa_csv(tmp_path / "ok.csv"), seed="x"))


# ---------------------------------------------------------------- generic files
def test_jsonl_mapped_columns(tmp_path):
    p = _write(
        tmp_path / "mine.jsonl",
        json.dumps({"q": "Is ice cold?", "a": "Yes", "key": 7, "kind": "strategyqa", "sol": "Ice is frozen water."})
        + "\n"
        + json.dumps({"q": "2+2?", "a": 4.0, "key": "k2"})
        + "\n",
    )
    rows = list(
        load_questions(
            "jsonl", p, question_field="q", answer_field="a", id_field="key", task="arith", task_field="kind",
            reference_field="sol",
        )
    )
    _check_rows(rows, 2)
    assert [r["question_id"] for r in rows] == ["7", "k2"]
    assert [(r["task"], r["gold_answer"]) for r in rows] == [("strategyqa", "yes"), ("arith", "4")]
    assert rows[0]["reference_rationale"] == "Ice is frozen water." and rows[0]["source"] == "mine"
    hashed = list(load_questions("jsonl", p, question_field="q", answer_field="a", task="arith", task_field="kind"))
    assert hashed[1]["question_id"] == content_question_id("mine", "2+2?")


def test_jsonl_needs_task(tmp_path):
    p = _write(tmp_path / "x.jsonl", '{"question": "q", "answer": "1"}\n')
    with pytest.raises(ValueError, match="task"):
        list(load_questions("jsonl", p))


def test_jsonl_duplicate_ids(tmp_path):
    p = _write(tmp_path / "x.jsonl", '{"question": "q", "answer": "1"}\n{"question": "q", "answer": "1"}\n')
    with pytest.raises(ContractError) as exc:
        list(load_questions("jsonl", p, task="arith"))
    assert exc.value.where == f"{p}:2" and "duplicate" in exc.value.reason


def test_parquet_mapped_columns(tmp_path):
    p = tmp_path / "qs.parquet"
    pq.write_table(pa.table({"text": ["1+1?", "2*3?"], "gold": ["2", "6"], "extra": [1, 2]}), p)
    rows = list(load_questions("parquet", p, question_field="text", answer_field="gold", task="arith",
                               metadata_fields=["extra"], split="test"))
    _check_rows(rows, 2)
    assert rows[1]["gold_answer"] == "6" and rows[1]["split"] == "test"
    assert json.loads(rows[1]["metadata"]) == {"extra": 2}
    assert rows[0]["question_id"] == content_question_id("qs", "1+1?")


def test_parquet_errors(tmp_path):
    p = tmp_path / "qs.parquet"
    pq.write_table(pa.table({"question": ["1+1?", "2*3?"], "answer": ["2", "six"]}), p)
    with pytest.raises(ContractError) as exc:
        list(load_questions("parquet", p, task="arith"))
    assert exc.value.where == f"{p}: row 1" and "'answer'" in exc.value.reason and "not a number" in exc.value.reason
    with pytest.raises(ContractError, match="no column 'q'"):
        list(load_questions("parquet", p, task="arith", question_field="q"))
    with pytest.raises(ContractError, match="unreadable Parquet"):
        list(load_questions("parquet", _write(tmp_path / "no.parquet", "nope"), task="arith"))


def test_hf_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"problem": ["3+4?", "9-2?"], "solution": ["7", "7"], "uid": ["a", "b"]})
    ds.save_to_disk(str(tmp_path / "one"))
    rows = list(load_questions("hf-disk", tmp_path / "one", question_field="problem", answer_field="solution",
                               id_field="uid", task="arith"))
    _check_rows(rows, 2)
    assert [r["question_id"] for r in rows] == ["a", "b"] and rows[0]["gold_answer"] == "7"

    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0])})
    dd.save_to_disk(str(tmp_path / "dict"))
    test = list(load_questions("hf-disk", tmp_path / "dict", split="test", question_field="problem",
                               answer_field="solution", task="arith"))
    assert len(test) == 1 and test[0]["split"] == "test" and test[0]["source"] == "dict"
    with pytest.raises(ContractError, match="choose split"):
        list(load_questions("hf-disk", tmp_path / "dict", question_field="problem", answer_field="solution", task="arith"))
    with pytest.raises(ContractError, match="no column 'question'"):
        list(load_questions("hf-disk", tmp_path / "one", task="arith"))
    bad = datasets.Dataset.from_dict({"question": ["x?", "y?"], "answer": ["1", "many"]})
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ContractError) as exc:
        list(load_questions("hf-disk", tmp_path / "bad", task="arith"))
    assert exc.value.where == f"{tmp_path / 'bad'}: row 1" and "'answer'" in exc.value.reason
    with pytest.raises(ContractError, match="save_to_disk"):
        list(load_questions("hf-disk", tmp_path / "missing", task="arith"))


# ---------------------------------------------------------------- synthetic
def test_synthetic():
    rows = list(load_questions("synthetic", split="test", n=20))
    _check_rows(rows, 20)
    assert {r["split"] for r in rows} == {"test"} and {r["source"] for r in rows} == {"synthetic"}
    assert list(load_questions("synthetic", split="test", n=20)) == rows
    other = list(load_questions("synthetic", split="test", n=20, seed=12345))
    assert [r["question"] for r in other] != [r["question"] for r in rows]
    with pytest.raises(ValueError, match="unknown synthetic world option"):
        list(load_questions("synthetic", n=2, colour="blue"))


# ---------------------------------------------------------------- registry and bad input
def test_registry():
    assert {"synthetic", "gsm8k", "svamp", "mentor-kd", "jsonl", "parquet", "hf-disk", "math500", "commonsense_qa",
            "strategyqa", "gpqa"} <= set(available_sources())
    with pytest.raises(ValueError, match="unknown question source"):
        load_questions("nope")
    rows = list(load_questions_from_config({"kind": "synthetic", "split": "train", "n": 3}))
    assert len(rows) == 3


def test_registry_config_string(shared_data):
    rows = list(load_questions_from_config(f"mentor_kd:{shared_data / 'mentor_kd' / 'svamp_test.json'}"))
    assert len(rows) == 150


@pytest.mark.parametrize(
    ("kind", "name", "text", "line", "reason"),
    [
        ("gsm8k", "test.jsonl", '{"question": "q", "answer": "x\\n#### 1"}\n{"question": "q2",\n', 2, "invalid JSON"),
        ("gsm8k", "test.jsonl", '{"question": "q", "answer": "x\\n#### 1"}\n\n{"question": "q2"}\n', 3,
         "missing field 'answer'"),
        ("gsm8k", "test.jsonl", '{"question": "q", "answer": "x\\n#### ten"}\n', 1, "not a number"),
        ("gsm8k", "test.jsonl", '{"question": "q", "answer": "no marker"}\n', 1, "no '#### <answer>' line"),
        ("gsm8k", "test.jsonl", '[1, 2]\n', 1, "expected a JSON object"),
        ("svamp", "SVAMP.json", '[\n{"ID": "a", "Body": "b", "Question": "q", "Answer": 1.0},\n'
         '{"ID": "c", "Body": "b", "Question": "q", "Answer": "lots"}\n]', 3, "not a number"),
        ("svamp", "SVAMP.json", '[\n{"ID": "a", "Body": "b", "Answer": 1.0}\n]', 2, "missing field 'Question'"),
        ("svamp", "SVAMP.json", '[\n{"ID": "a", "Body": "b", "Question": "q", "Answer": 1.0},\n'
         '{"ID": "a", "Body": "b", "Question": "q", "Answer": 1.0}\n]', 3, "duplicate ID"),
        ("mentor-kd", "svamp_test.json", '[\n{"input": "q", "answer": "1"},\n{"input": "q", "answer": "one"}\n]', 3,
         "not a number"),
        ("mentor-kd", "strategy_qa_test.json", '[\n{"input": "q", "answer": "maybe"}\n]', 2, "not yes/no"),
        ("jsonl", "x.jsonl", '{"question": "q", "answer": "1"}\n{"question": "", "answer": "2"}\n', 2, "is empty"),
    ],
)
def test_bad_input(tmp_path, kind, name, text, line, reason):
    p = _write(tmp_path / name, text)
    options = {"task": "arith"} if kind == "jsonl" else {}
    with pytest.raises(ContractError) as exc:
        list(load_questions(kind, p, **options))
    assert exc.value.where == f"{p}:{line}"
    assert reason in exc.value.reason


def _manifest(run_dir: Path, source: dict) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": run_dir.name, "config": {"source": source}}))


def test_synthetic_world_of_reads_the_manifests(tmp_path):
    from pipeline.sources.synthetic_world import synthetic_world_of
    from pipeline.synthetic.world import WorldConfig

    assert synthetic_world_of(tmp_path) is None  # no run at all
    _manifest(tmp_path / "gsm", {"kind": "gsm8k", "path": "x.jsonl", "options": {}})
    assert synthetic_world_of(tmp_path) is None  # no synthetic run
    world = {"value_range": [1, 9], "max_value": 30}
    _manifest(tmp_path / "a", {"kind": "synthetic", "options": {"split": "train", "seed": 3, "config": world}})
    got = synthetic_world_of(tmp_path)
    assert got == WorldConfig(seed=3, value_range=(1, 9), max_value=30)
    _manifest(tmp_path / "b", {"kind": "synthetic", "options": {"split": "train", "seed": 3, "config": world}})
    assert synthetic_world_of(tmp_path) == got  # the same world twice is fine
    _manifest(tmp_path / "c", {"kind": "synthetic", "options": {"split": "train"}})
    with pytest.raises(ContractError, match="different worlds"):
        synthetic_world_of(tmp_path)


def test_synthetic_world_of_bad_option(tmp_path):
    from pipeline.sources.synthetic_world import synthetic_world_of

    _manifest(tmp_path / "a", {"kind": "synthetic", "options": {"split": "train", "colour": "red"}})
    with pytest.raises(ContractError, match="manifest.json"):
        synthetic_world_of(tmp_path)
