"""The shard query layer (docs/design.md): finding runs, checking their shards' Parquet footers
(:mod:`pipeline.shard_footers`), and lazy DuckDB queries over the finished shards: :func:`summary`,
:func:`stats`, :func:`judge_stats`, :func:`difficulty`, :func:`show`, :func:`list_rows`. They return
plain dicts; pass them a :class:`Shards` to reuse one discovery and DuckDB connection across calls.
Bad input raises :class:`data_schemas.ContractError` naming the file. The terminal browser
(:mod:`pipeline.browse`), the web viewer (:mod:`pipeline.viewer`) and the synthesis flow read shards
through this module.

Every query is a lazy scan over the explicit file list that reads only the columns it needs and
pushes filters (and ``LIMIT``) down; ``show`` scans only the shards whose footer statistics admit
the question id (``benchmarks/browse.py``, ``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the light part of the contract only (no pyarrow, no pydantic: see pipeline.shard_footers)
from data_schemas.light import MANIFEST_NAME, SHARD_DIR, ContractError, find_runs
from data_schemas.fast_manifest import read_manifest_fast
from pipeline.duckdb_engine import duckdb
from pipeline.shard_footers import FooterInfo, _one_line, _sql_str, checked_footer, read_footers

__all__ = [
    "VERDICT_FILTERS", "VERDICTS", "RunInfo", "Shards", "difficulty", "difficulty_histogram", "judge_stats",
    "list_rows", "show", "stats", "suggest_ids", "summary",
]  # fmt: skip

VERDICTS = {True: "✓", False: "✗", None: "?"}
VERDICT_FILTERS = {
    "correct": "is_correct",
    "incorrect": "is_correct = false",
    "unjudged": "is_correct IS NULL",
}


# ---------------------------------------------------------------- discovery and validation
@dataclass(frozen=True)
class RunInfo:
    """One rationale run directory and its finished shards (as listed in the manifest)."""

    run_id: str
    path: Path
    shards: tuple[Path, ...]
    rows: int  # row count according to the manifest
    complete: bool


class Shards:
    """The finished rationale shards under ``root`` (optionally of one run), queried with DuckDB."""

    def __init__(self, root: str | Path, run: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ContractError(str(self.root), "no such directory" if not self.root.exists() else "not a directory")
        runs: list[RunInfo] = []
        other: list[str] = []
        for run_dir in find_runs(self.root):
            manifest = read_manifest_fast(run_dir)
            if manifest.kind != "rationales":
                continue
            other.append(manifest.run_id)
            if run is not None and run not in (manifest.run_id, run_dir.name):
                continue
            shards = []
            for info in manifest.shards:
                path = run_dir / SHARD_DIR / f"{info.name}.parquet"
                if not path.is_file():
                    raise ContractError(str(path), f"listed in {run_dir / MANIFEST_NAME} but missing on disk")
                shards.append(path)
            runs.append(RunInfo(manifest.run_id, run_dir, tuple(shards), manifest.rows, manifest.complete))
        if not runs:
            if run is not None and other:
                raise ContractError(str(self.root), f"no run {run!r} (runs: {', '.join(sorted(set(other)))})")
            what = f"run {run!r}" if run is not None else "rationale runs (no manifest.json found)"
            raise ContractError(str(self.root), f"no {what}")
        self.runs = runs
        self.files: list[Path] = [p for r in runs for p in r.shards]
        if not self.files:
            raise ContractError(str(self.root), "no finished rationale shards listed in the manifest(s)")
        # one footer read per shard: schema check, the question-id range `show` prunes with, and
        # whether the shard has the judge columns (shards older than the judge do not)
        self._id_ranges: list[tuple[str, str] | None] = []
        self._judged: set[Path] = set()
        self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(":memory:")
        fast = read_footers(self._con, self.files)
        for path in self.files:
            info: FooterInfo | None = fast.get(str(path))
            if info is None:  # not plainly valid (or unreadable) for DuckDB: pyarrow decides, as before
                info = checked_footer(path)
            self._id_ranges.append(info.id_range)
            if info.judged:
                self._judged.add(path)
        self._source = self._scan(self.files)

    def has_judge_in(self, files: Sequence[Path]) -> bool:
        """Whether any of ``files`` has the judge columns."""
        return any(p in self._judged for p in files)

    @property
    def judge_files(self) -> list[Path]:
        """The shards that have the judge columns."""
        return [p for p in self.files if p in self._judged]

    def _scan(self, files: Sequence[Path]) -> str:
        """The scan of ``files``; shards with and without the judge columns are unioned by name."""
        mixed = 0 < sum(p in self._judged for p in files) < len(files)
        return _scan(files, union_by_name=mixed)

    def files_for_question(self, question_id: str) -> list[Path]:
        """The shards that may hold ``question_id``: those whose footer statistics (min/max
        question id) admit it, and every shard without such statistics."""
        ranges = zip(self.files, self._id_ranges, strict=True)
        return [p for p, r in ranges if r is None or r[0] <= question_id <= r[1]]

    def query(self, sql: str, params: Sequence[Any] = (), files: Sequence[Path] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` (``{src}`` stands for the shard scan: of every shard, or of ``files``, a
        subset of :attr:`files`) and return rows as dicts."""
        source = self._source if files is None else self._scan(files)
        try:
            return self._run(sql.replace("{src}", source), params)
        except duckdb.Error as exc:
            raise self._map_error(exc, sql, params) from None

    def _run(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        if self._con is None:
            raise RuntimeError("Shards is closed")
        cur = self._con.cursor()  # one cursor per query: safe to share a Shards across threads
        try:
            cur.execute(sql, list(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            cur.close()

    def _map_error(self, exc: duckdb.Error, sql: str, params: Sequence[Any]) -> ContractError:
        """A DuckDB error as a ContractError naming the shard at fault (else the root).

        DuckDB names the file in most messages; when it does not, the query is re-run on
        one file at a time to find it (only on this error path).
        """
        msg = str(exc)
        where = next((str(p) for p in self.files if str(p) in msg), None)
        if where is None and len(self.files) == 1:
            where = str(self.files[0])
        sql_bug = isinstance(exc, duckdb.ParserException | duckdb.BinderException | duckdb.CatalogException)
        if where is None and not sql_bug:
            for p in self.files:
                try:
                    self._run(sql.replace("{src}", f"read_parquet([{_sql_str(str(p))}])"), params)
                except duckdb.Error:
                    where = str(p)
                    break
        return ContractError(where or str(self.root), f"cannot read shard data ({_one_line(msg)})")

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scan(files: Sequence[Path], union_by_name: bool = False) -> str:
    union = ", union_by_name = true" if union_by_name else ""
    return "read_parquet([" + ", ".join(_sql_str(str(p)) for p in files) + f"]{union})"


@contextlib.contextmanager
def _open(root: str | Path | Shards, run: str | None) -> Iterator[Shards]:
    """Use ``root`` if it is already a Shards (left open), else open one for this call."""
    if isinstance(root, Shards):
        yield root
    else:
        with Shards(root, run) as sh:
            yield sh


# ---------------------------------------------------------------- API
def summary(root: str | Path | Shards, run: str | None = None) -> dict[str, Any]:
    """Runs, shards, total rows, distinct questions and tasks."""
    with _open(root, run) as sh:
        row = sh.query(
            "SELECT count(*) AS rows, count(DISTINCT question_id) AS questions, "
            "list(DISTINCT task ORDER BY task) AS tasks FROM {src}"
        )[0]
    return {
        "root": str(sh.root),
        "runs": len(sh.runs),
        "shards": len(sh.files),
        "rows": row["rows"],
        "questions": row["questions"],
        "tasks": row["tasks"] or [],
        "run_list": [
            {"run_id": r.run_id, "path": str(r.path), "shards": len(r.shards), "rows": r.rows,
             "complete": r.complete}
            for r in sh.runs
        ],
    }


def stats(root: str | Path | Shards, run: str | None = None) -> list[dict[str, Any]]:
    """Per (perspective, teacher): rows, % correct / unjudged, length mean and p95, finish reasons.

    Lengths come in three flavours: ``tokens_*`` (over rows with ``num_tokens``; None if none),
    ``chars_*`` (characters of the rationale) and ``len_*`` (``num_tokens`` where present,
    else characters; ``len_unit`` says which: tokens, chars or mixed). p95 interpolates
    linearly (``quantile_cont``, like numpy's default).
    """
    with _open(root, run) as sh:
        rows = sh.query(
            """
            SELECT perspective, teacher,
                   count(*) AS rows,
                   count_if(is_correct) AS correct,
                   count_if(is_correct = false) AS incorrect,
                   count_if(is_correct IS NULL) AS unjudged,
                   count(num_tokens) AS with_tokens,
                   avg(num_tokens) AS tokens_mean,
                   quantile_cont(num_tokens, 0.95) AS tokens_p95,
                   avg(length(rationale)) AS chars_mean,
                   quantile_cont(length(rationale), 0.95) AS chars_p95,
                   avg(coalesce(num_tokens, length(rationale))) AS len_mean,
                   quantile_cont(coalesce(num_tokens, length(rationale)), 0.95) AS len_p95,
                   histogram(finish_reason) AS finish
            FROM {src}
            GROUP BY perspective, teacher
            ORDER BY perspective, teacher
            """
        )
    out = []
    for r in rows:
        n = r["rows"]
        finish = dict(sorted(r.pop("finish").items(), key=lambda kv: (-kv[1], kv[0])))
        r["correct"], r["incorrect"] = r["correct"] or 0, r["incorrect"] or 0  # DuckDB: count_if over only NULLs is NULL
        judged = r["correct"] + r["incorrect"]
        r.update(
            correct_pct=100.0 * r["correct"] / n,
            unjudged_pct=100.0 * r["unjudged"] / n,
            judged_accuracy_pct=100.0 * r["correct"] / judged if judged else None,
            len_unit="tokens" if r["with_tokens"] == n else "chars" if r["with_tokens"] == 0 else "mixed",
            finish_reasons=finish,
        )
        for key in ("tokens_mean", "tokens_p95", "chars_mean", "chars_p95", "len_mean", "len_p95"):
            r[key] = float(r[key]) if r[key] is not None else None
        out.append(r)
    return out


_JUDGE_COUNTS = ("judged", "judge_correct", "judge_incorrect", "unparseable", "judge_errors", "agree", "disagree",
                 "filled", "overridden")  # fmt: skip


def judge_stats(root: str | Path | Shards, run: str | None = None) -> dict[str, Any] | None:
    """Rule/judge agreement per (perspective, teacher), or None when no row was sent to a judge.

    ``{"judges": [names], "groups": [...], "total": {...}}``; each group (and the total) counts,
    over the rows a judge saw: ``judged``, the judge's ``judge_correct`` / ``judge_incorrect``
    verdicts, ``unparseable`` replies, ``judge_errors`` (failed requests), ``agree`` /
    ``disagree`` (rows both the rule and the judge decided), ``filled`` (the rule left the row
    unjudged, the judge decided it) and ``overridden`` (``is_correct`` is not the rule's decided
    verdict: a judge preferred over the rule); ``disagree_pct`` is of the rows both decided.
    Only shards that have the judge columns are read.
    """
    with _open(root, run) as sh:
        files = sh.judge_files
        if not files:
            return None
        rows = sh.query(
            """
            SELECT perspective, teacher,
                   count(judge_model) AS judged,
                   count_if(judge_verdict) AS judge_correct,
                   count_if(judge_verdict = false) AS judge_incorrect,
                   count_if(judge_model IS NOT NULL AND judge_verdict IS NULL AND judge_reply IS NOT NULL) AS unparseable,
                   count_if(judge_model IS NOT NULL AND judge_reply IS NULL) AS judge_errors,
                   count_if(judge_verdict = rule_verdict) AS agree,
                   count_if(judge_verdict <> rule_verdict) AS disagree,
                   count_if(judge_model IS NOT NULL AND rule_verdict IS NULL AND judge_verdict IS NOT NULL) AS filled,
                   count_if(rule_verdict IS NOT NULL AND is_correct IS DISTINCT FROM rule_verdict) AS overridden,
                   list(DISTINCT judge_model ORDER BY judge_model) FILTER (WHERE judge_model IS NOT NULL) AS judges
            FROM {src}
            GROUP BY perspective, teacher
            HAVING count(judge_model) > 0
            ORDER BY perspective, teacher
            """,
            files=files,
        )
    if not rows:
        return None
    total = {k: 0 for k in _JUDGE_COUNTS}
    judges: set[str] = set()
    for r in rows:
        judges.update(r.pop("judges") or [])
        for k in _JUDGE_COUNTS:
            r[k] = int(r[k] or 0)  # DuckDB: count_if over only NULLs is NULL
            total[k] += r[k]
    for r in (*rows, total):
        both = r["agree"] + r["disagree"]
        r["disagree_pct"] = 100.0 * r["disagree"] / both if both else None
    return {"judges": sorted(judges), "groups": rows, "total": total}


# the measure of pipeline.select.question_difficulty: judged rows, and those not correct
_DIFFICULTY_SQL = (
    "count_if(finish_reason = 'stop') AS rationales, "
    "count_if(finish_reason = 'stop' AND NOT coalesce(is_correct, false)) AS failures"
)
#: Failure-rate buckets of :func:`difficulty_histogram`: (label, upper bound, bound included).
RATE_BUCKETS = (("0%", 0.0, True), ("≤25%", 0.25, True), ("≤50%", 0.5, True), ("≤75%", 0.75, True),
                ("<100%", 1.0, False), ("100%", 1.0, True))  # fmt: skip


def _difficulty_entry(rationales: int, failures: int) -> dict[str, Any]:
    return {
        "rationales": int(rationales),
        "failures": int(failures),
        "failure_rate": failures / rationales if rationales else 0.0,
    }


def _rate_bucket(rate: float) -> str:
    for label, bound, inclusive in RATE_BUCKETS:
        if rate < bound or (inclusive and rate == bound):
            return label
    return RATE_BUCKETS[-1][0]


def difficulty(
    root: str | Path | Shards, question_ids: Sequence[str] | None = None, run: str | None = None
) -> dict[str, dict[str, Any]]:
    """Each question's teacher failures, by id: ``{"rationales", "failures", "failure_rate"}``.

    ``rationales`` counts the judged rows (``finish_reason == "stop"``) over every view, teacher,
    sample and run in scope; ``failures`` those whose ``is_correct`` is not True -- the measure
    of :func:`pipeline.select.question_difficulty` (failure rate 0 without a judged row).
    ``question_ids``: only these (scanning only the shards that may hold them); None: all.
    """
    with _open(root, run) as sh:
        sql = f"SELECT question_id, {_DIFFICULTY_SQL} FROM {{src}}"
        if question_ids is None:
            rows = sh.query(sql + " GROUP BY question_id")
        else:
            ids = sorted(set(question_ids))
            if not ids:
                return {}
            files = sorted({p for q in ids for p in sh.files_for_question(q)}, key=sh.files.index)
            marks = ", ".join("?" for _ in ids)
            sql += f" WHERE question_id IN ({marks}) GROUP BY question_id"
            rows = sh.query(sql, ids, files=files) if files else []
    rows.sort(key=lambda r: r["question_id"])
    return {r["question_id"]: _difficulty_entry(r["rationales"] or 0, r["failures"] or 0) for r in rows}


def difficulty_histogram(root: str | Path | Shards, run: str | None = None) -> dict[str, Any]:
    """Questions by teacher failures (see :func:`difficulty`): ``questions``, ``hard`` (any
    failed rationale: hard for ``pipeline.select``'s default threshold), ``easy``, ``unjudged``
    (no judged rationale), ``by_failures`` (``{"0": n, "1": n, ...}``) and ``by_rate`` (the
    buckets of :data:`RATE_BUCKETS`, every one listed)."""
    with _open(root, run) as sh:
        rows = sh.query(
            f"SELECT rationales, failures, count(*) AS questions FROM "
            f"(SELECT {_DIFFICULTY_SQL} FROM {{src}} GROUP BY question_id) GROUP BY ALL"
        )
    by_failures: dict[int, int] = {}
    by_rate = {label: 0 for label, _, _ in RATE_BUCKETS}
    total = hard = unjudged = 0
    for r in rows:
        n, judged, failed = r["questions"], r["rationales"] or 0, r["failures"] or 0
        total += n
        hard += n if failed else 0
        unjudged += n if not judged else 0
        by_failures[failed] = by_failures.get(failed, 0) + n
        by_rate[_rate_bucket(_difficulty_entry(judged, failed)["failure_rate"])] += n
    return {
        "questions": total,
        "hard": hard,
        "easy": total - hard,
        "unjudged": unjudged,
        "by_failures": {str(k): by_failures[k] for k in sorted(by_failures)},
        "by_rate": by_rate,
    }


SHOW_COLUMNS = (
    "run_id, question_id, question, gold_answer, task, perspective, teacher, sample_index, rationale, "
    "predicted_answer, is_correct, finish_reason, num_tokens"
)
JUDGE_SHOW_COLUMNS = "judge_model, judge_verdict, judge_reply, rule_verdict"


def show(root: str | Path | Shards, question_id: str, run: str | None = None) -> dict[str, Any]:
    """One question (text, gold answer, task) with every rationale of it, sorted by perspective,
    and its ``difficulty`` (teacher failures over those rationales, as :func:`difficulty`).

    Raises ``ContractError`` for an unknown id, with close ids as a hint when there are any.
    """
    with _open(root, run) as sh:
        # only the shards whose footer statistics admit the id (a few of hundreds): opening a
        # Parquet file costs DuckDB about as much as the search inside it
        files = sh.files_for_question(question_id)
        order = "ORDER BY perspective, teacher, sample_index, run_id"
        sql = f"SELECT {SHOW_COLUMNS} FROM {{src}} WHERE question_id = ? {order}"
        if sh.has_judge_in(files):  # shards older than the judge lack its columns
            sql = sql.replace(" FROM {src}", f", {JUDGE_SHOW_COLUMNS} FROM {{src}}", 1)
        rows = sh.query(sql, [question_id], files=files) if files else []
        if not rows:
            hint = suggest_ids(sh, question_id)
            more = f"; did you mean: {', '.join(hint)}?" if hint else ""
            raise ContractError(str(sh.root), f"unknown question id {question_id!r}{more}")
    first = rows[0]
    rationales = [
        {k: r[k] for k in r if k not in ("question_id", "question", "gold_answer", "task")}
        | {"verdict": VERDICTS[r["is_correct"]]}
        for r in rows
    ]
    judged = [r for r in rows if r["finish_reason"] == "stop"]
    return {
        "question_id": question_id,
        "question": first["question"],
        "gold_answer": first["gold_answer"],
        "task": first["task"],
        "runs": sorted({r["run_id"] for r in rows}),
        "perspectives": sorted({r["perspective"] for r in rows}),
        "difficulty": _difficulty_entry(len(judged), sum(r["is_correct"] is not True for r in judged)),
        "rationales": rationales,
    }


def suggest_ids(root: str | Path | Shards, question_id: str, n: int = 5, run: str | None = None) -> list[str]:
    """Up to ``n`` known question ids that extend ``question_id`` or share a long prefix with it."""
    prefix = question_id[: max(1, len(question_id) // 2)]
    with _open(root, run) as sh:
        found = sh.query(
            "SELECT DISTINCT question_id FROM {src} WHERE starts_with(question_id, ?) LIMIT 5000", [prefix]
        )
    ids = [r["question_id"] for r in found]
    extending = sorted(i for i in ids if i.startswith(question_id))
    if extending:
        return extending[:n]
    return difflib.get_close_matches(question_id, ids, n=n, cutoff=0.6)


def list_rows(
    root: str | Path | Shards,
    *,
    run: str | None = None,
    perspective: str | None = None,
    teacher: str | None = None,
    task: str | None = None,
    verdict: str | None = None,
    finish_reason: str | None = None,
    limit: int | None = 20,
    excerpt_chars: int = 80,
    with_difficulty: bool = True,
    disagree: bool = False,
) -> list[dict[str, Any]]:
    """Rationales matching every given filter, in shard order (question id within a shard).

    ``verdict`` is ``correct``, ``incorrect`` or ``unjudged``; ``disagree``: only rows where the
    rule verifier and a judge model both decided and disagree (their verdicts are then in
    ``rule_verdict`` / ``judge_verdict``); ``limit`` None or 0 means all
    rows. ``excerpt`` is the tail of the rationale (where the answer is) on one line. With
    ``with_difficulty``, each row's ``difficulty`` is its question's (:func:`difficulty`: over
    all the question's rationales in scope, not only the rows that match).
    """
    where, params = [], []
    for col, value in (
        ("perspective", perspective),
        ("teacher", teacher),
        ("task", task),
        ("finish_reason", finish_reason),
    ):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    if verdict is not None:
        if verdict not in VERDICT_FILTERS:
            raise ValueError(f"verdict must be one of {sorted(VERDICT_FILTERS)}, got {verdict!r}")
        where.append(VERDICT_FILTERS[verdict])
    sql = (
        "SELECT run_id, question_id, perspective, teacher, sample_index, is_correct, predicted_answer, "
        "gold_answer, finish_reason, num_tokens, right(rationale, ?) AS tail FROM {src}"
    )
    params.insert(0, max(4 * excerpt_chars, 200))
    if disagree:
        where.append("judge_verdict <> rule_verdict")
        sql = sql.replace(" FROM {src}", ", judge_model, judge_verdict, rule_verdict FROM {src}", 1)
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit:
        sql += f" LIMIT {int(limit)}"
    with _open(root, run) as sh:
        if not disagree:
            rows = sh.query(sql, params)
        else:  # only shards with the judge columns can hold a disagreement
            files = sh.judge_files
            rows = sh.query(sql, params, files=files) if files else []
        hardness: dict[str, dict[str, Any]] = {}
        if with_difficulty and rows:
            ids = {r["question_id"] for r in rows}
            # a few ids: only the shards that may hold them; many: one scan of all
            hardness = difficulty(sh, sorted(ids) if len(ids) <= _DIFFICULTY_IDS_MAX else None)
    for r in rows:
        tail = " ".join(r.pop("tail").split())
        r["excerpt"] = tail if len(tail) <= excerpt_chars else "…" + tail[-(excerpt_chars - 1) :]
        r["verdict"] = VERDICTS[r["is_correct"]]
        if with_difficulty:
            r["difficulty"] = hardness.get(r["question_id"], _difficulty_entry(0, 0))
    return rows


_DIFFICULTY_IDS_MAX = 500  # list: above this many question ids, difficulty scans everything once
