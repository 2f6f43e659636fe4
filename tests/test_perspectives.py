"""Perspectives from YAML: built-in sets, rendering, hashes, and errors that name file and field."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from data_schemas import ContractError
from pipeline.perspectives import (
    Perspective,
    available_perspective_sets,
    fold_system_message,
    load_perspective_set,
    parse_perspective_set,
    perspective_hash,
    prompt_hash,
    render_messages,
    render_prompt,
)
from pipeline.verify import verify

QUESTION = "Mia has 7 stickers and gives 2 to {her} brother. How many stickers does she keep?"
MC_QUESTION = "Which planet is largest?\n(A) Mars\n(B) Jupiter\n(C) Venus"

VALID_YAML = """\
name: tiny
perspectives:
  - name: direct
    description: Just answer.
    system_prompt: You are terse.
    instruction: "Q: {question}"
    answer_format: "End with '#### N'."
    few_shot:
      - question: 1 + 1?
        answer: "#### 2"
  - name: nosys
    description: No system prompt, answer format placed in the template.
    instruction: "{answer_format}\\n{question}"
    answer_format: Reply with a number.
"""


def write(tmp_path: Path, text: str, name: str = "set.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- built-ins


# The paper's eight perspectives (docs/perspectives.md), in its order.
MIND8 = [
    "formal_symbolic", "intuitive", "decomposition", "planning", "analogy", "socratic", "contrastive", "counterfactual"
]

# The gold answer of every few-shot question of the built-in sets: a new set adds its own here.
FEW_SHOT_GOLDS = {
    "A baker makes 24 muffins. She sells 3/4 of them in the morning and 2 more in the afternoon. "
    "How many muffins are left?": "4",
    "Sam buys 3 notebooks at $4 each and a pen for $2. He pays with a $20 bill. How much change does he get?": "6",
    "A library has 5 shelves with 12 books on each shelf. It lends out 17 books. "
    "How many books are still on the shelves?": "43",
    "A train ticket costs $8 for an adult and half as much for a child. "
    "How much do 2 adults and 3 children pay in total?": "28",
    "Did William Shakespeare ever use a telephone?": "no",
    "Which of these animals is a mammal?\n(A) shark\n(B) dolphin\n(C) trout\n(D) octopus": "B",
    "Could a person born in 1990 have voted in the 2004 US presidential election?": "no",
    "Which of these is a liquid at room temperature?\n(A) iron\n(B) mercury\n(C) salt\n(D) sand": "B",
}


def test_builtin_sets_are_listed():
    assert {"math", "yesno_choice", "mind8", "mind8_yesno_choice"} <= set(available_perspective_sets())


@pytest.mark.parametrize(
    ("set_name", "minimum"), [("math", 4), ("yesno_choice", 3), ("mind8", 8), ("mind8_yesno_choice", 8)]
)
def test_builtin_set_loads_and_renders(set_name, minimum):
    perspectives = load_perspective_set(set_name)
    assert len(perspectives) >= minimum
    assert len({p.name for p in perspectives}) == len(perspectives)
    assert len({p.instruction for p in perspectives}) == len(perspectives), "styles must differ"
    for p in perspectives:
        assert 1 <= len(p.few_shot) <= 2 and p.system_prompt and p.description
        messages = render_messages(p, QUESTION)
        roles = [m["role"] for m in messages]
        assert roles == ["system"] + ["user", "assistant"] * len(p.few_shot) + ["user"]
        assert QUESTION in messages[-1]["content"] and p.answer_format in messages[-1]["content"]
        for ex, (user, assistant) in zip(p.few_shot, zip(messages[1::2], messages[2::2], strict=True), strict=False):
            assert ex.question in user["content"] and assistant["content"] == ex.answer
        prompt = render_prompt(p, QUESTION)
        assert QUESTION in prompt and p.system_prompt in prompt
        assert all(ex.question in prompt and ex.answer in prompt for ex in p.few_shot)
        assert prompt.rstrip().endswith("### Response")


def test_math_set_has_the_requested_styles():
    names = {p.name for p in load_perspective_set("math")}
    assert {"stepwise", "equation", "socratic"} <= names
    assert names & {"program", "backward"}


@pytest.mark.parametrize("set_name", ["math", "mind8"])
def test_math_few_shot_answers_follow_the_answer_format(set_name):
    for p in load_perspective_set(set_name):
        for ex in p.few_shot:
            assert re.search(r"The answer is -?\d+(\.\d+)?\.\s*$", ex.answer), (p.name, ex.answer)


def test_program_of_thought_examples_print_their_answer():
    (program,) = load_perspective_set("math", names=["program"])
    for ex in program.few_shot:
        code = re.search(r"```python\n(.*?)```", ex.answer, re.S).group(1)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(code, {})  # noqa: S102 - our own few-shot example
        stated = re.search(r"The answer is (\S+)\.$", ex.answer).group(1)
        assert buf.getvalue().strip() == stated


@pytest.mark.parametrize("set_name", ["yesno_choice", "mind8_yesno_choice"])
def test_yesno_choice_few_shot_answers_follow_the_answer_format(set_name):
    for p in load_perspective_set(set_name):
        for ex in p.few_shot:
            assert re.search(r"The answer is (yes|no|\([A-Z]\))\.$", ex.answer), (p.name, ex.answer)
        assert MC_QUESTION in render_messages(p, MC_QUESTION)[-1]["content"]


@pytest.mark.parametrize("set_name", ["mind8", "mind8_yesno_choice"])
def test_mind8_has_the_papers_eight_perspectives(set_name):
    perspectives = load_perspective_set(set_name)
    assert [p.name for p in perspectives] == MIND8
    assert len({p.system_prompt for p in perspectives}) == 8 and len({p.description for p in perspectives}) == 8
    for p in perspectives:  # all perspectives solve the same questions: only the style differs
        assert len(p.few_shot) == 2
        assert [ex.question for ex in p.few_shot] == [ex.question for ex in perspectives[0].few_shot]
        assert len({ex.answer for ex in p.few_shot}) == 2


@pytest.mark.parametrize("set_name", available_perspective_sets())
def test_every_few_shot_answer_verifies_against_its_gold(set_name):
    """The verifier reads each built-in few-shot answer and judges it correct against its gold."""
    for p in load_perspective_set(set_name):
        for ex in p.few_shot:
            assert ex.question in FEW_SHOT_GOLDS, f"{set_name}/{p.name}: add the gold of {ex.question!r}"
            gold = FEW_SHOT_GOLDS[ex.question]
            task = "gsm8k" if gold[0].isdigit() else "strategyqa" if gold in ("yes", "no") else "commonsense_qa"
            verdict = verify(ex.answer, gold, task)
            assert verdict.is_correct is True, (set_name, p.name, ex.answer, verdict)
            wrong = {"yes": "no", "no": "yes"}.get(gold) or ("A" if gold == "B" else str(int(gold) + 1))
            assert verify(ex.answer, wrong, task).is_correct is False, (set_name, p.name, ex.answer)


def test_select_perspectives_by_name_in_order():
    assert [p.name for p in load_perspective_set("math", names=["socratic", "stepwise"])] == ["socratic", "stepwise"]
    with pytest.raises(ContractError, match=r"math\.yaml.*'nope'"):
        load_perspective_set("math", names=["stepwise", "nope"])


def test_unknown_builtin_set_lists_available():
    with pytest.raises(ContractError, match="unknown perspective set 'nosuch'.*math"):
        load_perspective_set("nosuch")


# ---------------------------------------------------------------------------- rendering


def test_load_from_path_and_render(tmp_path):
    direct, nosys = load_perspective_set(write(tmp_path, VALID_YAML))
    msgs = render_messages(direct, QUESTION)
    assert msgs == (
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Q: 1 + 1?\n\nEnd with '#### N'."},
        {"role": "assistant", "content": "#### 2"},
        {"role": "user", "content": f"Q: {QUESTION}\n\nEnd with '#### N'."},
    )
    # braces in the question stay literal; {answer_format} placed by the template, no system turn
    assert render_messages(nosys, QUESTION) == ({"role": "user", "content": f"Reply with a number.\n{QUESTION}"},)
    assert render_prompt(nosys, "2+2?") == "### Instruction\nReply with a number.\n2+2?\n\n### Response\n"
    assert load_perspective_set(str(write(tmp_path, VALID_YAML, "other.yml")))[0] == direct


def test_fold_system_message():
    (p,) = load_perspective_set("math", names=["stepwise"])
    folded = fold_system_message(render_messages(p, QUESTION))
    assert folded[0]["role"] == "user" and folded[0]["content"].startswith(p.system_prompt + "\n\n")
    assert [m["role"] for m in folded].count("system") == 0
    assert fold_system_message([{"role": "system", "content": "s"}]) == ({"role": "user", "content": "s"},)
    no_sys = ({"role": "user", "content": "u"},)
    assert fold_system_message(no_sys) == no_sys


def test_hashes_are_stable_and_sensitive():
    (p,) = load_perspective_set("math", names=["stepwise"])
    assert prompt_hash(p, QUESTION) == prompt_hash(p, QUESTION)
    assert prompt_hash(p, QUESTION) != prompt_hash(p, QUESTION.replace("7", "8"))
    assert prompt_hash(p, QUESTION) == prompt_hash(p, QUESTION + " ")  # hash of what the teacher sees
    changed = p.model_copy(update={"system_prompt": "Different."})
    assert prompt_hash(changed, QUESTION) != prompt_hash(p, QUESTION)
    assert perspective_hash(changed) != perspective_hash(p) == prompt_hash(p)
    assert re.fullmatch(r"[0-9a-f]{16}", perspective_hash(p))


# ------------------------------------------------------------------------------- errors


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\nperspectives:\n  - name: a\n    description: [unclosed\n")
    with pytest.raises(ContractError) as info:
        load_perspective_set(path)
    assert str(path) in str(info.value) and "invalid YAML" in str(info.value)
    assert re.search(re.escape(str(path)) + r":\d+", str(info.value))


def test_missing_field_names_file_and_field(tmp_path):
    text = VALID_YAML.replace('    instruction: "Q: {question}"\n', "")
    path = write(tmp_path, text)
    with pytest.raises(ContractError) as info:
        load_perspective_set(path)
    assert info.value.where == str(path)
    assert "perspectives[0] (direct).instruction: Field required" in info.value.reason


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"Q: {question}"', '"Q: no placeholder"', r"perspectives\[0\] \(direct\)\.instruction: .*\{question\}"),
        ('"Q: {question}"', '"Q: {question} {topic}"', r"instruction: unknown placeholder.*topic"),
        ('"Q: {question}"', '"Q: {question"', r"instruction: bad template"),
        ("  - name: nosys", "  - name: direct", r"perspectives: duplicate perspective name 'direct'"),
        ("        answer: \"#### 2\"", "        answer: \"\"", r"few_shot\[0\]\.answer"),
        ("    system_prompt: You are terse.", "    system_promt: You are terse.", r"system_promt: unknown field"),
        ("  - name: nosys", "  - name: bad name", r"perspectives\[1\] \(bad name\)\.name"),
    ],
)
def test_invalid_fields_are_named(tmp_path, old, new, expected):
    assert old in VALID_YAML
    path = write(tmp_path, VALID_YAML.replace(old, new, 1))
    with pytest.raises(ContractError, match=expected) as info:
        load_perspective_set(path)
    assert str(path) in str(info.value)


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ContractError, match="expected a mapping"):
        load_perspective_set(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(ContractError, match="cannot read"):
        load_perspective_set(tmp_path / "absent.yaml")
    with pytest.raises(ContractError, match=r"perspectives: .*at least 1"):
        parse_perspective_set("name: empty\nperspectives: []\n", "inline")


def test_perspective_model_is_frozen():
    (p,) = load_perspective_set("math", names=["stepwise"])
    assert isinstance(p, Perspective)
    with pytest.raises(Exception):  # noqa: B017 - pydantic ValidationError on frozen model
        p.name = "other"  # type: ignore[misc]
