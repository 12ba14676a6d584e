"""The ``gateway`` fix: a separate push tier holds every browser connection.

What must hold: app servers keep no push connection (their hubs stay empty) while the gateway
holds them all; the balancer sends the push routes to the gateway and the rest to the app
servers; a confirm on any app server reaches the browser, with every transport, both
balancers, N = 2 and 3; only the app servers (who know the shared secret) may publish.
"""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from servers import runtime
from servers.clients.qr import TRANSPORTS, AsyncBrowser, AsyncPhone, login_many
from servers.cluster import start_cluster
from servers.qrlogin.fixes.gateway_tier import GatewayApp, start_gateway
from servers.qrlogin.app import start_qrlogin
from servers.qrlogin.fixes.gateway import GatewayHub, gateways_key, secret_key
from servers.redisproc import start_redis
from tests.conftest import nginx_path

FIX = "gateway"
PUSH_ROUTES = {"/api/tickets/{id}/events", "/api/tickets/{id}/ws", "/api/tickets/{id}/longpoll"}


@pytest.fixture
def tier(redis_url):
    """A gateway GW and two app servers A and B with the gateway fix, sharing one Redis."""
    gateway = start_gateway("GW", redis_url=redis_url)
    a = start_qrlogin("A", fix=FIX, redis_url=redis_url)
    b = start_qrlogin("B", fix=FIX, redis_url=redis_url)
    return gateway, a, b


async def login_via_tier(gateway, a, b, transport: str):
    """Create on A; watch on the gateway (short polling: on A, it reads Redis); scan and confirm on B."""
    browser, phone = AsyncBrowser(a.url, transport), AsyncPhone(b.url)
    ticket = (await browser.create_ticket())["ticket"]
    watcher = browser
    if transport != "poll":
        watcher = AsyncBrowser(gateway.url, transport)
        watcher.cookies = browser.cookies  # the same browser, talking to the push tier
    channel = await watcher.open_channel(ticket)
    await phone.login()
    await phone.scan(ticket)
    confirm = await phone.confirm(ticket)
    seen = await channel.wait_for("confirmed", timeout=5)
    redeemed = await browser.redeem(ticket)
    await channel.close()
    return channel.served_by, confirm["served_by"], seen["state"], redeemed["user"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_confirm_on_b_reaches_the_browser_on_the_gateway(tier, transport):
    gateway, a, b = tier
    on, confirmed_on, state, user = runtime.run(login_via_tier(gateway, a, b, transport))
    assert on == ("A" if transport == "poll" else "GW"), f"the {transport} channel should be held by {on}"
    assert confirmed_on == "B"
    assert (state, user) == ("confirmed", "alice"), f"the browser should see 'confirmed' and log in; saw {state}"
    stats = b.call(lambda app: dict(app.push.stats))
    assert stats["messages_out"] == 2 and stats["bytes_out"] > 100, f"B posts scan and confirm to the gateway: {stats}"


def test_publish_without_the_secret_is_refused(tier):
    gateway, a, _ = tier
    url = gateway.url + "/internal/publish"
    event = {"ticket": "abc", "state": "confirmed", "version": 3, "at": 0}
    for headers in ({}, {"X-Internal-Secret": "guessed"}):
        response = requests.post(url, json=event, headers=headers)
        assert response.status_code == 401, f"a publish without the shared secret must be refused: {response.text}"
        assert response.json()["error"] == "bad_internal_secret" and response.headers["X-Served-By"] == "GW"
    secret = a.call(lambda app: app.push.shared_secret())
    assert secret and secret == gateway.app.secret, "app servers and gateway agree on the secret through Redis"
    ok = requests.post(url, json=event, headers={"X-Internal-Secret": secret})
    assert ok.status_code == 200 and ok.json() == {"delivered": 0, "server": "GW"}, ok.text
    bad = requests.post(url, json={"ticket": "abc", "state": "hacked", "version": "3"},
                        headers={"X-Internal-Secret": secret})
    assert bad.status_code == 400 and bad.json()["error"] == "bad_event", bad.text
    assert gateway.call(lambda app: app.push.stats["refused"]) == 2


def test_gateway_announces_itself_and_withdraws_on_stop(tier, redis_server):
    gateway, a, _ = tier
    client = redis_server.client()
    assert client.smembers(gateways_key("qr")) == {gateway.url}
    assert client.get(secret_key("qr")) == gateway.app.secret
    assert a.call(lambda app: app.push.gateway_urls()) == [gateway.url]
    gateway.stop()
    assert client.smembers(gateways_key("qr")) == set(), "a stopped gateway must withdraw its URL"


def test_a_dead_gateway_is_counted_and_forgotten(tier, redis_server):
    gateway, a, b = tier
    gateway_url = gateway.url
    gateway.crash()
    redis_server.client().sadd(gateways_key("qr"), gateway_url)  # as a SIGKILLed process would leave it

    async def confirm_with_no_gateway():
        browser, phone = AsyncBrowser(a.url, "poll"), AsyncPhone(b.url)
        ticket = (await browser.create_ticket())["ticket"]
        await phone.login()
        await phone.scan(ticket)
        return await browser.state(ticket)

    assert runtime.run(confirm_with_no_gateway())["state"] == "scanned", "the state is safe in Redis"
    stats = b.call(lambda app: dict(app.push.stats))
    assert stats["publish_failed"] == 1, stats
    assert redis_server.client().smembers(gateways_key("qr")) == set(), "the stale gateway URL is dropped"


BALANCERS = ["python", pytest.param("nginx", marks=pytest.mark.nginx)]


@pytest.mark.parametrize("balancer", BALANCERS)
@pytest.mark.parametrize("n", [2, 3])
def test_every_login_completes_in_a_cluster(redis_url, n, balancer):
    if balancer == "nginx" and nginx_path() is None:
        pytest.skip("nginx not found (Debian: apt-get install nginx)")
    with start_cluster(n, "round_robin", fix=FIX, balancer=balancer, redis_url=redis_url) as cluster:
        assert cluster.gateway is not None, "fix='gateway' starts the push tier with the cluster"
        for transport in TRANSPORTS:
            results = login_many(cluster.url, transport, n=10, concurrency=10, timeout=5, poll_interval=0.05)
            failed = [r["error"] for r in results if not r["ok"]]
            assert not failed, f"{transport}: {len(failed)}/10 logins failed with fix={FIX}: {failed[:3]}"
            holders = {r["served_by_channel"] for r in results}
            assert holders == ({"GW"} if transport != "poll" else holders - {"GW"}), holders
        log = cluster.balancer.wait_routing_log(4 * 10 * 5)
        push = log[log["route"].isin(PUSH_ROUTES)]
        assert len(push) and set(push["backend"]) == {"GW"}, f"push routes go to the gateway: {set(push['backend'])}"
        rest = log[~log["route"].isin(PUSH_ROUTES)]
        assert "GW" not in set(rest["backend"]), "everything else goes to the app servers"
        assert set(rest["backend"]) == set(cluster.servers), "round robin over every app server"


@pytest.mark.parametrize("balancer", BALANCERS)
def test_app_servers_hold_no_push_connection(redis_url, balancer):
    if balancer == "nginx" and nginx_path() is None:
        pytest.skip("nginx not found (Debian: apt-get install nginx)")
    with start_cluster(2, "round_robin", fix=FIX, balancer=balancer, redis_url=redis_url) as cluster:

        async def open_channels():
            hub = cluster.gateway.app.push
            all_held = asyncio.get_running_loop().create_future()
            registered = hub.on_first_subscriber

            def on_first_subscriber(ticket):  # the gateway registered one more channel
                registered(ticket)
                if len(hub.channels) == 3 and not all_held.done():
                    all_held.set_result(True)

            hub.on_first_subscriber = on_first_subscriber
            channels = []
            for transport in ("sse", "ws", "longpoll"):
                browser = AsyncBrowser(cluster.url, transport)
                ticket = (await browser.create_ticket())["ticket"]
                channels.append(await browser.open_channel(ticket))
            await asyncio.wait_for(all_held, 5)  # the long poll's held request has arrived too
            return channels

        channels = runtime.run(open_channels())
        try:
            held = {name: server.call(lambda app: dict(app.push.channels)) for name, server in cluster.servers.items()}
            assert held == {"A": {}, "B": {}}, f"app servers must hold no push channel: {held}"
            on_gateway = cluster.gateway.call(lambda app: sorted(app.push.channels))
            assert len(on_gateway) == 3, f"the gateway holds the SSE, WebSocket and long-poll channels: {on_gateway}"
            assert {c.served_by for c in channels if c.browser.transport != "longpoll"} == {"GW"}
        finally:
            for channel in channels:
                runtime.run(channel.close())


def test_redis_restart_then_a_login_still_completes(redis_url):
    redis = start_redis()
    try:
        gateway = start_gateway("GW", redis_url=redis.url)
        # gateway_refresh_s=0: look the gateways up on every publish, also right after the restart,
        # when the set is empty until the gateway announces itself again (the last known is kept).
        a = start_qrlogin("A", fix=FIX, redis_url=redis.url, gateway_refresh_s=0)
        b = start_qrlogin("B", fix=FIX, redis_url=redis.url, gateway_refresh_s=0)
        assert runtime.run(login_via_tier(gateway, a, b, "sse"))[2] == "confirmed"
        redis.restart()
        assert not redis.client().exists(gateways_key("qr")), "a restarted Redis has forgotten the gateway"
        assert runtime.run(login_via_tier(gateway, a, b, "sse"))[2:] == ("confirmed", "alice")
        assert runtime.run(login_via_tier(gateway, a, b, "ws"))[2:] == ("confirmed", "alice")
    finally:
        runtime.stop_all()
        redis.stop()


def test_stop_closes_the_publisher(tier):
    _, a, _ = tier
    hub = a.app.push
    assert isinstance(hub, GatewayHub) and hub._peers is not None
    a.crash()
    assert hub._peers is None, "a crashed app server must not keep publishing"


def test_publishes_reuse_one_kept_alive_connection_to_the_gateway(tier):
    """Like the registry's forwards, a publish costs a round trip on an open connection, not a
    TCP handshake each time: the latency comparison of lesson 08 puts both on the same footing."""
    gateway, a, b = tier
    runtime.run(login_via_tier(gateway, a, b, "sse"))
    peers = b.app.push._peers
    kept = list(peers.idle.get(gateway.url, []))
    assert len(kept) == 1 and not kept[0].closed(), "one connection to the gateway, kept open after the publishes"
    runtime.run(login_via_tier(gateway, a, b, "sse"))
    assert peers.idle[gateway.url] == kept, "the next login's publishes went over the same connection"
    assert b.app.push.stats["publish_failed"] == 0


def test_cli_prints_its_url_and_stops_on_sigterm(redis_server):
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen([sys.executable, "-m", "servers", "gateway", "--port", "0", "--redis", redis_server.url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)
    try:
        info = json.loads(process.stdout.readline())
        assert info["url"].startswith("http://127.0.0.1:") and info["name"] == "gateway"
        response = requests.post(info["url"] + "/internal/publish", json={})
        assert response.status_code == 401 and response.headers["X-Served-By"] == "gateway"
        assert redis_server.client().sismember(gateways_key("qr"), info["url"])
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, process.stderr.read()
    assert not redis_server.client().sismember(gateways_key("qr"), info["url"]), "withdrawn at exit"


def test_cluster_of_processes_with_a_gateway_process(redis_url):
    with start_cluster(2, "round_robin", fix=FIX, redis_url=redis_url, processes=True) as cluster:
        assert cluster.gateway.pid != cluster.servers["A"].pid
        results = login_many(cluster.url, "sse", n=4, concurrency=4, timeout=5)
        assert all(r["ok"] for r in results), [r["error"] for r in results]
        assert {r["served_by_channel"] for r in results} == {"GW"}
    assert not cluster.gateway.running, "the cluster stops its gateway process"


def test_gateway_app_is_only_the_push_routes(tier):
    gateway, _, _ = tier
    assert isinstance(gateway.app, GatewayApp)
    response = requests.post(gateway.url + "/api/tickets")
    assert response.status_code == 404 and response.json()["error"] == "not_found", "tickets are made by app servers"


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["sse", "ws", "longpoll"])
def test_chromium_logs_in_through_the_push_tier(redis_url, page, transport):
    from servers.clients.qr import Phone

    with start_cluster(2, "round_robin", fix=FIX, redis_url=redis_url) as cluster:
        page.goto(f"{cluster.url}/login?transport={transport}")
        page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
        ticket = page.text_content("#ticket")
        phone = Phone(cluster.url)
        phone.login()
        phone.scan(ticket)
        phone.confirm(ticket)
        page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
        assert page.text_content("#status") == "logged in as alice"
        log = cluster.routing_log()
        push = log[log["route"].isin(PUSH_ROUTES)]
        assert len(push) and set(push["backend"]) == {"GW"}, push
        assert set(log[log["route"] == "/login"]["backend"]) <= set(cluster.servers), "pages come from app servers"
