"""``python -m pipeline.synthetic --out DIR``: the synthetic world's questions and reference rationales.

Writes ``DIR/questions/`` (one run of kind ``questions``: shards per split) and
``DIR/rationales/`` (kind ``rationales``: every train question x perspective x sample, written by
the reference teacher and verified). Re-running the same command skips finished shards.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data_schemas import ContractError

from .perspectives import PERSPECTIVES
from .run import SynthesisConfig, SynthesisSummary, synthesize
from .teacher import NoiseConfig
from .world import WorldConfig


def _perspectives(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in PERSPECTIVES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown perspective(s) {unknown}; choose from {', '.join(PERSPECTIVES)}")
    return names


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate must be in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.synthetic",
        description="Generate synthetic-world questions (all splits) and reference-teacher rationales (train split).",
    )
    ap.add_argument("--out", type=Path, required=True, help="output folder (gets questions/ and rationales/)")
    ap.add_argument("--num-questions", type=int, default=200, help="train questions (default 200)")
    ap.add_argument("--eval-questions", type=int, default=50, help="questions per evaluation split (default 50)")
    ap.add_argument(
        "--retention-train-questions", type=int, default=None,
        help="stage-0 questions of the retention skill (default: --num-questions)",
    )  # fmt: skip
    ap.add_argument("--samples", type=int, default=2, help="rationales per question and perspective (default 2)")
    ap.add_argument(
        "--perspectives", type=_perspectives, default=PERSPECTIVES,
        help=f"comma-separated subset of {','.join(PERSPECTIVES)} (default: all)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="world and sampling seed (default 0)")
    ap.add_argument("--slip-rate", type=_rate, default=0.1, help="arithmetic slips -> wrong answer (default 0.1)")
    ap.add_argument("--flaw-rate", type=_rate, default=0.05, help="flawed step, right answer (default 0.05)")
    ap.add_argument("--shard-size", type=int, default=1000, help="questions per shard (default 1000)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return ap


def config_from_args(args: argparse.Namespace) -> SynthesisConfig:
    retention = args.num_questions if args.retention_train_questions is None else args.retention_train_questions
    return SynthesisConfig(
        out=args.out,
        world=WorldConfig(seed=args.seed),
        noise=NoiseConfig(slip_rate=args.slip_rate, flaw_rate=args.flaw_rate),
        num_questions=args.num_questions,
        eval_questions=args.eval_questions,
        retention_train_questions=retention,
        samples=args.samples,
        perspectives=args.perspectives,
        shard_size=args.shard_size,
    )


def print_summary(console: Console, cfg: SynthesisConfig, s: SynthesisSummary) -> None:
    splits = ", ".join(f"{k} {v}" for k, v in s.questions.items())
    console.print(f"[bold]questions[/] -> {s.questions_dir}  ({splits})")
    table = Table(title=f"reference rationales -> {s.rationales_dir} (tokens, chars: means)", title_justify="left")
    for col in ("perspective", "rationales", "correct", "tokens", "chars", "slips", "flaws"):
        table.add_column(col, justify="left" if col == "perspective" else "right")
    for name in cfg.perspectives:
        st = s.perspectives[name]
        d = st.to_dict()
        table.add_row(name, str(st.rationales), f"{d['accuracy']:.1%}", f"{d['mean_tokens']:.1f}",
                      f"{d['mean_chars']:.0f}", str(st.noise["slip"]), str(st.noise["flaw"]))  # fmt: skip
    console.print(table)
    rate = s.rationales_written / s.seconds if s.seconds else 0.0
    console.print(
        f"{s.rationales} rationales ({s.rationales_written} written now, {rate:,.0f}/s); "
        f"shards written {s.shards_written}, already done {s.shards_skipped}; {s.seconds:.1f}s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=True, emoji=False)
    sizes = cfg.split_sizes()
    totals = {"questions": sum(sizes.values()), "rationales": cfg.num_questions * len(cfg.perspectives) * cfg.samples}
    try:
        if args.quiet:
            summary = synthesize(cfg)
        else:
            columns = (TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console) as bar:
                tasks = {phase: bar.add_task(phase, total=total) for phase, total in totals.items()}
                summary = synthesize(cfg, lambda phase, n: bar.advance(tasks[phase], n))
    except ContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_summary(Console(emoji=False), cfg, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
