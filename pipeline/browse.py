"""Browse rationale shards (docs/design.md): statistics, one question side by side, filtered lists.

    python -m pipeline.browse DIR stats [--json]
    python -m pipeline.browse DIR show QUESTION_ID [--width N] [--json]
    python -m pipeline.browse DIR list [--perspective P] [--teacher T] [--task T]
                                       [--correct | --incorrect | --unjudged] [--disagree]
                                       [--finish-reason R] [--limit N] [--json]
    python -m pipeline.browse DIR serve [--host 127.0.0.1] [--port 8765]   # web viewer (pipeline.viewer)

``DIR`` is a run directory (holding ``manifest.json``) or a folder of run directories;
``--run RUN_ID`` keeps one run. Only shards listed in a manifest count. Shard schemas are
checked from the Parquet footers only; every query is a lazy DuckDB scan over the explicit
file list that reads only the columns it needs and pushes filters (and ``LIMIT``) down, and
``show`` scans only the shards whose footer statistics admit the question id, so ``stats`` on a
million rows takes about half a second and ``show`` / ``list`` tens of milliseconds (plus
interpreter start-up; ``benchmarks/browse.py``, ``docs/performance.md``).

Judge: runs synthesized with a judge model (``pipeline.judge``) carry the optional judge columns;
``stats`` then adds the rule/judge agreement per perspective x teacher (:func:`judge_stats`:
rows judged, the judge's verdicts, unparseable replies, agreements, disagreements) and ``show``
each rationale's judge verdict. Shards written before the judge existed lack those columns:
they count as unjudged by a judge, and a scan over old and new shards together unions their
columns by name.

Difficulty: ``show`` and ``list`` give each question's teacher failures -- of its judged
rationales (``finish_reason == "stop"``, over every view, teacher and sample in scope), how many
are not correct -- the measure of ``pipeline.select``; ``stats`` adds a histogram of questions
by failures and by failure rate (:func:`difficulty`, :func:`difficulty_histogram`).

The queries live in :mod:`pipeline.shards` (plain dicts, for the web viewer and benchmarks too);
this module renders them and is the command line. Bad input raises
:class:`data_schemas.ContractError` naming the file; :func:`main` maps it to exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from data_schemas.light import ContractError
from pipeline.duckdb_engine import duckdb
from pipeline.shard_footers import _one_line

# the query layer, re-exported: ``browse.stats(...)`` etc. keep working for scripts that used them here
from pipeline.shards import (
    VERDICT_FILTERS,
    VERDICTS,
    RunInfo,  # noqa: F401 - re-exported
    Shards,
    difficulty,
    difficulty_histogram,
    judge_stats,
    list_rows,
    show,
    stats,
    suggest_ids,  # noqa: F401 - re-exported
    summary,
)

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "RunInfo", "Shards", "difficulty", "difficulty_histogram", "judge_stats", "list_rows", "main", "show", "stats",
    "summary", "suggest_ids",
]  # fmt: skip


# ---------------------------------------------------------------- rendering
def _fmt_num(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _verdict_style(is_correct: bool | None) -> str:
    return {True: "green", False: "red", None: "yellow"}[is_correct]


def _console(width: int | None = None) -> Console:
    from rich.console import Console

    if width is None and not sys.stdout.isatty():
        # rich falls back to 80 columns when piped; tables of ids and teachers need more
        width = int(os.environ.get("COLUMNS", "160"))
    return Console(width=width, highlight=False, soft_wrap=False, emoji=False)


def render_stats(
    info: dict[str, Any],
    groups: list[dict[str, Any]],
    width: int | None = None,
    hardness: dict[str, Any] | None = None,
    judge: dict[str, Any] | None = None,
) -> None:
    """The ``stats`` tables; ``hardness`` (a :func:`difficulty_histogram`) adds the questions
    by teacher failures, ``judge`` (a :func:`judge_stats`) the rule/judge agreement."""
    from rich import box
    from rich.table import Table

    console = _console(width)
    tasks = _escape(", ".join(info["tasks"]) or "–")
    console.print(
        f"[bold]{_escape(info['root'])}[/]: {info['runs']} run(s) · {info['shards']} shard(s) · "
        f"{info['rows']:,} rows · {info['questions']:,} questions · tasks: {tasks}"
    )
    if 1 < len(info["run_list"]) <= 20:
        for r in info["run_list"]:
            state = "complete" if r["complete"] else "in progress"
            console.print(f"  {r['run_id']}: {r['shards']} shard(s), {r['rows']:,} rows, {state}", markup=False)
    table = Table(
        header_style="bold", box=box.SIMPLE_HEAD, caption="✓ correct, ? unjudged (% of rows); lengths: mean / p95"
    )
    table.add_column("perspective", no_wrap=True)
    table.add_column("teacher", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("✓ %", justify="right", no_wrap=True)
    table.add_column("? %", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("chars", justify="right", no_wrap=True)
    table.add_column("finish reasons")
    for g in groups:
        pct = g["correct_pct"]
        color = "green" if pct >= 80 else "yellow" if pct >= 50 else "red"
        finish = " · ".join(f"{k} {v:,}" for k, v in g["finish_reasons"].items())
        table.add_row(
            _escape(g["perspective"]),
            _escape(g["teacher"]),
            f"{g['rows']:,}",
            f"[{color}]{pct:.1f}[/]",
            f"{g['unjudged_pct']:.1f}",
            f"{_fmt_num(g['tokens_mean'])} / {_fmt_num(g['tokens_p95'])}",
            f"{_fmt_num(g['chars_mean'])} / {_fmt_num(g['chars_p95'])}",
            _escape(finish),
        )
    console.print(table)
    if judge is not None:
        render_judge(console, judge)
    if hardness is not None:
        render_difficulty(console, hardness)


def render_judge(console: Console, judge: dict[str, Any]) -> None:
    """The rule/judge agreement table of :func:`judge_stats`."""
    from rich import box
    from rich.table import Table

    t = judge["total"]
    pct = "" if t["disagree_pct"] is None else f" ({t['disagree_pct']:.1f}% of the rows both decided)"
    console.print(
        f"judge {_escape(', '.join(judge['judges']))}: {t['judged']:,} rows judged, "
        f"{t['disagree']:,} rule/judge disagreement(s){pct}, {t['unparseable']:,} unparseable repl(ies), "
        f"{t['judge_errors']:,} judge error(s)"
    )
    table = Table(
        header_style="bold",
        box=box.SIMPLE_HEAD,
        caption="over the rows sent to the judge; agree / disagree: rows both decided; filled: the rule could "
        "not judge, the judge did; overridden: the judge's verdict replaced the rule's",
    )
    for col in ("perspective", "teacher"):
        table.add_column(col, no_wrap=True)
    labels = {"judged": "judged", "judge_correct": "judge ✓", "judge_incorrect": "judge ✗",
              "unparseable": "unparseable", "judge_errors": "errors", "agree": "agree", "disagree": "disagree",
              "filled": "filled", "overridden": "overridden"}  # fmt: skip
    for label in labels.values():
        table.add_column(label, justify="right", no_wrap=True)
    for g in judge["groups"]:
        cells = [f"{g[k]:,}" for k in labels]
        if g["disagree"]:
            cells[list(labels).index("disagree")] = f"[red]{g['disagree']:,}[/]"
        table.add_row(_escape(g["perspective"]), _escape(g["teacher"]), *cells)
    console.print(table)


def render_difficulty(console: Console, hardness: dict[str, Any]) -> None:
    """Questions by failed rationales and by failure rate, side by side."""
    from rich import box
    from rich.columns import Columns
    from rich.table import Table

    n = hardness["questions"]
    unjudged = f", {hardness['unjudged']:,} without a judged rationale" if hardness["unjudged"] else ""
    console.print(
        f"difficulty: {hardness['hard']:,} of {n:,} questions with a failed rationale (hard), "
        f"{hardness['easy']:,} without{unjudged}"
    )

    def histogram(title: str, counts: dict[str, int]) -> Table:
        table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, title_justify="left")
        table.add_column(title.split(" by ")[-1], justify="right", no_wrap=True)
        table.add_column("questions", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        top = max(counts.values(), default=0)
        for label, count in counts.items():
            bar = "█" * round(20 * count / top) if top else ""
            table.add_row(_escape(label), f"{count:,}", bar)
        return table

    console.print(
        Columns([
            histogram("questions by failed rationales", hardness["by_failures"]),
            histogram("questions by failure rate", hardness["by_rate"]),
        ], padding=(0, 4))
    )  # fmt: skip


def render_show(data: dict[str, Any], width: int | None = None) -> None:
    from rich.columns import Columns
    from rich.markup import escape
    from rich.panel import Panel
    from rich.text import Text

    console = _console(width)
    hard = data.get("difficulty")
    failed = "" if hard is None else f" · teacher failed {_failed_text(hard)}"
    console.print(
        f"[bold]{escape(data['question_id'])}[/] · task {escape(data['task'])} · "
        f"gold [bold cyan]{escape(data['gold_answer'])}[/] · {len(data['rationales'])} rationale(s){failed}"
    )
    console.print(Text(data["question"]))
    console.print()
    many_runs = len(data["runs"]) > 1
    panels, longest = [], 0
    for r in data["rationales"]:
        title = f"{r['perspective']} · {r['teacher']} · #{r['sample_index']}"
        if many_runs:
            title += f" · {r['run_id']}"
        longest = max(longest, len(title))
        body = Text(r["rationale"])
        pred = r["predicted_answer"]
        if pred:
            at = r["rationale"].rfind(pred)
            if at >= 0:
                body.stylize("bold reverse", at, at + len(pred))
        style = _verdict_style(r["is_correct"])
        tokens = f" · {r['num_tokens']} tok" if r["num_tokens"] is not None else ""
        judge = ""
        if r.get("judge_model") is not None:
            judge = f" · judge {VERDICTS[r['judge_verdict']]}" + (" (unparseable)" if r["judge_verdict"] is None else "")
            if r["rule_verdict"] is not None and r["judge_verdict"] is not None and r["rule_verdict"] != r["judge_verdict"]:
                judge += f" ≠ rule {VERDICTS[r['rule_verdict']]}"
        subtitle = Text.assemble(
            (f"{r['verdict']} ", f"bold {style}"),
            (pred if pred is not None else "no answer", "bold"),
            f" · {r['finish_reason']}{tokens}{judge}",
        )
        panels.append(Panel(body, title=Text(title), subtitle=subtitle, border_style=style))
    # wide enough for the titles, at most 72; Columns puts as many side by side as fit
    n = max(1, len(panels))
    fair = (console.width - (n - 1)) // n
    col_width = min(console.width, max(min(longest + 8, 72), min(fair, 72), 30))
    console.print(Columns(panels, width=col_width, padding=(0, 1)))


def _failed_text(hard: dict[str, Any], rate: bool = True) -> str:
    """``3/12 (25%)``: failed of judged rationales (``–`` when none was judged)."""
    if not hard["rationales"]:
        return "– (none judged)" if rate else "–"
    text = f"{hard['failures']}/{hard['rationales']}"
    return f"{text} ({hard['failure_rate']:.0%})" if rate else text


def _list_cells(r: dict[str, Any]) -> dict[str, str]:
    return {
        "question_id": r["question_id"],
        "failed": _failed_text(r["difficulty"], rate=False) if "difficulty" in r else "",
        "perspective": r["perspective"],
        "teacher": r["teacher"],
        "#": str(r["sample_index"]),
        "ok": r["verdict"],
        "predicted": r["predicted_answer"] if r["predicted_answer"] is not None else "–",
        "gold": r["gold_answer"],
        "finish": r["finish_reason"],
    }


# (column, widest it gets, narrowest it may be squeezed to), in squeeze order for `list`
_LIST_LAYOUT = (
    ("teacher", 28, 8),
    ("predicted", 14, 5),
    ("gold", 14, 5),
    ("perspective", 16, 8),
    ("question_id", 36, 16),
    ("failed", 7, 3),
    ("finish", 8, 6),
    ("#", 4, 1),
    ("ok", 2, 2),
)
_LIST_ORDER = ("question_id", "failed", "perspective", "teacher", "#", "ok", "predicted", "gold", "finish")


def render_list(rows: list[dict[str, Any]], more: bool, width: int | None = None) -> None:
    from rich import box
    from rich.table import Table

    console = _console(width)
    cells = [_list_cells(r) for r in rows]
    has_failed = any(c["failed"] for c in cells)  # rows without difficulty: no column
    layout = [col for col in _LIST_LAYOUT if col[0] != "failed" or has_failed]
    widths = {name: min(hi, max([len(name)] + [len(c[name]) for c in cells])) for name, hi, _ in layout}
    lows = {name: lo for name, _, lo in layout}
    gap = 3  # padding either side of a column plus the (blank) divider
    excerpt_max = max([16] + [len(r["excerpt"]) for r in rows])
    want = min(excerpt_max, 24)

    def room() -> int:
        return console.width - sum(widths.values()) - gap * len(widths)

    # squeeze the text columns (most slack first) until the excerpt gets a fair share
    while room() < want:
        name = max(widths, key=lambda k: widths[k] - lows[k])
        if widths[name] <= lows[name]:
            break
        widths[name] -= 1
    for name in ("finish", "#", "failed"):  # still too narrow: drop the least useful columns
        if room() < 16:
            del widths[name]
    excerpt_width = max(8, min(excerpt_max, room()))
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    names = [n for n in _LIST_ORDER if n in widths]
    for name in names:
        justify: Literal["left", "center", "right"] = (
            "right" if name in ("#", "failed") else "center" if name == "ok" else "left"
        )
        table.add_column(name, width=widths[name], no_wrap=True, overflow="ellipsis", justify=justify)
    table.add_column("rationale (tail)", width=excerpt_width, no_wrap=True, overflow="ellipsis")
    for r, c in zip(rows, cells, strict=True):
        out = [f"[{_verdict_style(r['is_correct'])}]{c[n]}[/]" if n == "ok" else _escape(c[n]) for n in names]
        tail = r["excerpt"]
        if len(tail) > excerpt_width:  # keep the end, where the answer is
            tail = "…" + tail[-(excerpt_width - 1) :]
        table.add_row(*out, _escape(tail))
    console.print(table)
    if more:
        console.print(f"[dim]… more rows match (showing {len(rows)}; raise --limit, 0 = all)[/]")
    elif not rows:
        console.print("[dim]no rows match[/]")


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.browse",
        description="Browse rationale shards: per-perspective statistics, one question side by side, filtered lists.",
    )
    parser.add_argument("dir", metavar="DIR", help="a run directory or a folder containing run directories")
    parser.add_argument("--run", metavar="RUN_ID", help="only this run (manifest run_id or directory name)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run", metavar="RUN_ID", default=argparse.SUPPRESS, help="only this run")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument("--width", type=int, default=None, help="terminal width for the output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{stats,show,list,serve}")

    sub.add_parser("stats", parents=[common], help="per perspective × teacher statistics, questions by difficulty")

    p_show = sub.add_parser("show", parents=[common], help="one question with all its rationales side by side")
    p_show.add_argument("question_id", metavar="QUESTION_ID")

    p_list = sub.add_parser("list", parents=[common], help="one row per rationale, filtered")
    p_list.add_argument("--perspective")
    p_list.add_argument("--teacher")
    p_list.add_argument("--task")
    p_list.add_argument("--finish-reason", dest="finish_reason")
    verdict = p_list.add_mutually_exclusive_group()
    for v in VERDICT_FILTERS:
        verdict.add_argument(f"--{v}", dest="verdict", action="store_const", const=v, help=f"only {v} rationales")
    p_list.add_argument(
        "--disagree", action="store_true", help="only rows where the rule verifier and a judge model disagree"
    )
    p_list.add_argument("--limit", type=int, default=20, help="at most N rows (default 20; 0 = all)")
    p_list.add_argument("--excerpt-chars", type=int, default=80, help="length of the rationale excerpt")

    p_serve = sub.add_parser(
        "serve", help="a local, read-only web viewer of every run under DIR (rationale and training runs)"
    )
    p_serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this host only)")
    p_serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    return parser


def _serve(args: argparse.Namespace) -> int:
    """The ``serve`` command: start :mod:`pipeline.viewer` (imported only here)."""
    if args.run is not None:
        print("--run is not supported by serve: the viewer lists every run under DIR", file=sys.stderr)
        return 2
    from pipeline.viewer import serve

    try:
        return serve(args.dir, host=args.host, port=args.port)
    except ContractError as exc:
        print(_one_line(str(exc), 1000), file=sys.stderr)
        return 2


def _arrow_errors() -> tuple[type[Exception], ...]:
    """pyarrow's exception base, when pyarrow was imported (only then can its errors arise)."""
    pa = sys.modules.get("pyarrow")
    return (pa.ArrowException,) if pa is not None else ()


def _write_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input, with ``PATH: reason`` on stderr)."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    try:
        sh = Shards(args.dir, args.run)
        try:
            if args.command == "stats":
                info, groups, hardness, judge = summary(sh), stats(sh), difficulty_histogram(sh), judge_stats(sh)
                if args.json:
                    _write_json({"summary": info, "groups": groups, "difficulty": hardness, "judge": judge})
                else:
                    render_stats(info, groups, args.width, hardness, judge)
            elif args.command == "show":
                data = show(sh, args.question_id)
                if args.json:
                    _write_json(data)
                else:
                    render_show(data, args.width)
            else:
                limit = args.limit if args.limit and args.limit > 0 else None
                rows = list_rows(
                    sh,
                    perspective=args.perspective,
                    teacher=args.teacher,
                    task=args.task,
                    verdict=args.verdict,
                    finish_reason=args.finish_reason,
                    disagree=args.disagree,
                    limit=limit + 1 if limit else None,
                    excerpt_chars=max(10, args.excerpt_chars),
                )
                more = limit is not None and len(rows) > limit
                rows = rows[:limit] if limit else rows
                if args.json:
                    _write_json(rows)
                else:
                    render_list(rows, more, args.width)
        finally:
            sh.close()
    except ContractError as exc:
        print(_one_line(str(exc), 1000), file=sys.stderr)
        return 2
    except (OSError, duckdb.Error, *_arrow_errors()) as exc:
        if isinstance(exc, BrokenPipeError):
            # the reader went away (e.g. `| head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        where = getattr(exc, "filename", None) or args.dir
        print(f"{where}: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
