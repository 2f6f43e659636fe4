"""The MIND trainer's fidelity points (docs/method.md): the MetaNet's learning rate and warm-up, its loss
features without its own target, the view-relative target, the per-candidate record's update rule, the
meta-targets' gradients, and the compute account against the tokens the student really processed."""

from __future__ import annotations

import math

import pytest
import torch

from distill.inertia import InertiaStats
from distill.metanet import FEATURE_SETS, LOSS_FEATURES
from tests.trainer_fixtures import make_trainer, mind_config, split_questions, trainer_assets  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


# ---------------------------------------------------------------- configuration
def test_metanet_rate_defaults_to_half_the_students(tmp_path):
    assert mind_config(tmp_path, learning_rate=8e-4).effective_meta_learning_rate == pytest.approx(4e-4)
    assert mind_config(tmp_path, learning_rate=8e-4, meta_lr_ratio=0.25).effective_meta_learning_rate == pytest.approx(2e-4)
    assert mind_config(tmp_path, learning_rate=8e-4, meta_learning_rate=3e-3).effective_meta_learning_rate == 3e-3
    with pytest.raises(ValueError, match="--meta_lr_ratio"):
        mind_config(tmp_path, meta_lr_ratio=0.0)


@pytest.mark.parametrize(
    ("questions", "batch", "accumulation", "epochs", "steps"),
    [(500, 8, 1, 1.0, 63), (500, 8, 1, 2.0, 126), (500, 4, 2, 1.0, 63), (42, 4, 1, 0.5, 6), (42, 4, 1, 0.0, 0)],
)  # fmt: skip
def test_warmup_in_epochs_is_rounded_to_optimizer_steps(tmp_path, questions, batch, accumulation, epochs, steps):
    args = mind_config(tmp_path, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                       meta_warmup_epochs=epochs)  # fmt: skip
    assert args.meta_warmup_steps_for(questions) == steps
    assert mind_config(tmp_path, meta_warmup_steps=7).meta_warmup_steps_for(questions) == 7  # steps win when given


def test_the_trainer_uses_the_resolved_rate_and_warmup(trainer_assets, tmp_path):  # noqa: F811
    trainer = make_trainer(trainer_assets, tmp_path, learning_rate=1e-3, meta_warmup_epochs=1.0)
    strategy = trainer.strategy
    steps_per_epoch = math.ceil(len(trainer.store) / 4)  # batch 4, no accumulation
    assert strategy.warmup_steps == steps_per_epoch and strategy.frozen_steps == 0  # uniform: the student trains
    assert strategy.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    frozen = make_trainer(trainer_assets, tmp_path / "frozen", meta_warmup_epochs=1.0, meta_warmup_student="frozen")
    assert frozen.strategy.warmup_steps == steps_per_epoch == frozen.strategy.frozen_steps


def test_the_defaults_are_the_measured_best_mind(tmp_path):
    """The defaults are the MIND the view-quality study measured best (docs/method.md); ``candidate_loss``
    resolves per strategy: the answer line for MIND, the whole completion for the baselines that score."""
    args = mind_config(tmp_path)
    assert (args.meta_target, args.meta_warmup_student, args.meta_warmup_epochs) == ("instant", "uniform", 3.0)
    assert args.candidate_loss == "answer"
    for strategy in ("instant", "lowest_loss", "all", "golden"):
        assert mind_config(tmp_path, strategy=strategy).candidate_loss == "completion"
    assert mind_config(tmp_path, answer_template="", consistency_weight=0.0).candidate_loss == "completion"
    assert mind_config(tmp_path, strategy="instant", candidate_loss="answer").candidate_loss == "answer"
    with pytest.raises(ValueError, match="--meta_warmup_student frozen"):
        mind_config(tmp_path, lr_schedule_after_meta_warmup=True)
    assert mind_config(tmp_path, lr_schedule_after_meta_warmup=True, meta_warmup_student="frozen").lr_schedule_after_meta_warmup


# ---------------------------------------------------------------- the MetaNet's inputs
def test_no_target_features_leave_out_the_candidates_own_loss(trainer_assets, tmp_path):  # noqa: F811
    """With ``no_target`` the scores do not move when a candidate's own EMA loss (≈ the inertia target)
    changes; with ``full`` they do."""
    assert "candidate_loss" not in [LOSS_FEATURES[i] for i in FEATURE_SETS["no_target"]]
    assert len(FEATURE_SETS["full"]) == len(LOSS_FEATURES)
    for features, moves in (("no_target", False), ("full", True)):
        trainer = make_trainer(trainer_assets, tmp_path / features, meta_features=features)
        batch = trainer.collator([{"question_index": i} for i in range(4)])
        step = trainer._step_batch(batch)
        stats = trainer.mind.stats
        stats.update(step.uids, step.views, torch.linspace(1.0, 3.0, step.n, dtype=torch.float64), 0)
        net = trainer.strategy.metanet
        torch.nn.init.normal_(net.head_w2)  # a MetaNet that has learnt something (the output layer starts at 0)
        reps = torch.randn(step.n, trainer.strategy.metanet.rep_in[0].normalized_shape[0])
        from distill.metanet import to_dense

        def scores() -> torch.Tensor:
            f = trainer.strategy.features(step, stats)
            assert f.shape[1] == len(FEATURE_SETS[features])
            dense = to_dense(f, step.groups, step.views, step.nq, len(trainer.mind.views))
            mask = to_dense(torch.ones(step.n, dtype=torch.bool), step.groups, step.views, step.nq, len(trainer.mind.views), fill=False)
            return net(to_dense(reps, step.groups, step.views, step.nq, len(trainer.mind.views)), dense, mask).detach()

        before = scores()
        stats.cand_ema[step.uids[0]] += 5.0  # only this candidate's own long-term loss changes
        assert (not torch.allclose(before, scores())) is moves, features


def test_view_relative_target_subtracts_the_views_long_term_loss(trainer_assets, tmp_path):  # noqa: F811
    from distill.strategies.base import Scored

    trainer = make_trainer(trainer_assets, tmp_path, meta_target="instant", meta_target_baseline="view")
    step = trainer._step_batch(trainer.collator([{"question_index": i} for i in range(4)]))
    ce = torch.linspace(1.0, 2.0, step.n, dtype=torch.float64)
    stats = trainer.mind.stats
    fresh = trainer.strategy.meta_target(step, Scored(ce), stats)  # no record yet: the batch's own view means
    for v in step.views.unique():
        rows = step.views == v
        assert fresh[rows].mean().item() == pytest.approx(0.0, abs=1e-12)
    stats.update(step.uids, step.views, ce + 1.0, 0)  # now every view has L_p = its mean + 1
    judged = trainer.strategy.meta_target(step, Scored(ce), stats)
    for v in step.views.unique().tolist():
        rows = step.views == v
        assert torch.allclose(judged[rows], ce[rows] - stats.view_slow[v].get())
        assert judged[rows].mean().item() == pytest.approx(-1.0)


# ---------------------------------------------------------------- the long-term record
def test_the_candidate_record_follows_its_update_rule():
    """EMA_k <- beta EMA_k + (1 - beta) CE_k when measured (the first measurement is taken as it is);
    unmeasured candidates keep theirs; the age counts optimizer steps since the last measurement."""
    stats = InertiaStats(num_views=2, num_candidates=4, beta=0.9)
    stats.update(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2.0, 4.0], dtype=torch.float64), step=0)
    assert stats.cand_ema[:2].tolist() == [2.0, 4.0] and torch.isnan(stats.cand_ema[2:]).all()
    stats.update(torch.tensor([1, 2]), torch.tensor([1, 0]), torch.tensor([1.0, 3.0], dtype=torch.float64), step=3)
    assert stats.cand_ema[0].item() == 2.0  # not measured: unchanged
    assert stats.cand_ema[1].item() == pytest.approx(0.9 * 4.0 + 0.1 * 1.0)
    assert stats.cand_ema[2].item() == 3.0
    assert stats.age(torch.tensor([0, 1, 3]), step=5).tolist() == [5.0, 2.0, 6.0]
    # smoothed() is what the EMA becomes, without changing it (the inertia target)
    target = stats.smoothed(torch.tensor([1]), torch.tensor([0.0], dtype=torch.float64))
    assert target.item() == pytest.approx(0.9 * (0.9 * 4.0 + 0.1 * 1.0)) and stats.cand_ema[1].item() == pytest.approx(3.7)


def test_inertia_and_instant_targets_give_different_metanet_gradients(trainer_assets, tmp_path):  # noqa: F811
    """The same batch, the same MetaNet, the same losses: the meta-loss's gradient depends on the target."""
    from distill.strategies.base import Scored

    grads = {}
    for target in ("inertia", "instant"):
        trainer = make_trainer(trainer_assets, tmp_path / target, meta_target=target)
        step = trainer._step_batch(trainer.collator([{"question_index": i} for i in range(4)]))
        stats = trainer.mind.stats
        # a record from an earlier step, different from this step's losses
        stats.update(step.uids, step.views, torch.linspace(3.0, 1.0, step.n, dtype=torch.float64), 0)
        ce = torch.linspace(1.0, 3.0, step.n, dtype=torch.float64)
        reps = torch.randn(step.n, trainer.strategy.metanet.rep_in[0].normalized_shape[0], generator=torch.Generator().manual_seed(0))
        torch.nn.init.normal_(trainer.strategy.metanet.head_w2, generator=torch.Generator().manual_seed(1))
        plan = trainer.strategy.plan(step, Scored(ce, reps), stats)
        trainer.strategy.end_of_step([plan.record], step=5)
        grads[target] = torch.cat([p.grad.flatten() for p in trainer.strategy.metanet.parameters() if p.grad is not None])
    assert grads["inertia"].shape == grads["instant"].shape and grads["inertia"].abs().sum() > 0
    assert not torch.allclose(grads["inertia"], grads["instant"], rtol=1e-3, atol=1e-8)


# ---------------------------------------------------------------- the compute account
@pytest.mark.parametrize(
    ("strategy", "extra"),
    [("all", {}), ("golden", {}), ("mcc_kd", {}), ("lowest_loss", {"scoring": "separate"}),
     ("mind", {"meta_warmup_steps": 2}), ("mind", {"meta_warmup_steps": 2, "scoring": "separate"})],
    ids=["all", "golden", "mcc_kd", "lowest_loss-separate", "mind-shared", "mind-separate"],
)  # fmt: skip
def test_recorded_token_counts_equal_the_tokens_the_student_processed(trainer_assets, tmp_path, strategy, extra):  # noqa: F811
    """A hook on the student counts the non-padding tokens of every forward it runs, by whether gradients
    are on: those numbers must be the compute account's backward and forward-only tokens."""
    trainer = make_trainer(trainer_assets, tmp_path, strategy=strategy, max_steps=4, **extra)
    counted = {"backward_tokens": 0, "forward_tokens": 0}

    def count(module, args, kwargs):
        mask = kwargs["attention_mask"]
        counted["backward_tokens" if torch.is_grad_enabled() else "forward_tokens"] += int(mask.sum())

    handle = trainer.model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        trainer.train()
    finally:
        handle.remove()
    compute = trainer.summary()["compute"]
    assert counted["backward_tokens"] > 0
    assert compute["backward_tokens"] == counted["backward_tokens"]
    assert compute["forward_tokens"] == counted["forward_tokens"]
    assert compute["flops"] == 6 * compute["params"] * counted["backward_tokens"] + 2 * compute["params"] * counted["forward_tokens"]


# ---------------------------------------------------------------- exploration
def test_exploration_adds_left_out_candidates_at_their_own_weight():
    from distill.fusion import fuse

    scores = torch.tensor([[3.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    keep, alpha = fuse(scores, mask, beta=0.5, tau=1.0)
    assert keep.tolist() == [[True, False, False], [True, True, False]]
    explore = torch.tensor([[False, False, True], [False, False, True]])  # the absent candidate stays out
    keep2, alpha2 = fuse(scores, mask, beta=0.5, tau=1.0, explore=explore)
    assert keep2.tolist() == [[True, False, True], [True, True, False]]
    w = torch.exp(torch.tensor([3.0, -1.0], dtype=torch.float64))
    assert alpha2[0, [0, 2]].tolist() == pytest.approx((w / w.sum()).tolist())
    assert alpha2[1].tolist() == alpha[1].tolist()


def test_exploration_draws_are_seeded_and_at_the_rate(trainer_assets, tmp_path):  # noqa: F811
    from distill.strategies.fused import exploration

    trainer = make_trainer(trainer_assets, tmp_path)
    draws = []
    for step in range(30):
        batch = trainer._step_batch(trainer.collator([{"question_index": i} for i in range(8)]))
        batch.step = step
        a, b = exploration(batch, 0.3, seed=0), exploration(batch, 0.3, seed=0)
        assert torch.equal(a, b) and not torch.equal(a, exploration(batch, 0.3, seed=1))
        draws.append(a)
    share = torch.cat(draws).double().mean().item()
    assert 0.25 < share < 0.35  # ~1,500 draws at 0.3
    assert exploration(batch, 0.0, seed=0) is None and exploration(batch, 1.0, seed=0).all()
