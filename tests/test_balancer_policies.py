"""Each routing policy's promise, checked on the pure functions (no sockets)."""
from __future__ import annotations

import pytest

from servers.balancer import policies
from servers.balancer.backends import as_backend, as_backends
from servers.balancer.nginx import render_config
from servers.balancer.policies import HashRing, RouteRequest, Router, route_of, ticket_from

NAMES = ["A", "B", "C"]


def test_round_robin_goes_in_turn():
    assert [policies.round_robin(i, NAMES) for i in range(7)] == ["A", "B", "C", "A", "B", "C", "A"]
    router = Router("round_robin", NAMES)
    assert [router.choose(RouteRequest("127.0.0.2"))[0] for _ in range(4)] == ["A", "B", "C", "A"]


def test_least_conn_picks_the_least_busy_and_breaks_ties_in_turn():
    assert policies.least_conn({"A": 2, "B": 0, "C": 1}, NAMES) == "B"
    assert [policies.least_conn({"A": 1, "B": 1, "C": 5}, NAMES, i) for i in range(3)] == ["A", "B", "A"]
    router = Router("least_conn", NAMES)
    router.opened("A")
    router.opened("B")
    assert router.choose(RouteRequest("x"))[0] == "C"
    router.opened("C")
    router.closed("A")
    assert router.choose(RouteRequest("x"))[0] == "A"


def test_ip_hash_is_stable_per_client_and_spreads_clients():
    router = Router("ip_hash", NAMES)
    for client in ("127.0.0.2", "127.0.0.3", "10.1.2.3"):
        chosen = {router.choose(RouteRequest(client, path=f"/p{i}"))[0] for i in range(10)}
        assert len(chosen) == 1, f"{client} went to {chosen}"
    spread = {policies.ip_hash(f"10.0.{i // 256}.{i % 256}", NAMES) for i in range(100)}
    assert spread == set(NAMES)


def test_cookie_policy_sets_then_follows_the_cookie():
    backend, set_cookie = policies.cookie({}, NAMES, counter=1)
    assert (backend, set_cookie) == ("B", True)
    assert policies.cookie({policies.STICKY_COOKIE: "C"}, NAMES, counter=0) == ("C", False)
    # A cookie naming a backend that is gone is replaced.
    assert policies.cookie({policies.STICKY_COOKIE: "Z"}, NAMES, counter=0) == ("A", True)
    router = Router("cookie", NAMES)
    first, _ = router.choose(RouteRequest("phone"))
    assert all(router.choose(RouteRequest("phone", cookies={"spl_backend": first}))[0] == first for _ in range(5))


@pytest.mark.parametrize("path, query, ticket", [
    ("/api/tickets/abc123/events", "", "abc123"),
    ("/api/tickets/abc123", "", "abc123"),
    ("/api/tickets/abc-_9/confirm", "", "abc-_9"),
    ("/m/abc123", "", "abc123"),
    ("/qr/abc123.png", "", "abc123"),
    ("/login", "transport=sse&ticket=t9", "t9"),
    ("/api/tickets", "", None),
    ("/api/phone/login", "", None),
    ("/login", "transport=ws", None),
])
def test_ticket_is_found_in_path_or_query(path, query, ticket):
    assert ticket_from(path, query) == ticket


def test_route_hides_the_ticket_id():
    assert route_of("/api/tickets/abc/confirm") == "/api/tickets/{id}/confirm"
    assert route_of("/qr/abc.png") == "/qr/{id}.png"
    assert route_of("/login") == "/login"


def test_ticket_hash_is_stable_and_puts_browser_and_phone_together():
    router = Router("ticket_hash", NAMES)
    for ticket in ("t1", "t2", "t3", "t4"):
        browser = router.choose(RouteRequest("127.0.0.2", path=f"/api/tickets/{ticket}/events"))[0]
        phone = router.choose(RouteRequest("127.0.0.3", path=f"/api/tickets/{ticket}/confirm"))[0]
        page = router.choose(RouteRequest("127.0.0.3", path=f"/m/{ticket}"))[0]
        assert browser == phone == page
    # Requests without a ticket are spread in turn rather than piled on one backend.
    assert {router.choose(RouteRequest("x", path="/api/tickets", method="POST"))[0] for _ in range(3)} == set(NAMES)


def test_consistent_hashing_moves_about_one_in_n_keys():
    keys = [f"ticket-{i}" for i in range(3000)]
    three = HashRing(["A", "B", "C"])
    four = HashRing(["A", "B", "C", "D"])
    before = {k: three.lookup(k) for k in keys}
    after = {k: four.lookup(k) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "D" for k in moved), "adding D may only move keys to D"
    assert 0.15 < len(moved) / len(keys) < 0.35, f"about 1/4 should move, {len(moved) / len(keys):.2f} did"
    # Removing B moves exactly B's keys; everyone else stays.
    two = HashRing(["A", "C"])
    for k in keys:
        if before[k] != "B":
            assert two.lookup(k) == before[k]
    # The load is roughly even with virtual nodes.
    share = {n: sum(1 for k in keys if before[k] == n) / len(keys) for n in "ABC"}
    assert all(0.2 < s < 0.46 for s in share.values()), share
    # Compare: modulo hashing would move about 3/4 of the keys.
    modulo_moved = sum(1 for k in keys if policies._hash64(k) % 3 != policies._hash64(k) % 4)
    assert modulo_moved > 2 * len(moved)


def test_random_is_seedable_and_uses_every_backend():
    first = Router("random", NAMES, seed=7)
    second = Router("random", NAMES, seed=7)
    picks = [first.choose(RouteRequest("x"))[0] for _ in range(60)]
    assert picks == [second.choose(RouteRequest("x"))[0] for _ in range(60)]
    assert set(picks) == set(NAMES)


def test_unknown_policy_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="round_robin"):
        Router("fastest", NAMES)


def test_backends_from_urls_names_and_handles():
    class Handle:
        name, url = "A", "http://127.0.0.1:8001"

    assert as_backend(Handle()).name == "A"
    assert as_backend("B=http://127.0.0.1:8002") == as_backend("http://127.0.0.1:8002", "B")
    assert as_backend("http://127.0.0.1:8003").name == "127.0.0.1:8003"
    with pytest.raises(ValueError, match="unique"):
        as_backends(["A=http://127.0.0.1:1", "A=http://127.0.0.1:2"])
    with pytest.raises(ValueError, match="host and a port"):
        as_backend("http://127.0.0.1")


@pytest.mark.parametrize("policy, expected", [
    ("round_robin", "proxy_pass http://spl_backends;"),
    ("least_conn", "least_conn;"),
    ("ip_hash", "hash $remote_addr;"),
    ("ticket_hash", "hash $ticket_key consistent;"),
    ("cookie", "proxy_pass http://$sticky_upstream;"),
    ("random", "random;"),
])
def test_nginx_config_per_policy(policy, expected, tmp_path):
    backends = as_backends(["A=http://127.0.0.1:8001", "B=http://127.0.0.1:8002"])
    text = render_config(backends, policy, directory=str(tmp_path), host="127.0.0.1", port=8080)
    assert expected in text
    for needed in ("proxy_buffering off;", "proxy_http_version 1.1;", "proxy_set_header Host $http_host;",
                   "$proxy_add_x_forwarded_for", "proxy_set_header Upgrade $http_upgrade;", "proxy_read_timeout 1h;",
                   "~^/(api/tickets|m|qr)/(?<t>[^/.]+) $t;", "server 127.0.0.1:8001 max_fails=1 fail_timeout=10s;", "daemon off;",
                   "listen 127.0.0.1:8080;"):
        assert needed in text, needed


def test_missing_nginx_says_how_to_install_it(monkeypatch):
    from servers.balancer import nginx as nginx_driver
    from servers.balancer import start_balancer

    monkeypatch.delenv("NGINX", raising=False)
    monkeypatch.setattr(nginx_driver.shutil, "which", lambda name: None)
    monkeypatch.setattr(nginx_driver.os.path, "isfile", lambda path: False)
    with pytest.raises(nginx_driver.NginxMissing) as info:
        start_balancer(["A=http://127.0.0.1:1"], kind="nginx")
    message = str(info.value)
    for hint in ("apt-get install nginx", "brew install nginx", "conda install -c conda-forge nginx", 'kind="python"'):
        assert hint in message


def test_unknown_kind_and_policy_are_refused():
    from servers.balancer import start_balancer

    with pytest.raises(ValueError, match="python, nginx"):
        start_balancer(["A=http://127.0.0.1:1"], kind="haproxy")
    with pytest.raises(ValueError, match="ticket_hash"):
        start_balancer(["A=http://127.0.0.1:1"], policy="sticky")
