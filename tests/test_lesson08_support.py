"""Lesson 08's measurement helpers (lab/lessons/fixes/) against real clusters and Redis.

What must hold for the lesson's claims to hold: the measurements run each fix for real and every
login completes; the per-login counters tell fixes apart (messages cross for pubsub, none for
store); the store fix pays while idle and the others do not; consistent hashing moves fewer ids
than modulo and a login in flight fails exactly when its ticket moved; pub/sub loses the live
events of a reconnect and streams replays them; the exercise scaffolding carries a login from B
to A once both halves are written, and not before.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from lab.lessons import fixes as fx
from tests.conftest import nginx_path


def test_consistent_hashing_moves_about_one_share_and_modulo_moves_most():
    for n in (2, 3, 5):
        moved = fx.moved_share(n, n + 1, keys=4000)
        assert moved["consistent_pct"] < moved["modulo_pct"], moved
        assert abs(moved["consistent_pct"] - 100 / (n + 1)) < 10, f"about 1/(N+1) should move: {moved}"
        assert moved["modulo_pct"] > 50, moved
    table = fx.moved_table((2, 3), keys=1000)
    assert list(table["change"]) == ["add one", "remove one", "add one", "remove one"]


def test_a_login_in_flight_fails_exactly_when_its_ticket_moved(redis_server):
    flight = fx.in_flight_when_adding(2, 10)
    assert len(flight) == 10
    assert (flight["ok"] == ~flight["moved"]).all(), flight
    assert set(flight["confirm_on"]) <= {"A", "B", "C"}
    moved_to = set(flight.loc[flight["moved"], "confirm_on"])
    assert moved_to <= {"C"}, f"with consistent hashing a ticket only ever moves to the new server: {flight}"


def test_pubsub_loses_the_events_of_a_reconnect_and_streams_replays_them(redis_server):
    lost = fx.reconnect_gap("pubsub")
    assert lost["never seen"] == ["scanned"] and lost["published_to_nobody"] == 2, lost
    assert lost["seen after reconnecting"] == ["confirmed"], "the state read on open still saves the login"
    kept = fx.reconnect_gap("streams")
    assert kept["never seen"] == [] and kept["replayed_from_log"] >= 2, kept
    assert kept["seen after reconnecting"] == ["scanned", "confirmed"], kept


def test_success_matrix_completes_every_login_with_the_fixes():
    frame = fx.success_matrix(("pubsub", "streams"), ("python",), ("sse", "longpoll"), logins=4, seed=1)
    assert len(frame) == 2 * 2 * 4
    assert frame["ok"].all(), frame[~frame["ok"]][["fix", "transport", "error"]]
    assert frame["channel_on"].notna().all(), "long polls get the server that held them from the routing log"
    table = fx.success_table(frame)
    assert set(table["success_pct"]) == {100.0}


def test_success_matrix_shows_the_bug_without_a_fix():
    frame = fx.success_matrix(("none",), ("python",), ("sse",), logins=12, seed=2, wait_s=2.0)
    crossed = frame["channel_on"] != frame["confirm_on"]
    assert (frame["ok"] == ~crossed).all(), "without a fix a login completes exactly when the confirm meets the channel"


@pytest.mark.nginx
def test_success_matrix_behind_real_nginx():
    if nginx_path() is None:
        pytest.skip("nginx not installed (Debian: apt-get install nginx)")
    frame = fx.success_matrix(("pubsub",), ("nginx",), ("ws",), logins=4, seed=3)
    assert frame["ok"].all(), frame[["error"]]
    assert set(frame["balancer"]) == {"nginx"}


def test_latency_and_cost_tell_the_fixes_apart():
    logins, costs = fx.latency_and_cost(("pubsub", "store"), ("sse",), logins=3)
    assert logins["ok"].all(), logins[["fix", "error"]]
    assert set(logins["fix"]) == {"none", "pubsub", "store"}
    assert logins[logins["fix"] != "none"]["crossed"].all(), "2 servers, one login at a time: every confirm crosses"
    per = costs.set_index("fix")
    assert per.loc["none", "n_servers"] == 1 and per.loc["pubsub", "n_servers"] == 2
    assert per.loc["pubsub", "messages_per_login"] >= 1 and per.loc["pubsub", "bytes_per_login"] > 50, per
    assert per.loc["store", "messages_per_login"] == 0, per
    assert per.loc["none", "redis_per_login"] > 10, "a login itself uses Redis (ticket, token, session)"
    table = fx.latency_table(logins)
    assert table.set_index("fix").loc["none", "added_p50_ms"] == 0
    assert table.set_index("fix").loc["store", "p50_ms"] > 0
    assert "p99_ms" not in table.columns, "no p99 from a handful of logins"


def test_only_store_pays_while_nothing_happens():
    idle = fx.idle_cost(("none", "pubsub", "store", "streams"), channels=4, seconds=0.6).set_index("fix")
    assert idle.loc["store", "redis_per_channel_per_s"] > 5, idle
    assert idle.loc["pubsub", "redis_per_channel_per_s"] <= idle.loc["none", "redis_per_channel_per_s"] + 1, idle
    # what each holds instead: one subscribed (pubsub) or blocked (streams) connection per server
    assert idle["held_per_server"].to_dict() == {"none": 0, "pubsub": 1, "store": 0, "streams": 1}, idle


def test_median_interval_brackets_the_median_and_needs_enough_values():
    import math

    low, high = fx.median_interval(range(100))
    assert low < 49.5 < high and (low, high) == (40, 59)
    assert all(math.isnan(v) for v in fx.median_interval([1, 2, 3]))


def test_hop_latency_measures_each_fix_first_and_later_change():
    hops = fx.hop_latency(("pubsub", "registry", "gateway"), tickets=6)
    assert len(hops) == 3 * 6 * 2 and (hops["hop_ms"] > 0).all()
    table = fx.hop_table(hops).set_index(["fix", "change"])
    assert set(table.index) == {(f, c) for f in ("pubsub", "registry", "gateway") for c in ("first", "later")}
    assert (table["events"] == 6).all() and (table["p50_low_ms"] <= table["p50_ms"]).all()


def test_scaling_reports_one_row_per_fix_and_size():
    scale = fx.scaling(("registry",), (2, 3), "ws", logins=4, seed=4)
    assert list(scale["n_servers"]) == [2, 3]
    assert (scale["success_pct"] == 100).all(), scale


def test_closing_table_puts_measurements_semantics_and_systems_together():
    success = pd.DataFrame({"fix": ["pubsub", "pubsub", "store"], "ok": [True, True, True]})
    latency = pd.DataFrame({"fix": ["pubsub", "store"], "transport": ["sse", "sse"], "p50_ms": [6.0, 95.0],
                            "p50_low_ms": [5.0, 60.0], "p50_high_ms": [8.0, 150.0], "added_p50_ms": [1.0, 90.0]})
    hops = pd.DataFrame({"fix": ["pubsub", "pubsub"], "change": ["first", "later"], "p50_ms": [0.5, 0.4],
                         "p50_low_ms": [0.4, 0.3], "p50_high_ms": [0.6, 0.5]})
    costs = pd.DataFrame({"fix": ["none", "pubsub", "store"], "transport": ["sse"] * 3,
                          "redis_per_login": [30.0, 37.0, 33.0], "messages_per_login": [0, 1, 0],
                          "bytes_per_login": [0, 110, 0]})
    idle = pd.DataFrame({"fix": ["pubsub", "store"], "redis_per_channel_per_s": [0.0, 15.0], "held_per_server": [1, 0]})
    table = fx.closing_table(success, latency, costs, idle, hops=hops).set_index("fix")
    assert table.loc["pubsub", "hop_p50_ms"] == 0.5 and pd.isna(table.loc["store", "hop_p50_ms"])
    assert table.loc["pubsub", "held_redis_connections_per_server"] == 1
    assert "p50_low_ms" in table.columns and "added_p99_ms" not in table.columns
    for column in ("holds", "a server dies (lesson 09)", "Redis restarts (lesson 09)", "to operate"):
        assert table[column].str.len().gt(3).all(), column
    assert list(table.index) == ["pubsub", "store"]
    assert table.loc["pubsub", "added_redis_per_login"] == 7 and table.loc["store", "idle_redis_per_channel_per_s"] == 15
    assert "Socket.IO" in table.loc["pubsub", "real systems"] and "at most once" in table.loc["pubsub", "delivery"]


# -- the exercises' scaffolding -------------------------------------------------------------------

class ReferencePubSub(fx.PubSubExerciseBase):
    def channel_of(self, ticket):
        return f"{self.app.namespace}:events:{ticket}"

    async def on_first_channel(self, ticket):
        await self.listen(self.channel_of(ticket))

    async def on_last_channel(self, ticket):
        await self.unlisten(self.channel_of(ticket))

    async def publish(self, ticket, event):
        await self.app.redis.publish(self.channel_of(ticket), json.dumps(event))

    def on_message(self, data):
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict) and {"ticket", "state", "version"} <= event.keys():
            self.deliver_local(event)


class HalfWritten(ReferencePubSub):
    def on_message(self, data):
        raise NotImplementedError()


@pytest.mark.parametrize("transport", ["sse", "ws", "longpoll"])
def test_a_written_pubsub_hub_carries_the_login_from_b_to_a(redis_url, transport):
    a, b = fx.start_pair(ReferencePubSub, redis_url)
    result = fx.login_across(a, b, transport)
    assert result["ok"], result["error"]
    assert result["served_by_channel"] == "A" and result["served_by_confirm"] == "B"
    assert a.app.fix == "exercise_pubsub"


def test_a_half_written_hub_fails_the_login_and_its_errors_are_counted(redis_url):
    a, b = fx.start_pair(HalfWritten, redis_url)
    result = fx.login_across(a, b, "sse", timeout=0.5)
    assert not result["ok"] and "confirmed" in result["error"], result
    assert a.call(lambda app: app.push.stats["on_message_errors"]) >= 1


def test_the_hub_listens_only_while_it_holds_a_channel(redis_url):
    """What the exercise's scope test reads: ``listening`` follows the channels held, once ``settled``."""
    from servers.clients.qr import Browser

    (a,) = fx.start_pair(ReferencePubSub, redis_url, names=("A",))
    browser = Browser(a.url, "sse")
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    a.call(lambda app: app.push.settled())
    assert a.call(lambda app: set(app.push.listening)) == {f"qr:events:{ticket}"}
    channel.close()
    a.call(lambda app: app.push.wait_until(lambda: not app.push.channels))
    a.call(lambda app: app.push.settled())
    assert a.call(lambda app: set(app.push.listening)) == set()


def test_start_with_hub_adds_the_hubs_routes(redis_url):
    from servers.qrlogin.fixes.registry import RegistryHub

    import requests

    (a,) = fx.start_pair(RegistryHub, redis_url, names=("A",))
    answer = requests.post(a.url + "/internal/deliver", json={"ticket": "t", "state": "confirmed", "version": 3})
    assert answer.status_code == 401 and answer.json()["error"] == "bad_internal_secret"


def test_the_gateway_push_tier_is_counted_with_its_cluster():
    logins, costs = fx.latency_and_cost(("gateway",), ("ws",), logins=2)
    assert logins["ok"].all(), logins[["fix", "error"]]
    gateway = logins[logins["fix"] == "gateway"]
    assert set(gateway["channel_on"]) == {"GW"} and gateway["crossed"].all(), gateway
    per = costs.set_index("fix")
    assert per.loc["gateway", "messages_per_login"] >= 1, f"the push tier's received events count: {per}"
