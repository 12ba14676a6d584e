"""How guessable an id is: its entropy measured from the ids themselves, then turned into time.

Lesson 10 does not take "the ticket id is random enough" on faith: :func:`measure_id_scheme`
reads the bits off a generator's output (``Σ log2(distinct characters seen at each
position)``), and :func:`expected_guess_seconds` turns bits, live tickets and a guessing rate
into the expected time to hit one, to set against a ticket's life.
"""
from __future__ import annotations

import math
import secrets
from typing import Any, Callable, Iterable

import pandas as pd


def id_positions(ids: Iterable[str]) -> pd.DataFrame:
    """One row per character position: how many distinct characters the samples show there.

    ``bits`` is ``log2(distinct)``: a position that takes 64 values carries 6 bits, one that
    takes 4 values (the last character of a 16-byte ``token_urlsafe``) carries 2.
    """
    ids = list(ids)
    length = max(len(i) for i in ids)
    rows = []
    for position in range(length):
        seen = {i[position] for i in ids if len(i) > position}
        rows.append({"position": position, "distinct": len(seen), "bits": math.log2(len(seen)) if seen else 0.0})
    return pd.DataFrame(rows)


def measure_id_scheme(make_id: Callable[[], str], samples: int = 4000, name: str | None = None) -> dict[str, Any]:
    """Entropy of an id generator, measured from ``samples`` ids it makes.

    ``bits_measured`` = Σ over positions of log2(distinct characters seen there): with enough
    samples (every value seen at least once) it is the generator's entropy for uniform,
    independent positions (true of ``secrets.token_urlsafe`` and of random digits). It can only
    under-estimate with too few samples, never over-estimate.
    """
    ids = [make_id() for _ in range(samples)]
    positions = id_positions(ids)
    alphabet = sorted({c for i in ids for c in i})
    return {"scheme": name or getattr(make_id, "__name__", "ids"), "example": ids[0], "samples": samples,
            "length": max(len(i) for i in ids), "alphabet_size": len(alphabet),
            "bits_measured": round(float(positions["bits"].sum()), 1),
            "duplicates": samples - len(set(ids))}


def six_digit_id() -> str:
    """A weak id scheme: six decimal digits (from the CSPRNG - which does not save it)."""
    return f"{secrets.randbelow(10 ** 6):06d}"


def expected_guesses(bits: float, live: int = 1) -> float:
    """Expected guesses (distinct, random order) until one of ``live`` tickets among 2**bits is hit.

    Drawing without replacement from N = 2**bits ids of which L are live, the first hit comes
    on average at guess (N + 1) / (L + 1).
    """
    return (2.0 ** bits + 1) / (live + 1)


def expected_guess_seconds(bits: float, live: int = 1, rate_per_s: float = 1000.0) -> float:
    """Expected time to guess one of ``live`` live ticket ids at ``rate_per_s`` guesses per second."""
    return expected_guesses(bits, live) / rate_per_s


def guess_time_frame(bits: Iterable[float], live: int, rate_per_s: float, ttl_s: float | None = None) -> pd.DataFrame:
    """Expected guessing time per id size; ``within_ttl`` when it is shorter than a ticket's life."""
    rows = []
    for b in bits:
        seconds = expected_guess_seconds(b, live, rate_per_s)
        row = {"bits": b, "live_tickets": live, "guesses_per_s": rate_per_s, "expected_s": seconds,
               "expected_years": seconds / (365.25 * 24 * 3600)}
        if ttl_s is not None:
            row["within_ttl"] = seconds < ttl_s
        rows.append(row)
    return pd.DataFrame(rows)
