"""The transport base: one explicit state and one fatal-error path.

``DockNetBaseTransport`` is what every DockNet transport shares (as
uvloop's ``UVBaseTransport``): the protocol, ``connection_made`` and
``connection_lost`` in asyncio's order, close and abort, and the one way a
failure ends a transport: ``_fatal_error`` reports anything but the
connection's own ``OSError`` to the loop's exception handler, then
``_force_close`` ends this transport and nothing else.

``DockNetStreamTransport`` adds the stream contract (reading with pause and
resume, ``BufferedProtocol``, writing with flow control, half-close) over
``_io_*`` hooks that a subclass fills in: lwIP (``tcp.py``) or a fast
channel (``fastchannel.py``). ``NativeStreamTransport`` is what both are:
a stream whose common messages go through a native ``TransportCore``.

The state is a set of ``TransportState`` bits in ``_state``. A native
transport keeps it in its core, where the C fast path reads it on
every message: there is one state, not a Python one and a copy.
"""

from __future__ import annotations

import asyncio
import enum
import warnings
from typing import Any

from ..native import _fcpath
from ..native.stack import READ_MAX
from .sockets import DockNetSocket
from .tls import is_buffered_protocol

__all__ = ["DockNetBaseTransport", "DockNetStreamTransport", "NativeStreamTransport", "TransportState"]

DEFAULT_HIGH = 64 * 1024


class TransportState(enum.IntFlag):
    """The bits of a transport's state; their values are the C fast
    path's (``DN_TS_*`` in ``native/fastchan/dn_fcpath.c``)."""

    STARTED = _fcpath.TS_STARTED  # connection_made has run
    READ_PAUSED = _fcpath.TS_READ_PAUSED  # pause_reading()
    READ_HELD = _fcpath.TS_READ_HELD  # an ingress limit holds reads until its timer
    PEER_EOF = _fcpath.TS_PEER_EOF  # end of stream came in
    WRITE_EOF = _fcpath.TS_WRITE_EOF  # write_eof() was called
    CLOSING = _fcpath.TS_CLOSING  # close(), abort() or a fatal error
    CLOSED = _fcpath.TS_CLOSED  # connection_lost() has been called
    BUFFERED = _fcpath.TS_BUFFERED  # the protocol is a BufferedProtocol
    INGRESS_LIMIT = _fcpath.TS_INGRESS_LIMIT  # every read is counted against a limit
    EGRESS_LIMIT = _fcpath.TS_EGRESS_LIMIT  # every write is counted against a limit


# Plain ints for the paths that test bits per message (an IntFlag's
# operators are Python calls).
STARTED = int(TransportState.STARTED)
READ_PAUSED = int(TransportState.READ_PAUSED)
READ_HELD = int(TransportState.READ_HELD)
PEER_EOF = int(TransportState.PEER_EOF)
WRITE_EOF = int(TransportState.WRITE_EOF)
CLOSING = int(TransportState.CLOSING)
CLOSED = int(TransportState.CLOSED)
BUFFERED = int(TransportState.BUFFERED)
INGRESS_LIMIT = int(TransportState.INGRESS_LIMIT)
EGRESS_LIMIT = int(TransportState.EGRESS_LIMIT)
NOT_READING = READ_PAUSED | CLOSING
# Of these, STARTED alone: the transport may read (READ_GATE: it will,
# once it is no longer paused or closing).
READ_GATE = STARTED | CLOSED | PEER_EOF
READ_ENTRY = READ_GATE | NOT_READING
PLAIN_READ_BLOCKERS = NOT_READING | BUFFERED


class DockNetBaseTransport(asyncio.BaseTransport):
    """What all DockNet transports share (see the module's docstring)."""

    _state: int

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        protocol: asyncio.BaseProtocol,
        sock: DockNetSocket,
        server: Any = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._poller = poller
        self._sock = sock
        self._server = server
        self._state = 0
        self._conn_lost = 0
        self.set_protocol(protocol)
        self._io_register()
        if server is not None:
            server._attach(self)
        loop.call_soon(self._call_connection_made)

    # ---- hooks for the kind of connection ----

    def _io_register(self) -> None:
        """Start receiving events for the connection."""

    def _io_abort(self) -> None:
        """Reset the connection (abort, a fatal error)."""

    def _io_release(self) -> None:
        """The protocol has been told: let the connection go."""

    def _protocol_changed(self) -> None:
        """set_protocol() ran (a native half may keep a method of it)."""

    def _connection_started(self) -> None:
        """connection_made() has run."""

    def _drop_writes(self) -> None:
        """The transport is forced closed: what waits to be sent goes."""

    def _get_write_buffer_size(self) -> int:
        return 0

    # ---- asyncio.BaseTransport ----

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        try:
            if name == "peername":
                return self._sock.getpeername()
            if name == "sockname":
                return self._sock.getsockname()
        except OSError:
            return default
        return default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        if is_buffered_protocol(protocol):  # uvloop's TLS protocol too
            self._state |= BUFFERED
        else:
            self._state &= ~BUFFERED
        self._protocol_changed()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return bool(self._state & CLOSING)

    def close(self) -> None:
        if self._state & CLOSING:
            return
        self._state |= CLOSING
        self._conn_lost += 1
        if not self._get_write_buffer_size():
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None, reset=True)

    def _call_protocol(self, method: str, *args: Any) -> None:
        """A protocol callback whose failure is reported, as asyncio's
        transports report it, and costs the transport nothing (flow
        control, a datagram: the next one is served)."""
        try:
            getattr(self._protocol, method)(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {"message": f"protocol.{method}() failed", "exception": exc,
                 "transport": self, "protocol": self._protocol}
            )

    # warnings.warn bound now, as asyncio's transports do: at interpreter
    # shutdown an import in here fails.
    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not self._state & (CLOSING | CLOSED) and self._loop is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    # ---- the protocol's first and last callbacks ----

    def _call_connection_made(self) -> None:
        if self._state & CLOSED:
            return
        self._state |= STARTED
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # As asyncio and uvloop: reported, and the transport stays as
            # it is (the protocol may well close it from its handler).
            self._loop.call_exception_handler(
                {"message": "protocol.connection_made() failed", "exception": exc,
                 "transport": self, "protocol": self._protocol}
            )
        if not self._state & CLOSED:
            self._connection_started()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._state & CLOSED:
            return
        self._state |= CLOSED
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._io_release()
            if self._server is not None:
                self._server._detach(self)
                self._server = None

    # ---- failure: the one path ----

    def _fatal_error(self, exc: BaseException, message: str = "Fatal error on DockNet transport") -> None:
        """exc ends this transport. The connection's own errors (OSError)
        are the protocol's news (connection_lost gets them); anything else
        is a bug somewhere and goes to the loop's exception handler too,
        and the connection is reset: the peer must not wait for the rest
        of a conversation that will not come."""
        if isinstance(exc, OSError):
            self._force_close(exc)
            return
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )
        self._force_close(exc, reset=True)

    def _force_close(self, exc: BaseException | None, reset: bool = False) -> None:
        if self._state & CLOSED:
            return
        if reset:
            try:
                self._io_abort()
            except OSError:
                pass
            self._poller.kick()
        self._drop_writes()
        self._state |= CLOSING
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _state_name(self) -> str:
        st = self._state
        return "closed" if st & CLOSED else "closing" if st & CLOSING else "open"


class DockNetStreamTransport(DockNetBaseTransport, asyncio.Transport):
    """A byte stream with the whole asyncio contract, as asyncio's selector
    transport: callback order (``connection_made``,
    ``data_received``/``buffer_updated``, ``eof_received``,
    ``connection_lost``), flow control both ways (``pause_writing`` /
    ``resume_writing`` around the write buffer's limits, ``pause_reading``
    leaving data where it is so the peer's window closes), half-close,
    abort, and errors as the kernel path raises them."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        protocol: asyncio.BaseProtocol,
        sock: DockNetSocket,
        server: Any = None,
    ) -> None:
        self._buffer = bytearray()
        self._read_pending = False
        self._protocol_paused = False
        self._high = DEFAULT_HIGH
        self._low = DEFAULT_HIGH // 4
        super().__init__(loop, poller, protocol, sock, server)

    # ---- I/O on the connection ----

    def _io_recv(self, size: int) -> bytes | None:
        """Up to size bytes, b"" at end of stream, None when none wait."""
        raise NotImplementedError

    def _io_recv_into(self, buf: Any) -> int | None:
        raise NotImplementedError

    def _io_send(self, data: Any) -> int:
        """Bytes taken (0 when there is no room now)."""
        raise NotImplementedError

    def _io_shutdown(self) -> None:
        raise NotImplementedError

    def _connection_started(self) -> None:
        # Data may have arrived before connection_made ran.
        self._read_ready()

    def _drop_writes(self) -> None:
        self._buffer.clear()

    def _get_write_buffer_size(self) -> int:
        return len(self._buffer)

    # ---- reading ----

    def is_reading(self) -> bool:
        return not self._state & NOT_READING

    def pause_reading(self) -> None:
        self._state |= READ_PAUSED

    def resume_reading(self) -> None:
        st = self._state
        if st & CLOSING or not st & READ_PAUSED:
            return
        self._state = st & ~READ_PAUSED
        if self._read_pending:
            self._loop.call_soon(self._read_ready)

    def _read_ready(self) -> None:
        # Per message: one bit test to enter, one per callback (each test
        # costs a Python operation; the common case is a plain protocol
        # that is reading).
        st = self._state
        if st & READ_ENTRY != STARTED:
            if st & READ_GATE == STARTED:
                self._read_pending = True  # paused or closing: later
            return  # not started (connection_made reads what came before it), or done
        self._read_pending = False
        proto = self._protocol
        try:
            # The state is read again after each callback: the protocol
            # may pause, close or replace itself from inside it.
            while True:
                if not st & PLAIN_READ_BLOCKERS:
                    data = self._io_recv(READ_MAX)
                    if data is None:
                        return
                    if data:
                        proto.data_received(data)  # type: ignore[attr-defined]
                        st = self._state
                        continue
                elif st & NOT_READING:
                    if st & READ_PAUSED:
                        self._read_pending = True
                    return
                else:
                    # A size, not -1: uvloop's TLS protocol takes a size_t.
                    buf = proto.get_buffer(READ_MAX)  # type: ignore[attr-defined]
                    if not len(buf):
                        raise RuntimeError("get_buffer() returned an empty buffer")
                    n = self._io_recv_into(buf)
                    if n is None:
                        return
                    if n:
                        proto.buffer_updated(n)  # type: ignore[attr-defined]
                        st = self._state
                        continue
                self._on_eof()
                return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _on_eof(self) -> None:
        self._state |= PEER_EOF
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
        if self._state & WRITE_EOF:
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
                self._fatal_error(exc)
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
        if self._state & (CLOSING | WRITE_EOF):
            return
        self._state |= WRITE_EOF
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._io_shutdown()
        except OSError as exc:
            self._fatal_error(exc)
        self._poller.kick()

    def _write_ready(self) -> None:
        if not self._buffer or self._state & CLOSED:
            return
        try:
            n = self._io_send(self._buffer)
        except OSError as exc:
            self._fatal_error(exc)
            return
        if not n:
            return
        del self._buffer[:n]
        self._poller.kick()
        self._maybe_resume_protocol()
        if not self._buffer:
            if self._state & CLOSING:
                self._call_connection_lost(None)
            elif self._state & WRITE_EOF:
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
        self._call_protocol("pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low:
            self._protocol_paused = False
            self._call_protocol("resume_writing")

class NativeStreamTransport(DockNetStreamTransport):
    """A stream transport whose per-message path is a native
    ``_fcpath.TransportCore`` (a fast channel's or a stack connection's):
    bytes straight from the connection to ``data_received``, a write that
    fits straight onto the connection, while nothing unusual is going on.
    Whether it is follows from the state, which lives in the core
    (``_state`` here is the core's): the C path reads it itself, and this
    class handles everything it hands back. A subclass makes ``_core``
    before calling this ``__init__``."""

    _core: Any

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        poller: Any,
        protocol: asyncio.BaseProtocol,
        sock: DockNetSocket,
        server: Any = None,
    ) -> None:
        super().__init__(loop, poller, protocol, sock, server)
        self._core.buffer = self._buffer
        # The common write, in C; it hands the rest to _write_slow and
        # _write_rest below.
        self.write = self._core.write  # type: ignore[method-assign]

    @property
    def _state(self) -> int:  # type: ignore[override]
        return self._core.state  # type: ignore[no-any-return]

    @_state.setter
    def _state(self, value: int) -> None:
        self._core.state = value

    def _protocol_changed(self) -> None:
        # Bound once per protocol (the fast path calls it per message).
        proto = self._protocol
        self._core.reader = getattr(proto, "data_received", None)
        # A buffered one (TLS's) gets its bytes straight into its buffer.
        buffered = self._state & BUFFERED
        self._core.buffered = (proto.get_buffer, proto.buffer_updated) if buffered else None  # type: ignore[attr-defined]

    _write_slow = DockNetStreamTransport.write

    def _write_rest(self, data: bytes | bytearray, sent: int) -> None:
        """The core sent part of data (the connection is full): the rest waits."""
        self._buffer += memoryview(data)[sent:]
        self._maybe_pause_protocol()
