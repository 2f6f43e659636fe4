"""Data access for one rationale run: lazy DuckDB queries over its shards, via :mod:`pipeline.shards`.

Nothing is read when a run is opened but the Parquet footers (``pipeline.shards.Shards``); every
page runs a query that reads only the columns it needs, pushes its filters down and stops
at ``LIMIT``. The run-wide figures (statistics, histograms, filter choices) are computed
on first use and kept; a :class:`RunData` lives as long as the run's manifest is unchanged.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from data_schemas.io import SHARD_DIR
from pipeline import shards as shard_queries

from .registry import Entry, Registry

__all__ = ["PAGE_SIZE", "Filters", "RunData", "split_answer"]

PAGE_SIZE = 50
HIST_BINS = 24
T = TypeVar("T")


@dataclass(frozen=True)
class Filters:
    """Which rationales a question list or a next/previous step looks at (all must hold for one row)."""

    perspective: str | None = None
    teacher: str | None = None
    verdict: str | None = None  # correct | incorrect | unjudged
    search: str | None = None  # an exact question id, else words that must all occur in the question

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Filters:
        """From query parameters ``perspective``, ``teacher``, ``verdict``, ``q`` (empty = unset)."""

        def get(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            return value or None

        verdict = get("verdict")
        if verdict is not None and verdict not in shard_queries.VERDICT_FILTERS:
            raise ValueError(f"verdict must be one of {', '.join(shard_queries.VERDICT_FILTERS)}, got {verdict!r}")
        return cls(get("perspective"), get("teacher"), verdict, get("q"))

    def as_params(self) -> dict[str, str]:
        """The set filters as query parameters (for links that keep them)."""
        pairs = {"perspective": self.perspective, "teacher": self.teacher, "verdict": self.verdict, "q": self.search}
        return {k: v for k, v in pairs.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.as_params())

    def sql(self, search_is_id: bool = False) -> tuple[str, list[Any]]:
        """A WHERE clause (``TRUE`` when unfiltered) and its parameters; ``search_is_id``: the
        search text is a question id (one equality, pushed down) rather than words (each must
        occur in the question, ignoring case)."""
        where: list[str] = []
        params: list[Any] = []
        for col, value in (("perspective", self.perspective), ("teacher", self.teacher)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        if self.verdict is not None:
            where.append(shard_queries.VERDICT_FILTERS[self.verdict])
        if self.search and search_is_id:
            where.append("question_id = ?")
            params.append(self.search)
        elif self.search:
            for word in self.search.split():  # contains(): no wildcards to escape (ILIKE ... ESCAPE is ~4x slower)
                where.append("contains(lower(question), ?)")
                params.append(word.lower())
        return (" AND ".join(where) or "TRUE"), params

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether one rationale row passes the perspective / teacher / verdict filters."""
        if self.perspective is not None and row["perspective"] != self.perspective:
            return False
        if self.teacher is not None and row["teacher"] != self.teacher:
            return False
        if self.verdict is not None:
            wanted = {"correct": True, "incorrect": False, "unjudged": None}[self.verdict]
            return row["is_correct"] is wanted
        return True


def split_answer(text: str, answer: str | None) -> tuple[str, str, str]:
    """``(before, answer, after)`` around the last occurrence of ``answer`` in ``text`` (for highlighting)."""
    if answer:
        at = text.rfind(answer)
        if at >= 0:
            return text[:at], answer, text[at + len(answer) :]
    return text, "", ""


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= ``raw``."""
    if raw <= 0:
        return 1.0
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


class RunData:
    """One rationale run, opened lazily; safe to share between request threads."""

    def __init__(self, entry: Entry, registry: Registry):
        self.entry = entry
        self.registry = registry
        self._lock = threading.Lock()
        self._memo: dict[str, Any] = {}

    def _once(self, name: str, compute: Callable[[], T]) -> T:
        with self._lock:
            if name in self._memo:
                return self._memo[name]
        value = compute()  # outside the lock: a slow query does not block other pages
        with self._lock:
            return self._memo.setdefault(name, value)

    @property
    def shards(self) -> shard_queries.Shards:
        """The run's shards (footers checked); every shard file must lie inside DIR."""

        def open_() -> shard_queries.Shards:
            manifest = self.entry.manifest
            assert manifest is not None
            for info in manifest.shards:
                self.registry.inside(self.entry.path / SHARD_DIR / f"{info.name}.parquet")
            return shard_queries.Shards(self.entry.path)

        return self._once("shards", open_)

    # ------------------------------------------------------------ run-wide figures (cached)
    def headline(self) -> dict[str, Any]:
        """Rows, % correct and % unjudged (one scan of ``is_correct``)."""

        def compute() -> dict[str, Any]:
            r = self.shards.query(
                "SELECT count(*) AS rows, count_if(is_correct) AS correct, count_if(is_correct IS NULL) AS unjudged "
                "FROM {src}"
            )[0]
            r["correct"], r["unjudged"] = r["correct"] or 0, r["unjudged"] or 0  # count_if over no rows is NULL
            n = r["rows"] or 1
            return r | {"correct_pct": 100.0 * r["correct"] / n, "unjudged_pct": 100.0 * r["unjudged"] / n}

        return self._once("headline", compute)

    def facets(self) -> dict[str, list[str]]:
        """The perspectives and teachers present (choices of the filter form)."""

        def compute() -> dict[str, list[str]]:
            rows = self.shards.query("SELECT DISTINCT perspective, teacher FROM {src}")
            return {
                "perspectives": sorted({r["perspective"] for r in rows}),
                "teachers": sorted({r["teacher"] for r in rows}),
            }

        return self._once("facets", compute)

    def overview(self) -> dict[str, Any]:
        """``pipeline.shards``' ``summary``, ``stats`` and ``judge_stats`` (None without a judge) of the
        run plus length histograms per view."""

        def compute() -> dict[str, Any]:
            sh = self.shards
            groups = shard_queries.stats(sh)
            return {
                "summary": shard_queries.summary(sh),
                "groups": groups,
                "histograms": self._histograms(groups),
                "judge": shard_queries.judge_stats(sh),
            }

        return self._once("overview", compute)

    def _histograms(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """Counts of rationale lengths per (perspective, teacher) in shared bins; the last bin is open."""
        top = max((g["len_p95"] or 0.0 for g in groups), default=0.0) * 1.25
        width = _nice_step(max(top, 1.0) / HIST_BINS)
        nbins = max(1, math.ceil(top / width))
        tokens_only = all(g["len_unit"] == "tokens" for g in groups)
        length = "num_tokens" if tokens_only else "coalesce(num_tokens, length(rationale))"
        rows = self.shards.query(
            f"SELECT perspective, teacher, least(CAST(floor({length} / ?) AS BIGINT), ?) AS bin, count(*) AS n "
            "FROM {src} GROUP BY ALL",
            [width, nbins],
        )
        counts: dict[tuple[str, str], list[int]] = {(g["perspective"], g["teacher"]): [0] * (nbins + 1) for g in groups}
        for r in rows:
            counts.setdefault((r["perspective"], r["teacher"]), [0] * (nbins + 1))[int(r["bin"])] += r["n"]
        unit = groups[0]["len_unit"] if len({g["len_unit"] for g in groups}) == 1 else "mixed"
        return {"width": width, "bins": nbins, "unit": "tokens" if tokens_only else unit, "counts": counts}

    # ------------------------------------------------------------ per request
    def where(self, filters: Filters) -> tuple[str, list[Any]]:
        """``filters.sql()``, with a search text that is an existing question id taken as that id
        (a separate pushed-down lookup: an ``OR`` with the text match would be several times slower)."""
        text = filters.search
        is_id = (
            bool(text)
            and " " not in text
            and bool(  # type: ignore[operator]
                self.shards.query("SELECT 1 AS hit FROM {src} WHERE question_id = ? LIMIT 1", [text])
            )
        )
        return filters.sql(search_is_id=is_id)

    def find_questions(self, filters: Filters, page: int = 1, page_size: int = PAGE_SIZE) -> dict[str, Any]:
        """One page of the questions with a rationale matching ``filters``, by question id."""
        page = max(1, page)
        where, params = self.where(filters)
        ids = self.shards.query(
            "SELECT question_id, count(*) OVER () AS total FROM "
            f"(SELECT DISTINCT question_id FROM {{src}} WHERE {where}) ORDER BY question_id LIMIT ? OFFSET ?",
            [*params, page_size, (page - 1) * page_size],
        )
        if ids:
            total = ids[0]["total"]
        elif page > 1:
            total = self.shards.query(f"SELECT count(DISTINCT question_id) AS n FROM {{src}} WHERE {where}", params)[0][
                "n"
            ]
        else:
            total = 0
        items: list[dict[str, Any]] = []
        if ids:
            wanted = [r["question_id"] for r in ids]
            marks = ", ".join("?" * len(wanted))
            rows = self.shards.query(
                "SELECT question_id, any_value(question) AS question, any_value(gold_answer) AS gold_answer, "
                "any_value(task) AS task, count(*) AS rationales, count_if(is_correct) AS correct, "
                "count_if(is_correct = false) AS incorrect, count_if(is_correct IS NULL) AS unjudged, "
                "list(DISTINCT perspective ORDER BY perspective) AS perspectives "
                f"FROM {{src}} WHERE question_id IN ({marks}) GROUP BY question_id",
                wanted,
            )
            by_id = {r["question_id"]: r for r in rows}
            items = [by_id[q] for q in wanted if q in by_id]
        return {
            "items": items,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / page_size)),
            "page_size": page_size,
        }

    def question(self, question_id: str) -> dict[str, Any]:
        """``shard_queries.show``: the question and every rationale of it (ContractError if unknown)."""
        return shard_queries.show(self.shards, question_id)

    def neighbours(self, question_id: str, filters: Filters) -> tuple[str | None, str | None]:
        """The previous and next question id (by id) with a rationale matching ``filters``."""
        where, params = self.where(filters)
        r = self.shards.query(
            "SELECT max(question_id) FILTER (WHERE question_id < ?) AS prev, "
            f"min(question_id) FILTER (WHERE question_id > ?) AS next FROM {{src}} WHERE {where}",
            [question_id, question_id, *params],
        )[0]
        return r["prev"], r["next"]
