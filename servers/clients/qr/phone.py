"""The simulated phone: logs in for a bearer token, then scans and confirms. No cookies are sent.

:class:`AsyncPhone` on Tornado; :class:`Phone` blocking, with ``requests`` and an adapter that
makes its connections leave from the phone's own loopback address.
"""
from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from servers.clients.qr.common import PHONE_ADDRESS, PHONE_AGENT, QRError, _base, _Client

__all__ = ["AsyncPhone", "Phone", "SourceAddressAdapter"]


class AsyncPhone(_Client):
    """The phone: logs in for a bearer token, then scans and confirms. No cookies are sent."""

    agent = PHONE_AGENT

    def __init__(self, base_url: Any, source_address: str | None = PHONE_ADDRESS, user: str = "alice",
                 password: str = "alice") -> None:
        super().__init__(base_url, source_address)
        self.user, self.password = user, password
        self.token: str | None = None

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"User-Agent": self.agent, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    async def login(self) -> dict[str, Any]:
        body, served_by = await self.request("POST", "/api/phone/login", {"user": self.user, "password": self.password},
                                             what="phone login: ")
        self.token = body["token"]
        return {**body, "served_by": served_by}

    async def scan(self, ticket: str) -> dict[str, Any]:
        body, served_by = await self.request("POST", f"/api/tickets/{ticket}/scan", what="scan: ")
        return {**body, "served_by": served_by}

    async def confirm(self, ticket: str) -> dict[str, Any]:
        body, served_by = await self.request("POST", f"/api/tickets/{ticket}/confirm", what="confirm: ")
        return {**body, "served_by": served_by}



class SourceAddressAdapter(HTTPAdapter):
    """A requests adapter whose connections leave from ``source_address`` (e.g. 127.0.0.3)."""

    def __init__(self, source_address: str, **kwargs: Any) -> None:
        self.source_address = (source_address, 0)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = self.source_address
        super().init_poolmanager(*args, **kwargs)


class Phone:
    """The phone, blocking (``requests``): ``login()``, ``scan(ticket)``, ``confirm(ticket)``.

    Each returns the JSON answer plus ``served_by``; an error answer raises :class:`QRError`.
    """

    def __init__(self, base_url: Any, source_address: str | None = PHONE_ADDRESS, user: str = "alice",
                 password: str = "alice", timeout: float = 10.0) -> None:
        self.base_url = _base(base_url)
        self.user, self.password, self.timeout = user, password, timeout
        self.token: str | None = None
        self.session = requests.Session()
        self.session.headers["User-Agent"] = PHONE_AGENT
        if source_address:
            adapter = SourceAddressAdapter(source_address)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)

    def _post(self, path: str, body: dict | None = None, what: str = "") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self.session.post(self.base_url + path, json=body or {}, headers=headers, timeout=self.timeout)
        served_by = response.headers.get("X-Served-By")
        data = response.json()
        if response.status_code >= 400:
            raise QRError(response.status_code, data, served_by, what)
        return {**data, "served_by": served_by}

    def login(self) -> dict[str, Any]:
        answer = self._post("/api/phone/login", {"user": self.user, "password": self.password}, "phone login: ")
        self.token = answer["token"]
        return answer

    def scan(self, ticket: str) -> dict[str, Any]:
        return self._post(f"/api/tickets/{ticket}/scan", what="scan: ")

    def confirm(self, ticket: str) -> dict[str, Any]:
        return self._post(f"/api/tickets/{ticket}/confirm", what="confirm: ")

    def close(self) -> None:
        self.session.close()
