"""Who is who on the wire: each simulated user's own browser and phone addresses, and :func:`who`.

Real users come from many addresses, and ``ip_hash`` and the routing log both depend on it:
:func:`user_addresses` gives each of lesson 07's users a browser and a phone address of its own,
and :func:`who` reads a routing-log address back as ``browser`` or ``phone``. :func:`ip_hash_apart`
asks the ``ip_hash`` policy function itself, over many random address pairs, how often a browser and
its phone land on different servers (no servers needed, so the sample can be large).
"""
from __future__ import annotations

import math
import random
from typing import Iterable

import pandas as pd

from servers.balancer.policies import ip_hash
from servers.clients.qr import BROWSER_ADDRESS, PHONE_ADDRESS


# Each simulated user of :func:`traffic` gets a browser and a phone address of its own, as real
# users have, drawn at random inside 127/8 (all of it is loopback on Linux): browsers from
# 127.100-149.x.y, phones from 127.150-199.x.y. At random, not by a pattern: nginx's ``hash``
# is CRC32, which is linear, so address pairs that differ by a fixed pattern (127.10.0.i and
# 127.20.0.i) would all land together or all apart.
BROWSER_OCTETS, PHONE_OCTETS = range(100, 150), range(150, 200)


def user_addresses(rng: random.Random) -> tuple[str, str]:
    """A random ``(browser_address, phone_address)`` pair for one simulated user."""
    def address(second: range) -> str:
        return f"127.{rng.choice(second)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    return address(BROWSER_OCTETS), address(PHONE_OCTETS)


def who(client: str) -> str:
    """``browser``, ``phone`` or the address itself, for a routing-log ``client`` address."""
    parts = str(client).split(".")
    second = int(parts[1]) if len(parts) == 4 and parts[0] == "127" and parts[1].isdigit() else -1
    if client == BROWSER_ADDRESS or second in BROWSER_OCTETS:
        return "browser"
    if client == PHONE_ADDRESS or second in PHONE_OCTETS:
        return "phone"
    return client


def ip_hash_apart(ns: Iterable[int] = (2, 3, 4, 6), pairs: int = 10_000, *, seed: int = 7) -> pd.DataFrame:
    """Per N: the share of ``pairs`` random users whose browser and phone (two addresses: the phone
    on mobile data) ``ip_hash`` to different servers, with a 95 % interval, beside (N-1)/N. (On one
    home Wi-Fi both share the router's address, so they hash alike: never apart.)"""
    rows = []
    for n in ns:
        names = [chr(ord("A") + i) for i in range(n)]
        rng = random.Random(seed * 100 + n)
        apart = sum(ip_hash(b, names) != ip_hash(p, names) for b, p in (user_addresses(rng) for _ in range(pairs)))
        share = apart / pairs
        half = 1.96 * math.sqrt(share * (1 - share) / pairs)
        rows.append({"n_servers": n, "users": pairs, "apart_pct": 100 * share, "low_pct": 100 * (share - half),
                     "high_pct": 100 * (share + half), "theory_pct": 100 * (n - 1) / n})
    return pd.DataFrame(rows).round(2)
