"""The memory model (benchmarks/memory_model.py): its parameter counts against real models, its fit on
measurements it can recover, and its command line."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from benchmarks import memory_model as mm
from benchmarks.scale_runs import SIZES


@pytest.mark.parametrize("size", ["1m", "10m", "100m"])
def test_param_count_is_the_real_models(size):
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**SIZES[size], tie_word_embeddings=True))
    assert mm.param_count(SIZES[size]) == sum(p.numel() for p in model.parameters())


def test_param_count_of_an_untied_llama_without_biases():
    shape = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 96, "vocab_size": 500}  # fmt: skip
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=False))
    assert mm.param_count({**shape, "tied": False, "qkv_bias": False}) == sum(p.numel() for p in model.parameters())


def test_the_large_shapes_have_their_published_sizes():
    counts = {name: mm.param_count(shape) for name, shape in mm.LARGE_SHAPES.items()}
    assert counts == {"Qwen2.5-1.5B": 1_543_714_304, "Qwen2.5-7B": 7_615_616_512, "Llama-3.1-8B": 8_030_261_248}


def test_lora_count_is_what_peft_trains():
    from distill.student import LoraSettings, apply_lora

    shape = SIZES["1m"]
    model = apply_lora(Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True)), LoraSettings(r=mm.LORA_RANK))
    assert mm.lora_param_count(shape) == sum(p.numel() for p in model.parameters() if p.requires_grad)


def _runs(coef: dict[str, float]) -> list[dict]:
    """Measurements made by a known model, for the fit to recover."""
    runs = []
    for size in ("1m", "10m", "100m"):
        params = mm.param_count(SIZES[size])
        for k in (2, 4, 8):
            for length in (256, 512, 1024):
                for config in ("all", "sft"):
                    elements = mm.features(SIZES[size], k, length)
                    train = mm.STATE_BYTES_FP32 * params + sum(coef[f] * elements[f] for f in mm.FEATURES)
                    runs.append({"size": size, "k": k, "length": length, "config": config, "params": params,
                                 "train_mb": train / 2**20})  # fmt: skip
    return runs


def test_the_fit_recovers_a_known_model():
    truth = {"saved": 4.0, "layer": 24.0, "attention": 8.0, "head": 12.0, "const": 3.0e8}
    fitted = mm.fit(_runs(truth))
    assert fitted["bytes_per_element"] == pytest.approx(truth, rel=1e-6)
    assert all(c["ratio"] == pytest.approx(1.0) for c in fitted["checked"])


def test_a_term_that_would_be_negative_is_dropped_not_made_negative():
    runs = _runs({"saved": 4.0, "layer": 24.0, "attention": 8.0, "head": 0.0, "const": 3.0e8})
    for r in runs:
        if r["k"] * r["length"] >= 2048:
            r["train_mb"] *= 0.8  # the longest steps below the model: a least-squares term would go negative
    assert min(mm.fit(runs)["bytes_per_element"].values()) >= 0


def test_gpu_prediction_orders_and_cli(tmp_path):
    coef = {"saved": 4.0, "layer": 24.0, "attention": 8.0, "head": 12.0, "const": 3.0e8}
    shape = mm.LARGE_SHAPES["Qwen2.5-7B"]
    full, lora = mm.predict_gpu(shape, coef), mm.predict_gpu(shape, coef, lora=True)
    assert full["weights_gib"] == pytest.approx(4 * 7_615_616_512 / 2**30) and lora["weights_gib"] == full["weights_gib"] / 2
    assert lora["total_gib"] < full["total_gib"] and lora["activations_gib"] == full["activations_gib"]
    longer = mm.predict_gpu(shape, coef, k=8, length=2048)  # the head's tile is full already: activations grow less than 2x
    assert full["activations_gib"] < longer["activations_gib"] < 2 * full["activations_gib"]
    scale = tmp_path / "scale.json"
    scale.write_text(json.dumps({"runs": _runs(coef)}))
    out = tmp_path / "model.json"
    assert mm.main(["--scale", str(scale), "--out", str(out)]) == 0
    model = json.loads(out.read_text())
    assert set(model["predictions"]) == set(mm.LARGE_SHAPES) and max(model["worst_relative_error"].values()) < 1e-3
    with pytest.raises(SystemExit):
        mm.main(["--scale", str(tmp_path / "missing.json")])
