"""A submission's kernel in a bubblewrap sandbox of its own: its folder, a private /tmp, loopback, nothing else.

Why: a submission is code written by someone who gains from a higher grade, and the grader runs
it. As the grader's own user, it could read the hidden tests and the solutions, find the class
folder (in any process's ``/proc/<pid>/cmdline``) and copy a classmate, write into another
student's results or the gradebook, and leave a detached process behind to do so after its own
grading ended. bubblewrap (``bwrap``, the sandbox under Flatpak: one small setuid-free binary, no
daemon) starts the kernel in new mount, PID, network, IPC and UTS namespaces:

- files: an allow-list, read-only: the system (``/usr``, ``/etc``, ...), the Python installation
  the kernel runs, and the course's importable packages (``servers``, ``lab``, ``grading``).
  Read-write: the kernel's own folder (its working folder and the sockets it talks to the grader
  on) and a private ``/tmp``. Not there: ``solutions/``, ``tests/``, the class folder, the
  gradebook, the notebook with its hidden tests, other students' folders, home folders.
- processes: its own PID namespace; it sees only itself, and everything it starts, detached or
  not, is killed by the kernel of the OS when the namespace's first process ends, which happens
  when the grader kills the sandbox or the grader's worker dies (``--die-with-parent``).
- network: its own namespace with only loopback, so the lessons' servers and Redis on 127.0.0.1
  work and nothing else is reachable.
- no capabilities, even when the grader runs as root (no remounting, no opening files by handle).

The kernel and the grader talk over jupyter_client's ``ipc`` transport: Unix sockets in the
kernel's folder, which is bound at the same path inside the sandbox as outside. Ending a kernel
(:func:`kill_and_wait`) kills its process tree and waits until it is gone, so "graded" means
"nothing of it is left running".

Where bwrap is missing (macOS, Windows, a Linux without the ``bubblewrap`` package) or cannot
create namespaces (some containers forbid them), :func:`status` says why and kernels run as
before, unsandboxed: grading works, but submissions are not isolated from each other or from the
grader. ``SPL_GRADING_BWRAP`` names another bwrap binary, or ``off`` to run without one.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sandbox", "status", "command", "kernel_manager", "process_tree", "kill_and_wait", "NOT_ISOLATED"]

NOT_ISOLATED = ("submissions are NOT isolated from each other or from the grader: a submission can read "
                "the hidden tests and other students' work and leave processes running")
# The kernel's view of the system, read-only. Symbolic links (merged /usr) are recreated as links.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
PACKAGES = ("servers", "lab", "grading")
NAMESPACES = ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")


@dataclass(frozen=True)
class Sandbox:
    """Whether kernels run sandboxed: ``bwrap`` is the binary, or None with ``reason`` saying why not."""

    bwrap: str | None
    reason: str = ""

    @property
    def isolated(self) -> bool:
        return self.bwrap is not None

    def describe(self) -> str:
        if self.isolated:
            return f"each submission runs in a sandbox of its own ({self.bwrap})"
        return f"{NOT_ISOLATED} ({self.reason})"


@functools.lru_cache(maxsize=None)
def status() -> Sandbox:
    """Find bwrap and check once that it can make the namespaces a sandbox needs on this machine."""
    wanted = os.environ.get("SPL_GRADING_BWRAP", "")
    if wanted.lower() in ("off", "no", "0", "none"):
        return Sandbox(None, "turned off with SPL_GRADING_BWRAP=off")
    if not sys.platform.startswith("linux"):
        return Sandbox(None, "bubblewrap runs on Linux only")
    bwrap = shutil.which(wanted or "bwrap")
    if bwrap is None:
        return Sandbox(None, f"{wanted or 'bwrap'} not found; install the bubblewrap package (apt-get install bubblewrap)")
    probe = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--die-with-parent", "--cap-drop", "ALL",
             *NAMESPACES, "--", "true"]
    try:
        done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Sandbox(None, f"{bwrap} could not be run ({exc})")
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return Sandbox(None, f"{bwrap} cannot make a sandbox here: {said[0]}")
    return Sandbox(bwrap)


def _bind_read_only(path: Path, args: list[str], bound: set[str]) -> None:
    """Add ``path`` (and, if it differs, its real path) read-only, unless a folder already bound holds it."""
    for candidate in dict.fromkeys([str(path), os.path.realpath(path)]):
        if not os.path.exists(candidate) or any(candidate == b or candidate.startswith(b + os.sep) for b in bound):
            continue
        args += ["--ro-bind", candidate, candidate]
        bound.add(candidate)


def _prefix_of(executable: str) -> Path:
    """The installation an interpreter belongs to: the folder above its ``bin/``."""
    return Path(executable).parent.parent


def command(bwrap: str, *, box: Path, workdir: Path, argv: list[str], project: Path | None) -> list[str]:
    """``argv`` (a kernel's command) run inside a new sandbox whose only writable folder is ``box``.

    ``project`` is the folder holding the course's packages (``servers``, ``lab``, ``grading``);
    only those three folders of it are visible, never the rest of the project.
    """
    args = [bwrap, "--die-with-parent", "--cap-drop", "ALL", *NAMESPACES]
    bound: set[str] = set()
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
            bound.add(path)
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    interpreters = [sys.executable, argv[0] if argv and os.path.isabs(argv[0]) else sys.executable]
    installs = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.base_exec_prefix)]
    installs += [_prefix_of(i) for i in interpreters] + [_prefix_of(os.path.realpath(i)) for i in interpreters]
    for install in installs:
        _bind_read_only(install, args, bound)
    if project is not None:
        for package in PACKAGES:
            if (project / package).is_dir():
                _bind_read_only(project / package, args, bound)
        for hidden in ("solutions", "tests"):  # inside a folder bound above (a checkout under /usr): cover them
            real = os.path.realpath(project / hidden)
            if os.path.isdir(real) and any(real == b or real.startswith(b + os.sep) for b in bound):
                args += ["--tmpfs", real]
    args += ["--bind", str(box), str(box), "--chdir", str(workdir),
             "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
             # ipykernel exits when its parent's pid changes, and inside a PID namespace its parent is
             # bwrap's pid 1; --die-with-parent does that job instead.
             "--unsetenv", "JPY_PARENT_PID",
             # a Redis elsewhere is out of reach without a network: lessons start their own on loopback
             "--unsetenv", "REDIS_URL",
             "--"]
    return args + list(argv)


def kernel_manager(box: Path, bwrap: str | None, number: int, project: Path | None):
    """A jupyter_client kernel manager for a notebook's ``number``-th kernel, sandboxed when ``bwrap`` is given.

    It talks over IPC sockets in ``box`` (the only folder of ours the sandbox sees), and its
    kernel's working folder is ``box/work``.
    """
    from jupyter_client.manager import AsyncKernelManager

    class SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            argv = super().format_kernel_cmd(extra_arguments)
            if bwrap is None:
                return argv
            return command(bwrap, box=box, workdir=box / "work", argv=argv, project=project)

    return SandboxedKernelManager(kernel_name="python3", transport="ipc", ip=str(box / f"kernel{number}"),
                                  connection_file=str(box / f"kernel{number}.json"))


def process_tree(pid: int, include_root: bool = False) -> list:
    """``pid``'s process (if asked) and all its descendants, as psutil processes (those alive now)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return ([root] if include_root else []) + root.children(recursive=True)
    except psutil.Error:
        return []


def kill_and_wait(processes: list, process_groups: list[int], timeout: float = 10) -> None:
    """SIGKILL the groups and the processes, then wait until each is gone (a zombie counts as gone).

    In a sandbox the first process of its PID namespace becomes a zombie only after the kernel of
    the OS has killed every other process in the namespace, so waiting for it covers those too.
    """
    import psutil

    for pgid in process_groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + timeout
    waiting = list(processes)
    while waiting and time.monotonic() < deadline:
        still = []
        for process in waiting:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    still.append(process)
            except psutil.Error:
                pass
        waiting = still
        if waiting:
            time.sleep(0.02)
