"""Child processes that die with their parent, even when the parent is killed with SIGKILL.

Why: a kernel that is killed (a hung kernel restarted, a grader's time limit, the out-of-memory
killer) runs no clean-up code at all: no ``atexit``, no ``stop_all()``. Every process it started
(redis-server, nginx's master and workers, a cluster's servers, the gateway's push tier, lesson
06's feed) would go on holding ports and memory until the machine restarts. So every child is
tied to its parent twice:

* the **parent-death signal** (Linux ``prctl(PR_SET_PDEATHSIG)``): the kernel signals the child
  the moment its parent dies. Linux counts the *thread* that forked the child as its parent, so
  every child is started from one long-lived thread of this module (:func:`spawn`); a notebook
  cell that starts a cluster from a worker thread would otherwise kill the cluster when that
  thread ends;
* a **lifeline pipe**, on every system (macOS has no parent-death signal): the parent holds the
  write end of a pipe and never writes to it; each child inherits the read end. When the parent
  dies, however it dies, the kernel closes the write end and the child reads end-of-file.

Our own children (``python -m servers ...``) call :func:`watch_parent` (``servers/__main__.py``
does): on end-of-file, or the parent-death signal, they get SIGTERM, the same clean stop as
Ctrl-C, and are ended for good after a grace period. redis-server and nginx are not our code:
``spawn(..., supervise=True)`` starts them under a tiny **supervisor**, this file run as a script
(standard library only). It sits in a process group of its own with the program, passes on the
signals it gets (SIGTERM, SIGQUIT, SIGHUP: what stops or reloads Redis and nginx), exits with the
program's status, and when the parent is gone it terminates the whole group (nginx's workers
included) and kills whatever is left after a grace period. :class:`Supervised` is the parent's
handle: a ``Popen`` whose ``kill()`` kills that whole group at once.
"""
from __future__ import annotations

import concurrent.futures
import os
import queue
import select
import signal
import stat
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence

__all__ = ["spawn", "Supervised", "watch_parent", "parent_death_signal_available", "ENV"]

#: The environment variable that hands a child its lifeline: "<read fd> <parent pid> <0|1>", the
#: last field saying whether the child should also ask for the parent-death signal.
ENV = "SPL_LIFELINE"
#: Seconds a child (or the supervised program) gets to stop after its parent is gone.
GRACE_S = 5.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_PR_SET_PDEATHSIG = 1


def parent_death_signal_available() -> bool:
    """Whether this system has a parent-death signal (Linux); the lifeline pipe works everywhere."""
    return sys.platform.startswith("linux")


#: Ask children for the parent-death signal where there is one. A test sets it to False to run
#: the watchdog alone, as it runs on macOS.
use_parent_death_signal = parent_death_signal_available()


def _set_parent_death_signal(sig: int) -> bool:
    if not parent_death_signal_available():
        return False
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


# ------------------------------------------------------------------------------------------------
# The parent's side: one pipe and one spawning thread per process.

_lock = threading.Lock()
_pipe: tuple[int, int] | None = None  # (read end, write end); the write end is never written
_spawner: "_Spawner | None" = None


class _Spawner(threading.Thread):
    """The thread every child is forked from: it lives as long as the process (the parent-death
    signal fires when the forking thread ends, not when the process does)."""

    def __init__(self) -> None:
        super().__init__(name="lifeline-spawner", daemon=True)
        self.jobs: "queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future]]" = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job, future = self.jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as exc:  # handed to the caller, who raises it
                    future.set_exception(exc)


def _forget_after_fork() -> None:
    """In a forked child: the copied write end would keep our children's pipes open after we die,
    the spawning thread was not copied, and the lock may have been copied held."""
    global _pipe, _spawner, _lock
    _lock = threading.Lock()
    if _pipe is not None:
        for fd in _pipe:
            try:
                os.close(fd)
            except OSError:
                pass
    _pipe, _spawner = None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _in_spawner(job: Callable[[], Any]) -> Any:
    global _spawner, _pipe
    with _lock:
        if _pipe is None:
            _pipe = os.pipe()  # neither end inheritable; the read end is passed to each child by number
        if _spawner is None or not _spawner.is_alive():
            _spawner = _Spawner()
            _spawner.start()
        spawner = _spawner
    if threading.current_thread() is spawner:
        return job()
    future: concurrent.futures.Future = concurrent.futures.Future()
    spawner.jobs.put((job, future))
    return future.result()


class Supervised(subprocess.Popen):
    """A program under the supervisor: signals sent to it reach the program; ``kill()`` kills the
    supervisor, the program and the program's own children (nginx's workers) at once."""

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the supervisor leads the group (start_new_session)
            except (ProcessLookupError, PermissionError):
                pass


def spawn(args: Sequence[str], *, supervise: bool = False, **popen_kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(args, **popen_kwargs)``, but the child dies with this process.

    ``supervise=True`` is for programs that are not ours (redis-server, nginx): they run under the
    supervisor, in a new session, and the result is a :class:`Supervised`. Our own Python children
    must call :func:`watch_parent` at start.
    """
    env = dict(popen_kwargs.pop("env", None) or os.environ)
    pass_fds = tuple(popen_kwargs.pop("pass_fds", ()))

    def start() -> subprocess.Popen:
        assert _pipe is not None
        read_end = _pipe[0]
        env[ENV] = f"{read_end} {os.getpid()} {int(use_parent_death_signal)}"
        if supervise:
            command = [sys.executable, "-I", "-S", os.path.abspath(__file__), *args]
            return Supervised(command, env=env, pass_fds=(*pass_fds, read_end), start_new_session=True,
                              **popen_kwargs)
        return subprocess.Popen(list(args), env=env, pass_fds=(*pass_fds, read_end), **popen_kwargs)

    return _in_spawner(start)


# ------------------------------------------------------------------------------------------------
# The child's side.


def _lifeline_from_env() -> tuple[int, int, bool] | None:
    """This process's lifeline (read fd, parent pid, ask for the signal), taken out of the
    environment so that our own children do not inherit a number that means nothing to them."""
    spec = os.environ.pop(ENV, "")
    try:
        fd, parent, signal_wanted = (int(part) for part in spec.split())
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
    except (ValueError, OSError):
        return None
    os.set_inheritable(fd, False)
    return fd, parent, bool(signal_wanted)


def watch_parent(grace_s: float = GRACE_S) -> bool:
    """In a child started by :func:`spawn`: stop (SIGTERM to ourselves) when the parent is gone,
    and end for good (``os._exit``) if that has not stopped us after ``grace_s`` seconds.

    Returns False when this process was not started by :func:`spawn` (then nothing is watched).
    """
    lifeline = _lifeline_from_env()
    if lifeline is None:
        return False
    fd, parent, signal_wanted = lifeline
    if signal_wanted:
        _set_parent_death_signal(signal.SIGTERM)

    def parent_gone() -> None:
        backstop = threading.Timer(grace_s, os._exit, (1,))
        backstop.daemon = True
        backstop.start()
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        try:
            while os.read(fd, 1):  # the parent never writes: whatever returns, it is gone
                pass
        except OSError:
            pass
        parent_gone()

    if os.getppid() != parent:  # it died before we were watching (we were handed to init)
        parent_gone()
    else:
        threading.Thread(target=watch, name="lifeline-watch", daemon=True).start()
    return True


# ------------------------------------------------------------------------------------------------
# The supervisor: ``python -I -S lifeline.py PROGRAM ARGS...`` (standard library only).


def _supervise(argv: list[str]) -> int:
    lifeline = _lifeline_from_env()
    fd = lifeline[0] if lifeline else -1
    if lifeline and lifeline[2]:
        _set_parent_death_signal(signal.SIGTERM)  # forwarded to the program below; EOF follows
    preexec = None
    if parent_death_signal_available():
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

        def preexec() -> None:  # the program too, should the supervisor itself be killed
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below when the program ends
    started: list[subprocess.Popen] = []
    early: list[int] = []  # signals that came before the program existed: passed on once it does
    for sig in _FORWARDED:
        signal.signal(sig, lambda number, _frame: started[0].send_signal(number) if started else early.append(number))
    try:
        program = subprocess.Popen(argv, preexec_fn=preexec)  # same process group as the supervisor
    except OSError as exc:
        sys.stderr.write(f"supervisor: cannot start {argv[0]}: {exc}\n")
        return 127
    started.append(program)
    for number in early:
        program.send_signal(number)
    if lifeline and os.getppid() != lifeline[1]:
        _end_group(program)
    watched = [wake_r] + ([fd] if fd >= 0 else [])
    while program.poll() is None:
        ready, _, _ = select.select(watched, [], [], 1.0)
        if wake_r in ready:
            os.read(wake_r, 512)
        if fd in ready:  # end-of-file: the parent is gone
            _end_group(program)
    code = program.returncode
    if code < 0:  # died of a signal: die of the same one, so the parent sees what happened
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP keep their default anyway
            pass
        os.kill(os.getpid(), -code)
    return code if code >= 0 else 128 - code


def _end_group(program: subprocess.Popen) -> None:
    """The parent is gone: SIGTERM to the group, then, after the grace period or once the program
    has stopped, SIGKILL to whatever is left of it (the supervisor included)."""
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
        program.wait(GRACE_S)
    except (OSError, subprocess.TimeoutExpired):
        pass
    os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(_supervise(sys.argv[1:]))
