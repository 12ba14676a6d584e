"""Per-client limits shared by the feed server and the QR-login app, with clear refusals.

Why: a push server holds connections open, so one client that opens thousands of them, or that
sends messages as fast as its loop spins, takes memory and CPU from everyone else (OWASP
WebSocket Security Cheat Sheet: "rate limits", "connection limits"). Four limits, each a
setting of the application (``start_feed(max_connections_per_address=4)``, same for
``start_qrlogin``), each refused in a way a client can read:

===========================  ==================================================================
limit (settings)             refusal
===========================  ==================================================================
held connections per client  HTTP (SSE, long poll): ``429 {"error": "too_many_connections"}``
address                      with ``Retry-After``. WebSocket: the handshake is accepted, then
(``max_connections_per_``    closed at once with **1013 Try Again Later** and a reason.
``address``)
messages per WebSocket /     token bucket per connection; over it: close **1008 Policy
STOMP connection             Violation** with a reason (STOMP: an ERROR frame first, then the
(``ws_message_rate``,        close).
``ws_message_burst``)
API calls per client         token bucket per address on the routes that change state
address (``api_rate``,       (``POST /feed/publish``, the QR-login ``POST /api/...`` routes, the
``api_burst``)               phone's password login among them): ``429 {"error": "rate_limited"}``
                             with ``Retry-After`` (whole seconds, RFC 9110 §10.2.3).
live QR-login tickets per    counted in Redis for the whole cluster, a ticket counting until it
client address (``max_``     expires: ``429 {"error": "too_many_tickets"}`` with ``Retry-After``
``tickets_per_address``)     (when its oldest ticket expires). Each ticket is kept in the shared
                             store for minutes, so a rate alone would let one client fill it.
budgets per client address   counted in Redis for the whole cluster (:class:`SharedBudgets`), a
per window (``login_``       fixed window of ``shared_window_s``: password attempts, tickets
``attempts_per_window``,     created, and lookups of ticket ids that do not exist (a guesser's
``ticket_creations_per_``    misses). Over one: ``429`` ``too_many_login_attempts`` /
``window``, ``unknown_``     ``too_many_ticket_creations`` / ``too_many_unknown_tickets`` with
``tickets_per_window``)      ``Retry-After`` (when the window ends). Off (None) by default.
===========================  ==================================================================

Why some budgets live in Redis: the token buckets above live in each process, so behind a
balancer with N servers a client gets N times the budget (round robin hands each server 1/N of
its calls). That is harmless for a flood (each server protects itself), but not for a budget
that protects a *secret* - a password, a ticket id - where what matters is how many guesses
the whole site answers. Those budgets are one counter per address in the shared Redis,
incremented by one atomic Lua script (``INCR``, and ``PEXPIRE`` on the first hit of a window),
so every server of the cluster counts against the same number.

Why this is one module: the per-process limits and the cluster-wide budgets share the settings,
the client-address rule and the refusal, and a reader comparing the two kinds of counter (a
bucket in memory, a window in Redis) should have both in view.

What every server refuses before any handler runs (body size, slow clients, connections per
server, descriptor exhaustion) is in :mod:`servers.bounds`.

Why 1013 for too many connections and 1008 for too many messages: RFC 6455 §7.4.1 defines 1008
for "a message that violates its policy" - a client flooding messages has done that. A client
that opens one connection too many has done nothing wrong with *this* connection, and the
condition is temporary (a slot frees when another of its connections closes): that is 1013
"Try Again Later" from the IANA WebSocket close code registry (RFC 6455 §11.7), which tells a
client to reconnect later with back-off. The WebSocket is accepted and then closed rather than
refused with an HTTP 429 because a browser reports a refused handshake only as 1006 with no
reason; a close code and reason reach the page's ``onclose``.

Why reads are not rate limited: short polling *is* a stream of reads whose rate is the lesson's
parameter; connection limits bound the held reads (SSE, long polls), and everything is bounded
by the body and message size limits (``servers.bounds``, ``websocket_max_message_size``).

Which address: the TCP peer's, unless that peer is one of ``trusted_proxies`` (addresses or
networks, e.g. ``("127.0.0.1", "10.0.0.0/8")``): then the last ``X-Forwarded-For`` entry, the one
our balancer (or nginx's ``$proxy_add_x_forwarded_for``) appended. Earlier entries were written
by the client and can say anything, so they are never used, and without ``trusted_proxies`` the
header is ignored altogether (a client could otherwise pick a fresh address per request and
escape every limit). The cost of the default: behind a balancer that is not configured as
trusted, every client shares the balancer's address, which is why the defaults are generous.
The QR-login app records the same address (:func:`client_address`) with each ticket, and the
phone's confirm page shows it; ``start_cluster`` makes its balancer a trusted proxy of its servers,
so that page shows the browser, not the balancer.

The defaults (:data:`DEFAULT_LIMITS`) never refuse what the lessons and benchmarks do from one
machine (1,000 subscribers plus 500 idle connections, 1,000 events/s published, 1,000
concurrent QR logins); :data:`HARDENED_LIMITS` are values for a server on a network, which
lesson 10 shows refusing. State lives on the application (``app.limits``, made on first use),
never in module globals, so servers side by side keep separate counts.
"""
from __future__ import annotations

import collections
import functools
import ipaddress
import json
import math
import time
from typing import Any, Callable, Iterable

__all__ = ["DEFAULT_LIMITS", "HARDENED_LIMITS", "CLOSE_TRY_AGAIN_LATER", "CLOSE_POLICY_VIOLATION", "TokenBucket",
           "Limits", "SharedBudgets", "client_address", "from_trusted_proxy", "trusted_proxy_list", "ConnectionSlot", "limits_for", "holds_connection",
           "rate_limited", "refuse", "LimitedWebSocketMixin"]

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013

#: Settings and their defaults: generous enough for every lesson and benchmark on one machine.
DEFAULT_LIMITS: dict[str, Any] = {
    "max_connections_per_address": 4096,  # held SSE streams + long polls + WebSockets, per address
    "ws_message_rate": 1000.0,            # messages/s a WebSocket or STOMP connection may send, sustained
    "ws_message_burst": 5000,             # ... and at once
    "api_rate": 5000.0,                   # state-changing API calls/s per address, sustained
    "api_burst": 20000,                   # ... and at once
    "max_tickets_per_address": 10000,     # live QR-login tickets one address may hold (cluster-wide, in Redis)
    "trusted_proxies": (),                # peers whose X-Forwarded-For (last entry) is believed
    "limit_table_size": 10000,            # addresses remembered for rate limits (oldest forgotten)
    # Cluster-wide budgets per address per window, counted in Redis (SharedBudgets); None: no budget.
    "shared_window_s": 60.0,              # the window of the budgets below (s)
    "login_attempts_per_window": None,    # phone password logins tried (password guessing)
    "ticket_creations_per_window": None,  # POST /api/tickets
    "unknown_tickets_per_window": None,   # lookups of ticket ids that do not exist (id guessing)
}

#: Values for a server facing a real network (lesson 10 shows them refusing).
HARDENED_LIMITS: dict[str, Any] = {
    "max_connections_per_address": 16,
    "ws_message_rate": 20.0,
    "ws_message_burst": 40,
    "api_rate": 5.0,
    "api_burst": 20,
    "max_tickets_per_address": 20,
    "login_attempts_per_window": 10,      # per address per minute, for the whole cluster
    "ticket_creations_per_window": 30,
    "unknown_tickets_per_window": 30,
}


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; each message or call takes one.

    A client may send ``burst`` at once, then ``rate`` per second for ever. ``clock`` is
    injectable so that tests can step time instead of sleeping.
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, n: float = 1) -> bool:
        """Take ``n`` tokens if there are that many; False (and nothing taken) otherwise."""
        self._refill()
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def retry_after(self, n: float = 1) -> float:
        """Seconds until ``n`` tokens are there (0 if they are now)."""
        self._refill()
        return max(0.0, (n - self.tokens) / self.rate)

    @property
    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


class ConnectionSlot:
    """One held connection counted against its address; ``release()`` is idempotent."""

    def __init__(self, limits: "Limits", address: str, kind: str) -> None:
        self.limits, self.address, self.kind = limits, address, kind
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limits._release(self.address)


class Limits:
    """The limits of one application: counts of held connections and API buckets, per address."""

    def __init__(self, settings: dict[str, Any] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        merged = {**DEFAULT_LIMITS, **{k: v for k, v in (settings or {}).items() if k in DEFAULT_LIMITS}}
        self.max_connections = int(merged["max_connections_per_address"])
        self.message_rate = float(merged["ws_message_rate"])
        self.message_burst = float(merged["ws_message_burst"])
        self.api_rate = float(merged["api_rate"])
        self.api_burst = float(merged["api_burst"])
        self.max_tickets = int(merged["max_tickets_per_address"])
        self.table_size = int(merged["limit_table_size"])
        self.trusted = _networks(merged["trusted_proxies"])
        self.clock = clock
        self.connections: collections.Counter[str] = collections.Counter()
        self.buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self.refused: collections.Counter[str] = collections.Counter()  # what was refused, for lessons/tests

    # -- who is asking -----------------------------------------------------------------------
    def client_address(self, request: Any) -> str:
        """The peer address, or the last ``X-Forwarded-For`` hop when the peer is a trusted proxy."""
        return client_address(request, self.trusted)

    # -- held connections --------------------------------------------------------------------
    def acquire(self, request: Any, kind: str) -> ConnectionSlot | None:
        """A slot for one more held connection from this request's address, or None (refuse it)."""
        address = self.client_address(request)
        if self.connections[address] >= self.max_connections:
            self.refused["too_many_connections"] += 1
            return None
        self.connections[address] += 1
        return ConnectionSlot(self, address, kind)

    def _release(self, address: str) -> None:
        self.connections[address] -= 1
        if self.connections[address] <= 0:
            del self.connections[address]

    def held(self, address: str | None = None) -> int:
        """Held connections of ``address`` (or of everyone)."""
        return self.connections.get(address, 0) if address is not None else sum(self.connections.values())

    # -- rates -------------------------------------------------------------------------------
    def allow_call(self, request: Any) -> float:
        """0 when this API call may go ahead; else the seconds the client should wait."""
        address = self.client_address(request)
        bucket = self.buckets.get(address)
        if bucket is None:
            bucket = self.buckets[address] = TokenBucket(self.api_rate, self.api_burst, self.clock)
            while len(self.buckets) > self.table_size:  # forget the least recently seen address
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(address)
        if bucket.take():
            return 0.0
        self.refused["rate_limited"] += 1
        return max(bucket.retry_after(), 1e-3)

    def message_bucket(self) -> TokenBucket:
        """A fresh bucket for one WebSocket/STOMP connection's incoming messages."""
        return TokenBucket(self.message_rate, self.message_burst, self.clock)

    def stats(self) -> dict[str, Any]:
        return {"held": self.held(), "addresses": len(self.connections), **self.refused}


def from_trusted_proxy(request: Any, trusted_proxies: Iterable[Any] | str = ()) -> bool:
    """Is the TCP peer one of ``trusted_proxies``? Only then are forwarding headers believed
    (``X-Forwarded-For`` here, ``X-Forwarded-Proto`` in the QR-login app): the one rule."""
    trusted = _networks(trusted_proxies)
    return bool(trusted) and _in_networks(request.remote_ip or "", trusted)


def client_address(request: Any, trusted_proxies: Iterable[Any] | str = ()) -> str:
    """Who is asking, by the one policy of every server (the module docstring's "Which address").

    The TCP peer, unless it is one of ``trusted_proxies`` (addresses, networks, or networks
    already parsed): then the last ``X-Forwarded-For`` entry, the one that proxy appended. The
    limits count by it and the QR-login app records it (the phone's confirm page shows it).
    """
    peer = request.remote_ip or ""
    if from_trusted_proxy(request, trusted_proxies):
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return peer


def trusted_proxy_list(values: Iterable[str] | str) -> tuple[str, ...]:
    """Command-line ``--trusted-proxy`` values (each may be comma-separated), checked before serving."""
    entries = tuple(e.strip() for value in ([values] if isinstance(values, str) else values)
                    for e in value.split(",") if e.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)") from None
    return entries


def _networks(entries: Iterable[Any] | str) -> list:
    if isinstance(entries, str):
        entries = [e for e in entries.split(",") if e.strip()]
    return [e if isinstance(e, (ipaddress.IPv4Network, ipaddress.IPv6Network))
            else ipaddress.ip_network(str(e).strip(), strict=False) for e in entries]


def _in_networks(address: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


class SharedBudgets:
    """Budgets per client address per window, counted in Redis: one count for the whole cluster.

    ``budgets`` maps a kind (``"login_attempts"``) to how many a client address may spend per
    ``window_s`` (None: unlimited). :meth:`spend` adds one atomically, in Redis, and answers
    ``(allowed, retry_after_s)``: every server of a cluster that shares the Redis sees the same
    count, so N servers do not give an attacker N budgets. A fixed window (``INCRBY``, with
    ``PEXPIRE`` on the window's first hit): simple, and at most twice the budget across a window
    boundary, which is the trade-off against a sliding log.
    """

    SPEND = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""

    def __init__(self, redis: Any, settings: dict[str, Any] | None = None, namespace: str = "qr") -> None:
        merged = {**DEFAULT_LIMITS, **{k: v for k, v in (settings or {}).items() if k in DEFAULT_LIMITS}}
        self.window_s = float(merged["shared_window_s"])
        if not self.window_s > 0:
            raise ValueError(f"shared_window_s must be > 0, not {self.window_s!r}")
        self.budgets: dict[str, int | None] = {}
        for kind in ("login_attempts", "ticket_creations", "unknown_tickets"):
            value = merged[f"{kind}_per_window"]
            if value is not None and (isinstance(value, bool) or int(value) < 1):
                raise ValueError(f"{kind}_per_window must be None or a whole number >= 1, not {value!r}")
            self.budgets[kind] = None if value is None else int(value)
        self.namespace, self.redis = namespace, redis
        self._script = redis.register_script(self.SPEND)

    def key(self, kind: str, address: str) -> str:
        return f"{self.namespace}:budget:{kind}:{address}"

    def limited(self, kind: str) -> bool:
        return self.budgets.get(kind) is not None

    async def spend(self, kind: str, address: str, amount: int = 1) -> tuple[bool, float]:
        """Spend ``amount`` of ``address``'s budget ``kind``: ``(allowed, retry_after_s)``.

        Allowed while the count, this spending included, is within the budget. ``amount=0`` only
        looks: allowed when one more would still be within it."""
        budget = self.budgets.get(kind)
        if budget is None:
            return True, 0.0
        count, ttl_ms = await self._script(keys=[self.key(kind, address)],
                                           args=[max(1, int(self.window_s * 1000)), int(amount)])
        return int(count) + (0 if amount else 1) <= budget, max(int(ttl_ms), 1) / 1000.0

    async def spent(self, kind: str, address: str) -> int:
        """How much of the budget ``address`` has spent in the current window."""
        return int(await self.redis.get(self.key(kind, address)) or 0)


def limits_for(app: Any) -> Limits:
    """The application's :class:`Limits` (``app.limits``), made from its settings on first use."""
    limits = getattr(app, "limits", None)
    if limits is None:
        limits = app.limits = Limits(getattr(app, "settings", {}))
    return limits


# ---------------------------------------------------------------------------------------------
# Plugging the limits into handlers: two decorators for HTTP methods, a mixin for WebSockets.


def refuse(handler: Any, status: int, code: str, detail: str, retry_after: float) -> None:
    """A JSON refusal with ``Retry-After`` (written directly: ``send_error`` would drop the header)."""
    handler.clear()
    handler.set_status(status)
    handler.set_header("Retry-After", str(max(1, math.ceil(retry_after))))
    handler.set_header("Content-Type", "application/json; charset=UTF-8")
    handler.finish(json.dumps({"error": code, "detail": detail, "retry_after": max(1, math.ceil(retry_after))},
                              separators=(",", ":")))


def holds_connection(kind: str) -> Callable:
    """Decorate an HTTP handler's (async) method that holds the connection open (SSE, long poll).

    The method runs only if the client's address has a free slot (else 429
    ``too_many_connections``), and the slot is released when the method returns or raises.
    """

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            limits = limits_for(self.application)
            slot = limits.acquire(self.request, kind)
            if slot is None:
                return refuse(self, 429, "too_many_connections",
                               f"This address already holds {limits.max_connections} open connections to this "
                               "server; close one (or wait) and try again.", 1)
            try:
                result = method(self, *args, **kwargs)
                if hasattr(result, "__await__"):
                    result = await result
                return result
            finally:
                slot.release()

        return wrapper

    return decorate


def rate_limited(method: Callable) -> Callable:
    """Decorate an API method: over the address's rate, 429 ``rate_limited`` with ``Retry-After``."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        limits = limits_for(self.application)
        wait = limits.allow_call(self.request)
        if wait:
            return refuse(self, 429, "rate_limited",
                           f"Too many calls from this address (more than {limits.api_rate:g}/s); "
                           f"retry after {wait:.2f} s.", wait)
        result = method(self, *args, **kwargs)
        if hasattr(result, "__await__"):
            result = await result
        return result

    return wrapper


class LimitedWebSocketMixin:
    """For WebSocket handlers: a connection slot per socket and a message bucket per socket.

    In ``open()``: ``if not self.take_connection_slot(): return`` (closes with 1013 when refused).
    In ``on_message()``: ``if self.message_too_big(message): return`` (it closed with 1009), then
    ``if not self.message_allowed(): ...`` (then close with 1008, or for STOMP send an ERROR frame
    first). The slot is released when the socket closes, whoever closes it.

    Message size: Tornado answers a message over its ``max_message_size`` with close 1009 and drops
    the TCP connection at once, the rest of the message unread; the kernel then sends a reset, and
    the client may lose the close frame before it reads it (it sees 1006, not 1009; found by the
    route fuzz at 10,000 examples). So Tornado's limit here is ``OVERSIZE_READ`` times the
    application's ``websocket_max_message_size``: a message up to that is read whole and refused
    with a clean close handshake; beyond it, Tornado's abrupt close still bounds the memory.
    """

    OVERSIZE_READ = 4
    _limit_slot: ConnectionSlot | None = None
    _limit_bucket: TokenBucket | None = None

    @property
    def message_size_limit(self) -> int:
        """The largest message accepted, in bytes (``websocket_max_message_size``, Tornado's default 10 MiB)."""
        return self.settings.get("websocket_max_message_size", 10 * 1024 * 1024)  # type: ignore[attr-defined]

    @property
    def max_message_size(self) -> int:  # what Tornado reads whole before it gives up on a message
        return self.OVERSIZE_READ * self.message_size_limit

    def message_too_big(self, message: str | bytes) -> bool:
        """Close with 1009 (and say so) if ``message`` is over the limit."""
        limit = self.message_size_limit
        if len(message) * 4 <= limit or len(message.encode() if isinstance(message, str) else message) <= limit:
            return False  # a str of n characters is at most 4n bytes of UTF-8
        self.close(1009, f"message too big: more than {limit} bytes")  # type: ignore[attr-defined]
        return True

    def take_connection_slot(self) -> bool:
        limits = limits_for(self.application)  # type: ignore[attr-defined]
        self._limit_bucket = limits.message_bucket()
        self._limit_slot = limits.acquire(self.request, getattr(self, "kind", "ws"))  # type: ignore[attr-defined]
        if self._limit_slot is None:
            self.close(CLOSE_TRY_AGAIN_LATER,  # type: ignore[attr-defined]
                       f"too many connections from your address (max {limits.max_connections}); retry later")
            return False
        return True

    def message_allowed(self) -> bool:
        """Take one token for an incoming message; False when the connection is over its rate."""
        if self._limit_bucket is None:
            self._limit_bucket = limits_for(self.application).message_bucket()  # type: ignore[attr-defined]
        if self._limit_bucket.take():
            return True
        limits_for(self.application).refused["message_rate"] += 1  # type: ignore[attr-defined]
        return False

    def rate_limit_reason(self) -> str:
        limits = limits_for(self.application)  # type: ignore[attr-defined]
        return f"message rate limit exceeded (max {limits.message_rate:g}/s, burst {limits.message_burst:g})"

    def on_connection_close(self) -> None:
        if self._limit_slot is not None:
            self._limit_slot.release()
        super().on_connection_close()  # type: ignore[misc]
