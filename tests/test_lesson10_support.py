"""Lesson 10's attack demonstrations attack for real, and the app's defences refuse them.

Each test runs an attack against real servers on free ports: guessing weak ids, cross-site
WebSocket hijacking (from Python with crafted headers, and from a real headless Chromium on another
origin), QRLJacking through a relay site, and floods refused by the limits.
"""
from __future__ import annotations

import math
import time

import pytest
import requests

from servers import runtime, start_qrlogin
from servers.clients.qr import BROWSER_ADDRESS, Browser, Phone
from lab.lessons import security
from servers.limits import HARDENED_LIMITS
from servers.qrlogin.tickets import new_ticket_id


@pytest.fixture
def qr(redis_url):
    handle = start_qrlogin("lesson10-test", redis_url=redis_url)
    yield handle
    handle.stop()


def logged_in_browser(qr) -> Browser:
    """A browser that completed a QR login (it holds qr_bind and qr_session)."""
    browser, phone = Browser(qr.url, "sse"), Phone(qr.url)
    phone.login()
    ticket = browser.create_ticket()["ticket"]
    phone.scan(ticket)
    phone.confirm(ticket)
    browser.redeem(ticket)
    return browser


# -- entropy ------------------------------------------------------------------------------------


def test_measured_entropy_of_our_ids_is_128_bits_and_of_six_digits_about_20():
    ours = security.measure_id_scheme(new_ticket_id, 4000)
    weak = security.measure_id_scheme(security.six_digit_id, 4000)
    assert (ours["length"], ours["alphabet_size"], ours["bits_measured"]) == (22, 64, 128.0)
    assert weak["alphabet_size"] == 10 and weak["bits_measured"] == pytest.approx(6 * math.log2(10), abs=0.1)


def test_too_few_samples_never_over_estimate_the_entropy():
    assert security.measure_id_scheme(new_ticket_id, 20)["bits_measured"] < 128


def test_expected_guesses_follow_drawing_without_repeats():
    assert security.expected_guesses(1, live=1) == 1.5  # 2 ids, 1 live: first try half the time
    assert security.expected_guess_seconds(20, 1, 1000) == pytest.approx((2 ** 20 + 1) / 2 / 1000)
    frame = security.guess_time_frame([20, 128], live=100, rate_per_s=1000, ttl_s=120)
    assert frame["within_ttl"].tolist() == [True, False]


def test_a_weak_ticket_is_guessed_for_real():
    weak = security.start_weak_ticket_server(live=20, digits=3)
    result = security.guess_live_ticket(weak, digits=3, max_guesses=1000, connections=4, seed=1)
    live = weak.call(lambda app: dict(app.tickets))
    weak.stop()
    assert result["found"] in live and result["owner"] == live[result["found"]]
    assert 1 <= result["guesses"] <= 1000


def test_the_guesser_gives_up_when_nothing_is_live():
    weak = security.start_weak_ticket_server(live=0, digits=2)
    result = security.guess_live_ticket(weak, digits=2, max_guesses=100, connections=3, seed=2)
    weak.stop()
    assert result["found"] is None and result["guesses"] == 100


# -- cross-site WebSocket hijacking ----------------------------------------------------------------


def test_hijack_matrix_vulnerable_reads_tornado_default_misses_no_origin_protected_refuses(qr):
    cookies = logged_in_browser(qr).cookies
    sockets = security.add_account_sockets(qr)
    evil = security.start_evil_site(sockets["vulnerable"])
    outcome = {(kind, label): security.hijack(url, origin, cookies)
               for kind, url in sockets.items()
               for label, origin in (("evil", evil.url), ("own", qr.url), ("none", None))}
    assert outcome[("vulnerable", "evil")]["outcome"] == "read"
    assert outcome[("vulnerable", "evil")]["data"]["user"] == "alice"
    assert outcome[("tornado_default", "evil")]["status"] == 403
    assert outcome[("tornado_default", "none")]["outcome"] == "read", "Tornado never checks a missing Origin"
    for label in ("evil", "none"):
        refused = outcome[("protected", label)]
        assert (refused["outcome"], refused["close_code"]) == ("refused", 1008) and "Origin" in refused["close_reason"]
    assert outcome[("protected", "own")]["data"]["user"] == "alice"


def test_account_socket_without_a_session_reads_nothing(qr):
    sockets = security.add_account_sockets(qr)
    result = security.hijack(sockets["vulnerable"], qr.url, None)
    assert result["outcome"] == "refused" and result["close_code"] == 1008


def test_app_ticket_socket_refuses_cookies_without_origin_but_serves_scripts_and_its_page(qr):
    browser = Browser(qr.url, "ws")
    ticket = browser.create_ticket()["ticket"]
    url = f"{qr.ws_url}/api/tickets/{ticket}/ws"
    with_cookie = security.hijack(url, None, browser.cookies)
    assert (with_cookie["outcome"], with_cookie["close_code"]) == ("refused", 1008)
    assert "missing Origin" in with_cookie["close_reason"]
    assert security.hijack(url, None, None)["data"]["state"] == "pending", "a script without cookies may watch"
    assert security.hijack(url, qr.url, browser.cookies)["data"]["state"] == "pending", "the page itself may"


@pytest.mark.browser
@pytest.mark.parametrize("kind,expected", [("vulnerable", "read"), ("protected", "closed")])
def test_cswsh_from_a_real_browser_on_another_origin(qr, page, kind, expected):
    session = logged_in_browser(qr).cookies["qr_session"]
    sockets = security.add_account_sockets(qr)
    evil = security.start_evil_site(sockets[kind])
    page.context.add_cookies([{"name": "qr_session", "value": session, "url": qr.url, "httpOnly": True,
                               "sameSite": "Lax"}])
    page.goto(evil.url)
    reports = runtime.run(evil.app.wait_for_reports(1, timeout=15), timeout=20)
    if expected == "read":
        assert reports[0]["read"]["user"] == "alice", "the victim's cookie went along and the data came back"
    else:
        assert reports[0]["closed"] == 1008 and "Origin" in reports[0]["reason"]


# -- QRLJacking ------------------------------------------------------------------------------------


def test_qrljacking_relay_logs_the_attacker_in_and_the_confirm_page_shows_who_asked(qr):
    phishing = security.start_phishing_site(qr)
    relayed = requests.get(phishing.url + "/qr.png")
    status = requests.get(phishing.url + "/status").json()
    assert relayed.headers["Content-Type"] == "image/png"
    assert relayed.content == requests.get(f"{qr.url}/qr/{status['ticket']}.png").content
    assert "qr.png" in requests.get(phishing.url + "/").text

    facts = security.confirm_page_facts(requests.get(status["scan_url"]).text)
    assert facts["browser_address"] == security.ATTACKER_ADDRESS != BROWSER_ADDRESS
    assert facts["browser_agent"] == security.ATTACKER_AGENT and facts["state"] == "pending"

    victim_phone = Phone(qr.url)
    victim_phone.login()
    victim_phone.scan(status["ticket"])
    victim_phone.confirm(status["ticket"])
    won = security.wait_for_victory(phishing, timeout=10)
    assert won["user"] == "alice"
    assert requests.get(qr.url + "/api/me", cookies={"qr_session": won["session_cookie"]}).json() == {"user": "alice"}


def test_relay_keeps_one_ticket_while_fresh_and_replaces_it_near_expiry(redis_url):
    short = start_qrlogin("lesson10-short-test", redis_url=redis_url, ticket_ttl=30)
    fresh = security.start_phishing_site(short, name="phish-fresh", refresh_s=5)
    for _ in range(3):
        requests.get(fresh.url + "/qr.png")
    assert requests.get(fresh.url + "/status").json()["tickets_created"] == 1
    eager = security.start_phishing_site(short, name="phish-eager", refresh_s=60)  # always "near expiry"
    for _ in range(3):
        requests.get(eager.url + "/qr.png")
    assert requests.get(eager.url + "/status").json()["tickets_created"] == 3


def test_confirm_page_facts_reads_the_page_and_unescapes():
    page = ('<dd id="browser-ip">10.0.0.1</dd><dd id="browser-ua">A &amp; B</dd>'
            '<dd id="browser-time">2026-01-01 00:00:00 UTC</dd><dd id="ticket-state">scanned</dd>')
    assert security.confirm_page_facts(page) == {"browser_address": "10.0.0.1", "browser_agent": "A & B",
                                                 "asked_at": "2026-01-01 00:00:00 UTC", "state": "scanned",
                                                 "network_warning": ""}
    assert security.confirm_page_facts("<p>nothing</p>")["browser_address"] == ""


# -- limits ----------------------------------------------------------------------------------------


def test_oversized_websocket_message_is_closed_with_1009(qr):
    ticket = Browser(qr.url, "ws").create_ticket()["ticket"]
    result = security.send_oversized_message(f"{qr.ws_url}/api/tickets/{ticket}/ws", 65 * 1024, origin=qr.url)
    assert result["close_code"] == 1009


def test_password_burst_is_refused_with_429_on_hardened_limits(redis_url):
    hardened = start_qrlogin("lesson10-hardened-test", redis_url=redis_url, **HARDENED_LIMITS)
    calls = HARDENED_LIMITS["api_burst"] + 40
    started = time.monotonic()
    burst = security.burst_of_calls(hardened.url, "/api/phone/login", {"user": "alice", "password": "x"}, calls)
    # The bucket refills while the calls go out: at most burst + rate x elapsed of them can pass,
    # however slow this machine is; the rest must be refused.
    refilled = math.ceil(HARDENED_LIMITS["api_rate"] * (time.monotonic() - started))
    assert burst["status"].iloc[0] == 401
    refused = burst[burst["status"] == 429]
    assert len(refused) >= max(1, calls - HARDENED_LIMITS["api_burst"] - refilled), (len(refused), refilled)
    assert set(refused["error"]) <= {"rate_limited", "too_many_login_attempts"} and refused["retry_after_s"].notna().all()
    # The password budget (cluster-wide, in Redis) lets exactly that many attempts reach the check.
    assert (burst["status"] == 401).sum() == HARDENED_LIMITS["login_attempts_per_window"], burst
