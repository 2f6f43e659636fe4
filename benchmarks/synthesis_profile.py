"""Synthesis benchmark, part 5: where ``run_shard``'s time goes (``python -m benchmarks.synthesis``).

One shard of the synthetic world timed plainly and then under cProfile, with named functions'
cumulative seconds; ``verify`` alone over the shard's rationales (to split the verify phase from
row assembly); and the steps of the shard writer timed one by one (Cython steps are invisible to
cProfile). ``benchmarks/synthesis.py`` runs it with the other parts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks._common import profile_cumulative, profile_rows, rate


RUN_SHARD_FUNCTIONS = {
    "run_shard": ("pipeline/synthesis.py", "run_shard"),
    "RunWriter.__init__ (manifest read under lock)": ("data_schemas/io.py", "__init__"),
    "RunWriter.has_shard": ("data_schemas/io.py", "has_shard"),
    "resolved_perspectives": ("pipeline/synthesis.py", "resolved_perspectives"),
    "build_requests": ("pipeline/synthesis.py", "build_requests"),
    "derive_seed": ("pipeline/ids.py", "derive_seed"),
    "teacher.generate (synthetic)": ("pipeline/teachers/synthetic_backend.py", "generate"),
    "problem_from_question_row": ("pipeline/synthetic/world.py", "problem_from_question_row"),
    "verify": ("pipeline/verify.py", "verify"),
    "verify: extract_answer": ("pipeline/verify.py", "extract_answer"),
    "verify: judge": ("pipeline/verify.py", "judge"),
    "Fraction.__new__": ("fractions.py", "__new__"),
    "json.dumps (error metadata)": ("json/__init__.py", "dumps"),
    "pa.Table.from_pydict": ("", "from_pydict"),
    "RunWriter.write_shard": ("data_schemas/io.py", "write_shard"),
    "write: conform_table": ("data_schemas/validate.py", "conform_table"),
    "write: Table.sort_by": ("", "sort_by"),
    "write: write_parquet_atomic": ("data_schemas/io.py", "write_parquet_atomic"),
    "write: pq.write_table": ("pyarrow/parquet/core.py", "write_table"),
    "write: os.fsync": ("", "posix.fsync"),
    "write: sha256_file": ("data_schemas/io.py", "sha256_file"),
    "write: load_manifest": ("data_schemas/manifest.py", "load_manifest"),
    "write: write_text_atomic (manifest)": ("data_schemas/io.py", "write_text_atomic"),
    "write: model_dump_json (manifest)": ("", "model_dump_json"),
}


def bench_profile_shard(tmp: Path, questions: int) -> dict:
    """``run_shard`` on one shard of ``questions`` questions: plain timing, then under cProfile."""
    import cProfile

    from pipeline.synthesis import SynthesisConfig, iter_question_shards, run_shard

    cfg = SynthesisConfig(num_questions=questions, shard_size=questions)
    ((name, qs),) = list(iter_question_shards(cfg))
    run_shard(cfg, tmp / "profile-warm", cfg.run_id(), name, qs)
    plain = [run_shard(cfg, tmp / f"profile-plain-{i}", cfg.run_id(), name, qs) for i in range(3)]
    profile = cProfile.Profile()
    profile.enable()
    profiled = run_shard(cfg, tmp / "profile", cfg.run_id(), name, qs)
    profile.disable()
    best = min(plain, key=lambda r: r.total_s)
    best_dir = tmp / f"profile-plain-{plain.index(best)}"
    verify_only = _verify_only_s(best_dir / "shards" / f"{name}.parquet")
    return {
        "verify_only_s": verify_only,
        "row_assembly_s": best.verify_s - verify_only,
        "write_breakdown_s": write_breakdown(best_dir, name),
        "questions": questions,
        "rows": best.rows,
        "plain_total_s": [r.total_s for r in plain],
        "plain_best": {"teacher_s": best.teacher_s, "verify_s": best.verify_s, "write_s": best.write_s,
                       "other_s": best.total_s - best.teacher_s - best.verify_s - best.write_s,
                       "total_s": best.total_s, "rationales_per_s": rate(best.rows, best.total_s)},
        "profiled": {"teacher_s": profiled.teacher_s, "verify_s": profiled.verify_s, "write_s": profiled.write_s,
                     "total_s": profiled.total_s},
        "named_cumulative_s": profile_cumulative(profile, RUN_SHARD_FUNCTIONS),
        "top_tottime": profile_rows(profile, "tottime", 30),
        "top_cumtime": profile_rows(profile, "cumtime", 40),
        "note": "cProfile slows Python-heavy code (teacher, verify) much more than C code (Parquet); "
        "use plain_best for shares and the profile for where inside each phase the time goes",
    }  # fmt: skip


def _verify_only_s(path: Path, repeats: int = 3) -> float:
    """Best time of ``verify`` alone over a shard's rationales (to split run_shard's verify_s)."""
    import pyarrow.parquet as pq

    from pipeline.verify import verify

    items = [tuple(r.values()) for r in pq.read_table(path, columns=["rationale", "gold_answer", "task"]).to_pylist()]
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for text, gold, task in items:
            verify(text, gold, task)
        best = min(best, time.perf_counter() - t)
    return best


def write_breakdown(run_dir: Path, name: str, repeats: int = 3) -> dict[str, float]:
    """The steps of ``RunWriter.write_shard`` (plus building the table), timed one by one (best of
    ``repeats``) on a finished shard put back in generation order (Cython steps are invisible to
    cProfile)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from data_schemas import RATIONALE_SCHEMA
    from data_schemas.io import SORT_KEYS, sha256_file, write_parquet_atomic, write_text_atomic
    from data_schemas.manifest import MANIFEST_NAME, load_manifest
    from data_schemas.validate import conform_table
    from pipeline.synthetic import PERSPECTIVES

    table = pq.read_table(run_dir / "shards" / f"{name}.parquet")
    pos = {p: i for i, p in enumerate(PERSPECTIVES)}
    keys = [
        (int(q.rsplit(":", 1)[1]), pos[p], k)  # source index, perspective, sample: generation order
        for q, p, k in zip(table["question_id"].to_pylist(), table["perspective"].to_pylist(),
                           table["sample_index"].to_pylist(), strict=True)
    ]  # fmt: skip
    order = sorted(range(table.num_rows), key=keys.__getitem__)
    cols = table.take(order).to_pydict()
    best: dict[str, float] = {}

    def clock(label: str, fn: Any) -> Any:
        t = time.perf_counter()
        out = fn()
        best[label] = min(best.get(label, float("inf")), time.perf_counter() - t)
        return out

    target = run_dir / "shards" / "breakdown.parquet"
    for _ in range(repeats):
        built = clock("Table.from_pydict", lambda: pa.Table.from_pydict(cols, schema=RATIONALE_SCHEMA))
        conformed = clock("conform_table", lambda b=built: conform_table(b, "rationales", where="benchmark"))
        ordered = clock("sort_by", lambda c=conformed: c.sort_by([(k, "ascending") for k in SORT_KEYS["rationales"]]))
        clock("write_parquet_atomic (zstd, fsync, rename)", lambda o=ordered: write_parquet_atomic(o, target))
        clock("pq.write_table only (no fsync)", lambda o=ordered: pq.write_table(
            o, run_dir / "breakdown-plain.parquet", row_group_size=64_000, compression="zstd"))
        clock("sha256_file", lambda: sha256_file(target))
        manifest = clock("load_manifest", lambda: load_manifest(run_dir))
        text = clock("manifest.model_dump_json", lambda m=manifest: m.model_dump_json(indent=2))
        clock("write_text_atomic (manifest, fsync, rename)", lambda t=text: write_text_atomic(run_dir / MANIFEST_NAME, t))
    best["shard_bytes"] = target.stat().st_size
    return best
