"""Where a service's dependencies are, and the one HTTP client that calls them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from aiodocknet.aiohttp import DockNetConnector

from .mesh import PORT

DEFAULT_CONNECTION_LIMIT = 256
DEFAULT_TIMEOUT_SECONDS = 10.0
_ERROR_BODY_CHARS = 200


class UpstreamError(Exception):
    """A dependency answered with something other than 200 OK."""

    def __init__(self, service: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{service} {path}: HTTP {status}: {body[:_ERROR_BODY_CHARS]}")
        self.service = service
        self.path = path
        self.status = status


class Upstreams:
    """Base URLs by service name, plus a client session tied to an app's life.

    Names without an override resolve to ``http://NAME:8080``: the service
    name is the host, as in a compose network or on DockNet, where the
    connector asks the master for the name.
    """

    def __init__(
        self,
        urls: Mapping[str, str] | None = None,
        *,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._urls = {name: url.rstrip("/") for name, url in (urls or {}).items()}
        self._connection_limit = connection_limit
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    def url(self, service: str) -> str:
        return self._urls.get(service, f"http://{service}:{PORT}")

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstreams has no session: its app has not started (see install)")
        return self._session

    def install(self, app: web.Application) -> None:
        """Open the session when app starts and close it when app cleans up."""
        app.cleanup_ctx.append(self._session_ctx)

    async def _session_ctx(self, app: web.Application) -> AsyncIterator[None]:
        if self._session is not None:
            raise RuntimeError("one Upstreams serves one app: this one already has a session")
        # The connector must be made on the running loop: under DockNetLoop it
        # routes DockNet names and addresses through the process's endpoint.
        connector = DockNetConnector(limit=self._connection_limit)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        try:
            yield
        finally:
            session, self._session = self._session, None
            await session.close()

    async def get_json(self, service: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        async with self.session.get(self.url(service) + path, params=params) as resp:
            return await self._json_or_raise(service, path, resp)

    async def post_json(self, service: str, path: str, body: Any) -> Any:
        async with self.session.post(self.url(service) + path, json=body) as resp:
            return await self._json_or_raise(service, path, resp)

    @staticmethod
    async def _json_or_raise(service: str, path: str, resp: aiohttp.ClientResponse) -> Any:
        if resp.status != 200:
            raise UpstreamError(service, path, resp.status, await resp.text())
        return await resp.json()
