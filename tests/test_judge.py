"""The judge model (pipeline.judge) in synthesis: prompt files, verdict parsing, config errors, run ids,
a scripted fake judge through ``run_shard`` (unjudged / all, prefer rule / judge, unparseable replies,
failed requests, resume), shards older than the judge columns, browse and the viewer, and a tiny
local transformers model as the judge end to end (random weights: its replies are garbage, and the
pipeline must say so, not guess)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_schemas import ContractError, RunWriter, load_manifest, read_rationales, read_table
from pipeline import browse
from pipeline import synthesis as synthesis_mod
from pipeline.judge import (
    JudgeItem,
    JudgeSpec,
    build_judge_requests,
    final_verdict,
    load_judge_prompt,
    parse_verdict,
    render_judge_messages,
)
from pipeline.synthesis import SynthesisConfig, iter_question_shards, load_config, run_shard
from pipeline.teachers import Completion, GenerationRequest, TeacherBackend
from pipeline.verify import verify
from tests.synthesis_groups import merge_groups

JUDGE_COLUMNS = ("judge_model", "judge_verdict", "judge_reply", "rule_verdict")
SCRIPTED_TEACHER = {"backend": "transformers", "name": "scripted", "options": {"model": "/nonexistent/scripted"}}
FAKE_JUDGE = {"backend": "openai", "name": "fake-judge", "options": {"model": "fake", "base_url": "http://127.0.0.1:9/v1"}}


# ---------------------------------------------------------------- scripted backends
class ScriptedTeacher(TeacherBackend):
    """Sample 0 states the gold answer, sample 1 a wrong one, sample 2 no answer (the rule cannot judge)."""

    name = "scripted"
    thread_safe = True

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = []
        for r in requests:
            gold = r.question["gold_answer"]
            text = (f"Adding up gives {gold}.\nThe answer is {gold}.", f"The answer is {int(gold) + 1}.",
                    "I cannot tell.")[r.sample_index % 3]  # fmt: skip
            out.append(Completion(text=text, finish_reason="stop", num_tokens=7))
        return out


def _rationale_of(req: GenerationRequest) -> str:
    user = req.messages[-1]["content"]
    return user.split("Proposed solution:\n", 1)[1].split("\n\nDoes the final answer", 1)[0]


class ScriptedJudge(TeacherBackend):
    """Deterministic replies: calls every wrong answer correct (a disagreement), every stated gold
    answer correct (agreement), and for "I cannot tell." rows answers by question: incorrect,
    an unparseable reply, or a failed request, in turn."""

    name = "fake-judge"
    thread_safe = True

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.calls += 1
        self.seen.extend(requests)
        out = []
        for r in requests:
            rationale = _rationale_of(r)
            if "cannot tell" in rationale:
                index = int(r.question_id.rsplit(":", 1)[1])
                choice = index % 3
                if choice == 2:
                    out.append(Completion(text="", finish_reason="error", error="HTTP 503: overloaded"))
                    continue
                text = "Verdict: incorrect" if choice == 0 else "I would rather not say."
            else:
                text = "The final answer matches.\nVerdict: **correct**"
            out.append(Completion(text=text, finish_reason="stop", num_tokens=4))
        return out


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> ScriptedJudge:
    """``teacher_in_process`` of synthesis (and of the flow) gives the scripted teacher and judge by name."""
    judge = ScriptedJudge()
    teacher = ScriptedTeacher()
    real = synthesis_mod.teacher_in_process

    def fake(spec):  # noqa: ANN001, ANN202
        by_name = {"scripted": teacher, "/nonexistent/scripted": teacher, "fake-judge": judge, "fake": judge}
        return (by_name[spec.teacher_name], False) if spec.teacher_name in by_name else real(spec)

    monkeypatch.setattr(synthesis_mod, "teacher_in_process", fake)
    import flows.synthesize as flow_mod

    monkeypatch.setattr(flow_mod, "teacher_in_process", fake)
    return judge


def _cfg(judge: dict | None = None, **kw: object) -> SynthesisConfig:
    base = dict(num_questions=6, shard_size=3, samples=3, perspective_set="math", perspectives=["stepwise"],
                teachers=[SCRIPTED_TEACHER], sampling={"temperature": 0.0, "max_tokens": 16})  # fmt: skip
    if judge is not None:
        base["judge"] = {"teacher": FAKE_JUDGE, **judge}
    return SynthesisConfig.model_validate({**base, **kw})


def _run(cfg: SynthesisConfig, tmp_path: Path) -> tuple[Path, list]:
    run_dir = tmp_path / cfg.run_id()
    results = [run_shard(cfg, run_dir, cfg.run_id(), name, qs) for name, qs in iter_question_shards(cfg)]
    return run_dir, results


def _kind(row: dict) -> int:
    return row["sample_index"] % 3  # 0 gold, 1 wrong, 2 no answer


# ---------------------------------------------------------------- prompt files and replies
def test_default_prompt_renders_every_field() -> None:
    prompt = load_judge_prompt("default")
    item = JudgeItem("q:0", "stepwise", "t", 0, "How many {apples}?", "27", "arith", "x" * 7000 + " The answer is 27.",
                     "27")  # fmt: skip
    system, user = render_judge_messages(prompt, item)
    assert system["role"] == "system" and "grader" in system["content"]
    assert "How many {apples}?" in user["content"] and "Reference answer: 27" in user["content"]
    assert "The answer is 27." in user["content"] and "[...]" in user["content"]  # long rationales keep their end
    assert len(user["content"]) < 7000 + 1000
    spec = JudgeSpec(mode="all", teacher=FAKE_JUDGE)
    (req,) = build_judge_requests(spec, prompt, [item], run_seed=0)
    assert req.teacher == "fake-judge" and req.sampling.temperature == 0.0 and req.sampling.max_tokens == 64
    assert req.prompt.startswith(system["content"]) and req.prompt.endswith("### Response\n")
    (again,) = build_judge_requests(spec, prompt, [item], run_seed=0)
    (other,) = build_judge_requests(spec, prompt, [item], run_seed=1)
    assert req.seed == again.seed != other.seed


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Verdict: correct", True),
        ("Verdict: incorrect", False),
        ("The answers match.\n**Verdict:** Correct.", True),
        ("verdict: correct\nOn second thought... Verdict: incorrect", False),  # the last marker wins
        ("Verdict:\n  `incorrect`", False),
        ("Correct.", True),
        ("incorrect", False),
        ("", None),
        ("Verdict: maybe", None),
        ("Verdict: 42 correct", None),
        ("It is correct", None),  # no marker and more than one word
        ("yes", None),  # not a word of the default prompt
        ("cor rect", None),
    ],
)
def test_parse_verdict(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply, load_judge_prompt("default")) is verdict


def test_custom_prompt_file(tmp_path: Path) -> None:
    path = tmp_path / "yesno.yaml"
    path.write_text(
        "name: yesno\ntemplate: 'Gold {gold_answer}. Solution: {rationale}. Same? Grade: yes or no.'\n"
        "verdict_marker: 'Grade:'\ncorrect_words: ['Yes']\nincorrect_words: ['no']\n"
    )
    prompt = load_judge_prompt(path)
    assert parse_verdict("Grade: YES", prompt) is True and parse_verdict("no", prompt) is False
    assert parse_verdict("Verdict: correct", prompt) is None
    (user,) = render_judge_messages(prompt, JudgeItem("q", "p", "t", 0, "Q", "5", "arith", "It is 5.", None))
    assert user == {"role": "user", "content": "Gold 5. Solution: It is 5.. Same? Grade: yes or no."}


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("name: x\ntemplate: '{rationale} {gold} '\n", ["field 'template'", "unknown placeholder", "gold"]),
        ("name: x\ntemplate: 'only {rationale}'\n", ["field 'template'", "{gold_answer}"]),
        ("name: x\ntemplate: '{rationale} {gold_answer}'\nmarker: 'V:'\n", ["field 'marker'", "unknown field"]),
        ("name: x\ntemplate: '{rationale} {gold_answer}'\nincorrect_words: [correct]\n", ["both correct and incorrect"]),
        ("name: x\ntemplate: [unclosed\n", ["invalid YAML"]),
        ("name: x\ntemplate: '{rationale} {gold_answer}'\ncorrect_words: [yes]\n", ["field 'correct_words'", "quote it"]),
        ("- a list\n", ["expected a mapping"]),
    ],
)
def test_prompt_file_errors_name_file_and_field(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "bad-judge.yaml"
    path.write_text(text)
    with pytest.raises(ContractError) as info:
        load_judge_prompt(path)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, msg


def test_final_verdict_rule() -> None:
    assert final_verdict(None, True) is True and final_verdict(False, True) is False
    assert final_verdict(False, True, "judge") is True and final_verdict(False, None, "judge") is False
    assert final_verdict(None, None) is None


# ---------------------------------------------------------------- configuration
def _config_error(tmp_path: Path, judge_yaml: str) -> str:
    path = tmp_path / "synth.yaml"
    path.write_text("num_questions: 4\n" + judge_yaml)
    with pytest.raises(ContractError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    return msg


@pytest.mark.parametrize(
    ("judge_yaml", "needles"),
    [
        ("judge: {mode: unjudged}\n", ["field 'judge'", "needs a judge", "judge.teacher"]),
        ("judge: {mode: all, teacher: synthetic}\n", ["field 'judge'", "synthetic teacher cannot judge"]),
        ("judge: {mode: sometimes, teacher: 'transformers:/m'}\n", ["field 'judge.mode'"]),
        ("judge: {mode: all, teacher: 'transformers:/m', model: x}\n", ["field 'judge.model'"]),
        ("judge: {mode: all, teacher: 'gpt4'}\n", ["field 'judge.teacher'", "teacher 'gpt4'"]),
        ("judge: {mode: all, teacher: 'transformers:/m', max_tokens: 0}\n", ["field 'judge.max_tokens'"]),
        ("judge: {mode: all, teacher: 'transformers:/m', prompt: nosuch}\n", ["field 'judge'", "unknown judge prompt 'nosuch'"]),
    ],
)
def test_judge_config_errors_name_file_and_field(tmp_path: Path, judge_yaml: str, needles: list[str]) -> None:
    msg = _config_error(tmp_path, judge_yaml)
    for needle in needles:
        assert needle in msg, msg


def test_judge_config_error_names_the_prompt_file(tmp_path: Path) -> None:
    bad = tmp_path / "my-judge.yaml"
    bad.write_text("name: mine\ntemplate: 'no placeholders'\n")
    msg = _config_error(tmp_path, f"judge: {{mode: all, teacher: 'transformers:/m', prompt: '{bad}'}}\n")
    assert "field 'judge'" in msg and str(bad) in msg and "field 'template'" in msg


def test_yaml_off_and_flag_overrides(tmp_path: Path) -> None:
    path = tmp_path / "synth.yaml"
    path.write_text("judge:\n  mode: off\n  teacher: 'transformers:/models/judge'\n  prefer: judge\n")
    cfg = load_config(path)
    assert cfg.judge.mode == "off" and not cfg.judge.enabled
    assert cfg.run_id() == load_config().run_id()  # an idle judge section changes nothing
    assert load_config(judge=False).judge.mode == "off"
    on = load_config(path, judge={"mode": "all"})  # a --judge flag refines the file's section
    assert on.judge.mode == "all" and on.judge.prefer == "judge" and on.judge.judge_name == "/models/judge"


def test_run_id_includes_the_judge(tmp_path: Path) -> None:
    judge = {"mode": "unjudged", "teacher": "transformers:/models/judge"}
    base = load_config(judge=judge).run_id()
    assert base != load_config().run_id()
    assert base == load_config(judge=judge).run_id()
    assert base != load_config(judge={**judge, "mode": "all"}).run_id()
    assert base != load_config(judge={**judge, "prefer": "judge"}).run_id()
    assert base != load_config(judge={**judge, "max_tokens": 8}).run_id()
    teacher = {"backend": "transformers", "options": {"model": "/models/judge", "batch_size": 2}}
    assert base == load_config(judge={**judge, "teacher": teacher}).run_id()  # speed options: same rows
    prompt = tmp_path / "p.yaml"
    prompt.write_text((resources.files("pipeline") / "judge_prompts" / "default.yaml").read_text())
    assert base == load_config(judge={**judge, "prompt": str(prompt)}).run_id()  # same content, same run
    prompt.write_text(prompt.read_text().replace("strict grader", "careful grader"))
    assert base != load_config(judge={**judge, "prompt": str(prompt)}).run_id()


# ---------------------------------------------------------------- a scripted judge through run_shard
def test_unjudged_mode_fills_in_for_the_rule(scripted: ScriptedJudge, tmp_path: Path) -> None:
    cfg = _cfg({"mode": "unjudged"})
    run_dir, results = _run(cfg, tmp_path)
    rows = read_rationales(run_dir, verify_checksums=True).to_pylist()
    assert len(rows) == 6 * 3
    for r in rows:
        rule = verify(r["rationale"], r["gold_answer"], r["task"]).is_correct
        if _kind(r) < 2:  # the rule decided: no judge
            assert rule is not None and r["is_correct"] is rule
            assert all(r[c] is None for c in JUDGE_COLUMNS)
            continue
        index = int(r["question_id"].rsplit(":", 1)[1])
        assert rule is None and r["judge_model"] == "fake-judge" and r["rule_verdict"] is None
        if index % 3 == 0:
            assert (r["judge_verdict"], r["judge_reply"], r["is_correct"]) == (False, "Verdict: incorrect", False)
        elif index % 3 == 1:  # unparseable: counted, never guessed
            assert (r["judge_verdict"], r["judge_reply"], r["is_correct"]) == (None, "I would rather not say.", None)
        else:  # the request failed
            assert (r["judge_verdict"], r["judge_reply"], r["is_correct"]) == (None, None, None)
            assert json.loads(r["metadata"])["judge_error"] == "HTTP 503: overloaded"
    assert len(scripted.seen) == 6 and scripted.calls == 2  # one judge call per shard, only unjudged rows
    (g,) = merge_groups(results).values()
    assert (g.rows, g.judged, g.judge_correct, g.judge_incorrect, g.judge_unparseable, g.judge_errors) == (18, 6, 0, 2, 2, 2)
    assert (g.agree, g.disagree, g.filled, g.overridden) == (0, 0, 2, 0)
    assert (g.correct, g.unjudged) == (6, 4)  # final verdicts: 6 gold answers; 2 of 6 unjudged rows filled

    stats = browse.judge_stats(run_dir)
    assert stats is not None and stats["judges"] == ["fake-judge"]
    (sg,) = stats["groups"]
    assert {k: sg[k] for k in ("judged", "judge_incorrect", "unparseable", "judge_errors", "filled", "disagree")} == {
        "judged": 6, "judge_incorrect": 2, "unparseable": 2, "judge_errors": 2, "filled": 2, "disagree": 0,
    }  # fmt: skip
    (bg,) = browse.stats(run_dir)
    assert (bg["correct"], bg["incorrect"], bg["unjudged"]) == (6, 8, 4)


@pytest.mark.parametrize("prefer", ["rule", "judge"])
def test_all_mode_counts_disagreements(scripted: ScriptedJudge, tmp_path: Path, prefer: str) -> None:
    cfg = _cfg({"mode": "all", "prefer": prefer})
    run_dir, results = _run(cfg, tmp_path)
    rows = read_rationales(run_dir).to_pylist()
    assert len(scripted.seen) == 18 and all(r["judge_model"] == "fake-judge" for r in rows)
    for r in rows:
        rule = verify(r["rationale"], r["gold_answer"], r["task"]).is_correct
        assert r["rule_verdict"] is rule
        assert r["is_correct"] is final_verdict(rule, r["judge_verdict"], prefer)
    wrong = [r for r in rows if _kind(r) == 1]
    assert all(r["rule_verdict"] is False and r["judge_verdict"] is True for r in wrong)
    assert all(r["is_correct"] is (prefer == "judge") for r in wrong)
    (g,) = merge_groups(results).values()
    assert (g.judged, g.agree, g.disagree, g.filled) == (18, 6, 6, 2)
    assert g.overridden == (6 if prefer == "judge" else 0)
    assert g.correct == (12 if prefer == "judge" else 6)
    stats = browse.judge_stats(run_dir)
    assert stats is not None
    assert {k: stats["total"][k] for k in ("judged", "agree", "disagree", "filled", "overridden")} == {
        "judged": 18, "agree": 6, "disagree": 6, "filled": 2, "overridden": g.overridden,
    }  # fmt: skip
    assert stats["total"]["disagree_pct"] == pytest.approx(50.0)


def test_error_rows_are_not_judged(scripted: ScriptedJudge, tmp_path: Path) -> None:
    cfg = SynthesisConfig(num_questions=3, shard_size=3, samples=1, perspectives=["stepwise"],
                          judge={"mode": "all", "teacher": FAKE_JUDGE})  # fmt: skip
    run_dir = tmp_path / cfg.run_id()
    (name, questions), = iter_question_shards(cfg)
    questions[1] = {**questions[1], "metadata": json.dumps({"kind": "chain"})}  # the synthetic teacher fails on it
    run_shard(cfg, run_dir, cfg.run_id(), name, questions)
    rows = {r["question_id"]: r for r in read_rationales(run_dir).to_pylist()}
    bad = rows.pop(questions[1]["question_id"])
    assert bad["finish_reason"] == "error" and all(bad[c] is None for c in JUDGE_COLUMNS)
    assert len(scripted.seen) == 2 and all(r["judge_model"] == "fake-judge" for r in rows.values())


def test_resume_skips_judged_shards(scripted: ScriptedJudge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg({"mode": "unjudged"})
    run_dir = tmp_path / cfg.run_id()
    shards = list(iter_question_shards(cfg))
    real = scripted.generate
    calls = {"n": 0}

    def crash_on_second(requests):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("judge engine died")
        return real(requests)

    monkeypatch.setattr(scripted, "generate", crash_on_second)
    run_shard(cfg, run_dir, cfg.run_id(), *shards[0])
    with pytest.raises(RuntimeError, match="judge engine died"):
        run_shard(cfg, run_dir, cfg.run_id(), *shards[1])
    assert [s.name for s in load_manifest(run_dir).shards] == [shards[0][0]]  # nothing half-judged is kept
    before = (run_dir / "shards" / f"{shards[0][0]}.parquet").stat().st_mtime_ns

    monkeypatch.setattr(scripted, "generate", real)
    scripted.seen.clear()
    again = [run_shard(cfg, run_dir, cfg.run_id(), name, qs) for name, qs in shards]
    assert [r.skipped for r in again] == [True, False]
    assert len(scripted.seen) == 3  # only the unfinished shard's unjudged rows
    assert {r.question_id for r in scripted.seen} == {q["question_id"] for q in shards[1][1]}
    assert (run_dir / "shards" / f"{shards[0][0]}.parquet").stat().st_mtime_ns == before
    rows = read_rationales(run_dir, verify_checksums=True).to_pylist()
    assert len(rows) == 18 and sum(r["judge_model"] is not None for r in rows) == 6


# ---------------------------------------------------------------- shards older than the judge columns
def _write_old_run(tmp_path: Path, cfg: SynthesisConfig) -> Path:
    """The run of ``cfg`` (no judge), rewritten as shards without the judge columns (as before they existed)."""
    run_dir, _ = _run(cfg, tmp_path / "old")
    for info in load_manifest(run_dir).shards:
        path = run_dir / "shards" / f"{info.name}.parquet"
        table = pq.read_table(path)
        old = table.drop_columns(list(JUDGE_COLUMNS))
        pq.write_table(old.replace_schema_metadata(table.schema.metadata), path)
    return run_dir


def test_old_shards_read_with_null_judge_columns(tmp_path: Path) -> None:
    run_dir = _write_old_run(tmp_path, SynthesisConfig(num_questions=4, shard_size=2, samples=1))
    path = next((run_dir / "shards").glob("*.parquet"))
    assert "judge_model" not in pq.read_schema(path).names
    table = read_table(path)
    for col in JUDGE_COLUMNS:
        assert table.column(col).null_count == table.num_rows > 0
    assert read_rationales(run_dir).num_rows == 4 * 6
    assert browse.judge_stats(run_dir) is None
    assert browse.main([str(run_dir), "stats"]) == 0
    qid = table.column("question_id")[0].as_py()
    shown = browse.show(run_dir, qid)
    assert "judge_model" not in shown["rationales"][0]


def test_old_and_judged_runs_browse_together(scripted: ScriptedJudge, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    old = _write_old_run(tmp_path, _cfg())
    new, _ = _run(_cfg({"mode": "all"}), tmp_path / "new")
    root = tmp_path
    with browse.Shards(root) as sh:
        assert len(sh.files) == 4 and len(sh.judge_files) == 2
        stats = browse.judge_stats(sh)
        assert stats is not None and stats["total"]["judged"] == 18 and stats["total"]["disagree"] == 6
        groups = browse.stats(sh)
        assert sum(g["rows"] for g in groups) == 36
        qid = next(iter(iter_question_shards(_cfg())))[1][0]["question_id"]  # in both runs: a mixed scan
        shown = browse.show(sh, qid)
    assert shown["runs"] == sorted([load_manifest(old).run_id, load_manifest(new).run_id])
    by_run = {}
    for r in shown["rationales"]:
        by_run.setdefault(r["run_id"], []).append(r)
    assert all(r["judge_model"] is None for r in by_run[load_manifest(old).run_id])
    assert all(r["judge_model"] == "fake-judge" for r in by_run[load_manifest(new).run_id])

    assert browse.main([str(root), "stats", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["judge"]["total"]["disagree"] == 6 and data["judge"]["judges"] == ["fake-judge"]
    assert browse.main([str(root), "stats", "--width", "200"]) == 0
    out = capsys.readouterr().out
    assert "judge fake-judge: 18 rows judged, 6 rule/judge disagreement(s) (50.0% of the rows both decided)" in out
    assert browse.main([str(new), "show", qid, "--width", "200"]) == 0
    assert "judge ✓ ≠ rule ✗" in capsys.readouterr().out

    rows = browse.list_rows(root, disagree=True, limit=None)
    assert len(rows) == 6 and all(r["sample_index"] == 1 for r in rows)  # the wrong answers the judge accepted
    assert all((r["rule_verdict"], r["judge_verdict"], r["judge_model"]) == (False, True, "fake-judge") for r in rows)
    assert browse.list_rows(old, disagree=True) == []  # no judge columns: nothing can disagree
    assert len(browse.list_rows(root, disagree=True, perspective="stepwise", limit=2)) == 2
    assert browse.main([str(root), "list", "--disagree", "--limit", "0", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6


def test_viewer_shows_the_judge(scripted: ScriptedJudge, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from pipeline.viewer import create_app

    _write_old_run(tmp_path, _cfg())
    cfg = _cfg({"mode": "all"})
    run_dir = tmp_path / "new" / cfg.run_id()
    shards = list(iter_question_shards(cfg))
    for name, qs in shards:
        run_shard(cfg, run_dir, cfg.run_id(), name, qs)
    RunWriter(run_dir, cfg.run_id()).finalize()
    with TestClient(create_app(tmp_path)) as client:
        index = client.get("/")
        assert index.status_code == 200
        keys = re.findall(r'href="/run/([^"]+)"', index.text)
        new_key = next(k for k in keys if k.endswith(cfg.run_id()))
        old_key = next(k for k in keys if k != new_key)
        page = client.get(f"/run/{new_key}")
        assert page.status_code == 200
        assert 'id="judge-stats"' in page.text and "6 disagreement(s)" in page.text
        assert "fake-judge on every row, prefer rule" in page.text  # the manifest's judge section
        old_page = client.get(f"/run/{old_key}")
        assert old_page.status_code == 200 and 'id="judge-stats"' not in old_page.text
        qid = shards[0][1][0]["question_id"]
        q = client.get(f"/question/{new_key}", params={"id": qid})
        assert q.status_code == 200
        assert q.text.count('class="judge"') == 3 and "disagrees with the rule (✗ incorrect)" in q.text
        assert "Verdict: **correct**" in q.text
        q_old = client.get(f"/question/{old_key}", params={"id": qid})
        assert q_old.status_code == 200 and 'class="judge"' not in q_old.text


# ---------------------------------------------------------------- the Prefect flow: artifact, summary, CLI
@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_flow_publishes_judge_artifact_and_cli(scripted: ScriptedJudge, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows import synthesize as synth_flow

    overrides = {"shard_size": 3, "samples": 3, "perspective_set": "math", "perspectives": ["stepwise"],
                 "teachers": [SCRIPTED_TEACHER], "judge": {"mode": "all", "teacher": FAKE_JUDGE}}  # fmt: skip
    state = synth_flow.synthesize(out=str(tmp_path / "out"), num_questions=6, overrides=overrides, return_state=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["judge_total"]["judged"] == 18 and summary["judge_total"]["disagree"] == 6
    (row,) = summary["judge"]
    assert (row["perspective"], row["teacher"], row["disagree"], row["agree"], row["unparseable"]) == (
        "stepwise", "scripted", 6, 6, 2)  # fmt: skip
    manifest = load_manifest(summary["run_dir"])
    assert manifest.complete and manifest.stats["judge"]["total"]["disagree"] == 6
    assert manifest.config["judge"]["mode"] == "all"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert {"synthesize-yield", "synthesize-judge"} <= set(by_key)
    table = by_key["synthesize-judge"]
    data = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [(r["perspective"], r["judged"], r["disagree"], r["filled in"]) for r in data] == [("stepwise", 18, 6, 2)]
    assert "6 rule/judge disagreement(s)" in (table.description or "")

    argv = ["--out", str(tmp_path / "cli"), "--num-questions", "6", "--shard-size", "3", "--samples", "3",
            "--perspective-set", "math", "--perspectives", "stepwise", "--teacher", "transformers:/nonexistent/scripted",
            "--judge", "unjudged", "--judge-teacher", "openai:fake@http://127.0.0.1:9/v1"]  # fmt: skip
    assert synth_flow.main(argv) == 0
    out = capsys.readouterr().out
    assert "judge: rule/judge agreement" in out and "judge " in out.split("shard(s) written")[-1]
    rows = read_rationales(tmp_path / "cli").to_pylist()
    assert sum(r["judge_model"] == "fake" for r in rows) == 6 and all(r["rule_verdict"] is None for r in rows)
    # judge settings without a judge mode: a clear error, not a silently unjudged run
    assert synth_flow.main([*argv[:-4], "--judge-teacher", "openai:fake@http://127.0.0.1:9/v1"]) == 2
    assert "add --judge unjudged|all" in capsys.readouterr().err
    assert synth_flow.main([*argv[:-4], "--judge", "all", "--judge-teacher", "synthetic"]) == 2
    assert "synthetic teacher cannot judge" in capsys.readouterr().err


# ---------------------------------------------------------------- a tiny local transformers model as the judge
@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-judge") / "lm", chat_template=True)


def test_tiny_transformers_judge_end_to_end(tiny_judge: Path, tmp_path: Path, one_cpu_thread: None) -> None:
    judge = {"backend": "transformers", "name": "tiny-judge", "options": {"model": str(tiny_judge), "device": "cpu"}}
    cfg = SynthesisConfig(num_questions=2, shard_size=2, samples=1, perspectives=["stepwise", "equation"],
                          judge={"mode": "all", "teacher": judge, "max_tokens": 6})  # fmt: skip
    run_dir, results = _run(cfg, tmp_path)
    rows = read_rationales(run_dir, verify_checksums=True).to_pylist()
    assert len(rows) == 4
    prompt = load_judge_prompt("default")
    for r in rows:
        assert r["judge_model"] == "tiny-judge"
        assert r["judge_reply"] is not None, r["metadata"]  # the model answered (garbage, with random weights)
        assert r["judge_verdict"] is parse_verdict(r["judge_reply"], prompt)
        assert r["rule_verdict"] is verify(r["rationale"], r["gold_answer"], r["task"]).is_correct
        assert r["is_correct"] is final_verdict(r["rule_verdict"], r["judge_verdict"], "rule")
    unparseable = sum(r["judge_verdict"] is None for r in rows)
    assert unparseable >= 1  # random weights do not write "Verdict: correct"
    g = next(iter(merge_groups(results).values()))
    total = sum(x.judge_unparseable for x in merge_groups(results).values())
    assert total == unparseable and g.judge_errors == 0
    stats = browse.judge_stats(run_dir)
    assert stats is not None and stats["total"]["unparseable"] == unparseable and stats["judges"] == ["tiny-judge"]
