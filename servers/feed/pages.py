"""The browser pages: ``GET /pages/`` (index) and ``/pages/<technique>`` (+ ``stomp.js``).

Every page uses *relative* URLs (``../feed/sse``; WebSocket URLs built from ``location``), so it
works unchanged behind a path prefix such as jupyter-server-proxy's ``<base>/proxy/<port>/``.
For the same reason ``/`` and ``/pages`` redirect with a relative ``Location``.
"""
from __future__ import annotations

from pathlib import Path

from servers.web import ApiError, BaseHandler

__all__ = ["PageHandler", "RelativeRedirectHandler", "PAGES_DIR", "PAGE_NAMES"]

PAGES_DIR = Path(__file__).with_name("pages")
PAGE_NAMES = ("poll", "longpoll", "sse", "ws", "stomp")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}


class PageHandler(BaseHandler):
    def get(self, name: str) -> None:
        filename = "index.html" if name == "" else name if "." in name else f"{name}.html"
        path = PAGES_DIR / filename
        if "/" in filename or not path.is_file() or path.suffix not in _TYPES:
            raise ApiError(404, "not_found", f"No page {name!r}; try one of: {', '.join(PAGE_NAMES)}.")
        self.set_header("Content-Type", _TYPES[path.suffix])
        self.set_header("Cache-Control", "no-cache")
        self.finish(path.read_bytes())


class RelativeRedirectHandler(BaseHandler):
    """Redirect with a relative Location (``pages/``), so a proxy prefix is kept."""

    def initialize(self, target: str) -> None:
        self.target = target

    def get(self) -> None:
        self.redirect(self.target)
