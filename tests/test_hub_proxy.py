"""The pages as a class sees them: through a real Jupyter server and jupyter-server-proxy.

On JupyterHub and Binder the learner's browser reaches only the Jupyter server, which forwards
``<base>proxy/<port>/<path>`` to ``localhost:<port>/<path>``. Here a real ``jupyter_server``
runs on loopback as a subprocess, with a hub-like base URL (``/user/learner/``), a token, its
config, data and runtime directories in a temporary directory (nothing leaks in or out), and the
jupyter_server_proxy extension enabled explicitly. Chromium logs in with the token, as a learner
does, and then opens our pages only through the proxy:

* the login page (SSE and WebSocket) ends logged in after the phone confirms, the phone talking
  to the server directly as a phone on the LAN would; the QR encodes the proxied phone URL;
* the phone page works through the proxy too (a phone logged in to the hub);
* every feed demo page receives a published event and publishes one itself;
* a lesson cell run in a kernel of that Jupyter server gets from ``lab.browser_url`` /
  ``lab.show`` exactly the proxied URL, from ``JUPYTERHUB_SERVICE_PREFIX`` as on a hub.

WebSocket and Tornado's origin check: jupyter-server-proxy copies the browser's request headers,
``Host`` and ``Origin`` included, into its own handshake with the backend, so Origin and Host
still name the same site and the backend's default ``check_origin`` accepts the socket. The tests
below would fail (close 1006 on the page) if that ever changed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from servers.clients.qr import Phone
from lab.display import BASE_URL_SETTING, browser_url, proxy_base, show
from servers.feed.app import start_feed
from servers.qrlogin import start_qrlogin

BASE_URL = "/user/learner/"  # what JupyterHub gives a user's server (JUPYTERHUB_SERVICE_PREFIX)


def _need_proxy_extension() -> None:
    import importlib.util

    missing = [name for name in ("jupyter_server", "jupyter_server_proxy") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: pip install jupyter-server-proxy (a dependency of the suite)")


class JupyterServer:
    """A real Jupyter server with jupyter-server-proxy, run the way a hub runs a user's server."""

    def __init__(self, directory: Path, *, base_url: str = BASE_URL, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.base_url = base_url
        self.token = uuid.uuid4().hex
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.log_path = directory / "jupyter.log"

    # -- life cycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "JupyterServer":
        d = self.directory
        for name in ("runtime", "config", "data", "tmp", "root"):
            (d / name).mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in (BASE_URL_SETTING, "JUPYTERHUB_SERVICE_PREFIX")}
        env.update({
            "JUPYTER_RUNTIME_DIR": str(d / "runtime"), "JUPYTER_CONFIG_DIR": str(d / "config"),
            "JUPYTER_DATA_DIR": str(d / "data"),
            # No config from the machine (other installed server extensions stay off): only what
            # the command line says. jupyter_core then makes a blank config dir under TMPDIR.
            "JUPYTER_NO_CONFIG": "1", "TMPDIR": str(d / "tmp"),
            **self.extra_env,
        })
        args = [sys.executable, "-m", "jupyter_server", "--ServerApp.port=0", "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}",  # ServerApp.token is its deprecated alias
                "--ServerApp.open_browser=False", f"--ServerApp.base_url={self.base_url}",
                f"--ServerApp.root_dir={d / 'root'}",
                "--ServerApp.jpserver_extensions=jupyter_server_proxy=True"]
        if os.geteuid() == 0:
            args.append("--ServerApp.allow_root=True")  # containers and CI often run as root
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=d / "root", start_new_session=True)
        info = self._wait_for_runtime_file(d / "runtime" / f"jpserver-{self.process.pid}.json", timeout)
        self.port = info["port"]
        assert info["base_url"] == self.base_url, info
        self._wait_listening(timeout)
        return self

    def _wait_for_runtime_file(self, path: Path, timeout: float) -> dict:
        """The server writes ``jpserver-<pid>.json`` (with the port it picked) once it has started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._fail_if_dead()
            if path.exists():
                try:
                    return json.loads(path.read_text())
                except ValueError:
                    pass  # caught while being written: read it again
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"Jupyter server wrote no {path.name} within {timeout} s:\n{self.log_tail()}")

    def _wait_listening(self, timeout: float) -> None:
        """jupyter_server writes the runtime file just before its loop binds the port: wait for a connect."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._fail_if_dead()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        pytest.fail(f"Jupyter server never accepted connections on port {self.port}:\n{self.log_tail()}")

    def _fail_if_dead(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"Jupyter server exited with {self.process.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 20) -> list[int]:
        """SIGTERM (the server shuts its kernels down); returns the pids of any process it left alive.

        Kernels run in sessions of their own (jupyter_client starts them with start_new_session)
        and outlive a killed parent, so neither the process group nor the child list finds them
        all: every process started by this server inherits its private JUPYTER_RUNTIME_DIR, and
        that is what is looked for.
        """
        process, self.process = self.process, None
        if process is None:
            return []
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        deadline = time.monotonic() + 10
        left = _started_by(self.directory / "runtime")
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = _started_by(self.directory / "runtime")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- addresses -----------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return self.origin + self.base_url + path.lstrip("/")

    def proxied(self, port: int, path: str = "/") -> str:
        """What jupyter-server-proxy serves for ``localhost:<port><path>``."""
        return self.url(f"proxy/{port}{path}")

    # -- REST and kernels ----------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        response = requests.request(method, self.url(path), headers=headers, timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def start_kernel(self) -> str:
        return self.api("POST", "api/kernels", json={"name": "python3"}).json()["id"]

    def shutdown_kernel(self, kernel_id: str) -> None:
        self.api("DELETE", f"api/kernels/{kernel_id}")

    def execute(self, kernel_id: str, code: str, timeout: float = 60) -> dict:
        """Run ``code`` in the kernel as a notebook cell would; its stdout and display data.

        In a thread of its own: Playwright's sync API already runs an asyncio loop in this one.
        """
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._execute(kernel_id, code, timeout)).result()

    async def _execute(self, kernel_id: str, code: str, timeout: float) -> dict:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = f"ws://127.0.0.1:{self.port}{self.base_url}api/kernels/{kernel_id}/channels"
        socket_ = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.token}"},
                                                      connect_timeout=timeout, request_timeout=timeout))
        msg_id = uuid.uuid4().hex
        socket_.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "learner",
                       "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        result: dict = {"stdout": "", "displays": []}
        try:
            while True:
                raw = await asyncio.wait_for(socket_.read_message(), timeout)
                if raw is None:
                    raise AssertionError("the kernel's channel closed before the cell finished")
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    result["stdout"] += content["text"]
                elif kind == "display_data":
                    result["displays"].append(content["data"])
                elif kind == "error":
                    raise AssertionError("the cell failed in the kernel:\n" + "\n".join(content["traceback"]))
                elif kind == "status" and content["execution_state"] == "idle":
                    return result
        finally:
            socket_.close()


def _started_by(runtime_dir: Path) -> list[int]:
    """Live processes whose environment carries this Jupyter server's JUPYTER_RUNTIME_DIR."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("JUPYTER_RUNTIME_DIR") == str(runtime_dir) \
                    and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


# ----------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory, redis_server):
    """One Jupyter server for the module, as a hub starts a user's server (JUPYTERHUB_SERVICE_PREFIX
    set; kernels inherit it) and with REDIS_URL so servers started in its kernels use the test Redis."""
    _need_proxy_extension()
    server = JupyterServer(tmp_path_factory.mktemp("jupyter"),
                           env={"JUPYTERHUB_SERVICE_PREFIX": BASE_URL, "REDIS_URL": redis_server.url})
    server.start()
    try:
        yield server
    finally:
        left = server.stop()
        assert left == [], f"processes of the Jupyter server still running after it stopped: {left}"


def log_in(jupyter: JupyterServer, context) -> None:
    """Log a browser context in to the Jupyter server with its token (it sets the login cookie)."""
    pg = context.new_page()
    try:
        response = pg.goto(jupyter.url(f"api/status?token={jupyter.token}"))
        assert response is not None and response.ok, f"logging in with the token failed: {response and response.status}"
    finally:
        pg.close()
    assert any(c["name"].startswith("username-") for c in context.cookies()), \
        f"the Jupyter server set no login cookie: {context.cookies()}"


@pytest.fixture
def hub_page(jupyter, page):
    """A Chromium page logged in to the Jupyter server, recording failed responses under the proxy."""
    log_in(jupyter, page.context)
    page.failed = []
    prefix = jupyter.url("proxy/")
    page.on("response", lambda r: page.failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.url.startswith(prefix) else None)
    page.sockets = []
    page.on("websocket", lambda ws: page.sockets.append(ws.url))
    return page


# ----------------------------------------------------------------------------------------------
# The QR login through the proxy.


@pytest.mark.browser
def test_the_proxy_refuses_a_browser_without_the_token(jupyter, page, redis_url):
    """The proxied pages are the hub user's: a browser not logged in is sent to the login page."""
    qr = start_qrlogin("hub-A", redis_url=redis_url)
    page.goto(jupyter.proxied(qr.port, "/login?transport=sse"))
    assert page.url.startswith(jupyter.url("login")), page.url


@pytest.mark.browser
@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_login_page_through_jupyter_server_proxy_ends_logged_in(jupyter, hub_page, redis_url, transport):
    page = hub_page
    qr = start_qrlogin("hub-A", redis_url=redis_url)
    path = browser_url(qr, f"/login?transport={transport}", base=jupyter.base_url)
    assert path == f"{BASE_URL}proxy/{qr.port}/login?transport={transport}"
    page.goto(jupyter.origin + path)
    page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
    ticket = page.text_content("#ticket")
    scan_url = page.get_attribute("#scan-link", "href")
    assert scan_url == jupyter.proxied(qr.port, f"/m/{ticket}"), \
        "the QR must encode the phone page under the proxy, prefix included (X-Forwarded-Prefix)"
    page.wait_for_function("document.getElementById('qr').complete && document.getElementById('qr').naturalWidth > 0",
                           timeout=15000)  # the QR image came through the proxy too
    phone = Phone(qr)  # straight to the server, as a phone on the LAN
    try:
        phone.login()
        phone.scan(ticket)
        phone.confirm(ticket)
    finally:
        phone.close()
    page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
    assert page.text_content("#status") == "logged in as alice"
    if transport == "ws":
        ws_url = jupyter.proxied(qr.port, f"/api/tickets/{ticket}/ws").replace("http://", "ws://", 1)
        assert page.sockets == [ws_url], "the state must have come over a WebSocket through the proxy"
    assert page.failed == []


@pytest.mark.browser
def test_phone_page_through_the_proxy_confirms_the_login(jupyter, browser, hub_page, redis_url):
    """A phone logged in to the hub opens the proxied URL from the QR and confirms there."""
    page = hub_page
    qr = start_qrlogin("hub-A", redis_url=redis_url)
    page.goto(jupyter.proxied(qr.port, "/login?transport=ws"))
    page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
    phone_context = browser.new_context()
    try:
        log_in(jupyter, phone_context)
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
    assert page.failed == []


@pytest.mark.browser
def test_public_url_goes_into_the_qr_code_under_the_proxy(jupyter, hub_page, redis_url):
    """With ``public_url`` (a LAN address) the QR names it, not the hub's proxy."""
    page = hub_page
    qr = start_qrlogin("hub-lan", redis_url=redis_url, public_url="http://192.168.1.20:8000/")
    page.goto(jupyter.proxied(qr.port, "/login?transport=sse"))
    page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
    ticket = page.text_content("#ticket")
    assert page.get_attribute("#scan-link", "href") == f"http://192.168.1.20:8000/m/{ticket}"
    assert page.failed == []


def test_scan_url_behind_a_tls_hub_is_https(jupyter, redis_url):
    """A hub terminates TLS and adds ``X-Forwarded-Proto``; the proxy passes it on, the QR says https."""
    qr = start_qrlogin("hub-tls", redis_url=redis_url, trusted_proxies=("127.0.0.1",))  # the hub's proxy is ours
    response = requests.post(jupyter.proxied(qr.port, "/api/tickets"), timeout=10,
                             headers={"Authorization": f"token {jupyter.token}", "X-Forwarded-Proto": "https"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scan_url"] == jupyter.proxied(qr.port, f"/m/{body['ticket']}").replace("http://", "https://", 1)
    assert "secure" in response.headers["Set-Cookie"].lower(), "cookies over https must be Secure"


# ----------------------------------------------------------------------------------------------
# The feed demo pages through the proxy.

READY = {"sse": "window.opens === 1", "ws": "window.status_text === 'open'",
         "stomp": "window.status_text && window.status_text.startsWith('subscribed')",
         "longpoll": "window.status_text && window.status_text.startsWith('waiting')"}


@pytest.mark.browser
def test_feed_index_through_the_proxy_keeps_the_prefix(jupyter, hub_page):
    """``show(feed)`` opens ``<base>proxy/<port>/``: its redirect and links must stay under the proxy."""
    page = hub_page
    feed = start_feed(name="hub-feed")
    page.goto(jupyter.origin + browser_url(feed, base=jupyter.base_url))
    assert page.url == jupyter.proxied(feed.port, "/pages/")
    links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
    assert links and all(link.startswith(jupyter.proxied(feed.port, "/pages/")) for link in links), links
    assert page.failed == []


@pytest.mark.browser
@pytest.mark.parametrize("name", ["sse", "ws", "stomp", "poll?interval=50", "longpoll"])
def test_feed_page_through_jupyter_server_proxy(jupyter, hub_page, name):
    page = hub_page
    feed = start_feed(name="hub-feed")
    page.goto(jupyter.proxied(feed.port, "/pages/" + name))
    page.wait_for_function(READY.get(name, "window.requests >= 1"), timeout=15000)
    requests.post(feed.url + "/feed/publish", json={"data": "from the cell"}, timeout=10).raise_for_status()
    page.wait_for_function("window.lastSeq === 1", timeout=15000)
    page.fill("#publish input[name=data]", "typed on the page")  # and back through the proxy
    page.click("#publish button")
    page.wait_for_function("window.lastSeq === 2", timeout=15000)
    assert feed.call(lambda app: app.buffer.last_seq) == 2
    if name in ("ws", "stomp"):
        proxied_ws = jupyter.proxied(feed.port, "/").replace("http://", "ws://", 1)
        assert len(page.sockets) == 1 and page.sockets[0].startswith(proxied_ws), page.sockets
    assert page.failed == []


# ----------------------------------------------------------------------------------------------
# A lesson cell in a kernel of the hub's server.

LESSON_CELL = """
import json, lab, servers
qr = servers.start_qrlogin("lesson")
lab.show(qr, "/login?transport=ws")
print(json.dumps({"url": qr.url, "port": qr.port, "browser_url": lab.browser_url(qr, "/login?transport=ws")}))
"""


@pytest.mark.browser
def test_lesson_cell_in_a_hub_kernel_shows_the_proxied_page(jupyter, hub_page):
    """``lab.show`` in a kernel of the hub's server links and frames the proxied URL, which logs in."""
    page = hub_page
    kernel = jupyter.start_kernel()
    try:
        result = jupyter.execute(kernel, LESSON_CELL)
        info = json.loads(result["stdout"].strip().splitlines()[-1])
        expected = f"{BASE_URL}proxy/{info['port']}/login?transport=ws"
        assert info["browser_url"] == expected, "browser_url must follow JUPYTERHUB_SERVICE_PREFIX in a hub kernel"
        shown = "".join(d.get("text/html", "") for d in result["displays"])
        assert f'<iframe src="{expected}' in shown and f'href="{expected}' in shown, shown
        page.goto(jupyter.origin + expected)
        page.wait_for_function("document.getElementById('ticket').textContent.length > 0", timeout=15000)
        ticket = page.text_content("#ticket")
        phone = Phone(info["url"])
        try:
            phone.login()
            phone.scan(ticket)
            phone.confirm(ticket)
        finally:
            phone.close()
        page.wait_for_selector('#status[data-state="logged-in"]', timeout=15000)
    finally:
        jupyter.shutdown_kernel(kernel)
    with pytest.raises(requests.ConnectionError):  # the kernel's server went with the kernel
        requests.get(info["url"] + "/login", timeout=10)
    assert page.failed == []


# ----------------------------------------------------------------------------------------------
# browser_url / show without a browser: which base wins.


def test_browser_url_follows_jupyterhub_service_prefix(monkeypatch):
    monkeypatch.delenv(BASE_URL_SETTING, raising=False)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    assert proxy_base() == "/user/alice/"
    assert browser_url("http://127.0.0.1:8123", "/login?transport=sse") == "/user/alice/proxy/8123/login?transport=sse"
    assert browser_url("http://127.0.0.1:8123", "pages/ws") == "/user/alice/proxy/8123/pages/ws"


def test_browser_url_setting_names_the_notebook_servers_base_url(monkeypatch):
    """SERVER_PUSH_LAB_BASE_URL (e.g. a plain Jupyter server with --ServerApp.base_url) wins over the hub's."""
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    monkeypatch.setenv(BASE_URL_SETTING, "/lab-base")
    assert browser_url("http://127.0.0.1:8123", "/m/t1") == "/lab-base/proxy/8123/m/t1"
    assert browser_url("http://127.0.0.1:8123", "/m/t1", base="") == "http://127.0.0.1:8123/m/t1", \
        "an explicit base='' means the local URL"


def test_browser_url_is_local_without_a_hub(monkeypatch, redis_url):
    monkeypatch.delenv(BASE_URL_SETTING, raising=False)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    qr = start_qrlogin("local", redis_url=redis_url)
    assert browser_url(qr, "/login") == f"http://127.0.0.1:{qr.port}/login"
    assert browser_url("http://0.0.0.0:8123/", "/login") == "http://127.0.0.1:8123/login", \
        "a server bound to every address is opened on loopback"
    with pytest.raises(ValueError):
        browser_url("http://example.org", "/login")


def test_show_outside_jupyter_prints_the_url(monkeypatch, capsys):
    monkeypatch.delenv(BASE_URL_SETTING, raising=False)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    show("http://127.0.0.1:8123", "/pages/sse")
    assert capsys.readouterr().out.strip() == "/user/alice/proxy/8123/pages/sse"
