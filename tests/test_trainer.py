"""The MIND trainer on a tiny local student (DESIGN §5): losses, GA invariance, gate, TA, resume, strategies.

Everything runs the real code paths (``MindTrainer`` = TRL ``SFTTrainer`` + HF ``Trainer``) on CPU in
float32 with a tiny random Llama and a small synthetic rationale set (``tests.trainer_fixtures``).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from distill.data import CandidateCollator, CandidateStore
from distill.ta import gate, grouped_log_softmax, sample_picks
from distill.trainer import MIND_STATE, MindState, MindTrainer, sequence_nll
from tests.trainer_fixtures import (
    load_model,
    load_tokenizer,
    make_trainer,
    mind_config,
    split_questions,
    trainer_assets,  # noqa: F401 - the session fixture
)

torch.set_num_threads(1)


# ---------------------------------------------------------------- helpers
def _losses(trainer: MindTrainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h and "train_loss" not in h]


def _params(trainer: MindTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters()}


def _assert_states_close(a: dict, b: dict, rtol: float = 1e-6, atol: float = 1e-9) -> None:
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


class _PickSpy:
    """Wraps ``trainer._choose`` and records every micro-batch's candidates and picks."""

    def __init__(self, trainer: MindTrainer):
        self.trainer, self.calls = trainer, []
        self._orig = trainer._choose
        trainer._choose = self

    def __call__(self, model, inputs):
        t = self.trainer
        before = t.mind.stats.candidate_loss(inputs["cand_uid"].cpu(), inputs["cand_view"].cpu())[0]
        picked, weights, fresh = self._orig(model, inputs)
        self.calls.append(
            {
                "step": t.state.global_step,
                "epoch": t.collator.epoch,
                "ready": t.mind.stats.ready,
                "lhat": before,
                "groups": inputs["cand_question"].cpu(),
                "qidx": inputs["question_index"].cpu(),
                "uids": inputs["cand_uid"].cpu(),
                "input_ids": inputs["input_ids"].cpu(),
                "picked": picked.clone(),
                "weights": weights.clone(),
            }
        )
        return picked, weights, fresh


# ---------------------------------------------------------------- 1. per-candidate loss
def test_sequence_nll_matches_hand_computation(trainer_assets):
    from trl.trainer.utils import add_fused_lm_head

    model = load_model(trainer_assets)
    add_fused_lm_head(model)
    tok = load_tokenizer(trainer_assets)
    train, _, views = split_questions(trainer_assets)
    store = CandidateStore(train[:3], len(views), seed=0)
    batch = CandidateCollator(store, tok.pad_token_id)([{"question_index": i} for i in range(3)])
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["cand_labels"]
    lengths = mask.sum(dim=1)
    assert lengths.min() < ids.shape[1], "the batch must contain right padding"
    assert (labels[mask == 0] == -100).all()
    # the prompt is not labelled: the first label sits at prompt_len
    for row, (q, v) in enumerate((q, v) for q in store.questions for v in q.views):
        assert (labels[row, : v.prompt_lens[0]] == -100).all() and labels[row, v.prompt_lens[0]] != -100

    with torch.no_grad():
        got = sequence_nll(model, ids, mask, labels)
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
            alone = sequence_nll(model, ids[row : row + 1, :n], mask[row : row + 1, :n], labels[row : row + 1, :n])
            torch.testing.assert_close(alone[0], got[row], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 2. GA=1 equals GA=k
def _run_layout(assets, out: Path, strategy: str, batch: int, ga: int, **kw) -> dict:
    trainer = make_trainer(
        assets, out / f"{strategy}-{batch}x{ga}", strategy=strategy,
        per_device_train_batch_size=batch, gradient_accumulation_steps=ga, **kw,
    )  # fmt: skip
    spy = _PickSpy(trainer)
    trainer.train()
    picks = sorted((c["step"], int(u)) for c in spy.calls for u in c["uids"][c["picked"]])
    return {
        "losses": _losses(trainer),
        "grad_norms": [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h],
        "params": _params(trainer),
        "stats": trainer.mind.stats.state_dict(),
        "ta": trainer.mind.ta.state_dict(),
        "picks": picks,
        "pick_counts": dict(trainer.mind.picks),
        "weights": dict(trainer.mind.weights),
        "history": trainer.mind.history,
        "steps": trainer.state.global_step,
    }


@pytest.mark.parametrize(
    ("strategy", "feedback", "layouts", "steps"),
    [
        ("all", "inertia", [(4, 1), (2, 2), (1, 4)], 3),
        ("random", "inertia", [(4, 1), (2, 2), (1, 4)], 3),
        ("mind", "inertia", [(4, 1), (2, 2), (1, 4)], 6),
        ("mind", "fresh", [(4, 1), (2, 2)], 4),
    ],
)
def test_gradient_accumulation_matches_one_big_batch(trainer_assets, tmp_path, strategy, feedback, layouts, steps):
    """Same effective batch of 4 questions: identical losses, weights, statistics, TA and picks.

    Guards two bugs found here: the TA's output bias (a no-op under the per-question softmax) took
    Adam steps of +-lr from round-off, and ``fresh`` feedback centred its first step on the
    micro-batch (so GA=k saw other z-scores and picks than GA=1); see ``distill/ta.py`` and
    ``MindTrainer._choose``."""
    assert getattr(load_model(trainer_assets).config, "attention_dropout", 0.0) == 0.0  # no dropout anywhere
    kw = dict(max_steps=steps, feedback=feedback, probe_every=1, ta_learning_rate=0.05)
    runs = {lay: _run_layout(trainer_assets, tmp_path, strategy, *lay, **kw) for lay in layouts}
    ref = runs[layouts[0]]
    assert ref["steps"] == steps and len(ref["losses"]) == steps
    if strategy == "mind":  # the TA did learn something (else the comparison would be vacuous)
        assert ref["ta"]["net.2.weight"].abs().max() > 1e-4
        assert any("ta_reward" in h for h in ref["history"])
    for lay in layouts[1:]:
        run = runs[lay]
        assert run["steps"] == steps
        assert run["picks"] == ref["picks"], lay
        assert run["pick_counts"] == ref["pick_counts"]
        assert run["losses"] == pytest.approx(ref["losses"], rel=1e-5), lay
        assert run["grad_norms"] == pytest.approx(ref["grad_norms"], rel=1e-4), lay
        for name, p in ref["params"].items():
            torch.testing.assert_close(run["params"][name], p, rtol=0, atol=1e-5, msg=f"{lay} {name}")
        _assert_states_close(run["stats"], ref["stats"], rtol=1e-6, atol=1e-6)
        # the TA sees float32 round-off of the student through the reward (a relative decrease of the probe
        # loss, ~1e-6 relative noise) and Adam normalises its small gradients: a few 1e-5, far below one step
        _assert_states_close(run["ta"], ref["ta"], rtol=0, atol=1e-4)
        _assert_states_close(run["weights"], ref["weights"], rtol=1e-9)
        _assert_states_close(run["history"], ref["history"], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- 3. the capability gate
def test_gate_unit_far_candidate_gets_near_zero_mass():
    z = torch.tensor([5.0, 0.0, 0.3, -0.5, 1.0, 0.8, 0.0, 4.0])
    groups = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    offset = gate(z, gamma=4.0, kappa=1.0)
    # -gamma * relu(z - kappa): nothing at or below kappa, 16 for z = 5, 12 for z = 4
    torch.testing.assert_close(offset, torch.tensor([-16.0, 0, 0, 0, 0, 0, 0, -12.0]))
    for scores in (torch.zeros(8), -z):  # a neutral TA, and the ``inertia`` score -z
        pi = grouped_log_softmax((scores + offset).to(torch.float64), groups, 2).exp()
        assert pi[0] < 1e-3 and pi[7] < 1e-3
        torch.testing.assert_close(torch.zeros(2, dtype=torch.float64).index_add(0, groups, pi), torch.ones(2, dtype=torch.float64))
    # gamma = 0 switches the gate off
    assert (gate(z, gamma=0.0, kappa=1.0) == 0).all()


@pytest.mark.parametrize("strategy", ["inertia", "mind"])
def test_gate_in_trainer_silences_a_view_far_above_the_filtered_loss(trainer_assets, tmp_path, strategy, monkeypatch):
    import distill.trainer as trainer_mod

    trainer = make_trainer(trainer_assets, tmp_path, strategy=strategy, max_steps=200)
    trainer.state.max_steps = 200
    batch = trainer.collator([{"question_index": i} for i in range(8)])
    uids, views = batch["cand_uid"], batch["cand_view"]
    bad_view = 2
    assert (views == bad_view).any()
    stats = trainer.mind.stats
    gen = torch.Generator().manual_seed(0)
    bad = views == bad_view

    def normal(n):
        return 2.0 + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)

    # a student whose training losses sit around 2 (spread ~0.1) on every view; view 2's candidates then
    # came out far above that (loss 6) and were not trained again while the others kept settling
    for step in range(10):
        stats.update(uids, views, normal(uids.shape[0]), step)
    stats.update(uids[bad], views[bad], torch.full((int(bad.sum()),), 6.0, dtype=torch.float64), 10)
    for step in range(11, 61):
        stats.update(uids[~bad], views[~bad], normal(int((~bad).sum())), step)
    lhat, _ = stats.candidate_loss(uids, views)
    z = (lhat - stats.L) / stats.S
    assert z[bad].min() > 20 and z[~bad].abs().max() < 3.0

    seen_log_pi = []
    real_sample = trainer_mod.sample_picks

    def spy(log_pi, *args, **kwargs):
        seen_log_pi.append(log_pi.detach().clone())
        return real_sample(log_pi, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "sample_picks", spy)
    picks = torch.zeros(6)
    for step in range(61, 101):
        trainer.state.global_step = step
        picked, weights, _ = trainer._choose(trainer.model, batch)
        assert (torch.zeros(8, dtype=torch.long).index_add(0, batch["cand_question"], picked.long()) == 1).all()
        picks += torch.bincount(views[picked], minlength=6)
    pi = seen_log_pi[-1].exp()
    assert pi[bad].max() < 1e-3  # policy mass of the far view, in every question
    assert picks[bad_view] == 0 and picks.sum() == 8 * 40
    others = [v for v in range(6) if v != bad_view and (views == v).any()]
    assert all(picks[v] > 0 for v in others)


# ---------------------------------------------------------------- 4. the TA follows the reward
def _reinforce_run(rewarded_view: int, seed: int, intervals: int = 60, nq: int = 8, steps_per_probe: int = 2) -> list[float]:
    """Drive ``MindTrainer._update_ta`` with records sampled from the TA's own policy and a reward equal to
    the share of picks of ``rewarded_view`` (+ noise): the controlled version of "training on one
    perspective lowers every perspective's probe loss more". Returns the policy mass of view 0 per interval."""
    args = mind_config("unused", seed=seed, ta_learning_rate=1e-2)
    host = SimpleNamespace(args=args, mind=MindState(args, ["A", "B"], 2 * nq))
    gen = torch.Generator().manual_seed(seed)
    noise = random.Random(seed)
    groups = torch.arange(nq).repeat_interleave(2)
    views = torch.tensor([0, 1]).repeat(nq)
    keys = [f"q{i}" for i in range(nq)]
    offset = torch.zeros(2 * nq, dtype=torch.float64)
    mass = []
    for t in range(intervals):
        records, shares = [], []
        for s in range(steps_per_probe):
            x = torch.randn(nq, 7, generator=gen).repeat_interleave(2, dim=0)  # same features: only the view differs
            with torch.no_grad():
                log_pi = grouped_log_softmax(host.mind.ta(x, views).to(torch.float64) + offset, groups, nq)
            picked = sample_picks(log_pi, groups, nq, 1, keys, seed, t * steps_per_probe + s)
            records.append({"x": x, "views": views, "groups": groups, "offset": offset, "picked": picked})
            shares.append(float(picked[views == rewarded_view].double().mean()))
        mass.append(float(log_pi.exp()[views == 0].mean()))
        host.mind.records = records
        out = MindTrainer._update_ta(host, sum(shares) / len(shares) + noise.gauss(0.0, 0.02))
        assert math.isfinite(out["ta_advantage"]) and "ta_entropy" in out
    return mass


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ta_policy_moves_toward_the_rewarded_view(seed):
    towards_a = _reinforce_run(rewarded_view=0, seed=seed)
    assert towards_a[0] == pytest.approx(0.5)  # the zero output layer starts uniform
    assert towards_a[-1] > 0.9
    towards_b = _reinforce_run(rewarded_view=1, seed=seed)
    assert towards_b[-1] < 0.1


def test_ta_update_without_signal_keeps_policy_neutral():
    """A constant reward gives zero advantage: only the (tiny) entropy bonus acts, so a uniform policy stays."""
    args = mind_config("unused", ta_learning_rate=1e-2)
    host = SimpleNamespace(args=args, mind=MindState(args, ["A", "B"], 8))
    x = torch.randn(8, 7, generator=torch.Generator().manual_seed(0))
    views, groups = torch.tensor([0, 1] * 4), torch.arange(4).repeat_interleave(2)
    rec = {"x": x, "views": views, "groups": groups, "offset": torch.zeros(8, dtype=torch.float64), "picked": views == 0}
    for _ in range(20):
        host.mind.records = [rec]
        assert MindTrainer._update_ta(host, 0.01)["ta_advantage"] == 0.0
    with torch.no_grad():
        pi = grouped_log_softmax(host.mind.ta(x, views).to(torch.float64), groups, 4).exp()
    torch.testing.assert_close(pi, torch.full((8,), 0.5, dtype=torch.float64), atol=0.05, rtol=0)


# ---------------------------------------------------------------- 5. resume
def test_resume_restores_ta_and_statistics_exactly(trainer_assets, tmp_path):
    kw = dict(strategy="mind", max_steps=6, save_strategy="steps", save_steps=3, probe_every=2, ta_learning_rate=0.05)
    full = make_trainer(trainer_assets, tmp_path / "full", **kw)
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-3"
    assert (ckpt / MIND_STATE).exists() and (tmp_path / "full" / "checkpoint-6" / MIND_STATE).exists()
    saved = torch.load(ckpt / MIND_STATE, weights_only=False)
    assert saved["stats"]["last_step"].max() == 2  # the statistics after 3 steps (0-based step 2)
    assert [h["step"] for h in saved["history"]] == [2]

    resumed = make_trainer(trainer_assets, tmp_path / "resumed", **kw)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 6
    assert resumed.mind.ta.state_dict()["net.2.weight"].abs().max() > 0  # the TA was trained before and after

    for name, p in _params(full).items():
        assert torch.equal(_params(resumed)[name], p), name
    _assert_states_close(resumed.mind.ta.state_dict(), full.mind.ta.state_dict(), rtol=0, atol=0)
    _assert_states_close(resumed.mind.stats.state_dict(), full.mind.stats.state_dict(), rtol=0, atol=0)
    _assert_states_close(resumed.mind.ta_optimizer.state_dict(), full.mind.ta_optimizer.state_dict(), rtol=0, atol=0)
    assert dict(resumed.mind.picks) == dict(full.mind.picks)
    _assert_states_close(dict(resumed.mind.weights), dict(full.mind.weights), rtol=0, atol=0)
    _assert_states_close(resumed.mind.history, full.mind.history, rtol=0, atol=0)
    assert [h["step"] for h in full.mind.history] == [2, 4, 6]
    assert _losses(resumed)[-3:] == _losses(full)[-3:]
    assert resumed.summary()["views"] == full.summary()["views"]


def test_resume_rejects_a_checkpoint_without_mind_state(trainer_assets, tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    trainer = make_trainer(trainer_assets, tmp_path, strategy="random", max_steps=1)
    with pytest.raises(ValueError, match="not a MIND checkpoint"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))


# ---------------------------------------------------------------- 6. every strategy
def _mean_nll(trainer: MindTrainer, questions: list) -> float:
    from distill.data import pad_sequences

    seqs = [(v.samples[0], v.prompt_lens[0]) for q in questions for v in q.views]
    batch = pad_sequences([s for s, _ in seqs], [p for _, p in seqs], trainer.collator.pad_id)
    with torch.no_grad():
        return float(sequence_nll(trainer.model, **batch).mean())


@pytest.mark.parametrize(
    ("strategy", "feedback"),
    [("golden", "inertia"), ("all", "inertia"), ("random", "inertia"), ("lowest_loss", "inertia"),
     ("inertia", "inertia"), ("mind", "inertia"), ("mind", "fresh")],
)  # fmt: skip
def test_every_strategy_trains(trainer_assets, tmp_path, strategy, feedback):
    train, probe, views = split_questions(trainer_assets)
    train = train[:8]  # 2 steps per epoch, 2 epochs: the golden pick must survive the epoch change
    trainer = make_trainer(
        trainer_assets, tmp_path, train=train, probe=probe, views=views, strategy=strategy, feedback=feedback,
        max_steps=-1, num_train_epochs=2, learning_rate=3e-3, probe_every=1,
    )  # fmt: skip
    spy = _PickSpy(trainer)
    before = _mean_nll(trainer, train)
    trainer.train()
    after = _mean_nll(trainer, train)
    losses = _losses(trainer)
    assert trainer.state.global_step == 4 and len(losses) == 4
    assert all(math.isfinite(x) for x in losses)
    assert after < before  # the student learned something from its picks

    summary = trainer.summary()
    assert summary["strategy"] == strategy and summary["feedback"] == feedback
    assert sum(v["pick_share"] for v in summary["views"].values()) == pytest.approx(1.0)
    assert sum(v["picks"] for v in summary["views"].values()) == sum(int(c["picked"].sum()) for c in spy.calls)
    if strategy in ("lowest_loss", "inertia", "mind"):
        assert len(summary["probes"]) == 4 and summary["views"][views[0]]["L_p"] is not None
    else:
        assert summary["probes"] == []
    if strategy == "mind":
        assert any("ta_reward" in h for h in summary["probes"])

    store = trainer.store
    where = {v.uid: (q, v) for q in store.questions for v in q.views}
    golden: dict[int, set[int]] = {}
    assert {c["epoch"] for c in spy.calls} == {0, 1}
    for c in spy.calls:
        per_q = torch.zeros(int(c["qidx"].numel()), dtype=torch.long).index_add(0, c["groups"], c["picked"].long())
        sizes = torch.bincount(c["groups"])
        w_sum = torch.zeros(int(c["qidx"].numel()), dtype=torch.float64).index_add(0, c["groups"], c["weights"] * c["picked"])
        torch.testing.assert_close(w_sum, torch.ones_like(w_sum))  # the picks' weights sum to 1 per question
        if strategy == "all":
            assert c["picked"].all() and torch.equal(per_q, sizes)
        else:
            assert (per_q == 1).all()  # golden, random, lowest_loss, inertia, mind: k = 1
        if strategy == "golden":
            for g, u in zip(c["groups"][c["picked"]].tolist(), c["uids"][c["picked"]].tolist(), strict=True):
                golden.setdefault(int(c["qidx"][g]), set()).add(u)
        if strategy == "lowest_loss" and c["ready"] and feedback == "inertia":
            for g in range(int(c["qidx"].numel())):
                rows = (c["groups"] == g).nonzero().flatten()
                assert c["picked"][rows[torch.argmin(c["lhat"][rows])]]
        for row, uid in enumerate(c["uids"].tolist()):  # each candidate carries this epoch's sample
            q, v = where[uid]
            k = store.sample_index(q, v, c["epoch"])
            assert strategy != "golden" or k == 0
            n = len(v.samples[k])
            assert c["input_ids"][row, :n].tolist() == v.samples[k]
    if strategy == "golden":
        assert sorted(golden) == list(range(8)) and all(len(u) == 1 for u in golden.values())


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
        callbacks=[_PoisonAfterSave(2)],
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
    assert state["stats"]["last_step"].max() == 1


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
