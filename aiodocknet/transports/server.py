"""``asyncio.Server`` for DockNet listeners (and the kernel ones a wildcard
bind adds)."""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
from collections.abc import Callable
from typing import Any

from ..native.stack import EV_ACCEPTED, Event
from .tcp import DockNetSocket, DockNetTCPTransport

__all__ = ["DockNetServer"]


class DockNetServer(asyncio.AbstractServer):
    def __init__(
        self,
        loop: Any,
        endpoint: Any,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        backlog: int,
        ssl: ssl_mod.SSLContext | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None,
        kernel: asyncio.AbstractServer | None,
    ) -> None:
        self._loop = loop
        self._endpoint = endpoint
        self._factory = protocol_factory
        self._host = host
        self._port = port
        self._backlog = backlog
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._kernel = kernel
        self._listener: int | None = None
        self._listen_sock: DockNetSocket | None = None
        self._serving = False
        self._closed = False
        self._transports: set[DockNetTCPTransport] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None

    # ---- listening ----

    def _listen(self) -> None:
        stack = self._endpoint.stack
        self._listener = stack.listen(self._port, None if self._host in ("", "0.0.0.0") else self._host,
                                      self._backlog)
        self._listen_sock = DockNetSocket(stack, self._listener, listening=True)
        if self._port == 0:
            self._port = stack.sockname(self._listener)[1]
        self._loop._dn_poller.register(self._listener, self)
        self._loop._dn_servers[self._port] = self
        self._loop._dn_listen(self._port, True)

    def _dn_event(self, ev: Event) -> None:
        if ev.kind != EV_ACCEPTED:
            return
        stack = self._endpoint.stack
        if not self._serving:
            stack.abort(ev.conn)
            stack.close_conn(ev.conn)
            return
        try:
            protocol = self._factory()
            if self._ssl is not None:
                waiter = self._loop.create_future()
                app = protocol
                protocol = asyncio.sslproto.SSLProtocol(
                    self._loop, app, self._ssl, waiter, server_side=True,
                    ssl_handshake_timeout=self._ssl_handshake_timeout,
                    ssl_shutdown_timeout=self._ssl_shutdown_timeout,
                )
            DockNetTCPTransport(self._loop, self._loop._dn_poller, stack, ev.conn, protocol, server=self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({"message": "Error in protocol_factory", "exception": exc})
            stack.abort(ev.conn)
            stack.close_conn(ev.conn)

    def _accept_channel(self, fc: Any, local: tuple[str, int], peer: tuple[str, int], channel_id: int) -> None:
        """A connection to us that the master carried over a fast channel."""
        from .fastchannel import FastChannelTransport

        protocol = self._factory()
        if self._ssl is not None:
            waiter = self._loop.create_future()
            protocol = asyncio.sslproto.SSLProtocol(
                self._loop, protocol, self._ssl, waiter, server_side=True,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
                ssl_shutdown_timeout=self._ssl_shutdown_timeout,
            )
        FastChannelTransport(self._loop, self._loop._dn_poller, fc, local, peer, protocol, server=self,
                             channel_id=channel_id)

    def _attach(self, transport: DockNetTCPTransport) -> None:
        self._transports.add(transport)

    def _detach(self, transport: DockNetTCPTransport) -> None:
        self._transports.discard(transport)
        if self._closed and not self._transports:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    # ---- asyncio.AbstractServer ----

    @property
    def sockets(self) -> tuple[Any, ...]:
        socks: list[Any] = []
        if self._listen_sock is not None:
            socks.append(self._listen_sock)
        if self._kernel is not None:
            socks.extend(self._kernel.sockets)  # type: ignore[attr-defined]
        return tuple(socks)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop  # type: ignore[no-any-return]

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        if self._serving:
            return
        self._serving = True
        if self._listener is None:
            self._listen()
        if self._kernel is not None:
            await self._kernel.start_serving()

    async def serve_forever(self) -> None:
        if self._serving_forever is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._closed:
            raise RuntimeError(f"server {self!r} is closed")
        await self.start_serving()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._serving = False
        if self._listener is not None:
            self._loop._dn_poller.release(self._listener)
            self._listener = None
            if self._loop._dn_servers.get(self._port) is self:
                del self._loop._dn_servers[self._port]
                self._loop._dn_listen(self._port, False)
        if self._kernel is not None:
            self._kernel.close()
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()
        if not self._transports:
            self._wakeup()

    def close_clients(self) -> None:
        for t in list(self._transports):
            t.close()
        if self._kernel is not None and hasattr(self._kernel, "close_clients"):
            self._kernel.close_clients()

    def abort_clients(self) -> None:
        for t in list(self._transports):
            t.abort()
        if self._kernel is not None and hasattr(self._kernel, "abort_clients"):
            self._kernel.abort_clients()

    async def wait_closed(self) -> None:
        """Until close() and every connection of this server has ended."""
        if self._kernel is not None and self._closed:
            await self._kernel.wait_closed()
        if self._closed and not self._transports:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def __aenter__(self) -> DockNetServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        return f"<DockNetServer {self._endpoint.address}:{self._port} serving={self._serving}>"
