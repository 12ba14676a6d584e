"""Simulated browser and phone for the QR-login app: two different clients, as in the seed's story.

A balancer must see the browser and the phone as two clients, because they are: so each has its
own cookie jar and its own loopback source address (browser 127.0.0.2, phone 127.0.0.3 by
default; all of 127/8 is loopback on Linux). That is why ``ip_hash`` and cookie stickiness
cannot send the phone's confirm to the browser's server.

- :class:`AsyncBrowser` / :class:`AsyncPhone` - Tornado clients (``HTTPRequest(network_interface=...)``),
  cheap enough to run hundreds of logins at once.
- :class:`Browser` / :class:`Phone` - the same, blocking, for a notebook cell. ``Phone`` uses
  ``requests`` with a source-address adapter; ``Browser`` runs :class:`AsyncBrowser` on the
  shared server loop (``servers.runtime``), because its push channel must stay open between
  cells (a blocking wait never stalls the kernel's own loop).
- :func:`login_once` / :func:`login_once_async` - one whole login, step by step, with which server
  served each step and the confirm → browser latency; :func:`login_many` runs many at once.

Example (a cell)::

    browser, phone = Browser(url, "sse"), Phone(url)
    ticket = browser.create_ticket()["ticket"]
    channel = browser.open_channel(ticket)      # first message: the current state
    phone.login(); phone.scan(ticket); phone.confirm(ticket)
    channel.wait_for("confirmed", timeout=2)    # TimeoutError: the bug

The package: :mod:`~servers.clients.qr.common` (``QRError``, addresses), :mod:`~servers.clients.qr.phone`,
:mod:`~servers.clients.qr.browser` (with the channels), :mod:`~servers.clients.qr.raw` (the hand-written
streaming GET) and :mod:`~servers.clients.qr.logins`.
"""
from __future__ import annotations

from servers.clients.qr.browser import (AsyncBrowser, Browser, Channel, LongPollChannel, PollChannel, SSEChannel,
                                        SyncChannel, WSChannel)
from servers.clients.qr.common import (BROWSER_ADDRESS, BROWSER_AGENT, PHONE_ADDRESS, PHONE_AGENT, TERMINAL,
                                       TRANSPORTS, QRError)
from servers.clients.qr.logins import login_many, login_many_async, login_once, login_once_async
from servers.clients.qr.phone import AsyncPhone, Phone, SourceAddressAdapter
from servers.clients.qr.raw import RawGet

__all__ = ["QRError", "AsyncBrowser", "AsyncPhone", "Browser", "Phone", "Channel", "SyncChannel",
           "login_once", "login_once_async", "login_many", "login_many_async", "TRANSPORTS",
           "BROWSER_ADDRESS", "PHONE_ADDRESS", "PollChannel", "LongPollChannel", "SSEChannel", "WSChannel",
           "SourceAddressAdapter", "RawGet", "BROWSER_AGENT", "PHONE_AGENT", "TERMINAL"]

