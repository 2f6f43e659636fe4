"""The MIND trainer on a tiny local student (docs/method.md): the forward pass, GA invariance, warm-up,
resume, every strategy and ablation end to end, compute accounting.

Everything runs the real code paths (``MindTrainer`` = TRL ``SFTTrainer`` + HF ``Trainer``) on CPU in
float32 with a tiny random Llama and a small synthetic rationale set (``tests.trainer_fixtures``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from data_schemas.run_files import MIND_STATE
from distill.data import CandidateCollator, CandidateStore
from distill.losses import student_forward
from distill.trainer import MindTrainer
from tests.trainer_fixtures import (
    load_model,
    load_tokenizer,
    make_trainer,
    mind_config,
    split_questions,
    trainer_assets,  # noqa: F401 - the session fixture
)

torch.set_num_threads(1)

# meta_features "full": without the candidate's own loss feature (the default "no_target"), one MetaNet weight
# of 24,576 has a near-zero gradient whose rounding noise (inputs from differently padded forwards, ~1e-7
# apart) Adam turns into steps of up to ~6e-3 at this large test rate; the bookkeeping tested here is the same
# the frozen warm-up (these tests check its mechanics) and the earlier defaults; today's default MIND has its own cases
MIND_KW = dict(meta_warmup_steps=2, meta_accumulation_steps=2, meta_learning_rate=0.05, meta_features="full",
               meta_warmup_student="frozen")
#: today's defaults (uniform warm-up, instant target, the answer line's loss) with the tests' short warm-up
DEFAULT_MIND_KW = dict(meta_warmup_steps=2, meta_accumulation_steps=2, meta_learning_rate=0.05)


# ---------------------------------------------------------------- helpers
def _losses(trainer: MindTrainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h and "train_loss" not in h]


def _params(trainer: MindTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters()}


def _assert_states_close(a, b, rtol: float = 1e-6, atol: float = 1e-9) -> None:
    """Recursive comparison of (nested) state dicts: tensors/floats close, everything else equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_states_close(a[k], b[k], rtol, atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_states_close(x, y, rtol, atol)
    elif torch.is_tensor(a):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)
        else:
            assert torch.equal(a, b)
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rtol, abs=atol)
    else:
        assert a == b


class _PlanSpy:
    """Wraps ``trainer.strategy.plan`` and records every micro-batch's candidates and plan."""

    def __init__(self, trainer: MindTrainer):
        self.trainer, self.calls = trainer, []
        self._orig = trainer.strategy.plan
        trainer.strategy.plan = self

    def __call__(self, batch, scored, stats):
        plan = self._orig(batch, scored, stats)
        self.calls.append({
            "step": batch.step, "epoch": self.trainer.collator.epoch, "groups": batch.groups, "qidx": batch.question_index,
            "uids": batch.uids, "views": batch.views, "ce": None if scored is None else scored.ce.clone(),
            "keep": plan.keep.clone(), "alpha": plan.alpha.clone(), "scores": plan.scores,
            "frozen": self.trainer.strategy.student_frozen(batch.step),
            "warmup": getattr(self.trainer.strategy, "in_warmup", lambda _: False)(batch.step),
        })  # fmt: skip
        return plan

# ---------------------------------------------------------------- 1. per-candidate loss
def _fused_model_and_batch(assets, questions: int):
    """The tiny student with TRL's fused LM head, its collated first ``questions`` training questions, and their store."""
    from trl.trainer.utils import add_fused_lm_head

    model = load_model(assets)
    add_fused_lm_head(model)
    train, _, views = split_questions(assets)
    store = CandidateStore(train[:questions], len(views), seed=0)
    batch = CandidateCollator(store, load_tokenizer(assets).pad_token_id)([{"question_index": i} for i in range(questions)])
    return model, batch, store


def test_sequence_nll_matches_hand_computation(trainer_assets):
    model, batch, store = _fused_model_and_batch(trainer_assets, 3)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["cand_labels"]
    lengths = mask.sum(dim=1)
    assert lengths.min() < ids.shape[1], "the batch must contain right padding"
    assert (labels[mask == 0] == -100).all()
    # the prompt is not labelled: the first label sits at prompt_len
    for row, (q, v) in enumerate((q, v) for q in store.questions for v in q.views):
        assert (labels[row, : v.prompt_lens[0]] == -100).all() and labels[row, v.prompt_lens[0]] != -100

    with torch.no_grad():
        got = student_forward(model, ids, mask, labels).nll
        logits = model(input_ids=ids, attention_mask=mask).logits.to(torch.float64)
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, 1:]
    keep = target != -100
    tok_logp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    want = -(tok_logp * keep).sum(dim=1) / keep.sum(dim=1)
    assert got.shape == (ids.shape[0],)
    torch.testing.assert_close(got.to(torch.float64), want, rtol=1e-5, atol=1e-5)

    # padding does not leak: each row alone, unpadded, gives the same loss
    with torch.no_grad():
        for row in (int(lengths.argmin()), int(lengths.argmax())):
            n = int(lengths[row])
            alone = student_forward(model, ids[row : row + 1, :n], mask[row : row + 1, :n], labels[row : row + 1, :n]).nll
            torch.testing.assert_close(alone[0], got[row], rtol=1e-5, atol=1e-5)


def test_student_forward_representation_and_answer_distributions(trainer_assets):
    """The pooled hidden state and the answer-span log-distributions equal a plain forward's."""
    model, b, _ = _fused_model_and_batch(trainer_assets, 2)
    with torch.no_grad():
        out = student_forward(
            model, b["input_ids"], b["attention_mask"], b["cand_labels"], answer_start=b["cand_answer_start"],
            answer_len=b["cand_answer_len"], reps=True,
        )  # fmt: skip
        plain = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
    hidden = plain.hidden_states[-1]
    logp = torch.log_softmax(plain.logits.float(), dim=-1)
    for row in range(b["input_ids"].shape[0]):
        lab = b["cand_labels"][row] != -100
        torch.testing.assert_close(out.reps[row], hidden[row][lab].mean(dim=0), rtol=1e-5, atol=1e-5)
        s, n = int(b["cand_answer_start"][row]), int(b["cand_answer_len"][row])
        assert n > 0 and int(out.answer_mask[row].sum()) == n
        torch.testing.assert_close(out.answer_logp[row, :n], logp[row, s - 1 : s - 1 + n], rtol=1e-5, atol=1e-5)
        # the answer tokens are the most likely continuation's targets: each is the label at its position
        assert (b["cand_labels"][row, s : s + n] == b["input_ids"][row, s : s + n]).all()
        # the answer line's loss (--candidate_loss answer): those tokens' mean NLL under the plain forward
        tokens = b["input_ids"][row, s : s + n]
        want = -logp[row, s - 1 : s - 1 + n].gather(-1, tokens.unsqueeze(-1)).mean()
        torch.testing.assert_close(out.answer_nll[row], want, rtol=1e-5, atol=1e-5)
    assert out.answer_nll.shape == (b["input_ids"].shape[0],) and not torch.equal(out.answer_nll, out.nll)


# ---------------------------------------------------------------- 2. GA=1 equals GA=k
def _run_layout(assets, out: Path, strategy: str, batch: int, ga: int, **kw) -> dict:
    trainer = make_trainer(
        assets, out / f"{strategy}-{batch}x{ga}", strategy=strategy,
        per_device_train_batch_size=batch, gradient_accumulation_steps=ga, **kw,
    )  # fmt: skip
    spy = _PlanSpy(trainer)
    trainer.train()
    kept = sorted((c["step"], int(u)) for c in spy.calls for u in c["uids"][c["keep"]])
    return {
        "losses": _losses(trainer),
        "grad_norms": [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h],
        "params": _params(trainer),
        "mind": trainer.mind.state_dict(),
        "strategy": trainer.strategy.state_dict(),
        "kept": kept,
        "steps": trainer.state.global_step,
    }


@pytest.mark.parametrize(
    ("strategy", "layouts", "steps", "extra"),
    [
        ("all", [(4, 1), (2, 2), (1, 4)], 3, {}),
        ("random", [(4, 1), (1, 4)], 3, {}),
        ("mcc_kd", [(4, 1), (2, 2), (1, 4)], 3, {}),
        ("mind", [(4, 1), (2, 2), (1, 4)], 6, MIND_KW),
        ("mind", [(4, 1), (2, 2)], 5, {**MIND_KW, "scoring": "separate", "meta_warmup_student": "uniform"}),
    ],
)
def test_gradient_accumulation_matches_one_big_batch(trainer_assets, tmp_path, strategy, layouts, steps, extra):
    """Same effective batch of 4 questions: identical losses, weights, statistics, MetaNet and subsets.

    The MetaNet's inputs (pooled hidden states, CE) come from forwards over other padded shapes in
    each layout (float32 differences ~1e-7); Adam normalises its meta-gradients, so its weights, and
    the scores summed into the per-view totals, agree to ~1e-4 (a rare weight with a near-zero
    gradient to a few 1e-4: far below one Adam step of 0.05) rather than 1e-6."""
    assert getattr(load_model(trainer_assets).config, "attention_dropout", 0.0) == 0.0  # no dropout anywhere
    runs = {lay: _run_layout(trainer_assets, tmp_path, strategy, *lay, max_steps=steps, **extra) for lay in layouts}
    ref = runs[layouts[0]]
    assert ref["steps"] == steps and len(ref["losses"]) == steps
    if strategy == "mind":  # the MetaNet did learn, and steered (else the comparison would be vacuous)
        assert ref["strategy"]["metanet"]["head_w2"].abs().max() > 1e-3 and ref["strategy"]["meta_steps"] >= 2
        assert any(h.get("meta_loss") for h in ref["mind"]["history"])
    for lay in layouts[1:]:
        run = runs[lay]
        assert run["steps"] == steps
        assert run["kept"] == ref["kept"], lay
        assert run["losses"] == pytest.approx(ref["losses"], rel=1e-5), lay
        assert run["grad_norms"] == pytest.approx(ref["grad_norms"], rel=1e-4), lay
        for name, p in ref["params"].items():
            torch.testing.assert_close(run["params"][name], p, rtol=0, atol=1e-5, msg=f"{lay} {name}")
        _assert_states_close(run["mind"], ref["mind"], rtol=1e-4, atol=1e-5)
        _assert_states_close(run["strategy"], ref["strategy"], rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------- 3. warm-up
def test_frozen_warmup_leaves_the_student_unchanged_while_the_metanet_learns(trainer_assets, tmp_path):
    trainer = make_trainer(
        trainer_assets, tmp_path, strategy="mind", max_steps=4, meta_warmup_steps=3, meta_accumulation_steps=1,
        meta_learning_rate=0.05, weight_decay=0.1, meta_warmup_student="frozen",
    )  # fmt: skip
    before = _params(trainer)
    meta_before = {k: v.clone() for k, v in trainer.strategy.metanet.state_dict().items()}
    steps_seen = []

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            steps_seen.append({k: v.detach().clone() for k, v in model.named_parameters()})

    trainer.add_callback(Probe())
    spy = _PlanSpy(trainer)
    trainer.train()
    for step in range(3):  # warm-up: not one weight moved, weight decay included
        for name, p in before.items():
            assert torch.equal(steps_seen[step][name], p), (step, name)
    assert any(not torch.equal(steps_seen[3][n], p) for n, p in before.items())  # step 4 trains the student
    assert [c["frozen"] for c in spy.calls] == [True, True, True, False]
    assert all(c["keep"].all() for c in spy.calls[:3])
    after = trainer.strategy.metanet.state_dict()
    assert any(not torch.equal(after[k], meta_before[k]) for k in meta_before)
    assert trainer.strategy.meta_steps == 4
    c = trainer.summary()["compute"]
    assert c["forward_tokens"] > 0 and c["backward_tokens"] > 0  # warm-up scoring is forward-only


@pytest.mark.parametrize("scheduler", ["linear", "cosine"])
def test_the_lr_schedule_can_start_when_the_frozen_warm_up_ends(trainer_assets, tmp_path, scheduler):
    """--lr_schedule_after_meta_warmup: learning rate 0 while the student is frozen, then the schedule
    of the remaining steps (its own warm-up first) from the student's first update on."""
    from transformers.optimization import get_scheduler

    kw = dict(strategy="mind", max_steps=7, meta_warmup_steps=3, meta_accumulation_steps=1, learning_rate=1e-3,
              lr_scheduler_type=scheduler, warmup_steps=2, meta_warmup_student="frozen")  # fmt: skip
    lrs: dict[str, list[float]] = {}
    for shifted in (False, True):
        trainer = make_trainer(trainer_assets, tmp_path / str(shifted), lr_schedule_after_meta_warmup=shifted, **kw)
        seen: list[float] = []

        class Probe(TrainerCallback):
            def on_step_begin(self, args, state, control, optimizer=None, **_):
                seen.append(optimizer.param_groups[0]["lr"])

        trainer.add_callback(Probe())
        before = _params(trainer)
        trainer.train()
        assert any(not torch.equal(_params(trainer)[n], p) for n, p in before.items())
        lrs[str(shifted)] = seen
    def reference(steps: int) -> list[float]:  # the schedule on its own, over ``steps`` steps
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched = get_scheduler(scheduler, optimizer=opt, num_warmup_steps=2, num_training_steps=steps)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert lrs["True"] == pytest.approx([0.0, 0.0, 0.0, *reference(4)])  # warm-up from the first student step
    # by default the frozen steps use up the warm-up: the first student update runs past it (step 3 of 7)
    assert lrs["False"] == pytest.approx(reference(7)) and lrs["False"][3] > lrs["True"][3]


def test_uniform_warmup_trains_on_every_candidate_with_equal_weights(trainer_assets, tmp_path):
    trainer = make_trainer(trainer_assets, tmp_path, strategy="mind", max_steps=2, meta_warmup_steps=2, meta_warmup_student="uniform")
    before = _params(trainer)
    spy = _PlanSpy(trainer)
    trainer.train()
    assert any(not torch.equal(_params(trainer)[n], p) for n, p in before.items())
    for c in spy.calls:
        assert c["keep"].all() and not c["frozen"]
        sizes = torch.bincount(c["groups"]).to(torch.float64)
        torch.testing.assert_close(c["alpha"], 1.0 / sizes[c["groups"]])


# ---------------------------------------------------------------- 4. resume
def test_resume_restores_metanet_statistics_and_accumulation_exactly(trainer_assets, tmp_path):
    # accumulation 2 and a checkpoint after step 3: the MetaNet's half-accumulated gradient must survive
    kw = dict(strategy="mind", max_steps=6, save_strategy="steps", save_steps=3, history_every=2, **MIND_KW)
    full = make_trainer(trainer_assets, tmp_path / "full", **kw)
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-3"
    assert (ckpt / MIND_STATE).exists() and (tmp_path / "full" / "checkpoint-6" / MIND_STATE).exists()
    saved = torch.load(ckpt / MIND_STATE, weights_only=False)
    assert saved["mind"]["stats"]["last_step"].max() == 2  # the statistics after 3 steps (0-based step 2)
    assert saved["strategy"]["accumulated"] == 1 and any(g is not None for g in saved["strategy"]["grads"])
    assert [h["step"] for h in saved["mind"]["history"]] == [2]

    resumed = make_trainer(trainer_assets, tmp_path / "resumed", **kw)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 6
    for name, p in _params(full).items():
        assert torch.equal(_params(resumed)[name], p), name
    _assert_states_close(resumed.strategy.state_dict(), full.strategy.state_dict(), rtol=0, atol=0)
    _assert_states_close(resumed.mind.state_dict(), full.mind.state_dict(), rtol=0, atol=0)
    assert [h["step"] for h in full.mind.history] == [2, 4, 6]
    assert _losses(resumed)[-3:] == _losses(full)[-3:]
    assert resumed.summary() == full.summary()


def test_resume_rejects_a_checkpoint_without_mind_state(trainer_assets, tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    trainer = make_trainer(trainer_assets, tmp_path, strategy="random", max_steps=1)
    with pytest.raises(ValueError, match="not a MIND checkpoint"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))


# ---------------------------------------------------------------- 5. every strategy and ablation
def _mean_nll(trainer: MindTrainer, questions: list) -> float:
    from distill.data import pad_sequences

    seqs = [(v.samples[0], v.prompt_lens[0]) for q in questions for v in q.views]
    batch = pad_sequences([s for s, _ in seqs], [p for _, p in seqs], trainer.collator.pad_id)
    with torch.no_grad():
        return float(student_forward(trainer.model, **batch).nll.mean())


def _check_plan(strategy: str, c: dict, trainer: MindTrainer, extra: dict) -> None:
    """What each strategy's subset and weights must look like in one micro-batch."""
    nq = int(c["qidx"].numel())
    kept = torch.zeros(nq, dtype=torch.long).index_add(0, c["groups"], c["keep"].long())
    sizes = torch.bincount(c["groups"], minlength=nq)
    w_sum = torch.zeros(nq, dtype=torch.float64).index_add(0, c["groups"], c["alpha"])
    torch.testing.assert_close(w_sum, torch.ones_like(w_sum))  # the weights sum to 1 per question
    assert (c["alpha"][~c["keep"]] == 0).all()
    if strategy == "all" or c["warmup"]:  # frozen or uniform: every candidate, equal weights
        assert torch.equal(kept, sizes)
    elif strategy in ("golden", "random", "lowest_loss") or (strategy == "mind" and extra.get("fusion") is False):
        assert (kept == 1).all()
    elif strategy == "mcc_kd":
        assert (kept == torch.clamp(sizes, max=2)).all()
        assert trainer.strategy.diverse[c["uids"][c["keep"]]].all()
    for g in range(nq):
        rows = (c["groups"] == g).nonzero().flatten()
        if strategy == "lowest_loss":
            assert c["keep"][rows[torch.argmin(c["ce"][rows])]]
        if strategy in ("instant", "mind") and c["scores"] is not None and not c["warmup"]:
            s = c["scores"][rows].double() / trainer.args.tau_student
            p = torch.softmax(s, 0)
            if extra.get("fusion") is not False:  # the subset rule, on the scores the plan used
                want = p >= trainer.args.fusion_beta * p.max() - 1e-12
                assert torch.equal(c["keep"][rows], want)
                torch.testing.assert_close(c["alpha"][rows][want], p[want] / p[want].sum())
            if strategy == "instant":
                torch.testing.assert_close(c["scores"][rows].double(), -c["ce"][rows])


@pytest.mark.parametrize(
    ("strategy", "extra"),
    [
        ("golden", {}), ("all", {}), ("mcc_kd", {}), ("random", {}), ("lowest_loss", {}), ("instant", {}),
        ("mind", MIND_KW),
        ("mind", DEFAULT_MIND_KW),
        ("mind", {**DEFAULT_MIND_KW, "fusion": False}),
        ("mind", {**MIND_KW, "meta_attention": False}),
        ("mind", {**MIND_KW, "fusion": False}),
        ("mind", {**MIND_KW, "consistency_weight": 0.0}),
        ("mind", {**MIND_KW, "meta_target": "instant"}),
        ("mind", {**MIND_KW, "meta_warmup_steps": 0}),
        ("instant", {"scoring": "separate"}),
    ],
    ids=lambda x: x if isinstance(x, str) else "-".join(f"{k}={v}" for k, v in x.items() if k not in MIND_KW or x[k] != MIND_KW[k]) or "default",
)  # fmt: skip
def test_every_strategy_and_ablation_trains(trainer_assets, tmp_path, strategy, extra):
    train, _, views = split_questions(trainer_assets)
    train = train[:8]  # 2 steps per epoch, 3 epochs: the golden pick must survive the epoch change
    trainer = make_trainer(
        trainer_assets, tmp_path, train=train, views=views, strategy=strategy, max_steps=-1, num_train_epochs=3,
        learning_rate=3e-3, history_every=2, **extra,
    )  # fmt: skip
    spy = _PlanSpy(trainer)
    before = _mean_nll(trainer, train)
    trainer.train()
    after = _mean_nll(trainer, train)
    losses = _losses(trainer)
    assert trainer.state.global_step == 6 and len(losses) == 6
    assert all(math.isfinite(x) for x in losses)
    assert after < before  # the student learned something from its subset

    summary = trainer.summary()
    assert summary["strategy"] == strategy
    assert sum(v["kept_share"] for v in summary["views"].values()) == pytest.approx(1.0)
    assert sum(v["kept"] for v in summary["views"].values()) == sum(int(c["keep"].sum()) for c in spy.calls)
    assert sum(v["present"] for v in summary["views"].values()) == sum(c["uids"].numel() for c in spy.calls)
    assert [h["step"] for h in summary["history"]] == [2, 4, 6]
    assert all(summary["views"][v]["L_p"] is not None for v in summary["views"] if summary["views"][v]["kept"])
    c = summary["compute"]
    assert c["flops"] == pytest.approx(6 * c["params"] * c["backward_tokens"] + 2 * c["params"] * c["forward_tokens"])
    assert 0 < c["trained_tokens"] <= c["backward_tokens"]
    logs = [h for h in trainer.state.log_history if "loss" in h and "train_loss" not in h]
    assert all("mind/subset_size" in h and "mind/flops" in h for h in logs)
    if strategy in ("mind", "instant", "mcc_kd") and extra.get("consistency_weight", 0.1) > 0 and extra.get("fusion", True):
        after_warmup = [h for h in logs if h["step"] > extra.get("meta_warmup_steps", 0)]
        assert any(h["mind/consistency"] > 0 for h in after_warmup)
    if strategy == "mind":
        assert all(k in logs[-1] for k in ("mind/meta_loss", "mind/meta_top1", "mind/meta_spearman"))
        assert summary["meta_steps"] == 3 and all(v["mean_score"] is not None for v in summary["views"].values())
        if extra.get("consistency_weight") == 0.0 or extra.get("fusion") is False:  # no term, or no pair
            assert all(h["mind/consistency"] == 0 for h in logs)

    store = trainer.store
    where = {v.uid: (q, v) for q in store.questions for v in q.views}
    golden: dict[int, set[int]] = {}
    assert {c["epoch"] for c in spy.calls} == {0, 1, 2}
    for c in spy.calls:
        _check_plan(strategy, c, trainer, extra)
        if strategy == "golden":
            for g, u in zip(c["groups"][c["keep"]].tolist(), c["uids"][c["keep"]].tolist(), strict=True):
                golden.setdefault(int(c["qidx"][g]), set()).add(u)
    if strategy == "golden":
        assert sorted(golden) == list(range(8)) and all(len(u) == 1 for u in golden.values())
    for q in store.questions:  # each question's candidates, with their sample for the epoch
        for v in q.views:
            assert where[v.uid] == (q, v)


def test_shared_and_separate_scoring_train_the_same_student(trainer_assets, tmp_path):
    """The same method computed two ways: one forward with grad over every candidate, or a no-grad
    scoring forward then forward+backward over the kept ones: same subsets, losses and weights; the
    compute account differs as documented."""
    runs = {}
    for mode in ("shared", "separate"):
        t = make_trainer(trainer_assets, tmp_path / mode, strategy="mind", max_steps=5, scoring=mode, **MIND_KW)
        spy = _PlanSpy(t)
        t.train()
        runs[mode] = (t, spy)
    (a, sa), (b, sb) = runs["shared"], runs["separate"]
    assert [c["keep"].tolist() for c in sa.calls] == [c["keep"].tolist() for c in sb.calls]
    assert _losses(a) == pytest.approx(_losses(b), rel=1e-5)
    for name, p in _params(a).items():
        torch.testing.assert_close(_params(b)[name], p, rtol=0, atol=1e-5)
    ca, cb = a.summary()["compute"], b.summary()["compute"]
    total = ca["backward_tokens"] + ca["forward_tokens"]
    assert ca["trained_tokens"] == cb["trained_tokens"]
    # separate: every candidate is scored forward-only, the kept ones are trained
    assert cb["forward_tokens"] == total
    assert cb["backward_tokens"] < total and cb["flops"] < ca["flops"]


def test_candidates_judged_by_their_answer_line(trainer_assets, tmp_path):
    """--candidate_loss answer: the strategy judges each candidate by its answer line's NLL (the same in
    both scoring modes), not by its whole completion's CE; the student still trains on the completion."""
    runs = {}
    for mode in ("shared", "separate"):
        t = make_trainer(trainer_assets, tmp_path / mode, strategy="lowest_loss", max_steps=3, scoring=mode,
                         candidate_loss="answer")  # fmt: skip
        spy, outputs, forward = _PlanSpy(t), [], t._forward

        def spy_forward(model, inputs, rows, *, reps, answers, forward=forward, outputs=outputs):
            out = forward(model, inputs, rows, reps=reps, answers=answers)
            outputs.append(out)
            return out

        t._forward = spy_forward
        t.train()
        runs[mode] = (t, spy, outputs)
    (a, sa, outs), (b, sb, _) = runs["shared"], runs["separate"]
    assert len(sa.calls) == len(outs) == 3  # shared: the scoring forward is the training forward
    for call, out in zip(sa.calls, outs, strict=True):
        torch.testing.assert_close(call["ce"], out.answer_nll.detach().cpu().double())
        assert not torch.allclose(call["ce"], out.nll.detach().cpu().double())
    assert [c["keep"].tolist() for c in sa.calls] == [c["keep"].tolist() for c in sb.calls]
    for x, y in zip(sa.calls, sb.calls, strict=True):
        torch.testing.assert_close(x["ce"], y["ce"], rtol=1e-5, atol=1e-6)
    assert _losses(a) == pytest.approx(_losses(b), rel=1e-5)
    with pytest.raises(ValueError, match="--candidate_loss is only used by --strategy"):
        make_trainer(trainer_assets, tmp_path / "all", strategy="all", candidate_loss="answer")


@pytest.mark.parametrize("strategy", ["mind", "all"])
def test_gradient_share_is_measured_without_changing_training(trainer_assets, tmp_path, strategy):
    """--grad_share_every: each view's (and the consistency term's) share of the student's gradient on
    the measured steps, in the logs and the history; the student trains exactly as without it."""
    kw = dict(strategy=strategy, max_steps=4, gradient_accumulation_steps=2, history_every=2, **MIND_KW)
    plain = make_trainer(trainer_assets, tmp_path / "plain", **kw)
    plain.train()
    measured = make_trainer(trainer_assets, tmp_path / "measured", grad_share_every=2, **kw)
    spy = _PlanSpy(measured)
    measured.train()
    assert _losses(measured) == _losses(plain)
    for name, p in _params(plain).items():
        assert torch.equal(_params(measured)[name], p)
    logs = [h for h in measured.state.log_history if any(k.startswith("mind/grad_share/") for k in h)]
    frozen = MIND_KW["meta_warmup_steps"] if strategy == "mind" else 0  # no student gradient while frozen
    assert len(logs) == len([s for s in range(4) if s % 2 == 0 and s >= frozen])
    history = [e for e in measured.summary()["history"] if "grad_share" in e]
    assert [e["step"] for e in history] == [s for s in (2, 4) if s > frozen]
    for e in history:
        assert sum(e["grad_share"].values()) == pytest.approx(1.0, abs=1e-4)
        kept = {measured.mind.views[int(v)] for c in spy.calls if c["step"] == e["step"] - 2
                for v in c["views"][c["keep"]].tolist()}  # fmt: skip
        assert set(e["grad_share"]) - {"consistency"} == kept
        assert ("consistency" in e["grad_share"]) == (strategy == "mind")
    assert "grad_share" not in plain.summary()["history"][-1]


# ---------------------------------------------------------------- 6. bad flags
@pytest.mark.parametrize(
    ("flag", "value"),
    [("fusion_beta", 0.0), ("fusion_beta", 1.5), ("consistency_weight", -0.1), ("tau_student", 0.0),
     ("meta_learning_rate", -1e-3), ("meta_accumulation_steps", 0), ("meta_warmup_steps", -1), ("strategy", "inertia"),
     ("meta_target", "fresh"), ("answer_template", "no placeholder"), ("meta_hidden", 30)],
)  # fmt: skip
def test_bad_flags_fail_before_training_naming_the_flag(flag, value):
    with pytest.raises(ValueError, match=f"--{flag}"):
        mind_config("unused", **{flag: value})


def test_flags_that_only_one_strategy_reads_are_refused_elsewhere():
    with pytest.raises(ValueError, match="--meta_encoder is only used by --strategy mind"):
        mind_config("unused", strategy="all", meta_encoder="/models/encoder")
    with pytest.raises(ValueError, match="--lr_schedule_after_meta_warmup is only used by --strategy mind"):
        mind_config("unused", strategy="all", lr_schedule_after_meta_warmup=True)
    with pytest.raises(ValueError, match="--consistency_weight > 0 needs an answer span"):
        mind_config("unused", strategy="mind", answer_template="")
    assert mind_config("unused", strategy="all", answer_template="").answer_template == ""


# ---------------------------------------------------------------- 7. non-finite loss
class _PoisonAfterSave(TrainerCallback):
    """After the checkpoint of ``step`` is written, put an inf into one weight (a diverged update)."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.model.norm.weight[0] = math.inf


def test_non_finite_loss_stops_with_step_and_last_checkpoint(trainer_assets, tmp_path):
    from safetensors.torch import load_file

    trainer = make_trainer(
        trainer_assets, tmp_path, strategy="mind", max_steps=6, save_strategy="steps", save_steps=2,
        callbacks=[_PoisonAfterSave(2)], meta_warmup_steps=0,
    )  # fmt: skip
    with pytest.raises(FloatingPointError) as err:
        trainer.train()
    msg = str(err.value)
    ckpt = tmp_path / "checkpoint-2"
    assert "non-finite loss" in msg and "step 3 (after 2 completed)" in msg and str(ckpt) in msg
    assert trainer.state.global_step == 2  # stopped before the update of the third step
    assert (ckpt / MIND_STATE).exists() and not (tmp_path / "checkpoint-4").exists()
    weights = load_file(ckpt / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())  # the last good checkpoint is intact
    state = torch.load(ckpt / MIND_STATE, weights_only=False)
    assert state["mind"]["stats"]["last_step"].max() == 1


def test_non_finite_loss_before_any_checkpoint_says_so(trainer_assets, tmp_path):
    model = load_model(trainer_assets)
    with torch.no_grad():
        model.model.norm.weight[0] = math.nan
    trainer = make_trainer(trainer_assets, tmp_path, model=model, strategy="random", max_steps=2)
    with pytest.raises(FloatingPointError, match="none saved yet"):
        trainer.train()


def test_prompt_longer_than_max_length_names_the_question(trainer_assets):  # noqa: F811
    from data_schemas import ContractError
    from distill.data import load_questions_with_candidates

    tok = load_tokenizer(trainer_assets)
    with pytest.raises(ContractError, match=r"question .*max_length"):
        load_questions_with_candidates(trainer_assets.data_dir, tok, "plain", max_length=4)
