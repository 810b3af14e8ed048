"""``asyncio.Server`` for DockNet listeners (and the kernel ones a wildcard
bind adds)."""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
from collections.abc import Callable
from typing import Any

from ..log import get_logger
from ..native.stack import EV_ACCEPTED, Event
from .base import DockNetStreamTransport
from .sockets import DockNetSocket
from .tcp import DockNetTCPTransport
from .tls import tls_protocol

__all__ = ["DockNetServer", "wildcard_hosts"]

log = get_logger("aiodocknet.server")


def wildcard_hosts(endpoint: Any, hosts: list[Any]) -> list[str | None]:
    """Where a wildcard server listens on the slave stack: IPv4's wildcard
    (None) and, where the endpoint has IPv6, IPv6's. "::" listens on DockNet
    IPv4 too, as it did before DockNet had IPv6 (the kernel's listener for
    it is IPv6 only, as asyncio makes it); "0.0.0.0" only on IPv4."""
    listen: list[str | None] = [None]
    if endpoint.address6 is not None and any(h in (None, "", "::") for h in hosts):
        listen.append("::")
    return listen


class DockNetServer(asyncio.AbstractServer):
    def __init__(
        self,
        loop: Any,
        endpoint: Any,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        hosts: list[str] | None,
        port: int,
        backlog: int,
        ssl: ssl_mod.SSLContext | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None,
        kernel: asyncio.AbstractServer | None,
        wildcard: list[Any] | None = None,
    ) -> None:
        self._loop = loop
        self._endpoint = endpoint
        self._factory = protocol_factory
        # Where to listen on the slave stack: DockNet addresses, or (hosts
        # None) the wildcards of the hosts asked for: None is IPv4's, "::"
        # IPv6's (lwIP lets one port have a listener of each family).
        self._wildcard = None if hosts else list(wildcard or [None])
        self._hosts: list[str | None] = list(hosts) if hosts else wildcard_hosts(endpoint, self._wildcard)
        self._port = port
        self._backlog = backlog
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._kernel = kernel
        self._listeners: list[int] = []
        self._listen_socks: list[DockNetSocket] = []
        self._serving = False
        self._closed = False
        self._transports: set[DockNetStreamTransport] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._serving_forever: asyncio.Future[None] | None = None

    # ---- listening ----

    def _listen(self) -> None:
        stack = self._endpoint.stack
        try:
            for host in self._hosts:
                listener = stack.listen(self._port, host, self._backlog)
                self._listeners.append(listener)
                self._listen_socks.append(DockNetSocket.lwip_stream(stack, listener, listening=True))
                self._loop._dn_poller.register(listener, self)
                if self._port == 0:  # the other family's listener takes the same one
                    self._port = stack.sockname(listener)[1]
        except BaseException:
            self._unlisten()
            raise
        self._loop._dn_servers[self._port] = self
        self._loop._dn_listen(self._port, True)

    def _relinked(self) -> None:
        """The endpoint moved to a master that came back: a wildcard server
        listens on IPv6 too if the endpoint has it now (it keeps a listener
        of a family the endpoint lost: the stack refuses nothing to it)."""
        if self._wildcard is None or not self._listeners:
            return
        stack = self._endpoint.stack
        for host in wildcard_hosts(self._endpoint, self._wildcard):
            if host in self._hosts:
                continue
            try:
                listener = stack.listen(self._port, host, self._backlog)
            except OSError as exc:
                log.warning("server not listening on the endpoint's new family", port=self._port, host=host,
                            error=str(exc))
                continue
            self._hosts.append(host)
            self._listeners.append(listener)
            self._listen_socks.append(DockNetSocket.lwip_stream(stack, listener, listening=True))
            self._loop._dn_poller.register(listener, self)

    def _unlisten(self) -> None:
        for listener in self._listeners:
            self._loop._dn_poller.release(listener)
        self._listeners.clear()
        self._listen_socks.clear()

    def _new_protocol(self) -> asyncio.BaseProtocol:
        """The protocol for a new connection: the application's, behind
        TLS when the server has a context."""
        protocol = self._factory()
        if self._ssl is not None:
            protocol, _ = tls_protocol(self._loop, protocol, self._ssl, server_side=True,
                                       handshake_timeout=self._ssl_handshake_timeout,
                                       shutdown_timeout=self._ssl_shutdown_timeout)
        return protocol

    def _accept_failed(self, exc: BaseException) -> None:
        self._loop.call_exception_handler({"message": "Error on transport creation for incoming connection",
                                           "exception": exc, "server": self})

    def _dn_event(self, ev: Event) -> None:
        if ev.kind != EV_ACCEPTED:
            return
        stack = self._endpoint.stack
        if not self._serving:
            stack.abort(ev.conn)
            stack.close_conn(ev.conn)
            return
        try:
            DockNetTCPTransport(self._loop, self._loop._dn_poller, stack, ev.conn, self._new_protocol(), server=self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._accept_failed(exc)
            stack.abort(ev.conn)
            stack.close_conn(ev.conn)

    def _accept_channel(self, fc: Any, local: tuple[str, int], peer: tuple[str, int], channel_id: int) -> None:
        """A connection to us that the master carried over a fast channel.
        If the application's factory fails, the connector sees a reset (as
        for a connection through the switch) and the master gets the
        channel back."""
        from .fastchannel import FastChannelTransport

        try:
            protocol = self._new_protocol()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # (Before the transport exists: nothing polls the channel yet.)
            self._accept_failed(exc)
            fc.reset()
            fc.close()
            self._loop._dn_fc_closed(channel_id)
            return
        FastChannelTransport(self._loop, self._loop._dn_poller, fc, local, peer, protocol, server=self,
                             channel_id=channel_id)

    def _attach(self, transport: DockNetStreamTransport) -> None:
        self._transports.add(transport)

    def _detach(self, transport: DockNetStreamTransport) -> None:
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
        socks: list[Any] = list(self._listen_socks)
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
        if not self._listeners:
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
        if self._listeners:
            self._unlisten()
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
