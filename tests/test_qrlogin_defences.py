"""The QR-login app's defences tried as an attacker would: forwarding headers written by the
client, a binding cookie the server never issued, budgets behind several servers, ``--hardened``,
and the confirm page's warning when the asking browser is on another network."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from lab.lessons.security import confirm_page_facts
from servers.balancer import start_balancer
from servers.clients.qr import BROWSER_ADDRESS, Browser, Phone, QRError
from servers.limits import HARDENED_LIMITS
from servers.qrlogin import start_qrlogin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def qr(redis_url):
    with start_qrlogin("A", redis_url=redis_url) as handle:
        yield handle


# -- forwarding headers: believed only from a configured proxy ------------------------------------

def test_a_client_writing_x_forwarded_for_does_not_change_the_confirm_page(qr):
    created = requests.post(qr.url + "/api/tickets", headers={"X-Forwarded-For": "203.0.113.7"}).json()
    facts = confirm_page_facts(requests.get(qr.url + f"/m/{created['ticket']}").text)
    assert facts["browser_address"] == "127.0.0.1", facts


def test_a_client_writing_x_forwarded_proto_gets_no_https(qr):
    response = requests.post(qr.url + "/api/tickets", headers={"X-Forwarded-Proto": "https"})
    assert response.json()["scan_url"].startswith("http://"), response.json()
    assert "secure" not in response.headers["Set-Cookie"].lower()


def test_behind_a_trusted_balancer_the_forwarded_address_is_believed(redis_url):
    server = start_qrlogin("T", redis_url=redis_url, trusted_proxies=("127.0.0.1",))
    lb = start_balancer([f"T={server.url}"], "round_robin", name="defences-lb")
    browser = Browser(lb.url, "sse", source_address="127.0.1.9")
    ticket = browser.create_ticket()["ticket"]
    facts = confirm_page_facts(requests.get(lb.url + f"/m/{ticket}").text)
    assert facts["browser_address"] == "127.0.1.9", facts


# -- the binding cookie: only as the server signed it ---------------------------------------------

def test_an_unsigned_binding_cookie_is_refused_and_cleared_at_creation(qr):
    response = requests.post(qr.url + "/api/tickets", headers={"Cookie": "qr_bind=" + "A" * 43})
    assert response.status_code == 400 and response.json()["error"] == "bad_binding_cookie", response.text
    assert response.headers["Set-Cookie"].startswith("qr_bind=;") or "expires" in response.headers["Set-Cookie"].lower()


def test_a_planted_made_up_binding_value_does_not_let_its_planter_redeem(qr):
    planted = "AttackerKnowsThisValue_0123456789abcdefghij"
    victim = Browser(qr.url, "sse")
    victim.cookies["qr_bind"] = planted       # planted before the login, e.g. from another port of the host
    with pytest.raises(QRError) as refused:
        victim.create_ticket()
    assert (refused.value.status, refused.value.error) == (400, "bad_binding_cookie")
    ticket = victim.create_ticket()["ticket"]  # the refusal cleared it: a fresh, signed value
    assert victim.cookies["qr_bind"] != planted
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    stolen = requests.post(qr.url + f"/api/tickets/{ticket}/redeem", headers={"Cookie": f"qr_bind={planted}"})
    assert stolen.status_code == 403 and stolen.json()["error"] == "bad_binding_cookie", stolen.text
    assert victim.redeem(ticket)["user"] == "alice"


def test_a_tampered_signed_binding_cookie_is_refused_at_redeem(qr):
    browser = requests.Session()
    ticket = browser.post(qr.url + "/api/tickets").json()["ticket"]
    signed = browser.cookies["qr_bind"]
    tampered = signed[:-3] + ("000" if not signed.endswith('000"') else "111") + '"' if signed.endswith('"') else signed[:-3] + "000"
    phone = Phone(qr.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    response = requests.post(qr.url + f"/api/tickets/{ticket}/redeem", headers={"Cookie": f"qr_bind={tampered}"})
    assert response.status_code == 403 and response.json()["error"] == "bad_binding_cookie", response.text
    assert browser.post(qr.url + f"/api/tickets/{ticket}/redeem").status_code == 200


def test_a_binding_cookie_signed_by_one_server_is_accepted_by_another(redis_url):
    a, b = start_qrlogin("A", redis_url=redis_url), start_qrlogin("B", redis_url=redis_url)
    browser = requests.Session()
    ticket = browser.post(a.url + "/api/tickets").json()["ticket"]
    phone = Phone(b.url)
    phone.login()
    phone.scan(ticket)
    phone.confirm(ticket)
    assert browser.post(b.url + f"/api/tickets/{ticket}/redeem").status_code == 200


# -- budgets shared by every server of a cluster ---------------------------------------------------

def test_password_budget_holds_behind_three_servers(redis_url):
    budget = 5
    servers_ = [start_qrlogin(name, redis_url=redis_url, login_attempts_per_window=budget) for name in "XYZ"]
    answers = []
    for i in range(4 * budget):
        url = servers_[i % 3].url
        answers.append(requests.post(url + "/api/phone/login", json={"user": "alice", "password": f"guess{i}"}))
    statuses = [r.status_code for r in answers]
    assert statuses.count(401) == budget, statuses
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) == 3 * budget and {r.json()["error"] for r in refused} == {"too_many_login_attempts"}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert {r.headers["X-Served-By"] for r in refused} == {"X", "Y", "Z"}, "every server refuses: one count"


def test_unknown_ticket_budget_holds_across_servers_and_then_hides_live_tickets(redis_url):
    a = start_qrlogin("A", redis_url=redis_url, unknown_tickets_per_window=4)
    b = start_qrlogin("B", redis_url=redis_url, unknown_tickets_per_window=4)
    live = Browser(a.url, "sse").create_ticket()["ticket"]
    statuses = [requests.get(f"{(a, b)[i % 2].url}/api/tickets/NoSuchTicket{i:010d}").status_code for i in range(8)]
    assert statuses == [404] * 4 + [429] * 4, statuses
    # once spent, a live id answers 429 too: the guesser learns nothing from a hit
    hit = requests.get(f"{b.url}/api/tickets/{live}")
    assert hit.status_code == 429 and hit.json()["error"] == "too_many_unknown_tickets" and "Retry-After" in hit.headers
    assert Browser(a.url, "sse", source_address="127.0.0.5").state(live)["state"] == "pending", "others unaffected"


def test_ticket_creation_budget_holds_across_servers(redis_url):
    a = start_qrlogin("A", redis_url=redis_url, ticket_creations_per_window=3)
    b = start_qrlogin("B", redis_url=redis_url, ticket_creations_per_window=3)
    statuses = [requests.post((a, b)[i % 2].url + "/api/tickets").status_code for i in range(6)]
    assert statuses == [201] * 3 + [429] * 3, statuses


def test_no_budget_by_default(qr):
    statuses = {requests.post(qr.url + "/api/phone/login", json={"user": "alice", "password": "x"}).status_code
                for _ in range(HARDENED_LIMITS["login_attempts_per_window"] + 5)}
    assert statuses == {401}


# -- the command line ------------------------------------------------------------------------------

def test_cli_hardened_throttles_password_guessing(redis_url):
    process = subprocess.Popen([sys.executable, "-m", "servers", "qrlogin", "--port", "0", "--name", "H",
                                "--redis", redis_url, "--hardened"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        info = json.loads(process.stdout.readline())
        assert info["hardened"] is True
        budget = HARDENED_LIMITS["login_attempts_per_window"]
        statuses = [requests.post(info["url"] + "/api/phone/login", json={"user": "alice", "password": "guess"},
                                  timeout=10).status_code for _ in range(budget + 3)]
        assert statuses[:budget] == [401] * budget and statuses[budget:] == [429] * 3, statuses
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        process.stdout.close()
        process.stderr.close()


# -- the confirm page: another network warns --------------------------------------------------------

def test_confirm_page_warns_when_the_browser_is_on_another_network(qr):
    far = Browser(qr.url, "sse", source_address="127.0.1.66").create_ticket()["ticket"]
    near = Browser(qr.url, "sse").create_ticket()["ticket"]
    warned = confirm_page_facts(requests.get(qr.url + f"/m/{far}").text)     # the phone page from 127.0.0.1
    quiet = confirm_page_facts(requests.get(qr.url + f"/m/{near}").text)
    assert warned["browser_address"] == "127.0.1.66" and "another network" in warned["network_warning"], warned
    assert "127.0.0.1" in warned["network_warning"]
    assert quiet["browser_address"] == BROWSER_ADDRESS and quiet["network_warning"] == "", quiet
