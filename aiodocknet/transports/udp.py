"""Datagram transports over the slave stack (``create_datagram_endpoint``)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from ..native.stack import EV_READABLE, Event, SlaveStack

__all__ = ["DockNetDatagramTransport", "DockNetUDPSocket"]


class DockNetUDPSocket:
    family = socket.AF_INET
    type = socket.SOCK_DGRAM
    proto = socket.IPPROTO_UDP

    def __init__(self, stack: SlaveStack, conn: int, peer: tuple[str, int] | None) -> None:
        self._stack = stack
        self._conn = conn
        self._peer = peer

    def fileno(self) -> int:
        return -1

    def getsockname(self) -> tuple[str, int]:
        return self._stack.sockname(self._conn)

    def getpeername(self) -> tuple[str, int]:
        if self._peer is None:
            raise OSError(107, "Transport endpoint is not connected")
        return self._peer

    def setsockopt(self, *args: Any) -> None:
        pass

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        return bytes(buflen) if buflen else 0


class DockNetDatagramTransport(asyncio.DatagramTransport):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        stack: SlaveStack,
        conn: int,
        protocol: asyncio.DatagramProtocol,
        remote: tuple[str, int] | None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._poller = poller
        self._stack = stack
        self._conn = conn
        self._protocol = protocol
        self._remote = remote
        self._sock = DockNetUDPSocket(stack, conn, remote)
        self._closing = False
        self._lost = False
        poller.register(conn, self)
        loop.call_soon(protocol.connection_made, self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._sock.getsockname()
        if name == "peername":
            return self._remote if self._remote is not None else default
        if name == "socket":
            return self._sock
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0  # datagrams leave at once or are refused

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._remote is not None:
            if addr not in (None, self._remote):
                raise ValueError(f"Invalid address: must be None or {self._remote}")
            addr = self._remote
        if addr is None:
            raise ValueError("no address given and the transport is not connected")
        if self._closing:
            return
        try:
            self._stack.sendto(self._conn, bytes(data), (addr[0], int(addr[1])))
        except OSError as exc:
            self._protocol.error_received(exc)
        self._poller.kick()

    def _dn_event(self, ev: Event) -> None:
        if ev.kind != EV_READABLE or self._closing:
            return
        while True:
            try:
                got = self._stack.recvfrom_nowait(self._conn)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            if got is None:
                return
            data, addr = got
            if self._remote is not None and addr != self._remote:
                continue  # a connected socket only hears its peer
            self._protocol.datagram_received(data, addr)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self.close()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._poller.release(self._conn)
