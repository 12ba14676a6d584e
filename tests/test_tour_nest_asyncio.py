"""Lesson 00's ``nest_asyncio`` section, in a real kernel: the patch makes ``asyncio.run`` work in a
cell and reach a server on the kernel's loop, a blocking call still gets no answer, and
``servers.tour.remember_asyncio`` puts back everything the patch replaced (so the rest of the
lesson runs unpatched). If a ``nest_asyncio`` release patches something the list in
``remember_asyncio`` misses, the last cell names it.
"""
from __future__ import annotations

import nbformat
import pytest

from grading.lessons import execute

pytestmark = pytest.mark.notebook

CELLS = [
    '''
import asyncio, time
import requests, tornado.concurrent, tornado.httpclient
import nest_asyncio
import servers
from servers.tour import TourApp, remember_asyncio, start_on_kernel_loop, start_tour

def namespaces():
    """Everything nest_asyncio touches, as name -> object, for a before/after comparison."""
    owners = [asyncio, asyncio.events, asyncio.tasks, asyncio.futures, tornado.concurrent,
              type(asyncio.events.get_event_loop_policy()), type(asyncio.get_running_loop())]
    return {(getattr(o, "__name__", repr(o)), k): v for o in owners for k, v in vars(o).items()
            if k != "FUTURES"}  # kept on purpose: futures made while patched stay futures to Tornado

async def hello(url):
    return (await tornado.httpclient.AsyncHTTPClient().fetch(url)).body.decode()

naive = start_on_kernel_loop(TourApp(name="naive"))
before = namespaces()
''',
    '''
coro = hello(naive.url + "/hello")
try:
    asyncio.run(coro)
    raise AssertionError("asyncio.run worked in an unpatched kernel")
except RuntimeError:
    coro.close()
''',
    '''
restore = remember_asyncio()
nest_asyncio.apply()
assert "hello" in asyncio.run(hello(naive.url + "/hello"))
assert servers.runtime.server_loop().run_until_complete.__module__ == "nest_asyncio"
try:
    requests.get(naive.url + "/hello", timeout=1)
    raise AssertionError("a blocking call reached a server on the kernel's loop")
except requests.exceptions.ReadTimeout:
    pass
''',
    '''
restore()
naive.stop()
after = namespaces()
changed = sorted(f"{owner}.{name}" for owner, name in before.keys() | after.keys()
                 if before.get((owner, name)) is not after.get((owner, name)))
assert not changed, f"remember_asyncio does not restore: {changed}"
coro = hello(naive.url + "/hello")
try:
    asyncio.run(coro)
    raise AssertionError("asyncio.run still patched")
except RuntimeError:
    coro.close()
''',
    '''
# the rest of a lesson: a server on the server loop answers a blocking call and an await
tour = start_tour()
assert requests.get(tour.url + "/hello", timeout=10).json()["visit"] == 1
answer = await tornado.httpclient.AsyncHTTPClient().fetch(tour.url + "/hello")
assert b'"visit":2' in answer.body, answer.body
servers.stop_all()
print("nest ok")
''',
]


def test_nest_asyncio_section_patches_answers_starves_and_restores():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in CELLS])
    result = execute(nb, budget=60)
    if result.error is not None:
        pytest.fail(f"a cell failed in the kernel:\n{result.error}", pytrace=False)
    printed = "".join(o.get("text", "") for cell in result.nb.cells for o in cell.get("outputs", []))
    assert "nest ok" in printed
