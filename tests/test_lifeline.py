"""Every child dies with its parent, even a parent killed with SIGKILL (servers.lifeline).

A plain Python process stands in for a notebook kernel: it starts one of each kind of child
(redis-server, nginx's master and workers, a cluster's servers and the gateway's push tier as
processes, lesson 06's feed process), says so, and is SIGKILLed. Then nothing it started may be
left: the test waits for every one of them to end (psutil.wait_procs, bounded by a generous
timeout). Twice: with the parent-death signal, and with the lifeline pipe alone, which is what
macOS has.
"""
from __future__ import annotations

import json
import os
import select
import secrets
import signal
import subprocess
import sys
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


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["signal", "watchdog"])
def test_a_killed_kernel_leaves_nothing_behind(mode):
    balancer = "nginx" if nginx_path() else "python"
    kernel = subprocess.Popen([sys.executable, "-c", STAND_IN_KERNEL, mode, balancer], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE)
    tree: list[psutil.Process] = []
    try:
        line = read_line(kernel.stdout)
        assert line, "the stand-in kernel failed to start its children"
        info = json.loads(line)
        assert requests.get(info["url"] + "/api/me", timeout=10).status_code == 401  # the cluster serves
        tree = psutil.Process(kernel.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in tree]
        kinds = {"redis-server", "servers qrlogin", "servers gateway", "servers feed"} | (
            {"nginx: master", "nginx: worker"} if balancer == "nginx" else set())
        for kind in kinds:
            assert any(kind in c for c in commands), f"no {kind} among {commands}"
        assert not any(info["redis"] in c for c in commands), "the Redis password is on a command line"
        kernel.send_signal(signal.SIGKILL)
        kernel.wait(30)
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert alive == [], [" ".join(p.cmdline()) for p in alive]
    finally:
        for process in [*tree, psutil.Process(kernel.pid)] if kernel.poll() is None else tree:
            try:
                process.kill()
            except psutil.Error:
                pass
        kernel.wait(30)


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
