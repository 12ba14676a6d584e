"""Our own small load balancer: a Tornado ServerApp that proxies HTTP, streams and WebSockets.

Why write one when nginx exists: it runs in-process from a notebook cell with nothing to install,
and it records every routing decision where a learner can read it (``routing_log()``). It does
what the lessons need from a balancer and no more:

* plain requests: method, headers and body forwarded; ``Host`` kept; ``X-Forwarded-For`` added;
  hop-by-hop headers (RFC 9110 §7.6.1) dropped both ways;
* streaming responses (SSE) relayed chunk by chunk as they arrive, never buffered, and held long
  polls held as long as the backend holds them. The upstream side is Tornado's own HTTP/1.1
  connection driven directly (not ``AsyncHTTPClient``), so that when the client goes away the
  balancer can close the upstream connection at once and the backend sees the client leave;
* WebSocket upgrades: the balancer connects to the backend first (with the client's subprotocols,
  cookies, Origin, and ``X-Forwarded-For``), answers the client's handshake with the backend's
  choice, then relays frames and close codes both ways;
* a backend that is down: 502 JSON naming the backend after a short connect timeout (never a
  hang); a WebSocket is accepted and closed with 1014 "bad gateway" and the reason. Like nginx,
  it notices a dead backend only by such failed requests, and then skips it for a while
  (``max_fails``, ``fail_timeout``: :class:`~servers.balancer.backends.PassiveHealth`).

Why this is one module: the HTTP relay and the WebSocket relay share one choice of backend, one
routing log and one failure count per backend; apart, neither half reads without the other.

Responses the balancer makes itself carry ``X-Served-By: <balancer name>``; proxied responses keep
the backend's own ``X-Served-By``, so a learner sees which server answered.
"""
from __future__ import annotations

import asyncio
import collections
import json
from typing import Any, Sequence

import tornado.httpclient
import tornado.routing
import tornado.tcpclient
import tornado.util
import tornado.web
import tornado.websocket
from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import StreamClosedError

from servers.balancer.backends import Backend, PassiveHealth, as_backend, as_backends
from servers.balancer.policies import STICKY_COOKIE, RouteRequest, Router, is_push_route
from servers.balancer.routing import record, routing_frame
from servers.runtime import ServerApp, cancel_and_wait

__all__ = ["BalancerApp", "HOP_BY_HOP"]

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "proxy-connection"})
# WebSocket close codes that must never be sent in a close frame (RFC 6455 §7.4.1).
_UNSENDABLE_CLOSE_CODES = {1005, 1006, 1015}
CLOSE_BAD_GATEWAY = 1014


def _hop_by_hop(headers: httputil.HTTPHeaders) -> set[str]:
    """The fixed hop-by-hop headers plus any the ``Connection`` header names."""
    named = {token.strip().lower() for value in headers.get_list("Connection") for token in value.split(",")}
    return set(HOP_BY_HOP) | {n for n in named if n}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, tornado.util.TimeoutError)):
        return "connect timed out"
    if isinstance(exc, StreamClosedError) and exc.real_error is not None:
        return _describe(exc.real_error)
    return str(exc) or type(exc).__name__


class BalancerApp(ServerApp):
    """The balancer's state: backends, the policy's router, the routing log, a TCP client."""

    def __init__(self, backends: Sequence[Any], policy: str = "round_robin", *, name: str = "lb",
                 connect_timeout: float = 3.0, vnodes: int = 160, seed: int | None = None,
                 max_log: int = 100_000, push_backends: Sequence[Any] = (), max_fails: int = 1,
                 fail_timeout: float = 10.0, **settings: Any) -> None:
        # Every answer, the 502s for a dead backend included, is in the routing log (and failures in
        # ``health.events``); a 502 is the balancer working as it should, not an error to print.
        settings.setdefault("log_function", lambda handler: None)
        rules = [tornado.routing.Rule(_WebSocketUpgrade(), WebSocketProxyHandler),
                 tornado.routing.Rule(tornado.routing.AnyMatches(), HttpProxyHandler)]
        super().__init__(rules, name=name, **settings)
        self.policy = policy
        self.backends: list[Backend] = as_backends(backends)
        self.router = Router(policy, [b.name for b in self.backends], vnodes=vnodes, seed=seed)
        # The gateway fix: push routes go to a separate push tier (in turn), the rest as the policy says.
        self.push_backends: list[Backend] = as_backends(push_backends)
        self.push_router = Router("round_robin", [b.name for b in self.push_backends])
        self.connect_timeout = connect_timeout
        self.health = PassiveHealth(max_fails, fail_timeout)  # nginx's max_fails / fail_timeout
        # The newest ``max_log`` decisions (a balancer left running must not grow without bound).
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_log)
        self.tcp_client = tornado.tcpclient.TCPClient()
        self.open_upstreams: set[Any] = set()
        self.relays: set[asyncio.Task] = set()  # WebSocket relays: held here, cancelled on shutdown

    # -- backends ------------------------------------------------------------------------------
    def set_backends(self, backends: Sequence[Any]) -> None:
        self.backends = as_backends(backends)
        self.router.set_backends([b.name for b in self.backends])

    def add_backend(self, spec: Any, name: str | None = None) -> Backend:
        backend = as_backend(spec, name)
        self.set_backends([b for b in self.backends if b.name != backend.name] + [backend])
        return backend

    def remove_backend(self, name: str) -> None:
        if name not in {b.name for b in self.backends}:
            raise KeyError(f"no backend named {name!r}; the backends are {[b.name for b in self.backends]}")
        self.set_backends([b for b in self.backends if b.name != name])

    def choose(self, request: httputil.HTTPServerRequest) -> tuple[Backend, bool]:
        route = RouteRequest(client=request.remote_ip or "", path=request.path, query=request.query,
                             method=request.method or "GET",
                             cookies={k: m.value for k, m in request.cookies.items()})
        pool, router = ((self.push_backends, self.push_router) if self.push_backends and is_push_route(request.path)
                        else (self.backends, self.router))
        name, set_cookie = router.choose(route, self.health.live(router.names))  # LookupError: none live
        return next(b for b in pool if b.name == name), set_cookie and router is self.router

    def log_decision(self, request, backend: Backend | None, status: int | None = None) -> dict[str, Any]:
        entry = record(request.remote_ip or "", request.method or "", request.uri or "/",
                       backend.name if backend else None, backend.url if backend else None, status)
        self.log.append(entry)
        return entry

    def routing_frame(self):
        return routing_frame([dict(e) for e in self.log])

    async def shutdown(self) -> None:
        for stream in list(self.open_upstreams):
            stream.close()
        await cancel_and_wait(list(self.relays), 2)
        self.tcp_client.close()


class _WebSocketUpgrade(tornado.routing.Matcher):
    """Matches a request that asks to become a WebSocket (``Upgrade: websocket``)."""

    def match(self, request):
        return {} if request.headers.get("Upgrade", "").lower() == "websocket" else None


class _BalancerReplies:
    """The balancer's own answers: JSON, ``X-Served-By: <balancer>``."""

    def reply_json(self, status: int, body: dict[str, Any]) -> None:
        self.clear()
        self.set_status(status)
        self.set_header("X-Served-By", self.application.name)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body, separators=(",", ":")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("X-Served-By", self.application.name)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": "balancer_error", "detail": f"The balancer failed ({status_code})."}))


class HttpProxyHandler(_BalancerReplies, tornado.web.RequestHandler):
    """Forward one HTTP request to the chosen backend and relay its answer as it arrives."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def set_default_headers(self) -> None:
        # A proxied response carries the backend's headers, not Tornado's defaults.
        for header in ("Server", "Content-Type", "Date"):
            self.clear_header(header)

    def compute_etag(self) -> None:
        return None  # the backend's ETag (if any) passes through; never invent one

    def initialize(self) -> None:
        self.upstream = None
        self.client_gone = False
        self.finished = False  # the response is over (Tornado's own flag is private)

    async def get(self, *args: Any) -> None:
        app: BalancerApp = self.application  # type: ignore[assignment]
        if not app.backends:
            self.reply_json(503, {"error": "no_backends", "detail": "The balancer has no backends to send this to."})
            return
        try:
            backend, set_cookie = app.choose(self.request)
        except LookupError:  # every backend failed within fail_timeout (nginx: "no live upstreams")
            app.log_decision(self.request, None, 502)
            self.reply_json(502, {"error": "bad_gateway", "backend": None, "detail": "No live backend: each "
                                  f"failed within the last {app.health.fail_timeout:g} s."})
            return
        entry = app.log_decision(self.request, backend)
        app.router.opened(backend.name)
        try:
            await self._forward(backend, entry, set_cookie)
        finally:
            app.router.closed(backend.name)

    head = post = delete = patch = put = options = get

    def on_connection_close(self) -> None:
        self.client_gone = True
        if self.upstream is not None:
            self.upstream.close()  # the backend sees its client leave (a held SSE stream ends)

    def on_finish(self) -> None:
        self.finished = True

    def _upstream_headers(self) -> httputil.HTTPHeaders:
        request = self.request
        drop = _hop_by_hop(request.headers) | {"content-length"}
        headers = httputil.HTTPHeaders()
        for key, value in request.headers.get_all():
            if key.lower() not in drop:
                headers.add(key, value)
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {request.remote_ip}" if forwarded else (request.remote_ip or "")
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(request.body))
        headers["Connection"] = "close"
        return headers

    async def _forward(self, backend: Backend, entry: dict[str, Any], set_cookie: bool) -> None:
        app: BalancerApp = self.application  # type: ignore[assignment]
        try:
            stream = await app.tcp_client.connect(backend.host, backend.port, timeout=app.connect_timeout)
        except Exception as exc:  # refused, timed out, unreachable: all the same to the client
            self._bad_gateway(backend, entry, f"could not connect ({_describe(exc)})")
            return
        if self.client_gone:
            stream.close()
            return
        stream.set_nodelay(True)
        self.upstream = stream
        app.open_upstreams.add(stream)
        connection = HTTP1Connection(stream, True, HTTP1ConnectionParameters(
            no_keep_alive=True, decompress=False, max_header_size=65536, max_body_size=2 ** 62))
        relay = _ResponseRelay(self, backend, entry, set_cookie)
        try:
            connection.write_headers(httputil.RequestStartLine(self.request.method, self.request.uri, "HTTP/1.1"),
                                     self._upstream_headers())
            if self.request.body:
                connection.write(self.request.body)
            connection.finish()
            await connection.read_response(relay)
        except StreamClosedError:
            pass
        finally:
            app.open_upstreams.discard(stream)
            stream.close()
        if relay.finished or self.client_gone:
            return
        if not relay.started:
            self._bad_gateway(backend, entry, "closed the connection without answering")
        else:
            # The backend died mid-response: end the client's connection abruptly too, so it sees
            # a broken stream (and an SSE client reconnects), not a response that looks complete.
            entry["status"] = entry["status"] or 502
            self.finished = True
            self.detach().close()  # detach(): Tornado writes nothing more (no final chunk); then drop it

    def _bad_gateway(self, backend: Backend, entry: dict[str, Any], why: str) -> None:
        entry["status"] = 502
        self.application.health.failed(backend.name, why)  # type: ignore[attr-defined]
        if self.client_gone:
            return
        self.reply_json(502, {"error": "bad_gateway", "backend": backend.name,
                              "detail": f"Backend {backend.name} at {backend.url} {why}."})


class _ResponseRelay(httputil.HTTPMessageDelegate):
    """Receives the backend's response and writes it to the client as it comes (no buffering)."""

    def __init__(self, handler: HttpProxyHandler, backend: Backend, entry: dict[str, Any], set_cookie: bool) -> None:
        self.handler = handler
        self.backend = backend
        self.entry = entry
        self.set_cookie = set_cookie
        self.started = False
        self.finished = False

    def headers_received(self, start_line, headers: httputil.HTTPHeaders):
        handler = self.handler
        self.started = True
        self.entry["status"] = start_line.code
        handler.application.health.succeeded(self.backend.name)  # type: ignore[attr-defined]
        if handler.client_gone:
            return None
        handler.set_status(start_line.code, start_line.reason or "Unknown")
        drop = _hop_by_hop(headers)
        for key, value in headers.get_all():
            if key.lower() not in drop:
                handler.add_header(key, value)
        if self.set_cookie:
            handler.add_header("Set-Cookie", f"{STICKY_COOKIE}={self.backend.name}; Path=/; HttpOnly; SameSite=Lax")
        if handler.request.method == "HEAD" or start_line.code in (204, 304):
            return None
        return self._flush()  # headers out now: an SSE client must not wait for the first event

    def data_received(self, chunk: bytes):
        if self.handler.client_gone:
            return None
        self.handler.write(chunk)
        return self._flush()  # awaited by the connection: back-pressure from a slow client

    async def _flush(self) -> None:
        try:
            await self.handler.flush()
        except StreamClosedError:
            self.handler.on_connection_close()

    def finish(self) -> None:
        self.finished = True
        if not self.handler.client_gone and not self.handler.finished:
            self.handler.finish()

    def on_connection_close(self) -> None:
        pass  # the caller sees ``finished`` is False and decides (502, or an abrupt close)


class WebSocketProxyHandler(_BalancerReplies, tornado.websocket.WebSocketHandler):
    """Connect to the backend first, then accept the client with the backend's subprotocol,
    then relay messages and close codes both ways."""

    def initialize(self) -> None:
        self.backend: Backend | None = None
        self.entry: dict[str, Any] | None = None
        self.upstream: tornado.websocket.WebSocketClientConnection | None = None
        self.failure: str | None = None
        self.counted = False

    def check_origin(self, origin: str) -> bool:
        return True  # the backend decides about Origin (it sees the client's Origin header)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        app: BalancerApp = self.application  # type: ignore[assignment]
        if not app.backends:
            self.reply_json(503, {"error": "no_backends", "detail": "The balancer has no backends to send this to."})
            return
        try:
            self.backend, _ = app.choose(self.request)
        except LookupError:
            app.log_decision(self.request, None, 502)
            self.reply_json(502, {"error": "bad_gateway", "backend": None, "detail": "No live backend."})
            return
        self.entry = app.log_decision(self.request, self.backend)
        app.router.opened(self.backend.name)
        self.counted = True
        try:
            self.upstream = await tornado.websocket.websocket_connect(
                tornado.httpclient.HTTPRequest(self.backend.url.replace("http", "ws", 1) + self.request.uri,
                                               headers=self._upstream_headers(),
                                               connect_timeout=app.connect_timeout, request_timeout=app.connect_timeout + 10),
                subprotocols=self._offered_subprotocols() or None,
                max_message_size=self.settings.get("websocket_max_message_size", 10 * 1024 * 1024))
        except tornado.httpclient.HTTPClientError as exc:
            # The backend refused the upgrade (e.g. 403 for a foreign Origin): relay its answer.
            self._uncount()
            self.entry["status"] = exc.code
            response = exc.response
            if response is None or exc.code >= 599:
                self._reply_bad_gateway_later(f"failed the handshake ({exc})")
            else:
                app.health.succeeded(self.backend.name)  # it answered: not a failed attempt
                self.clear()
                self.set_status(exc.code, response.reason or "Unknown")
                for key, value in response.headers.get_all():
                    if key.lower() not in _hop_by_hop(response.headers) | {"content-length"}:
                        self.add_header(key, value)
                self.finish(response.body or b"")
                return
        except Exception as exc:
            self._reply_bad_gateway_later(f"could not connect ({_describe(exc)})")
        if self.upstream is not None and self.request.connection.stream.closed():
            self.upstream.close()  # the client left while we were connecting to the backend
            self._uncount()
            return
        if self.upstream is not None:
            self.entry["status"] = 101
            app.health.succeeded(self.backend.name)
            app.open_upstreams.add(self.upstream)
            served_by = self.upstream.headers.get("X-Served-By")
            if served_by:
                self.set_header("X-Served-By", served_by)
            for cookie in self.upstream.headers.get_list("Set-Cookie"):
                self.add_header("Set-Cookie", cookie)
        else:
            self.set_header("X-Served-By", app.name)
        await super().get(*args, **kwargs)

    def _reply_bad_gateway_later(self, why: str) -> None:
        """Accept the handshake anyway, then close with 1014 and the reason (see ``open``)."""
        assert self.backend is not None and self.entry is not None
        self.entry["status"] = 502
        self.failure = f"backend {self.backend.name} {why}"
        self.application.health.failed(self.backend.name, why)  # type: ignore[attr-defined]
        self._uncount()

    def _uncount(self) -> None:
        if self.counted and self.backend is not None:
            self.application.router.closed(self.backend.name)  # type: ignore[attr-defined]
            self.counted = False

    def _offered_subprotocols(self) -> list[str]:
        raw = self.request.headers.get("Sec-WebSocket-Protocol", "")
        return [p.strip() for p in raw.split(",") if p.strip()]

    def _upstream_headers(self) -> httputil.HTTPHeaders:
        request = self.request
        skip = _hop_by_hop(request.headers) | {"sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol",
                                               "sec-websocket-extensions", "content-length"}
        headers = httputil.HTTPHeaders()
        for key, value in request.headers.get_all():
            if key.lower() not in skip:
                headers.add(key, value)  # Host, Cookie, Origin, User-Agent, Authorization ...
        forwarded = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {request.remote_ip}" if forwarded else (request.remote_ip or "")
        return headers

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return self.upstream.selected_subprotocol if self.upstream is not None else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        if self.upstream is None:
            self.close(CLOSE_BAD_GATEWAY, (self.failure or "bad gateway")[:120])
            return
        relays = self.application.relays  # type: ignore[attr-defined]
        relay = asyncio.ensure_future(self._relay_from_backend())
        relays.add(relay)
        relay.add_done_callback(relays.discard)

    async def _relay_from_backend(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        while True:
            message = await upstream.read_message()
            if message is None:
                break
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except tornado.websocket.WebSocketClosedError:
                upstream.close()
                return
        code, reason = upstream.close_code, upstream.close_reason
        if code is None or code in _UNSENDABLE_CLOSE_CODES:
            # No close frame from the backend: it died or dropped the connection.
            assert self.backend is not None
            code, reason = CLOSE_BAD_GATEWAY, f"backend {self.backend.name} closed the connection without a close frame"
        self.close(code, (reason or "")[:120])

    async def on_message(self, message: str | bytes) -> None:
        if self.upstream is None:
            return
        try:
            await self.upstream.write_message(message, binary=isinstance(message, bytes))
        except tornado.websocket.WebSocketClosedError:
            pass

    def on_close(self) -> None:
        self._uncount()
        if self.upstream is not None:
            self.application.open_upstreams.discard(self.upstream)  # type: ignore[attr-defined]
            code = self.close_code
            if code is None or code in _UNSENDABLE_CLOSE_CODES:
                self.upstream.close()
            else:
                self.upstream.close(code, self.close_reason)
