"""What ``get_extra_info('socket')`` returns for every DockNet transport.

There is no kernel socket behind a DockNet connection, but code inspects
or tunes the one it is given (aiohttp sets TCP_NODELAY through it). One
class serves lwIP streams and listeners, fast channels and datagrams: what
differs is where the names come from and whether an option reaches a
stack.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["Address", "DockNetSocket", "socket_address"]

# (host, port) as the slave stack and the master give names; the socket API
# hands an IPv6 one out as asyncio's (host, port, flowinfo, scope_id).
Address = tuple[str, int]
# (level, option, value) -> None: applies an option to the connection.
Tuner = Callable[[int, int, int], None]


def socket_address(addr: Address) -> tuple[Any, ...]:
    """A (host, port) name as a kernel socket of its family gives it."""
    return (addr[0], addr[1], 0, 0) if ":" in addr[0] else addr


class DockNetSocket:
    def __init__(
        self,
        kind: int,
        names: Callable[[], tuple[Address, Address | None]],
        tune: Tuner | None = None,
        options: dict[tuple[int, int], int] | None = None,
        label: str = "",
    ) -> None:
        self.type = kind
        self.proto = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
        self._names_of = names
        self._names: tuple[tuple[Any, ...], tuple[Any, ...] | None] | None = None
        self._family: int | None = None
        self._tune = tune
        self._opts: dict[tuple[int, int], int] = dict(options or {})
        self._label = label

    # ---- the kinds of connection ----

    @classmethod
    def lwip_stream(cls, stack: Any, conn: int, listening: bool = False) -> DockNetSocket:
        """A TCP connection (or listener) of the slave stack: options that
        lwIP has reach it."""

        def names() -> tuple[Address, Address | None]:
            return stack.sockname(conn), None if listening else stack.peername(conn)

        def tune(level: int, option: int, value: int) -> None:
            if (level, option) == (socket.IPPROTO_TCP, socket.TCP_NODELAY):
                stack.set_nodelay(conn, bool(value))
            elif (level, option) == (socket.SOL_SOCKET, socket.SO_KEEPALIVE):
                stack.set_keepalive(conn, bool(value))
            elif (level, option) == (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE):
                stack.set_keepalive_times(conn, idle=value)
            elif (level, option) == (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL):
                stack.set_keepalive_times(conn, interval=value)
            elif (level, option) == (socket.IPPROTO_TCP, socket.TCP_KEEPCNT):
                stack.set_keepalive_times(conn, count=value)

        opts = {
            (socket.IPPROTO_TCP, socket.TCP_NODELAY): 1,
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE): 0,
            (socket.SOL_SOCKET, socket.SO_REUSEADDR): 1 if listening else 0,
        }
        return cls(socket.SOCK_STREAM, names, None if listening else tune, opts, f"conn={conn}")

    @classmethod
    def channel(cls, sockname: Address, peername: Address) -> DockNetSocket:
        """A fast channel: names fixed by the master, nothing to tune
        (there is no Nagle on a ring)."""
        return cls(socket.SOCK_STREAM, lambda: (sockname, peername),
                   options={(socket.IPPROTO_TCP, socket.TCP_NODELAY): 1}, label="fast channel")

    @classmethod
    def lwip_datagram(cls, stack: Any, conn: int, peer: Address | None) -> DockNetSocket:
        return cls(socket.SOCK_DGRAM, lambda: (stack.sockname(conn), peer), label=f"conn={conn}")

    # ---- the socket API ----

    def _cached_names(self) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
        if self._names is None:
            local, peer = self._names_of()
            self._names = socket_address(local), None if peer is None else socket_address(peer)
        return self._names

    @property
    def family(self) -> int:
        """AF_INET6 for a connection of the endpoint's IPv6 address, as the
        kernel's socket would say; asked of the names once."""
        if self._family is None:
            try:
                local = self._cached_names()[0]
            except OSError:
                return socket.AF_INET  # closed before anyone asked: no names left to tell
            self._family = socket.AF_INET6 if len(local) == 4 else socket.AF_INET
        return self._family

    def fileno(self) -> int:
        return -1

    def getsockname(self) -> tuple[Any, ...]:
        return self._cached_names()[0]

    def getpeername(self) -> tuple[Any, ...]:
        peer = self._cached_names()[1]
        if peer is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return peer

    def setsockopt(self, level: int, option: int, value: int | bytes, *args: Any) -> None:
        if isinstance(value, bytes):
            value = int.from_bytes(value[:4].ljust(4, b"\0"), "little")
        value = int(value)
        if self._tune is not None:
            self._tune(level, option, value)
        self._opts[(level, option)] = value

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> int | bytes:
        value = self._opts.get((level, option), 0)
        if buflen:
            return value.to_bytes(4, "little")[:buflen].ljust(buflen, b"\0")
        return value

    def setblocking(self, flag: bool) -> None:
        pass

    def gettimeout(self) -> float:
        return 0.0

    def __repr__(self) -> str:
        return f"<DockNetSocket {self._label}>"
