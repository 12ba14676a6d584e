"""The registry of fixes for the QR-login bug: fix name → factory ``(app) -> PushHub``.

Each fix of issue 6 is one module here (``pubsub.py``, ``registry.py``, ``store.py``,
``gateway.py``, ``streams.py``) with a :class:`servers.qrlogin.push.PushHub` subclass; register
it in :data:`FIXES` below. ``servers/qrlogin/push.py`` explains how each plugs in.

``none`` is the bug itself: delivery only to channels on the same server. ``ticket_hash`` needs
nothing from the app (the balancer routes by ticket id), so its app side is the same local hub.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from servers.qrlogin.push import PushHub
from servers.qrlogin.fixes.streams import StreamsHub  # noqa: E402  (a submodule of this package)
from servers.qrlogin.fixes.gateway import GatewayHub  # noqa: E402
from servers.qrlogin.fixes.pubsub import PubSubHub  # noqa: E402
from servers.qrlogin.fixes.registry import RegistryHub  # noqa: E402
from servers.qrlogin.fixes.store import StoreHub  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from servers.qrlogin.app import QRLoginApp

FIXES: dict[str, Callable[["QRLoginApp"], PushHub]] = {
    "none": PushHub,
    "ticket_hash": PushHub,
    "streams": StreamsHub,
    "gateway": GatewayHub,
    "pubsub": PubSubHub,
    "registry": RegistryHub,
    "store": StoreHub,
}


def make_push_hub(fix: str, app: "QRLoginApp") -> PushHub:
    """The push hub for ``fix``, or a ValueError naming the fixes that exist."""
    try:
        factory = FIXES[fix]
    except KeyError:
        raise ValueError(f"unknown fix {fix!r}; known fixes: {', '.join(sorted(FIXES))}") from None
    hub = factory(app)
    hub.name = fix
    return hub
