"""Sharded training (FSDP, DeepSpeed ZeRO, Megatron-LM) is refused, with the reason, before any step.

The trainer reads the student's last hidden state through a forward hook and calls the LM head on the
answer spans after the model's forward (``distill/losses.py``); under sharding the head's weights are
sharded at that point, and nothing of MIND (the MetaNet's updates, the hook, the strategies'
all-reduces) has run sharded. Plain data parallelism is tested (``configs/accelerate/ddp_cpu.yaml``,
one process == two); LoRA keeps a large student on one GPU per rank. docs/method.md, "Several processes".
"""

from __future__ import annotations

from typing import Any

SHARDED = ("FSDP", "DEEPSPEED", "MEGATRON_LM")


def refuse_sharding(accelerator: Any) -> None:
    """Raise ``ValueError`` when ``accelerator`` (accelerate's) shards the model."""
    kind = getattr(accelerator.distributed_type, "value", str(accelerator.distributed_type))
    if kind in SHARDED:
        raise ValueError(
            f"distributed type {kind}: sharded training is not supported by distill.train (the LM head is called "
            "on the answer spans outside the model's forward, where its weights are sharded); use data parallelism "
            "(configs/accelerate/ddp.yaml) with LoRA (--lora_r) for large students (docs/method.md, 'Several processes')"
        )
