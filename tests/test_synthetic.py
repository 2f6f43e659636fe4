"""The synthetic world (pipeline.synthetic): generation, splits, reference teacher, noise, CLI."""

from __future__ import annotations

import json
import re
import statistics

import pytest

from data_schemas import load_manifest, read_questions, read_rationales, rows_to_table
from pipeline.synthetic import (
    PERSPECTIVES,
    SPLITS,
    NoiseConfig,
    ReferenceTeacher,
    WorldConfig,
    execute,
    generate_problems,
    generate_questions,
    problem_from_question_row,
)
from pipeline.synthetic.__main__ import main
from pipeline.synthetic.ops import apply_op
from pipeline.verify import verify

CONFIG = WorldConfig(seed=3)
ANSWER_LINE = re.compile(r"\nThe answer is (-?\d+)\.$")
STEP_LINE = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")


@pytest.fixture(scope="module")
def train() -> list:
    return generate_problems(CONFIG, "train", 600)


# ---------------------------------------------------------------- world
def test_generation_is_deterministic_and_prefix_stable():
    for split in SPLITS:
        long = generate_problems(CONFIG, split, 30)
        assert generate_problems(CONFIG, split, 7) == long[:7]
        assert generate_problems(WorldConfig(seed=3), split, 30) == long
        assert [p.question_id for p in long[:2]] == [
            f"synthetic-{CONFIG.fingerprint}:{split}:0",
            f"synthetic-{CONFIG.fingerprint}:{split}:1",
        ]
    assert re.fullmatch(r"[0-9a-f]{8}", CONFIG.fingerprint)
    other = generate_problems(WorldConfig(seed=4), "train", 30)
    assert [p.question for p in other] != [p.question for p in generate_problems(CONFIG, "train", 30)]
    assert WorldConfig(seed=4).fingerprint != CONFIG.fingerprint


def test_train_and_test_questions_are_disjoint(train):
    test = generate_problems(CONFIG, "test", 600)
    assert not {p.question for p in train} & {p.question for p in test}
    ret_eval = generate_problems(CONFIG, "retention", 300)
    ret_train = generate_problems(CONFIG, "retention_train", 300)
    assert not {p.question for p in ret_eval} & {p.question for p in ret_train}
    # same distribution otherwise: same templates and step range
    assert {p.template_id for p in test} == {p.template_id for p in train}
    assert {p.difficulty for p in test} == {p.difficulty for p in train} == {2, 3, 4}


def test_ood_splits(train):
    ood_steps = generate_problems(CONFIG, "ood_steps", 200)
    assert min(p.difficulty for p in ood_steps) > max(p.difficulty for p in train)
    assert {p.template_id for p in ood_steps} <= set(CONFIG.train_templates)
    ood_tpl = generate_problems(CONFIG, "ood_template", 200)
    assert {p.template_id for p in ood_tpl} == set(CONFIG.heldout_templates)
    assert not {p.template_id for p in train} & set(CONFIG.heldout_templates)
    assert {p.difficulty for p in ood_tpl} == {2, 3, 4}
    retention = generate_problems(CONFIG, "retention", 100)
    assert {p.kind for p in retention} == {"largest", "smallest"}
    for p in retention:
        nums = [int(x) for x in re.findall(r"\d+", p.question)]
        assert p.answer == (max(nums) if p.kind == "largest" else min(nums))


def test_answers_reexecute_and_stay_small():
    cfg = WorldConfig(seed=1, retention_kinds=("largest", "smallest", "bare"))
    for split in SPLITS:
        for p in generate_problems(cfg, split, 150):
            assert execute(p.steps) == p.answer
            for s in p.steps:
                assert apply_op(s.op, s.left, s.right) == s.result
                assert cfg.min_value <= s.result <= cfg.max_value or s.op in ("max", "min")
            assert p.question.isascii() and "{" not in p.question
            if p.kind == "chain":
                assert 90 <= len(p.question) <= 500
                assert all(str(s.right) in p.question for s in p.steps)


def test_question_rows_validate_and_round_trip():
    for split in SPLITS:
        rows = generate_questions(CONFIG, split, 20)
        table = rows_to_table(rows, "questions")
        assert table.num_rows == 20
        assert set(table.column("split").to_pylist()) == {split}
        for row, problem in zip(rows, generate_problems(CONFIG, split, 20), strict=True):
            assert row["gold_answer"] == str(problem.answer) and row["task"] == "arith"
            assert row["difficulty"] == len(problem.steps) and row["source"] == "synthetic"
            assert json.loads(row["metadata"])["world"] == CONFIG.fingerprint
            assert problem_from_question_row(row) == problem
    bad = dict(rows[0], gold_answer="12345")
    with pytest.raises(ValueError, match="gold answer"):
        problem_from_question_row(bad)


def test_config_validation():
    with pytest.raises(ValueError):
        WorldConfig(heldout_templates=("nowhere",))
    with pytest.raises(ValueError):
        WorldConfig(train_steps=(3, 2))
    with pytest.raises(ValueError):
        generate_problems(CONFIG, "validation", 1)
    assert WorldConfig.from_dict(CONFIG.to_dict()) == CONFIG


# ---------------------------------------------------------------- teacher
def test_teacher_is_deterministic_per_seed(train):
    teacher = ReferenceTeacher(NoiseConfig(slip_rate=0.2, flaw_rate=0.2))
    for perspective in PERSPECTIVES:
        outs = [teacher.write(p, perspective, seed=i) for i, p in enumerate(train[:50])]
        assert outs == [teacher.write(p, perspective, seed=i) for i, p in enumerate(train[:50])]
        # another seed changes the text of some samples (noise, and phrasing for wordy styles)
        others = [teacher.write(p, perspective, seed=i + 1000) for i, p in enumerate(train[:50])]
        assert sum(a.text != b.text for a, b in zip(outs, others, strict=True)) >= 5
    clean = ReferenceTeacher()
    p = train[0]
    texts = {clean.write(p, "verbose", seed=s).text for s in range(20)}
    assert len(texts) > 3  # wordy perspectives vary phrasing with the seed even without noise


def test_clean_rationales_are_right_and_perspectives_differ(train):
    teacher = ReferenceTeacher()
    mean_chars = {}
    for perspective in PERSPECTIVES:
        outs = [teacher.write(p, perspective, seed=i) for i, p in enumerate(train)]
        for p, out in zip(train, outs, strict=True):
            assert out.noise == "none" and out.answer == p.answer
            assert ANSWER_LINE.search(out.text).group(1) == str(p.answer)
            assert out.text.isascii() and out.num_tokens == len(out.text.split())
            assert verify(out.text, str(p.answer), "arith").is_correct is True
        mean_chars[perspective] = statistics.mean(len(o.text) for o in outs)
    ordered = sorted(mean_chars.values())
    assert all(b >= 1.25 * a for a, b in zip(ordered, ordered[1:])), mean_chars
    assert min(mean_chars, key=mean_chars.get) == "shortcut"
    assert max(mean_chars, key=mean_chars.get) == "verbose"
    # stepwise shows every intermediate value, shortcut none of them
    p = next(q for q in train if q.difficulty == 4)
    assert teacher.write(p, "stepwise", 0).text.count("\n") == 4
    shown = {str(s.right) for s in p.steps} | {str(p.start), str(p.answer)}
    intermediates = {str(s.result) for s in p.steps[:-1]} - shown
    shortcut = teacher.write(p, "shortcut", 0).text
    assert not any(re.search(rf"\b{v}\b", shortcut) for v in intermediates)


def test_slip_noise_gives_wrong_answers_at_the_configured_rate(train):
    teacher = ReferenceTeacher(NoiseConfig(slip_rate=0.3))
    problems = train * 5
    n_wrong = 0
    for i, p in enumerate(problems):
        out = teacher.write(p, PERSPECTIVES[i % len(PERSPECTIVES)], seed=i)
        verdict = verify(out.text, str(p.answer), "arith")
        assert verdict.predicted_answer == str(out.answer)
        assert verdict.is_correct is (out.noise != "slip")
        assert out.noise in ("none", "slip")
        n_wrong += not verdict.is_correct
    assert abs(n_wrong / len(problems) - 0.3) < 0.03


def test_flaw_noise_keeps_the_answer_but_breaks_a_step(train):
    teacher, clean = ReferenceTeacher(NoiseConfig(flaw_rate=1.0)), ReferenceTeacher()
    for perspective in PERSPECTIVES:
        for i, p in enumerate(train[:100]):
            out = teacher.write(p, perspective, seed=i)
            assert out.noise == "flaw" and out.answer == p.answer
            assert verify(out.text, str(p.answer), "arith").is_correct is True
            assert out.text != clean.write(p, perspective, seed=i).text
            if perspective == "stepwise":  # only the flawed line's arithmetic is wrong
                lines = [STEP_LINE.match(x).groups() for x in out.text.splitlines()[:-1]]
                wrong = [k for k, (a, op, b, r) in enumerate(lines) if int(r) != _calc(int(a), op, int(b))]
                assert wrong == [out.noise_step] and out.noise_step < len(p.steps) - 1


def test_carried_flaws_run_to_the_end_and_still_state_the_right_answer(train):
    """``flaw_mode: carried``: one step is off and every later step goes on from the wrong value, so the
    chain's last result is not the answer, yet the final line states the right answer (the verifier passes it)."""
    noise = NoiseConfig(per_perspective={"stepwise": {"flaw_rate": 1.0, "flaw_mode": "carried"}})
    teacher, local = ReferenceTeacher(noise), ReferenceTeacher(NoiseConfig(flaw_rate=1.0))
    for i, p in enumerate(train[:100]):
        out = teacher.write(p, "stepwise", seed=i)
        assert out.noise == "flaw" and out.answer == p.answer
        assert verify(out.text, str(p.answer), "arith").is_correct is True
        lines = [STEP_LINE.match(x).groups() for x in out.text.splitlines()[:-1]]
        wrong = [k for k, (a, op, b, r) in enumerate(lines) if int(r) != _calc(int(a), op, int(b))]
        assert wrong == [out.noise_step]  # one wrong step; the later ones compute right from the wrong value
        assert int(lines[-1][3]) != p.answer
        for k in range(out.noise_step + 1, len(lines)):
            assert int(lines[k][0]) == int(lines[k - 1][3])  # each step starts from the last written result
        assert teacher.write(p, "equation", seed=i).noise == "none"  # other views keep the global (zero) rate
        if len(p.steps) == 1:
            assert local.write(p, "stepwise", seed=i).noise == "none"  # a local flaw needs two steps; carried does not
    with pytest.raises(ValueError, match="flaw_mode"):
        NoiseConfig(per_perspective={"stepwise": {"flaw_mode": "sideways"}})


def test_systematic_flaws_get_the_same_fact_wrong_the_same_way(train):
    """``flaw_mode: systematic``: carried flaws whose error is a fixed function of the step (a misconception):
    wherever a flawed rationale gets a fact wrong, it gets it wrong to the same value."""
    noise = NoiseConfig(per_perspective={"stepwise": {"flaw_rate": 1.0, "flaw_mode": "systematic"}})
    teacher = ReferenceTeacher(noise)
    wrong: dict[tuple, list] = {}
    for i, p in enumerate(train[:300]):
        out = teacher.write(p, "stepwise", seed=i)
        assert out.noise == "flaw" and out.answer == p.answer
        assert verify(out.text, str(p.answer), "arith").is_correct is True
        a, op, b, r = STEP_LINE.match(out.text.splitlines()[out.noise_step]).groups()
        assert int(r) != _calc(int(a), op, int(b))
        wrong.setdefault((a, op, b), []).append(int(r))
    repeated = {k: v for k, v in wrong.items() if len(v) >= 3}  # facts that went wrong at least 3 times
    assert len(repeated) >= 10
    # a fact's error is one fixed value, unless the later steps cannot go on from it (a negative or inexact
    # result), when the next offset is tried: most of a fact's wrong statements agree
    modal = sum(max(v.count(x) for x in v) for v in repeated.values())
    assert modal >= 0.75 * sum(len(v) for v in repeated.values())
    random_teacher = ReferenceTeacher(NoiseConfig(per_perspective={"stepwise": {"flaw_rate": 1.0, "flaw_mode": "carried"}}))
    spread: dict[tuple, list] = {}
    for i, p in enumerate(train[:300]):
        out = random_teacher.write(p, "stepwise", seed=i)
        a, op, b, r = STEP_LINE.match(out.text.splitlines()[out.noise_step]).groups()
        spread.setdefault((a, op, b), []).append(int(r))
    spread = {k: v for k, v in spread.items() if len(v) >= 3}
    assert sum(max(v.count(x) for x in v) for v in spread.values()) < 0.6 * sum(len(v) for v in spread.values())


def test_per_perspective_noise_override(train):
    noise = NoiseConfig(slip_rate=0.0, per_perspective={"shortcut": {"slip_rate": 1.0}})
    teacher = ReferenceTeacher(noise)
    assert teacher.write(train[0], "shortcut", 1).noise == "slip"
    assert teacher.write(train[0], "stepwise", 1).noise == "none"
    with pytest.raises(ValueError):
        NoiseConfig(per_perspective={"nope": {"slip_rate": 0.1}})
    with pytest.raises(ValueError):
        NoiseConfig(slip_rate=0.7, flaw_rate=0.7)
    with pytest.raises(ValueError):
        teacher.write(train[0], "nope", 1)


def _calc(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b if a % b == 0 else -1}[op]


# ---------------------------------------------------------------- CLI
def test_cli_end_to_end_and_idempotent(tmp_path, capsys):
    out = tmp_path / "synth"
    argv = ["--out", str(out), "--num-questions", "25", "--eval-questions", "6", "--samples", "2",
            "--perspectives", "stepwise,verbose,shortcut", "--seed", "5", "--shard-size", "10",
            "--slip-rate", "0.2", "--flaw-rate", "0.1"]  # fmt: skip
    assert main(argv) == 0
    assert "rationales" in capsys.readouterr().out

    questions = read_questions(out / "questions", verify_checksums=True)
    splits = questions.column("split").to_pylist()
    assert {s: splits.count(s) for s in set(splits)} == {
        "train": 25, "test": 6, "ood_steps": 6, "ood_template": 6, "retention": 6, "retention_train": 25,
    }  # fmt: skip
    rationales = read_rationales(out / "rationales", verify_checksums=True)
    assert rationales.num_rows == 25 * 3 * 2
    rows = rationales.to_pylist()
    assert {r["perspective"] for r in rows} == {"stepwise", "verbose", "shortcut"}
    assert {r["teacher"] for r in rows} == {"synthetic/reference"}
    assert {r["finish_reason"] for r in rows} == {"stop"}
    train_ids = {q["question_id"] for q in questions.to_pylist() if q["split"] == "train"}
    assert {r["question_id"] for r in rows} == train_ids
    for r in rows:
        noise = json.loads(r["metadata"])["noise"]
        assert r["is_correct"] is (noise != "slip")
        assert r["rationale"].endswith(f"The answer is {r['predicted_answer']}.")
    assert len({r["seed"] for r in rows}) == len(rows)

    manifests = {kind: load_manifest(out / kind) for kind in ("questions", "rationales")}
    assert [s.name for s in manifests["rationales"].shards] == ["train-00000", "train-00001", "train-00002"]
    assert manifests["rationales"].complete and manifests["rationales"].stats["rationales"] == 150

    # re-running the same command writes nothing new and reports the same totals
    assert main([*argv, "--quiet"]) == 0
    for kind, manifest in manifests.items():
        again = load_manifest(out / kind)
        assert [(s.name, s.sha256) for s in again.shards] == [(s.name, s.sha256) for s in manifest.shards]
        assert again.stats == manifest.stats
    # a different configuration refuses to mix into the same folder
    assert main([*argv[:-4], "--slip-rate", "0.3", "--quiet"]) == 2


# ---------------------------------------------------------------- per-step slips
def _one_step(problem):
    import dataclasses

    step = problem.steps[0]
    return dataclasses.replace(problem, steps=(step,), answer=step.result, step_template_ids=problem.step_template_ids[:1])


def test_default_noise_is_unchanged_by_per_step_option(train):
    import hashlib

    # digest of texts written before slip_per_step existed (same problems, seeds and rates)
    teacher = ReferenceTeacher(NoiseConfig(slip_rate=0.2, flaw_rate=0.2))
    h = hashlib.sha256()
    for i, p in enumerate(train[:40]):
        for perspective in PERSPECTIVES:
            h.update(teacher.write(p, perspective, seed=i * 7 + 1).text.encode())
            h.update(b"\0")
    assert h.hexdigest()[:16] == "08e1187f6a2e6733"
    assert NoiseConfig(slip_rate=0.2, flaw_rate=0.2).to_dict() == {
        "slip_rate": 0.2, "flaw_rate": 0.2, "per_perspective": {},
    }  # fmt: skip  # feeds run ids of existing data: no new key unless set
    assert NoiseConfig(slip_rate=0.2, slip_per_step=True).to_dict()["slip_per_step"] is True
    # a rate of 0 or 1 is the same per step as per rationale
    for rate in (0.0, 1.0):
        a = ReferenceTeacher(NoiseConfig(slip_rate=rate))
        b = ReferenceTeacher(NoiseConfig(slip_rate=rate, slip_per_step=True))
        assert [a.write(p, "stepwise", i) for i, p in enumerate(train[:30])] == [
            b.write(p, "stepwise", i) for i, p in enumerate(train[:30])
        ]
    with pytest.raises(ValueError, match="slip_per_step"):
        NoiseConfig(slip_per_step="yes")


def test_per_step_slips_make_longer_problems_fail_more(train):
    rate, n = 0.1, 4000
    two_step = [p for p in train if len(p.steps) == 2]
    one_step = [_one_step(p) for p in two_step]

    def slip_frequency(noise: NoiseConfig, problems: list) -> float:
        teacher = ReferenceTeacher(noise)
        outs = [teacher.write(problems[i % len(problems)], PERSPECTIVES[i % len(PERSPECTIVES)], seed=i) for i in range(n)]
        for i, out in enumerate(outs):
            p = problems[i % len(problems)]
            assert (out.answer != p.answer) is (out.noise == "slip")
        return sum(o.noise == "slip" for o in outs) / n

    per_step = NoiseConfig(slip_rate=rate, flaw_rate=0.05, slip_per_step=True)
    one, two = slip_frequency(per_step, one_step), slip_frequency(per_step, two_step)
    assert abs(one - rate) < 0.025
    assert abs(two - (1 - (1 - rate) ** 2)) < 0.025
    assert two > one + 0.05
    # per rationale (the default), the step count does not matter
    flat = NoiseConfig(slip_rate=rate, flaw_rate=0.05)
    assert abs(slip_frequency(flat, two_step) - rate) < 0.025
    # flaws keep their rate (2-step problems can carry one in every perspective)
    teacher = ReferenceTeacher(per_step)
    flaws = sum(teacher.write(two_step[i % len(two_step)], "stepwise", seed=i).noise == "flaw" for i in range(n))
    assert abs(flaws / n - 0.05) < 0.015


def test_per_step_option_through_the_synthetic_backend(tmp_path):
    from pipeline.synthesis import iter_question_shards, load_config, run_shard
    from pipeline.teachers import TeacherSpec, make_teacher

    options = {"slip_rate": 0.1, "flaw_rate": 0.05, "slip_per_step": True}
    teacher = make_teacher({"backend": "synthetic", "options": options})
    assert teacher.config.slip_per_step is True and teacher.teacher.noise.slip_per_step is True
    assert make_teacher({"backend": "synthetic"}).teacher.noise.slip_per_step is False
    with pytest.raises(ValueError, match=r"unknown synthetic option\(s\) \['slip_per_stp'\]"):
        TeacherSpec(backend="synthetic", options={"slip_per_stp": True})
    with pytest.raises(ValueError, match="slip_per_step"):
        make_teacher({"backend": "synthetic", "options": {"slip_per_step": "maybe"}})

    # end to end: a synthesis config with the key writes rows; the option changes the run id
    cfg = load_config(num_questions=6, samples=2, shard_size=10, teachers=[{"backend": "synthetic", "options": options}])
    flat = load_config(num_questions=6, samples=2, shard_size=10,
                       teachers=[{"backend": "synthetic", "options": {"slip_rate": 0.1, "flaw_rate": 0.05}}])  # fmt: skip
    assert cfg.run_id() != flat.run_id()
    run_id = cfg.run_id()
    results = [run_shard(cfg, tmp_path / run_id, run_id, name, qs) for name, qs in iter_question_shards(cfg)]
    assert sum(r.rows for r in results) == 6 * len(PERSPECTIVES) * 2
    rows = read_rationales(tmp_path / run_id).to_pylist()
    assert {r["finish_reason"] for r in rows} == {"stop"}
