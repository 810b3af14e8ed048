"""TCP transports over the slave stack, with the whole asyncio contract.

``DockNetTCPTransport`` behaves as asyncio's selector transport does:
callback order (``connection_made``, ``data_received``/``buffer_updated``,
``eof_received``, ``connection_lost``), flow control both ways (the protocol's
``pause_writing``/``resume_writing`` around the write buffer's limits, and
``pause_reading`` leaving data in lwIP so the peer's window closes),
half-close, abort, and errors as the kernel path raises them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any

from ..native.stack import ERROR, PEER_CLOSED, READ_MAX, READABLE, WRITABLE, Event, SlaveStack

__all__ = ["DockNetSocket", "DockNetTCPTransport"]

DEFAULT_HIGH = 64 * 1024


def _exc(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class DockNetSocket:
    """What ``get_extra_info('socket')`` returns: enough of a socket for
    code that inspects or tunes it (aiohttp sets TCP_NODELAY through it)."""

    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, stack: SlaveStack, conn: int, listening: bool = False) -> None:
        self._stack = stack
        self._conn = conn
        self._listening = listening
        self._opts: dict[tuple[int, int], int] = {
            (socket.IPPROTO_TCP, socket.TCP_NODELAY): 1,
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE): 0,
            (socket.SOL_SOCKET, socket.SO_REUSEADDR): 1 if listening else 0,
        }
        self._names: tuple[tuple[str, int], tuple[str, int] | None] | None = None

    def _cache_names(self) -> None:
        if self._names is None:
            local = self._stack.sockname(self._conn)
            peer = None if self._listening else self._stack.peername(self._conn)
            self._names = (local, peer)

    def fileno(self) -> int:
        return -1

    def getsockname(self) -> tuple[str, int]:
        self._cache_names()
        assert self._names is not None
        return self._names[0]

    def getpeername(self) -> tuple[str, int]:
        self._cache_names()
        assert self._names is not None
        if self._names[1] is None:
            raise OSError(errno.ENOTCONN, "listening socket has no peer")
        return self._names[1]

    def setsockopt(self, level: int, option: int, value: int | bytes, *args: Any) -> None:
        if isinstance(value, bytes):
            value = int.from_bytes(value[:4].ljust(4, b"\0"), "little")
        if not self._listening:
            if (level, option) == (socket.IPPROTO_TCP, socket.TCP_NODELAY):
                self._stack.set_nodelay(self._conn, bool(value))
            elif (level, option) == (socket.SOL_SOCKET, socket.SO_KEEPALIVE):
                self._stack.set_keepalive(self._conn, bool(value))
            elif (level, option) == (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE):
                self._stack.set_keepalive_times(self._conn, idle=int(value))
            elif (level, option) == (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL):
                self._stack.set_keepalive_times(self._conn, interval=int(value))
            elif (level, option) == (socket.IPPROTO_TCP, socket.TCP_KEEPCNT):
                self._stack.set_keepalive_times(self._conn, count=int(value))
        self._opts[(level, option)] = int(value)

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
        return f"<DockNetSocket conn={self._conn}>"


class DockNetTCPTransport(asyncio.Transport):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        stack: SlaveStack,
        conn: int,
        protocol: asyncio.BaseProtocol,
        server: Any = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._poller = poller
        self._stack = stack
        self._conn = conn
        self._server = server
        self._sock = self._make_socket()
        self._buffer = bytearray()
        self._closing = False
        self._conn_lost = 0
        self._lost_called = False
        self._eof = False  # write_eof() called
        self._peer_eof = False
        self._reading = True
        self._read_pending = False
        self._started = False  # connection_made has run
        self._protocol_paused = False
        self._high = DEFAULT_HIGH
        self._low = DEFAULT_HIGH // 4
        self._buffered = False
        self.set_protocol(protocol)
        self._io_register()
        if server is not None:
            server._attach(self)
        loop.call_soon(self._start)

    def _start(self) -> None:
        if self._lost_called:
            return
        self._started = True
        self._protocol.connection_made(self)
        self._state_changed()
        # Data may have arrived before connection_made ran.
        self._read_ready()

    # ---- I/O on the connection: lwIP here, a fast channel in the subclass ----

    def _make_socket(self) -> Any:
        return DockNetSocket(self._stack, self._conn)

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

    def _state_changed(self) -> None:
        """Whether it reads, writes or is closing changed (a hook for a
        transport with a native half to follow)."""

    # ---- asyncio.BaseTransport ----

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        try:
            if name == "peername":
                return self._sock.getpeername()
            if name == "sockname":
                return self._sock.getsockname()
        except OSError:
            return default
        if name == "socket":
            return self._sock
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)
        self._state_changed()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._reading = False
        self._conn_lost += 1
        self._state_changed()
        if not self._buffer:
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None, reset=True)

    def __del__(self, _warn: Any = None) -> None:
        if not self._lost_called and not self._closing and self._loop is not None:
            import warnings

            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    # ---- reading ----

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False
        self._state_changed()

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        self._state_changed()
        if self._read_pending:
            self._loop.call_soon(self._read_ready)

    def _read_ready(self) -> None:
        if self._lost_called or self._peer_eof or not self._started:
            return  # (_start reads what came before connection_made)
        if not self._reading or self._closing:
            self._read_pending = True
            return
        self._read_pending = False
        proto = self._protocol
        try:
            while self._reading and not self._closing:
                if self._buffered:
                    buf = proto.get_buffer(-1)  # type: ignore[attr-defined]
                    if not len(buf):
                        raise RuntimeError("get_buffer() returned an empty buffer")
                    n = self._io_recv_into(buf)
                    if n is None:
                        return
                    if n:
                        proto.buffer_updated(n)  # type: ignore[attr-defined]
                        continue
                else:
                    data = self._io_recv(READ_MAX)
                    if data is None:
                        return
                    if data:
                        proto.data_received(data)  # type: ignore[attr-defined]
                        continue
                self._on_eof()
                return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._read_failed(exc)
        else:
            if not self._reading:
                self._read_pending = True

    def _read_failed(self, exc: BaseException) -> None:
        """Reading raised: the connection's error ends it; the protocol's
        is reported to the loop too."""
        if isinstance(exc, OSError):
            self._force_close(exc)
        else:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _on_eof(self) -> None:
        self._peer_eof = True
        self._state_changed()
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # ---- writing ----

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= 5:
                asyncio.log.logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                n = self._io_send(data)
            except OSError as exc:
                self._force_close(exc)
                return
            self._poller.kick()
            if n == len(data):
                return
            data = memoryview(data)[n:]
        self._buffer += data
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        self._state_changed()
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._io_shutdown()
        except OSError as exc:
            self._force_close(exc)
        self._poller.kick()

    def _write_ready(self) -> None:
        if not self._buffer or self._lost_called:
            return
        try:
            n = self._io_send(self._buffer)
        except OSError as exc:
            self._force_close(exc)
            return
        if not n:
            return
        del self._buffer[:n]
        self._poller.kick()
        self._maybe_resume_protocol()
        if not self._buffer:
            if self._closing:
                self._call_connection_lost(None)
            elif self._eof:
                self._shutdown_write()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._protocol_paused or len(self._buffer) <= self._high:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": "protocol.pause_writing() failed", "exception": exc,
                 "transport": self, "protocol": self._protocol}
            )

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._loop.call_exception_handler(
                    {"message": "protocol.resume_writing() failed", "exception": exc,
                     "transport": self, "protocol": self._protocol}
                )

    # ---- events from the stack ----

    def _dn_event(self, ev: Event) -> None:
        kind = ev.kind
        if kind == READABLE or kind == PEER_CLOSED:
            self._read_ready()
        elif kind == WRITABLE:
            self._write_ready()
        elif kind == ERROR:
            self._force_close(_exc(ev.arg))

    # ---- closing ----

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler(
                {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
            )
        self._force_close(exc, reset=True)

    def _force_close(self, exc: BaseException | None, reset: bool = False) -> None:
        if self._lost_called:
            return
        if reset:
            try:
                self._io_abort()
            except OSError:
                pass
            self._poller.kick()
        self._buffer.clear()
        if not self._closing:
            self._closing = True
        self._reading = False
        self._conn_lost += 1
        self._state_changed()
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost_called:
            return
        self._lost_called = True
        self._state_changed()
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._io_release()
            if self._server is not None:
                self._server._detach(self)
                self._server = None

    def __repr__(self) -> str:
        state = "closed" if self._lost_called else "closing" if self._closing else "open"
        return f"<DockNetTCPTransport conn={self._conn} {state}>"
