"""The balancers notice a dead backend the way nginx does: by requests that fail on it.

``max_fails`` failed attempts within ``fail_timeout`` put a backend out for ``fail_timeout``
(nginx's defaults: 1 and 10 s); after that it is tried again, and one more failure puts it out
again. A balancer with one backend never skips it. Ours keeps the count in
``servers.balancer.backends.PassiveHealth``; nginx gets the same numbers on its ``server`` lines.
Time is a fake clock here, never a sleep.
"""
from __future__ import annotations

import pytest
import requests

from servers.balancer import start_balancer
from servers.balancer.backends import PassiveHealth, as_backends
from servers.balancer.nginx import render_config
from servers.balancer.policies import HashRing, RouteRequest, Router
from tests.test_balancer_proxy import balancer_factory, dead_url, nginx_path, start_backend  # noqa: F401 (a fixture)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_failure_puts_a_backend_out_for_fail_timeout_by_default():
    clock = Clock()
    health = PassiveHealth(clock=clock)
    assert (health.max_fails, health.fail_timeout) == (1, 10.0), "nginx's defaults"
    assert health.failed("A", "connection refused") is True
    assert health.live(["A", "B"]) == ["B"]
    clock.now += 9.9
    assert health.live(["A", "B"]) == ["B"], "still inside fail_timeout"
    clock.now += 0.2
    assert health.live(["A", "B"]) == ["A", "B"], "fail_timeout over: tried again"
    assert health.failed("A") is True, "one more failure after the time out: out again at once"
    assert health.live(["A", "B"]) == ["B"]
    assert [e["event"] for e in health.events] == ["failed", "down", "up", "failed", "down"]


def test_max_fails_counts_failures_within_fail_timeout_only():
    clock = Clock()
    health = PassiveHealth(max_fails=3, fail_timeout=5, clock=clock)
    assert not health.failed("A") and not health.failed("A")
    clock.now += 6  # both earlier failures are now older than fail_timeout
    assert not health.failed("A") and not health.failed("A"), "only two failures within the window"
    assert health.live(["A", "B"]) == ["A", "B"]
    assert health.failed("A"), "the third within 5 s"
    assert health.live(["A", "B"]) == ["B"]


def test_a_success_clears_the_count_and_zero_turns_it_off_and_one_backend_is_never_skipped():
    health = PassiveHealth(max_fails=2, clock=Clock())
    health.failed("A")
    health.succeeded("A")
    assert not health.failed("A"), "the count started again after the success"
    off = PassiveHealth(max_fails=0)
    assert not any(off.failed("A") for _ in range(5)) and off.live(["A", "B"]) == ["A", "B"]
    single = PassiveHealth()
    single.failed("A")
    assert single.live(["A"]) == ["A"], "nginx ignores max_fails for a single server"


def test_ticket_hash_moves_only_the_dead_servers_tickets():
    ring = HashRing(["A", "B", "C"])
    router = Router("ticket_hash", ["A", "B", "C"])
    tickets = [f"t{i}" for i in range(300)]
    before = {t: ring.lookup(t) for t in tickets}
    after = {t: router.choose(RouteRequest("x", f"/api/tickets/{t}"), live=["B", "C"])[0] for t in tickets}
    assert "A" not in after.values()
    assert all(after[t] == before[t] for t in tickets if before[t] != "A"), "the other tickets stay put"
    assert router.choose(RouteRequest("x", "/api/tickets"), live=["C"])[0] == "C"


def test_our_balancer_skips_a_crashed_backend_after_max_fails_and_tries_it_again_later(balancer_factory):
    a, b = start_backend("A"), start_backend("B")
    lb = balancer_factory([a, b], kind="python", max_fails=2, fail_timeout=10)
    clock = Clock()
    lb._impl.call(lambda app: setattr(app.health, "_clock", clock))
    a.crash()
    answers = [requests.get(lb.url + "/plain", timeout=10) for _ in range(8)]
    failed = [r for r in answers if r.status_code == 502]
    assert len(failed) == 2 and all(r.json()["backend"] == "A" for r in failed), [r.status_code for r in answers]
    assert answers[-1].status_code == 200 and {r.headers["X-Served-By"] for r in answers[-4:]} == {"B"}
    events = lb.health_log()
    assert list(events["event"]) == ["failed", "failed", "down"] and set(events["backend"]) == {"A"}
    log = lb.routing_log()
    assert list(log[log["backend"] == "A"]["status"]) == [502, 502], "the window: two requests met the dead A"

    clock.now += 10.5  # fail_timeout is over: A gets one request again, fails, and is out again
    again = [requests.get(lb.url + "/plain", timeout=10) for _ in range(4)]
    assert [r.status_code for r in again].count(502) == 1, [r.status_code for r in again]
    assert list(lb.health_log()["event"])[-3:] == ["up", "failed", "down"]


def test_every_backend_out_is_a_502_and_a_single_backend_is_always_tried(balancer_factory):
    lb = balancer_factory([f"Y={dead_url()}", f"Z={dead_url()}"], kind="python")
    first = [requests.get(lb.url + "/plain", timeout=10) for _ in range(2)]
    assert {r.json()["backend"] for r in first} == {"Y", "Z"}
    none_live = requests.get(lb.url + "/plain", timeout=10)
    assert none_live.status_code == 502 and none_live.json()["backend"] is None, none_live.text
    single = balancer_factory([f"Z={dead_url()}"], kind="python", name="single")
    assert [requests.get(single.url + "/plain", timeout=10).json()["backend"] for _ in range(3)] == ["Z"] * 3


def test_nginx_config_carries_the_same_parameters(tmp_path):
    backends = as_backends(["A=http://127.0.0.1:8001", "B=http://127.0.0.1:8002"])
    text = render_config(backends, "round_robin", directory=str(tmp_path), host="127.0.0.1", port=8080)
    assert "server 127.0.0.1:8001 max_fails=1 fail_timeout=10s;" in text, "nginx's defaults, written out"
    text = render_config(backends, "ticket_hash", directory=str(tmp_path), host="127.0.0.1", port=8080,
                         max_fails=3, fail_timeout=0.5)
    assert "server 127.0.0.1:8002 max_fails=3 fail_timeout=500ms;" in text
    for kept in ("proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;",
                 "proxy_buffering off;", "proxy_next_upstream off;"):
        assert kept in text, kept


@pytest.mark.nginx
def test_nginx_skips_a_dead_backend_after_one_failed_request(balancer_factory):
    if nginx_path() is None:
        pytest.skip("no nginx")
    b = start_backend("B")
    lb = balancer_factory([f"Z={dead_url()}", b], kind="nginx", max_fails=1, fail_timeout=60)
    statuses = [requests.get(lb.url + "/plain", timeout=10).status_code for _ in range(6)]
    assert statuses.count(502) == 1 and statuses[-1] == 200, statuses


def test_a_failure_while_out_keeps_it_out_longer_without_a_second_down():
    clock = Clock()
    health = PassiveHealth(clock=clock)
    health.failed("A")
    clock.now += 5
    assert health.failed("A"), "a request already in flight when it went out fails too"
    clock.now += 9  # 14 s after the first failure, 9 s after the second
    assert health.live(["A", "B"]) == ["B"]
    assert [e["event"] for e in health.events] == ["failed", "down", "failed"]
