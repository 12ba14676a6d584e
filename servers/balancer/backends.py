"""A backend as both balancers see it: a name (what the routing log and the sticky cookie show)
and an address. Built from a URL, a ``NAME=URL`` string (the CLI's ``--backend``) or a running
:class:`servers.runtime.ServerHandle` (whose name is the server's own, e.g. "A")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Backend", "as_backend", "as_backends"]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` as nginx writes it in ``$upstream_addr``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def as_backend(spec: Any, name: str | None = None) -> Backend:
    """A :class:`Backend` from a ServerHandle-like object (``url`` and ``name``), ``"NAME=URL"`` or a URL."""
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        url = getattr(spec, "url", None)
        if not url:
            raise TypeError(f"a backend must be a URL, 'NAME=URL' or a server handle, not {spec!r}")
        return as_backend(url, name or getattr(spec, "name", None))
    text = spec.strip()
    if "=" in text.split("://", 1)[0]:
        name, text = text.split("=", 1)
    parts = urlsplit(text if "://" in text else "http://" + text)
    if parts.scheme not in ("http", "ws") or not parts.hostname or not parts.port:
        raise ValueError(f"backend {spec!r} must look like http://127.0.0.1:8001 (http, a host and a port)")
    host = parts.hostname
    address = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
    return Backend(name or address, f"http://{address}", host, parts.port)


def as_backends(specs: Any) -> list[Backend]:
    backends = [as_backend(spec) for spec in specs]
    names = [b.name for b in backends]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"backend names must be unique; repeated: {', '.join(duplicates)}")
    return backends


class PassiveHealth:
    """nginx's passive health check, for our balancer: a backend is skipped after failed requests.

    Open-source nginx has no active health checks (no probe requests of its own); it notices a dead
    server by the requests that fail on it. The ``server`` parameters of ``ngx_http_upstream_module``
    say how: after ``max_fails`` unsuccessful attempts within ``fail_timeout`` the server is
    considered unavailable for ``fail_timeout``; the defaults are 1 and 10 s; ``max_fails=0``
    turns the accounting off. An unsuccessful attempt is a connection that could not be made, or a
    server that closed it or timed out before answering (nginx's ``error``/``timeout``, which count
    "even if they are not specified" in ``proxy_next_upstream``). When the time is up the server
    gets requests again; one more failure puts it back out for another ``fail_timeout``, a success
    clears its count. As in nginx, a balancer with a single backend never skips it. Every change is
    kept in ``events`` (``time``, ``backend``, ``event``: failed / down / up, ``fails``, ``why``).
    """

    def __init__(self, max_fails: int = 1, fail_timeout: float = 10.0, clock=None) -> None:
        import collections
        import time

        if max_fails < 0 or fail_timeout < 0:
            raise ValueError("max_fails and fail_timeout must not be negative")
        self.max_fails = int(max_fails)
        self.fail_timeout = float(fail_timeout)
        self._clock = clock or time.time
        self._fails: dict[str, list[float]] = {}
        self._down_until: dict[str, float] = {}
        self._rechecking: set[str] = set()  # its time out is over: one more failure and it is out again
        self.events: collections.deque[dict] = collections.deque(maxlen=10_000)

    def available(self, name: str) -> bool:
        until = self._down_until.get(name)
        if until is None:
            return True
        if self._clock() < until:
            return False
        del self._down_until[name]
        self._rechecking.add(name)
        self._note(name, "up", "fail_timeout over: tried again")
        return True

    def live(self, names: "list[str]") -> "list[str]":
        """The names not skipped now; all of them when there is only one (nginx ignores the
        parameters for a single server)."""
        if len(names) <= 1 or self.max_fails == 0:
            return list(names)
        return [name for name in names if self.available(name)]

    def failed(self, name: str, why: str = "") -> bool:
        """Count an unsuccessful attempt on ``name``; True when it is now skipped."""
        if self.max_fails == 0:
            return False
        now = self._clock()
        if now < self._down_until.get(name, now):  # a request sent before it went out: out longer
            self._down_until[name] = now + self.fail_timeout
            self._note(name, "failed", why)
            return True
        fails = [t for t in self._fails.get(name, []) if now - t <= self.fail_timeout] + [now]
        self._fails[name] = fails
        self._note(name, "failed", why, len(fails))
        if len(fails) >= self.max_fails or name in self._rechecking:
            self._down_until[name] = now + self.fail_timeout
            self._fails[name] = []
            self._rechecking.discard(name)
            self._note(name, "down", f"{len(fails)} failure(s) within {self.fail_timeout:g} s: skipped "
                                     f"for {self.fail_timeout:g} s")
            return True
        return False

    def succeeded(self, name: str) -> None:
        """The backend answered: its count starts again."""
        self._fails.pop(name, None)
        self._rechecking.discard(name)

    def _note(self, name: str, event: str, why: str = "", fails: int = 0) -> None:
        self.events.append({"time": self._clock(), "backend": name, "event": event, "fails": fails, "why": why})
