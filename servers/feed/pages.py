"""The browser pages: ``GET /pages/`` (index) and ``/pages/<technique>`` (+ ``stomp.js``).

Each technique's page is a Tornado template extending ``base.html`` (title, intro, the event
list and the publish box are shared; the page adds its own script); ``feed.js``, ``stomp.js``
and ``style.css`` are served as they are.

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

# Served as they are: the index, scripts and styles (the other pages are templates, rendered by name).
# Found by the route fuzz: looking up any requested name on disk failed on one longer than the
# file system allows ("File name too long", a 500).
STATIC_FILES = frozenset(p.name for p in PAGES_DIR.iterdir() if p.suffix in _TYPES and
                         (p.suffix != ".html" or p.name == "index.html"))


class PageHandler(BaseHandler):
    def get_template_path(self) -> str:
        return str(PAGES_DIR)

    def get(self, name: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        if name in PAGE_NAMES:
            self.render(f"{name}.html")
            return
        filename = "index.html" if name == "" else name
        if filename not in STATIC_FILES:  # a fixed set: the request never names a path to look up
            raise ApiError(404, "not_found", f"No page {name[:100]!r}; try one of: {', '.join(PAGE_NAMES)}.")
        path = PAGES_DIR / filename
        self.set_header("Content-Type", _TYPES[path.suffix])
        self.finish(path.read_bytes())


class RelativeRedirectHandler(BaseHandler):
    """Redirect with a relative Location (``pages/``), so a proxy prefix is kept."""

    def initialize(self, target: str) -> None:
        self.target = target

    def get(self) -> None:
        self.redirect(self.target)
