"""The pages behind a path prefix, as jupyter-server-proxy serves them (<base>/proxy/<port>/...).

A real nginx (tests/nginx_prefix.py) maps ``/lab/proxy/<port>/`` to the feed and nothing else, so
a page that called an absolute path (``/feed/sse``) would get nginx's 404 and the test would fail:
every URL the pages use must be relative. tests/test_hub_proxy.py does the same through a real
Jupyter server and jupyter-server-proxy.
"""
from __future__ import annotations

import pytest
import requests

from servers.feed.app import start_feed
from tests.nginx_prefix import start_prefix_proxy

pytestmark = [pytest.mark.browser, pytest.mark.nginx]


@pytest.fixture
def prefixed(tmp_path):
    feed = start_feed(name="feed-prefix", sse_retry_ms=200)
    proxy = start_prefix_proxy(tmp_path, feed.port, f"/lab/proxy/{feed.port}")
    try:
        yield feed, proxy.url + "/"
    finally:
        proxy.stop()
        feed.stop()


def publish(base, data):
    return requests.post(base + "feed/publish", json={"data": data}).json()["seq"]


def test_index_redirect_and_links_keep_the_prefix(prefixed, page):
    _, base = prefixed
    page.goto(base)  # "/" redirects to the relative "pages/"
    assert page.url == base + "pages/"
    links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
    assert links and all(link.startswith(base + "pages/") for link in links)


@pytest.mark.parametrize("name", ["sse", "ws", "stomp", "poll?interval=50", "longpoll"])
def test_every_page_works_under_the_prefix(prefixed, page, name):
    feed, base = prefixed
    failed = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto(base + "pages/" + name)
    ready = {"sse": "window.opens === 1", "ws": "window.status_text === 'open'",
             "stomp": "window.status_text && window.status_text.startsWith('subscribed')",
             "longpoll": "window.status_text && window.status_text.startsWith('waiting')"}.get(name, "window.requests >= 1")
    page.wait_for_function(ready)
    publish(base, "via nginx")
    page.wait_for_function("window.lastSeq === 1")
    page.fill("#publish input[name=data]", "typed")  # publishing from the page goes through the prefix too
    page.click("#publish button")
    page.wait_for_function("window.lastSeq === 2")
    assert feed.call(lambda app: app.buffer.last_seq) == 2
    assert failed == []
