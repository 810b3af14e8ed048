"""TCP transports over the slave stack (lwIP through the master's switch).

The stream contract is ``DockNetStreamTransport``'s (base.py); this class
is the lwIP end of its ``_io_*`` hooks and the stack's events for one
connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from ..native.stack import EV_ERROR, EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE, Event, SlaveStack
from .base import DockNetStreamTransport
from .sockets import DockNetSocket

__all__ = ["DockNetTCPTransport"]


def _exc(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class DockNetTCPTransport(DockNetStreamTransport):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        stack: SlaveStack,
        conn: int,
        protocol: asyncio.BaseProtocol,
        server: Any = None,
    ) -> None:
        self._stack = stack
        self._conn = conn
        super().__init__(loop, poller, protocol, DockNetSocket.lwip_stream(stack, conn), server)

    # ---- I/O on the connection ----

    def _io_register(self) -> None:
        self._poller.register(self._conn, self)

    def _io_recv(self, size: int) -> bytes | None:
        return self._stack.recv_nowait(self._conn, size)

    def _io_recv_into(self, buf: Any) -> int | None:
        return self._stack.recv_into_nowait(self._conn, buf)

    def _io_send(self, data: Any) -> int:
        return self._stack.send_nowait(self._conn, data)

    def _io_shutdown(self) -> None:
        self._stack.shutdown(self._conn, socket.SHUT_WR)

    def _io_abort(self) -> None:
        self._stack.abort(self._conn)

    def _io_release(self) -> None:
        self._poller.release(self._conn)

    # ---- events from the stack ----

    def _dn_event(self, ev: Event) -> None:
        kind = ev.kind
        if kind == EV_READABLE or kind == EV_PEER_CLOSED:
            self._read_ready()
        elif kind == EV_WRITABLE:
            self._write_ready()
        elif kind == EV_ERROR:
            self._force_close(_exc(ev.arg))

    def __repr__(self) -> str:
        return f"<DockNetTCPTransport conn={self._conn} {self._state_name()}>"
