"""The losses of the student and of the MetaNet (docs/method.md, steps 1, 5 and 6), and the student's
forward pass that feeds them.

- :func:`student_forward`: per candidate row the mean token cross-entropy of its completion
  (TRL's fused LM head: no full-vocabulary logits), optionally its pooled last hidden state
  (detached; the MetaNet's rationale representation) and the log-distributions at the positions
  that predict the answer span's tokens (full vocabulary, only those few positions).
- :func:`answer_consistency`: per question the divergence between the answer distributions after
  each kept rationale: ``sum_{i<j} alpha_i alpha_j JSD(P_i || P_j)`` (MIND), or MCC-KD's
  bidirectional KL ``(KL(P||Q) + KL(Q||P)) / 2`` averaged over its pairs. Divergences are averaged
  over the answer's token positions.
- :func:`listnet_kl`: the MetaNet's meta-loss ``KL(softmax(s / tau) || softmax(-L_real / tau))``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class RowOutputs:
    nll: torch.Tensor  # [n] mean token NLL of each row's labelled tokens
    reps: torch.Tensor | None  # [n, hidden] float32, detached: mean last hidden state over the completion
    answer_logp: torch.Tensor | None  # [n, A, V] float32 log-probs at the positions predicting the answer tokens
    answer_mask: torch.Tensor | None  # [n, A] bool: which of the A slots are answer tokens
    answer_nll: torch.Tensor | None = None  # [n] mean NLL of each row's answer tokens (0 for a row without a span)


def causal_lm(model: Any) -> Any:
    """The ``PreTrainedModel`` inside DDP / accelerate / PEFT wrappers."""
    while hasattr(model, "module"):
        model = model.module
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    return model


@contextlib.contextmanager
def _capture_last_hidden(model: Any):
    """Records the backbone's last hidden state during the fused forward (which does not return it)."""
    captured: list[torch.Tensor] = []
    backbone = causal_lm(model).base_model

    def hook(_module, _inputs, output):
        captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    handle = backbone.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def student_forward(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    answer_start: torch.Tensor | None = None,
    answer_len: torch.Tensor | None = None,
    reps: bool = False,
) -> RowOutputs:
    """One forward over right-padded rows; see the module doc. Answer distributions are computed
    when ``answer_start``/``answer_len`` are given (rows with ``answer_len`` 0 get an empty mask)."""
    want_hidden = reps or answer_start is not None
    with _capture_last_hidden(model) if want_hidden else contextlib.nullcontext([]) as captured:
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, use_cache=False)
    counts = out.label_mask.sum(dim=1).clamp(min=1)
    nll = -(out.log_probs.sum(dim=1)) / counts
    rep = ans = amask = answer_nll = None
    if want_hidden:
        hidden = captured[-1]
        if reps:
            m = (labels != -100).to(hidden.dtype).unsqueeze(-1)
            rep = ((hidden.detach() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)).float()
        if answer_start is not None and answer_len is not None:
            start = answer_start.to(hidden.device)
            ans, amask = _answer_logp(model, hidden, start, answer_len.to(hidden.device))
            answer_nll = _answer_nll(ans, amask, input_ids, start)
    return RowOutputs(nll, rep, ans, amask, answer_nll)


def _answer_logp(model: Any, hidden: torch.Tensor, start: torch.Tensor, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(int(length.max()) if length.numel() else 0, 1)
    offs = torch.arange(width, device=hidden.device)
    mask = offs.unsqueeze(0) < length.unsqueeze(1)  # [n, A]
    # the distribution over answer token t is predicted at position t - 1 (teacher forcing)
    pos = (start.unsqueeze(1) + offs.unsqueeze(0) - 1).clamp(min=0, max=hidden.shape[1] - 1)
    h = hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # [n, A, H]
    logits = causal_lm(model).get_output_embeddings()(h)
    return torch.log_softmax(logits.float(), dim=-1), mask


def _answer_nll(logp: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Mean NLL of each row's answer tokens from their predicted distributions ``logp`` ([n, A, V])."""
    offs = torch.arange(mask.shape[1], device=logp.device)
    pos = (start.unsqueeze(1) + offs.unsqueeze(0)).clamp(max=input_ids.shape[1] - 1)
    target = input_ids.to(logp.device).gather(1, pos)  # [n, A]: the answer tokens themselves
    token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return -(token_logp * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


# ---------------------------------------------------------------- consistency between views
def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) over the last axis."""
    return (logp.exp() * (logp - logq)).sum(-1)


def jsd(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence over the last axis (natural log; in [0, log 2])."""
    logm = torch.logaddexp(logp, logq) - math.log(2.0)
    return 0.5 * _kl(logp, logm) + 0.5 * _kl(logq, logm)


def bidirectional_kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """MCC-KD's ``(KL(P||Q) + KL(Q||P)) / 2`` over the last axis."""
    return 0.5 * (_kl(logp, logq) + _kl(logq, logp))


DIVERGENCES = {"jsd": jsd, "bkl": bidirectional_kl}


def answer_consistency(
    logp: torch.Tensor, mask: torch.Tensor, groups: torch.Tensor, pair_weights: torch.Tensor, divergence: str
) -> torch.Tensor:
    """``sum_q sum_{i<j in q} w_ij D(P_i || P_j)`` over the kept rows of a batch.

    ``logp``/``mask``: the rows' answer log-distributions ``[n, A, V]``/``[n, A]``; ``groups``: each
    row's question; ``pair_weights``: ``[n]`` per-row factors, a pair weighing ``w_i * w_j`` (MIND:
    ``alpha``). A pair whose answer spans differ in length (no canonical answer line) is skipped.
    Returns the (differentiable) sum over questions."""
    fn = DIVERGENCES[divergence]
    total = logp.new_zeros(())
    lengths = mask.sum(dim=1)
    for g in torch.unique(groups).tolist():
        rows = (groups == g).nonzero().flatten().tolist()
        for a_i, i in enumerate(rows):
            for j in rows[a_i + 1 :]:
                n = int(lengths[i])
                if n == 0 or n != int(lengths[j]):
                    continue
                d = fn(logp[i, :n], logp[j, :n]).mean()
                total = total + float(pair_weights[i] * pair_weights[j]) * d
    return total


# ---------------------------------------------------------------- the MetaNet's meta-loss
def listnet_kl(scores: torch.Tensor, losses: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Per question ``KL(softmax(s / tau) || softmax(-L_real / tau))`` over the present candidates
    (dense ``[Q, K]`` inputs; ``losses`` is a constant target). Returns ``[Q]``."""
    neg = torch.finfo(scores.dtype).min
    log_p = torch.log_softmax((scores / tau).masked_fill(~mask, neg), dim=1)
    log_q = torch.log_softmax((-losses.detach().to(scores.dtype) / tau).masked_fill(~mask, neg), dim=1)
    return (log_p.exp() * (log_p - log_q)).masked_fill(~mask, 0.0).sum(dim=1)
