"""The tiny server of lesson 00 (Tour): a hello endpoint, a clock that pushes nothing yet, and a
body of any size (``/blob?size=N``) for counting header bytes against body bytes.

The clock is the seed of the whole course: it only answers when asked. Lesson 01 makes the
browser ask again and again (polling); later lessons make the server speak first (push).

``start_on_kernel_loop`` exists only to show, safely, why every other server runs on a loop of
its own: a server on the kernel's loop cannot answer a blocking ``requests`` call from a cell,
because that call blocks the very loop the server needs. ``remember_asyncio`` lets the lesson
apply ``nest_asyncio`` to that loop for a few cells and then put asyncio back as it was.
"""
from __future__ import annotations

import asyncio
import html
import time
from typing import Callable

import tornado.concurrent
import tornado.httpserver
import tornado.netutil

from servers.runtime import ServerApp, serve
from servers.web import ApiError, BaseHandler

__all__ = ["TourApp", "start_tour", "start_on_kernel_loop", "KernelLoopServer", "remember_asyncio"]

MAX_BLOB = 1024 * 1024


class HelloHandler(BaseHandler):
    """``GET /hello?name=x`` → ``{"message": "hello, x"}``; counts visits on the application."""

    def get(self) -> None:
        name = self.get_argument("name", "learner")
        if len(name) > 100:
            raise ApiError(400, "name_too_long", "The name must be at most 100 characters long.")
        self.application.visits += 1  # type: ignore[attr-defined]
        self.write_json({"message": f"hello, {name}", "visit": self.application.visits})  # type: ignore[attr-defined]


class ClockHandler(BaseHandler):
    """``GET /clock`` → the server's time, once. To see it change, the client must ask again."""

    def get(self) -> None:
        now = time.time()
        self.write_json({"now": now, "iso": time.strftime("%H:%M:%S", time.localtime(now))})


class BlobHandler(BaseHandler):
    """``GET /blob?size=N`` → a text body of exactly N bytes (at most 1 MiB): for overhead measurements."""

    def get(self) -> None:
        size = self.int_argument("size", default=100, minimum=0)
        if size > MAX_BLOB:
            raise ApiError(400, "too_big", f"size must be at most {MAX_BLOB} bytes.")
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish((b"0123456789abcdef" * (size // 16 + 1))[:size])


class PageHandler(BaseHandler):
    """``GET /`` → a small HTML page showing the time when it was loaded (no push yet)."""

    def get(self) -> None:
        name = html.escape(self.application.name)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(f"<!doctype html><meta charset=utf-8><title>{name}</title>"
                    f"<h1>Hello from {name}</h1><p>Server time when this page loaded: "
                    f"{time.strftime('%H:%M:%S')}. Reload to see it change: nothing is pushed yet.</p>")


class TourApp(ServerApp):
    """The tour server. Its only state, the visit count, lives on the application."""

    def __init__(self, name: str = "tour") -> None:
        super().__init__([(r"/", PageHandler), (r"/hello", HelloHandler), (r"/clock", ClockHandler),
                          (r"/blob", BlobHandler)], name=name)
        self.visits = 0


def start_tour(name: str = "tour"):
    """Start the tour server on the shared server loop, on a free port; returns its handle."""
    return serve(TourApp(name=name))


class KernelLoopServer:
    """A server started on the *calling* thread's loop (the kernel's): for the lesson's demo only."""

    def __init__(self, app: ServerApp) -> None:
        self.app = app
        self._server = tornado.httpserver.HTTPServer(app)
        sockets = tornado.netutil.bind_sockets(0, address="127.0.0.1")
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"<KernelLoopServer {self.app.name} {self.url}>"

    def stop(self) -> None:
        self._server.stop()


def start_on_kernel_loop(app: ServerApp) -> KernelLoopServer:
    """Start ``app`` on the loop of the current thread, the way a naive notebook would.

    In a notebook cell that is the kernel's loop: an ``await`` on an async client reaches the
    server, a blocking ``requests`` call does not (use a timeout to see it without hanging).
    """
    return KernelLoopServer(app)


_ABSENT = object()


def remember_asyncio() -> Callable[[], None]:
    """Record what ``nest_asyncio.apply()`` replaces; return a function that puts it back.

    The patch is process-wide: it replaces functions of the ``asyncio`` module, swaps asyncio's C
    ``Task`` and ``Future`` for the pure-Python ones, and patches methods of the running loop's
    *class*, so every loop of that class (the server loop too) runs the patched code. Call this
    in the running loop's thread (a notebook cell), before ``nest_asyncio.apply()``. Not undone:
    tasks and futures created meanwhile stay pure-Python ones, which ``tornado.concurrent.FUTURES``
    keeps accepting.
    """
    patched = {
        asyncio: ["run", "get_event_loop", "Task", "Future", "_nest_patched"],
        asyncio.events: ["get_event_loop", "_get_event_loop"],
        asyncio.tasks: ["Task", "_CTask"],
        asyncio.futures: ["Future", "_CFuture"],
        tornado.concurrent: ["Future"],
        type(asyncio.events.get_event_loop_policy()): ["get_event_loop"],
        type(asyncio.get_running_loop()): ["run_forever", "run_until_complete", "_run_once", "_check_running",
                                           "_check_runnung", "_num_runs_pending", "_is_proactorloop",
                                           "_nest_patched"],
    }
    saved = [(owner, name, vars(owner).get(name, _ABSENT)) for owner, names in patched.items() for name in names]

    def restore() -> None:
        for owner, name, value in saved:
            if value is not _ABSENT:
                setattr(owner, name, value)
            elif name in vars(owner):
                delattr(owner, name)

    return restore
