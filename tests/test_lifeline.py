"""Every child dies with its parent, even a parent killed with SIGKILL (servers.lifeline).

A real Jupyter kernel (ipykernel, started by jupyter_client as a notebook server or nbclient
starts one) runs a cell the way a learner would: a cluster with the gateway fix, its servers and
push tier as processes, behind nginx where there is one, and lesson 06's feed process. That is
one of each kind of child: redis-server, nginx's master and workers, ``servers qrlogin``,
``servers gateway``, ``servers feed``. Then the kernel alone (not its process group) is
SIGKILLed, and nothing it started may be left: the test waits for every one of them to end
(psutil.wait_procs, bounded by a generous timeout).

A plain Python process stands in for the kernel twice more, to run the same check with the
parent-death signal and with the lifeline pipe alone (``use_parent_death_signal = False``),
which is all that macOS has.
"""
from __future__ import annotations

import json
import os
import select
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import psutil
import pytest
import requests

from servers import lifeline
from servers.process import ServerProcess
from tests.conftest import nginx_path

ROOT = Path(__file__).resolve().parents[1]

STAND_IN_KERNEL = textwrap.dedent("""
    import json, os, sys, threading
    from servers import lifeline
    from servers.cluster import start_cluster
    from lab.lessons.comparison import FeedProcess
    if sys.argv[1] == "watchdog":
        lifeline.use_parent_death_signal = False  # as on macOS: the pipe alone
    cluster = threading.Thread(target=lambda: started.append(  # from a thread that ends at once
        start_cluster(2, fix="gateway", balancer=sys.argv[2], processes=True)))
    started = []
    cluster.start()
    cluster.join()
    feed = FeedProcess("lifeline-feed")
    print(json.dumps({"redis": started[0]._redis.password, "url": started[0].url}), flush=True)
    threading.Event().wait()
""")


def read_line(stream, timeout: float = 90) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"the stand-in kernel said nothing within {timeout} s"
    return stream.readline()


KINDS = {"redis-server", "servers qrlogin", "servers gateway", "servers feed"}  # + nginx's, where there is one


def check_children(kernel: subprocess.Popen, info: dict, balancer: str) -> list[psutil.Process]:
    """Every process below ``kernel``, once its cluster serves: one of each kind, and not one with
    the Redis password (``info["redis"]``) on its command line."""
    assert requests.get(info["url"] + "/api/me", timeout=10).status_code == 401  # the cluster serves
    tree = psutil.Process(kernel.pid).children(recursive=True)
    commands = [" ".join(p.cmdline()) for p in tree]
    for kind in KINDS | ({"nginx: master", "nginx: worker"} if balancer == "nginx" else set()):
        assert any(kind in c for c in commands), f"no {kind} among {commands}"
    assert not any(info["redis"] in c for c in commands), "the Redis password is on a command line"
    return tree


def kill_and_wait(kernel: subprocess.Popen, tree: list[psutil.Process]) -> None:
    """SIGKILL the kernel process alone (not its process group), then every one of ``tree`` must end."""
    kernel.send_signal(signal.SIGKILL)
    kernel.wait(30)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert alive == [], [" ".join(p.cmdline()) for p in alive]


def kill_leftovers(kernel: subprocess.Popen, tree: list[psutil.Process]) -> None:
    """Whatever a failed test left: the kernel and all below it are killed, so the session's own
    check (tests/conftest.py) sees this test's failure, not a leak."""
    try:
        tree = [*tree, *psutil.Process(kernel.pid).children(recursive=True)]
    except psutil.Error:  # the kernel is gone (and reaped) already
        pass
    for process in tree:
        try:
            process.kill()
        except psutil.Error:
            pass
    kernel.kill()
    kernel.wait(30)


def balancer_here() -> str:
    return "nginx" if nginx_path() else "python"


KERNEL_CELL = textwrap.dedent("""
    import json
    from servers.cluster import start_cluster
    from lab.lessons.comparison import FeedProcess
    cluster = start_cluster(2, fix="gateway", balancer={balancer!r}, processes=True, name="lifeline")
    feed = FeedProcess("lifeline-feed")
    print(json.dumps({{"redis": cluster._redis.password, "url": cluster.url}}))
""")


def run_cell(client, code: str, timeout: float = 90) -> str:
    """Run ``code`` as a notebook cell; the last line it printed, or a failure with its traceback."""
    printed, errors = [], []

    def output(msg: dict) -> None:
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            printed.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            errors.append("\n".join(msg["content"]["traceback"]))

    reply = client.execute_interactive(code, timeout=timeout, output_hook=output, allow_stdin=False)
    assert reply["content"]["status"] == "ok", "the cell failed in the kernel:\n" + "\n".join(errors)
    return "".join(printed).strip().splitlines()[-1]


@pytest.mark.slow
def test_a_killed_jupyter_kernel_leaves_nothing_behind():
    from jupyter_client.manager import KernelManager

    balancer = balancer_here()
    with tempfile.TemporaryDirectory(prefix="spl-kernel-") as ipc_dir:  # IPC sockets, as grading.lessons
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(ipc_dir) / "kernel"),
                           connection_file=str(Path(ipc_dir) / "kernel.json"))
        km.start_kernel(cwd=str(ROOT))
        kernel = km.provisioner.process  # the ipykernel process itself
        client = km.client()
        client.start_channels()
        tree: list[psutil.Process] = []
        try:
            client.wait_for_ready(timeout=90)
            info = json.loads(run_cell(client, KERNEL_CELL.format(balancer=balancer)))
            tree = check_children(kernel, info, balancer)
            kill_and_wait(kernel, tree)
        finally:
            client.stop_channels()
            kill_leftovers(kernel, tree)
            km.cleanup_resources()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["signal", "watchdog"])
def test_a_killed_kernel_leaves_nothing_behind(mode):
    balancer = balancer_here()
    kernel = subprocess.Popen([sys.executable, "-c", STAND_IN_KERNEL, mode, balancer], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE)
    tree: list[psutil.Process] = []
    try:
        line = read_line(kernel.stdout)
        assert line, "the stand-in kernel failed to start its children"
        tree = check_children(kernel, json.loads(line), balancer)
        kill_and_wait(kernel, tree)
    finally:
        kill_leftovers(kernel, tree)
        kernel.stdout.close()


def test_a_child_outlives_the_thread_that_started_it():
    started: list[ServerProcess] = []
    thread = threading.Thread(target=lambda: started.append(ServerProcess(["feed", "--port", "0"], "lifeline-t")))
    thread.start()
    thread.join()  # the thread is gone; Linux's parent-death signal follows the thread that forked
    server = started[0]
    try:
        assert requests.get(server.url + "/feed/poll", timeout=10).status_code == 200
        with pytest.raises(subprocess.TimeoutExpired):
            server.process.wait(2)  # a parent-death signal on the thread's exit would have stopped it by now
    finally:
        server.stop()


SHELL_PROGRAM = "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"


def test_the_supervisor_passes_signals_on_and_returns_the_program_status():
    program = lifeline.spawn(["sh", "-c", SHELL_PROGRAM], supervise=True, stdout=subprocess.PIPE, text=True)
    assert read_line(program.stdout, 30).strip() == "ready"
    program.terminate()  # to the supervisor, which passes it on
    assert program.wait(30) == 7
    program.stdout.close()


def test_a_supervised_kill_ends_the_program_and_its_children_at_once():
    program = lifeline.spawn(["sh", "-c", f"sh -c \"{SHELL_PROGRAM}\" & wait"], supervise=True,
                             stdout=subprocess.PIPE, text=True)
    assert read_line(program.stdout, 30).strip() == "ready"
    group = psutil.Process(program.pid).children(recursive=True)
    assert len(group) >= 2  # the program and its own child (as nginx's master and its workers)
    program.kill()
    assert program.wait(30) == -signal.SIGKILL
    _, alive = psutil.wait_procs(group, timeout=30)
    assert alive == []
    program.stdout.close()


LEAKING_TEST = textwrap.dedent("""
    import subprocess

    def test_leaks_a_process():
        subprocess.Popen(["sleep", "{seconds}"])
""")


def test_the_session_check_names_a_process_left_behind(tmp_path):
    # A duration no other process on the machine has, so the last check sees only this leak.
    seconds = f"{300 + secrets.randbelow(10**6) / 10**6:.6f}"
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_leak.py").write_text(LEAKING_TEST.replace("{seconds}", seconds))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0, result.stdout
    assert "left child processes behind" in result.stdout and f"sleep {seconds}" in result.stdout, result.stdout[-3000:]
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", seconds]]
