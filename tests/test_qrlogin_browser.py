"""A real headless Chromium completes a QR login on the login page, with each transport.

The browser side is the real page (fetch, EventSource, WebSocket in Chromium); the phone steps
are done by the simulated Phone client, or by the phone page in a second Chromium context.
"""
from __future__ import annotations

import pytest

from servers.clients.qr import Phone
from servers.qrlogin import start_qrlogin

pytestmark = pytest.mark.browser


@pytest.fixture
def qr(redis_url):
    with start_qrlogin("A", redis_url=redis_url) as handle:
        yield handle


def ticket_on_page(page) -> str:
    page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
    return page.text_content("#ticket")


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse", "ws"])
def test_chromium_logs_in_with_each_transport(qr, page, transport):
    page.goto(f"{qr.url}/login?transport={transport}&interval=0.1")
    ticket = ticket_on_page(page)
    page.wait_for_function("document.getElementById('qr').complete && document.getElementById('qr').naturalWidth > 0",
                           timeout=15000)  # the QR image loaded and decoded as a PNG
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    page.wait_for_function("document.getElementById('state').textContent === 'scanned'", timeout=15000)
    phone.confirm(ticket)
    page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
    assert page.text_content("#status") == "logged in as alice"
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["qr_session"]["httpOnly"] and cookies["qr_session"]["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == "", "HttpOnly: page scripts cannot read the cookies"


def test_chromium_phone_page_confirms_the_login(qr, browser, page):
    page.goto(f"{qr.url}/login?transport=sse")
    ticket = ticket_on_page(page)
    scan_url = page.get_attribute("#scan-link", "href")
    assert scan_url == f"{qr.url}/m/{ticket}"
    phone_context = browser.new_context(user_agent="PhoneBrowser/1.0")
    try:
        phone_page = phone_context.new_page()
        phone_page.goto(scan_url)
        assert phone_page.text_content("#browser-ip") == "127.0.0.1"
        assert "HeadlessChrome" in phone_page.text_content("#browser-ua")
        phone_page.click("#login")
        phone_page.wait_for_function("!document.getElementById('scan').disabled", timeout=15000)
        phone_page.click("#scan")
        phone_page.wait_for_function("document.getElementById('ticket-state').textContent === 'scanned'",
                                     timeout=15000)
        phone_page.click("#confirm")
        page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
        assert page.text_content("#status") == "logged in as alice"
        assert phone_page.text_content("#ticket-state") == "confirmed"
    finally:
        phone_context.close()
