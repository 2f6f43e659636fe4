"""``python -m distill.train``: distil rationale shards into a student with the MIND trainer.

    python -m distill.train --data runs/demo --output_dir runs/train-mind --strategy mind --max_steps 300
    python -m distill.train --config configs/train/demo.yaml --data runs/demo/rationales --output_dir runs/demo-s1 --seed 1

Flags are TRL's (``SFTConfig``: ``--output_dir``, ``--max_steps``, ``--learning_rate``,
``--per_device_train_batch_size``, ``--gradient_accumulation_steps``, ``--seed``,
``--resume_from_checkpoint`` ...) plus MIND's (``distill.config.MindConfig``) and the script's
(``MindScriptArguments``: ``--data``, ``--student``, evaluation). With no ``--student`` the
embedded default is used: the synthetic world's tiny student after its stage-0 pretraining
(built once under ``runs/students/``). After training the model is saved to ``output_dir`` and
evaluated on the synthetic world's splits; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from data_schemas.run_files import EVAL_RESULTS, MIND_STATE
from data_schemas import ContractError
from distill.config import MindConfig, MindParser, MindScriptArguments
from distill.cpu_memory import keep_freed_memory
from distill.curve import CURVE_FILE, FlopCurveCallback, parse_flop_grid, prediction_dir
from distill.data import CandidateStore, held_out_split, load_questions_with_candidates
from pipeline.sources.synthetic_world import synthetic_world_of
from distill.default_student import ensure_default_student
from distill.formatting import resolve_style
from distill.student import (
    LoraSettings,
    StudentLoadError,
    TokenizerMismatchError,
    build_student,
    build_world_tokenizer,
    load_student,
    set_torch_threads,
)
from distill.trainer import MindTrainer

logger = logging.getLogger("distill.train")


def load_model(script: MindScriptArguments, args: MindConfig, world: Any = None) -> tuple[Any, Any, str]:
    """``(model, tokenizer, description)`` of the student the flags ask for (the embedded default
    is built for the synthetic ``world``, a WorldConfig, or the default world)."""
    lora = LoraSettings(r=script.lora_r, alpha=script.lora_alpha) if script.lora_r > 0 else None
    if script.model_name_or_path == "scratch":
        tokenizer = build_world_tokenizer(world=world)
        model = build_student(tokenizer, seed=args.seed)
        if lora is not None:
            from distill.student import apply_lora

            model = apply_lora(model, lora)
        return model, tokenizer, "scratch (untrained tiny student)"
    name = script.model_name_or_path
    if not name:
        path = ensure_default_student(script.student_root, seed=0, world=world)
        return (*load_student(path, lora=lora), f"embedded default ({path})")
    model, tokenizer = load_student(name, lora=lora, revision=script.model_revision,
                                    trust_remote_code=args.trust_remote_code)  # fmt: skip
    return model, tokenizer, name


def train(script: MindScriptArguments, args: MindConfig) -> dict[str, Any]:
    """Train, save and evaluate; return the summary printed as the last line."""
    splits, curve_grid = check_flags(script, args)
    # the synthetic world that wrote the data (None: not synthetic): the default student is built
    # for it and the evaluation splits come from it (read before training: errors come first)
    world = synthetic_world_of(script.data)
    set_seed(args.seed)
    set_torch_threads(script.num_threads)
    model, tokenizer, described = load_model(script, args, world)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    style = resolve_style(tokenizer, args.prompt_style)
    print(f"student: {described}; prompt style {style}", file=sys.stderr)
    data = load_training_data(script, args, tokenizer, style)

    trainer = MindTrainer(model, args, data.store, data.views, processing_class=tokenizer,
                          encoder_reps=data.encoder_reps)  # fmt: skip
    if curve_grid:
        trainer.add_callback(curve_callback(trainer, script, args, curve_grid, tokenizer, style, world))
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    train_seconds = time.perf_counter() - t0
    trainer.save_model(args.output_dir)
    trainer.save_state()  # trainer_state.json: the logged metrics over steps (the web viewer's charts)
    summary = trainer.summary()
    print_views(summary)

    results: dict[str, Any] = {}
    if trainer.is_world_process_zero() and (splits or data.validation):
        sets = evaluation_sets(script, splits, data.validation, world)
        results = evaluate_trained(trainer, script, args, sets, tokenizer, style)
    return {
        "strategy": args.strategy,
        "seed": args.seed,
        "steps": trainer.state.global_step,
        "train_seconds": round(train_seconds, 2),
        "output_dir": args.output_dir,
        "accuracy": {name: r["accuracy"] for name, r in results.items()},
        "n": {name: r["n"] for name, r in results.items()},
        "in_subset": {name: round(v["in_subset"], 4) for name, v in summary["views"].items()},
        "kept_share": {name: round(v["kept_share"], 4) for name, v in summary["views"].items()},
        "compute": summary["compute"],
        "curve": curve_records(args.output_dir) if curve_grid else [],
    }


def check_flags(script: MindScriptArguments, args: MindConfig) -> tuple[list[str], list[float]]:
    """``(evaluation splits, FLOP grid)`` of the flags, after the checks that must fail before the
    student is loaded (missing data folders, a resume folder that is no MIND checkpoint, unknown splits)."""
    if not script.data:
        raise ContractError("--data", "a folder of rationale shards is required (e.g. the output of flows.synthesize)")
    for flag, folder in (("--data", script.data), ("--validation_data", script.validation_data)):
        if folder and not Path(folder).is_dir():  # checked before the student is loaded
            what = "does not exist" if not Path(folder).exists() else "is a file, not a folder of rationale runs"
            raise ContractError(flag, f"{folder} {what} (give the run folder, or a folder of runs)")
    resume = args.resume_from_checkpoint
    if resume and not (Path(resume) / MIND_STATE).is_file():  # fail before loading anything, without a traceback
        raise ContractError(
            "--resume_from_checkpoint", f"{resume} has no {MIND_STATE}: not a MIND checkpoint (give a checkpoint-N folder)"
        )
    splits = [s.strip() for s in script.eval_splits.split(",") if s.strip()]
    check_split_names(splits, "--eval_splits")
    curve_grid = parse_flop_grid(script.curve_flops)
    curve_splits = [s.strip() for s in script.curve_splits.split(",") if s.strip()] if curve_grid else []
    check_split_names(curve_splits, "--curve_splits")
    if script.curve_questions < 1:
        raise ContractError("--curve_questions", f"must be >= 1, got {script.curve_questions}")
    return splits, curve_grid


@dataclass
class TrainingData:
    """What the trainer is given: the training questions' candidates, the view names, the held-out
    validation questions and the meta encoder's candidate representations (None without one)."""

    store: CandidateStore
    views: list[str]
    validation: list[Any]
    encoder_reps: Any = None


def load_training_data(script: MindScriptArguments, args: MindConfig, tokenizer: Any, style: str) -> TrainingData:
    """The shards of ``--data`` as questions with candidates, less the validation questions; the
    meta encoder (``--meta_encoder``, MIND only) is loaded first, so that a bad path fails early."""
    encoder = None
    if args.meta_encoder and args.strategy == "mind":  # a bad path fails before anything is trained
        from distill.encoder import load_encoder

        encoder = load_encoder(args.meta_encoder)
    questions, views, report = load_questions_with_candidates(
        script.data, tokenizer, style, include_incorrect=args.include_incorrect, max_length=args.max_length,
        answer_template=args.answer_template or None, views=args.view_list,
    )
    for line in report.lines():
        print(f"data: {line}", file=sys.stderr)
    if report.questions_without_candidate:
        logger.warning("%d question(s) had no usable candidate and were skipped", report.questions_without_candidate)
    if script.validation_data:
        train_qs, validation = separate_validation(questions, script.validation_data, tokenizer, style, args)
    else:
        train_qs, validation = held_out_split(questions, args.validation_questions, args.seed)
    store = CandidateStore(train_qs, len(views), args.seed)
    print(f"data: {len(train_qs)} training questions, {len(validation)} validation (held out)", file=sys.stderr)
    encoder_reps = None
    if encoder is not None:
        from distill.encoder import encode_candidates

        encoder_reps = encode_candidates(encoder, store, tokenizer)
        print(f"meta encoder: {args.meta_encoder} ({encoder_reps.shape[1]}-d, {encoder_reps.shape[0]} candidates)", file=sys.stderr)
    return TrainingData(store, views, validation, encoder_reps)


def evaluation_sets(
    script: MindScriptArguments, splits: list[str], validation: list[Any], world: Any
) -> dict[str, list[dict[str, Any]]]:
    """The question sets evaluated after training: the held-out validation questions, then the
    synthetic-world ``--eval_splits``."""
    sets: dict[str, Any] = {}
    if validation:
        sets["validation"] = [
            {"question_id": q.question_id, "question": q.question, "gold_answer": q.gold_answer, "task": q.task}
            for q in validation
        ]
    if splits:
        from distill.question_sets import load_split_questions

        for name in splits:
            sets[name] = load_split_questions(
                name, num_questions=script.eval_questions, world_seed=script.world_seed, world=world
            )
    return sets


def evaluate_trained(trainer: MindTrainer, script: MindScriptArguments, args: MindConfig,
                     sets: dict[str, list[dict[str, Any]]], tokenizer: Any, style: str) -> dict[str, Any]:  # fmt: skip
    """Each set's evaluation summary; predictions under ``output_dir/eval/``, the summaries in
    ``output_dir/eval_results.json``."""
    from distill.eval_decode import evaluate_splits

    evals = evaluate_splits(
        trainer.model, tokenizer, sets, out_dir=Path(args.output_dir) / "eval",
        max_new_tokens=script.eval_max_new_tokens, prompt_style=style,
        batch_size=max(args.per_device_eval_batch_size, 32),
    )  # fmt: skip
    results = {name: r.summary() for name, r in evals.items()}
    (Path(args.output_dir) / EVAL_RESULTS).write_text(json.dumps(results, indent=2))
    return results


def check_split_names(splits: list[str], flag: str) -> None:
    """A typo in a split name fails before training, naming the flag (not as a traceback after it)."""
    if splits:
        from distill.question_sets import SYNTHETIC_SPLITS

        if unknown := [s for s in splits if s not in SYNTHETIC_SPLITS]:
            raise ContractError(flag, f"unknown split(s) {', '.join(unknown)}; choose from {', '.join(SYNTHETIC_SPLITS)}")


def separate_validation(questions: list[Any], folder: str, tokenizer: Any, style: str, args: MindConfig) -> tuple[list[Any], list[Any]]:
    """``(train, validation)`` when the validation questions come from their own shards
    (``--validation_data``): every question there validates, none of them is trained on."""
    validation, _, _ = load_questions_with_candidates(
        folder, tokenizer, style, include_incorrect=True, max_length=args.max_length,
        answer_template=args.answer_template or None,
    )  # fmt: skip
    held = {q.question_id for q in validation}
    train_qs = [q for q in questions if q.question_id not in held]
    if not train_qs:
        raise ContractError("--validation_data", f"{folder} holds every question of --data: nothing left to train on")
    return train_qs, validation


def curve_callback(trainer: MindTrainer, script: MindScriptArguments, args: MindConfig, grid: list[float],
                   tokenizer: Any, style: str, world: Any) -> FlopCurveCallback:  # fmt: skip
    """The FLOP-grid learning curve (``--curve_flops``) on ``--curve_splits``; each point's
    predictions go to ``output_dir/curve/<grid value>/<split>.parquet``."""
    from distill.eval_decode import evaluate_splits
    from distill.question_sets import load_split_questions

    names = [s.strip() for s in script.curve_splits.split(",") if s.strip()]
    sets = {n: load_split_questions(n, num_questions=script.curve_questions, world_seed=script.world_seed, world=world)
            for n in names}  # fmt: skip

    def evaluate(grid_value: float) -> dict[str, tuple[float, int]]:
        evals = evaluate_splits(trainer.model, tokenizer, sets, max_new_tokens=script.eval_max_new_tokens,
                                prompt_style=style, batch_size=max(args.per_device_eval_batch_size, 32),
                                out_dir=Path(args.output_dir) / prediction_dir(grid_value))  # fmt: skip
        return {n: (r.summary()["accuracy"], r.summary()["n"]) for n, r in evals.items()}

    return FlopCurveCallback(trainer, grid, evaluate, args.output_dir)


def curve_records(output_dir: str) -> list[dict[str, Any]]:
    path = Path(output_dir) / CURVE_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def print_views(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"strategy {summary['strategy']}: per perspective")
    for col in ("view", "kept", "in subset", "mean alpha", "mean score", "L_p"):
        table.add_column(col, justify="left" if col == "view" else "right")
    for name, v in summary["views"].items():
        lp = "–" if v["L_p"] is None else f"{v['L_p']:.3f}"
        sc = "–" if v["mean_score"] is None else f"{v['mean_score']:.3f}"
        table.add_row(name, f"{v['kept']:,}", f"{v['in_subset']:.1%}", f"{v['mean_alpha']:.3f}", sc, lp)
    c = summary["compute"]
    table.caption = (f"compute: {c['backward_tokens']:,} trained (fwd+bwd) tokens, {c['forward_tokens']:,} forward-only "
                     f"tokens, ~{c['flops']:.3g} FLOPs ({c['params']:,} params)")
    Console(stderr=True, emoji=False).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = MindParser((MindScriptArguments, MindConfig))
    try:
        script, args = parser.parse_args_and_config(argv)
    except ValueError as exc:  # our __post_init__ checks and the parser's own
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if script.keep_freed_memory and (args.use_cpu or not torch.cuda.is_available()):
        keep_freed_memory()  # this process is ours: fewer page faults, 7-13% faster (distill/cpu_memory.py)
    try:
        result = train(script, args)
    except (ContractError, StudentLoadError, TokenizerMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result["accuracy"]:
        print(
            "accuracy: " + ", ".join(f"{k} {v:.1%} (n={result['n'][k]})" for k, v in result["accuracy"].items()),
            file=sys.stderr,
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
