"""The pages behind a path prefix, as jupyter-server-proxy serves them (<base>/proxy/<port>/...).

A real nginx maps ``/lab/proxy/<port>/`` to the feed and nothing else, so a page that called an
absolute path (``/feed/sse``) would get nginx's 404 and the test would fail: every URL the pages
use must be relative. SSE needs ``proxy_buffering off``; WebSocket the Upgrade headers, and the
original ``Host`` (Tornado refuses a WebSocket whose ``Origin`` names another host than ``Host``).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import requests

from servers.feed.app import start_feed
from tests.conftest import nginx_path

pytestmark = [pytest.mark.browser, pytest.mark.nginx]

CONFIG = """
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
{user}
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location {prefix} {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;  # as jupyter-server-proxy: Tornado's origin check compares it
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user():
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    entry = pwd.getpwuid(os.geteuid())
    return f"user {entry.pw_name} {grp.getgrgid(entry.pw_gid).gr_name};"


@pytest.fixture
def prefixed(tmp_path):
    binary = nginx_path()
    if binary is None:
        pytest.skip("nginx not found (Debian: apt-get install nginx)")
    feed = start_feed(name="feed-prefix", sse_retry_ms=200)
    for _ in range(5):
        port = _free_port()
        prefix = f"/lab/proxy/{feed.port}/"
        (tmp_path / "nginx.conf").write_text(CONFIG.format(d=tmp_path, port=port, prefix=prefix,
                                                           backend=feed.port, user=_user()))
        proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        pytest.fail("nginx did not start: " + proc.stderr.read().decode(errors="replace"))
    try:
        yield feed, f"http://127.0.0.1:{port}{prefix}"
    finally:
        proc.terminate()
        proc.wait(10)
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
