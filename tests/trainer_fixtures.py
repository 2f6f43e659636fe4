"""Shared fixtures for trainer tests: a tiny local student and a small synthetic rationale set.

Both are built once per pytest session in a temporary folder (no network, a few seconds):

- ``trainer_assets`` (session fixture): :class:`TrainerAssets` with ``model_dir`` (a tiny random
  ``LlamaForCausalLM`` + tokenizer from ``tests.tiny_models``) and ``data_dir`` (rationale shards
  of the synthetic world written by ``pipeline.synthesis.run_shard``: 6 perspectives, 2 samples
  each, some rationales marked incorrect). Import it into a test module with
  ``from tests.trainer_fixtures import trainer_assets  # noqa: F401``.
- helpers to load the tokenizer/model/questions and to build a ``MindConfig`` / ``MindTrainer``
  with test-friendly defaults (CPU, float32, no reporting, no tqdm, deterministic seeds).

The questions are returned as fresh deep copies on every call: ``CandidateStore`` writes the
global candidate ids into the ``View`` objects it is given, so two stores must not share them.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

NUM_QUESTIONS = 48
SHARD_SIZE = 24
MAX_LENGTH = 320


@dataclass(frozen=True)
class TrainerAssets:
    model_dir: Path
    data_dir: Path


def build_trainer_assets(root: str | Path, num_questions: int = NUM_QUESTIONS, shard_size: int = SHARD_SIZE) -> TrainerAssets:
    """Build (or reuse) the tiny model and the synthetic shards under ``root``."""
    from pipeline.synthesis import iter_question_shards, load_config, run_shard
    from tests.tiny_models import build_tiny_causal_lm

    root = Path(root)
    model_dir = root / "model"
    if not (model_dir / "config.json").exists():
        build_tiny_causal_lm(model_dir)
    data_dir = root / "data"
    cfg = load_config(num_questions=num_questions, shard_size=shard_size)
    for name, qs in iter_question_shards(cfg):
        run_shard(cfg, data_dir / cfg.run_id(), cfg.run_id(), name, qs)  # finished shards are skipped
    return TrainerAssets(model_dir, data_dir)


@pytest.fixture(scope="session")
def trainer_assets(tmp_path_factory: pytest.TempPathFactory) -> TrainerAssets:
    return build_trainer_assets(tmp_path_factory.mktemp("trainer-assets"))


def load_tokenizer(assets: TrainerAssets) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(assets.model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(assets: TrainerAssets) -> Any:
    """The tiny student in float32 (no dropout in the tiny Llama config)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(assets.model_dir, dtype=torch.float32)


@functools.lru_cache(maxsize=8)
def _questions(data_dir: str, model_dir: str, max_length: int) -> tuple[tuple, list[str]]:
    from distill.data import load_questions_with_candidates

    tok = load_tokenizer(TrainerAssets(Path(model_dir), Path(data_dir)))
    qs, views, _ = load_questions_with_candidates(data_dir, tok, "plain", max_length=max_length)
    return tuple(qs), views


def load_questions(assets: TrainerAssets, max_length: int = MAX_LENGTH) -> tuple[list, list[str]]:
    """``(questions, views)``: fresh deep copies of every question with candidates."""
    qs, views = _questions(str(assets.data_dir), str(assets.model_dir), max_length)
    return copy.deepcopy(list(qs)), list(views)


def split_questions(assets: TrainerAssets, held_out: int = 6, seed: int = 0, max_length: int = MAX_LENGTH) -> tuple[list, list, list[str]]:
    """``(train, held_out, views)`` by the trainer's own held-out split."""
    from distill.data import held_out_split

    qs, views = load_questions(assets, max_length)
    train, held = held_out_split(qs, held_out, seed)
    return train, held, views


def mind_config(output_dir: str | Path, **overrides: Any) -> Any:
    """A ``MindConfig`` for quick CPU tests; any field can be overridden."""
    from distill.config import MindConfig

    kw: dict[str, Any] = dict(
        output_dir=str(output_dir),
        strategy="mind",
        max_steps=4,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        lr_scheduler_type="linear",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        data_seed=0,
        disable_tqdm=True,
        dataloader_drop_last=True,
        dataloader_num_workers=0,
        bf16=False,
        fp16=False,
    )
    kw.update(overrides)
    return MindConfig(**kw)


def make_trainer(
    assets: TrainerAssets,
    output_dir: str | Path,
    *,
    train: list | None = None,
    views: list[str] | None = None,
    model: Any = None,
    callbacks: list | None = None,
    **overrides: Any,
) -> Any:
    """A ``MindTrainer`` on the synthetic data (6 questions held out unless ``train`` is given)."""
    from distill.data import CandidateStore
    from distill.trainer import MindTrainer

    if train is None:
        train, _, views = split_questions(assets)
    assert views is not None, "pass views together with train"
    args = mind_config(output_dir, **overrides)
    store = CandidateStore(train, len(views), args.seed)
    return MindTrainer(
        model if model is not None else load_model(assets),
        args,
        store,
        views,
        processing_class=load_tokenizer(assets),
        callbacks=callbacks,
    )
