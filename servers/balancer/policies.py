"""The routing policies, as pure code: given a request and the backends, which backend?

Both balancers share these definitions: our Tornado balancer calls them for every request, and
the nginx driver turns each into the nginx directive that does the same job. Kept free of I/O so
the tests (and a learner) can check each policy's promise directly:

* ``round_robin``: backends in turn; every backend gets every N-th request.
* ``random``: a backend at random (seedable). Kept beside round robin because it is what heavy, mixed
  traffic makes of round robin from one user's point of view. A single simulated user's login is a
  fixed sequence of requests, so under strict ``round_robin`` whether its confirm meets its stream
  is decided by the request count, the same for every login (all fail, or all succeed), whereas
  real traffic interleaves other users' requests. ``random`` gives the 1/N of the theory directly.
* ``least_conn``: the backend holding the fewest open proxied connections (ties: in turn).
* ``ip_hash``: a hash of the client's whole IP address, so one client always lands on one backend.
  (nginx's own ``ip_hash`` directive hashes only the first three octets of an IPv4 address, which
  would put 127.0.0.2 and 127.0.0.3, our simulated browser and phone, on the same backend by
  accident; both balancers therefore hash the full address.)
* ``cookie``: sticky by a cookie that names the backend; the first response sets it.
* ``ticket_hash``: consistent hashing (a ring with virtual nodes) on the QR ticket id found in the
  path (``/api/tickets/{id}/...``, ``/m/{id}``, ``/qr/{id}.png``) or the ``ticket`` query
  argument. The browser's push connection and the phone's confirm carry the same id, so they meet
  on the same server: the first fix of lesson 08. Requests without a ticket go round robin.

IP and cookie stickiness pin each *client*; the phone is another client, so they cannot bring the
phone's confirm to the browser's server. Only a key both requests share (the ticket) can.
"""
from __future__ import annotations

import bisect
import hashlib
import random as _random
import re
from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping, Sequence
from urllib.parse import parse_qs

__all__ = ["POLICIES", "STICKY_COOKIE", "RouteRequest", "HashRing", "ticket_from", "route_of",
           "round_robin", "least_conn", "ip_hash", "cookie", "ticket_hash", "Router"]

POLICIES = ("round_robin", "least_conn", "ip_hash", "cookie", "ticket_hash", "random")
STICKY_COOKIE = "spl_backend"  # the cookie policy's cookie: its value is the backend's name

# The same pattern as the nginx map in servers/balancer/nginx.py: ~^/(api/tickets|m|qr)/(?<t>[^/.]+)
TICKET_PATH = re.compile(r"^/(?:api/tickets|m|qr)/(?P<t>[^/.?]+)")
# The browsers' push routes: with ``push_backends`` (the gateway fix) they go to the push tier.
PUSH_PATH = r"^/api/tickets/[^/]+/(events|ws|longpoll)$"


def is_push_route(path: str) -> bool:
    """Is ``path`` one of the QR app's push routes (SSE, WebSocket, long poll)?"""
    return re.match(PUSH_PATH, path) is not None


def ticket_from(path: str, query: str = "") -> str | None:
    """The ticket id a request is about: from the path, else the ``ticket`` query argument."""
    found = TICKET_PATH.match(path)
    if found:
        return found.group("t")
    values = parse_qs(query).get("ticket")
    return values[0] if values and values[0] else None


def route_of(path: str) -> str:
    """The route pattern of a path, the ticket id replaced by ``{id}`` (for grouping a log)."""
    found = TICKET_PATH.match(path)
    if not found:
        return path
    return path[: found.start("t")] + "{id}" + path[found.end("t"):]


@dataclass(frozen=True)
class RouteRequest:
    """What a policy may look at: the client's address, the path and query, the cookies."""

    client: str
    path: str = "/"
    query: str = ""
    method: str = "GET"
    cookies: Mapping[str, str] = field(default_factory=dict)

    @property
    def ticket(self) -> str | None:
        return ticket_from(self.path, self.query)


def _hash64(key: str) -> int:
    """A stable 64-bit hash (Python's ``hash()`` changes per process; routing must not)."""
    return int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:8], "big")


class HashRing:
    """Consistent hashing: each backend owns ``vnodes`` points on a ring; a key goes clockwise.

    Adding or removing one of N backends moves only about 1/N of the keys (those whose nearest
    point belonged to it), where ``hash(key) % N`` would move about (N-1)/N of them.
    """

    def __init__(self, names: Iterable[str], vnodes: int = 160) -> None:
        self.vnodes = vnodes
        self.names = list(names)
        points = sorted((_hash64(f"{name}#{i}"), name) for name in self.names for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._owners = [name for _, name in points]

    def lookup(self, key: str, live: Collection[str] | None = None) -> str:
        """The owner of ``key``; with ``live``, the first owner clockwise that is in it (a server
        skipped by the health check hands its keys to the next point on the ring, as nginx's
        ``hash ... consistent`` does; the other keys stay where they were)."""
        if not self._hashes:
            raise LookupError("the hash ring is empty: no backends")
        index = bisect.bisect(self._hashes, _hash64(key)) % len(self._hashes)
        if live is None:
            return self._owners[index]
        for step in range(len(self._owners)):
            owner = self._owners[(index + step) % len(self._owners)]
            if owner in live:
                return owner
        raise LookupError("no live backend on the hash ring")


# ---- the policies as pure functions ------------------------------------------------------------

def round_robin(counter: int, names: Sequence[str]) -> str:
    """The backend for the ``counter``-th request (0-based)."""
    return names[counter % len(names)]


def least_conn(open_connections: Mapping[str, int], names: Sequence[str], counter: int = 0) -> str:
    """The backend with the fewest open connections; ties broken in turn by ``counter``."""
    fewest = min(open_connections.get(name, 0) for name in names)
    tied = [name for name in names if open_connections.get(name, 0) == fewest]
    return tied[counter % len(tied)]


def ip_hash(client: str, names: Sequence[str]) -> str:
    """The same client address always gets the same backend (while the backends stay the same)."""
    return names[_hash64(client) % len(names)]


def cookie(cookies: Mapping[str, str], names: Sequence[str], counter: int = 0) -> tuple[str, bool]:
    """``(backend, set_cookie)``: the backend the sticky cookie names, else one in turn plus
    ``set_cookie=True`` (the response must set the cookie)."""
    named = cookies.get(STICKY_COOKIE)
    if named in names:
        return named, False
    return round_robin(counter, names), True


def ticket_hash(ticket: str | None, ring: HashRing, names: Sequence[str], counter: int = 0) -> str:
    """The ring's owner of the ticket id among ``names``; a request with no ticket goes round robin."""
    if ticket is None:
        return round_robin(counter, names)
    return ring.lookup(ticket, names if len(names) < len(ring.names) else None)


class Router:
    """A policy with the little state it needs (a counter, the ring, open connections).

    ``choose(request)`` returns ``(backend_name, set_sticky_cookie)``. Not thread-safe: it lives on
    the server loop with the balancer that owns it.
    """

    def __init__(self, policy: str, names: Sequence[str], vnodes: int = 160, seed: int | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.policy = policy
        self.vnodes = vnodes
        self.counter = 0
        self.rng = _random.Random(seed)
        self.open_connections: dict[str, int] = {}
        self.set_backends(names)

    def set_backends(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.ring = HashRing(self.names, self.vnodes)
        for name in self.names:
            self.open_connections.setdefault(name, 0)

    def choose(self, request: RouteRequest, live: Sequence[str] | None = None) -> tuple[str, bool]:
        """``live``: the backends the health check has not put out (default: all of them)."""
        names = self.names if live is None else [name for name in self.names if name in live]
        if not names:
            raise LookupError("the balancer has no backends" if not self.names else "no live backends")
        counter, self.counter = self.counter, self.counter + 1
        if self.policy == "round_robin":
            return round_robin(counter, names), False
        if self.policy == "least_conn":
            return least_conn(self.open_connections, names, counter), False
        if self.policy == "ip_hash":
            return ip_hash(request.client, names), False
        if self.policy == "cookie":
            return cookie(request.cookies, names, counter)
        if self.policy == "random":
            return self.rng.choice(names), False
        return ticket_hash(request.ticket, self.ring, names, counter), False

    def opened(self, name: str) -> None:
        self.open_connections[name] = self.open_connections.get(name, 0) + 1

    def closed(self, name: str) -> None:
        self.open_connections[name] = max(0, self.open_connections.get(name, 0) - 1)
