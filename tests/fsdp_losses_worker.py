"""One rank of tests/test_fsdp_losses.py (``python -m tests.fsdp_losses_worker RANK WORLD INIT_FILE OUT``):
MIND's loss path (``distill.losses.student_forward`` with the captured hidden state and the LM head called on
the answer spans after the forward, then the answer-consistency term) on a tiny Qwen2 student, one SGD step;
with WORLD > 1 the student is sharded with PyTorch's FSDP2 (``fully_shard``, gloo) and each rank takes its
slice of the batch. Rank 0 writes the updated full weights to OUT."""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

QUESTIONS, VIEWS, LENGTH, ANSWER = 4, 2, 24, 3


def tiny_student() -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=96, vocab_size=300, tie_word_embeddings=True)  # fmt: skip
    model = Qwen2ForCausalLM(config)
    add_fused_lm_head(model)
    return model


def batch() -> dict[str, torch.Tensor]:
    """QUESTIONS x VIEWS rows of random tokens; a question's views share their answer span's tokens."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 300, (QUESTIONS * VIEWS, LENGTH), generator=g)
    start = torch.full((QUESTIONS * VIEWS,), LENGTH - ANSWER - 1)
    for q in range(QUESTIONS):
        ids[q * VIEWS : (q + 1) * VIEWS, -ANSWER - 1 : -1] = torch.randint(4, 300, (ANSWER,), generator=g)
    labels = ids.clone()
    labels[:, :8] = -100  # the prompt
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "answer_start": start,
            "answer_len": torch.full((QUESTIONS * VIEWS,), ANSWER), "groups": torch.arange(QUESTIONS).repeat_interleave(VIEWS)}  # fmt: skip


def loss_of(model: torch.nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean row NLL + the answer-consistency term, as MIND's step computes them (equal weights)."""
    from distill.losses import answer_consistency, student_forward

    out = student_forward(model, rows["input_ids"], rows["attention_mask"], rows["labels"],
                          answer_start=rows["answer_start"], answer_len=rows["answer_len"], reps=True)  # fmt: skip
    groups = rows["groups"]
    consistency = answer_consistency(out.answer_logp, out.answer_mask, groups, torch.ones(len(groups)), "jsd")
    assert out.reps is not None and out.reps.shape == (len(groups), 64)  # the hidden-state hook fired
    return out.nll.mean() + 0.5 * consistency / len(torch.unique(groups))


def main(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = tiny_student()
    if world > 1:
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        local = model.model.embed_tokens.weight.to_local()  # really sharded: this rank holds its rows only
        assert local.shape[0] == 300 // world, local.shape
    rows = batch()
    per_rank = QUESTIONS // world * VIEWS  # whole questions per rank
    mine = {k: v[rank * per_rank : (rank + 1) * per_rank] for k, v in rows.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_of(model, mine).backward()  # FSDP averages the ranks' gradients: the mean of the halves' losses
    optimizer.step()
    full = {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone() for n, p in model.named_parameters()}
    if rank == 0:
        torch.save(full, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
