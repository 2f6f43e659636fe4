"""The prepared GPU run (``python -m benchmarks.gpu_scale``): a student of Qwen2.5-1.5B's shape with random
weights (no download), bf16 autocast and activation checkpointing, one question of K = 8 candidates of 1,024
tokens per step, trained with ``all``, ``mind`` and plain TRL SFT for a few dozen steps each, then batched
greedy decoding with the evaluator's decoder. Reports per configuration: step time, tokens per second, model
FLOPs utilisation (the trainer's FLOP account, 6 N D + 2 N D_forward, attention not counted, over the card's
dense bf16 peak) and peak GPU memory. Each configuration runs in its own process (``benchmarks/scale_runs.py``).

    python -m benchmarks.gpu_scale                  # on the GPU machine: results in benchmarks/results/gpu_scale.json
    python -m benchmarks.gpu_scale --dry-run        # the same code on the CPU: the 1M shape, short sequences
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine_info, make_progress, publish, rnd, run_child

#: dense bf16 peak FLOP/s by card name (vendor data sheets; sparse figures are twice these)
PEAK_BF16 = {"H100 80GB HBM3": 989e12, "H100 PCIe": 756e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}
RUNS: dict[str, dict[str, Any]] = {
    "gpu": {"device": "cuda", "size": "1.5b", "k": 8, "length": 1024, "batch_questions": 1, "warmup_steps": 3,
            "measured_steps": 20, "decode_questions": 256, "decode_batch": 64, "decode_new_tokens": 256},
    "dry-run": {"device": "cpu", "size": "1m", "k": 8, "length": 128, "batch_questions": 1, "warmup_steps": 2,
                "measured_steps": 2, "decode_questions": 8, "decode_batch": 4, "decode_new_tokens": 8},
}  # fmt: skip
CONFIGS = ("sft", "all", "mind", "decode")


def peak_flops(device_name: str | None) -> float | None:
    """The card's dense bf16 peak, matched by name (None for a CPU or an unknown card)."""
    return next((v for k, v in PEAK_BF16.items() if device_name and k in device_name), None)


def one(config: str, run: dict[str, Any], tmp: Path) -> dict[str, Any]:
    folder = tmp / config
    folder.mkdir(parents=True)
    spec = {**run, "config": config, "tmp": str(folder), "torch_threads": 1 if run["device"] == "cpu" else 4}
    (folder / "spec.json").write_text(json.dumps(spec))
    result = folder / "result.json"
    data, wall = run_child("benchmarks.scale", ["_child", str(folder / "spec.json"), str(result)], result,
                           folder / "child.log", timeout_s=3000)  # fmt: skip
    return {"config": config, "process_wall_s": wall, **data}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU, tiny (what CI runs)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    args = parser.parse_args(argv)
    import torch

    run = dict(RUNS["dry-run" if args.dry_run else "gpu"])
    if run["device"] == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on the GPU machine, or --dry-run on the CPU")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"--configs: unknown {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    device_name = torch.cuda.get_device_name() if run["device"] == "cuda" else "cpu"
    peak = peak_flops(device_name)
    t_start = time.perf_counter()
    out = []
    with tempfile.TemporaryDirectory(prefix="mind-bench-gpu-") as tmp, make_progress() as progress:
        task = progress.add_task("gpu_scale", total=len(configs))
        for config in configs:
            progress.update(task, description=f"gpu_scale: {config}")
            r = one(config, run, Path(tmp))
            if "flops_per_step" in r:
                r["achieved_flops"] = r["flops_per_step"] / r["step_s"]
                r["mfu"] = r["achieved_flops"] / peak if peak else None
            out.append(r)
            progress.advance(task)
    by = {r["config"]: r for r in out}
    top: dict[str, Any] = {"device": device_name, "peak_bf16_flops": peak}
    for c, r in by.items():
        top[c] = {k: r.get(k) for k in ("step_s", "tokens_per_s", "mfu", "cuda_max_allocated_mb", "decode_tokens_per_s")
                  if r.get(k) is not None}  # fmt: skip
    for a, b in (("mind", "all"), ("mind", "sft")):
        if a in by and b in by and "step_s" in by[a] and "step_s" in by[b]:
            top[f"{a}_over_{b}_time"] = by[a]["step_s"] / by[b]["step_s"]
    results = {"benchmark": "gpu_scale", "run": run, "machine": machine_info(), "device": device_name,
               "runs": rnd(out), "headline": rnd(top)}  # fmt: skip
    return publish("gpu_scale", results, rnd(top), quick=args.dry_run, t_start=t_start)


if __name__ == "__main__":
    sys.exit(main())
