"""Guessing a live ticket for real: a deliberately weak ticket server and a fast guessing client.

The expected guessing time of :mod:`~lab.lessons.security.entropy` is arithmetic; this makes it
an experiment. :class:`WeakTicketApp` (lesson 10 only) issues 6-digit ids and answers 200 or 404
per id, the oracle an attacker needs; :func:`guess_live_ticket` guesses ids in random order over
several keep-alive connections with HTTP/1.1 pipelining, as a scripted attacker would, and
reports how many guesses and seconds it took.
"""
from __future__ import annotations

import asyncio
import json
import math
import random
import secrets
import time
import urllib.parse
from typing import Any

from servers import runtime
from servers.runtime import ServerApp, ServerHandle, cancel_and_wait, serve
from servers.web import ApiError, BaseHandler
from servers.wire.http import Data, HttpParser, Response, encode_request


class _WeakTicketHandler(BaseHandler):
    async def get(self, ticket_id: str) -> None:
        app: WeakTicketApp = self.application  # type: ignore[assignment]
        app.lookups += 1
        owner = app.tickets.get(ticket_id)
        if owner is None:
            raise ApiError(404, "unknown_ticket", f"No ticket {ticket_id!r}.")
        self.write_json({"ticket": ticket_id, "owner": owner, "state": "pending"})


class _WeakCreateHandler(BaseHandler):
    async def post(self) -> None:
        app: WeakTicketApp = self.application  # type: ignore[assignment]
        ticket = app.make_id()
        app.tickets[ticket] = self.get_argument("owner", f"user{len(app.tickets)}")
        self.write_json({"ticket": ticket}, status=201)


class WeakTicketApp(ServerApp):
    """A deliberately weak ticket server (lesson 10 only): ids are ``digits`` decimal digits.

    ``POST /tickets`` issues one; ``GET /tickets/{id}`` answers 200 for a live ticket, 404 else -
    exactly the oracle an attacker needs. ``tickets`` (id → owner) and ``lookups`` live here.
    """

    def __init__(self, name: str = "weak-tickets", digits: int = 6) -> None:
        super().__init__([(r"/tickets", _WeakCreateHandler), (r"/tickets/([0-9]{1,12})", _WeakTicketHandler)], name=name)
        self.digits = digits
        self.tickets: dict[str, str] = {}
        self.lookups = 0

    def make_id(self) -> str:
        while True:
            ticket = f"{secrets.randbelow(10 ** self.digits):0{self.digits}d}"
            if ticket not in self.tickets:
                return ticket


def start_weak_ticket_server(live: int = 100, digits: int = 6, name: str = "weak-tickets") -> ServerHandle:
    """Start a :class:`WeakTicketApp` holding ``live`` pending tickets of other users."""
    handle = serve(WeakTicketApp(name, digits))

    def fill(app: WeakTicketApp) -> None:
        for n in range(live):
            app.tickets[app.make_id()] = f"user{n}"

    handle.call(fill)
    return handle


async def _guess_on_one_connection(host: str, port: int, guesses: list[str], found: asyncio.Future,
                                   tried: list[int], pipeline: int = 16) -> None:
    """Send guesses on one keep-alive connection, ``pipeline`` requests per write (HTTP/1.1
    pipelining: the server answers them in order), as a scripted attacker would."""
    reader, writer = await asyncio.open_connection(host, port)
    parser = HttpParser(response=True)  # answers arrive in order, as many per read as the server sent
    head, body = None, bytearray()
    try:
        for start in range(0, len(guesses), pipeline):
            if found.done():
                return
            batch = guesses[start:start + pipeline]
            writer.write(b"".join(encode_request("GET", f"/tickets/{g}", {"Host": f"{host}:{port}"}) for g in batch))
            answered = 0
            while answered < len(batch):
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError(f"the server closed the connection after {answered} of {len(batch)} answers")
                for event in parser.feed(data):
                    if isinstance(event, Response):
                        head, body = event, bytearray()
                    elif isinstance(event, Data):
                        body += event.data
                    else:  # the end of the answer to batch[answered]
                        tried[0] += 1
                        if head.status == 200 and not found.done():
                            found.set_result((batch[answered], json.loads(body)))
                        answered += 1
    finally:
        writer.close()


async def guess_live_ticket_async(url: str, digits: int = 6, max_guesses: int = 200_000, connections: int = 8,
                                  seed: int | None = None) -> dict[str, Any]:
    """Guess ids of a :class:`WeakTicketApp` in random order, without repeats, until one is live."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    rng = random.Random(seed)
    space = 10 ** digits
    order = [f"{n:0{digits}d}" for n in rng.sample(range(space), min(max_guesses, space))]
    found: asyncio.Future = asyncio.get_running_loop().create_future()
    tried = [0]
    share = [order[i::connections] for i in range(connections)]
    started = time.perf_counter()
    workers = [asyncio.ensure_future(_guess_on_one_connection(host, port, part, found, tried)) for part in share]
    waiter = asyncio.ensure_future(asyncio.wait(workers))
    await asyncio.wait([found, waiter], return_when=asyncio.FIRST_COMPLETED)
    seconds = time.perf_counter() - started
    await cancel_and_wait(workers)
    ticket, answer = found.result() if found.done() else (None, None)
    return {"digits": digits, "bits": round(digits * math.log2(10), 1), "found": ticket, "owner": (answer or {}).get("owner"),
            "guesses": tried[0], "seconds": round(seconds, 3), "guesses_per_s": round(tried[0] / seconds, 1)}


def guess_live_ticket(url: Any, digits: int = 6, max_guesses: int = 200_000, connections: int = 8,
                      seed: int | None = None, timeout: float = 90) -> dict[str, Any]:
    """:func:`guess_live_ticket_async`, blocking (for a cell): guesses, seconds, rate, the ticket found."""
    return runtime.run(guess_live_ticket_async(getattr(url, "url", url), digits, max_guesses, connections, seed),
                       timeout=timeout)
