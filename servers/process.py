"""A server in a child process: ``python -m servers COMMAND ...``, the way a shell would start it.

The cluster runs its app servers this way (so a crash is a real SIGKILL and each server has its
own memory), the ``gateway`` fix its push tier, and lesson 06 the feed server it measures (so
``psutil`` reads the server's CPU time and memory, not the notebook's). Every command prints one
JSON line when it is ready (see :mod:`servers.cli`); that line is the readiness event we wait for,
never a sleep. Every child dies with the process that started it, even a SIGKILLed kernel
(:mod:`servers.lifeline`). Secrets (a Redis URL with its password) go in ``env``, never on the
command line, which every user of the machine can read (``ps``).
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from servers import lifeline

__all__ = ["ServerProcess", "package_root"]


def package_root() -> str:
    """The directory that holds the ``servers`` package, so ``python -m servers`` finds it."""
    return str(Path(__file__).resolve().parent.parent)


class ServerProcess:
    """``python -m servers <command...>`` in a child process: ``name``, ``url``, ``ws_url``,
    ``pid``, ``info`` (its ready line), ``running``, ``stop()`` (SIGTERM, then SIGKILL),
    ``crash()`` (SIGKILL at once), ``stderr_tail()``.

    ``env``: extra environment variables for the child (e.g. ``REDIS_URL``, which carries a password).
    """

    def __init__(self, command: Sequence[str], name: str, *, timeout: float = 30,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = list(command)
        self._log = tempfile.NamedTemporaryFile(prefix=f"spl-{self.command[0]}-{name}-", suffix=".log", delete=False)
        self.process = lifeline.spawn(
            [sys.executable, "-m", "servers", *self.command], stdout=subprocess.PIPE, stderr=self._log,
            stdin=subprocess.DEVNULL, text=True, env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            cwd=package_root())
        self.pid = self.process.pid
        self.state = "starting"
        self.info = self._read_ready_line(timeout)
        self.url: str = self.info["url"]
        self.ws_url = self.url.replace("http", "ws", 1)
        self.state = "running"

    def _read_ready_line(self, timeout: float) -> dict[str, Any]:
        """Wait for the child's one JSON line (its readiness event), or fail with its stderr."""
        lines: "queue.Queue[str]" = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{' '.join(self.command[:1])} server {self.name} did not start:\n"
                                       f"{self.stderr_tail()}") from None
                continue
            try:
                info = json.loads(line)
            except ValueError:
                continue
            if isinstance(info, dict) and "url" in info:
                return info

    def __repr__(self) -> str:
        return f"<ServerProcess {self.command[0]} {self.name} {getattr(self, 'url', '')} pid={self.pid} {self.state}>"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def crash(self) -> None:
        """SIGKILL: the process dies with every connection, as a crashed machine would."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.state = "crashed"

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.state = "stopped"
        if self.process.stdout:
            self.process.stdout.close()
        self._log.close()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass
