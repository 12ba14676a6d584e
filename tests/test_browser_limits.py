"""What real Chromium does that lesson 03 teaches: six connections per host over HTTP/1.1, and
how an EventSource can (and cannot) carry credentials."""
from __future__ import annotations

import pytest

from lab.lessons.sse import eventsource_auth, wait_for_streams
from servers.feed.app import start_feed
from tests.conftest import chromium_path

pytestmark = pytest.mark.browser


@pytest.fixture
def feed():
    with start_feed(name="feed-browser-limits") as handle:
        yield handle


def test_a_seventh_eventsource_waits_for_a_free_connection(feed, page):
    page.goto(feed.url + "/pages/")
    page.evaluate("() => { window.sources = [...Array(7)].map(() => new EventSource('../feed/sse')); }")
    page.wait_for_function("window.sources.filter(s => s.readyState === 1).length === 6")
    wait_for_streams(feed, 6)
    assert page.evaluate("window.sources.map(s => s.readyState)") == [1, 1, 1, 1, 1, 1, 0]
    assert feed.call(lambda app: app.stats()["sse"]) == 6   # the seventh never reached the server
    page.evaluate("() => window.sources[0].close()")
    page.wait_for_function("window.sources[6].readyState === 1")
    wait_for_streams(feed, 6)
    assert page.evaluate("window.sources.map(s => s.readyState)") == [2, 1, 1, 1, 1, 1, 1]


def test_websockets_are_not_held_to_six(feed, page):
    """Chromium keeps a separate, larger pool for WebSockets (255 per host)."""
    page.goto(feed.url + "/pages/")
    page.evaluate("() => { window.sockets = [...Array(8)].map(() => new WebSocket("
                  "location.href.replace('http', 'ws').replace('/pages/', '/feed/ws'))); }")
    page.wait_for_function("window.sockets.every(s => s.readyState === 1)")
    assert feed.call(lambda app: app.stats()["ws"]) == 8


def test_an_eventsource_sends_cookies_but_never_custom_headers(feed):
    if chromium_path() is None:
        pytest.skip("Chromium not found: install it (Debian: apt-get install chromium) or set CHROMIUM=path")
    seen = eventsource_auth(feed).set_index("tried")
    assert seen.loc["cookie", "Cookie"] == "session=c00k1e"
    assert seen.loc["token in the query", "request line"] == "GET /feed/sse?access_token=t0k3n"
    assert seen.loc["Authorization in the options", "Authorization"] == "(none)"
