"""The QR-login bug itself, with two servers in one process sharing one real Redis (no balancer).

Browser's channel on A, phone on B: B finds and confirms the ticket (state is shared in Redis)
but has no way to reach the browser's connection on A. The proof needs no timing: after B's
confirm, the browser redeems on A, A pushes ``redeemed`` (version 4) to its own channel, and that
is the next message the channel gets - ``confirmed`` (version 3) never came.
"""
from __future__ import annotations

import threading

import pytest
import requests

from servers.clients.qr import Browser, Phone, login_once
from servers.qrlogin import start_qrlogin


@pytest.fixture
def pair(redis_url):
    with start_qrlogin("A", redis_url=redis_url) as a, start_qrlogin("B", redis_url=redis_url) as b:
        yield a, b


def test_a_ticket_created_on_a_is_known_and_confirmable_on_b(pair):
    a, b = pair
    browser = Browser(a.url, "poll")
    ticket = browser.create_ticket()["ticket"]
    assert requests.get(f"{b.url}/api/tickets/{ticket}").json()["state"] == "pending"
    phone = Phone(b.url)
    phone.login()
    assert phone.scan(ticket)["served_by"] == "B"
    confirmed = phone.confirm(ticket)
    assert confirmed["state"] == "confirmed" and confirmed["served_by"] == "B"
    assert browser.redeem(ticket)["served_by"] == "A", "the phone's token and the ticket are valid on every server"


@pytest.mark.parametrize("transport", ["sse", "ws", "longpoll"])
def test_push_channel_on_a_never_hears_of_the_confirm_on_b(pair, transport):
    a, b = pair
    held = threading.Event()  # set when the browser's channel is registered on A
    original = a.app.push.on_first_subscriber
    a.app.push.on_first_subscriber = lambda ticket: (original(ticket), held.set())
    browser = Browser(a.url, transport)
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    assert held.wait(10), "the channel never reached A"  # a long poll is in flight until A holds it
    if transport != "longpoll":
        assert channel.served_by == "A" and channel.events[0]["state"] == "pending"
    undelivered_before = b.call(lambda app: app.push.stats["undelivered"])
    phone = Phone(b.url)
    phone.login()
    phone.scan(ticket)
    assert phone.confirm(ticket)["served_by"] == "B"
    assert b.call(lambda app: app.push.stats["undelivered"]) == undelivered_before + 2, \
        "B published scanned and confirmed to nobody: the browser's connection is on A"
    assert browser.redeem(ticket)["served_by"] == "A"  # A's own change does reach A's channel
    next_event = channel.next(10)
    assert next_event["state"] == "redeemed" and next_event["version"] == 4
    seen = [event["state"] for event in channel.events]
    assert "scanned" not in seen and "confirmed" not in seen, f"the channel on A saw {seen}"
    channel.close()


def test_the_same_channel_hears_a_confirm_made_on_its_own_server(pair):
    a, _ = pair
    browser = Browser(a.url, "sse")
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    phone = Phone(a.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    assert channel.wait_for("confirmed", 10)["version"] == 3
    channel.close()


def test_short_polling_on_a_sees_the_confirm_on_b_because_state_is_in_redis(pair):
    a, b = pair
    browser = Browser(a.url, "poll", poll_interval=0.05)
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)
    phone = Phone(b.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    seen = channel.wait_for("confirmed", 10)
    assert seen["state"] == "confirmed" and channel.served_by == "A"
    channel.close()


def test_login_once_across_servers_fails_for_push_and_works_for_polling(pair):
    a, b = pair
    failed = login_once(a.url, "ws", timeout=0.5, phone_url=b.url)
    assert failed["ok"] is False and "never saw 'confirmed'" in failed["error"]
    assert failed["served_by_channel"] == "A" and failed["served_by_confirm"] == "B"
    worked = login_once(a.url, "poll", timeout=10, phone_url=b.url, poll_interval=0.05)
    assert worked["ok"] is True and worked["error"] is None and worked["latency_s"] > 0
    assert (worked["served_by_create"], worked["served_by_confirm"], worked["served_by_redeem"]) == ("A", "B", "A")
