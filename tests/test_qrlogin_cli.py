"""``python -m servers qrlogin`` as a real subprocess: one JSON line, serves, stops on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "servers", "qrlogin", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_cli_prints_one_json_line_serves_and_stops_on_sigterm(redis_url):
    process = start("--port", "0", "--name", "A", "--fix", "none", "--redis", redis_url)
    try:
        info = json.loads(process.stdout.readline())
        assert info["name"] == "A" and info["fix"] == "none" and info["redis"] == redis_url
        assert info["url"].startswith("http://127.0.0.1:")
        created = requests.post(info["url"] + "/api/tickets", timeout=10)
        assert created.status_code == 201 and created.headers["X-Served-By"] == "A"
        ticket = created.json()["ticket"]
        # the ticket is in the shared Redis given on the command line
        from redis import Redis
        assert Redis.from_url(redis_url, decode_responses=True).hget(f"qr:ticket:{ticket}", "created_by") == "A"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        process.stdout.close()
        process.stderr.close()


def test_cli_ticket_ttl_and_public_url(redis_url):
    process = start("--name", "P", "--redis", redis_url, "--ticket-ttl", "7", "--public-url", "http://10.0.0.5:9000")
    try:
        info = json.loads(process.stdout.readline())
        body = requests.post(info["url"] + "/api/tickets", timeout=10).json()
        assert body["scan_url"] == f"http://10.0.0.5:9000/m/{body['ticket']}"
        state = requests.get(f"{info['url']}/api/tickets/{body['ticket']}", timeout=10).json()
        assert abs((state["expires_at"] - state["at"]) - 7) < 0.01
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
        process.stdout.close()
        process.stderr.close()


def test_cli_refuses_an_unknown_fix():
    result = subprocess.run([sys.executable, "-m", "servers", "qrlogin", "--fix", "magic"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "invalid choice: 'magic'" in result.stderr


def test_cli_trusted_proxy_makes_x_forwarded_for_count(redis_url):
    process = start("--name", "T", "--redis", redis_url, "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "::1")
    try:
        info = json.loads(process.stdout.readline())
        ticket = requests.post(info["url"] + "/api/tickets", headers={"X-Forwarded-For": "203.0.113.9"},
                               timeout=10).json()["ticket"]
        from redis import Redis
        assert Redis.from_url(redis_url, decode_responses=True).hget(f"qr:ticket:{ticket}", "ip") == "203.0.113.9"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        process.stdout.close()
        process.stderr.close()


def test_cli_refuses_a_trusted_proxy_that_is_no_address():
    result = subprocess.run([sys.executable, "-m", "servers", "qrlogin", "--trusted-proxy", "my-balancer"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--trusted-proxy: 'my-balancer' is not an IP address" in result.stderr
