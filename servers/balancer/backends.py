"""A backend as both balancers see it: a name (what the routing log and the sticky cookie show)
and an address. Built from a URL, a ``NAME=URL`` string (the CLI's ``--backend``) or a running
:class:`servers.runtime.ServerHandle` (whose name is the server's own, e.g. "A")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Backend", "as_backend", "as_backends"]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    host: str
    port: int

    @property
    def address(self) -> str:
        """``host:port`` as nginx writes it in ``$upstream_addr``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def as_backend(spec: Any, name: str | None = None) -> Backend:
    """A :class:`Backend` from a ServerHandle-like object (``url`` and ``name``), ``"NAME=URL"`` or a URL."""
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        url = getattr(spec, "url", None)
        if not url:
            raise TypeError(f"a backend must be a URL, 'NAME=URL' or a server handle, not {spec!r}")
        return as_backend(url, name or getattr(spec, "name", None))
    text = spec.strip()
    if "=" in text.split("://", 1)[0]:
        name, text = text.split("=", 1)
    parts = urlsplit(text if "://" in text else "http://" + text)
    if parts.scheme not in ("http", "ws") or not parts.hostname or not parts.port:
        raise ValueError(f"backend {spec!r} must look like http://127.0.0.1:8001 (http, a host and a port)")
    host = parts.hostname
    address = f"[{host}]:{parts.port}" if ":" in host else f"{host}:{parts.port}"
    return Backend(name or address, f"http://{address}", host, parts.port)


def as_backends(specs: Any) -> list[Backend]:
    backends = [as_backend(spec) for spec in specs]
    names = [b.name for b in backends]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"backend names must be unique; repeated: {', '.join(duplicates)}")
    return backends
