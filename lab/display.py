"""Show a server's page inside a notebook, on a laptop and on JupyterHub/Binder alike.

Why this is not just ``IFrame(handle.url)``: the server listens on the machine the kernel runs
on. On a laptop that is also the browser's machine, so ``http://127.0.0.1:<port>/`` works. On
JupyterHub or Binder the browser is elsewhere and can only reach the Jupyter server, which
forwards ``<base>/proxy/<port>/<path>`` to ``127.0.0.1:<port>/<path>`` through
jupyter-server-proxy (a dependency of the suite). Pages served that way must use relative URLs
(``fetch("feed/poll")``, not ``fetch("/feed/poll")``), because the proxy keeps its prefix.

The base is taken, in order, from the ``base`` argument, the ``SERVER_PUSH_LAB_BASE_URL``
setting (environment), or ``JUPYTERHUB_SERVICE_PREFIX`` (set by JupyterHub and Binder, e.g.
``/user/alice/``). Without any of them the local URL is used.
"""
from __future__ import annotations

import html
import os
from typing import Any
from urllib.parse import urlsplit

__all__ = ["browser_url", "proxy_base", "show"]

BASE_URL_SETTING = "SERVER_PUSH_LAB_BASE_URL"


def proxy_base() -> str | None:
    """The Jupyter server's base URL when pages must go through its proxy, else None."""
    return os.environ.get(BASE_URL_SETTING) or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or None


def browser_url(target: Any, path: str = "/", *, base: str | None = None) -> str:
    """The URL a browser should open for ``path`` on a server (a handle, a tap, or a URL string).

    >>> browser_url("http://127.0.0.1:8123", "/login", base="")
    'http://127.0.0.1:8123/login'
    >>> browser_url("http://127.0.0.1:8123", "/login", base="/user/alice/")
    '/user/alice/proxy/8123/login'
    """
    url = getattr(target, "url", target)
    if not isinstance(url, str):
        raise TypeError(f"browser_url needs a server handle or a URL string, not {type(target).__name__}")
    parts = urlsplit(url)
    if parts.port is None:
        raise ValueError(f"the server URL {url!r} has no port; expected e.g. http://127.0.0.1:8123")
    if not path.startswith("/"):
        path = "/" + path
    base = proxy_base() if base is None else base
    if base:
        return f"{base.rstrip('/')}/proxy/{parts.port}{path}"
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{parts.port}{path}"


def show(target: Any, path: str = "/", *, height: int = 360, base: str | None = None) -> None:
    """Display a link to the server's page and the page itself in an iframe (prints the URL outside Jupyter)."""
    url = browser_url(target, path, base=base)
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is None or get_ipython() is None:
        print(url)
        return
    safe = html.escape(url, quote=True)
    display(HTML(f'<p><a href="{safe}" target="_blank" rel="noopener">{html.escape(url)}</a> '
                 f"(opens in a new tab)</p>"
                 f'<iframe src="{safe}" width="100%" height="{int(height)}" '
                 f'style="border: 1px solid #ccc; border-radius: 4px"></iframe>'))
