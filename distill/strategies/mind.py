"""``mind``: the paper's method (docs/method.md). Per micro-batch the MetaNet scores every
candidate from the student's representation of it, its view and the long-term loss record;
dynamic fusion keeps the compatible subset and weights it (``fusion.py``); the trainer adds the
alpha-weighted answer-consistency JSD. Once per optimizer step the MetaNet learns
(Feedback-Driven Inertia Calibration): ``L_meta = KL(softmax(s/tau) || softmax(-L_real/tau))``
over every question of the step (all micro-batches, all ranks), on its own Adam optimizer with its
own learning rate (by default half the student's), stepping every ``meta_accumulation_steps``
optimizer steps; during the first ``meta_warmup_epochs`` epochs (or ``meta_warmup_steps`` steps) the
MetaNet learns without weighting the student's loss (the student trained on every candidate with equal
weights, the default, or frozen).

Ablations by flag: ``--meta_attention false``, ``--fusion false``, ``--consistency_weight 0``,
``--meta_target inertia``, ``--meta_warmup_epochs 0``, ``--meta_features full``; ours:
``--meta_target_baseline view``.
"""

from __future__ import annotations

from typing import Any

import torch

from distill.losses import listnet_kl
from distill.metanet import FEATURE_SETS, MetaNet, loss_features, to_dense
from distill.strategies.base import Plan, Scored, StepBatch, Strategy, register
from distill.strategies.fused import fused_plan


def rank_agreement(scores: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How well the scores order the candidates like ``-target`` (lower loss = higher score):
    top-1 agreement over questions with >= 2 candidates, mean Spearman over those with >= 3."""
    top1, rho = [], []
    for q in range(mask.shape[0]):
        m = mask[q]
        if int(m.sum()) < 2:
            continue
        s, t = scores[q, m].detach().double(), -target[q, m].double()
        top1.append(float(torch.argmax(s) == torch.argmax(t)))
        if s.numel() >= 3:
            rs = torch.argsort(torch.argsort(s)).double()
            rt = torch.argsort(torch.argsort(t)).double()
            rs, rt = rs - rs.mean(), rt - rt.mean()
            rho.append(float((rs * rt).sum() / ((rs.norm() * rt.norm()).clamp(min=1e-12))))
    out = {}
    if top1:
        out["meta_top1"] = sum(top1) / len(top1)
    if rho:
        out["meta_spearman"] = sum(rho) / len(rho)
    return out


def view_baseline(views: torch.Tensor, ce: torch.Tensor, stats) -> torch.Tensor:
    """Per candidate its view's long-term loss ``L_p``; for a view without a record yet, the mean of its
    candidates' losses in ``ce`` (float64)."""
    out = torch.empty(views.numel(), dtype=torch.float64)
    for v in torch.unique(views).tolist():
        rows = views == v
        ema = stats.view_slow[v]
        out[rows] = ema.get() if ema.ready else float(ce[rows].to(torch.float64).mean())
    return out


@register
class Mind(Strategy):
    name = "mind"
    needs_scores = True
    answer_consistency = True

    def __init__(self, args, store, views, *, rep_dim: int, encoder_reps: torch.Tensor | None = None, **kw: Any):
        super().__init__(args, store, views, **kw)
        self.encoder_reps = encoder_reps  # [num_candidates, D] from a frozen sentence encoder, or None
        self.feature_columns = list(FEATURE_SETS[args.meta_features])
        self.metanet = MetaNet(
            len(views), rep_dim, hidden=args.meta_hidden, heads=args.meta_heads, attention=args.meta_attention,
            seed=args.seed, num_features=len(self.feature_columns),
        )  # fmt: skip
        self.learning_rate = args.effective_meta_learning_rate
        self.optimizer = torch.optim.Adam(self.metanet.parameters(), lr=self.learning_rate)
        self.warmup_steps = args.meta_warmup_steps_for(len(store))
        self.accumulated = 0  # optimizer steps whose meta-gradients sit in .grad
        self.meta_steps = 0

    @property
    def needs_reps(self) -> bool:  # type: ignore[override]
        return self.encoder_reps is None

    def in_warmup(self, step: int) -> bool:
        return step < self.warmup_steps

    def student_frozen(self, step: int) -> bool:
        return self.in_warmup(step) and self.args.meta_warmup_student == "frozen"

    @property
    def frozen_steps(self) -> int:  # type: ignore[override]
        return self.warmup_steps if self.args.meta_warmup_student == "frozen" else 0

    def features(self, batch: StepBatch, stats) -> torch.Tensor:
        if stats.ready:
            lhat, seen = stats.candidate_loss(batch.uids, batch.views)
            view_loss = torch.tensor([stats.view_loss(int(v)) for v in batch.views], dtype=torch.float64)
            trend = torch.tensor([stats.view_trend(int(v)) for v in batch.views], dtype=torch.float64)
            L, S = stats.L, stats.S  # noqa: N806
        else:  # nothing measured yet: every candidate looks alike
            lhat = view_loss = trend = torch.zeros(batch.n, dtype=torch.float64)
            seen, L, S = torch.zeros(batch.n, dtype=torch.bool), 0.0, 1.0  # noqa: N806
        age = stats.age(batch.uids, batch.step)
        feats = loss_features(lhat, seen, age, view_loss, trend, batch.lengths, L, S, batch.step / max(batch.max_steps, 1))
        return feats[:, self.feature_columns]

    def meta_target(self, batch: StepBatch, scored: Scored, stats) -> torch.Tensor:
        """``L_real`` of the meta-loss: this step's CE (``instant``) or each candidate's EMA after it (``inertia``);
        with ``--meta_target_baseline view``, minus the candidate's view's long-term loss ``L_p`` (before this step;
        the micro-batch's mean of the view while the view has no record yet)."""
        target = scored.ce if self.args.meta_target == "instant" else stats.smoothed(batch.uids, scored.ce)
        if self.args.meta_target_baseline == "view":
            target = target - view_baseline(batch.views, scored.ce, stats)
        return target

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        assert scored is not None
        k = len(self.views)
        reps = self.encoder_reps[batch.uids] if self.encoder_reps is not None else scored.reps
        target = self.meta_target(batch, scored, stats)
        g, v, nq = batch.groups, batch.views, batch.nq
        record = {
            "reps": to_dense(reps.float(), g, v, nq, k),
            "feats": to_dense(self.features(batch, stats), g, v, nq, k),
            "mask": to_dense(torch.ones(batch.n, dtype=torch.bool), g, v, nq, k, fill=False),
            "target": to_dense(target.to(torch.float32), g, v, nq, k),
        }
        with torch.no_grad():
            scores = self.metanet(record["reps"], record["feats"], record["mask"])[g, v]
        if self.in_warmup(batch.step):
            keep = torch.ones(batch.n, dtype=torch.bool)  # warm-up: every candidate, equal weights (if the student trains)
            return Plan(keep, batch.per_question_uniform(keep), scores=scores, record=record)
        plan = fused_plan(self, batch, scores)
        plan.record = record
        return plan

    def end_of_step(self, records: list[dict[str, Any]], step: int) -> dict[str, float]:
        if not records:
            return {}
        cat = {key: torch.cat([r[key] for r in records]) for key in records[0]}
        scores = self.metanet(cat["reps"], cat["feats"], cat["mask"])
        loss = listnet_kl(scores, cat["target"], cat["mask"], self.args.meta_tau).mean()
        (loss / self.args.meta_accumulation_steps).backward()
        self.accumulated += 1
        if self.accumulated >= self.args.meta_accumulation_steps:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.accumulated = 0
            self.meta_steps += 1
        return {"meta_loss": float(loss.detach()), **rank_agreement(scores, cat["target"], cat["mask"])}

    def state_dict(self) -> dict[str, Any]:
        grads = [None if p.grad is None else p.grad.clone() for p in self.metanet.parameters()]
        return {"metanet": self.metanet.state_dict(), "optimizer": self.optimizer.state_dict(), "grads": grads,
                "accumulated": self.accumulated, "meta_steps": self.meta_steps}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metanet.load_state_dict(state["metanet"])
        self.optimizer.load_state_dict(state["optimizer"])
        for p, g in zip(self.metanet.parameters(), state["grads"], strict=True):
            p.grad = None if g is None else g.clone()
        self.accumulated, self.meta_steps = state["accumulated"], state["meta_steps"]
