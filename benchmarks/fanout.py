"""Fan-out: one server process, K subscribers, one event to all - how long until the last has it?

Usage (from the repository root)::

    python -m benchmarks.fanout --quick                     # K = 200, seconds
    python -m benchmarks.fanout --subscribers 10000         # the full size (a few minutes)

Four servers, each in a process of its own, each with K subscribers of one kind at a time
(SSE, WebSocket), then both kinds at once:

- ``ours``: the feed server, ``python -m servers feed --port 0`` (outboxes, replay buffer,
  ``X-Served-By``, the JSON event with ``seq`` and ``sent_at``: the instrumentation the lessons need);
- ``bare``: the smallest Tornado broadcast that does the same job (:func:`bare_app`, about 20
  lines): what our instrumentation is measured against;
- ``websockets``: the ``websockets`` library's ``serve`` + ``broadcast``, the peer a user might
  pick instead (WebSocket only; it does not serve SSE);
- ``floor``: a raw asyncio server making exactly one ``socket.send`` of one pre-encoded frame per
  subscriber (:func:`serve_floor`): the least any Python server can do per delivery.

The subscribers are raw asyncio connections in several worker processes (``--worker``), each
from its own loopback source addresses (127.0.0.2, 127.0.0.3, ...; at most 2,000 connections per
address), so 20,000 connections never run out of ephemeral ports and stay under the feed's
per-address connection limit (:mod:`servers.limits`). A refused subscriber (429, or a WebSocket
not answered with 101) stops the run with the server's answer. Each worker notes when each of
its connections first saw the event's token; the time to the last subscriber is ``max(arrival) - (moment before the publish request)``.
``--repeats`` events are sent one after another (each waits until every subscriber has the last
one); the summary takes their median.

Writes ``fanout.csv`` (one row per event) and ``fanout_summary.csv`` (per server and kind, with
``vs_bare`` = bare's time / this server's time, i.e. throughput relative to the bare handler,
``vs_websockets`` and ``vs_floor`` likewise, ``cpu_vs_*``, the same ratios on the server's CPU
seconds per event, steadier on a busy machine, and ``rss_kb_per_connection``, the server's resident
memory per held connection) under ``benchmarks/results/`` (or ``--out``).

A process may hold at most RLIMIT_NOFILE descriptors (the hard limit here is what the machine
allows); the mixed scenario uses K per kind when 2K fit under it, else as many as fit.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from servers import lifeline  # noqa: E402
from servers.bounds import raise_open_file_limit  # noqa: E402
from servers.wire.http import Data, HttpParser, ProtocolError, Response, encode_request  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TOKEN = b"FANOUT-TOKEN-"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key; the server's answer is not checked
# Connections per loopback source address: below the feed's default per-address connection limit
# (servers.limits, 4,096), which is there to stop one client from holding thousands.
PER_ADDRESS = 2000


def announce(info: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------------------
# The two peers: a bare Tornado broadcast, and the websockets library.

def bare_app():
    """The smallest Tornado app that broadcasts one event to SSE and WebSocket subscribers, and
    answers held long polls (``GET /longpoll``: a future per request, cancelled when the client
    goes away, as in Tornado's ``demos/chat``)."""
    import tornado.web
    import tornado.websocket

    class SSE(tornado.web.RequestHandler):
        async def get(self):
            self.set_header("Content-Type", "text/event-stream")
            self.request.connection.stream.set_nodelay(True)
            self.gone = asyncio.get_running_loop().create_future()
            self.application.sse.add(self)
            await self.flush()
            await self.gone

        def on_connection_close(self):
            self.application.sse.discard(self)
            self.gone.done() or self.gone.set_result(None)

    class WS(tornado.websocket.WebSocketHandler):
        def open(self):
            self.set_nodelay(True)
            self.application.ws.add(self)

        def on_close(self):
            self.application.ws.discard(self)

    class LongPoll(tornado.web.RequestHandler):
        waiter = None

        async def get(self):
            self.waiter = asyncio.get_running_loop().create_future()
            self.application.waiters.add(self.waiter)
            try:
                data = await self.waiter
            except asyncio.CancelledError:
                return  # the client went away
            self.write(data)

        def on_connection_close(self):
            if self.waiter is not None:
                self.application.waiters.discard(self.waiter)
                self.waiter.cancel()

    class Publish(tornado.web.RequestHandler):
        def post(self):
            data = self.request.body.decode()
            chunk = f"data: {data}\n\n".encode()
            for handler in list(self.application.sse):
                handler.write(chunk)
                handler.flush()
            for handler in list(self.application.ws):
                try:
                    handler.write_message(data)
                except tornado.websocket.WebSocketClosedError:
                    pass
            waiters, self.application.waiters = self.application.waiters, set()
            for waiter in waiters:
                waiter.done() or waiter.set_result(data)
            self.set_status(201)

    app = tornado.web.Application([("/sse", SSE), ("/ws", WS), ("/longpoll", LongPoll), ("/publish", Publish)])
    app.sse, app.ws, app.waiters = set(), set(), set()
    return app


async def serve_bare() -> None:
    import tornado.netutil
    import tornado.httpserver

    server = tornado.httpserver.HTTPServer(bare_app())
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    await _announce_and_wait(sockets[0].getsockname()[1])


async def serve_websockets() -> None:
    """``websockets.asyncio.server.serve`` + ``broadcast``; ``GET /publish?<data>`` broadcasts."""
    import urllib.parse
    from http import HTTPStatus

    from websockets.asyncio.server import broadcast, serve

    clients: set = set()

    async def handler(connection):
        clients.add(connection)
        try:
            await connection.wait_closed()
        finally:
            clients.discard(connection)

    def process_request(connection, request):
        if request.path.startswith("/publish"):
            broadcast(clients, urllib.parse.unquote(request.path.partition("?")[2]))
            return connection.respond(HTTPStatus.CREATED, "ok\n")
        return None

    async with serve(handler, "127.0.0.1", 0, process_request=process_request, ping_interval=None,
                     compression=None) as server:
        await _announce_and_wait(server.sockets[0].getsockname()[1])


async def serve_floor() -> None:
    """The floor: a raw asyncio server that answers each handshake with fixed bytes and, on a
    publish, makes exactly one ``socket.send`` of one pre-encoded frame per subscriber. Nothing
    can fan out with less work per connection in Python; the gap to it is our overhead.

    ``GET /sse``: a 200 with ``Content-Type: text/event-stream`` and no chunking (the body runs to
    the close); ``GET /ws`` with an ``Upgrade``: a 101 with the RFC 6455 accept key;
    ``GET /longpoll``: held, nothing written, until a publish answers it (one whole response, then
    the close); ``GET /publish?<data>``: the event to every subscriber, then a 201.
    """
    import base64
    import hashlib
    import socket
    import urllib.parse

    from servers.wire.websocket import encode_frame

    subscribers: dict[str, list[socket.socket]] = {"sse": [], "ws": [], "longpoll": []}
    loop = asyncio.get_running_loop()

    async def handle(conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(conn, 65536)
            if not chunk:
                conn.close()
                return
            head += chunk
        line, *fields = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        path = line.split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        if path.startswith("/publish"):
            data = urllib.parse.unquote(path.partition("?")[2]).encode()
            frames = {"sse": b"data: " + data + b"\n\n", "ws": encode_frame(data, opcode=0x1),
                      "longpoll": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (
                          len(data), data)}
            for kind, socks in subscribers.items():
                frame = frames[kind]
                for sock in socks:
                    try:
                        sock.send(frame)  # the one system call per subscriber
                    except OSError:
                        pass
            for sock in subscribers["longpoll"]:  # a long poll gets one answer
                sock.close()
            subscribers["longpoll"].clear()
            await loop.sock_sendall(conn, b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            conn.close()
        elif headers.get("upgrade", "").lower() == "websocket":
            accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] +
                                                    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            await loop.sock_sendall(conn, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            subscribers["ws"].append(conn)
        elif path.startswith("/longpoll"):
            subscribers["longpoll"].append(conn)  # held: the request is read, nothing is written
        else:
            await loop.sock_sendall(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                          b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
            subscribers["sse"].append(conn)

    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    listener.setblocking(False)

    async def accept_forever() -> None:
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            asyncio.ensure_future(handle(conn))

    acceptor = asyncio.ensure_future(accept_forever())
    try:
        await _announce_and_wait(listener.getsockname()[1])
    finally:
        acceptor.cancel()


async def _announce_and_wait(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    announce({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()})
    await stop.wait()


# How each server is started, where its subscribers connect, and how an event is published.
SERVERS = {
    "ours": {"args": ["-m", "servers", "feed", "--port", "0", "--name", "fanout"],
             "paths": {"sse": "/feed/sse", "ws": "/feed/ws"},
             "publish": lambda url, token: _post(url + "/feed/publish", json.dumps({"data": token}).encode())},
    "bare": {"args": ["-m", "benchmarks.fanout", "--serve", "bare"],
             "paths": {"sse": "/sse", "ws": "/ws"},
             "publish": lambda url, token: _post(url + "/publish", token.encode())},
    "floor": {"args": ["-m", "benchmarks.fanout", "--serve", "floor"],
              "paths": {"sse": "/sse", "ws": "/ws"},
              "publish": lambda url, token: urllib.request.urlopen(url + "/publish?" + token, timeout=60).read()},
    "websockets": {"args": ["-m", "benchmarks.fanout", "--serve", "websockets"],
                   "paths": {"ws": "/"},
                   "publish": lambda url, token: urllib.request.urlopen(url + "/publish?" + token, timeout=60).read()},
}


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


# ------------------------------------------------------------------------------------------------
# A worker: many raw subscriber connections from one source address.

class Subscriber(asyncio.Protocol):
    """One SSE or WebSocket connection that only notes when each token first arrives."""

    def __init__(self, request: bytes, worker: "Worker") -> None:
        self.request, self.worker = request, worker
        self.open = False
        self.tail = b""
        self.seen: dict[int, float] = {}
        self.connected = asyncio.get_running_loop().create_future()
        self.http = HttpParser(response=True)

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.http.switched:
            body = data  # WebSocket frames: the token is in a frame's payload
        else:
            body = b""
            try:
                events = self.http.feed(data)
            except ProtocolError as exc:
                self.connected.done() or self.connected.set_exception(RuntimeError(f"not an HTTP answer: {exc}"))
                return
            for event in events:
                if isinstance(event, Response):
                    self.open = True
                    if event.status != (101 if self.worker.kind == "ws" else 200):
                        # refused (e.g. 429: too many connections from this address): say so, do not count it
                        self.connected.done() or self.connected.set_exception(
                            RuntimeError(f"{self.worker.kind} subscriber refused: {data[:300].decode(errors='replace')}"))
                        return
                    self.connected.done() or self.connected.set_result(None)
                elif isinstance(event, Data):
                    body += event.data  # SSE: the chunk framing removed
            if self.http.switched:
                body += self.http.rest()
        text = self.tail + body
        start = 0
        while (i := text.find(TOKEN, start)) >= 0:
            end = text.find(b"-", i + len(TOKEN))
            if end < 0:
                break
            number = int(text[i + len(TOKEN):end])
            if number not in self.seen:
                self.seen[number] = now
                self.worker.arrived(number)
            start = end
        self.tail = text[-64:]

    def connection_lost(self, exc) -> None:
        self.open = False
        self.connected.done() or self.connected.set_exception(ConnectionError("closed before the answer"))


class Worker:
    subscriber = Subscriber  # the protocol of each connection (benchmarks.idle has others)

    def __init__(self, url: str, kind: str, path: str, count: int, sources: str, parallel: int) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.kind, self.path, self.count, self.parallel = kind, path, count, parallel
        self.sources = sources.split(",")  # connection i comes from sources[i % len(sources)]
        self.subscribers: list[Subscriber] = []
        self.counts: dict[int, int] = {}
        self.events: dict[int, asyncio.Event] = {}

    def request(self) -> bytes:
        headers = {"Host": f"{self.host}:{self.port}"}
        if self.kind == "ws":
            headers.update({"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": WS_KEY,
                            "Sec-WebSocket-Version": "13"})
        else:
            headers["Accept"] = "text/event-stream"
        return encode_request("GET", self.path, headers)

    def arrived(self, number: int) -> None:
        self.counts[number] = self.counts.get(number, 0) + 1
        if self.counts[number] >= len(self.subscribers) and number in self.events:
            self.events[number].set()

    async def connect_all(self) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(self.parallel)
        request = self.request()

        async def one(i: int) -> None:
            source = self.sources[i % len(self.sources)]
            async with gate:
                for attempt in range(5):
                    try:
                        _, proto = await loop.create_connection(lambda: self.subscriber(request, self), self.host,
                                                                self.port, local_addr=(source, 0))
                        await asyncio.wait_for(proto.connected, 30)
                        self.subscribers.append(proto)
                        return
                    except (OSError, asyncio.TimeoutError):
                        await asyncio.sleep(0.1 * (attempt + 1))
                raise ConnectionError(f"could not connect to {self.host}:{self.port} from {source}")

        await asyncio.gather(*(one(i) for i in range(self.count)))

    async def report(self, number: int, timeout: float) -> dict[str, Any]:
        event = self.events.setdefault(number, asyncio.Event())
        if self.counts.get(number, 0) >= len(self.subscribers):
            event.set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        times = sorted(s.seen[number] for s in self.subscribers if number in s.seen)
        return {"number": number, "received": len(times), "subscribers": len(self.subscribers),
                "first": times[0] if times else None, "last": times[-1] if times else None,
                "median": times[len(times) // 2] if times else None}


async def stdin_lines():
    """The commands a :class:`Child` sends on stdin, one stripped line at a time, until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        yield line


async def run_worker(args: argparse.Namespace) -> None:
    raise_open_file_limit()
    worker = Worker(args.url, args.kind, args.path, args.count, args.sources, args.parallel)
    await worker.connect_all()
    announce({"ready": len(worker.subscribers)})
    async for line in stdin_lines():
        command, _, value = line.partition(" ")
        if command == "report":
            announce(await worker.report(int(value), args.timeout))
        elif command == "quit":
            break
    for subscriber in worker.subscribers:
        subscriber.transport.close()


# ------------------------------------------------------------------------------------------------
# The parent: start a server and the workers, publish, collect.

class Child:
    """A child process that prints JSON lines (its first one: readiness) and reads commands on stdin."""

    def __init__(self, args: list[str], timeout: float = 600) -> None:
        # lifeline.spawn: the child dies with this process, even if it is killed (servers.lifeline)
        self.process = lifeline.spawn([sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
                                      env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()
        self.info = self.read(timeout)

    def read(self, timeout: float = 600) -> dict[str, Any]:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            self.stop()
            raise RuntimeError(f"{' '.join(self.process.args[1:4])} gave no answer:\n{''.join(self.stderr[-20:])}")
        return json.loads(result[0])

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
            except (BrokenPipeError, OSError):
                pass
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def scenario(server: str, kinds: list[str], per_kind: int, workers: int, repeats: int,
             parallel: int, timeout: float, verbose: bool = True) -> list[dict[str, Any]]:
    """K subscribers of each kind in ``kinds`` on a fresh ``server``; ``repeats`` events to all."""
    import psutil

    spec = SERVERS[server]
    srv = Child(spec["args"])
    url = srv.info["url"]
    ps = psutil.Process(srv.info["pid"])
    children: list[Child] = []
    rss_idle = ps.memory_info().rss  # the server alone, before any subscriber
    try:
        source = 2
        for kind in kinds:
            for w in range(workers):
                count = per_kind // workers + (1 if w < per_kind % workers else 0)
                n_sources = -(-count // PER_ADDRESS)
                sources = ",".join(f"127.0.0.{source + i}" for i in range(n_sources))
                source += n_sources
                children.append(Child(["-m", "benchmarks.fanout", "--worker", "--url", url, "--kind", kind,
                                       "--path", spec["paths"][kind], "--count", str(count),
                                       "--sources", sources, "--parallel", str(parallel),
                                       "--timeout", str(timeout)]))
        connected = sum(c.info["ready"] for c in children)
        rss = ps.memory_info().rss
        rows = []
        for number in range(1, repeats + 1):
            token = f"{TOKEN.decode()}{number}-"
            cpu0 = sum(ps.cpu_times()[:2])
            t0 = time.time()
            spec["publish"](url, token)
            for child in children:
                child.send(f"report {number}")
            reports = [child.read(timeout + 60) for child in children]
            cpu = sum(ps.cpu_times()[:2]) - cpu0
            received = sum(r["received"] for r in reports)
            lasts = [r["last"] for r in reports if r["last"] is not None]
            last = max(lasts) if lasts else float("nan")
            rows.append({"server": server, "kind": "+".join(kinds), "subscribers": connected, "event": number,
                         "received": received, "time_to_last_ms": (last - t0) * 1000,
                         "deliveries_per_s": received / (last - t0) if lasts else float("nan"),
                         "server_cpu_s": cpu, "server_rss_mb": rss / 2**20,
                         "rss_kb_per_connection": (rss - rss_idle) / 1024 / max(connected, 1)})
            verbose and print(f"  {server:<10} {'+'.join(kinds):<6} {connected:>6} subscribers, event {number}: "
                  f"last after {rows[-1]['time_to_last_ms']:.0f} ms, {received}/{connected} received", flush=True)
        return rows
    finally:
        for child in children:
            child.stop()
        srv.stop()


def summarise(rows: list[dict[str, Any]]):
    import pandas as pd

    frame = pd.DataFrame(rows)
    summary = (frame.groupby(["server", "kind"], sort=False)
               .agg(subscribers=("subscribers", "max"), events=("event", "count"),
                    received_all=("received", lambda r: bool((r == frame.loc[r.index, "subscribers"]).all())),
                    time_to_last_ms=("time_to_last_ms", "median"), deliveries_per_s=("deliveries_per_s", "median"),
                    server_cpu_s=("server_cpu_s", "median"), server_rss_mb=("server_rss_mb", "max"),
                    rss_kb_per_connection=("rss_kb_per_connection", "max"))
               .reset_index())
    for peer in ("bare", "websockets", "floor"):
        times = summary[summary.server == peer].set_index("kind")["time_to_last_ms"]
        summary[f"vs_{peer}"] = [times.get(kind, float("nan")) / t for kind, t in
                                 zip(summary.kind, summary.time_to_last_ms)]
        # the same ratio on server CPU seconds per event: steadier than wall time on a busy machine
        cpu = summary[summary.server == peer].set_index("kind")["server_cpu_s"]
        summary[f"cpu_vs_{peer}"] = [cpu.get(kind, float("nan")) / c if c else float("nan")
                                     for kind, c in zip(summary.kind, summary.server_cpu_s)]
    return frame, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=None, help="K per kind (default 10000; 200 with --quick)")
    parser.add_argument("--quick", action="store_true", help="K = 200, 2 workers, 2 events: seconds")
    parser.add_argument("--workers", type=int, default=None, help="worker processes per kind (default 4)")
    parser.add_argument("--repeats", type=int, default=None, help="events per scenario (default 3)")
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    parser.add_argument("--out", type=Path, default=None, help="CSV (default benchmarks/results/fanout.csv)")
    # internal: a server or a worker process
    parser.add_argument("--serve", choices=["bare", "websockets", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=["sse", "ws"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sources", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--parallel", type=int, default=24, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lifeline.watch_parent()  # a server or worker started by Child: stop when the parent is gone
    if args.serve:
        raise_open_file_limit()
        asyncio.run({"bare": serve_bare, "websockets": serve_websockets, "floor": serve_floor}[args.serve]())
        return 0
    if args.worker:
        asyncio.run(run_worker(args))
        return 0

    limit = raise_open_file_limit()
    k = args.subscribers or (200 if args.quick else 10_000)
    workers = args.workers or (2 if args.quick else 4)
    repeats = args.repeats or (2 if args.quick else 3)
    timeout = 30.0 if args.quick else 120.0
    out = args.out or RESULTS / ("fanout_quick.csv" if args.quick else "fanout.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    mixed = min(k, (limit - 200) // 2)
    started = time.time()
    rows: list[dict[str, Any]] = []
    for server in args.servers:
        for kind in ("sse", "ws"):
            if kind in SERVERS[server]["paths"]:
                rows += scenario(server, [kind], k, workers, repeats, args.parallel, timeout)
        if len(SERVERS[server]["paths"]) == 2:
            rows += scenario(server, ["sse", "ws"], mixed, max(1, workers // 2), repeats, args.parallel, timeout)
    frame, summary = summarise(rows)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    for table in (frame, summary):
        table["run_at"], table["cpus"], table["nofile_limit"] = stamp, os.cpu_count(), limit
    frame.round(4).to_csv(out, index=False)
    summary.round(4).to_csv(out.with_name(out.stem + "_summary.csv"), index=False)
    print(f"\n{len(frame)} events in {time.time() - started:.0f} s -> {out}")
    print(summary.drop(columns=["run_at", "cpus", "nofile_limit"]).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
