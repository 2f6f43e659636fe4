"""A memory model of one training step, fitted to the scale benchmark's measurements
(``python -m benchmarks.memory_model``), and what it predicts for 1.5B-8B students at K = 8.

What a step adds to a process's memory is split into terms whose sizes follow from the shape:

- ``states``: gradients and AdamW's two moments of every trainable parameter (known: 4 + 8 bytes a
  parameter in fp32; not fitted);
- ``saved``: the decoder layers' inputs kept by activation checkpointing, ``layers x T x hidden``
  elements for ``T`` tokens a step (``K`` candidates of ``length`` tokens);
- ``layer``: the working set of the one layer recomputed during backward, ``T x (hidden + intermediate)``;
- ``attention``: the score matrices of the attention kernel that materialises them (PyTorch's math
  path on a CPU), ``K x heads x length^2``;
- ``head``: the LM head's loss over the vocabulary. TRL's fused head (the MIND trainer's) projects
  tiles of at most 4,096 tokens by 32,768 vocabulary entries, ``min(T, 4096) x min(vocab, 32768)`` elements,
  never ``T x vocab``; without Triton (a CPU) it folds each tile with several fp32 temporaries of its size.
  SFTTrainer's measured peak was within 4% of the MIND trainer's at 100M parameters, so the term is shared;
- ``const``: what a process adds whatever the shape (allocator arenas, library buffers).

The bytes per element of each term are fitted by non-negative least squares to the measured
``train_mb`` of every run in ``benchmarks/results/scale.json`` (fp32 on a CPU), and the fit is
checked run by run. The prediction for a GPU assumes what a user runs there: bf16 autocast halves
the activation terms (2 bytes an element), a fused attention kernel (flash / memory-efficient SDPA)
keeps no score matrices, the head's Triton kernel keeps one bf16 tile (2 bytes an element, not fitted), full fine-tuning keeps fp32 weights (16 bytes a parameter with gradients and
AdamW), LoRA (rank 8 on every linear layer, this toolkit's default) keeps frozen bf16 weights (2 bytes)
and trains only the adapters. The CUDA context and allocator slack (about 1 GB) are not modelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import RESULTS_DIR, emit, rnd, write_json
from benchmarks.scale_runs import SIZES

#: the students users distil (each model's public config.json): layers, widths, vocabulary, tied head
LARGE_SHAPES: dict[str, dict[str, Any]] = {
    "Qwen2.5-1.5B": {**SIZES["1.5b"], "tied": True, "qkv_bias": True},
    "Qwen2.5-7B": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                   "intermediate_size": 18944, "vocab_size": 152064, "tied": False, "qkv_bias": True},
    "Llama-3.1-8B": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                     "intermediate_size": 14336, "vocab_size": 128256, "tied": False, "qkv_bias": False},
}  # fmt: skip
FEATURES = ("saved", "layer", "attention", "head", "const")
HEAD_TILE, HEAD_CHUNK = 4096, 32768  # a tile of TRL's fused LM head: tokens x vocabulary entries
STATE_BYTES_FP32 = 12.0  # gradient (4) + AdamW's two moments (8) per trainable parameter
LORA_RANK = 8
GIB = 2**30


def _linears(shape: dict[str, Any]) -> list[tuple[int, int]]:
    """``(in, out)`` of one decoder layer's linear layers (q, k, v, o, gate, up, down)."""
    h, i = shape["hidden_size"], shape["intermediate_size"]
    kv = shape["num_key_value_heads"] * (h // shape["num_attention_heads"])
    return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]


def param_count(shape: dict[str, Any]) -> int:
    """Parameters of a Qwen2/Llama decoder of ``shape`` (embeddings, an untied head if any, biases of q/k/v
    where the architecture has them, RMSNorm weights)."""
    h, v, n = shape["hidden_size"], shape["vocab_size"], shape["num_hidden_layers"]
    linears = _linears(shape)
    per_layer = sum(a * b for a, b in linears) + 2 * h
    if shape.get("qkv_bias", True):
        per_layer += sum(b for _, b in linears[:3])
    return v * h * (1 if shape.get("tied", True) else 2) + n * per_layer + h


def lora_param_count(shape: dict[str, Any], rank: int = LORA_RANK) -> int:
    """Trainable parameters of rank-``rank`` LoRA adapters on every linear layer of every decoder layer."""
    return shape["num_hidden_layers"] * sum(rank * (a + b) for a, b in _linears(shape))


def features(shape: dict[str, Any], k: int, length: int, *, fused_attention: bool = False) -> dict[str, float]:
    """Element counts of each activation term for one question of ``k`` candidates of ``length`` tokens."""
    h, i = shape["hidden_size"], shape["intermediate_size"]
    tokens = k * length
    return {
        "saved": float(shape["num_hidden_layers"] * tokens * h),
        "layer": float(tokens * (h + i)),
        "attention": 0.0 if fused_attention else float(k * shape["num_attention_heads"] * length**2),
        "head": float(min(tokens, HEAD_TILE) * min(shape["vocab_size"], HEAD_CHUNK)),
        "const": 1.0,
    }


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with non-negative coefficients (drop the most negative and refit until none is)."""
    active = list(range(x.shape[1]))
    while True:
        coef = np.zeros(x.shape[1])
        coef[active] = np.linalg.lstsq(x[:, active], y, rcond=None)[0]
        if (coef[active] >= 0).all() or len(active) == 1:
            return np.clip(coef, 0, None)
        active.remove(active[int(np.argmin(coef[active]))])


def fit(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Bytes per element of each term from the measured runs (``train_mb`` minus the known states), and
    the fit's prediction against every measurement."""
    rows, targets = [], []
    for r in runs:
        shape = SIZES[r["size"]]
        rows.append([features(shape, r["k"], r["length"])[f] for f in FEATURES])
        targets.append(r["train_mb"] * 2**20 - STATE_BYTES_FP32 * r["params"])
    x, y = np.array(rows), np.array(targets)
    scale = np.maximum(np.abs(x).max(axis=0), 1.0)  # columns of similar magnitude for the solver
    coef = _nnls(x / scale, y) / scale
    checked = []
    for r, row in zip(runs, rows, strict=True):
        predicted = (STATE_BYTES_FP32 * r["params"] + float(np.dot(row, coef))) / 2**20
        checked.append({key: r[key] for key in ("size", "k", "length", "config")}
                       | {"measured_mb": r["train_mb"], "predicted_mb": predicted, "ratio": predicted / r["train_mb"]})  # fmt: skip
    return {"bytes_per_element": dict(zip(FEATURES, coef.tolist(), strict=True)), "checked": checked}


def predict_gpu(shape: dict[str, Any], coef: dict[str, float], *, k: int = 8, length: int = 1024, lora: bool = False) -> dict[str, float]:
    """GiB of one training step on a GPU (see the module doc for the assumptions): the model's weights,
    the trainable parameters' gradient and optimizer states, and the activations."""
    params = param_count(shape)
    if lora:
        weights, states = 2.0 * params, 16.0 * lora_param_count(shape)  # frozen bf16 base; fp32 adapters + AdamW
    else:
        weights, states = 4.0 * params, STATE_BYTES_FP32 * params  # fp32 master weights, gradients and AdamW
    elements = features(shape, k, length, fused_attention=True)
    fitted = sum(coef[f] * 0.5 * elements[f] for f in ("saved", "layer", "attention"))  # bf16: half of fp32's bytes
    activations = fitted + 2.0 * elements["head"]  # the Triton kernel's one bf16 tile
    return {"params_b": params / 1e9, "weights_gib": weights / GIB, "states_gib": states / GIB,
            "activations_gib": activations / GIB, "total_gib": (weights + states + activations) / GIB}  # fmt: skip


def build(scale_results: dict[str, Any]) -> dict[str, Any]:
    """The fit on the scale benchmark's runs and the predictions for :data:`LARGE_SHAPES`."""
    fitted = fit(scale_results["runs"])
    coef = fitted["bytes_per_element"]
    worst = {size: max(abs(c["ratio"] - 1) for c in fitted["checked"] if c["size"] == size)
             for size in dict.fromkeys(c["size"] for c in fitted["checked"])}  # fmt: skip
    predictions = {name: {"full" if not lora else "lora": predict_gpu(shape, coef, lora=lora) for lora in (False, True)}
                   for name, shape in LARGE_SHAPES.items()}  # fmt: skip
    return {"benchmark": "memory_model", "fit": fitted, "worst_relative_error": worst,
            "assumptions": {"k": 8, "length": 1024, "lora_rank": LORA_RANK, "gpu": "bf16 activations, fused attention, "
                            "fp32 master weights (full) or frozen bf16 weights (LoRA), CUDA context not modelled"},
            "predictions": predictions}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default=str(RESULTS_DIR / "scale.json"), help="the scale benchmark's results")
    parser.add_argument("--out", default=str(RESULTS_DIR / "memory_model.json"), help="where to write the model")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    path = Path(args.scale)
    if not path.is_file():
        parser.error(f"--scale: {path} does not exist (run `python -m benchmarks.scale` first)")
    data = json.loads(path.read_text())
    if not data.get("runs"):
        parser.error(f"--scale: {path} holds no runs")
    model = build(data)
    write_json(args.out, rnd(model))
    emit(rnd({"worst_relative_error": model["worst_relative_error"],
              "total_gib": {n: {c: p["total_gib"] for c, p in preds.items()} for n, preds in model["predictions"].items()}}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
