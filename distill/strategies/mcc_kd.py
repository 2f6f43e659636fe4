"""``mcc_kd``: MCC-KD (Chen et al., Findings of EMNLP 2023, "Multi-CoT Consistent Knowledge
Distillation"), as its paper and its authors' public code describe it:

- per question, the rationales are filtered for diversity: we keep the ``mcc_diverse_k`` most
  mutually different ones by the Jaccard similarity of their token ``mcc_ngram``-grams (greedy:
  the least similar pair first, then the candidate whose highest similarity to the kept ones is
  lowest; computed once, on each view's first sample). The authors' released code leaves this
  step to the user; this rule is ours;
- each step trains on one pair of them per question, drawn at random (the authors' code: two
  rationales per example), with CE ``(CE_a + CE_b) / 2``;
- plus ``lambda * (KL(P_a || P_b) + KL(P_b || P_a)) / 2``: the bidirectional KL between the
  student's answer distributions after each rationale, averaged over the answer tokens, no side
  detached (as in the code; we take the distributions that predict the answer tokens, where the
  code indexes the span positions themselves).
"""

from __future__ import annotations

from typing import Any

import torch

from distill.strategies.base import Plan, Scored, StepBatch, Strategy, register
from distill.strategies.sampling import uniform_picks


def ngrams(ids: list[int], n: int) -> set[tuple[int, ...]]:
    return {tuple(ids[i : i + n]) for i in range(max(len(ids) - n + 1, 1))} if ids else set()


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def most_diverse(grams: list[set], k: int) -> list[int]:
    """Indices of ``k`` mutually diverse items (greedy max-min on Jaccard distance; ties: lowest index)."""
    n = len(grams)
    if n <= k:
        return list(range(n))
    sim = [[jaccard(grams[i], grams[j]) for j in range(n)] for i in range(n)]
    pairs = [(sim[i][j], i, j) for i in range(n) for j in range(i + 1, n)]
    _, i, j = min(pairs)
    chosen = [i, j]
    while len(chosen) < k:
        rest = [c for c in range(n) if c not in chosen]
        chosen.append(min(rest, key=lambda c: (max(sim[c][x] for x in chosen), c)))
    return sorted(chosen)


@register
class MccKd(Strategy):
    name = "mcc_kd"
    answer_consistency = True

    def __init__(self, args, store, views, **kw: Any):
        super().__init__(args, store, views, **kw)
        self.diverse = torch.zeros(store.num_candidates, dtype=torch.bool)  # the diverse set, by uid
        for q in store.questions:
            grams = [ngrams(v.samples[0][v.prompt_lens[0] :], args.mcc_ngram) for v in q.views]
            for i in most_diverse(grams, args.mcc_diverse_k):
                self.diverse[q.views[i].uid] = True

    def plan(self, batch: StepBatch, scored: Scored | None, stats) -> Plan:
        keep = uniform_picks(
            batch.groups, batch.nq, batch.keys, self.args.seed, batch.step, 2, allowed=self.diverse[batch.uids], salt="mcc"
        )
        alpha = batch.per_question_uniform(keep)
        consistency = "bkl" if self.args.consistency_weight > 0 else "none"
        return Plan(keep, alpha, consistency=consistency, pair_weights=keep.to(torch.float64))
