"""The QR-login pages behind a path prefix, as jupyter-server-proxy serves them (<base>/proxy/<port>/).

A real nginx maps only ``/lab/proxy/<port>/`` to the app (and, like jupyter-server-proxy, sends
``X-Forwarded-Prefix``), so any absolute path in the pages would hit nginx's 404: Chromium
completing a login proves every URL the pages use is relative, and the QR's scan URL keeps the prefix.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from servers.clients.qr import Phone
from servers.qrlogin import start_qrlogin
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
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port};
        location {prefix}/ {{
            proxy_pass http://127.0.0.1:{backend}/;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Prefix {prefix};
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def run_as_user() -> str:
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    entry = pwd.getpwuid(os.geteuid())
    return f"user {entry.pw_name} {grp.getgrgid(entry.pw_gid).gr_name};"


@pytest.fixture
def prefixed(tmp_path, redis_url):
    binary = nginx_path()
    if binary is None:
        pytest.skip("nginx not found (Debian: apt-get install nginx)")
    qr = start_qrlogin("A", redis_url=redis_url)
    prefix = f"/lab/proxy/{qr.port}"
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        (tmp_path / "nginx.conf").write_text(CONFIG.format(d=tmp_path, port=port, prefix=prefix, backend=qr.port,
                                                           user=run_as_user()))
        proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:  # ready = it accepts a TCP connection (checked every few ms up to the deadline)
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        pytest.fail("nginx did not start: " + proc.stderr.read().decode(errors="replace"))
    try:
        yield qr, f"http://127.0.0.1:{port}{prefix}"
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()
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
