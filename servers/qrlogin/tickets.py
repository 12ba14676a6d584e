"""Login tickets, kept in the shared store (a real Redis) by every server of a cluster.

Why Redis, in every mode: in the seed's story server B checks and confirms a ticket that the
browser created on server A. So ticket *state* is shared by all servers through Redis; only the
push *connections* are private to each server (see ``push.py``). That split is the heart of
lessons 07 and 08.

One Redis hash per ticket, ``<ns>:ticket:<id>``:

=============  ===================================================================
``state``      ``pending`` → ``scanned`` → ``confirmed`` → ``redeemed``, or ``expired``
``version``    1 for pending, +1 on every change: SSE ``id:``, ``Last-Event-ID``, ``{"after": v}``
``at``         ``time.time()`` of the last change (the event's ``at``)
``created_at``, ``expires_at``  seconds since the epoch
``bind``       SHA-256 of the browser-binding cookie (the cookie itself is never stored)
``ip``, ``ua``  the requesting browser's address (``X-Forwarded-For`` from trusted proxies) and agent
``user``       the phone user who scanned (only that user may confirm); ``phone_ip`` their address
``scan_url``   what the QR code encodes
``created_by`` the server that created it (shown in lessons)
=============  ===================================================================

Per client address, a sorted set ``<ns>:tickets_of:<address>`` holds the ids of the address's
tickets scored by their expiry, so every server of a cluster counts the same live tickets against
``max_tickets_per_address`` (``servers.limits``): one client cannot fill the store with tickets.

The key lives ``ttl + grace`` seconds: after ``expires_at`` it is a tombstone for ``grace``
seconds, so the API can tell an expired ticket (410) from one that never existed (404). A ticket
past ``expires_at`` is moved to ``expired`` (a new version, so it is pushed like any change) by
the first server that looks at it: every transition runs in one Lua script, atomic in Redis, so
two servers racing on the same ticket cannot both win.

With a change log (the ``streams`` fix sets :attr:`TicketStore.log`), the same script also
appends the change's event to the ticket's Redis Stream. State and log are then one atomic step:
a server that dies after the change cannot leave a state the log never had (with the append as
a second round trip it could, and a browser resuming from the log would miss that change).
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

STATES = ("pending", "scanned", "confirmed", "redeemed", "expired")
TERMINAL = ("redeemed", "expired")

__all__ = ["STATES", "TERMINAL", "Ticket", "TicketStore", "ChangeLog", "TransitionRefused", "TooManyTickets",
           "new_ticket_id", "fingerprint"]


def new_ticket_id() -> str:
    """A ticket id from the CSPRNG: 16 bytes = 128 bits, 22 URL-safe characters, no dots."""
    return secrets.token_urlsafe(16)


def fingerprint(secret: str) -> str:
    """What is stored instead of a secret (binding cookie): its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Ticket:
    """One ticket as read from Redis."""

    id: str
    state: str
    version: int
    at: float
    created_at: float
    expires_at: float
    fields: dict[str, str]

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def event(self) -> dict[str, Any]:
        """The push event describing this ticket's current state."""
        return {"ticket": self.id, "state": self.state, "version": self.version, "at": self.at}

    def public(self) -> dict[str, Any]:
        """What the browser's status routes show (no secrets)."""
        return {**self.event(), "expires_at": self.expires_at}

    @classmethod
    def from_hash(cls, ticket_id: str, raw: dict[str, str]) -> "Ticket":
        return cls(ticket_id, raw["state"], int(raw["version"]), float(raw["at"]), float(raw["created_at"]),
                   float(raw["expires_at"]), raw)


@dataclass
class ChangeLog:
    """Where the transition script appends each change: ``key(ticket_id)`` names the ticket's
    Redis Stream, capped at about ``maxlen`` entries and kept ``ttl_ms`` after its last change."""

    key: Callable[[str], str]
    maxlen: int
    ttl_ms: int


class TooManyTickets(Exception):
    """The client address already holds its maximum of live tickets; ``retry_after`` is the number of
    seconds until its oldest one expires and frees a place."""

    def __init__(self, limit: int, retry_after: float) -> None:
        super().__init__(f"more than {limit} live tickets")
        self.limit = limit
        self.retry_after = retry_after


class TransitionRefused(Exception):
    """A state change the ticket's current state (or its owner) does not allow.

    ``reason`` is one of: ``missing``, ``expired``, ``state``, ``user``, ``binding``.
    ``ticket`` is the ticket as it is now (None when missing); ``expired_event`` is set when this
    very call moved the ticket to ``expired`` (the caller publishes it).
    """

    def __init__(self, reason: str, ticket: Ticket | None, expired_event: dict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ticket = ticket
        self.expired_event = expired_event


# One atomic step: check the state (and owner), lazily expire, change state, bump the version,
# and (with a log) append the change's event to the ticket's stream.
# KEYS[1] ticket hash, KEYS[2] (optional) its stream. ARGV: 1 allowed from-states (space
# separated), 2 new state ('' = only check expiry), 3 now, 4 field to check ('' = none), 5 the
# value it must have, 6 ticket id, 7 stream MAXLEN, 8 stream lifetime (ms), 9.. field/value pairs.
# The event is written as Python's json.dumps(Ticket.event()) writes it: ``at`` is ARGV[3] as sent
# (Python's repr of the float), and ticket ids are URL-safe, so nothing needs escaping.
_TRANSITION = """
local raw = redis.call('HGETALL', KEYS[1])
if #raw == 0 then return {'missing'} end
local t = {}
for i = 1, #raw, 2 do t[raw[i]] = raw[i + 1] end
local now = tonumber(ARGV[3])
local version = tonumber(t['version'])
local function log(state)
  if KEYS[2] == nil then return end
  local event = '{"ticket":"' .. ARGV[6] .. '","state":"' .. state .. '","version":' .. version
                .. ',"at":' .. ARGV[3] .. '}'
  -- pcall: an entry for this version already logged is no reason to undo the change
  redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], version .. '-0', 'event', event)
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
end
if t['state'] ~= 'redeemed' and t['state'] ~= 'expired' and now >= tonumber(t['expires_at']) then
  version = version + 1
  redis.call('HSET', KEYS[1], 'state', 'expired', 'version', version, 'at', ARGV[3])
  log('expired')
  return {'expired_now', tostring(version)}
end
if ARGV[2] == '' then return {'unchanged'} end
if t['state'] == 'expired' then return {'expired'} end
local allowed = false
for s in string.gmatch(ARGV[1], '%S+') do if s == t['state'] then allowed = true end end
if not allowed then return {'state', t['state']} end
if ARGV[4] ~= '' and t[ARGV[4]] ~= ARGV[5] then return {'mismatch', ARGV[4]} end
if t['state'] == ARGV[2] then return {'same', tostring(version)} end
version = version + 1
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'version', version, 'at', ARGV[3])
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
log(ARGV[2])
return {'ok', tostring(version)}
"""


class TicketStore:
    """Tickets in Redis, for one app (``redis`` is that app's ``redis.asyncio`` client).

    ``namespace`` prefixes every key, so two independent clusters can share one Redis; the
    servers of one cluster must use the same namespace (that is what lets B see A's tickets).
    """

    def __init__(self, redis, *, ttl: float = 120, grace: float = 300, namespace: str = "qr") -> None:
        self.redis = redis
        self.ttl = float(ttl)
        self.grace = float(grace)
        self.namespace = namespace
        self._transition = redis.register_script(_TRANSITION)
        self.log: ChangeLog | None = None  # set by the streams fix: changes are logged atomically

    def key(self, ticket_id: str) -> str:
        return f"{self.namespace}:ticket:{ticket_id}"

    def _run(self, ticket_id: str, args: list[str]):
        """Run the transition script: ``args`` are ARGV 1-5, field/value pairs follow."""
        keys = [self.key(ticket_id)]
        log = ["", "0", "0"]
        if self.log is not None:
            keys.append(self.log.key(ticket_id))
            log = [ticket_id, str(self.log.maxlen), str(self.log.ttl_ms)]
        return self._transition(keys=keys, args=[*args[:5], *log, *args[5:]])

    def owned_key(self, address: str) -> str:
        return f"{self.namespace}:tickets_of:{address}"

    async def create(self, *, bind_secret: str, ip: str, ua: str, scan_url_for, created_by: str,
                     max_per_address: int | None = None) -> Ticket:
        """A new pending ticket (version 1). ``scan_url_for(id)`` builds the URL the QR encodes.

        With ``max_per_address``, raises :class:`TooManyTickets` when address ``ip`` already holds
        that many tickets that have not expired (counted in the same transaction that stores the
        ticket; a refused ticket is removed again at once, and nobody ever saw its id).
        """
        ticket_id = new_ticket_id()
        now = time.time()
        raw = {"state": "pending", "version": "1", "at": repr(now), "created_at": repr(now),
               "expires_at": repr(now + self.ttl), "bind": fingerprint(bind_secret), "ip": ip, "ua": ua[:300],
               "user": "", "scan_url": scan_url_for(ticket_id), "created_by": created_by}
        key, owned = self.key(ticket_id), self.owned_key(ip)
        async with self.redis.pipeline(transaction=True) as pipe:
            if max_per_address is not None:
                pipe.zremrangebyscore(owned, "-inf", repr(now))  # expired tickets free their places
                pipe.zadd(owned, {ticket_id: now + self.ttl})
                pipe.zcard(owned)
                pipe.pexpire(owned, int(self.ttl * 1000) + 1000)
            pipe.hset(key, mapping=raw)
            pipe.pexpire(key, int((self.ttl + self.grace) * 1000))
            results = await pipe.execute()
        if max_per_address is not None and results[2] > max_per_address:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(owned, ticket_id)
                pipe.delete(key)
                pipe.zrange(owned, 0, 0, withscores=True)
                oldest = (await pipe.execute())[2]
            raise TooManyTickets(max_per_address, (oldest[0][1] - now) if oldest else self.ttl)
        return Ticket.from_hash(ticket_id, raw)

    async def get(self, ticket_id: str) -> tuple[Ticket | None, dict | None]:
        """The ticket now (None if unknown), and the ``expired`` event if this read expired it."""
        result = await self._run(ticket_id, ["", "", repr(time.time()), "", ""])
        if result[0] == "missing":
            return None, None
        ticket = await self._read(ticket_id)
        if ticket is None:
            return None, None
        return ticket, (ticket.event() if result[0] == "expired_now" else None)

    async def _read(self, ticket_id: str) -> Ticket | None:
        raw = await self.redis.hgetall(self.key(ticket_id))
        return Ticket.from_hash(ticket_id, raw) if raw else None

    async def transition(self, ticket_id: str, allowed_from: tuple[str, ...], to: str, *,
                         check: tuple[str, str] | None = None, set_fields: dict[str, str] | None = None
                         ) -> tuple[Ticket, bool]:
        """Move the ticket to ``to`` if its state is in ``allowed_from`` (and ``check`` holds).

        Returns the ticket after the step and whether it changed (False when it already was in
        ``to``: repeating a scan or confirm is harmless). Raises :class:`TransitionRefused`.
        """
        args = [" ".join(allowed_from), to, repr(time.time()), *(check or ("", ""))]
        for name, value in (set_fields or {}).items():
            args += [name, value]
        result = await self._run(ticket_id, args)
        outcome = result[0]
        ticket = await self._read(ticket_id) if outcome != "missing" else None
        if outcome in ("ok", "same") and ticket is not None:
            return ticket, outcome == "ok"
        if outcome == "missing" or ticket is None:
            raise TransitionRefused("missing", None)
        if outcome == "expired_now":
            raise TransitionRefused("expired", ticket, ticket.event())
        if outcome == "expired":
            raise TransitionRefused("expired", ticket)
        if outcome == "mismatch":
            raise TransitionRefused("binding" if result[1] == "bind" else "user", ticket)
        raise TransitionRefused("state", ticket)
