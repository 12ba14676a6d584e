"""A real nginx that serves one backend under a path prefix only, as jupyter-server-proxy does.

Shared by the tests that check our pages work behind ``<base>/proxy/<port>/`` without a Jupyter
server (tests/test_interop_prefix.py, tests/test_qrlogin_prefix.py; tests/test_hub_proxy.py uses
the real jupyter-server-proxy). nginx maps ``<prefix>/`` to the backend and nothing else, so a
page that used an absolute path (``/feed/sse``) would get nginx's 404. Like jupyter-server-proxy
it keeps ``Host`` (Tornado's WebSocket origin check compares ``Origin`` with it) and sends
``X-Forwarded-Prefix`` (the QR-login app puts it into the phone URL). SSE needs
``proxy_buffering off``; WebSocket the ``Upgrade``/``Connection`` headers and a long read timeout.

nginx cannot listen on port 0: a free port is picked by binding port 0, and the start is retried
if another process takes it first. Ready means a TCP connect succeeds.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import nginx_path

__all__ = ["PrefixProxy", "start_prefix_proxy"]

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


def _run_as_user() -> str:
    """The ``user`` directive, needed only when nginx's master runs as root."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    entry = pwd.getpwuid(os.geteuid())
    return f"user {entry.pw_name} {grp.getgrgid(entry.pw_gid).gr_name};"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefixProxy:
    """A running nginx: ``url`` is ``http://127.0.0.1:<port><prefix>`` (no trailing slash)."""

    def __init__(self, process: subprocess.Popen, port: int, prefix: str) -> None:
        self.process = process
        self.port = port
        self.prefix = prefix
        self.origin = f"http://127.0.0.1:{port}"
        self.url = self.origin + prefix

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def start_prefix_proxy(directory: Path, backend_port: int, prefix: str, attempts: int = 5) -> PrefixProxy:
    """Start nginx serving ``127.0.0.1:<backend_port>/`` at ``<prefix>/``; skips the test without nginx."""
    binary = nginx_path()
    if binary is None:
        pytest.skip("nginx not found (Debian: apt-get install nginx)")
    prefix = "/" + prefix.strip("/")
    errors = ""
    for _ in range(attempts):
        port = _free_port()
        (directory / "nginx.conf").write_text(CONFIG.format(d=directory, port=port, prefix=prefix,
                                                            backend=backend_port, user=_run_as_user()))
        process = subprocess.Popen([binary, "-p", str(directory), "-c", str(directory / "nginx.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:  # ready = it accepts a TCP connection (checked every few ms up to the deadline)
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return PrefixProxy(process, port, prefix)
            except OSError:
                time.sleep(0.02)
        if process.poll() is None:
            process.kill()
        process.wait()
        errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.stderr is not None:
            process.stderr.close()
        if "Address already in use" not in errors:
            break
    pytest.fail("nginx did not start: " + errors)
