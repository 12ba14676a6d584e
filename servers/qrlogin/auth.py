"""Who is who: demo phone users, bearer tokens, browser cookies, Origin checks, client addresses.

Tokens and sessions live in Redis (like tickets) so that any server of a cluster accepts a
token issued by another: the phone may log in on A and confirm on B.

The browser holds two cookies, both ``HttpOnly; SameSite=Lax`` and ``Secure`` only over https:

* ``qr_bind`` - the browser-binding cookie, set by ``POST /api/tickets``. Only its SHA-256 is
  stored with the ticket; redeem must present the cookie itself. A browser keeps its binding
  value across tickets (several login tabs work); an attacker who only knows a ticket id
  (QRLJacking: the QR is public) cannot redeem it. The value is *signed* by the server
  (Tornado's ``set_signed_cookie``, HMAC-SHA256 with the cluster's ``cookie_secret``, kept in
  Redis so every server shares it): a value the server did not issue - one an attacker made up
  and planted from a sibling site (cookies ignore ports) so as to know the victim's binding - is
  refused (400 ``bad_binding_cookie`` at creation, 403 at redeem) instead of adopted.
* ``qr_session`` - the login session, a fresh random id issued at redeem; an older session
  cookie the browser carried is deleted (session id regenerated at login, per OWASP).

The phone carries ``Authorization: Bearer <token>`` and no cookie, so it is not subject to the
Origin check; every cookie-authenticated browser route is.
"""
from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from urllib.parse import urlsplit

from servers import limits

DEFAULT_USERS = {"alice": "alice"}
BIND_COOKIE = "qr_bind"
BIND_MAX_AGE_DAYS = 31  # a signed binding value older than this is refused (Tornado's default)
SESSION_COOKIE = "qr_session"
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{22,100}$")


def new_secret() -> str:
    """A cookie value or token from the CSPRNG: 32 bytes, 256 bits."""
    return secrets.token_urlsafe(32)


def well_formed(value: str | None) -> bool:
    """Does a cookie/token look like one we issue (cheap check before asking Redis)?"""
    return bool(value) and bool(_SECRET_SHAPE.match(value))


def password_ok(users: dict[str, str], user: str, password: str) -> bool:
    """Constant-time comparison against the configured demo users."""
    expected = users.get(user)
    # surrogatepass: JSON may carry a lone surrogate ("\ud800"), which strict UTF-8 cannot encode
    return expected is not None and hmac.compare_digest(expected.encode(), password.encode("utf-8", "surrogatepass"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Accounts:
    """Phone tokens and browser sessions in Redis (``<ns>:token:<t>``, ``<ns>:session:<s>`` → user)."""

    def __init__(self, redis, users: dict[str, str], *, namespace: str = "qr", token_ttl: int = 3600,
                 session_ttl: int = 3600) -> None:
        self.redis = redis
        self.users = dict(users)
        self.namespace = namespace
        self.token_ttl = token_ttl
        self.session_ttl = session_ttl

    async def issue_token(self, user: str) -> str:
        token = new_secret()
        await self.redis.set(f"{self.namespace}:token:{token}", user, ex=self.token_ttl)
        return token

    async def user_for_token(self, token: str | None) -> str | None:
        if not well_formed(token):
            return None
        return await self.redis.get(f"{self.namespace}:token:{token}")

    async def new_session(self, user: str, old_session: str | None = None) -> str:
        """A fresh session id for ``user``; the old one (if any) stops working."""
        session = new_secret()
        async with self.redis.pipeline(transaction=True) as pipe:
            if well_formed(old_session):
                pipe.delete(f"{self.namespace}:session:{old_session}")
            pipe.set(f"{self.namespace}:session:{session}", user, ex=self.session_ttl)
            await pipe.execute()
        return session

    async def user_for_session(self, session: str | None) -> str | None:
        if not well_formed(session):
            return None
        return await self.redis.get(f"{self.namespace}:session:{session}")


# ---------------------------------------------------------------------------------------------
# Request facts (functions of a Tornado request, so HTTP and WebSocket handlers share them).


def is_https(request, trusted_proxies=()) -> bool:
    """Served over https: directly, or behind a TLS-terminating proxy that says so in
    ``X-Forwarded-Proto`` - believed only from ``trusted_proxies``, the rule of
    :func:`client_address` (a client that writes the header itself proves nothing)."""
    if request.protocol == "https":
        return True
    if not limits.from_trusted_proxy(request, trusted_proxies):
        return False
    return request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"


def cookie_options(request, trusted_proxies=()) -> dict:
    """``HttpOnly; SameSite=Lax; Path=/`` and ``Secure`` only over https (lessons run on http)."""
    return {"httponly": True, "samesite": "Lax", "secure": is_https(request, trusted_proxies), "path": "/"}


def client_address(request, trusted_proxies=()) -> str:
    """The client's address, by the limits' policy (:func:`servers.limits.client_address`): the
    peer, or the last ``X-Forwarded-For`` entry when the peer is one of ``trusted_proxies`` (the
    ``trusted_proxies`` setting). Believing the header from anyone would let a client write any
    address it likes onto the phone's confirm page."""
    return limits.client_address(request, trusted_proxies)


def same_network(a: str, b: str) -> bool:
    """Are two client addresses on one network? IPv4: the same /24; IPv6: the same /64 (a home or
    office network; a phone on the same Wi-Fi behind NAT shows the very same address). Anything
    that is not an address compares as text. A heuristic for a *warning*, never for a refusal: a
    phone on mobile data differs from its owner's laptop too."""
    try:
        ip_a, ip_b = ipaddress.ip_address(a.split("%")[0]), ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return a == b
    if ip_a.version != ip_b.version:
        return False
    prefix = 24 if ip_a.version == 4 else 64
    return ipaddress.ip_network(f"{ip_a}/{prefix}", strict=False) == ipaddress.ip_network(f"{ip_b}/{prefix}", strict=False)


def public_origin(request, trusted_proxies=()) -> str:
    """``scheme://host[:port]`` the client used (the Host header; balancers keep it). The scheme
    is https only as :func:`is_https` believes it."""
    return f"{'https' if is_https(request, trusted_proxies) else 'http'}://{request.host}"


def origin_allowed(request, public_url: str | None = None, extra: tuple[str, ...] = ()) -> bool:
    """False when an ``Origin`` header names another site than the one serving the request.

    Same site means the Origin's host:port equals the request's ``Host`` (balancers and
    jupyter-server-proxy keep it), the ``public_url``'s, or one in ``extra``. A request without
    Origin (curl, requests, a same-origin GET) passes: it is not a cross-site browser request.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:  # e.g. "http://[" (an unclosed IPv6 literal): not our site
        return False
    if not netloc:  # "null" (sandboxed iframe, file:) is never our site
        return False
    allowed = {request.host.lower()}
    for url in (public_url, *extra):
        if url:
            allowed.add(urlsplit(url).netloc.lower())
    return netloc in allowed


def socket_origin_refusal(request, public_url: str | None = None, extra: tuple[str, ...] = ()) -> str | None:
    """Why a WebSocket handshake must be refused (a close reason), or None when it may go on.

    Stricter than :func:`origin_allowed`: a browser always sends ``Origin`` on a WebSocket
    handshake, so a handshake that carries one of our cookies but no ``Origin`` did not come
    from a page of ours, and the cookie must not authenticate it (cross-site WebSocket hijacking,
    OWASP WebSocket Security Cheat Sheet). Without our cookies a missing Origin is a script or a
    test client and passes, as on the HTTP routes.
    """
    if request.headers.get("Origin") is None:
        if any(request.cookies.get(name) is not None for name in (BIND_COOKIE, SESSION_COOKIE)):
            return "missing Origin refused: a WebSocket that carries cookies must come from a page of this site"
        return None
    if not origin_allowed(request, public_url, extra):
        return "cross-site Origin refused"
    return None
