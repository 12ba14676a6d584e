"""The fixes of the QR-login bug, by name: :data:`FIXES` (name → :class:`~servers.qrlogin.push.Fix`).

A :class:`~servers.qrlogin.push.Fix` is everything the rest of the code knows of a fix: its
``name``, the ``hub`` class that makes each app server's push hub, the balancer ``policy`` it
relies on (``None``: any) and, if browsers' push routes go to a tier of their own, the
``push_tier`` that starts it. ``start_qrlogin(fix=...)``, ``python -m servers qrlogin --fix``,
``start_cluster(fix=...)`` and lesson 08 all look the name up here (:func:`get_fix`) and use only
those fields; no code elsewhere asks "is this fix X?".

``none`` is the bug itself (delivery only to channels on the same server), the baseline every fix
is measured against. ``ticket_hash`` needs nothing from the app (the balancer routes by ticket
id), so its hub is the same local one and its Fix names the policy.

Adding a fix (a seventh, say ``kafka``)
---------------------------------------
1. Write ``servers/qrlogin/fixes/kafka.py`` with a subclass of
   :class:`servers.qrlogin.push.PushHub` (its docstring lists the hooks: ``publish``, ``history``,
   ``on_first_subscriber``/``on_last_unsubscribe``, ``start``/``stop``, ``routes``, and the
   shared helpers to use rather than copy). Take options from ``app.settings``; use only what
   :class:`~servers.qrlogin.push.PushApp` offers of the app, and never import the app module
   (``servers.qrlogin.app`` imports this registry, so that would be an import circle). A route
   that other servers call subclasses :class:`servers.qrlogin.internal.InternalEventHandler`
   (the servers' shared secret, ``InternalSecret``, checked in constant time).
2. Add one line to :data:`FIXES` below: ``Fix("kafka", KafkaHub)`` (with ``policy=...`` or
   ``push_tier=...`` if it needs them). Its place in the tuple is its place in lesson 08's tables.
3. Test it like ``tests/test_fix_pubsub.py``: a login with the browser on A and the phone on B.
   ``--fix kafka`` on both command lines and ``start_cluster(fix="kafka")`` work from then on.
"""
from __future__ import annotations

from servers.qrlogin.fixes.gateway import GatewayHub
from servers.qrlogin.fixes.gateway_tier import start_push_tier
from servers.qrlogin.fixes.pubsub import PubSubHub
from servers.qrlogin.fixes.registry import RegistryHub
from servers.qrlogin.fixes.store import StoreHub
from servers.qrlogin.fixes.streams import StreamsHub
from servers.qrlogin.push import Fix, PushHub

__all__ = ["FIXES", "BUG", "Fix", "get_fix"]

BUG = Fix("none", PushHub)  # not a fix: the bug itself, the baseline

#: Every name ``--fix`` accepts, in the order lesson 08 presents them (the bug first).
FIXES: dict[str, Fix] = {fix.name: fix for fix in (
    BUG,
    Fix("ticket_hash", PushHub, policy="ticket_hash"),
    Fix("pubsub", PubSubHub),
    Fix("registry", RegistryHub),
    Fix("store", StoreHub),
    Fix("gateway", GatewayHub, push_tier=start_push_tier),
    Fix("streams", StreamsHub),
)}


def get_fix(fix: str | Fix) -> Fix:
    """The :class:`Fix` called ``fix`` (a Fix is returned as it is), or a ValueError naming the fixes."""
    if isinstance(fix, Fix):
        return fix
    try:
        return FIXES[fix]
    except (KeyError, TypeError):
        raise ValueError(f"unknown fix {fix!r}; known fixes: {', '.join(FIXES)}") from None
