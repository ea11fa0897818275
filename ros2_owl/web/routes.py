"""The page's HTTP side: the token and Origin checks every request passes, the page's files."""

from __future__ import annotations

import hmac
from pathlib import Path
from urllib.parse import quote, urlsplit

from aiohttp import web

__all__ = [
    "STATIC",
    "foreign_origin",
    "index_response",
    "page_query",
    "static_response",
    "token_ok",
]

STATIC = Path(__file__).resolve().parent / "static"
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def page_query(token: str | None) -> str:
    """The query the page's address carries (and passes on to its files and websocket)."""
    return f"?token={quote(token, safe='')}" if token else ""


def token_ok(token: str | None, request: web.Request) -> bool:
    """The token as ?token=, `Authorization: Bearer` or X-Owl-Token (constant-time compare)."""
    if token is None:
        return True
    given = request.query.get("token") or request.headers.get("X-Owl-Token", "")
    auth = request.headers.get("Authorization", "")
    if not given and auth.startswith("Bearer "):
        given = auth[len("Bearer ") :]
    return hmac.compare_digest(given.encode(), token.encode())


def foreign_origin(request: web.Request) -> str | None:
    """The Origin of a websocket opened by a page of another site (None when it is ours)."""
    origin = request.headers.get("Origin")
    if request.path == "/ws" and origin and urlsplit(origin).netloc != request.host:
        return origin
    return None


def index_response(token: str | None, request: web.Request) -> web.Response:
    """index.html with the token query filled in, under a same-origin-only CSP."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    csp = (
        "default-src 'self'; img-src 'self' blob:; "
        f"connect-src 'self' ws://{request.host} wss://{request.host}"
    )
    return web.Response(
        text=html.replace("__QUERY__", page_query(token)),
        content_type="text/html",
        headers={"Content-Security-Policy": csp},
    )


def static_response(name: str) -> web.Response:
    """One of the page's own files (HTTPNotFound for anything else, index.html included)."""
    path = STATIC / name
    if name == "index.html" or path.suffix not in _CONTENT_TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=_CONTENT_TYPES[path.suffix])
