"""Fixtures shared by the tests: real Redis, real headless Chromium, clean server registry."""
from __future__ import annotations

import os
import shutil

import pytest

import servers
from lab.chromium import CHROMIUM_ARGS, find_chromium


chromium_path = find_chromium  # Debian's Chromium (or CHROMIUM=path); Playwright drives it via executable_path


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium, driven by Playwright; skipped with a reason where it is missing."""
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not found: install it (Debian: apt-get install chromium) or set CHROMIUM=path")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on a free loopback port for the whole session."""
    from servers.redisproc import RedisMissing, start_redis

    try:
        handle = start_redis()
    except RedisMissing as exc:
        pytest.skip(str(exc))
    yield handle
    handle.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied before each test."""
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture(autouse=True)
def _stop_servers():
    """Every test leaves no in-process server running."""
    yield
    servers.stop_all()


# Children that live as long as their parent by design, whoever started them (Python's own).
_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "multiprocessing.semaphore_tracker")


@pytest.fixture(scope="session", autouse=True)
def _no_child_process_left_behind():
    """The session leaves no process behind: at its end, after every server, cluster and Redis is
    stopped, no child of this process (at any depth) may still run. A leak fails the session with
    each leftover's command line (a redis-server, an nginx, a kernel...), then is killed."""
    yield
    import psutil

    from servers.redisproc import stop_started

    servers.stop_all()
    stop_started()
    me = psutil.Process()
    children = []
    for child in me.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and not any(h in " ".join(child.cmdline()) for h in _HELPERS):
                children.append(child)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=10)  # a stop just sent may still be under way
    if alive:
        lines = []
        for child in alive:
            try:
                lines.append(f"  pid {child.pid}: {' '.join(child.cmdline()) or child.name()}")
                child.kill()
            except psutil.Error:
                pass
        pytest.fail("the test session left child processes behind:\n" + "\n".join(lines), pytrace=False)


def fill_a_stalled_socket(app) -> int:
    """Publish, in one loop turn, one event larger than the kernel's socket buffers (the write to a
    client that reads nothing waits), then 9 small ones: with ``outbox_limit=3``, 3 wait in the
    outbox and the 4th finds it full. Returns how many connections were dropped as too slow."""
    app.publish("x" * 16_000_000)
    for i in range(9):
        app.publish(i)
    return app.dropped_slow


def nginx_path() -> str | None:
    return shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None


# Hypothesis sizes: HYPOTHESIS_PROFILE=ci (the default: small, CI stays fast) or
# thorough (>= 10,000 examples per property in tests/test_fuzz_*.py; run by hand). No deadline:
# two shared cores make per-example timings meaningless; hangs are caught by the tests' own guards.
try:
    from hypothesis import HealthCheck, settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    _hypothesis_settings.register_profile("thorough", max_examples=10_000, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
