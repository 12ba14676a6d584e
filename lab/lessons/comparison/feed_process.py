"""The feed server under test, in a process of its own: :class:`FeedProcess`.

Lesson 06 compares what each technique costs the *server*: CPU time, memory, open file
descriptors. Read from our own process those would mix the server with the clients and the
notebook, so the feed runs as ``python -m servers feed --port 0`` and ``psutil`` reads that
process alone. :func:`raise_open_file_limit` lifts the descriptor limit first (the child
inherits it), so an idle test with hundreds of connections measures the server, not the limit.
The child dies with the kernel, even a killed one (``servers.process``, ``servers.lifeline``).
"""
from __future__ import annotations

from typing import Any

from servers import runtime
from servers.bounds import raise_open_file_limit
from servers.process import ServerProcess

__all__ = ["FeedProcess", "raise_open_file_limit"]


class FeedProcess:
    """``python -m servers feed --port 0`` as a child process: ``url``, ``pid``, ``cpu_seconds()``,
    ``rss()``, ``fds()``, ``stop()``. Registered with :func:`servers.stop_all`, so a lesson's
    clean-up cell (or the end of the kernel) stops it too."""

    def __init__(self, name: str = "bench-feed", buffer_size: int = 100_000, timeout: float = 30) -> None:
        import psutil

        raise_open_file_limit()
        self.name = name
        self._proc = ServerProcess(["feed", "--port", "0", "--name", name, "--buffer-size", str(buffer_size)],
                                   name, timeout=timeout)
        self.process = self._proc.process
        self.info = self._proc.info
        self.url: str = self._proc.url
        self.pid = self._proc.pid
        self.ps = psutil.Process(self.pid)
        old = runtime.tracked(f"feed process {name}")
        if old is not None:
            old.stop()
        runtime.track(f"feed process {name}", self)

    def __repr__(self) -> str:
        return f"<FeedProcess {self.name} {self.url} pid={self.pid}>"

    def __enter__(self) -> "FeedProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def fds(self) -> int:
        return self.ps.num_fds()

    def stop(self) -> None:
        self._proc.stop()
        runtime.untrack(self)
