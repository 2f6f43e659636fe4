"""The plain baselines: ``golden`` (one fixed rationale per question: the paper's SbS-KD single-path
distillation), ``all`` (every rationale, equal weights: independent multi-path distillation),
``random`` (k uniform picks per question and step) and ``lowest_loss`` (the k candidates with the
lowest cross-entropy this step)."""

from __future__ import annotations

from typing import Any

import torch

from distill.strategies.base import Plan, Scored, StepBatch, Strategy, register
from distill.strategies.sampling import uniform_picks
from pipeline.ids import stable_hash


@register
class Golden(Strategy):
    name = "golden"

    def __init__(self, args, store, views, **kw: Any):
        super().__init__(args, store, views, **kw)
        store.fixed_samples = True
        self.uid_of = {}  # question index -> the uid of its single fixed candidate
        for i, q in enumerate(store.questions):
            names = [views[v.view] for v in q.views]
            if args.golden_view is not None and args.golden_view in names:
                self.uid_of[i] = q.views[names.index(args.golden_view)].uid
            else:
                j = int(stable_hash(args.seed, "golden", q.question_id), 16) % len(q.views)
                self.uid_of[i] = q.views[j].uid

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        wanted = torch.tensor([self.uid_of[int(i)] for i in batch.question_index])
        keep = batch.uids == wanted[batch.groups]
        return Plan(keep, keep.to(torch.float64))


@register
class All(Strategy):
    name = "all"

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        keep = torch.ones(batch.n, dtype=torch.bool)
        return Plan(keep, batch.per_question_uniform(keep))


@register
class Random(Strategy):
    name = "random"

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        keep = uniform_picks(batch.groups, batch.nq, batch.keys, self.args.seed, batch.step, self.args.picks_per_question)
        return Plan(keep, batch.per_question_uniform(keep))


@register
class LowestLoss(Strategy):
    name = "lowest_loss"
    needs_scores = True

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        assert scored is not None
        keep = torch.zeros(batch.n, dtype=torch.bool)
        for g in range(batch.nq):
            idx = (batch.groups == g).nonzero().flatten()
            keep[idx[torch.argsort(scored.ce[idx], stable=True)[: self.args.picks_per_question]]] = True
        return Plan(keep, batch.per_question_uniform(keep), scores=-scored.ce)
