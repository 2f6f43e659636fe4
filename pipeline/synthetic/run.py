"""Write the synthetic world's question shards and the reference teacher's rationale shards.

``OUT/questions/`` is a run directory of kind ``questions`` (shards ``<split>-00000``, ...);
``OUT/rationales/`` one of kind ``rationales`` with every (train question x perspective x
sample), verified against the gold answer. Rows are produced and written one shard at a time,
so memory does not grow with the number of questions. A shard already listed in a manifest is
skipped, so re-running the same command is idempotent (and resumes after a kill); the run ids
are derived from the configuration, so a different configuration refuses to mix into the same
folder.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_schemas import RATIONALE_SCHEMA, SCHEMA_VERSION, RunWriter, read_table, rows_to_table
from data_schemas.io import SHARD_DIR
from pipeline.ids import derive_seed, stable_hash
from pipeline.verify import verify

from .perspectives import PERSPECTIVES
from .teacher import TEACHER_NAME, NoiseConfig, ReferenceTeacher
from .world import SOURCE, SPLITS, TASK, Problem, WorldConfig, iter_problems, question_row

EVAL_SPLITS: tuple[str, ...] = ("test", "ood_steps", "ood_template", "retention")


@dataclass(frozen=True)
class SynthesisConfig:
    """One synthesis run of the synthetic world (the CLI's arguments)."""

    out: Path
    world: WorldConfig = field(default_factory=WorldConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    num_questions: int = 200  # train questions (these get rationales)
    eval_questions: int = 50  # per evaluation split (test, ood_steps, ood_template, retention)
    retention_train_questions: int = 200  # stage-0 questions of the retention skill
    samples: int = 2  # rationales per (question, perspective)
    perspectives: tuple[str, ...] = PERSPECTIVES
    shard_size: int = 1000  # questions per shard

    def __post_init__(self) -> None:
        unknown = [p for p in self.perspectives if p not in PERSPECTIVES]
        if unknown or not self.perspectives or len(set(self.perspectives)) != len(self.perspectives):
            raise ValueError(f"perspectives must be distinct names from {PERSPECTIVES}, got {self.perspectives}")
        if min(self.num_questions, self.eval_questions, self.retention_train_questions) < 0:
            raise ValueError("question counts must be >= 0")
        if self.samples < 1 or self.shard_size < 1:
            raise ValueError("samples and shard_size must be >= 1")

    def split_sizes(self) -> dict[str, int]:
        sizes = {"train": self.num_questions, **{s: self.eval_questions for s in EVAL_SPLITS}}
        sizes["retention_train"] = self.retention_train_questions
        return {s: sizes[s] for s in SPLITS}

    def questions_config(self) -> dict[str, Any]:
        return {
            "source": SOURCE,
            "world": self.world.to_dict(),
            "world_fingerprint": self.world.fingerprint,
            "split_sizes": self.split_sizes(),
            "shard_size": self.shard_size,
        }

    def questions_run_id(self) -> str:
        return f"synthetic-questions-{stable_hash(json.dumps(self.questions_config(), sort_keys=True), length=12)}"

    def rationales_config(self) -> dict[str, Any]:
        return {
            "questions_run_id": self.questions_run_id(),
            "teacher": TEACHER_NAME,
            "perspectives": list(self.perspectives),
            "samples": self.samples,
            "noise": self.noise.to_dict(),
            "seed": self.world.seed,
            "split": "train",
            "num_questions": self.num_questions,
            "shard_size": self.shard_size,
        }

    def rationales_run_id(self) -> str:
        return f"synthetic-reference-{stable_hash(json.dumps(self.rationales_config(), sort_keys=True), length=12)}"


@dataclass
class PerspectiveStats:
    rationales: int = 0
    correct: int = 0
    tokens: int = 0
    chars: int = 0
    noise: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        n = max(self.rationales, 1)
        return {
            "rationales": self.rationales,
            "accuracy": self.correct / n,
            "mean_tokens": self.tokens / n,
            "mean_chars": self.chars / n,
            "noise": dict(sorted(self.noise.items())),
        }


@dataclass
class SynthesisSummary:
    """What a run wrote (or found already written)."""

    questions_dir: Path
    rationales_dir: Path
    questions: dict[str, int] = field(default_factory=dict)
    shards_written: int = 0
    shards_skipped: int = 0
    rationales_written: int = 0
    seconds: float = 0.0
    perspectives: dict[str, PerspectiveStats] = field(default_factory=lambda: defaultdict(PerspectiveStats))

    @property
    def rationales(self) -> int:
        return sum(s.rationales for s in self.perspectives.values())

    def stats(self) -> dict[str, Any]:
        return {"rationales": self.rationales, "perspectives": {p: s.to_dict() for p, s in self.perspectives.items()}}


def _shards(n: int, size: int) -> Iterator[tuple[int, int, int]]:
    for k, start in enumerate(range(0, n, size)):
        yield k, start, min(n, start + size)


def _rationale_table(
    problems: list[Problem], cfg: SynthesisConfig, teacher: ReferenceTeacher, run_id: str, stats: SynthesisSummary
) -> pa.Table:
    """Every (problem x perspective x sample) rationale as a contract table, columnar for speed."""
    cols: dict[str, list[Any]] = {name: [] for name in (
        "question_id", "question", "gold_answer", "perspective", "sample_index", "rationale",
        "predicted_answer", "is_correct", "num_tokens", "seed", "metadata")}  # fmt: skip
    seed0 = cfg.world.seed
    for p in problems:
        gold = str(p.answer)
        for perspective in cfg.perspectives:
            pstats = stats.perspectives[perspective]
            for k in range(cfg.samples):
                seed = derive_seed(seed0, p.question_id, perspective, TEACHER_NAME, k)
                out = teacher.write(p, perspective, seed)
                verdict = verify(out.text, gold, TASK)
                cols["question_id"].append(p.question_id)
                cols["question"].append(p.question)
                cols["gold_answer"].append(gold)
                cols["perspective"].append(perspective)
                cols["sample_index"].append(k)
                cols["rationale"].append(out.text)
                cols["predicted_answer"].append(verdict.predicted_answer)
                cols["is_correct"].append(verdict.is_correct)
                cols["num_tokens"].append(out.num_tokens)
                cols["seed"].append(seed)
                step = "null" if out.noise_step is None else out.noise_step
                cols["metadata"].append(f'{{"noise":"{out.noise}","noise_step":{step}}}')
                pstats.rationales += 1
                pstats.correct += bool(verdict.is_correct)
                pstats.tokens += out.num_tokens
                pstats.chars += len(out.text)
                pstats.noise[out.noise] += 1
    n = len(cols["question_id"])
    constant = {
        "task": TASK, "teacher": TEACHER_NAME, "finish_reason": "stop", "run_id": run_id,
        "schema_version": SCHEMA_VERSION, "source": SOURCE, "split": "train",
    }  # fmt: skip
    arrays = {**cols, **{name: [value] * n for name, value in constant.items()}}
    schema = pa.schema([RATIONALE_SCHEMA.field(name) for name in arrays], metadata=RATIONALE_SCHEMA.metadata)
    return pa.Table.from_pydict(arrays, schema=schema)


def _account_existing(writer: RunWriter, name: str, stats: SynthesisSummary) -> None:
    """Add a finished shard's statistics to ``stats`` (reads only a few columns)."""
    path = writer.run_dir / SHARD_DIR / f"{name}.parquet"
    table = read_table(path, "rationales", columns=["perspective", "is_correct", "num_tokens", "rationale", "metadata"])
    for per, ok, tokens, text, meta in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
        s = stats.perspectives[per]
        s.rationales += 1
        s.correct += bool(ok)
        s.tokens += tokens or 0
        s.chars += len(text)
        s.noise[json.loads(meta).get("noise", "none") if meta else "none"] += 1


ProgressHook = Callable[[str, int], None]  # (phase "questions" | "rationales", units done)


def synthesize(cfg: SynthesisConfig, progress: ProgressHook | None = None) -> SynthesisSummary:
    """Write (or complete) the question and rationale runs of ``cfg``; return a summary."""
    t0 = time.perf_counter()
    advance = progress or (lambda phase, n: None)
    out = Path(cfg.out)
    summary = SynthesisSummary(questions_dir=out / "questions", rationales_dir=out / "rationales")
    qwriter = RunWriter(summary.questions_dir, cfg.questions_run_id(), kind="questions", config=cfg.questions_config())
    rwriter = RunWriter(
        summary.rationales_dir, cfg.rationales_run_id(), kind="rationales", config=cfg.rationales_config()
    )
    for split, n in cfg.split_sizes().items():
        summary.questions[split] = n
        for k, start, stop in _shards(n, cfg.shard_size):
            name = f"{split}-{k:05d}"
            if qwriter.has_shard(name):
                summary.shards_skipped += 1
            else:
                rows = [question_row(p, cfg.world) for p in iter_problems(cfg.world, split, start, stop)]
                qwriter.write_shard(name, rows_to_table(rows, "questions", where=f"{split} questions"))
                summary.shards_written += 1
            advance("questions", stop - start)
    qwriter.finalize({"split_sizes": cfg.split_sizes()})

    teacher = ReferenceTeacher(cfg.noise)
    per_question = len(cfg.perspectives) * cfg.samples
    for k, start, stop in _shards(cfg.num_questions, cfg.shard_size):
        name = f"train-{k:05d}"
        if rwriter.has_shard(name):
            _account_existing(rwriter, name, summary)
            summary.shards_skipped += 1
        else:
            problems = list(iter_problems(cfg.world, "train", start, stop))
            table = _rationale_table(problems, cfg, teacher, rwriter.run_id, summary)
            rwriter.write_shard(name, table)
            summary.shards_written += 1
            summary.rationales_written += table.num_rows
        advance("rationales", (stop - start) * per_question)
    rwriter.finalize(summary.stats())
    summary.seconds = time.perf_counter() - t0
    return summary
