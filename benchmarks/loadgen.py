"""The load generator: QR logins at a fixed arrival rate, spread over worker processes.

One Python process cannot play a thousand browsers and phones and leave CPU for the servers it
measures: its own event loop becomes the bottleneck, and the latencies it reports are its own.
So :class:`Generator` starts ``workers`` processes (``python -m benchmarks.loadgen``), and each
runs its share of the logins. The arrival rate is *open loop*: login ``i`` of a step is due at
``start + i / rate`` whether or not earlier ones have finished, as real users arrive, and its
time is measured from that due moment. A closed loop (start the next when one ends) would slow
down with the servers and hide their queueing (Gil Tene's "coordinated omission").

Each login is :func:`servers.clients.qr.login_once_async`: create the ticket, open the SSE channel
(its first message, the current state, says it is registered), the phone scans and confirms,
the browser sees ``confirmed`` and redeems. Phones log in once per step, as a phone app keeps
its token. Each worker's browsers and phones leave from loopback addresses of their own
(127.1.<worker>.<n> and 127.2.<worker>.<n>), so no address runs out of ephemeral ports and
the servers' per-address limits see many clients, as behind a real balancer.

A worker reports, per login: ``late_ms`` (how long after its due moment it started: a generator
that cannot keep up shows here first), ``login_ms`` (due moment to redeemed session),
``confirm_ms`` (phone's confirm to browser's ``confirmed``), ``ok`` and the failed step.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.fanout import Child, announce, stdin_lines  # noqa: E402
from servers import lifeline  # noqa: E402
from servers.bounds import raise_open_file_limit  # noqa: E402

ADDRESSES_PER_WORKER = 4  # source addresses per worker and role: ephemeral ports to spare at hundreds of logins/s


def addresses(role: int, worker: int) -> list[str]:
    """The loopback source addresses of ``worker``'s browsers (role 1) or phones (role 2)."""
    return [f"127.{role}.{worker + 1}.{n}" for n in range(1, ADDRESSES_PER_WORKER + 1)]


async def run_step(url: str, worker: int, rate: float, seconds: float, give_up_s: float,
                   offset: float = 0.0) -> list[dict[str, Any]]:
    """``rate * seconds`` logins, one due every ``1 / rate`` s (shifted by ``offset`` of a period,
    so that the workers' arrivals interleave); one record per login."""
    from servers.clients.qr import AsyncPhone, login_once_async

    browsers, phone_addresses = addresses(1, worker), addresses(2, worker)
    phones = [AsyncPhone(url, address) for address in phone_addresses]
    for phone in phones:
        await phone.login()
    count = round(rate * seconds)
    start = time.monotonic() + 0.05

    async def one(i: int) -> dict[str, Any]:
        due = start + (i + offset) / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        began = time.monotonic()
        result = await login_once_async(url, "sse", give_up_s, browser_address=browsers[i % len(browsers)],
                                        phone=phones[i % len(phones)])
        ended = time.monotonic()
        error = result["error"] or ""
        return {"late_ms": (began - due) * 1000, "login_ms": (ended - due) * 1000,
                "confirm_ms": None if result["latency_s"] is None else result["latency_s"] * 1000,
                "ok": bool(result["ok"]), "failed_step": error.split(":")[0] if error else ""}

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _serve(url: str, worker: int) -> None:
    """The worker's loop: a JSON step per stdin line, its records as one JSON line on stdout."""
    announce({"ready": True})
    async for line in stdin_lines():
        if line == "quit":
            return
        step = json.loads(line)
        records = await run_step(url, worker, step["rate"], step["seconds"], step["give_up_s"], step["offset"])
        announce({"records": records})


class Generator:
    """``workers`` generator processes against ``url``; :meth:`step` runs one arrival rate on all;
    ``stop()`` ends them (they also die with this process: ``servers.lifeline``)."""

    def __init__(self, url: str, workers: int) -> None:
        self.workers: list[Child] = []
        try:
            for w in range(workers):
                self.workers.append(Child(["-m", "benchmarks.loadgen", "--url", url, "--worker", str(w)], timeout=60))
        except BaseException:
            self.stop()
            raise

    def step(self, rate: float, seconds: float, give_up_s: float) -> list[dict[str, Any]]:
        """``rate`` logins per second in all, for ``seconds``; every worker's records, concatenated."""
        share = rate / len(self.workers)
        for w, child in enumerate(self.workers):
            child.send(json.dumps({"rate": share, "seconds": seconds, "give_up_s": give_up_s,
                                   "offset": w / len(self.workers)}))
        return [record for child in self.workers for record in child.read(seconds + give_up_s * 3 + 120)["records"]]

    def stop(self) -> None:
        for child in self.workers:
            child.stop()

    def __enter__(self) -> "Generator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the balancer's URL")
    parser.add_argument("--worker", type=int, default=0, help="this worker's number (picks its source addresses)")
    args = parser.parse_args(argv)
    lifeline.watch_parent()  # started by Generator: stop when the benchmark is gone
    raise_open_file_limit()
    asyncio.run(_serve(args.url, args.worker))
    return 0


if __name__ == "__main__":
    sys.exit(main())
