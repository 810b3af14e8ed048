"""aiohttp client connector for DockNet.

aiohttp's ``TCPConnector`` resolves names itself and opens *kernel* sockets
(aiohappyeyeballs ``start_connection``), then hands them to
``loop.create_connection(sock=...)``: a DockNetLoop never sees an address it
could route, so a DockNet peer would be dialled through the kernel. This
connector asks the loop first and, for a DockNet address or a service name
the master knows, lets ``loop.create_connection(host, port)`` open the
connection through the endpoint. Every other host takes aiohttp's own path
unchanged (DNS cache, happy eyeballs, ``local_addr``, ``socket_factory``).

Supported aiohttp: >=3.14,<3.15 (what tests/test_aiohttp.py runs). The
override is the private ``TCPConnector._create_direct_connection(req, traces,
timeout, *, client_error)``; it reuses the private ``_get_ssl_context``,
``_get_fingerprint``, ``_wrap_existing_connection``, ``_factory`` and
``_ssl_shutdown_timeout``. Re-read aiohttp's connector.py before widening the
range.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import ClientConnectorError, TCPConnector
from aiohttp.client_exceptions import ServerFingerprintMismatch

from .log import get_logger

if TYPE_CHECKING:
    from aiohttp import ClientTimeout
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.tracing import Trace

__all__ = ["DockNetConnector"]

log = get_logger("aiodocknet.aiohttp")


class DockNetConnector(TCPConnector):
    """A ``TCPConnector`` whose DockNet hosts go through the loop's endpoint.

    Use it on a DockNetLoop (``aiodocknet.run``); on any other loop it is a
    plain ``TCPConnector``. aiohttp dials a proxy through the same method, so
    a proxy on DockNet is reached through DockNet as well (not tested here).
    ``local_addr`` and ``socket_factory`` apply to kernel connections only.
    """

    async def _docknet_host(self, host: str) -> str | None:
        # The loop decides what is DockNet (subnet, registered names, whether
        # the endpoint is attached), so the connector cannot disagree with it.
        route = getattr(self._loop, "_docknet_address", None)
        if route is None:
            return None
        # TCPConnector(family=AF_INET6) asks for a name's IPv6 address.
        addr: str | None = await route(host.rstrip("."), getattr(self, "_family", 0) or 0)
        return addr

    async def _create_direct_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: ClientTimeout,
        *,
        client_error: type[Exception] = ClientConnectorError,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        host = req.url.raw_host
        addr = await self._docknet_host(host) if host else None
        if addr is None:
            return await super()._create_direct_connection(req, traces, timeout, client_error=client_error)
        assert host is not None
        port = req.port
        sslcontext = self._get_ssl_context(req)
        kwargs: dict[str, Any] = {}
        if sslcontext is not None:
            # Verify against the name in the URL, not the address it resolved
            # to (as aiohttp does; trailing dots are not in certificates).
            kwargs["ssl"] = sslcontext
            kwargs["server_hostname"] = (req.server_hostname or host).rstrip(".")
            if getattr(self, "_ssl_shutdown_timeout", None):
                kwargs["ssl_shutdown_timeout"] = self._ssl_shutdown_timeout
        # _wrap_existing_connection is aiohttp's host/port dial with its
        # sock_connect timeout and error mapping (ClientConnectorError,
        # certificate and SSL errors); the loop routes addr through DockNet.
        transp, proto = await self._wrap_existing_connection(
            self._factory, addr, port, req=req, timeout=timeout, client_error=client_error, **kwargs,
        )
        fingerprint = self._get_fingerprint(req)
        if sslcontext is not None and fingerprint is not None:
            try:
                fingerprint.check(transp)
            except ServerFingerprintMismatch:
                transp.close()
                raise
        log.debug("docknet connection", host=host, address=addr, port=port, tls=sslcontext is not None)
        return transp, proto
