"""The simulated browser and phone: two clients (own cookies, own loopback address), whole logins."""
from __future__ import annotations

import pytest

from servers.clients.qr import Browser, Phone, QRError, login_many, login_once
from servers.qrlogin import start_qrlogin


@pytest.fixture
def qr(redis_url):
    with start_qrlogin("A", redis_url=redis_url) as handle:
        yield handle


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse", "ws"])
def test_login_once_succeeds_on_one_server(qr, transport):
    result = login_once(qr.url, transport, timeout=10, poll_interval=0.05)
    assert result["ok"] is True, result["error"]
    assert result["error"] is None and result["latency_s"] >= 0 and len(result["ticket"]) >= 22
    steps = ("create", "channel", "login", "scan", "confirm", "redeem")
    assert all(result[f"served_by_{step}"] == "A" for step in steps), result


def test_browser_and_phone_are_two_clients(qr, redis_server):
    browser, phone = Browser(qr.url, "sse"), Phone(qr.url)
    ticket = browser.create_ticket()["ticket"]
    phone.login()
    phone.scan(ticket)
    stored = redis_server.client().hgetall(f"qr:ticket:{ticket}")
    assert stored["ip"] == "127.0.0.2" and stored["phone_ip"] == "127.0.0.3", "different source addresses"
    assert "qr_bind" in browser.cookies and not phone.session.cookies, "the phone carries no cookie"


def test_client_errors_carry_the_code_and_server(qr):
    phone = Phone(qr.url, password="wrong")
    with pytest.raises(QRError) as caught:
        phone.login()
    assert caught.value.status == 401 and caught.value.error == "bad_credentials" and caught.value.served_by == "A"


def test_login_many_runs_concurrent_logins(qr):
    results = login_many(qr.url, "sse", n=12, concurrency=6, timeout=10)
    assert len(results) == 12 and all(r["ok"] for r in results), [r["error"] for r in results if not r["ok"]]
    assert len({r["ticket"] for r in results}) == 12
