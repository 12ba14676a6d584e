"""Load balancers in front of N servers: ours (Tornado, in-process) and real nginx, same policies.

From a notebook cell::

    from servers import start_balancer
    lb = start_balancer([a, b], policy="round_robin")          # kind="nginx" for real nginx
    requests.get(lb.url + "/api/tickets/abc")                  # answered by A or B
    lb.routing_log()                                           # where every request went
    lb.stop()

The policies are in :mod:`servers.balancer.policies`; ours in :mod:`.proxy`; nginx's driver in
:mod:`.nginx`; the routing log's columns in :mod:`.routing`.
"""
from __future__ import annotations

from typing import Any, Sequence

from servers.balancer.backends import Backend, as_backend
from servers.balancer.nginx import HOW_TO_GET_NGINX, NginxMissing
from servers.balancer.policies import POLICIES
from servers import runtime

__all__ = ["start_balancer", "BalancerHandle", "NginxMissing", "HOW_TO_GET_NGINX", "POLICIES", "KINDS"]

KINDS = ("python", "nginx")


class BalancerHandle:
    """A running balancer of either kind.

    ``url``/``ws_url``; ``routing_log()`` (a DataFrame); ``backends``; ``add_backend(server_or_url,
    name=None)``, ``remove_backend(name)``, ``set_backends([...])`` (for the consistent-hashing
    lesson); ``stop()``; a context manager.
    """

    def __init__(self, kind: str, policy: str, name: str, impl: Any) -> None:
        self.kind = kind
        self.policy = policy
        self.name = name
        self._impl = impl  # a ServerHandle of a BalancerApp (python) or a NginxBalancer (nginx)
        self.url: str = impl.url
        self.ws_url: str = impl.ws_url
        self.port: int = impl.port

    def __repr__(self) -> str:
        names = ", ".join(b.name for b in self.backends)
        return f"<BalancerHandle {self.kind} {self.policy} {self.url} -> [{names}]>"

    def __enter__(self) -> "BalancerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._impl.running

    @property
    def backends(self) -> list[Backend]:
        if self.kind == "python":
            return list(self._impl.call(lambda app: list(app.backends)))
        return list(self._impl.backends)

    def routing_log(self):
        """Every routing decision so far: time, client, method, path, route, ticket, backend, status."""
        if self.kind == "python":
            from servers.balancer.routing import routing_frame

            return routing_frame(self._impl.call(lambda app: [dict(e) for e in app.log]))
        return self._impl.routing_log()

    def set_backends(self, backends: Sequence[Any]) -> None:
        if self.kind == "python":
            self._impl.call(lambda app: app.set_backends(backends))
        else:
            self._impl.set_backends(backends)

    def add_backend(self, backend: Any, name: str | None = None) -> Backend:
        new = as_backend(backend, name)
        self.set_backends([b for b in self.backends if b.name != new.name] + [new])
        return new

    def remove_backend(self, name: str) -> None:
        current = self.backends
        if name not in {b.name for b in current}:
            raise KeyError(f"no backend named {name!r}; the backends are {[b.name for b in current]}")
        self.set_backends([b for b in current if b.name != name])

    def wait_routing_log(self, rows: int, timeout: float = 10.0):
        """The routing log once it has at least ``rows`` rows (nginx logs a request after it ends,
        a moment after the client has its answer): polls the log until then, or raises TimeoutError."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            frame = self.routing_log()
            if len(frame) >= rows:
                return frame
            if time.monotonic() > deadline:
                raise TimeoutError(f"the routing log has {len(frame)} rows, expected {rows} within {timeout} s")
            time.sleep(0.02)

    def health_log(self):
        """What the passive health check did (ours only): ``time``, ``backend``, ``event``
        (failed, down: skipped from now for ``fail_timeout``; up: tried again), ``fails``, ``why``."""
        import pandas as pd

        if self.kind != "python":
            raise NotImplementedError("nginx keeps its failure counts to itself (its error log says 'upstream ... failed')")
        rows = self._impl.call(lambda app: [dict(e) for e in app.health.events])
        frame = pd.DataFrame(rows, columns=["time", "backend", "event", "fails", "why"])
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
        return frame

    def open_connections(self) -> dict[str, int]:
        """Open proxied connections per backend (ours only; what ``least_conn`` looks at)."""
        if self.kind != "python":
            raise NotImplementedError("nginx does not expose its per-backend connection counts here")
        return self._impl.call(lambda app: dict(app.router.open_connections))

    def stop(self) -> None:
        if self.kind == "python":
            self._impl.stop()
        else:
            self._impl.cleanup()
            runtime.untrack(self)


def start_balancer(backends: Sequence[Any], policy: str = "round_robin", kind: str = "python",
                   name: str = "lb", *, host: str = "127.0.0.1", port: int = 0,
                   connect_timeout: float = 3.0, failover: bool = False, seed: int | None = None,
                   push_backends: Sequence[Any] = (), max_fails: int = 1,
                   fail_timeout: float = 10.0) -> BalancerHandle:
    """Start a balancer in front of ``backends`` (URLs, ``"NAME=URL"`` or server handles).

    ``kind="python"`` is ours, in-process on the server loop; ``kind="nginx"`` starts real nginx (raises :class:`NginxMissing` with
    install instructions where there is none). Either way, starting a balancer under a ``name``
    already running replaces it (re-running a cell). ``port=0`` picks a free port. A backend that is down
    gives a JSON 502 with both; ``failover=True`` (nginx only) lets nginx retry another backend.
    ``seed`` makes ours' ``random`` policy repeatable (nginx's ``random`` cannot be seeded).
    ``push_backends`` (the gateway fix): the push routes ``/api/tickets/{id}/events|ws|longpoll``
    go to these (in turn) instead of ``backends``. ``max_fails``, ``fail_timeout``: the passive
    health check both kinds do, nginx's ``server`` parameters with nginx's defaults: a backend
    with ``max_fails`` failed requests within ``fail_timeout`` seconds is skipped for
    ``fail_timeout`` (``max_fails=0``: never; see :class:`~servers.balancer.backends.PassiveHealth`).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if kind == "python":
        from servers.balancer.proxy import BalancerApp
        from servers.runtime import serve

        app = BalancerApp(backends, policy, name=name, connect_timeout=connect_timeout, seed=seed,
                          push_backends=push_backends, max_fails=max_fails, fail_timeout=fail_timeout)
        return BalancerHandle(kind, policy, name, serve(app, host=host, port=port))
    if kind == "nginx":
        from servers.balancer.nginx import NginxBalancer, stop_same_name

        stop_same_name(name)
        impl = NginxBalancer(backends, policy, name=name, host=host, port=port,
                             connect_timeout=connect_timeout, failover=failover, push_backends=push_backends,
                             max_fails=max_fails, fail_timeout=fail_timeout)
        try:
            impl.start()
        except BaseException:
            impl.cleanup()
            raise
        handle = BalancerHandle(kind, policy, name, impl)
        runtime.track(f"nginx:{name}", handle)  # servers.stop_all() stops nginx too
        return handle
    raise ValueError(f"unknown balancer kind {kind!r}; choose one of {', '.join(KINDS)}")
