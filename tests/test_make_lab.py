"""``make lab`` opens the whole course: lessons and exercises both reachable, lesson 00 first, as root too."""
from __future__ import annotations

import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def answer(url: str, token: str, timeout: float = 60) -> dict:
    """The server's answer to ``url``. Jupyter Server prints its URL once it has *chosen* a port
    (bound, then released) and listens a moment later, so a refused connection here means "not
    yet": the first answer is the event we wait for."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, params={"token": token}, timeout=30).json()
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_make_lab_serves_lessons_and_exercises_from_the_repository_root():
    token = secrets.token_hex(8)
    process = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS=--no-browser --port=0 --IdentityProvider.token={token}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    seen = []
    try:
        url = None
        while url is None:
            line = lines.get(timeout=120)  # JupyterLab's "is running at" line: the port is chosen
            seen.append(line)
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            url = match.group(1) if match else None
        listing = answer(url + "api/contents", token)
        names = {item["name"] for item in listing["content"]}
        assert {"notebooks", "exercises", "README.md"} <= names, names
        exercises = requests.get(url + "api/contents/exercises", params={"token": token}, timeout=30).json()
        assert any(item["name"].endswith("-exercises.ipynb") for item in exercises["content"])
        if os.geteuid() == 0:
            assert any("--allow-root" in line for line in seen), "as root, make lab says it passes --allow-root"
        assert any("notebooks/00-tour.ipynb" in line for line in seen), "lesson 00 is opened first"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
