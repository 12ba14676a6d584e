"""The feed's HTTP routes: publish, short poll, long poll; errors; overflow; no leaked waiters."""
from __future__ import annotations

import concurrent.futures
import socket
import time

import pytest
import requests

from servers.clients.feed import wait_until
from servers.feed.app import start_feed




@pytest.fixture
def feed():
    with start_feed(name="feed-http") as handle:
        yield handle


def test_publish_answers_201_with_gapless_seq_from_1(feed):
    r = requests.post(feed.url + "/feed/publish", json={"data": {"x": 1}})
    assert r.status_code == 201 and r.json() == {"seq": 1}
    assert r.headers["X-Served-By"] == "feed-http"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(lambda i: requests.post(feed.url + "/feed/publish", json={"data": i}).json()["seq"],
                             range(40)))
    assert sorted(seqs) == list(range(2, 42))
    events = requests.get(feed.url + "/feed/poll", params={"after": 0}).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, 42))
    assert events[0]["data"] == {"x": 1} and abs(events[0]["sent_at"] - time.time()) < 60


def test_publish_from_python_on_the_server_loop(feed):
    event = feed.call(lambda app: app.publish([1, 2]))
    assert event["seq"] == 1 and event["data"] == [1, 2]
    assert requests.get(feed.url + "/feed/poll").json()["events"][0]["data"] == [1, 2]


@pytest.mark.parametrize("body, code", [(b"{not json", "bad_json"), (b"[1, 2]", "bad_json"),
                                        (b'{"value": 1}', "missing_field"), (b"", "bad_json")])
def test_bad_publish_bodies_are_400_with_a_reason(feed, body, code):
    r = requests.post(feed.url + "/feed/publish", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == code and r.json()["detail"]
    assert r.headers["X-Served-By"] == "feed-http"


def test_too_large_publish_is_413(feed):
    r = requests.post(feed.url + "/feed/publish", json={"data": "x" * 70000})
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_poll_after_n_and_empty(feed):
    for i in range(3):
        feed.call(lambda app: app.publish(i))
    assert [e["seq"] for e in requests.get(feed.url + "/feed/poll?after=1").json()["events"]] == [2, 3]
    assert requests.get(feed.url + "/feed/poll?after=3").json() == {"events": []}
    assert requests.get(feed.url + "/feed/poll?after=99").json() == {"events": []}


@pytest.mark.parametrize("query", ["after=x", "after=-1", "after=1.5"])
def test_poll_bad_arguments_are_400(feed, query):
    r = requests.get(feed.url + "/feed/poll?" + query)
    assert r.status_code == 400 and r.json()["error"] == "bad_argument"
    assert r.headers["X-Served-By"] == "feed-http"


@pytest.mark.parametrize("query", ["timeout=x", "timeout=-1", "timeout=1000", "after=no"])
def test_longpoll_bad_arguments_are_400(feed, query):
    r = requests.get(feed.url + "/feed/longpoll?" + query)
    assert r.status_code == 400 and r.json()["error"] == "bad_argument"


def test_unknown_route_and_wrong_method_are_json_with_served_by(feed):
    r = requests.get(feed.url + "/feed/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert r.headers["X-Served-By"] == "feed-http"
    r = requests.delete(feed.url + "/feed/poll")
    assert r.status_code == 405 and r.headers["X-Served-By"] == "feed-http" and "error" in r.json()


def test_overflow_is_reported_not_skipped():
    with start_feed(name="feed-small", buffer_size=3) as feed:
        for i in range(5):
            feed.call(lambda app: app.publish(i))
        body = requests.get(feed.url + "/feed/poll?after=0").json()
        assert [e["seq"] for e in body["events"]] == [3, 4, 5]
        assert body["missed"] == {"from": 1, "to": 2}
        body = requests.get(feed.url + "/feed/longpoll?after=1&timeout=0").json()
        assert body["missed"] == {"from": 2, "to": 2} and [e["seq"] for e in body["events"]] == [3, 4, 5]
        assert "missed" not in requests.get(feed.url + "/feed/poll?after=2").json()


def test_longpoll_times_out_with_no_events(feed):
    r = requests.get(feed.url + "/feed/longpoll?after=0&timeout=0.2")
    assert r.status_code == 200 and r.json() == {"events": []}
    assert feed.call(lambda app: app.waiter_count) == 0


def test_longpoll_answers_at_once_when_events_exist(feed):
    feed.call(lambda app: app.publish("old"))
    r = requests.get(feed.url + "/feed/longpoll?after=0&timeout=30", timeout=10)
    assert [e["data"] for e in r.json()["events"]] == ["old"]


def test_longpoll_is_woken_by_a_publish(feed):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(requests.get, feed.url + "/feed/longpoll?after=0&timeout=30", timeout=20)
        wait_until(lambda: feed.call(lambda app: app.waiter_count) == 1)
        assert not pending.done()
        requests.post(feed.url + "/feed/publish", json={"data": "wake"})
        body = pending.result(timeout=10).json()
    assert [e["data"] for e in body["events"]] == ["wake"]
    assert feed.call(lambda app: app.waiter_count) == 0


def test_waiter_removed_when_the_client_disconnects(feed):
    sock = socket.create_connection((feed.host, feed.port))
    sock.sendall(b"GET /feed/longpoll?after=0&timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: feed.call(lambda app: app.waiter_count) == 1)
    sock.close()
    wait_until(lambda: feed.call(lambda app: len(app.waiters)) == 0)
    # and a publish afterwards finds nobody to answer and does not fail
    assert feed.call(lambda app: app.publish("after")["seq"]) == 1


def test_many_waiters_all_woken_by_one_publish(feed):
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(requests.get, feed.url + "/feed/longpoll?after=0&timeout=30", timeout=20)
                   for _ in range(5)]
        wait_until(lambda: feed.call(lambda app: app.waiter_count) == 5)
        feed.call(lambda app: app.publish("all"))
        answers = [f.result(timeout=10).json() for f in futures]
    assert all([e["data"] for e in a["events"]] == ["all"] for a in answers)


def test_root_and_pages_redirect_relatively(feed):
    r = requests.get(feed.url + "/", allow_redirects=False)
    assert r.status_code in (301, 302) and r.headers["Location"] == "pages/"
    r = requests.get(feed.url + "/pages", allow_redirects=False)
    assert r.headers["Location"] == "pages/"


@pytest.mark.parametrize("page", ["", "poll", "longpoll", "sse", "ws", "stomp", "stomp.js", "feed.js", "style.css"])
def test_pages_are_served_and_use_only_relative_urls(feed, page):
    r = requests.get(feed.url + "/pages/" + page)
    assert r.status_code == 200 and r.headers["X-Served-By"] == "feed-http"
    text = r.text
    for absolute in ('href="/', "src=\"/", "fetch('/", "'/feed", '"/feed', "'/stomp", "'/pages"):
        assert absolute not in text, f"{page} uses an absolute path: {absolute}"


def test_unknown_page_is_json_404(feed):
    r = requests.get(feed.url + "/pages/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert requests.get(feed.url + "/pages/..%2Fapp.py").status_code == 404
    assert requests.get(feed.url + "/pages/base.html").status_code == 404  # templates only rendered
    assert requests.get(feed.url + "/pages/sse.html").status_code == 404
