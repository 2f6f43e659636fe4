"""The quality benchmark's data: the synthetic world's rationales, a validation hold-out, and the
data regimes (``full``: every other question; ``paper``: a hard-first selection).

Everything is written once under the benchmark's work folder, in folders named by a hash of what
made them, and reused by later invocations: the synthesis resumes from its manifest, the subsets
are no-ops when already written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import QUIET_ENV, REPO_ROOT


def digest(obj: Any, length: int = 10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a rewritten file is read again
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


STAGE0_RECORD = "stage0.json"  # written by distill.pretrain beside the weights


def student_digest(folder: str | Path) -> str:
    """A digest of a student folder's config, tokenizer and weights: a run's key names the student by content, so
    a rebuilt student with other weights never reuses runs of the earlier one, and a bit-identical rebuild gives the
    same digest ("missing" if there are no weights). ``stage0.json`` is left out: it records how the student was
    built, wall times included."""
    files = sorted(p for p in Path(folder).glob("*")
                   if p.suffix in (".json", ".safetensors", ".bin") and p.name != STAGE0_RECORD and p.is_file())
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        return "missing"
    return digest({p.name: _file_sha256(str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in files}, 16)


@dataclasses.dataclass
class Regime:
    """One data regime: the shards a run trains on, the validation shards, its training overrides."""

    name: str
    data: Path
    validation: Path
    train: dict[str, Any]
    selection: dict[str, Any] | None = None  # pipeline.select's counts (hard-first regimes)
    questions: int = 0

    def describe(self) -> dict[str, Any]:
        return {"data": str(self.data), "validation": str(self.validation), "train": self.train,
                "questions": self.questions, "selection": self.selection}  # fmt: skip


def synthesize(cfg: dict[str, Any], work: Path) -> Path:
    """The rationale shards of the config's world (the real flow; resumes from its manifest)."""
    syn = cfg["synthesis"]
    spec = {
        "source": {"kind": "synthetic", "options": {"split": "train", "seed": cfg["world"].get("seed", 0),
                                                    "config": cfg["world"]}},
        "num_questions": syn["num_questions"],
        "perspective_set": "synthetic",
        "perspectives": syn.get("perspectives"),
        "teachers": [{"backend": "synthetic", "options": syn.get("teacher", {})}],
        "samples": syn.get("samples", 1),
        "seed": syn.get("seed", 0),
        "shard_size": syn.get("shard_size", 500),
    }  # fmt: skip
    spec = {k: v for k, v in spec.items() if v is not None}
    out = work / f"data-{digest(spec)}"
    done = out / "done.json"
    if done.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "synthesis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "flows.synthesize", "--out", str(out / "rationales"), "--config", str(out / "synthesis.yaml")],
        cwd=REPO_ROOT, env={**os.environ, **QUIET_ENV}, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"error: synthesis failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    done.write_text(json.dumps({"spec": spec, "summary": proc.stdout.strip().splitlines()[-1:]}))
    return out


def prepare_regimes(cfg: dict[str, Any], work: Path) -> dict[str, Regime]:
    """Synthesize, hold out the validation questions (a seeded hash order; the same for every
    regime), and write each regime's training subset."""
    from pipeline.select import question_difficulty, select_hard_first, write_subset

    base = synthesize(cfg, work)
    source = base / "rationales"
    difficulty = question_difficulty(source)
    n_val = int(cfg.get("validation_questions", 150))
    if not 0 < n_val < len(difficulty):
        raise SystemExit(f"error: validation_questions must be in [1, {len(difficulty) - 1}], got {n_val}")
    order = sorted(difficulty, key=lambda q: hashlib.sha256(f"validation:{q}".encode()).hexdigest())
    held, rest = order[:n_val], order[n_val:]
    validation = write_subset(source, base / f"validation-{n_val}", held, {"role": "validation"})
    pool_dir = write_subset(source, base / f"pool-{n_val}", rest, {"role": "training pool"})
    pool = {q: difficulty[q] for q in rest}
    regimes = {}
    for name, spec in cfg["regimes"].items():
        spec = spec or {}
        train = dict(spec.get("train") or {})
        if select := spec.get("select"):
            chosen = select_hard_first(pool, **select)
            data = write_subset(pool_dir, base / f"select-{n_val}-{digest(select)}", chosen.question_ids,
                                {"role": f"regime {name}", **select})  # fmt: skip
            regimes[name] = Regime(name, data, validation, train, chosen.counts, len(chosen.question_ids))
        else:
            regimes[name] = Regime(name, pool_dir, validation, train, None, len(rest))
    return regimes


@functools.cache
def train_defaults() -> dict[str, Any]:
    """The defaults of the ``distill.train`` fields this project declares (``MindConfig``'s own and
    ``MindScriptArguments``'), hashed into every run's key under its explicit settings: a run trained under an
    earlier default is never reused once the default changes. Fields inherited from TRL and transformers are left
    out (each run records the library versions)."""
    from distill.config import MindConfig, MindScriptArguments

    own = set(vars(MindConfig).get("__annotations__", {}))
    fields = [f for f in dataclasses.fields(MindConfig) if f.name in own] + list(dataclasses.fields(MindScriptArguments))
    return {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else  # type: ignore[misc]
                     None if f.default is dataclasses.MISSING else f.default) for f in fields}  # fmt: skip


@dataclasses.dataclass
class Run:
    """One training run: its regime, its full ``distill.train`` config and where it lives."""

    phase: str  # "tune", "final" (headline strategies) or "ablation"
    regime: str
    strategy: str  # a strategy or a variant name
    seed: int
    args: dict[str, Any]  # distill.train fields (MindConfig + MindScriptArguments), output_dir excluded
    folder: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:  # the student by its weights, not only its path; the defaults too
        weights = student_digest(self.args["student"]) if self.args.get("student") else None
        self.key = digest({**train_defaults(), **self.args, "student_weights": weights}, 12)

    def place(self, work: Path) -> Run:
        self.folder = work / "runs" / f"{self.regime}-{self.strategy}-s{self.seed}-{self.key}"
        return self

    @property
    def result_file(self) -> Path:
        return self.folder / "result.json"

    def done(self) -> dict[str, Any] | None:
        """The finished run's record; None if there is none, or it is another config's."""
        if self.result_file.is_file():
            data = json.loads(self.result_file.read_text())
            if data.get("key") == self.key and "compute" in data:
                return data
        return None
