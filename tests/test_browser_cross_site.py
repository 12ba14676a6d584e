"""SameSite=Lax in a real headless Chromium: a page on another *site* does not get the session
cookie onto its WebSocket; a page on the victim's own site, another port, does (ports do not make
sites differ). Two host names resolved to loopback (``--host-resolver-rules``) make two sites."""
from __future__ import annotations

import pytest

from lab.lessons import security
from servers.clients.qr import Browser, Phone
from servers.qrlogin import start_qrlogin
from tests.conftest import chromium_path

pytestmark = pytest.mark.browser


@pytest.fixture
def session_cookie(redis_url):
    qr = start_qrlogin("victim", redis_url=redis_url)
    browser, phone = Browser(qr.url, "sse"), Phone(qr.url)
    phone.login()
    ticket = browser.create_ticket()["ticket"]
    phone.scan(ticket)
    phone.confirm(ticket)
    browser.redeem(ticket)
    return qr, browser.cookies["qr_session"]


def _chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not found: install it (Debian: apt-get install chromium) or set CHROMIUM=path")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    return path


def test_lax_cookie_stays_off_a_cross_site_socket_but_goes_along_from_another_port(session_cookie):
    qr, cookie = session_cookie
    rows = security.same_site_in_chromium(qr, cookie, "vulnerable", executable=_chromium())
    by_site = {row["same site as the socket"]: row for row in rows}
    assert by_site[False]["attacker's page"].startswith("http://attacker.test:")
    assert by_site[False]["outcome"] == "closed" and "not logged in" in by_site[False]["got"], by_site[False]
    assert by_site[True]["attacker's page"].startswith("http://victim.test:")
    assert by_site[True]["outcome"] == "read" and '"alice"' in by_site[True]["got"], by_site[True]


def test_the_origin_check_refuses_the_same_site_page_that_samesite_lets_through(session_cookie):
    qr, cookie = session_cookie
    rows = security.same_site_in_chromium(qr, cookie, "protected", executable=_chromium())
    assert [row["outcome"] for row in rows] == ["closed", "closed"], rows
    same_site = next(row for row in rows if row["same site as the socket"])
    assert "cross-site Origin refused" in same_site["got"], same_site
