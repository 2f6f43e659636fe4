"""Web plumbing of the viewer: security headers, error type, template environment and helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.datastructures import MutableHeaders
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HERE", "SECURITY_HEADERS", "VERDICT_TEXT", "SecurityHeaders", "ViewerError", "href", "make_templates"]

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
VERDICT_TEXT = {
    True: ("correct", "✓ correct"),
    False: ("incorrect", "✗ incorrect"),
    None: ("unjudged", "? unjudged"),
}


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ViewerError(Exception):
    """An error page: HTTP ``status``, a title and the message (naming the file at fault)."""

    def __init__(self, status: int, title: str, message: str):
        self.status, self.title, self.message = status, title, message
        super().__init__(message)


# ---------------------------------------------------------------- template helpers
def href(prefix: str, key: str, **params: Any) -> str:
    """``/prefix/KEY?params`` with the key quoted and empty parameters dropped."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "", False)})
    return f"/{prefix}/{quote(key, safe='/')}" + (f"?{query}" if query else "")


def _num(v: Any, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}f}%"


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is HTML-escaped unless it is Markup (the charts)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(href=href, verdict_text=VERDICT_TEXT)
    env.filters.update(num=_num, pct=_pct, tojson_pretty=lambda v: json.dumps(v, indent=2, default=str))
    return Jinja2Templates(env=env)
