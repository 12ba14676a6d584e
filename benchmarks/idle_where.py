"""Where the feed's memory per held connection goes: ``python -m benchmarks.idle --where``.

For each technique, the feed runs in a process of its own with ``tracemalloc`` on (25 frames);
worker processes of :mod:`benchmarks.idle` hold 20 warm-up connections, the server takes a
snapshot, the workers hold N more, the server takes another. The difference, per connection, by
allocation site (the innermost frame), is what one held connection costs in Python objects;
RSS adds the allocator's rounding and free space on top (and tracemalloc's own bookkeeping,
which is why RSS is measured without it, in :mod:`benchmarks.idle`).
"""
from __future__ import annotations

import gc
import linecache
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.fanout import Child, announce
from benchmarks.idle import CLIENTS, PARALLEL, ask, settled_memory, start_workers, wait_held

FRAMES = 25


def serve_traced() -> int:
    """The feed with tracemalloc on; stdin: ``snapshot PATH`` (after a full collection), ``quit``."""
    tracemalloc.start(FRAMES)
    from servers.feed.app import make_feed_app
    from servers.runtime import serve

    handle = serve(make_feed_app(name="idle-where"))
    announce({"url": handle.url, "pid": os.getpid()})
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "snapshot":
            handle.call(lambda app: gc.collect())
            tracemalloc.take_snapshot().dump(value)
            announce({"snapshot": value})
        elif command == "census":
            announce(handle.call(lambda app: census()))
        elif command == "quit":
            break
    handle.stop()
    return 0


def census() -> dict[str, list[int]]:
    """Every object the collector tracks, by type: ``{name: [count, bytes]}`` (``sys.getsizeof``)."""
    gc.collect()
    found: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        if name in ("set", "dict") and len(obj) >= 100:
            name = f"{name} of connections"  # a container that grows with them (subscribers, tasks...)
        entry = found.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(obj)
    return found


def snapshot(server: Child, path: Path) -> tracemalloc.Snapshot:
    server.send(f"snapshot {path}")
    server.read(120)
    return tracemalloc.Snapshot.load(str(path)).filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>")])


def where(technique: str, connections: int, warm: int = 20) -> dict[str, Any]:
    """What grew while ``connections`` more were held: tracemalloc's difference by allocation site
    (``sites``: innermost frame) and the collector's objects by type (``types``), per connection."""
    import psutil

    kind, path = CLIENTS["ours"][technique]
    server = Child(["-m", "benchmarks.idle", "--serve-traced"])
    url = server.info["url"]
    port = int(url.rsplit(":", 1)[1])
    ps = psutil.Process(server.info["pid"])
    workers: list[Child] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            workers = start_workers(url, kind, path, warm, connections, 1, PARALLEL)
            wait_held(ps.pid, port, warm)
            settled_memory(ps)
            before = snapshot(server, Path(tmp) / "before")
            server.send("census")
            types_before = server.read(120)
            ask(workers, "more")
            wait_held(ps.pid, port, warm + connections)
            settled_memory(ps)
            after = snapshot(server, Path(tmp) / "after")
            server.send("census")
            types_after = server.read(120)
            if sum(s["held"] for s in ask(workers, "held", 60)) != connections:
                raise RuntimeError(f"{technique}: not every connection was held")
        finally:
            for child in workers:
                child.stop()
            server.stop()
    stats = after.compare_to(before, "lineno")
    sites = [(stat.size_diff / connections, stat.count_diff / connections,
              f"{_short(stat.traceback[0].filename)}:{stat.traceback[0].lineno}",
              linecache.getline(stat.traceback[0].filename, stat.traceback[0].lineno).strip())
             for stat in sorted(stats, key=lambda s: -s.size_diff)]
    types = sorted(((after_b - types_before.get(name, [0, 0])[1]) / connections,
                    (count - types_before.get(name, [0, 0])[0]) / connections, name)
                   for name, (count, after_b) in types_after.items())[::-1]
    return {"technique": technique, "connections": connections,
            "bytes": sum(s.size_diff for s in stats) / connections,
            "blocks": sum(s.count_diff for s in stats) / connections, "sites": sites, "types": types}


def _short(filename: str) -> str:
    """``tornado/web.py``, ``asyncio/events.py``, ``servers/feed/sse.py``: the path from the package."""
    parts = Path(filename).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in ("site-packages", "work", "main") or parts[i].startswith("python3."):
            return "/".join(parts[i + 1:])
    return filename


def main(connections: int, techniques: list[str], top: int = 12) -> int:
    for technique in techniques:
        found = where(technique, connections)
        print(f"\n{technique}: {found['bytes']:.0f} B in {found['blocks']:.1f} blocks per connection "
              f"({connections} held), by allocation site:")
        for size, count, site, code in found["sites"][:top]:
            print(f"  {size:6.0f} B {count:5.2f}  {site:<40} {code[:60]}")
        print("  objects the collector tracks, by type (sys.getsizeof; containers that grew included):")
        print("  " + ", ".join(f"{name} {count:.2g} ({size:.0f} B)" for size, count, name in found["types"][:top]))
    return 0
