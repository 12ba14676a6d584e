"""Real nginx in front of the backends, driven from Python with the same policies as ours.

Everything nginx needs lives in a temporary directory (the config, pid file, logs, temp paths),
so it runs without root and without touching the machine's own nginx. nginx cannot listen on
port 0, so a free port is found by binding port 0, and the start is retried if another process
takes it first. Readiness is a successful TCP connect (retried quickly up to a deadline).

How each policy becomes nginx configuration:

* ``round_robin``: the upstream block's default; ``least_conn``: ``least_conn;``; ``random``: ``random;``.
* ``ip_hash``: ``hash $remote_addr;``. Not nginx's ``ip_hash`` directive: that one hashes only the
  first three octets of an IPv4 address, so our browser (127.0.0.2) and phone (127.0.0.3) would
  always share a backend and the lesson would show a fix that is an accident of loopback.
* ``cookie``: open-source nginx has no ``sticky`` directive (that is NGINX Plus). We emulate it:
  one extra upstream per backend, a ``map`` from the ``spl_backend`` cookie to that upstream
  (no or unknown cookie: the round-robin upstream), and ``add_header Set-Cookie`` that names the
  backend that answered (``$upstream_addr`` mapped to its name) when the request had no valid
  cookie. The result is what our balancer does: the first response pins the client.
* ``ticket_hash``: the ticket id from the path, ``map $uri $ticket { ~^/(api/tickets|m|qr)/(?<t>[^/.]+) $t; }``,
  else ``$arg_ticket``, and ``hash $ticket_key consistent`` (ketama). A request without a ticket
  hashes ``$request_id`` (random per request) so it spreads instead of piling on one server.

SSE needs ``proxy_buffering off``; WebSocket needs ``proxy_http_version 1.1``, the
``Upgrade``/``Connection`` headers and a long ``proxy_read_timeout`` (nginx.org/en/docs/http/websocket.html). A backend that
cannot be reached gives the same JSON 502 as ours (``error_page`` to a named location), and
``proxy_next_upstream off`` with ``max_fails=0`` keeps nginx from silently retrying another
backend, so both balancers fail the same way (``failover=True`` restores nginx's default retry).
Both notice a dead backend the same way too, passively: each ``server`` line carries
``max_fails=N fail_timeout=Ts`` (nginx's defaults 1 and 10 s, written out), so after N failed
attempts within T seconds nginx skips that server for T seconds ("error" and "timeout" count as
failed attempts even with ``proxy_next_upstream off``; nginx docs, ngx_http_upstream_module and
ngx_http_proxy_module). Open-source nginx has no active health checks.
For a WebSocket to a dead backend nginx answers the upgrade request with that 502: unlike ours, it
never completes the handshake.

The access log is JSON lines (``escape=json``) with the client, request, status, upstream
address, time and ticket, read back into the routing DataFrame. nginx writes a line when a
request *ends*.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from servers import lifeline
from servers.balancer.backends import Backend, as_backend, as_backends
from servers.balancer.policies import POLICIES, PUSH_PATH, STICKY_COOKIE
from servers.balancer.routing import parse_nginx_access_line, routing_frame

__all__ = ["NginxMissing", "HOW_TO_GET_NGINX", "find_nginx", "render_config", "NginxBalancer"]


class NginxMissing(RuntimeError):
    """No nginx binary could be found."""


HOW_TO_GET_NGINX = (
    "No nginx found on PATH or at /usr/sbin/nginx. Install it (Debian/Ubuntu: `apt-get install nginx`; "
    "macOS: `brew install nginx`; conda: `conda install -c conda-forge nginx`), set NGINX=/path/to/nginx, "
    "or use our balancer: start_balancer(..., kind=\"python\")."
)


def find_nginx() -> str:
    for candidate in (os.environ.get("NGINX"), shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise NginxMissing(HOW_TO_GET_NGINX)


def _q(text: str) -> str:
    """A double-quoted nginx string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


LOG_FORMAT = ('{"msec":"$msec","request_time":"$request_time","client":"$remote_addr",'
              '"method":"$request_method","uri":"$request_uri","status":"$status",'
              '"upstream":"$upstream_addr","ticket":"$ticket","backend":"$backend_name"}')


def render_config(backends: Sequence[Backend], policy: str, *, directory: str, host: str, port: int,
                  name: str = "lb", connect_timeout: float = 3.0, failover: bool = False,
                  run_as_user: str | None = None, push_backends: Sequence[Backend] = (),
                  max_fails: int = 1, fail_timeout: float = 10.0) -> str:
    """The whole nginx.conf for these backends and this policy (a pure function, for tests too)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if not backends:
        raise ValueError("nginx needs at least one backend")
    d = directory
    period = f"{int(fail_timeout)}s" if fail_timeout == int(fail_timeout) else f"{round(fail_timeout * 1000)}ms"
    fail = f" max_fails={int(max_fails)} fail_timeout={period}"  # the passive health check (module docs)
    balance = {"round_robin": "", "least_conn": "least_conn;",
               "ip_hash": "hash $remote_addr;  # the full address, not ip_hash's /24 (see module docs)",
               "cookie": "", "ticket_hash": "hash $ticket_key consistent;", "random": "random;"}[policy]
    servers = "\n".join(f"        server {b.address}{fail};  # {b.name}" for b in backends)
    names = "\n".join(f"        {_q(b.address)} {_q(b.name)};" for b in [*backends, *push_backends])
    extra_upstreams = ""
    proxy_target = "http://spl_backends"
    sticky = ""
    if policy == "cookie":
        extra_upstreams = "\n".join(
            f"    upstream spl_backend_{i} {{ server {b.address}{fail}; }}  # {b.name}" for i, b in enumerate(backends))
        by_cookie = "\n".join(f"        {_q(b.name)} spl_backend_{i};" for i, b in enumerate(backends))
        known = "\n".join(f"        {_q(b.name)} \"\";" for b in backends)
        extra_upstreams += f"""
    map $cookie_{STICKY_COOKIE} $sticky_upstream {{
        default spl_backends;
{by_cookie}
    }}
    map $cookie_{STICKY_COOKIE} $sticky_set_cookie {{
        default "{STICKY_COOKIE}=$backend_name; Path=/; HttpOnly; SameSite=Lax";
{known}
    }}"""
        proxy_target = "http://$sticky_upstream"
        sticky = "            add_header Set-Cookie $sticky_set_cookie always;\n"
    push_upstream = push_location = ""
    if push_backends:  # the gateway fix: the browsers' push routes go to the push tier
        push_servers = "\n".join(f"        server {b.address}{fail};  # {b.name}" for b in push_backends)
        push_upstream = f"\n    upstream spl_push {{\n{push_servers}\n    }}"
        push_location = f"""
        location ~ {PUSH_PATH} {{
            proxy_pass http://spl_push;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            proxy_connect_timeout {max(1, int(round(connect_timeout)))}s;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream {"error timeout" if failover else "off"};
        }}
"""
    user = f"user {run_as_user};\n" if run_as_user else ""
    timeout = f"{max(1, int(round(connect_timeout)))}s"
    bad_gateway = ('{"error":"bad_gateway","backend":"$backend_name",'
                   '"detail":"Backend $backend_name at $upstream_addr could not be reached through nginx."}')
    return f"""# Generated by servers.balancer.nginx for policy {policy}; do not edit (regenerated on change).
{user}worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
worker_shutdown_timeout 3s;

events {{
    worker_connections 4096;  # two per proxied connection: enough for a reconnect storm
}}

http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server_tokens off;

    # The ticket id a request is about: from the path, else ?ticket=.
    map $uri $path_ticket {{
        default "";
        ~^/(api/tickets|m|qr)/(?<t>[^/.]+) $t;
    }}
    map $path_ticket $ticket {{
        default $path_ticket;
        "" $arg_ticket;
    }}
    map $ticket $ticket_key {{
        default $ticket;
        "" $request_id;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        "" close;
    }}
    # Which named backend an upstream address is (for the log, the sticky cookie, the 502).
    map $upstream_addr $backend_name {{
        default $upstream_addr;
{names}
    }}

    log_format spl escape=json '{LOG_FORMAT}';
    access_log {d}/access.log spl;

    upstream spl_backends {{
        {balance}
{servers}
    }}
{extra_upstreams}{push_upstream}

    server {{
        listen {host}:{port};
{push_location}
        location / {{
            proxy_pass {proxy_target};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;          # SSE: every event goes out as it arrives
            proxy_request_buffering off;
            proxy_cache off;
            proxy_connect_timeout {timeout};
            proxy_read_timeout 1h;        # held long polls, quiet SSE streams and WebSockets
            proxy_send_timeout 1h;
            proxy_next_upstream {"error timeout" if failover else "off"};
{sticky}        }}

        error_page 502 504 = @bad_gateway;
        location @bad_gateway {{
            default_type application/json;
            add_header X-Served-By {_q(name)} always;
            return 502 '{bad_gateway}';
        }}
    }}
}}
"""


class NginxBalancer:
    """A running nginx: ``url``, ``routing_log()``, ``set_backends()``, ``stop()``."""

    def __init__(self, backends: Sequence[Any], policy: str = "round_robin", *, name: str = "lb",
                 host: str = "127.0.0.1", port: int = 0, connect_timeout: float = 3.0,
                 failover: bool = False, binary: str | None = None, push_backends: Sequence[Any] = (),
                 max_fails: int = 1, fail_timeout: float = 10.0) -> None:
        self.binary = binary or find_nginx()
        self.kind = "nginx"
        self.policy = policy
        self.name = name
        self.host = host
        self.requested_port = port
        self.connect_timeout = connect_timeout
        self.failover = failover
        self.max_fails, self.fail_timeout = max_fails, fail_timeout
        self.backends: list[Backend] = as_backends(backends)
        self.push_backends: list[Backend] = as_backends(push_backends)  # the gateway fix's push tier
        self._tmp = tempfile.TemporaryDirectory(prefix="spl-nginx-")
        self.directory = Path(self._tmp.name)
        self.config_path = self.directory / "nginx.conf"
        self.access_log = self.directory / "access.log"
        self.error_log = self.directory / "error.log"
        self.process: subprocess.Popen | None = None
        self.port = 0

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _run_as_user(self) -> str | None:
        if os.geteuid() != 0:
            return None  # the "user" directive only means something to a root master
        import grp
        import pwd

        entry = pwd.getpwuid(os.geteuid())
        return f"{entry.pw_name} {grp.getgrgid(entry.pw_gid).gr_name}"

    def _write_config(self) -> None:
        text = render_config(self.backends, self.policy, directory=str(self.directory), host=self.host,
                             port=self.port, name=self.name, connect_timeout=self.connect_timeout,
                             failover=self.failover, run_as_user=self._run_as_user(),
                             push_backends=self.push_backends, max_fails=self.max_fails,
                             fail_timeout=self.fail_timeout)
        self.config_path.write_text(text)

    def start(self, timeout: float = 10, attempts: int = 5) -> "NginxBalancer":
        last = ""
        for _ in range(attempts):
            self.port = self.requested_port or _free_port(self.host)
            self._write_config()
            stderr = open(self.directory / "stderr.log", "wb")
            args = [self.binary, "-p", str(self.directory), "-c", str(self.config_path)]
            if _supports_e_flag(self.binary):
                args += ["-e", str(self.error_log)]  # the start-up error log, before the config is read
            # Under the lifeline's supervisor, in a session of its own: nginx (master and workers)
            # dies with this process even if it is SIGKILLed, and kill() ends the whole group.
            self.process = lifeline.spawn(args, supervise=True, stdout=subprocess.DEVNULL, stderr=stderr,
                                          stdin=subprocess.DEVNULL)
            stderr.close()
            if self._wait_ready(timeout):
                _running[self.name] = self
                return self
            last = self._read_errors()
            self._kill()
            if "Address already in use" not in last or self.requested_port:
                break
        raise RuntimeError(f"nginx did not start:\n{last}")

    def _wait_ready(self, timeout: float) -> bool:
        """Ready means: a TCP connect to its port succeeds (retried every few ms until the deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def _read_errors(self) -> str:
        text = ""
        for path in (self.directory / "stderr.log", self.error_log):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-15:])

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 5) -> None:
        """Graceful stop (SIGQUIT: finish requests, bounded by ``worker_shutdown_timeout``), then SIGKILL."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()  # master and workers: the supervisor's whole group (servers.lifeline)
                process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if _running.get(self.name) is self:
            del _running[self.name]
        self._tmp.cleanup()

    # -- backends ------------------------------------------------------------------------------
    def set_backends(self, backends: Sequence[Any], timeout: float = 10) -> None:
        """New backends: rewrite the config and reload nginx (SIGHUP), waiting until it is applied."""
        self.backends = as_backends(backends)
        if not self.running:
            return
        self._write_config()
        # Applied when a new worker has started and the old one stopped accepting (it logs
        # "gracefully shutting down" once it has closed its listening sockets).
        events = ("start worker process", "gracefully shutting down")
        before = [self._count_in_error_log(e) for e in events]
        self.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while any(self._count_in_error_log(e) <= n for e, n in zip(events, before)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not reload:\n{self._read_errors()}")
            time.sleep(0.02)

    def add_backend(self, spec: Any, name: str | None = None) -> Backend:
        backend = as_backend(spec, name)
        self.set_backends([b for b in self.backends if b.name != backend.name] + [backend])
        return backend

    def remove_backend(self, name: str) -> None:
        if name not in {b.name for b in self.backends}:
            raise KeyError(f"no backend named {name!r}; the backends are {[b.name for b in self.backends]}")
        self.set_backends([b for b in self.backends if b.name != name])

    def _count_in_error_log(self, text: str) -> int:
        try:
            return self.error_log.read_text(errors="replace").count(text)
        except FileNotFoundError:
            return 0

    # -- the routing log -----------------------------------------------------------------------
    def routing_records(self) -> list[dict[str, Any]]:
        try:
            lines = self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        names = {b.address: b.name for b in [*self.backends, *self.push_backends]}
        return [row for row in (parse_nginx_access_line(line, names) for line in lines) if row]

    def routing_log(self):
        return routing_frame(self.routing_records())


# nginx runs in a session of its own (so a terminal's Ctrl-C reaches us, and we stop it in order);
# whatever is still running when the interpreter or kernel exits is stopped here (and if this
# process is killed outright, the lifeline's supervisor ends nginx).
_running: "dict[str, NginxBalancer]" = {}


def stop_same_name(name: str) -> None:
    """Stop the nginx balancer running under ``name`` (re-running a cell replaces it, as ours does)."""
    old = _running.get(name)
    if old is not None:
        old.cleanup()


@atexit.register
def _stop_running() -> None:
    for balancer in list(_running.values()):
        try:
            balancer.stop(timeout=2)
        except Exception:
            pass


@functools.lru_cache(maxsize=None)
def _supports_e_flag(binary: str) -> bool:
    """``nginx -e`` (error log at start-up) exists from nginx 1.19.5."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr
    try:
        version = tuple(int(p) for p in out.split("/")[1].split()[0].split(".")[:3])
    except (IndexError, ValueError):
        version = (0,)
    return version >= (1, 19, 5)
