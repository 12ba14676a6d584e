"""The QR-login bug, reproduced on a real cluster (2 QR-login servers, real Redis, a balancer),
under both balancers, and the ticket_hash fix that routes the phone's confirm to the browser's
server. Each login's outcome is checked against where its requests went: the bug is that a
confirm handled by another server than the one holding the browser's channel never reaches it.
"""
from __future__ import annotations

import asyncio
import os
import signal

import pytest
import requests

from servers import runtime
from servers.balancer.nginx import HOW_TO_GET_NGINX, NginxMissing, find_nginx
from servers.cluster import start_cluster

pytest.importorskip("servers.clients.qr", reason="the simulated QR clients (servers/clients/qr.py) are missing")
from servers.clients.qr import AsyncBrowser, AsyncPhone, login_once  # noqa: E402


def _nginx_available() -> bool:
    try:
        find_nginx()
        return True
    except NginxMissing:
        return False


BALANCERS = ["python", pytest.param("nginx", marks=[pytest.mark.nginx, pytest.mark.skipif(
    not _nginx_available(), reason=HOW_TO_GET_NGINX)])]
PUSH_TRANSPORTS = ["sse", "ws", "longpoll"]
WAIT_S = 1.0  # how long a browser waits for "confirmed" before the login counts as failed


@pytest.fixture
def cluster_factory(redis_url):
    started = []

    def factory(*args, **kwargs):
        cluster = start_cluster(*args, redis_url=redis_url, **kwargs)
        started.append(cluster)
        return cluster

    yield factory
    for cluster in started:
        cluster.stop()


async def held_by(cluster, ticket: str, timeout: float = 10.0) -> str:
    """The server that holds the browser's push channel for ``ticket`` (waits until one does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        holders = [name for name, handle in cluster.servers.items() if handle.app.push.channels.get(ticket)]
        if len(holders) == 1:
            return holders[0]
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no server holds a channel for ticket {ticket}")


async def login_and_trace(cluster, transport: str, phone: AsyncPhone) -> dict:
    """One login, phone acting only once the browser's channel is held (as a human scanning would)."""
    browser = AsyncBrowser(cluster.url, transport)
    ticket = (await browser.create_ticket())["ticket"]
    channel = await browser.open_channel(ticket)
    try:
        channel_on = await held_by(cluster, ticket)
        if phone.token is None:
            await phone.login()
        scan = await phone.scan(ticket)
        if transport == "longpoll" and scan["served_by"] == channel_on:
            await channel.wait_for("scanned", 10)  # that poll was answered; the browser sends the next one
            await asyncio.sleep(0)
            channel_on = await held_by(cluster, ticket)
        confirm = await phone.confirm(ticket)
        try:
            await channel.wait_for("confirmed", WAIT_S)
            ok = True
        except asyncio.TimeoutError:
            ok = False
        return {"ticket": ticket, "ok": ok, "channel_on": channel_on, "confirm_on": confirm["served_by"]}
    finally:
        await channel.close()


def run_logins(cluster, transport: str, n: int) -> list[dict]:
    """``n`` logins in a row; every other one by a phone that is already logged in (one request
    fewer), which shifts where round robin puts the confirm, as other users' traffic would."""

    async def logins():
        results, phone = [], None
        for i in range(n):
            if i % 2 == 0:
                phone = AsyncPhone(cluster.url)
            results.append(await login_and_trace(cluster, transport, phone))
        return results

    return runtime.run(logins(), timeout=n * (WAIT_S + 15))


@pytest.mark.slow
@pytest.mark.parametrize("balancer", BALANCERS)
@pytest.mark.parametrize("transport", PUSH_TRANSPORTS)
def test_round_robin_breaks_login_when_confirm_lands_elsewhere(cluster_factory, balancer, transport):
    cluster = cluster_factory(2, "round_robin", balancer=balancer)
    results = run_logins(cluster, transport, 8)
    for r in results:
        expected = r["channel_on"] == r["confirm_on"]
        assert r["ok"] == expected, (
            f"login {r['ticket']}: channel on {r['channel_on']}, confirm on {r['confirm_on']}: "
            f"expected {'success' if expected else 'failure'} with fix=none, got {'success' if r['ok'] else 'failure'}")
    outcomes = [r["ok"] for r in results]
    assert not all(outcomes), f"the bug must show with {transport} behind round robin: every login succeeded"
    assert any(outcomes), f"a confirm on the browser's own server must still succeed: {results}"


@pytest.mark.parametrize("balancer", BALANCERS)
def test_short_polling_is_immune(cluster_factory, balancer):
    """Short polling reads the shared state on every request, so it does not matter which server it asks."""
    cluster = cluster_factory(2, "round_robin", balancer=balancer)
    results = [login_once(cluster.url, "poll", 5.0, poll_interval=0.05) for _ in range(4)]
    assert all(r["ok"] for r in results), [r["error"] for r in results]
    assert {r["served_by_confirm"] for r in results} == {"A", "B"} or len(results) < 2


@pytest.mark.slow
@pytest.mark.parametrize("balancer", BALANCERS)
@pytest.mark.parametrize("transport", PUSH_TRANSPORTS)
def test_ticket_hash_sends_the_confirm_to_the_browsers_server(cluster_factory, balancer, transport):
    cluster = cluster_factory(2, fix="ticket_hash", balancer=balancer)
    assert cluster.policy == "ticket_hash"
    results = run_logins(cluster, transport, 6)
    assert all(r["ok"] for r in results), f"every login must complete with ticket_hash: {results}"
    assert all(r["channel_on"] == r["confirm_on"] for r in results)
    log = cluster.balancer.wait_routing_log(6 * 4)
    with_ticket = log.dropna(subset=["ticket"])
    per_ticket = with_ticket.groupby("ticket")["backend"].nunique()
    assert (per_ticket == 1).all(), f"each ticket's requests must all go to one server:\n{with_ticket}"
    assert set(with_ticket["client"]) == {"127.0.0.2", "127.0.0.3"}, "browser and phone are different clients"


def test_login_once_through_the_cluster_and_the_routing_log(cluster_factory):
    cluster = cluster_factory(2, "ticket_hash")
    result = cluster.login_once("sse", 5.0)
    assert result["ok"], result
    log = cluster.routing_log()
    rows = log[log["ticket"] == result["ticket"]]
    assert set(rows["backend"]) == {result["served_by_channel"]}
    assert {"/api/tickets/{id}/events", "/api/tickets/{id}/confirm"} <= set(rows["route"])
    assert list(log.columns) == ["time", "client", "method", "path", "route", "ticket", "backend", "backend_url",
                                 "status"]


def test_sticky_policies_pin_each_client_not_the_ticket(cluster_factory):
    """ip_hash pins the browser and the phone separately: with different addresses they may land apart."""
    cluster = cluster_factory(2, "ip_hash")
    browser_server = cluster.browser("sse").create_ticket()["served_by"]
    phones = {}
    for last in range(3, 40):  # different phones (addresses) until one lands on the other server
        phone = cluster.phone(source_address=f"127.0.0.{last}")
        phones[last] = phone.login()["served_by"]
        phone.close()
        if phones[last] != browser_server:
            break
    assert any(server != browser_server for server in phones.values()), \
        "some phone address must hash to the other server: ip_hash cannot bring it to the browser's"
    log = cluster.routing_log()
    per_client = log.groupby("client")["backend"].nunique()
    assert (per_client == 1).all(), "ip_hash must keep each client on one server"


def test_crash_gives_502_for_that_server_only(cluster_factory):
    cluster = cluster_factory(2, "round_robin")
    cluster.crash("A")
    answers = [requests.post(cluster.url + "/api/tickets", timeout=10) for _ in range(2)]
    by_status = {r.status_code: r for r in answers}
    assert set(by_status) == {201, 502}
    assert by_status[502].json()["backend"] == "A" and by_status[201].headers["X-Served-By"] == "B"
    with pytest.raises(KeyError, match="A, B"):
        cluster.crash("Q")


@pytest.mark.slow
@pytest.mark.parametrize("balancer", BALANCERS)
def test_cluster_of_processes_logs_in_and_crash_kills(redis_url, balancer):
    cluster = start_cluster(2, fix="ticket_hash", balancer=balancer, processes=True, redis_url=redis_url)
    try:
        pids = {name: server.pid for name, server in cluster.servers.items()}
        assert all(r["ok"] for r in [cluster.login_once("ws", 5.0) for _ in range(2)])
        cluster.crash("A")
        assert cluster.servers["A"].process.returncode == -signal.SIGKILL
        answers = [requests.get(cluster.url + f"/api/tickets/t{k}", timeout=10) for k in range(12)]
        down = [r for r in answers if r.status_code == 502]
        assert down and all(r.json()["backend"] == "A" for r in down), "tickets hashed to A: 502 naming A"
        assert all(r.status_code == 404 for r in answers if r.status_code != 502), "B still answers"
    finally:
        cluster.stop()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("balancer", BALANCERS)
def test_behind_the_balancer_the_confirm_page_shows_the_browsers_address(cluster_factory, balancer):
    """The balancer appends X-Forwarded-For, and start_cluster makes it a trusted proxy of its
    servers (servers.limits.client_address): the ticket records the browser, not the balancer."""
    from redis import Redis

    cluster = cluster_factory(2, balancer=balancer)
    browser, phone = cluster.browser("sse"), cluster.phone()  # from 127.0.0.2 and 127.0.0.3
    ticket = browser.create_ticket()["ticket"]
    phone.login()
    phone.scan(ticket)
    page = requests.get(f"{cluster.url}/m/{ticket}", timeout=10)
    assert page.status_code == 200 and '<dd id="browser-ip">127.0.0.2</dd>' in page.text
    stored = Redis.from_url(cluster.redis_url, decode_responses=True).hgetall(f"qr:ticket:{ticket}")
    assert (stored["ip"], stored["phone_ip"]) == ("127.0.0.2", "127.0.0.3")


def test_restarting_a_cluster_under_the_same_name_replaces_it(cluster_factory):
    first = cluster_factory(1)
    second = cluster_factory(1)
    assert first.state == "stopped" and second.state == "running"
    assert requests.post(second.url + "/api/tickets", timeout=10).status_code == 201


@pytest.mark.slow
@pytest.mark.parametrize("balancer", BALANCERS)
def test_cookie_stickiness_pins_each_client_and_does_not_fix_login(cluster_factory, balancer):
    cluster = cluster_factory(2, "cookie", balancer=balancer)
    results = run_logins(cluster, "sse", 6)
    assert all(r["ok"] == (r["channel_on"] == r["confirm_on"]) for r in results), results
    assert not all(r["ok"] for r in results), "the phone is another client: its cookie pins it, not the ticket"
    log = cluster.balancer.wait_routing_log(6 * 4)
    browser_rows = log[(log["client"] == "127.0.0.2") & log["ticket"].notna()]
    assert (browser_rows.groupby("ticket")["backend"].nunique() == 1).all(), \
        "the sticky cookie keeps each browser on one server"


def test_a_hardened_cluster_of_processes_shares_one_password_budget(redis_url):
    """``--hardened`` reaches every server process: 10 password attempts per address per minute
    for the whole cluster, however the balancer spreads them (round robin over 3 servers)."""
    cluster = start_cluster(3, processes=True, redis_url=redis_url, hardened=True, name="hardened")
    try:
        codes = [requests.post(cluster.url + "/api/phone/login", json={"user": "alice", "password": f"guess{k}"},
                               timeout=10).status_code for k in range(13)]
        served = {r["backend"] for r in cluster.routing_log().to_dict("records")}
    finally:
        cluster.stop()
    assert len(served) == 3, served  # the attempts were spread over every server
    assert codes[:10] == [401] * 10 and codes[10:] == [429] * 3, codes
