"""The method's parts on hand-made inputs (docs/method.md): fusion, consistency divergences, the ListNet
meta-loss and the MetaNet, MCC-KD's diversity filter, and the canonical answer line whose answer
tokens align across the views of a question."""

from __future__ import annotations

import math

import pytest
import torch

from distill.formatting import answer_line_ids, encode_training_example, split_final_line
from distill.fusion import fuse, fuse_candidates
from distill.grad_share import gradient_shares
from distill.losses import answer_consistency, bidirectional_kl, jsd, listnet_kl
from distill.metanet import MetaNet
from distill.strategies.mcc_kd import jaccard, most_diverse, ngrams
from distill.strategies.mind import rank_agreement
from tests.trainer_fixtures import load_questions, load_tokenizer, trainer_assets  # noqa: F401

torch.set_num_threads(1)


# ---------------------------------------------------------------- fusion: subset rule and weights
def test_fusion_subset_and_weights_on_hand_made_scores():
    scores = torch.tensor([[2.0, 2.0 + math.log(0.6), 2.0 + math.log(0.4), 0.0], [1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, False, True, False]])
    keep, alpha = fuse(scores, mask, beta=0.5, tau=1.0)
    # p_k / max p = exp(s_k - max s): 1, 0.6 kept; 0.4 and exp(-2) below beta = 0.5
    assert keep.tolist() == [[True, True, False, False], [True, False, False, False]]
    torch.testing.assert_close(alpha[0], torch.tensor([1 / 1.6, 0.6 / 1.6, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(alpha.sum(dim=1), torch.ones(2, dtype=torch.float64))
    # absent candidates are never kept, even with the top score
    keep, _ = fuse(torch.tensor([[0.0, 5.0]]), torch.tensor([[True, False]]), beta=0.5, tau=1.0)
    assert keep.tolist() == [[True, False]]


def test_fusion_is_scale_free_and_temperature_widens_the_subset():
    s = torch.tensor([[0.3, -0.2, -1.5, 0.1]], dtype=torch.float64)
    mask = torch.ones_like(s, dtype=torch.bool)
    base = fuse(s, mask, beta=0.5, tau=1.0)
    for shifted in (s + 100.0, s - 7.0):  # negative or large scores: same subset, same weights
        k, a = fuse(shifted, mask, beta=0.5, tau=1.0)
        assert torch.equal(k, base[0])
        torch.testing.assert_close(a, base[1])
    narrow, _ = fuse(s, mask, beta=0.5, tau=0.1)
    wide, _ = fuse(s, mask, beta=0.5, tau=10.0)
    assert narrow.sum() < base[0].sum() <= wide.sum() == 4
    # beta = 1: only the maximum (and exact ties); fusion off: top-1, ties to the lowest view
    assert fuse(s, mask, beta=1.0, tau=1.0)[0].tolist() == [[True, False, False, False]]
    tie = torch.tensor([[1.0, 1.0, 0.0]])
    assert fuse(tie, torch.ones_like(tie, dtype=torch.bool), beta=1.0, tau=1.0)[0].tolist() == [[True, True, False]]
    k, a = fuse(tie, torch.ones_like(tie, dtype=torch.bool), beta=0.5, tau=1.0, enabled=False)
    assert k.tolist() == [[True, False, False]] and a.tolist() == [[1.0, 0.0, 0.0]]


def test_fuse_candidates_maps_flat_rows_to_questions_and_views():
    groups = torch.tensor([0, 0, 0, 1, 1])
    views = torch.tensor([2, 0, 1, 1, 2])
    scores = torch.tensor([0.0, 3.0, 2.9, -1.0, -1.0])
    keep, alpha = fuse_candidates(scores, groups, views, 2, 3, beta=0.5, tau=1.0)
    assert keep.tolist() == [False, True, True, True, True]
    assert float(alpha[:3].sum()) == pytest.approx(1.0) and alpha[3:].tolist() == [0.5, 0.5]


# ---------------------------------------------------------------- consistency divergences
def _logp(*rows):
    return torch.log(torch.tensor(rows, dtype=torch.float64))


def test_jsd_zero_for_equal_distributions_symmetric_and_bounded():
    p, q = _logp([0.7, 0.2, 0.1]), _logp([0.1, 0.3, 0.6])
    assert float(jsd(p, p)) == pytest.approx(0.0, abs=1e-12)
    assert float(jsd(p, q)) == pytest.approx(float(jsd(q, p)), rel=1e-12)
    assert 0.0 < float(jsd(p, q)) < math.log(2.0)
    disjoint = torch.log(torch.tensor([[1.0, 1e-30], [1e-30, 1.0]], dtype=torch.float64))
    assert float(jsd(disjoint[0], disjoint[1])) == pytest.approx(math.log(2.0), rel=1e-6)
    # MCC-KD's term: the mean of both KL directions, symmetric, zero for equal distributions
    kl_pq = float((p.exp() * (p - q)).sum())
    kl_qp = float((q.exp() * (q - p)).sum())
    assert float(bidirectional_kl(p, q)) == pytest.approx(0.5 * (kl_pq + kl_qp))
    assert float(bidirectional_kl(p, p)) == pytest.approx(0.0, abs=1e-12)


def test_answer_consistency_weights_pairs_by_alpha_and_skips_unaligned_spans():
    v = 3
    dists = torch.log_softmax(torch.randn(4, 2, v, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    mask = torch.tensor([[True, True], [True, True], [True, True], [True, False]])
    groups = torch.tensor([0, 0, 0, 1])
    alpha = torch.tensor([0.5, 0.3, 0.2, 1.0], dtype=torch.float64)
    got = answer_consistency(dists, mask, groups, alpha, "jsd")
    want = sum(alpha[i] * alpha[j] * jsd(dists[i], dists[j]).mean() for i, j in ((0, 1), (0, 2), (1, 2)))
    assert float(got) == pytest.approx(float(want))
    # a question with one kept rationale has no pair; a pair with spans of other lengths is skipped
    mask2 = mask.clone()
    mask2[1, 1] = False
    got2 = answer_consistency(dists, mask2, groups, alpha, "jsd")
    assert float(got2) == pytest.approx(float(alpha[0] * alpha[2] * jsd(dists[0], dists[2]).mean()))
    same = dists[:1].expand(3, -1, -1)
    assert float(answer_consistency(same, mask[:3], groups[:3], alpha[:3], "jsd")) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------- the meta-loss and the MetaNet
def test_listnet_gradient_moves_scores_toward_the_loss_ranking():
    losses = torch.tensor([[2.0, 0.5, 1.0, 3.0], [0.1, 0.9, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    scores = torch.zeros(2, 4, requires_grad=True)
    kl = listnet_kl(scores, losses, mask, tau=1.0)
    kl.sum().backward()
    # descending the gradient raises the scores of low-loss candidates and lowers those of high-loss ones
    step = -scores.grad
    assert step[0, 1] > step[0, 2] > step[0, 0] > step[0, 3]
    assert step[1, 0] > 0 > step[1, 1] and (scores.grad[1, 2:] == 0).all()
    opt = torch.optim.Adam([scores], lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        listnet_kl(scores, losses, mask, tau=1.0).sum().backward()
        opt.step()
    final = listnet_kl(scores, losses, mask, tau=1.0)
    assert (final < 1e-3).all()  # softmax(s) matched softmax(-L)
    agree = rank_agreement(scores, losses, mask)
    assert agree["meta_top1"] == 1.0 and agree["meta_spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize("attention", [True, False])
def test_metanet_learns_a_loss_ranking_from_its_features(attention):
    """Candidates whose representation encodes their (hidden) difficulty: trained with the meta-loss on
    fresh questions, the MetaNet ranks unseen questions' candidates like their losses."""
    gen = torch.Generator().manual_seed(0)
    k, d = 5, 16
    direction = torch.randn(d, generator=gen)

    def batch(n):
        reps = torch.randn(n, k, d, generator=gen)
        losses = reps @ direction / 4 + 2.0
        mask = torch.rand(n, k, generator=gen) > 0.2
        mask[:, 0] = True
        return reps, torch.zeros(n, k, 7), mask, losses

    net = MetaNet(k, d, hidden=32, heads=4, attention=attention, seed=0)
    reps, feats, mask, losses = batch(64)
    with torch.no_grad():
        assert (net(reps, feats, mask) == 0).all()  # zero output layer: a neutral start
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        reps, feats, mask, losses = batch(32)
        opt.zero_grad()
        listnet_kl(net(reps, feats, mask), losses, mask, tau=1.0).mean().backward()
        opt.step()
    reps, feats, mask, losses = batch(200)
    with torch.no_grad():
        agree = rank_agreement(net(reps, feats, mask), losses, mask)
    assert agree["meta_spearman"] > 0.8 and agree["meta_top1"] > 0.6


def test_metanet_masks_absent_views_and_attention_mixes_candidates():
    net = MetaNet(3, 4, hidden=8, heads=2, attention=True, seed=1)
    with torch.no_grad():
        net.head_w2.normal_()
    reps = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(2))
    feats = torch.zeros(1, 3, 7)
    full = torch.tensor([[True, True, True]])
    part = torch.tensor([[True, True, False]])
    with torch.no_grad():
        s_full, s_part = net(reps, feats, full), net(reps, feats, part)
        changed = reps.clone()
        changed[0, 2] += 5.0  # an absent candidate's features do not matter
        assert torch.equal(net(changed, feats, part), s_part)
        assert s_part[0, 2] == 0.0
        assert not torch.allclose(s_full[0, :2], s_part[0, :2])  # with attention, the others' scores depend on it
        flat = MetaNet(3, 4, hidden=8, heads=2, attention=False, seed=1)
        flat.head_w2.copy_(net.head_w2)
        assert torch.allclose(flat(reps, feats, full)[0, :2], flat(reps, feats, part)[0, :2])


# ---------------------------------------------------------------- MCC-KD's diversity filter
def test_mcc_diversity_keeps_the_least_similar_rationales():
    a = [1, 2, 3, 4, 5, 6]
    b = [1, 2, 3, 4, 5, 7]  # near-duplicate of a
    c = [9, 8, 7, 6, 5, 4]
    d = [20, 21, 22, 23]
    grams = [ngrams(x, 3) for x in (a, b, c, d)]
    assert jaccard(grams[0], grams[1]) > 0.5 and jaccard(grams[0], grams[3]) == 0.0
    chosen = most_diverse(grams, 3)
    assert len(chosen) == 3 and not {0, 1} <= set(chosen)  # never both near-duplicates
    assert most_diverse(grams, 10) == [0, 1, 2, 3]


# ---------------------------------------------------------------- the canonical answer line
def test_final_answer_line_is_replaced_not_repeated():
    assert split_final_line("2 + 3 = 5\nThe answer is 5.") == "2 + 3 = 5"
    assert split_final_line("Add them.\n#### 72") == "Add them."
    assert split_final_line("So the answer is 4") == "So the answer is 4"  # one line: kept whole
    assert split_final_line("4 apples\nthen 5") == "4 apples\nthen 5"  # not an answer statement


def test_answer_spans_align_across_the_views_of_a_question(trainer_assets):  # noqa: F811
    tok = load_tokenizer(trainer_assets)
    questions, views = load_questions(trainer_assets)
    checked = 0
    for q in questions[:12]:
        spans = set()
        for v in q.views:
            for ids, start, n in zip(v.samples, v.answer_starts, v.answer_lens, strict=True):
                assert n > 0
                span = tuple(ids[start : start + n])
                # the tokens covering the answer (a BPE token may merge it with the full stop)
                covered = tok.decode(list(span)).strip()
                assert q.gold_answer in covered and len(covered) <= len(q.gold_answer) + 1
                text = tok.decode(ids[v.prompt_lens[0] :], skip_special_tokens=True)
                assert text.rstrip().endswith(f"The answer is {q.gold_answer}.") and text.count("The answer is") == 1
                spans.add(span)
                checked += 1
        assert len(spans) == 1, q.question_id  # the very same answer tokens in every view
    assert checked > 24


def test_answer_line_survives_truncation_and_other_formats(trainer_assets):  # noqa: F811
    tok = load_tokenizer(trainer_assets)
    long = "step " * 200 + "\n#### 17"
    enc = encode_training_example(tok, "What is 8 + 9?", long, "17", "plain", max_length=64)
    assert len(enc.input_ids) == 64 and enc.input_ids[-1] == tok.eos_token_id
    assert tok.decode(enc.input_ids[enc.answer_start : enc.answer_start + enc.answer_len]).strip() in ("17", "17.")
    assert tok.decode(enc.input_ids[enc.prompt_len :], skip_special_tokens=True).endswith("The answer is 17.")
    ids, start, n = answer_line_ids(tok, "-3/4", "Final: {answer}")
    assert tok.decode(ids[start : start + n]).strip() == "-3/4"
    plain = encode_training_example(tok, "q?", "one\nThe answer is 2.", "2", "plain", answer_template=None)
    assert plain.answer_len == 0 and tok.decode(plain.input_ids[plain.prompt_len :], skip_special_tokens=True).endswith("is 2.")


def test_gradient_shares_project_each_term_on_the_summed_gradient():
    """Linear terms <w, u_t> have gradient u_t: shares are <u_t, sum u> / |sum u|^2, add up to 1, a term
    pulling against the rest is negative, and a term without a gradient path shares 0."""
    w, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    u = {"a": torch.tensor([1.0, 0.0, 0.0]), "b": torch.tensor([0.0, 2.0, 0.0]), "c": torch.tensor([-0.5, 0.0, 0.0])}
    terms = {n: (w * v).sum() for n, v in u.items()}
    terms["bias"] = 3.0 * b.sum()  # gradient only on the second parameter
    terms["constant"] = torch.tensor(1.0)
    shares = gradient_shares(terms, [w, b])
    total_w, total_b = sum(u.values()), torch.full((2,), 3.0)
    norm = float(total_w.dot(total_w) + total_b.dot(total_b))
    for n, v in u.items():
        assert shares[n] == pytest.approx(float(v.dot(total_w)) / norm)
    assert shares["bias"] == pytest.approx(float(total_b.dot(total_b)) / norm)
    assert shares["c"] < 0 and shares["constant"] == 0.0
    assert sum(shares.values()) == pytest.approx(1.0)
    assert terms["a"].grad_fn is not None  # graphs kept for the caller's own backward
    sum(terms.values()).backward()
    assert torch.equal(w.grad, total_w)
    assert gradient_shares({"zero": (w * 0).sum()}, [w]) == {"zero": 0.0}
