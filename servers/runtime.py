"""Start Tornado applications in-process, from a notebook cell, a script or a test.

Why a background thread: a Jupyter kernel already runs an asyncio loop, and a cell that makes a
blocking call (``requests.get``) blocks that loop. A server living on the kernel's loop could not
answer, and the cell would hang forever. So every server started here lives on one shared
*server loop* that runs in a daemon thread of its own. A blocking ``requests`` call from a cell
and an ``await`` on an async client from a cell both reach it, and no ``nest_asyncio`` patching
is needed.

Each server is a :class:`ServerApp` (a ``tornado.web.Application`` that keeps all of its state on
itself, never in module globals), so several servers run side by side with separate state.
Starting a server under a name that is already running stops the old one first, so re-running a
notebook cell never fails with "address already in use" and never leaves a server behind.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import socket
import threading
from typing import Any, Awaitable, Callable

import tornado.netutil
import tornado.web

from servers.bounds import BoundedHTTPServer, raise_open_file_limit, server_bounds

__all__ = ["ServerApp", "ServerHandle", "serve", "running", "stop_all", "call", "run", "server_loop",
           "track", "untrack", "tracked", "cancel_and_wait"]


class ServerApp(tornado.web.Application):
    """A Tornado application that knows its name and has a start-up and a shut-down hook.

    Subclasses keep their state as attributes of the application (``self.application`` in a
    handler). ``startup`` runs on the server loop after the socket is bound (connect to Redis,
    start timers); ``shutdown`` runs on stop *and* on crash (cancel timers, drop subscriptions),
    so a crashed server does not keep acting behind the learner's back.
    """

    def __init__(self, handlers=None, *, name: str = "server", **settings: Any) -> None:
        settings.setdefault("default_handler_class", _lazy_not_found())
        settings.setdefault("log_function", _no_access_log)  # lessons show the tap and routing log instead
        super().__init__(handlers, **settings)
        self.name = name
        self.url = ""  # set once bound, e.g. for pages that must print their own address

    async def startup(self) -> None:  # pragma: no cover - hook
        """Called once the server is listening."""

    async def shutdown(self) -> None:  # pragma: no cover - hook
        """Called when the server stops or crashes."""


def _no_access_log(handler: tornado.web.RequestHandler) -> None:
    if handler.get_status() >= 500:
        request = handler.request
        tornado.web.app_log.error("%d %s %s (%s)", handler.get_status(), request.method, request.uri, request.remote_ip)


def _lazy_not_found():
    from servers.web import NotFoundHandler

    return NotFoundHandler


# --------------------------------------------------------------------------------------------
# The server loop: one daemon thread per process running an asyncio event loop.

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None


def server_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop (in its own thread) on which every in-process server runs."""
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None or not _loop_thread or not _loop_thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def main() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=main, name="server-loop", daemon=True)
            thread.start()
            ready.wait()
            _loop, _loop_thread = loop, thread
        return _loop


def _on_server_loop() -> bool:
    return _loop is not None and threading.current_thread() is _loop_thread


def run(coro: Awaitable[Any], timeout: float | None = 30) -> Any:
    """Run a coroutine on the server loop and wait for its result (blocking; not from that loop)."""
    if _on_server_loop():
        if asyncio.iscoroutine(coro):
            coro.close()  # never awaited: close it so Python does not warn about it
        raise RuntimeError("run() would deadlock: called from the server loop itself; await instead")
    if not asyncio.iscoroutine(coro):  # a Future or other awaitable: await it inside a coroutine
        awaitable = coro

        async def await_it() -> Any:
            return await awaitable

        coro = await_it()
    future = asyncio.run_coroutine_threadsafe(coro, server_loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"server-loop call did not finish within {timeout} s") from None


def call(fn: Callable[..., Any], *args: Any, timeout: float | None = 30, **kwargs: Any) -> Any:
    """Call ``fn`` on the server loop (where server state lives) and return its result.

    ``fn`` may be a plain function or a coroutine function. Use it to read or change a running
    server's state from a cell without racing the server's own thread.
    """

    async def wrapper():
        result = fn(*args, **kwargs)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        return result

    return run(wrapper(), timeout)


# --------------------------------------------------------------------------------------------
# Servers and their handles.


class ServerHandle:
    """A running in-process server: ``url``, ``name``, ``port``, ``app``; ``stop()``, ``crash()``.

    Use as a context manager to stop it at the end of a ``with`` block.
    """

    def __init__(self, app: ServerApp, server: BoundedHTTPServer, sockets: list[socket.socket], host: str) -> None:
        self.app = app
        self.name = app.name
        self._server = server
        self._sockets = sockets
        self.host = host
        self.port = sockets[0].getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{self.port}"
        self.ws_url = f"ws://{url_host}:{self.port}"
        self.state = "running"

    def __repr__(self) -> str:
        return f"<ServerHandle {self.name} {self.url} {self.state}>"

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def open_connections(self) -> int:
        """How many TCP connections (HTTP and WebSocket) this server holds right now."""
        return call(self._server.open_count)

    @property
    def bounds(self) -> dict[str, Any]:
        """What this server refuses before a handler runs (``servers.bounds``): body size, timeouts,
        connections."""
        return dict(self._server.bounds)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(app, *args)`` on the server loop, e.g. to inspect or change server state."""
        return call(fn, self.app, *args, **kwargs)

    def stop(self, timeout: float = 10) -> None:
        """Stop gracefully: stop listening, let the app shut down, close every connection."""
        if self.state == "running":
            self.state = "stopped"
            call(self._stop, timeout=timeout)
        _registry.pop(self.name, None) if _registry.get(self.name) is self else None

    def crash(self) -> None:
        """Die as a killed process would: listening socket and every connection dropped at once.

        No WebSocket close frame, no final chunk, no goodbye: clients see the TCP connection end.
        """
        if self.state == "running":
            self.state = "crashed"
            call(self._crash)
        _registry.pop(self.name, None) if _registry.get(self.name) is self else None

    def drop_connections(self) -> int:
        """Drop every open connection at once but keep listening (a network blip, lesson 09's
        reconnect storm); returns how many were dropped."""
        def drop() -> int:
            count = sum(1 for s in list(self._server.open_streams) if not s.closed())
            self._drop_streams()
            return count

        return call(drop) if self.state == "running" else 0

    async def _stop(self) -> None:
        self._server.stop()
        await _quietly(self.app.shutdown(), self.app.name)
        try:
            await asyncio.wait_for(self._server.close_all_connections(), 2)
        except (asyncio.TimeoutError, Exception):
            pass
        # close_all_connections does not see connections handed over to a WebSocket handler
        # (they are detached from the HTTP server): close whatever is still open.
        self._drop_streams()

    async def _crash(self) -> None:
        self._server.stop()
        self._drop_streams()
        await _quietly(self.app.shutdown(), self.app.name)

    def _drop_streams(self) -> None:
        for stream in list(self._server.open_streams):
            if not stream.closed():
                stream.close()


async def cancel_and_wait(tasks: Any, timeout: float | None = None) -> bool:
    """Cancel ``tasks`` (``None`` entries skipped) and wait until every one has ended, or at most
    ``timeout`` seconds; True when all have ended.

    Why not one ``cancel()`` and a ``gather``: on Python 3.11 a task inside ``asyncio.wait_for``
    loses a cancellation that arrives in the same loop step as the awaited result
    (https://github.com/python/cpython/issues/86296, fixed in 3.12), and then runs on: into its
    next wait, which may be an hour. So a task still running is cancelled again, every 50 ms.
    """
    pending = {task for task in tasks if task is not None}
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        step = 0.05 if deadline is None else min(0.05, deadline - loop.time())
        if step <= 0:
            return False
        done, pending = await asyncio.wait(pending, timeout=step)
        for task in done:  # retrieved, as gather(return_exceptions=True) would: no "never retrieved" log
            if not task.cancelled():
                task.exception()
    return True


async def _quietly(awaitable: Awaitable[Any], name: str) -> None:
    try:
        await asyncio.wait_for(awaitable, 5)
    except Exception as exc:  # a shut-down hook must never keep a server from stopping
        import logging

        logging.getLogger("servers").warning("server %r: shutdown hook failed: %r", name, exc)


_registry: dict[str, ServerHandle] = {}
_descriptors_raised = False


def running() -> dict[str, ServerHandle]:
    """The in-process servers running now, by name."""
    return {name: h for name, h in _registry.items() if h.running}


def serve(app: ServerApp, *, host: str = "127.0.0.1", port: int = 0, replace: bool = True,
          max_body_size: int | None = None, xheaders: bool = False) -> ServerHandle:
    """Start ``app`` on the server loop, bound to ``host:port`` (port 0 picks a free one).

    A server already running under the same name is stopped first (``replace=True``), which is
    what makes re-running a notebook cell safe. Returns once the server accepts connections.
    Every request is bounded before the app sees it (:mod:`servers.bounds`: body size, slow
    clients, connections), by the app's settings; ``max_body_size`` overrides ``max_body_bytes``.
    """
    global _descriptors_raised
    old = _registry.get(app.name)
    if old is not None:
        if not replace and old.running:
            raise RuntimeError(f"a server named {app.name!r} is already running at {old.url}")
        old.stop()
    if not _descriptors_raised:
        raise_open_file_limit()  # once: every server of this process shares the descriptor table
        _descriptors_raised = True

    async def start() -> ServerHandle:
        server = BoundedHTTPServer(app, xheaders=xheaders, bounds=server_bounds(app.settings, max_body_size))
        sockets = tornado.netutil.bind_sockets(port, address=host)
        server.add_sockets(sockets)
        handle = ServerHandle(app, server, sockets, host)
        app.url = handle.url
        try:
            await app.startup()
        except BaseException:
            server.stop()
            raise
        return handle

    handle = run(start())
    _registry[app.name] = handle
    return handle


# Other things started on the server loop (taps, balancers) that stop_all() must stop too,
# by name: starting one under a name already in use lets the caller stop the old one first.
_tracked: dict[str, Any] = {}


def track(name: str, resource: Any) -> None:
    """Remember ``resource`` (anything with ``stop()``) so that :func:`stop_all` stops it."""
    _tracked[name] = resource


def untrack(resource: Any) -> None:
    """Forget ``resource`` (called by its own ``stop()``)."""
    for name in [n for n, r in _tracked.items() if r is resource]:
        del _tracked[name]


def tracked(name: str) -> Any:
    """The resource tracked under ``name``, or None."""
    return _tracked.get(name)


def stop_all() -> None:
    """Stop every in-process server and tracked resource (also done when the interpreter exits)."""
    for resource in list(_tracked.values()):
        try:
            resource.stop()
        except Exception:
            pass
    _tracked.clear()
    for handle in list(_registry.values()):
        try:
            handle.stop()
        except Exception:
            pass
    _registry.clear()


atexit.register(stop_all)
