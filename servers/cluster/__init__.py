"""A cluster: N QR-login servers (A, B, C, ...), one Redis, a balancer in front, and the clients.

This is the seed's story made runnable: the browser's push connection lands on one server, the
phone's confirm on another, and with no fix the login never completes. From a cell::

    from servers import start_cluster
    cluster = start_cluster(n=2, policy="round_robin")       # balancer="nginx" for real nginx
    cluster.url                                              # what clients use: the balancer
    cluster.routing_log()                                    # where each request went
    cluster.crash("A")                                       # lesson 09
    cluster.stop()

Servers run in-process by default (fast, and a learner can inspect them: ``cluster.servers["A"].app``);
``processes=True`` starts each as ``python -m servers qrlogin`` (what ``python -m servers cluster``
does), so a crash is a real SIGKILL. Starting a cluster under a name already in use stops the old
one first, so re-running a cell never leaves servers behind. In-process servers are registered
under their names (A, B, ...), so one process runs one in-process cluster at a time.
"""
from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any

from servers.balancer import BalancerHandle, start_balancer
from servers import runtime
from servers.process import ServerProcess

if TYPE_CHECKING:  # pragma: no cover
    from servers.qrlogin.push import Fix

__all__ = ["start_cluster", "ClusterHandle", "ServerProcess", "qrlogin_process", "server_names", "balancer_addresses"]


def server_names(n: int) -> list[str]:
    """``A``, ``B``, ... ``Z``, then ``S27``, ``S28`` ..."""
    return [chr(ord("A") + i) if i < 26 else f"S{i + 1}" for i in range(n)]


def qrlogin_process(name: str, fix: str, redis_url: str, host: str = "127.0.0.1",
                    ticket_ttl: float = 120, trusted_proxies: tuple[str, ...] = (),
                    hardened: bool = False) -> ServerProcess:
    """A QR-login server in a child process (``python -m servers qrlogin``). The Redis URL, which
    carries its password, goes in the child's environment (``REDIS_URL``), not on its command line."""
    return ServerProcess(["qrlogin", "--port", "0", "--host", host, "--name", name, "--fix", fix,
                          "--ticket-ttl", str(ticket_ttl), *(["--hardened"] if hardened else []),
                          *[arg for proxy in trusted_proxies for arg in ("--trusted-proxy", proxy)]], name,
                         env={"REDIS_URL": redis_url})


def balancer_addresses(host: str) -> tuple[str, ...]:
    """The address a balancer on this machine reaches servers bound to ``host`` from.

    The servers trust its ``X-Forwarded-For`` (``trusted_proxies``, servers.limits), so that their
    limits and the phone's confirm page see each browser's address, not the balancer's. For a
    local destination the kernel uses the destination's address as the source; a wildcard bind
    is reached through loopback.
    """
    if host in ("", "0.0.0.0", "::", "localhost"):
        return ("127.0.0.1", "::1")
    return (host,)


class ClusterHandle:
    """N servers, one Redis, a balancer: ``url``, ``servers`` (name → handle), ``balancer``,
    ``redis_url``, ``routing_log()``, ``crash(name)``, ``browser(transport)``, ``phone()``,
    ``login_once(transport)``, ``stop()``; a context manager."""

    def __init__(self, name: str, servers: dict[str, Any], balancer: BalancerHandle, redis_url: str,
                 redis: Any, transport: str | None, fix: str) -> None:
        self.name = name
        self.servers = servers
        self.balancer = balancer
        self.redis_url = redis_url
        self._redis = redis  # a RedisHandle we started (stopped with the cluster), or None
        self.transport = transport
        self.fix = fix
        self.policy = balancer.policy
        self.url = balancer.url
        self.ws_url = balancer.ws_url
        self.state = "running"
        self.gateway: Any = None  # the fix's push tier if it has one (gateway: fixes/gateway_tier.py), stopped with the cluster

    def __repr__(self) -> str:
        return (f"<ClusterHandle {self.name} {self.url} servers={list(self.servers)} policy={self.policy} "
                f"fix={self.fix} balancer={self.balancer.kind} {self.state}>")

    def __enter__(self) -> "ClusterHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def routing_log(self):
        """The balancer's routing log (a DataFrame): which server got each request."""
        return self.balancer.routing_log()

    def crash(self, name: str) -> None:
        """Crash server ``name`` (in-process: every connection dropped; a process: SIGKILL)."""
        try:
            server = self.servers[name]
        except KeyError:
            raise KeyError(f"no server named {name!r} in this cluster; it has {', '.join(self.servers)}") from None
        server.crash()

    # -- the simulated clients -----------------------------------------------------------------
    def browser(self, transport: str | None = None, source_address: str = "127.0.0.2", **kwargs: Any):
        """A simulated browser (its own cookie jar, from 127.0.0.2) talking to the balancer."""
        from servers.clients.qr import Browser

        return Browser(self.url, transport or self.transport or "sse", source_address=source_address, **kwargs)

    def phone(self, source_address: str = "127.0.0.3", **kwargs: Any):
        """A simulated phone (another client: its own address 127.0.0.3 and no cookies)."""
        from servers.clients.qr import Phone

        return Phone(self.url, source_address=source_address, **kwargs)

    def login_once(self, transport: str | None = None, timeout: float = 2.0, **kwargs: Any):
        """One whole login through the balancer (browser and phone): see ``servers.clients.qr.login_once``."""
        from servers.clients.qr import login_once

        return login_once(self.url, transport or self.transport or "sse", timeout, **kwargs)

    def stop(self) -> None:
        """Stop the balancer, every server and the Redis this cluster started."""
        if self.state == "stopped":
            return
        self.state = "stopped"
        errors = []
        for step in [self.balancer.stop, *[s.stop for s in self.servers.values()],
                     *([self.gateway.stop] if self.gateway is not None else []),
                     *([self._redis.stop] if self._redis is not None else [])]:
            try:
                step()
            except Exception as exc:  # stop everything else even if one part fails
                errors.append(exc)
        if _live.get(self.name) is self:
            del _live[self.name]
        runtime.untrack(self)
        if errors:
            raise errors[0]


# Clusters running in this process, by name: starting one under a used name stops the old one
# (re-running a notebook cell), and whatever still runs at exit is stopped.
_live: dict[str, ClusterHandle] = {}


@atexit.register
def _stop_live() -> None:
    for cluster in list(_live.values()):
        try:
            cluster.stop()
        except Exception:
            pass


def start_cluster(n: int = 2, policy: str | None = None, fix: str | Fix = "none", balancer: str = "python",
                  transport: str | None = None, redis_url: str | None = None, processes: bool = False,
                  names: list[str] | None = None, *, name: str = "cluster", host: str = "127.0.0.1",
                  port: int = 0, ticket_ttl: float = 120, connect_timeout: float = 3.0,
                  seed: int | None = None, max_fails: int = 1, fail_timeout: float = 10.0,
                  hardened: bool = False) -> ClusterHandle:
    """Start ``n`` QR-login servers behind a balancer (``"python"``, ours, or ``"nginx"``).

    ``fix``: a name from ``servers.qrlogin.fixes.FIXES`` or a :class:`~servers.qrlogin.push.Fix`
    (with ``processes=True`` only a registered one: a child process looks the name up). ``policy``
    defaults to the one the fix relies on (``ticket_hash`` for ``fix="ticket_hash"``: that fix *is*
    the policy), else ``round_robin``. A fix with a push tier (``gateway``) gets it started in
    front of the push routes. Redis: ``redis_url``, else ``REDIS_URL``, else a fresh ``redis-server`` that
    the cluster stops with itself. ``transport`` is the default for ``browser()``/``login_once()``.
    ``port`` is the balancer's (0: a free one). ``max_fails``, ``fail_timeout``: the balancer's
    passive health check (nginx's parameters and defaults): a crashed server is skipped only after
    requests have failed on it. ``hardened``: every server with the limits for a network
    (``servers.limits.HARDENED_LIMITS``: login throttling, cluster-wide budgets), as ``--hardened``.
    """
    from servers.qrlogin.fixes import FIXES, get_fix
    from servers.redisproc import redis_url_from_env, start_redis

    spec = get_fix(fix)  # an unknown name is a ValueError naming the fixes, before anything starts
    if processes and FIXES.get(spec.name) is not spec:
        raise ValueError(f"fix {spec.name!r} is not in servers.qrlogin.fixes.FIXES: a fix of your own runs "
                         "in-process only (processes=False), since a child process looks --fix up by name")
    if n < 1:
        raise ValueError(f"a cluster needs at least one server, not n={n}")
    names = list(names) if names is not None else server_names(n)
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"names must be {n} distinct names, got {names}")
    policy = policy or spec.policy or "round_robin"
    old = _live.get(name)
    if old is not None:
        old.stop()

    redis = None
    url = redis_url or redis_url_from_env()
    if url is None:
        redis = start_redis()
        url = redis.url
    started: dict[str, Any] = {}
    lb = None
    gateway = None
    try:
        if spec.push_tier is not None:  # the tier that holds every browser channel (the gateway fix's)
            gateway = spec.push_tier(url, processes=processes, host=host, trusted_proxies=balancer_addresses(host))
        for server_name in names:
            if processes:
                started[server_name] = qrlogin_process(server_name, spec.name, url, host=host, ticket_ttl=ticket_ttl,
                                                       trusted_proxies=balancer_addresses(host), hardened=hardened)
            else:
                from servers.limits import HARDENED_LIMITS
                from servers.qrlogin.app import start_qrlogin

                started[server_name] = start_qrlogin(server_name, fix=spec, redis_url=url, host=host,
                                                     ticket_ttl=ticket_ttl, trusted_proxies=balancer_addresses(host),
                                                     **(HARDENED_LIMITS if hardened else {}))
        lb = start_balancer([f"{k}={v.url}" for k, v in started.items()], policy, kind=balancer,
                            name=f"{name}-lb", host=host, port=port, connect_timeout=connect_timeout,
                            seed=seed, push_backends=[gateway] if gateway is not None else (),
                            max_fails=max_fails, fail_timeout=fail_timeout)
    except BaseException:
        for server in [*started.values(), *([gateway] if gateway is not None else [])]:
            try:
                server.stop()
            except Exception:
                pass
        if redis is not None:
            redis.stop()
        raise
    cluster = ClusterHandle(name, started, lb, url, redis, transport, spec.name)
    cluster.gateway = gateway
    _live[name] = cluster
    runtime.track(f"cluster:{name}", cluster)  # servers.stop_all() stops it too
    return cluster
