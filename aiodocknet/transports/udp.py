"""Datagram transports over the slave stack (``create_datagram_endpoint``)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..native.stack import EV_READABLE, Event, SlaveStack
from .base import CLOSING, DockNetBaseTransport
from .sockets import Address, DockNetSocket, socket_address

__all__ = ["DockNetDatagramTransport"]


class DockNetDatagramTransport(DockNetBaseTransport, asyncio.DatagramTransport):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        stack: SlaveStack,
        conn: int,
        protocol: asyncio.DatagramProtocol,
        remote: Address | None,
    ) -> None:
        self._stack = stack
        self._conn = conn
        self._remote = remote
        super().__init__(loop, poller, protocol, DockNetSocket.lwip_datagram(stack, conn, remote))

    def _io_register(self) -> None:
        self._poller.register(self._conn, self)

    def _io_release(self) -> None:
        self._poller.release(self._conn)

    def get_write_buffer_size(self) -> int:
        return 0  # datagrams leave at once or are refused

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._remote is not None:
            if addr is not None and (not isinstance(addr, tuple) or addr[:2] != self._remote):
                raise ValueError(f"Invalid address: must be None or {socket_address(self._remote)}")
            addr = self._remote
        if addr is None:
            raise ValueError("no address given and the transport is not connected")
        if self._state & CLOSING:
            return
        try:
            self._stack.sendto(self._conn, bytes(data), (addr[0], int(addr[1])))
        except OSError as exc:
            self._protocol.error_received(exc)  # type: ignore[attr-defined]
        self._poller.kick()

    def _dn_event(self, ev: Event) -> None:
        if ev.kind != EV_READABLE:
            return
        while not self._state & CLOSING:
            try:
                got = self._stack.recvfrom_nowait(self._conn)
            except OSError as exc:
                self._call_protocol("error_received", exc)
                return
            if got is None:
                return
            data, addr = got
            if self._remote is not None and addr != self._remote:
                continue  # a connected socket only hears its peer
            self._call_protocol("datagram_received", data, socket_address(addr))

    def __repr__(self) -> str:
        return f"<DockNetDatagramTransport conn={self._conn} {self._state_name()}>"
