"""TCP transports over the slave stack (lwIP through the master's switch).

The stream contract is ``DockNetStreamTransport``'s (base.py); this class
is the lwIP end of its ``_io_*`` hooks and the stack's events for one
connection. Each message takes the native path (``NativeStreamTransport``:
the poller's ``StackCore.pump`` reads lwIP's bytes straight into
``data_received``, and a write that fits goes straight into lwIP) while
nothing unusual is going on; every other event comes to ``_dn_event``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from ..native.stack import EV_ERROR, EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE, Event, SlaveStack
from ..native._fcpath import TransportCore
from .base import CLOSING, READ_PAUSED, NativeStreamTransport
from .sockets import DockNetSocket

__all__ = ["DockNetTCPTransport"]


def _exc(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class DockNetTCPTransport(NativeStreamTransport):
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
        self._core = TransportCore(stack.core, self, poller.state, conn)
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
        self._core.detach()

    def resume_reading(self) -> None:
        # The native path may have stopped reading when the protocol paused
        # inside data_received, with bytes left in lwIP that no new event
        # will announce (the stack's readable events come when bytes
        # arrive): look once resumed.
        st = self._state
        super().resume_reading()
        if st & READ_PAUSED and not st & CLOSING and not self._read_pending:
            self._loop.call_soon(self._read_ready)

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
