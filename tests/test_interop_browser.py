"""Real headless Chromium against the feed: EventSource (with its own reconnect), WebSocket, pages."""
from __future__ import annotations


import pytest
import requests

from servers.feed.app import make_feed_app, start_feed
from servers.runtime import serve

pytestmark = pytest.mark.browser


@pytest.fixture
def feed():
    with start_feed(name="feed-browser", sse_retry_ms=300) as handle:
        yield handle


def publish(feed, data):
    return requests.post(feed.url + "/feed/publish", json={"data": data}).json()["seq"]


def seqs(page):
    return page.evaluate("window.received.filter(m => 'seq' in m).map(m => m.seq)")


def test_eventsource_reconnects_by_itself_with_last_event_id(feed, page):
    sse_requests = []
    page.on("request", lambda r: sse_requests.append(r) if "/feed/sse" in r.url else None)
    page.goto(feed.url + "/pages/sse")
    page.wait_for_function("window.opens === 1")
    publish(feed, "one")
    publish(feed, "two")
    page.wait_for_function("window.lastSeq === 2")
    assert feed.call(lambda app: app.drop_streams()) == 1
    publish(feed, "while away")  # only a resume from Last-Event-ID can deliver this one
    page.wait_for_function("window.opens === 2")
    page.wait_for_function("window.lastSeq === 3")
    assert seqs(page) == [1, 2, 3]  # nothing lost, nothing twice
    assert [e["data"] for e in page.evaluate("window.received")] == ["one", "two", "while away"]
    assert len(sse_requests) == 2
    assert "last-event-id" not in sse_requests[0].all_headers()
    assert sse_requests[1].all_headers()["last-event-id"] == "2"


def test_eventsource_reconnects_after_the_tcp_connection_is_cut(feed, page):
    page.goto(feed.url + "/pages/sse?lastEventId=0")
    publish(feed, "a")
    page.wait_for_function("window.lastSeq === 1")
    feed.call(lambda app: app.drop_streams(abort=True))
    publish(feed, "b")
    page.wait_for_function("window.lastSeq === 2")
    assert seqs(page) == [1, 2]


def test_eventsource_sees_the_gap_event(page):
    with start_feed(name="feed-browser-small", buffer_size=2) as feed:
        for i in range(4):
            publish(feed, i)
        page.goto(feed.url + "/pages/sse?lastEventId=0")
        page.wait_for_function("window.lastSeq === 4")
        received = page.evaluate("window.received")
        assert received[0]["type"] == "gap" and received[0]["missed"] == {"from": 1, "to": 2}
        assert seqs(page) == [3, 4]


def test_eventsource_after_a_feed_restart_sees_a_reset_gap(page):
    """The feed restarts on its port; Chromium's EventSource reconnects by itself with
    ``Last-Event-ID: 3``, an id this run never gave: the gap event says the seqs start again, and
    the page takes seq 1 as new instead of dropping it as already seen."""
    feed = start_feed(name="feed-browser-restart", sse_retry_ms=300)
    for i in range(3):
        publish(feed, i)
    page.goto(feed.url + "/pages/sse?lastEventId=0")
    page.wait_for_function("window.lastSeq === 3")
    port = feed.port
    feed.stop()
    feed = serve(make_feed_app(name="feed-browser-restart", sse_retry_ms=300), port=port)
    page.wait_for_function("window.received.some(m => m.type === 'gap')", timeout=15000)
    publish(feed, "after the restart")
    page.wait_for_function("window.received.some(m => m.data === 'after the restart')")
    received = page.evaluate("window.received")
    gap = received[3]
    assert (gap["type"], gap["reset"], gap["first"], gap["missed"]) == ("gap", True, 1, None), gap
    assert received[4]["seq"] == 1 and page.evaluate("window.lastSeq") == 1


@pytest.mark.parametrize("name", ["poll", "longpoll"])
def test_polling_pages_after_a_feed_restart_see_a_reset_gap(page, name):
    """The same restart for the polling pages: they send back the epoch the feed named
    (X-Feed-Epoch), learn at once that the seqs start again, and show the new run's seq 1."""
    feed = start_feed(name=f"feed-{name}-restart")
    for i in range(3):
        publish(feed, i)
    page.goto(feed.url + f"/pages/{name}?interval=100")
    page.wait_for_function("window.lastSeq === 3 && !!window.feedEpoch")
    port = feed.port
    feed.stop()
    feed = serve(make_feed_app(name=f"feed-{name}-restart"), port=port)
    try:
        publish(feed, "after the restart")
        page.wait_for_function("window.received.some(m => m.data === 'after the restart')", timeout=30000)
        received = page.evaluate("window.received")
        gap = next(m for m in received if m.get("type") == "gap")
        assert (gap["reset"], gap["first"]) == (True, 1), gap
        assert received[-1]["seq"] == 1 and page.evaluate("window.lastSeq") == 1
    finally:
        feed.stop()


def test_browser_websocket_replay_and_duplex(feed, page):
    publish(feed, "old")
    page.goto(feed.url + "/pages/ws")
    page.wait_for_function("window.lastSeq === 1")  # the page opens with ?after=0
    publish(feed, "from http")
    page.wait_for_function("window.lastSeq === 2")
    page.fill("#publish input[name=data]", '{"typed": true}')
    page.click("#publish button")
    page.wait_for_function("window.lastSeq === 3")
    assert feed.call(lambda app: app.buffer.since(2)[0][0]["data"]) == {"typed": True}
    acks = page.evaluate("window.received.filter(m => m.type === 'ack')")
    assert [a["published"] for a in acks] == [3]
    page.evaluate("window.socket.send(new Uint8Array([1, 2]))")  # binary: closed with 1003
    page.wait_for_function("window.status_text.startsWith('closed')")
    assert "1003" in page.evaluate("window.status_text")


def test_browser_websocket_url_is_built_from_location(feed, page):
    with page.expect_websocket() as ws_info:
        page.goto(feed.url + "/pages/ws")
    assert ws_info.value.url == feed.ws_url + "/feed/ws?after=0"
    page.wait_for_function("window.status_text === 'open'")


def test_stomp_page_with_our_js_client(feed, page):
    page.goto(feed.url + "/pages/stomp")
    page.wait_for_function("window.status_text && window.status_text.startsWith('subscribed')")
    assert "STOMP 1.2" in page.evaluate("window.status_text")
    page.click("#hello")
    page.wait_for_function("window.greetings.length === 1")
    assert page.evaluate("window.greetings") == [{"content": "Hello, browser!"}]
    publish(feed, {"via": "http"})
    page.wait_for_function("window.lastSeq === 1")
    page.fill("#publish input[name=data]", "typed text")
    page.click("#publish button")
    page.wait_for_function("window.lastSeq === 2")
    assert feed.call(lambda app: app.buffer.since(1)[0][0]["data"]) == "typed text"


@pytest.mark.parametrize("name", ["poll?interval=50", "longpoll"])
def test_polling_pages_show_events(feed, page, name):
    page.goto(feed.url + "/pages/" + name)
    page.wait_for_function("window.requests >= 1 || document.getElementById('status').textContent.startsWith('waiting')")
    publish(feed, "x")
    publish(feed, "y")
    page.wait_for_function("window.lastSeq === 2")
    assert seqs(page) == [1, 2]


def test_index_links_every_technique(feed, page):
    page.goto(feed.url + "/")
    links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
    assert sorted(link.rsplit("/", 1)[1] for link in links) == ["longpoll", "poll", "sse", "stomp", "ws"]
    assert all(link.startswith(feed.url + "/pages/") for link in links)
