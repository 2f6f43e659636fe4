"""Sharded training is refused before any step, naming the reason (this CPU cannot run FSDP: accelerate
runs several CPU processes as plain data parallelism, so the refusal is tested on accelerate's own types)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from accelerate.utils import DistributedType

from distill.sharding import refuse_sharding
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("kind", [DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM])
def test_sharded_types_are_refused_naming_the_alternative(kind) -> None:
    with pytest.raises(ValueError, match=f"distributed type {kind.value}: sharded training is not supported.*ddp.yaml"):
        refuse_sharding(SimpleNamespace(distributed_type=kind))


@pytest.mark.parametrize("kind", [DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU])
def test_data_parallel_types_pass(kind) -> None:
    refuse_sharding(SimpleNamespace(distributed_type=kind))


def test_the_shipped_accelerate_configs_are_data_parallel() -> None:
    """configs/accelerate/*.yaml parse as accelerate configs and none shards (ddp_cpu.yaml is the file
    tests/test_trainer_distributed.py launches with)."""
    from accelerate.commands.config.config_args import ClusterConfig

    files = sorted((REPO_ROOT / "configs" / "accelerate").glob("*.yaml"))
    assert [f.name for f in files] == ["ddp.yaml", "ddp_cpu.yaml"]
    for f in files:
        cfg = ClusterConfig.from_yaml_file(str(f))
        assert cfg.distributed_type == DistributedType.MULTI_GPU and yaml.safe_load(f.read_text())["num_machines"] == 1
