"""A balancing policy written as a plain function, plugged into our balancer: the exercise's ``ticket_hash``.

The exercise asks for ``route(path, query, backends) -> backend``, a few lines a learner can
write and test without knowing the balancer. :class:`FunctionRouter` wraps it as a
:class:`~servers.balancer.policies.Router`, :func:`use_route` installs it in a running balancer
and :func:`start_cluster_with_route` starts a cluster routed by it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from servers.balancer.policies import RouteRequest, Router


RouteFunction = Callable[[str, str, Sequence[str]], str]


class FunctionRouter(Router):
    """A :class:`~servers.balancer.policies.Router` whose choice is ``route(path, query, backends)``.

    ``backends`` is the list of backend names (``["A", "B", ...]``); the function returns one of
    them. A wrong answer is reported clearly instead of being proxied somewhere.
    """

    def __init__(self, route: RouteFunction, names: Sequence[str]) -> None:
        self.route = route
        super().__init__("round_robin", names)
        self.policy = getattr(route, "__name__", "function")

    def choose(self, request: RouteRequest, live: Sequence[str] | None = None) -> tuple[str, bool]:
        """The function's choice among the backends the balancer's health check calls ``live``
        (all of them when it passes none)."""
        self.counter += 1
        names = list(self.names) if live is None else [n for n in self.names if n in live]
        if not names:
            raise LookupError("no live backend to route to")
        name = self.route(request.path, request.query, names)
        if name not in names:
            raise LookupError(f"the route function returned {name!r}, which is not one of the backends {names}")
        return name, False


def use_route(balancer: Any, route: RouteFunction) -> None:
    """Make our (python) ``balancer`` route every request with ``route(path, query, backends)``."""
    if getattr(balancer, "kind", "python") != "python":
        raise ValueError("only our own balancer (kind='python') can run a Python function as its policy")
    impl = getattr(balancer, "_impl", balancer)  # a BalancerHandle wraps the ServerHandle of the app

    def install(app: Any) -> None:
        app.router = FunctionRouter(route, [b.name for b in app.backends])

    impl.call(install)
    balancer.policy = getattr(route, "__name__", "function")


def start_cluster_with_route(n: int, route: RouteFunction, **options: Any):
    """A cluster of ``n`` servers behind our balancer, routed by ``route(path, query, backends)``."""
    from servers.cluster import start_cluster

    cluster = start_cluster(n, "round_robin", balancer="python", **options)
    use_route(cluster.balancer, route)
    cluster.policy = cluster.balancer.policy
    return cluster
