"""Lesson 07's helpers (lab.lessons.qr_bug) against real clusters: real Redis, our
balancer and real nginx, the simulated browser and phone.

What they must get right for the lesson to be honest: a login succeeds exactly when the phone's
confirm meets the browser's channel; isolated logins under strict round robin follow a fixed
pattern (all fail at N = 2, all succeed at N = 3); random users break that pattern; short polling
is immune; ip_hash pins every client and still fails; a route function plugged into our
balancer (the exercise's ticket_hash) routes every request.
"""
from __future__ import annotations

import random

import pandas as pd
import pytest
import requests

from servers.balancer.nginx import HOW_TO_GET_NGINX, NginxMissing, find_nginx
from servers.balancer.policies import HashRing, ticket_from
from servers.cluster import start_cluster
from lab.lessons import qr_bug

WAIT_S = 1.0  # the browser's wait for "confirmed": the push takes milliseconds, a busy machine more


def _nginx_available() -> bool:
    try:
        find_nginx()
        return True
    except NginxMissing:
        return False


BALANCERS = ["python", pytest.param("nginx", marks=[pytest.mark.nginx, pytest.mark.skipif(
    not _nginx_available(), reason=HOW_TO_GET_NGINX)])]


@pytest.fixture
def cluster_factory(redis_url):
    started = []

    def factory(*args, **kwargs):
        cluster = start_cluster(*args, redis_url=redis_url, name="lesson07-test", **kwargs)
        started.append(cluster)
        return cluster

    yield factory
    for cluster in started:
        cluster.stop()


# ---- pure pieces ---------------------------------------------------------------------------------

def test_user_addresses_are_loopback_and_tell_browser_from_phone():
    rng = random.Random(1)
    pairs = [qr_bug.user_addresses(rng) for _ in range(200)]
    for browser, phone in pairs:
        assert browser.startswith("127.") and phone.startswith("127.")
        assert qr_bug.who(browser) == "browser" and qr_bug.who(phone) == "phone"
    assert len({b for b, _ in pairs}) > 190, "users must have addresses of their own"
    assert qr_bug.who("127.0.0.2") == "browser" and qr_bug.who("127.0.0.3") == "phone"
    assert qr_bug.who("10.1.2.3") == "10.1.2.3"


def test_success_table_rates_errors_and_theory():
    frame = pd.DataFrame({"n_servers": [1] * 4 + [2] * 4, "transport": "sse",
                          "ok": [True] * 4 + [True, False, False, False], "run": [0, 0, 1, 1] * 2})
    table = qr_bug.success_table(frame)
    assert table["success_pct"].tolist() == [100.0, 25.0]
    assert table["theory_pct"].tolist() == [100.0, 50.0]
    assert table["stderr_pct"].tolist() == [0.0, round(100 * (0.25 * 0.75 / 4) ** 0.5, 1)]
    ax = qr_bug.plot_success_vs_servers(frame)
    assert "(%)" in ax.get_ylabel() and "(count)" in ax.get_xlabel()
    assert any("theory" in t.get_text() for t in ax.get_legend().get_texts())


def test_meeting_table_is_strict_one_way_and_tolerant_the_other():
    rows = [{"transport": "sse", "ok": True, "channel_on": "A", "confirm_on": "A", "ticket": f"t{i}", "error": None}
            for i in range(40)]
    rows += [{"transport": "ws", "ok": False, "channel_on": "A", "confirm_on": "B", "ticket": "f", "error": "x"}]
    table = qr_bug.meeting_table(pd.DataFrame(rows))
    assert table.set_index("transport")[["logins", "met", "ok"]].to_dict("index") == {
        "sse": {"logins": 40, "met": 40, "ok": 40}, "ws": {"logins": 1, "met": 0, "ok": 0}}
    late = pd.DataFrame(rows[:39] + [{**rows[39], "ok": False, "error": "late"}])
    qr_bug.meeting_table(late)  # one late push in 40 met logins is tolerated
    with pytest.raises(AssertionError, match="still failed"):
        qr_bug.meeting_table(late.assign(ok=False))
    with pytest.raises(AssertionError, match="another server"):
        qr_bug.meeting_table(pd.DataFrame([{**rows[-1], "ok": True}]))


def test_held_long_poll_is_the_last_one_decided_before_the_confirm():
    t = pd.Timestamp("2026-01-01", tz="UTC")
    log = pd.DataFrame([
        {"time": t, "route": "/api/tickets/{id}/longpoll", "ticket": "k", "backend": "A"},
        {"time": t + pd.Timedelta("1s"), "route": "/api/tickets/{id}/longpoll", "ticket": "k", "backend": "B"},
        {"time": t + pd.Timedelta("2s"), "route": "/api/tickets/{id}/confirm", "ticket": "k", "backend": "B"},
        {"time": t + pd.Timedelta("3s"), "route": "/api/tickets/{id}/longpoll", "ticket": "k", "backend": "A"},
    ])
    assert qr_bug._held_channels(log, "longpoll") == {"k": "B"}


# ---- against clusters ---------------------------------------------------------------------------

def test_isolated_logins_under_round_robin_follow_a_fixed_pattern(cluster_factory):
    """create, channel, phone login, scan, confirm: the confirm is always 3 requests after the
    channel, so with N = 2 it never meets it and with N = 3 it always does."""
    two = qr_bug.isolated_logins(cluster_factory(2, "round_robin"), "sse", 3, wait_s=WAIT_S)
    assert not two["ok"].any(), two[["channel_on", "confirm_on", "error"]]
    assert (two["channel_on"] != two["confirm_on"]).all()
    three = qr_bug.isolated_logins(cluster_factory(3, "round_robin"), "sse", 3, wait_s=WAIT_S)
    assert three["ok"].all(), three[["channel_on", "confirm_on", "error"]]
    assert three[["n_servers", "policy", "balancer"]].iloc[0].tolist() == [3, "round_robin", "python"]


@pytest.mark.parametrize("balancer", BALANCERS)
@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_random_users_succeed_exactly_when_the_confirm_meets_the_channel(cluster_factory, balancer, transport):
    cluster = cluster_factory(2, "round_robin", balancer=balancer)
    frame = qr_bug.traffic(cluster, transport, 24, seed=3, wait_s=WAIT_S)
    assert len(frame) == 24 and frame["ticket"].notna().all()
    table = qr_bug.meeting_table(frame, [transport])  # raises unless ok <=> the confirm met the channel
    assert table["logins"].tolist() == [24]
    assert frame["ok"].any() and not frame["ok"].all(), \
        f"random users behind round robin must see both outcomes, got {frame['ok'].tolist()}"
    failed = frame[~frame["ok"]]
    assert failed["error"].str.contains("did not hear 'confirmed'").all()


def test_mixed_transports_take_turns_and_unknown_ones_are_refused(cluster_factory):
    cluster = cluster_factory(1, "round_robin")
    frame = qr_bug.traffic(cluster, ["sse", "poll"], 6, seed=2, wait_s=2.0)
    assert frame["transport"].tolist() == ["sse", "poll"] * 3
    assert frame["ok"].all(), frame["error"].tolist()
    with pytest.raises(ValueError, match="carrier-pigeon"):
        qr_bug.traffic(cluster, ["sse", "carrier-pigeon"], 2)


def test_long_poll_heals_when_its_poll_times_out(cluster_factory):
    """A long poll held on the other server misses the confirm, then hears it when it times out."""
    cluster = cluster_factory(2, "round_robin")
    frame = qr_bug.traffic(cluster, "longpoll", 12, seed=8, wait_s=2.5, longpoll_timeout=1.0)
    assert frame["ok"].all(), frame["error"].tolist()
    assert frame["latency_s"].max() <= 2.0
    assert (frame["latency_s"] > 0.5).any(), "some confirms went elsewhere and were heard only at the timeout"


def test_short_polling_is_immune_because_every_poll_reads_redis(cluster_factory):
    frame = qr_bug.traffic(cluster_factory(3, "round_robin"), "poll", 15, seed=4, wait_s=2.0)
    assert frame["ok"].all(), frame["error"].tolist()
    assert (frame["channel_on"] != frame["confirm_on"]).any(), "some polls must have been answered elsewhere"


def test_ip_hash_pins_every_client_and_still_separates_browser_and_phone(cluster_factory):
    cluster = cluster_factory(2, "ip_hash")
    frame = qr_bug.traffic(cluster, "sse", 20, seed=5, wait_s=WAIT_S)
    log = cluster.routing_log()
    assert (log.groupby("client")["backend"].nunique() == 1).all(), "ip_hash keeps each client on one server"
    pairs = qr_bug.browser_and_phone(log)
    assert pairs["apart"].any(), "some users' phones must hash to another server than their browsers"
    outcome = frame.set_index("ticket")["ok"].reindex(pairs["ticket"]).to_numpy()
    assert not (outcome & pairs["apart"].to_numpy()).any(), "no login completes with browser and phone apart"
    qr_bug.meeting_table(frame)


def test_login_trace_labels_the_browser_and_the_phone(cluster_factory):
    cluster = cluster_factory(2, "round_robin")
    row = qr_bug.isolated_logins(cluster, "sse", 1, wait_s=WAIT_S).iloc[0]
    trace = qr_bug.login_trace(cluster.routing_log(), row["ticket"])
    assert trace["route"].tolist() == ["/api/tickets", "/api/tickets/{id}/events", "/api/phone/login",
                                       "/api/tickets/{id}/scan", "/api/tickets/{id}/confirm"]
    assert trace["who"].tolist() == ["browser", "browser", "phone", "phone", "phone"]
    assert trace["backend"].tolist() == ["A", "B", "A", "B", "A"]
    table = qr_bug.clients_and_servers(cluster.routing_log())
    assert set(table["who"]) == {"browser", "phone"}


def _ticket_hash(path, query, backends):
    ticket = ticket_from(path, query)
    if ticket is None:
        return backends[0]
    return HashRing(backends).lookup(ticket)


def test_a_route_function_plugged_into_our_balancer_routes_every_request(redis_url):
    cluster = qr_bug.start_cluster_with_route(3, _ticket_hash, redis_url=redis_url, name="lesson07-route")
    try:
        assert cluster.policy == "_ticket_hash"
        frame = qr_bug.traffic(cluster, "ws", 12, seed=6, wait_s=2.0)
        assert frame["ok"].all(), frame["error"].tolist()
        log = cluster.routing_log()
        assert (log.dropna(subset=["ticket"]).groupby("ticket")["backend"].nunique() == 1).all()
        assert set(log.loc[log["ticket"].isna(), "backend"]) == {"A"}, "no ticket: the function said A"
    finally:
        cluster.stop()


def test_a_route_function_that_names_no_backend_gives_a_json_error_not_a_hang(redis_url):
    cluster = qr_bug.start_cluster_with_route(2, lambda path, query, backends: "Z", redis_url=redis_url,
                                              name="lesson07-route")
    try:
        answer = requests.post(cluster.url + "/api/tickets", timeout=10)
        assert answer.status_code >= 500 and "error" in answer.json()
    finally:
        cluster.stop()


def test_use_route_refuses_nginx():
    class FakeNginx:
        kind = "nginx"

    with pytest.raises(ValueError, match="python"):
        qr_bug.use_route(FakeNginx(), _ticket_hash)


def test_success_vs_servers_overlaps_runs_and_stops_every_cluster(redis_url):
    import servers

    frame = qr_bug.success_vs_servers((1, 2), ("sse",), 12, 1, redis_url=redis_url, seed=3, wait_s=WAIT_S)
    assert frame.groupby("n_servers").size().to_dict() == {1: 12, 2: 12}
    assert frame.loc[frame["n_servers"] == 1, "ok"].all()
    assert set(frame["channel_on"].dropna()) <= {"A1", "A2", "B2"}, "servers are named per N when runs overlap"
    qr_bug.meeting_table(frame)
    assert servers.running() == {}, f"every cluster must be stopped, still running: {list(servers.running())}"


# ---- the hang on one clock, the shared address, the page's script ------------------------------

def test_timeline_puts_the_hang_on_one_clock(cluster_factory):
    import time

    from servers.clients.qr import Browser, Phone

    cluster = cluster_factory(2, "round_robin")
    browser = Browser(cluster.url, "sse")
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    phone = Phone(cluster.url)
    phone.login()
    phone.scan(ticket)
    confirm = phone.confirm(ticket)
    answered = time.time()
    assert confirm["served_by"] != channel.served_by, "round robin on a fresh cluster: the confirm goes elsewhere"
    with pytest.raises(TimeoutError):
        channel.wait_for("confirmed", timeout=0.5)
    waited = time.time()
    stats = cluster.servers[confirm["served_by"]].call(lambda app: dict(app.push.stats))
    trace = qr_bug.login_trace(cluster.routing_log(), ticket, with_time=True)
    assert list(trace.columns) == ["time", "who", "method", "route", "backend", "status"]
    hang = qr_bug.timeline(trace, channel.events, confirm_answered_at=answered, confirm_server=confirm["served_by"],
                           undelivered=stats["undelivered"], waited_until=waited)
    channel.close()
    assert hang["t_ms"].iloc[0] == 0 and hang["t_ms"].is_monotonic_increasing, hang
    assert hang["what"].iloc[-1].startswith("browser gives up")
    states = [w for w in hang["what"] if "receives" in w]
    assert states and not any("'confirmed'" in w for w in states), states
    confirm_at = hang.loc[hang["what"].str.contains("confirms"), "t_ms"].iloc[0]
    assert (hang.loc[hang["what"].str.contains("receives"), "t_ms"] < confirm_at).all(), "nothing arrives after it"


def test_ip_hash_apart_matches_n_minus_one_over_n():
    table = qr_bug.ip_hash_apart((2, 4), 4000, seed=1)
    assert list(table["n_servers"]) == [2, 4]
    assert ((table["low_pct"] <= table["theory_pct"] + 1) & (table["theory_pct"] - 1 <= table["high_pct"])).all(), table


def test_users_on_one_wifi_share_an_address_and_ip_hash_keeps_them_together(cluster_factory):
    plan = qr_bug.logins._plan(["sse"], 40, 20.0, 0.2, 3, one_address_share=0.5)
    same = [b == p for _, (b, p), *_ in plan]
    assert 0 < sum(same) < len(same)
    assert [p[1][0] for p in plan] == [p[1][0] for p in qr_bug.logins._plan(["sse"], 40, 20.0, 0.2, 3)], \
        "the browsers' addresses and timings do not depend on the share"
    cluster = cluster_factory(2, "ip_hash")
    frame = qr_bug.traffic(cluster, "sse", 16, seed=5, wait_s=WAIT_S, one_address_share=0.5)
    assert frame["one_address"].any() and (~frame["one_address"]).any()
    assert frame.loc[frame["one_address"], "ok"].all(), frame.loc[frame["one_address"], "error"].tolist()


def test_the_login_page_script_is_the_pages_own_code():
    for transport in ("poll", "longpoll", "sse", "ws"):
        where, source = qr_bug.login_page_script(transport)
        assert where.startswith("servers/qrlogin/pages/login.html:") and source.lstrip().split("(")[0].endswith(transport)
        assert source.rstrip().endswith("},")
    assert "new EventSource" in qr_bug.login_page_script("sse")[1]
    with pytest.raises(LookupError):
        qr_bug.login_page_script("carrier-pigeon")


def test_confirm_page_ticket_does_nothing_when_no_page_is_open(cluster_factory):
    cluster = cluster_factory(2, "round_robin")
    qr_bug.isolated_logins(cluster, "sse", 1, wait_s=WAIT_S)  # simulated clients only
    assert qr_bug.confirm_page_ticket(cluster) is None
