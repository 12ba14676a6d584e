"""Memory per held connection: N idle connections of each technique, ours against its peer.

Usage (from the repository root)::

    python -m benchmarks.idle --quick                          # 50 per (server, technique): ~20 s
    python -m benchmarks.idle                                  # 2,000 each: about a minute
    python -m benchmarks.idle --connections 5000 --repeats 3   # the committed CSV: ~5 minutes
    python -m benchmarks.idle --where                          # where ours' bytes go (tracemalloc)

Each (server, technique) gets a fresh server process; the servers and the subscriber workers are
those of :mod:`benchmarks.fanout` (loopback source addresses, at most ``PER_ADDRESS`` each):

- SSE: ``ours``, ``bare`` (Tornado), ``floor`` (raw asyncio);
- WebSocket: ``ours``, ``bare``, ``websockets``, ``floor``;
- STOMP over WebSocket: ``ours`` (``/stomp``, subprotocol ``v12.stomp``), and ``websockets``
  holding a plain WebSocket: the least a STOMP-over-WebSocket connection can cost in Python;
- long poll: ``ours`` (``/feed/longpoll?timeout=300``), ``bare`` (a future per held request,
  as in Tornado's ``demos/chat``), ``floor`` (reads the request, holds the socket).

**Held** means the client saw what only a server that took the connection sends: SSE the 200
head, WebSocket the 101, STOMP ``CONNECTED`` and then the ``RECEIPT`` of a ``SUBSCRIBE`` that
asked for one (heart-beat ``0,0``: no timers, as the peer sends no pings). A held long poll gets
no answer, so its client sends a probe first (``GET /``, any answer) and the long poll pipelined
behind it on the same keep-alive connection, as a browser's next poll goes: the probe's answer
shows the server took the connection and reads its requests in turn. The floor reads one request
per connection, so it gets the long poll alone. For every technique the server side is checked
too: the server process must own one ESTABLISHED socket per connection on its port, each with an
empty receive queue (``/proc/<pid>/net/tcp``: every request was read); then it must settle (RSS
within 64 KiB and CPU under 10 % over 0.3 s). Warm-up connections (20) are held before the
"before" reading, so that one-time costs (lazy imports, first handler) are not counted. The figure
is (RSS after - RSS before) / N, and the same for USS (pages no other process shares; psutil's
``memory_full_info``). After the reading each worker reports how many connections are still open
and unanswered: ``held``, which must be N (``server_held``: the server's count).

A worker opens one connection at a time (:data:`PARALLEL`): with several handshakes in flight at
once, the server's transient high-water mark, and so its RSS afterwards, varies from run to run
(at 4 at once, bare Tornado's 5,000 WebSockets cost 13.6 or 14.9 KiB each, run to run; at 48,
the feed's SSE 16.0 or 16.6). One at a time, three fresh servers agree to 0.1 KiB.

Writes ``benchmarks/results/idle_memory.csv`` (``--quick``: ``idle_memory_quick.csv``; or
``--out``): per (server, technique) the median of ``--repeats`` fresh servers, ``rss_kb_min`` and
``rss_kb_max`` across them, and ``vs_peer`` = KiB per connection / the technique's peer's
(``bare`` for SSE and long poll, ``websockets`` for WebSocket and STOMP).

``--where`` (:mod:`benchmarks.idle_where`) holds 1,000 (or ``--connections``) of each technique on
the feed started with ``tracemalloc`` on, and lists what grew, per connection, by allocation site
and by type.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.fanout import (PER_ADDRESS, SERVERS, WS_KEY, Child, Subscriber, Worker, announce,  # noqa: E402
                               stdin_lines)
from servers import lifeline  # noqa: E402
from servers.bounds import raise_open_file_limit  # noqa: E402
from servers.wire.http import ProtocolError, Response, encode_request  # noqa: E402
from servers.wire.stomp import Frame, StompParser, encode_frame as stomp_frame  # noqa: E402
from servers.wire.websocket import encode_frame, parse_frame_header  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TECHNIQUES = ("sse", "ws", "stomp", "longpoll")
#: server -> technique -> (how the client connects, path)
CLIENTS: dict[str, dict[str, tuple[str, str]]] = {
    "ours": {"sse": ("sse", "/feed/sse"), "ws": ("ws", "/feed/ws"), "stomp": ("stomp", "/stomp"),
             "longpoll": ("longpoll", "/feed/longpoll?timeout=300")},
    "bare": {"sse": ("sse", "/sse"), "ws": ("ws", "/ws"), "longpoll": ("longpoll", "/longpoll")},
    "websockets": {"ws": ("ws", "/"), "stomp": ("ws", "/")},  # STOMP's peer: a plain WebSocket
    "floor": {"sse": ("sse", "/sse"), "ws": ("ws", "/ws"), "longpoll": ("longpoll-raw", "/longpoll")},
}
PEER = {"sse": "bare", "ws": "websockets", "stomp": "websockets", "longpoll": "bare"}
#: Connections a worker opens at once (see the module docstring: more at once, noisier RSS).
PARALLEL = 1


# ------------------------------------------------------------------------------------------------
# The clients (in worker processes): held once the server has shown it took the connection.

class StompHeld(Subscriber):
    """A STOMP session over WebSocket: held once CONNECTED came and a SUBSCRIBE's RECEIPT."""

    def __init__(self, request: bytes, worker: Worker) -> None:
        super().__init__(request, worker)
        self.frames = b""
        self.stomp = StompParser()

    def _refuse(self, why: str) -> None:
        self.connected.done() or self.connected.set_exception(RuntimeError(f"stomp subscriber refused: {why}"))

    def _send(self, command: str, headers: dict[str, str]) -> None:
        self.transport.write(encode_frame(stomp_frame(Frame(command, headers)), opcode=0x1, mask_key=os.urandom(4)))

    def data_received(self, data: bytes) -> None:
        if not self.http.switched:
            try:
                events = self.http.feed(data)
            except ProtocolError as exc:
                return self._refuse(f"not an HTTP answer: {exc}")
            if any(isinstance(e, Response) and e.status != 101 for e in events):
                return self._refuse(data[:300].decode(errors="replace"))
            if not self.http.switched:
                return
            data = self.http.rest()
            self._send("CONNECT", {"accept-version": "1.2", "host": self.worker.host, "heart-beat": "0,0"})
        self.frames += data
        while True:
            header, length = parse_frame_header(self.frames)
            if header is None or len(self.frames) < length + header.payload_len:
                return
            end = length + header.payload_len
            payload, self.frames = self.frames[length:end], self.frames[end:]
            for frame in self.stomp.feed(payload) if header.opcode in (0x1, 0x2) else ():
                if frame.command == "CONNECTED":
                    self._send("SUBSCRIBE", {"id": "0", "destination": "/topic/feed", "receipt": "held"})
                elif frame.command == "RECEIPT":
                    self.open = True
                    self.connected.done() or self.connected.set_result(None)
                else:
                    return self._refuse(f"{frame.command} {frame.headers} {frame.text[:200]}")


class LongPollHeld(Subscriber):
    """A long poll behind a probe: ``GET /`` and then, pipelined on the same connection, the long
    poll. The probe's answer (any status) shows that the server took the connection and reads its
    requests in turn; a second answer means the long poll was not held. ``longpoll-raw`` (the
    floor, which reads one request per connection) sends the long poll alone and relies on the
    parent's check of the server's sockets."""

    answers = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.worker.kind == "longpoll-raw":
            self.open = True
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.http.feed(data)
        except ProtocolError as exc:
            events = []
            self.connected.done() or self.connected.set_exception(RuntimeError(f"not an HTTP answer: {exc}"))
        for event in events:
            if isinstance(event, Response):
                self.answers += 1
                self.open = self.answers == 1 and self.worker.kind == "longpoll"  # a second answer: not held
                self.connected.done() or self.connected.set_result(None)


class IdleWorker(Worker):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.subscriber = {"stomp": StompHeld, "longpoll": LongPollHeld, "longpoll-raw": LongPollHeld}.get(
            self.kind, Subscriber)

    def request(self) -> bytes:
        host = {"Host": f"{self.host}:{self.port}"}
        if self.kind == "longpoll":
            return encode_request("GET", "/", host) + encode_request("GET", self.path, host)
        if self.kind == "longpoll-raw":
            return encode_request("GET", self.path, host)
        if self.kind == "stomp":
            return encode_request("GET", self.path, {
                "Host": f"{self.host}:{self.port}", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": WS_KEY, "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "v12.stomp"})
        return super().request()


async def run_worker(args: argparse.Namespace) -> None:
    """Hold ``--warm`` connections (from ``--warm-sources``) and say ``{"ready": n}``; then, on
    stdin, ``more``: hold ``--count`` more (from ``--sources``), ``{"ready": n}`` again; ``held``:
    ``{"warm": w, "held": h}``, how many of each are still open and unanswered; ``quit``."""
    raise_open_file_limit()
    worker = IdleWorker(args.url, args.kind, args.path, args.warm, args.warm_sources, args.parallel)
    await worker.connect_all()
    announce({"ready": len(worker.subscribers)})
    async for line in stdin_lines():
        if line == "more":
            worker.count, worker.sources = args.count, args.sources.split(",")
            await worker.connect_all()
            announce({"ready": len(worker.subscribers)})
        elif line == "held":
            announce({"warm": sum(1 for s in worker.subscribers[:args.warm] if s.open),
                      "held": sum(1 for s in worker.subscribers[args.warm:] if s.open)})
        elif line == "quit":
            break
    for subscriber in worker.subscribers:
        subscriber.transport.close()


# ------------------------------------------------------------------------------------------------
# The server's side: its sockets, and its memory once it has settled.

def server_sockets(pid: int, port: int) -> list[int]:
    """The receive-queue length of each ESTABLISHED TCP socket the process ``pid`` owns on ``port``."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    queues = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            # sl local_address rem_address st tx_queue:rx_queue tr:when retrnsmt uid timeout inode
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                queues.append(int(fields[4].split(":")[1], 16))
    return queues


def wait_held(pid: int, port: int, expected: int, timeout: float = 120.0) -> int:
    """Wait until the server owns ``expected`` ESTABLISHED sockets on ``port``, every request read."""
    deadline = time.monotonic() + timeout
    while True:
        queues = server_sockets(pid, port)
        if len(queues) >= expected and not any(queues):
            return len(queues)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server holds {len(queues)} connections of {expected}, "
                               f"{sum(1 for q in queues if q)} with unread bytes")
        time.sleep(0.05)


def settled_memory(ps, timeout: float = 20.0) -> dict[str, float]:
    """RSS and USS (bytes) once RSS has moved by at most 64 KiB and CPU stayed under 10 % for 0.3 s
    (``settled``: whether it did within ``timeout``)."""
    started = time.monotonic()
    samples: list[tuple[int, float]] = []
    settled = False
    while not settled and time.monotonic() - started < timeout:
        if samples:
            time.sleep(0.1)
        samples = (samples + [(ps.memory_info().rss, sum(ps.cpu_times()[:2]))])[-4:]
        rss = [s[0] for s in samples]
        settled = len(samples) == 4 and max(rss) - min(rss) <= 64 * 1024 and samples[-1][1] - samples[0][1] <= 0.03
    return {"rss": ps.memory_info().rss, "uss": ps.memory_full_info().uss, "settled": settled,
            "settle_s": time.monotonic() - started}


# ------------------------------------------------------------------------------------------------
# One (server, technique): a fresh server, warm-up connections, then N more.

def start_workers(url: str, kind: str, path: str, warm: int, count: int, workers: int,
                  parallel: int) -> list[Child]:
    """Worker processes, started side by side; the first holds ``warm`` connections when it is
    back, and all of them ``count`` in all after ``more``. Each address serves at most PER_ADDRESS."""
    from concurrent.futures import ThreadPoolExecutor

    commands, source = [], 3  # 127.0.0.2: the warm-up connections
    for w in range(workers):
        share = count // workers + (1 if w < count % workers else 0)
        n_sources = max(1, -(-share // PER_ADDRESS))
        sources = ",".join(f"127.0.0.{source + i}" for i in range(n_sources))
        source += n_sources
        commands.append(["-m", "benchmarks.idle", "--worker", "--url", url, "--kind", kind, "--path", path,
                         "--warm", str(warm if w == 0 else 0), "--warm-sources", "127.0.0.2",
                         "--count", str(share), "--sources", sources, "--parallel", str(parallel)])
    with ThreadPoolExecutor(len(commands)) as pool:
        futures = [pool.submit(Child, command) for command in commands]
    children = [f.result() for f in futures if f.exception() is None]
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        for child in children:
            child.stop()
        raise failed[0]
    return children


def ask(children: list[Child], command: str, timeout: float = 600) -> list[dict[str, Any]]:
    for child in children:
        child.send(command)
    return [child.read(timeout) for child in children]


def measure(server: str, technique: str, connections: int, warm: int = 20, workers: int = 1,
            parallel: int = PARALLEL, verbose: bool = True) -> dict[str, Any]:
    import psutil

    kind, path = CLIENTS[server][technique]
    srv = Child(SERVERS[server]["args"])
    url = srv.info["url"]
    port = int(url.rsplit(":", 1)[1])
    ps = psutil.Process(srv.info["pid"])
    children: list[Child] = []
    try:
        children = start_workers(url, kind, path, warm, connections, workers, parallel)
        wait_held(ps.pid, port, warm)
        before = settled_memory(ps)
        started = time.monotonic()
        ask(children, "more")
        server_held = wait_held(ps.pid, port, warm + connections) - warm
        connect_s = time.monotonic() - started
        after = settled_memory(ps)
        status = ask(children, "held", 60)  # still open and unanswered, after the reading
        still = sum(s["held"] for s in status)
        if sum(s["warm"] for s in status) != warm:
            raise RuntimeError(f"{server} {technique}: a warm-up connection was closed or answered")
    finally:
        for child in children:
            child.stop()
        srv.stop()
    row = {"server": server, "technique": technique, "connections": connections, "held": still,
           "server_held": server_held,
           "rss_kb_per_connection": (after["rss"] - before["rss"]) / 1024 / connections,
           "uss_kb_per_connection": (after["uss"] - before["uss"]) / 1024 / connections,
           "server_rss_mb_before": before["rss"] / 2**20, "server_rss_mb_after": after["rss"] / 2**20,
           "server_uss_mb_before": before["uss"] / 2**20, "server_uss_mb_after": after["uss"] / 2**20,
           "warm_connections": warm, "connect_s": connect_s, "settle_s": after["settle_s"],
           "settled": before["settled"] and after["settled"]}
    if verbose:
        print(f"  {server:<10} {technique:<8} {still:>6}/{connections} held: "
              f"{row['rss_kb_per_connection']:6.2f} KiB RSS, {row['uss_kb_per_connection']:6.2f} KiB USS "
              f"per connection ({connect_s:.1f} s to connect)", flush=True)
    return row


def pairs(servers: list[str], techniques: list[str]) -> list[tuple[str, str]]:
    return [(server, technique) for technique in techniques for server in servers
            if technique in CLIENTS[server]]


COLUMNS = ["server", "technique", "connections", "held", "server_held", "rss_kb_per_connection",
           "uss_kb_per_connection", "peer", "vs_peer", "rss_kb_min", "rss_kb_max", "repeats",
           "server_rss_mb_before", "server_rss_mb_after", "server_uss_mb_before", "server_uss_mb_after",
           "warm_connections", "connect_s", "settle_s", "settled"]


def table(rows: list[dict[str, Any]]):
    """One row per (server, technique): the median of its runs (``held``: the fewest), and
    ``vs_peer``, its KiB per connection / its technique's peer's."""
    import pandas as pd

    runs = pd.DataFrame(rows).groupby(["server", "technique"], sort=False)
    frame = runs.median(numeric_only=True).reset_index()
    frame["settled"] = runs.settled.all().values
    for column in ("held", "server_held"):
        frame[column] = runs[column].min().values
    frame["rss_kb_min"] = runs.rss_kb_per_connection.min().values
    frame["rss_kb_max"] = runs.rss_kb_per_connection.max().values
    frame["repeats"] = runs.size().values
    frame["peer"] = [PEER[t] for t in frame.technique]
    peer_kb = {t: kb for s, t, kb in zip(frame.server, frame.technique, frame.rss_kb_per_connection) if s == PEER[t]}
    frame["vs_peer"] = [kb / peer_kb.get(t, float("nan")) for t, kb in zip(frame.technique,
                                                                            frame.rss_kb_per_connection)]
    for column in ("connections", "held", "server_held", "warm_connections"):
        frame[column] = frame[column].astype(int)
    return frame[COLUMNS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idle", description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=None,
                        help="held connections per (server, technique) (default 2000; 50 with --quick; "
                             "1000 with --where)")
    parser.add_argument("--quick", action="store_true", help="50 connections each: seconds (the test runs it)")
    parser.add_argument("--servers", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    parser.add_argument("--techniques", nargs="+", choices=TECHNIQUES, default=list(TECHNIQUES))
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh servers per (server, technique); the CSV has the median (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes holding the connections")
    parser.add_argument("--out", type=Path, default=None, help="CSV (default benchmarks/results/idle_memory.csv)")
    parser.add_argument("--where", action="store_true", help="where ours' memory per connection goes (tracemalloc)")
    # internal: a worker process, or the traced feed
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=["sse", "ws", "stomp", "longpoll", "longpoll-raw"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sources", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--warm", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warm-sources", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--parallel", type=int, default=PARALLEL,
                        help=f"connections each worker opens at once (default {PARALLEL})")
    args = parser.parse_args(argv)
    lifeline.watch_parent()  # a worker started by Child: stop when the parent is gone
    if args.worker:
        asyncio.run(run_worker(args))
        return 0
    if args.serve_traced or args.where:
        from benchmarks import idle_where

        return idle_where.serve_traced() if args.serve_traced else \
            idle_where.main(args.connections or 1000, args.techniques)

    limit = raise_open_file_limit()
    n = args.connections or (50 if args.quick else 2000)
    out = args.out or RESULTS / ("idle_memory_quick.csv" if args.quick else "idle_memory.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = [measure(server, technique, n, warm=10 if args.quick else 20, workers=args.workers,
                    parallel=args.parallel)
            for _ in range(args.repeats) for server, technique in pairs(args.servers, args.techniques)]
    frame = table(rows)
    frame["run_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    frame["cpus"], frame["nofile_limit"] = os.cpu_count(), limit
    frame.round(3).to_csv(out, index=False)
    print(f"\n{len(frame)} (server, technique) in {time.time() - started:.0f} s -> {out}")
    print(frame[COLUMNS[:11]].round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
