"""The servers' shared secret for their own routes, and the route that takes an event from another server.

Two fixes send events from server to server over HTTP: the ``registry`` fix forwards a change
to the server holding the browser's channel (``POST /internal/deliver``), and the ``gateway``
fix publishes every change to the push tier (``POST /internal/publish``). Those are ordinary
routes, so the balancer would pass a browser's request to them too; only a caller that sends
the servers' shared secret in the ``X-Internal-Secret`` header is obeyed, anything else gets a
JSON 401.

One rule for the secret, the same on every server so they agree without talking:

1. the ``internal_secret`` setting, else
2. the ``QRLOGIN_INTERNAL_SECRET`` environment variable, else
3. agreed through the shared Redis, first writer wins: ``SET <ns>:internal_secret <random> NX``
   then ``GET`` it back, so every server ends up with whatever the first one wrote. Whoever can
   read that Redis can read every ticket anyway; in production, configure the secret and keep
   the internal routes off the public listener.

The comparison is constant-time (:func:`hmac.compare_digest`), so the time a refusal takes does
not tell an attacker how many leading characters were right.
"""
from __future__ import annotations

import hmac
import os
import secrets
from typing import Any

from servers.qrlogin.tickets import STATES
from servers.web import ApiError, BaseHandler

__all__ = ["SECRET_HEADER", "SECRET_ENV", "secret_key", "InternalSecret", "InternalEventHandler"]

SECRET_HEADER = "X-Internal-Secret"
SECRET_ENV = "QRLOGIN_INTERNAL_SECRET"


def secret_key(namespace: str) -> str:
    """The Redis key where servers without a configured secret agree on one."""
    return f"{namespace}:internal_secret"


class InternalSecret:
    """One server's copy of the shared secret: ``value`` (text, ``""`` until agreed), ``source``
    (``"setting"``, ``"env"`` or ``"redis"``), :meth:`agree`, :meth:`check`, :meth:`headers`."""

    def __init__(self, configured: str | None, namespace: str) -> None:
        from_env = os.environ.get(SECRET_ENV) or ""
        self.value: str = configured or from_env
        self.source = "setting" if configured else ("env" if from_env else "redis")
        self.key = secret_key(namespace)
        if not self.value.isprintable() or any(c in self.value for c in "\r\n"):
            raise ValueError("internal_secret must be printable text on one line (it travels in an HTTP header)")

    @property
    def from_redis(self) -> bool:
        """Neither configured nor in the environment: agreed through Redis (and agreed again after a
        Redis restart, which forgets the key)."""
        return self.source == "redis"

    async def agree(self, redis: Any) -> int:
        """Agree on the secret through Redis unless it is configured: write ours (or a new random one)
        if nobody has, then take whatever is there. Returns the Redis commands sent (0 or 2)."""
        if not self.from_redis:
            return 0
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key, self.value or secrets.token_urlsafe(32), nx=True)
            pipe.get(self.key)
            _, agreed = await pipe.execute()
        self.value = agreed or self.value
        return 2

    def rewrite(self, pipe: Any) -> int:
        """Queue our secret's ``SET NX`` on a Redis pipeline: after a Redis restart the key is gone, and
        servers that start later must agree with the ones already running. Returns commands queued."""
        if not self.from_redis or not self.value:
            return 0
        pipe.set(self.key, self.value, nx=True)
        return 1

    def check(self, offered: str | None) -> bool:
        """Is ``offered`` (the request's header) the secret? Never true before a secret exists."""
        return bool(self.value) and hmac.compare_digest((offered or "").encode(), self.value.encode())

    def headers(self) -> dict[str, str]:
        """The header a request to another server's internal route carries."""
        return {SECRET_HEADER: self.value}

    def __repr__(self) -> str:  # never the value itself: reprs end up in logs and notebooks
        return f"<InternalSecret from {self.source}{'' if self.value else ', not agreed yet'}>"


class InternalEventHandler(BaseHandler):
    """``POST`` of one ticket event from another server: hand it to this server's channels.

    401 unless ``X-Internal-Secret`` carries the shared secret (counted in the hub's
    ``stats["refused"]``); 400 for a malformed event. Answers ``{"delivered": n, "server": name}``:
    how many channels here took it. A subclass says where its secret is (:meth:`internal_secret`)
    and who may call (:attr:`callers`).
    """

    callers = "This route is for the app servers only"

    def internal_secret(self) -> InternalSecret | None:  # pragma: no cover - every route overrides it
        raise NotImplementedError

    def post(self) -> None:
        hub = self.application.push  # type: ignore[attr-defined]
        secret = self.internal_secret()
        if secret is None or not secret.check(self.request.headers.get(SECRET_HEADER)):
            hub.stats["refused"] += 1
            raise ApiError(401, "bad_internal_secret", f"{self.callers}: send the shared secret in {SECRET_HEADER}.")
        event = self.json_body(required=("ticket", "state", "version"))
        if (not isinstance(event["ticket"], str) or event["state"] not in STATES
                or not isinstance(event["version"], int) or isinstance(event["version"], bool)):
            raise ApiError(400, "bad_event", "The event must be {\"ticket\": str, \"state\": one of "
                                             f"{', '.join(STATES)}, \"version\": int, ...}}.")
        hub.stats["messages_in"] += 1
        hub.stats["bytes_in"] += len(self.request.body)
        self.write_json({"delivered": hub.deliver_local(event), "server": self.application.name})  # type: ignore[attr-defined]
