"""The viewer's routes: read-only HTML pages over the runs under DIR (Starlette, Jinja2 with autoescape).

    /                      rationale runs (manifest, rows, % correct) and training runs
    /run/KEY               one run: per perspective x teacher table, accuracy bars, length
                           histograms, finish reasons
    /questions/KEY         its questions, filtered (perspective, teacher, verdict, q = search), paginated
    /question/KEY?id=QID   one question, every rationale side by side, previous / next under the filters
    /train/KEY             a trainer output_dir: per view totals, compute account, in-subset share,
                           alpha, score, L_p, L_meta, ranking agreement, consistency, subset size,
                           loss; evaluation
    /eval/KEY?split=S      one evaluation split's predictions, paginated

Only GET (and HEAD). ``KEY`` is looked up among the folders found under DIR (never joined
into a path), so an unknown or crafted key is a 404 and a folder reached through a symlink
out of DIR a 403. Responses carry a Content-Security-Policy that allows no inline script or
style; bad data gives an error page naming the file (422), never a traceback.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from data_schemas import ContractError

from . import charts
from .describe import describe_manifest
from .queries import Filters, RunData, split_answer
from .registry import Forbidden, NotFound, Registry
from .training import PER_VIEW, DataError, load_training, predictions_page, series
from .web import HERE, VERDICT_TEXT, SecurityHeaders, ViewerError, make_templates

__all__ = ["Viewer", "create_app"]

logger = logging.getLogger("pipeline.viewer")


# ---------------------------------------------------------------- the training page
# chart key (training.series), title, y label, line_chart options, optional (left out when no file has it)
TRAIN_CHARTS: list[tuple[str, str, str, dict[str, Any], bool]] = [
    ("in_subset", "In-subset share per perspective (kept / present)", "share", {"y_min": 0.0, "y_max": 1.0}, False),
    ("alpha", "Mean weight alpha of a kept candidate per perspective", "alpha", {"y_min": 0.0}, False),
    ("score", "Mean score per perspective (MetaNet, or -CE)", "score", {}, True),
    ("L_p", "Inertia-filtered loss L_p per perspective", "loss", {}, False),
    ("grad_share", "Gradient share per perspective (of the student's update; --grad_share_every)", "share", {}, True),
    ("meta_loss", "MetaNet meta-loss L_meta", "loss", {"y_min": 0.0}, True),
    ("meta_rank", "MetaNet ranking agreement with the target losses", "agreement", {"y_max": 1.0}, True),
    ("consistency", "Answer-consistency loss", "loss", {"y_min": 0.0}, True),
    ("subset_size", "Subset size (kept candidates per question)", "candidates", {"y_min": 0.0}, False),
    ("loss", "Training loss", "loss", {}, False),
]


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _fmt(v: Any, spec: str) -> str:
    n = _number(v)
    return "–" if n is None else format(n, spec)


def _view_row(name: str, v: dict[str, Any]) -> dict[str, Any]:
    """One row of the per-perspective totals table, formatted (a missing or odd value shows as –)."""
    share = _number(v.get("in_subset"))
    kept_share = _number(v.get("kept_share"))
    return {
        "name": name,
        "present": _fmt(v.get("present"), ",.0f"),
        "kept": _fmt(v.get("kept"), ",.0f"),
        "in_subset": "–" if share is None else f"{100 * share:.1f}%",
        "in_subset_pct": None if share is None else 100 * share,
        "kept_share": "–" if kept_share is None else f"{100 * kept_share:.1f}%",
        "mean_alpha": _fmt(v.get("mean_alpha"), ".3f"),
        "mean_score": _fmt(v.get("mean_score"), ".3f"),
        "L_p": _fmt(v.get("L_p"), ".3f"),
    }


def _compute_rows(summary: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The compute account of mind_summary.json, as (what, value) rows; empty without one."""
    c = summary.get("compute") if summary else None
    if not isinstance(c, dict):
        return []
    flops = _number(c.get("flops"))
    rows = [
        ("student parameters", _fmt(c.get("params"), ",.0f")),
        ("forward-only tokens (no-grad scoring)", _fmt(c.get("forward_tokens"), ",.0f")),
        ("trained tokens, forward + backward", _fmt(c.get("backward_tokens"), ",.0f")),
        ("trained label tokens (kept candidates)", _fmt(c.get("trained_tokens"), ",.0f")),
        ("estimated FLOPs (6 N x trained + 2 N x forward-only)", "–" if flops is None else f"{flops:.3g}"),
    ]
    if summary and "meta_steps" in summary:
        rows.append(("MetaNet optimizer steps", _fmt(summary.get("meta_steps"), ",.0f")))
    return rows


def _judge_card(r: dict[str, Any]) -> dict[str, Any] | None:
    """A rationale's judge verdict for its card (None when no judge saw it, or the run has no judge columns)."""
    if r.get("judge_model") is None:
        return None
    verdict, rule = r["judge_verdict"], r["rule_verdict"]
    cls, text = VERDICT_TEXT[verdict]
    if verdict is None:
        text = "? unparseable" if r["judge_reply"] is not None else "? judge failed"
    return {
        "model": r["judge_model"],
        "class": cls,
        "label": text,
        "reply": r["judge_reply"],
        "disagrees": rule is not None and verdict is not None and rule != verdict,
        "rule_label": VERDICT_TEXT[rule][1],
    }


# ---------------------------------------------------------------- the app
class Viewer:
    """The pages, over one :class:`Registry`; RunData objects are kept while a run's manifest is unchanged."""

    def __init__(self, root: str | Path):
        self.registry = Registry(root)
        self.templates = make_templates()
        self._runs: dict[str, RunData] = {}
        self._lock = threading.Lock()

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("root", str(self.registry.root))
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def run_data(self, key: str) -> RunData:
        entry = self.registry.get("rationales", key)
        if entry.error:
            raise ViewerError(422, "Cannot read this run", entry.error)
        with self._lock:
            data = self._runs.get(key)
            if data is None or data.entry.mtime_ns != entry.mtime_ns:
                data = self._runs[key] = RunData(entry, self.registry)
        return data

    # ------------------------------------------------------------ pages
    def index(self, request: Request) -> Response:
        runs = []
        for e in self.registry.entries("rationales"):
            item: dict[str, Any] = {"key": e.key, "error": e.error or e.refused, "m": None, "head": None}
            if e.manifest is not None and not item["error"]:
                item["m"] = describe_manifest(e.manifest)
                try:
                    item["head"] = self.run_data(e.key).headline()
                except (ContractError, Forbidden, ViewerError) as exc:
                    item["error"] = getattr(exc, "message", None) or str(exc)
            runs.append(item)
        trainings = []
        for e in self.registry.entries("training"):
            item = {"key": e.key, "error": e.refused, "run": None}
            if not item["error"]:
                try:
                    item["run"] = load_training(e, self.registry)
                except (DataError, Forbidden) as exc:
                    item["error"] = str(exc)
            trainings.append(item)
        return self.page(request, "index.html", runs=runs, trainings=trainings)

    def run(self, request: Request) -> Response:
        key = request.path_params["key"]
        data = self.run_data(key)
        ov = data.overview()
        groups = ov["groups"]
        many_teachers = len({g["teacher"] for g in groups}) > 1

        def label(g: dict[str, Any]) -> str:
            return f"{g['perspective']} · {g['teacher']}" if many_teachers else g["perspective"]

        colors = charts.color_map(sorted({g["perspective"] for g in groups}))
        accuracy = charts.stacked_bars(
            [
                (
                    label(g),
                    [
                        ("correct", g["correct_pct"]),
                        ("incorrect", 100.0 * g["incorrect"] / g["rows"]),
                        ("unjudged", g["unjudged_pct"]),
                    ],
                )
                for g in groups
            ],
            title="Verdicts per view (% of rationales)",
        )
        hist = ov["histograms"]
        histograms = [
            charts.histogram(
                hist["counts"].get((g["perspective"], g["teacher"]), []),
                bin_width=hist["width"],
                title=label(g),
                unit=hist["unit"],
                color=colors[g["perspective"]],
            )
            for g in groups
        ]
        lengths = charts.bars(
            [(label(g), g["len_mean"] or 0.0) for g in groups],
            title=f"Mean length ({hist['unit']})",
            digits=0,
            colors={label(g): colors[g["perspective"]] for g in groups},
        )
        reasons = sorted({r for g in groups for r in g["finish_reasons"]}, key=lambda r: (r != "stop", r))
        manifest = data.entry.manifest
        return self.page(
            request,
            "run.html",
            key=key,
            m=describe_manifest(manifest) if manifest else None,
            config=manifest.config if manifest else {},
            summary=ov["summary"],
            groups=groups,
            judge=ov["judge"],
            label=label,
            accuracy=accuracy,
            histograms=histograms,
            lengths=lengths,
            reasons=reasons,
            facets=data.facets(),
            filters=Filters(),
        )

    def questions(self, request: Request) -> Response:
        key = request.path_params["key"]
        data = self.run_data(key)
        filters = self._filters(request)
        page = self._int(request, "page", 1)
        found = data.find_questions(filters, page)
        return self.page(
            request,
            "questions.html",
            key=key,
            filters=filters,
            found=found,
            facets=data.facets(),
            params=filters.as_params(),
        )

    def question(self, request: Request) -> Response:
        key = request.path_params["key"]
        qid = request.query_params.get("id", "")
        if not qid:
            raise ViewerError(400, "Bad request", "missing question id (?id=...)")
        data = self.run_data(key)
        filters = self._filters(request)
        view = request.query_params.get("view") or None
        try:
            q = data.question(qid)
        except ContractError as exc:
            if exc.reason.startswith("unknown question id"):
                raise ViewerError(404, "Not found", f"{exc.reason} in run {key}") from None
            raise
        cards = []
        for r in q["rationales"]:
            if view is not None and r["perspective"] != view:
                continue
            before, answer, after = split_answer(r["rationale"], r["predicted_answer"])
            cls, text = VERDICT_TEXT[r["is_correct"]]
            cards.append(
                r
                | {
                    "before": before,
                    "answer": answer,
                    "after": after,
                    "verdict_class": cls,
                    "verdict_label": text,
                    "match": filters.active and filters.matches(r),
                    "judge": _judge_card(r),
                }
            )
        prev, nxt = data.neighbours(qid, filters)
        return self.page(
            request,
            "question.html",
            key=key,
            q=q,
            cards=cards,
            view=view,
            filters=filters,
            params=filters.as_params(),
            prev=prev,
            next=nxt,
            facets=data.facets(),
        )

    def train(self, request: Request) -> Response:
        key = request.path_params["key"]
        run = load_training(self.registry.get("training", key), self.registry)
        lines, sources = series(run)
        colors = charts.color_map(run.views)
        figs, omitted = [], []
        for name, title, y_label, opts, optional in TRAIN_CHARTS:
            if optional and sources[name] is None:  # e.g. no MetaNet in this strategy: no chart at all
                omitted.append(title.split(" (")[0])
                continue
            per_view = name in PER_VIEW
            figs.append(
                charts.line_chart(lines[name], title=title, y_label=y_label, colors=colors if per_view else None, **opts)
            )
        views = run.summary["views"] if run.summary else {}
        view_rows = [_view_row(name, v) for name, v in views.items()]
        final = charts.bars(
            [(r["name"], r["in_subset_pct"]) for r in view_rows if r["in_subset_pct"] is not None],
            title="In the subset over the whole run (% of the questions where the view was present)",
            unit="%",
            max_value=100.0,
            colors=colors,
        )
        compute = _compute_rows(run.summary)
        used = {src for src in sources.values() if src}
        evals = [e for _, e in sorted(run.evals.items())]
        eval_chart = charts.bars(
            [
                (e.get("split", "?"), 100.0 * float(e["accuracy"]))
                for e in evals
                if isinstance(e.get("accuracy"), int | float)
            ],
            title="Accuracy per evaluation split",
            unit="%",
            max_value=100.0,
        )
        rel = self._rel
        return self.page(
            request,
            "train.html",
            key=key,
            run=run,
            figs=figs,
            omitted=omitted,
            sources=sorted(used),
            final=final,
            view_rows=view_rows,
            compute=compute,
            evals=evals,
            eval_chart=eval_chart,
            summary_file=rel(run.summary_file),
            state_file=rel(run.state_file),
        )

    def eval(self, request: Request) -> Response:
        key = request.path_params["key"]
        split = request.query_params.get("split", "")
        run = load_training(self.registry.get("training", key), self.registry)
        summary = run.evals.get(split)
        if summary is None or "file" not in summary:
            raise ViewerError(404, "Not found", f"no predictions of split {split!r} in {key} (eval/{split}.parquet)")
        verdict = request.query_params.get("verdict") or None
        try:
            Filters.parse({"verdict": verdict or ""})
        except ValueError as exc:
            raise ViewerError(400, "Bad request", str(exc)) from None
        found = predictions_page(summary["file"], verdict, self._int(request, "page", 1))
        for r in found["rows"]:
            r["before"], r["answer"], r["after"] = split_answer(r["prediction"] or "", r["predicted_answer"])
            r["verdict_class"], r["verdict_label"] = VERDICT_TEXT[r["is_correct"]]
        return self.page(request, "eval.html", key=key, split=split, summary=summary, found=found, verdict=verdict)

    # ------------------------------------------------------------ helpers
    def _rel(self, path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return path.relative_to(self.registry.root).as_posix()
        except ValueError:
            return str(path)

    @staticmethod
    def _filters(request: Request) -> Filters:
        try:
            return Filters.parse(request.query_params)
        except ValueError as exc:
            raise ViewerError(400, "Bad request", str(exc)) from None

    @staticmethod
    def _int(request: Request, name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            return max(1, int(raw))
        except ValueError:
            raise ViewerError(400, "Bad request", f"{name} must be a whole number, got {raw!r}") from None

    # ------------------------------------------------------------ errors
    def error_page(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, ViewerError):
            status, title, message = exc.status, exc.title, exc.message
        elif isinstance(exc, NotFound):
            status, title, message = 404, "Not found", str(exc)
        elif isinstance(exc, Forbidden):
            status, title, message = 403, "Forbidden", str(exc)
        elif isinstance(exc, ContractError | DataError):
            status, title, message = 422, "Cannot read run data", str(exc)
        elif isinstance(exc, HTTPException):
            status, title = exc.status_code, {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
            message = f"{request.method} {request.url.path}: " + (
                "this viewer is read-only (GET only)" if exc.status_code == 405 else str(exc.detail)
            )
        else:
            logger.exception("error serving %s", request.url.path)
            status, title, message = 500, "Internal error", f"{type(exc).__name__}: {exc}"
        if request.method == "HEAD":
            return Response(status_code=status)
        headers = {"allow": "GET, HEAD"} if status == 405 else None
        response = self.page(request, "error.html", status=status, title=title, message=message)
        if headers:
            response.headers.update(headers)
        return response


def create_app(root: str | Path, *, allowed_hosts: Sequence[str] | None = None) -> Starlette:
    """The viewer over ``root`` (a run directory or any folder of runs).

    ``allowed_hosts``: accepted ``Host`` headers (refuses DNS-rebinding requests when bound to
    loopback); None accepts any.
    """
    viewer = Viewer(root)

    def wrap(method: Any) -> Any:
        def endpoint(request: Request) -> Response:
            try:
                return method(request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes an error page
                return viewer.error_page(request, exc)

        return endpoint

    routes = [
        Route("/", wrap(viewer.index), methods=["GET"]),
        Route("/run/{key:path}", wrap(viewer.run), methods=["GET"]),
        Route("/questions/{key:path}", wrap(viewer.questions), methods=["GET"]),
        Route("/question/{key:path}", wrap(viewer.question), methods=["GET"]),
        Route("/train/{key:path}", wrap(viewer.train), methods=["GET"]),
        Route("/eval/{key:path}", wrap(viewer.eval), methods=["GET"]),
        Route("/healthz", lambda request: PlainTextResponse("ok"), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))

    async def http_error(request: Request, exc: Exception) -> Response:
        return viewer.error_page(request, exc)

    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error})
    app.state.viewer = viewer
    return app
