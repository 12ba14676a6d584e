"""``python -m servers feed --port 0``: a real process that prints its URLs and serves every technique."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from servers.clients.feed import FeedWebSocket, SSEStream, StompClient, longpoll, poll, publish

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def feed_process():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "servers", "feed", "--port", "0", "--name", "A",
                             "--buffer-size", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line, f"no JSON line; stderr: {proc.stderr.read()}"
        yield proc, json.loads(line)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_prints_its_urls_serves_all_five_techniques_and_stops_on_sigterm(feed_process):
    proc, info = feed_process
    base = info["url"]
    assert base.startswith("http://127.0.0.1:") and not base.endswith(":0")
    assert info["name"] == "A"
    ws_base = "ws" + base[4:]
    assert info["poll"] == base + "/feed/poll" and info["longpoll"] == base + "/feed/longpoll"
    assert info["sse"] == base + "/feed/sse" and info["ws"] == ws_base + "/feed/ws"
    assert info["stomp"] == ws_base + "/stomp" and info["pages"] == base + "/pages/"
    assert publish(base, "one") == 1
    assert requests.get(base + "/feed/poll").headers["X-Served-By"] == "A"
    assert [e["data"] for e in poll(base)["events"]] == ["one"]
    assert [e["data"] for e in longpoll(base, after=0, timeout=5)["events"]] == ["one"]
    with SSEStream(base, last_event_id=0, reconnect=False) as sse:
        assert next(iter(sse))["data"] == "one"
    with FeedWebSocket(base, after=0) as ws:
        assert ws.recv()["data"] == "one"
    with StompClient(base) as stomp:
        stomp.subscribe("/topic/feed")
        publish(base, "two")
        assert json.loads(stomp.receive_message().text)["data"] == "two"
        stomp.disconnect()
    assert requests.get(base + "/pages/").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/feed/poll", timeout=2)


def test_sigint_stops_it_too(feed_process):
    proc, _ = feed_process
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
