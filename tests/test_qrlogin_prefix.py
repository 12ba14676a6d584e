"""The QR-login pages behind a path prefix, as jupyter-server-proxy serves them (<base>/proxy/<port>/).

A real nginx (tests/nginx_prefix.py) maps only ``/lab/proxy/<port>/`` to the app (and, like
jupyter-server-proxy, sends ``X-Forwarded-Prefix``), so any absolute path in the pages would hit
nginx's 404: Chromium completing a login proves every URL the pages use is relative, and the QR's
scan URL keeps the prefix.
"""
from __future__ import annotations

import pytest

from servers.clients.qr import Phone
from servers.qrlogin import start_qrlogin
from tests.nginx_prefix import start_prefix_proxy

pytestmark = [pytest.mark.browser, pytest.mark.nginx]


@pytest.fixture
def prefixed(tmp_path, redis_url):
    qr = start_qrlogin("A", redis_url=redis_url)
    proxy = start_prefix_proxy(tmp_path, qr.port, f"/lab/proxy/{qr.port}")
    try:
        yield qr, proxy.url
    finally:
        proxy.stop()
        qr.stop()


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse", "ws"])
def test_login_page_works_under_the_prefix(prefixed, page, transport):
    qr, base = prefixed
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{base}/login?transport={transport}&interval=0.1")
    page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
    ticket = page.text_content("#ticket")
    assert page.get_attribute("#scan-link", "href") == f"{base}/m/{ticket}", "the QR points into the prefix"
    phone = Phone(base)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
    assert page.text_content("#status") == "logged in as alice"
    assert failed == []


def test_phone_page_works_under_the_prefix(prefixed, browser, page):
    qr, base = prefixed
    page.goto(f"{base}/login?transport=ws")
    page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
    phone_context = browser.new_context()
    try:
        phone_page = phone_context.new_page()
        phone_page.goto(page.get_attribute("#scan-link", "href"))
        phone_page.click("#login")
        phone_page.wait_for_function("!document.getElementById('scan').disabled", timeout=15000)
        phone_page.click("#scan")
        phone_page.wait_for_function("document.getElementById('ticket-state').textContent === 'scanned'",
                                     timeout=15000)
        phone_page.click("#confirm")
        page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
    finally:
        phone_context.close()
