"""TCP-like transports over fast channels (shared-memory rings).

A connection whose two ends are endpoints of one master is carried by a
fast channel when both loops agree (the master brokers it); the protocol
sees the same transport contract as over lwIP: names, half-close, reset,
flow control. Only the bytes' path differs.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from .fastchan import READABLE, WRITABLE, FastChannel
from .tcp import DockNetTCPTransport

__all__ = ["FastChannelTransport", "FastChannelSocket"]


class FastChannelSocket:
    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, sockname: tuple[str, int], peername: tuple[str, int]) -> None:
        self._names = (sockname, peername)
        self._opts: dict[tuple[int, int], int] = {(socket.IPPROTO_TCP, socket.TCP_NODELAY): 1}

    def fileno(self) -> int:
        return -1

    def getsockname(self) -> tuple[str, int]:
        return self._names[0]

    def getpeername(self) -> tuple[str, int]:
        return self._names[1]

    def setsockopt(self, level: int, option: int, value: Any, *args: Any) -> None:
        self._opts[(level, option)] = int(value) if not isinstance(value, bytes) else int.from_bytes(value[:4], "little")

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        value = self._opts.get((level, option), 0)
        return value.to_bytes(4, "little")[:buflen].ljust(buflen, b"\0") if buflen else value

    def setblocking(self, flag: bool) -> None:
        pass


class FastChannelTransport(DockNetTCPTransport):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        fc: FastChannel,
        sockname: tuple[str, int],
        peername: tuple[str, int],
        protocol: asyncio.BaseProtocol,
        server: Any = None,
    ) -> None:
        self._fc = fc
        self._fc_names = (sockname, peername)
        super().__init__(loop, poller, None, -1, protocol, server)  # type: ignore[arg-type]

    @property
    def peer_address(self) -> str:
        return self._fc_names[1][0]

    def _make_socket(self) -> Any:
        return FastChannelSocket(*self._fc_names)

    def _io_register(self) -> None:
        self._poller.add_channel(self)

    def _io_recv(self, size: int) -> bytes | None:
        return self._fc.read(size)

    def _io_recv_into(self, buf: Any) -> int | None:
        data = self._fc.read(len(buf))
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def _io_send(self, data: Any) -> int:
        return self._fc.write(data)

    def _io_shutdown(self) -> None:
        self._fc.shutdown()

    def _io_abort(self) -> None:
        self._fc.reset()

    def _io_release(self) -> None:
        # Closing is a FIN, as on TCP: what we wrote is still read, then
        # the peer sees end of stream. (After abort() the reset stands.)
        try:
            self._fc.shutdown()
        except OSError:
            pass
        self._poller.remove_channel(self)
        self._fc.close()

    def _fc_poll(self) -> bool:
        """Called by the poller each pass; True if anything was ready."""
        bits = self._fc.ready()
        if bits & READABLE:
            self._read_ready()
        if bits & WRITABLE:
            self._write_ready()
        return bits != 0

    def _peer_gone(self) -> None:
        self._force_close(ConnectionResetError(errno.ECONNRESET, "the peer's process is gone"))

    def __repr__(self) -> str:
        return f"<FastChannelTransport {self._fc_names[0]} -> {self._fc_names[1]}>"
