"""``python -m servers balancer`` and ``python -m servers cluster`` as real subprocesses: the JSON
line, serving through it, and no child left behind after SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from servers.balancer.nginx import HOW_TO_GET_NGINX, NginxMissing, find_nginx
from test_balancer_proxy import start_backend  # tests/ is on sys.path (pytest rootdir-relative import)

ROOT = Path(__file__).resolve().parent.parent


def launch(*args: str) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([sys.executable, "-m", "servers", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    line = process.stdout.readline()  # the readiness event: one JSON line
    if not line:
        process.wait(10)
        pytest.fail(f"no JSON line; stderr:\n{process.stderr.read()}")
    return process, json.loads(line)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive either
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def nginx_kinds():
    try:
        find_nginx()
        return ["python", pytest.param("nginx", marks=pytest.mark.nginx)]
    except NginxMissing:
        return ["python", pytest.param("nginx", marks=[pytest.mark.nginx, pytest.mark.skip(reason=HOW_TO_GET_NGINX)])]


@pytest.mark.parametrize("kind", nginx_kinds())
def test_balancer_command_serves_and_stops(kind):
    a, b = start_backend("A"), start_backend("B")
    process, info = launch("balancer", "--port", "0", "--policy", "round_robin", "--kind", kind,
                           "--backend", f"A={a.url}", "--backend", f"B={b.url}")
    try:
        assert info["policy"] == "round_robin" and info["backends"] == {"A": a.url, "B": b.url}
        served = [requests.get(info["url"] + "/plain", timeout=10).headers["X-Served-By"] for _ in range(2)]
        assert sorted(served) == ["A", "B"]
        grandchildren = children_of(process.pid)
        assert (len(grandchildren) == 1) == (kind == "nginx"), grandchildren
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    assert not any(alive(pid) for pid in grandchildren), "nginx must stop with the balancer command"


def test_balancer_command_refuses_a_bad_backend():
    result = subprocess.run([sys.executable, "-m", "servers", "balancer", "--backend", "not a url"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "must look like http://" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", nginx_kinds())
def test_cluster_command_runs_servers_as_processes_and_stops_them(kind):
    process, info = launch("cluster", "--port", "0", "--servers", "2", "--balancer", kind)
    try:
        assert set(info["servers"]) == {"A", "B"} and info["redis"].startswith("redis://")
        assert info["url"] not in info["servers"].values()
        children = children_of(process.pid)
        assert set(info["pids"].values()) <= set(children), "the servers are child processes"
        created = [requests.post(info["url"] + "/api/tickets", timeout=10) for _ in range(2)]
        assert [r.status_code for r in created] == [201, 201]
        assert sorted(r.headers["X-Served-By"] for r in created) == ["A", "B"]
        assert created[0].json()["scan_url"].startswith(info["url"] + "/m/"), "Host is kept through the balancer"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert not any(alive(pid) for pid in children), "no child (server, Redis, nginx) may outlive the cluster"
