"""Contract tests of the QR-login app's HTTP routes and every bad input."""
from __future__ import annotations

import re
import struct

import pytest
import requests

from servers.qrlogin import start_qrlogin
from servers.qrlogin.tickets import fingerprint


@pytest.fixture
def qr(redis_url):
    with start_qrlogin("A", redis_url=redis_url) as handle:
        yield handle


@pytest.fixture
def redis_client(redis_server):
    return redis_server.client()


def new_browser(qr):
    """A requests session that created a ticket; returns (session, ticket body)."""
    session = requests.Session()
    response = session.post(qr.url + "/api/tickets")
    assert response.status_code == 201, response.text
    return session, response.json()


def phone_token(qr, user="alice", password="alice"):
    response = requests.post(qr.url + "/api/phone/login", json={"user": user, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": "Bearer " + response.json()["token"]}


def state_of(qr, ticket):
    return requests.get(f"{qr.url}/api/tickets/{ticket}").json()


def assert_error(response, status, code):
    assert response.status_code == status, f"expected {status} {code}, got {response.status_code}: {response.text}"
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    assert body["detail"], "every error carries a sentence for a human"
    assert response.headers["X-Served-By"] == "A"


def test_create_ticket_returns_id_scan_url_expiry_and_binding_cookie(qr):
    response = requests.post(qr.url + "/api/tickets")
    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", body["ticket"]), "128-bit URL-safe id, no dots"
    assert body["scan_url"] == f"{qr.url}/m/{body['ticket']}"
    assert body["expires_at"] > body.get("at", 0)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("qr_bind=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie, "plain http: no Secure flag"
    assert response.headers["X-Served-By"] == "A"


def test_ticket_ids_are_distinct(qr):
    ids = {requests.post(qr.url + "/api/tickets").json()["ticket"] for _ in range(20)}
    assert len(ids) == 20


def test_secure_cookie_only_behind_https_proxy(redis_url):
    """X-Forwarded-Proto is believed from a trusted proxy (the same rule as X-Forwarded-For)."""
    with start_qrlogin("A", redis_url=redis_url, trusted_proxies=("127.0.0.1",)) as qr:
        response = requests.post(qr.url + "/api/tickets", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.json()["scan_url"].startswith("https://")


def test_scan_url_follows_host_and_forwarded_prefix(qr):
    response = requests.post(qr.url + "/api/tickets", headers={"Host": "lab.example:8888",
                                                               "X-Forwarded-Prefix": "/user/me/proxy/1234"})
    ticket = response.json()["ticket"]
    assert response.json()["scan_url"] == f"http://lab.example:8888/user/me/proxy/1234/m/{ticket}"


def test_public_url_decides_scan_url(redis_url):
    with start_qrlogin("P", redis_url=redis_url, public_url="http://192.168.1.20:8000/") as handle:
        ticket = requests.post(handle.url + "/api/tickets").json()["ticket"]
        assert state_of(handle, ticket)["state"] == "pending"
        png = requests.get(f"{handle.url}/qr/{ticket}.png")
        assert png.status_code == 200
        body = requests.post(handle.url + "/api/tickets").json()
        assert body["scan_url"] == f"http://192.168.1.20:8000/m/{body['ticket']}"


def test_full_login_walks_every_state_and_ends_with_a_session(qr, redis_client):
    browser, created = new_browser(qr)
    ticket = created["ticket"]
    assert state_of(qr, ticket)["state"] == "pending" and state_of(qr, ticket)["version"] == 1
    auth = phone_token(qr)
    scanned = requests.post(f"{qr.url}/api/tickets/{ticket}/scan", headers=auth)
    assert scanned.status_code == 200 and scanned.json()["state"] == "scanned" and scanned.json()["version"] == 2
    confirmed = requests.post(f"{qr.url}/api/tickets/{ticket}/confirm", headers=auth)
    assert confirmed.status_code == 200 and confirmed.json()["state"] == "confirmed" and confirmed.json()["version"] == 3
    old_session = "x" * 43
    browser.cookies.set("qr_session", old_session, domain="127.0.0.1", path="/")
    redis_client.set(f"qr:session:{old_session}", "mallory")
    redeemed = browser.post(f"{qr.url}/api/tickets/{ticket}/redeem")
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["user"] == "alice" and redeemed.json()["state"] == "redeemed"
    set_cookie = redeemed.headers["Set-Cookie"]
    assert set_cookie.startswith("qr_session=") and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert browser.cookies["qr_session"] != old_session, "a fresh session id at login"
    assert redis_client.get(f"qr:session:{old_session}") is None, "the old session id stops working"
    assert browser.get(qr.url + "/api/me").json() == {"user": "alice"}
    assert state_of(qr, ticket)["state"] == "redeemed" and state_of(qr, ticket)["version"] == 4


def test_binding_cookie_is_stored_only_as_a_fingerprint(qr, redis_client):
    browser, created = new_browser(qr)
    stored = redis_client.hgetall(f"qr:ticket:{created['ticket']}")
    sent = browser.cookies["qr_bind"].strip('"')  # the signed value ("2|1:0|..."), quoted in the jar
    assert stored["bind"] == fingerprint(sent)
    assert sent not in stored.values() and browser.cookies["qr_bind"] not in stored.values()


def test_ticket_records_the_browser_behind_a_balancer(redis_url, redis_client):
    with start_qrlogin("A", redis_url=redis_url, trusted_proxies=("127.0.0.1",)) as qr:  # we are its balancer
        response = requests.post(qr.url + "/api/tickets", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7",
                                                                   "User-Agent": "TestBrowser/1"})
        ticket = response.json()["ticket"]
        stored = redis_client.hgetall(f"qr:ticket:{ticket}")
        assert stored["ip"] == "198.51.100.7", "the address the balancer added (the last one)"
        page = requests.get(f"{qr.url}/m/{ticket}")
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "198.51.100.7" in page.text and "TestBrowser/1" in page.text and " UTC" in page.text
        assert page.headers["X-Served-By"] == "A"


def test_x_forwarded_for_from_a_peer_not_trusted_is_ignored(qr, redis_client):
    response = requests.post(qr.url + "/api/tickets", headers={"X-Forwarded-For": "198.51.100.7"})
    stored = redis_client.hgetall(f"qr:ticket:{response.json()['ticket']}")
    assert stored["ip"] == "127.0.0.1", "a client cannot write its own address onto the confirm page"
    assert "198.51.100.7" not in requests.get(f"{qr.url}/m/{response.json()['ticket']}").text


def test_phone_page_escapes_what_the_browser_sent(qr):
    response = requests.post(qr.url + "/api/tickets", headers={"User-Agent": "<script>alert(1)</script>"})
    page = requests.get(f"{qr.url}/m/{response.json()['ticket']}")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text


def test_qr_image_is_a_real_png(qr):
    _, created = new_browser(qr)
    response = requests.get(f"{qr.url}/qr/{created['ticket']}.png")
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", response.content[16:24])
    assert width == height and width >= 21 * 8


def test_login_page_for_each_transport_uses_relative_urls_only(qr):
    for transport in ("poll", "longpoll", "sse", "ws"):
        response = requests.get(f"{qr.url}/login?transport={transport}")
        assert response.status_code == 200 and response.headers["X-Served-By"] == "A"
        assert f'data-transport="{transport}"' in response.text
        script = response.text.split("<script>", 1)[1]
        assert not re.search(r"""["'`]/[a-z]""", script), "no absolute '/...' paths in page JavaScript"
    phone_page = requests.get(f"{qr.url}/m/{new_browser(qr)[1]['ticket']}").text.split("<script>", 1)[1]
    assert not re.search(r"""["'`]/[a-z]""", phone_page)


def test_bad_transport_is_a_json_400(qr):
    assert_error(requests.get(f"{qr.url}/login?transport=carrier-pigeon"), 400, "bad_transport")


def test_unknown_route_is_a_json_404(qr):
    assert_error(requests.get(f"{qr.url}/nope"), 404, "not_found")


# ---------------------------------------------------------------------------------------------
# Bad input: each a clear JSON 4xx with its own code, and no other ticket disturbed.


@pytest.fixture
def bystander(qr):
    """A second ticket, scanned, that every bad request must leave alone."""
    browser, created = new_browser(qr)
    auth = phone_token(qr)
    requests.post(f"{qr.url}/api/tickets/{created['ticket']}/scan", headers=auth).raise_for_status()
    before = state_of(qr, created["ticket"])
    yield created["ticket"]
    after = state_of(qr, created["ticket"])
    assert after == before, "a bad request on another ticket changed this one"
    confirm = requests.post(f"{qr.url}/api/tickets/{created['ticket']}/confirm", headers=auth)
    assert confirm.status_code == 200
    assert browser.post(f"{qr.url}/api/tickets/{created['ticket']}/redeem").status_code == 200


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/tickets/{t}"), ("GET", "/api/tickets/{t}/longpoll?state=pending&timeout=0"),
    ("GET", "/api/tickets/{t}/events"), ("POST", "/api/tickets/{t}/scan"), ("POST", "/api/tickets/{t}/confirm"),
    ("POST", "/api/tickets/{t}/redeem"), ("GET", "/m/{t}"), ("GET", "/qr/{t}.png"), ("GET", "/api/tickets/{t}/ws"),
])
def test_unknown_ticket_is_404_everywhere(qr, bystander, method, path):
    signed = requests.post(qr.url + "/api/tickets").cookies["qr_bind"]  # a binding value the server issued
    headers = {**phone_token(qr), "Cookie": "qr_bind=" + signed}  # credentials pass; the ticket does not
    response = requests.request(method, qr.url + path.format(t="NoSuchTicket0000000000"), headers=headers)
    assert_error(response, 404, "unknown_ticket")


def test_expired_ticket_is_410_and_reported_expired(qr, bystander, redis_client):
    browser, created = new_browser(qr)
    ticket = created["ticket"]
    redis_client.hset(f"qr:ticket:{ticket}", "expires_at", "1")  # as if its time had run out
    auth = phone_token(qr)
    assert_error(requests.post(f"{qr.url}/api/tickets/{ticket}/scan", headers=auth), 410, "ticket_expired")
    assert state_of(qr, ticket)["state"] == "expired" and state_of(qr, ticket)["version"] == 2
    assert_error(requests.post(f"{qr.url}/api/tickets/{ticket}/confirm", headers=auth), 410, "ticket_expired")
    assert_error(browser.post(f"{qr.url}/api/tickets/{ticket}/redeem"), 410, "ticket_expired")
    assert_error(requests.get(f"{qr.url}/qr/{ticket}.png"), 410, "ticket_expired")
    assert state_of(qr, ticket)["version"] == 2, "expiring happens once"


def test_expired_ticket_key_has_a_redis_ttl(qr, redis_client):
    _, created = new_browser(qr)
    ttl = redis_client.pttl(f"qr:ticket:{created['ticket']}")
    assert 120_000 < ttl <= (120 + 300) * 1000


def test_confirm_before_scan_is_409(qr, bystander):
    _, created = new_browser(qr)
    response = requests.post(f"{qr.url}/api/tickets/{created['ticket']}/confirm", headers=phone_token(qr))
    assert_error(response, 409, "not_scanned")
    assert state_of(qr, created["ticket"])["state"] == "pending"


@pytest.mark.parametrize("step", ["scan", "confirm"])
@pytest.mark.parametrize("authorization,code", [(None, "missing_token"), ("Bearer " + "f" * 43, "invalid_token"),
                                                ("Basic YWxpY2U6YWxpY2U=", "missing_token")])
def test_scan_or_confirm_without_a_valid_phone_token_is_401(qr, bystander, step, authorization, code):
    _, created = new_browser(qr)
    if step == "confirm":
        requests.post(f"{qr.url}/api/tickets/{created['ticket']}/scan", headers=phone_token(qr)).raise_for_status()
    headers = {"Authorization": authorization} if authorization else {}
    assert_error(requests.post(f"{qr.url}/api/tickets/{created['ticket']}/{step}", headers=headers), 401, code)


def test_confirm_by_another_user_than_the_scanner_is_403(redis_url):
    with start_qrlogin("A", redis_url=redis_url, users={"alice": "alice", "bob": "bob"}) as qr:
        _, created = new_browser(qr)
        ticket = created["ticket"]
        requests.post(f"{qr.url}/api/tickets/{ticket}/scan", headers=phone_token(qr)).raise_for_status()
        bob = phone_token(qr, "bob", "bob")
        assert_error(requests.post(f"{qr.url}/api/tickets/{ticket}/scan", headers=bob), 409, "already_scanned")
        assert_error(requests.post(f"{qr.url}/api/tickets/{ticket}/confirm", headers=bob), 403, "wrong_user")
        assert state_of(qr, ticket)["state"] == "scanned"


def test_redeem_without_or_with_a_wrong_binding_cookie_is_403(qr, bystander):
    owner, created = new_browser(qr)
    ticket = created["ticket"]
    auth = phone_token(qr)
    for step in ("scan", "confirm"):
        requests.post(f"{qr.url}/api/tickets/{ticket}/{step}", headers=auth).raise_for_status()
    assert_error(requests.post(f"{qr.url}/api/tickets/{ticket}/redeem"), 403, "missing_binding")
    attacker, _ = new_browser(qr)  # has a binding cookie, for its own ticket
    assert_error(attacker.post(f"{qr.url}/api/tickets/{ticket}/redeem"), 403, "binding_mismatch")
    assert state_of(qr, ticket)["state"] == "confirmed", "refused redeems change nothing"
    assert owner.post(f"{qr.url}/api/tickets/{ticket}/redeem").status_code == 200


def test_redeem_before_confirm_is_409(qr, bystander):
    owner, created = new_browser(qr)
    assert_error(owner.post(f"{qr.url}/api/tickets/{created['ticket']}/redeem"), 409, "not_confirmed")


def test_second_redeem_and_late_phone_calls_are_409(qr, bystander):
    owner, created = new_browser(qr)
    ticket = created["ticket"]
    auth = phone_token(qr)
    for step in ("scan", "confirm"):
        requests.post(f"{qr.url}/api/tickets/{ticket}/{step}", headers=auth).raise_for_status()
    assert owner.post(f"{qr.url}/api/tickets/{ticket}/redeem").status_code == 200
    assert_error(owner.post(f"{qr.url}/api/tickets/{ticket}/redeem"), 409, "already_redeemed")
    assert_error(requests.post(f"{qr.url}/api/tickets/{ticket}/scan", headers=auth), 409, "ticket_redeemed")
    assert_error(requests.post(f"{qr.url}/api/tickets/{ticket}/confirm", headers=auth), 409, "ticket_redeemed")


def test_repeated_scan_and_confirm_by_the_same_phone_are_harmless(qr, bystander):
    _, created = new_browser(qr)
    ticket = created["ticket"]
    auth = phone_token(qr)
    for step in ("scan", "scan", "confirm", "confirm"):
        assert requests.post(f"{qr.url}/api/tickets/{ticket}/{step}", headers=auth).status_code == 200
    assert state_of(qr, ticket)["version"] == 3, "no change, no new version"


@pytest.mark.parametrize("body,code", [(b"{not json", "bad_json"), (b"[1, 2]", "bad_json"),
                                       (b'{"user": "alice"}', "missing_field"),
                                       (b'{"user": 1, "password": 2}', "bad_field")])
def test_bad_phone_login_body_is_400(qr, bystander, body, code):
    response = requests.post(qr.url + "/api/phone/login", data=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, code)


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", "alice"), ("alice", "")])
def test_wrong_password_is_401(qr, bystander, user, password):
    assert_error(requests.post(qr.url + "/api/phone/login", json={"user": user, "password": password}),
                 401, "bad_credentials")


@pytest.mark.parametrize("query", ["state=bogus", "timeout=abc", "timeout=-1", "timeout=100000"])
def test_bad_longpoll_arguments_are_400(qr, bystander, query):
    _, created = new_browser(qr)
    response = requests.get(f"{qr.url}/api/tickets/{created['ticket']}/longpoll?{query}")
    assert response.status_code == 400 and response.json()["error"] == "bad_argument"


def test_bad_last_event_id_is_400(qr, bystander):
    _, created = new_browser(qr)
    response = requests.get(f"{qr.url}/api/tickets/{created['ticket']}/events", headers={"Last-Event-ID": "x"})
    assert_error(response, 400, "bad_last_event_id")


def test_me_without_a_session_is_401(qr):
    assert_error(requests.get(qr.url + "/api/me"), 401, "not_logged_in")


# ---------------------------------------------------------------------------------------------
# Origin: cookie-authenticated browser routes refuse another site's pages.


def test_cross_site_origin_is_refused_on_browser_routes(qr, bystander):
    evil = {"Origin": "http://evil.example"}
    assert_error(requests.post(qr.url + "/api/tickets", headers=evil), 403, "cross_site_origin")
    owner, created = new_browser(qr)
    ticket = created["ticket"]
    auth = phone_token(qr)
    for step in ("scan", "confirm"):
        requests.post(f"{qr.url}/api/tickets/{ticket}/{step}", headers=auth).raise_for_status()
    assert_error(owner.post(f"{qr.url}/api/tickets/{ticket}/redeem", headers=evil), 403, "cross_site_origin")
    assert_error(owner.post(f"{qr.url}/api/tickets/{ticket}/redeem", headers={"Origin": "null"}), 403,
                 "cross_site_origin")
    for path in (f"/api/tickets/{ticket}", f"/api/tickets/{ticket}/events", f"/api/tickets/{ticket}/longpoll"):
        assert_error(owner.get(qr.url + path, headers=evil), 403, "cross_site_origin")
    assert state_of(qr, ticket)["state"] == "confirmed"
    same_site = owner.post(f"{qr.url}/api/tickets/{ticket}/redeem", headers={"Origin": qr.url})
    assert same_site.status_code == 200, "the page's own origin passes"


def test_phone_calls_need_no_origin_check(qr):
    _, created = new_browser(qr)
    auth = {**phone_token(qr), "Origin": "http://phone-app.example"}
    assert requests.post(f"{qr.url}/api/tickets/{created['ticket']}/scan", headers=auth).status_code == 200


def test_redis_restart_and_outage(redis_url):
    """The app reconnects after Redis restarts; while Redis is down it answers a JSON 503."""
    from servers.redisproc import start_redis

    with start_redis() as own_redis, start_qrlogin("R", redis_url=own_redis.url) as qr:
        assert requests.post(qr.url + "/api/tickets").status_code == 201
        own_redis.restart()
        assert requests.post(qr.url + "/api/tickets").status_code == 201, "reconnected by itself"
        own_redis.stop()
        down = requests.post(qr.url + "/api/tickets")
        assert down.status_code == 503 and down.json()["error"] == "store_unavailable"
        own_redis.start()
        assert requests.post(qr.url + "/api/tickets").status_code == 201
