"""TCP-like transports over fast channels (shared-memory rings).

A connection whose two ends are endpoints of one master is carried by a
fast channel when both loops agree (the master brokers it); the protocol
sees the same transport contract as over lwIP: names, half-close, reset,
flow control. Only the bytes' path differs.

Each message takes the native path of ``_fcpath.TransportCore`` (bytes
straight from the ring to ``data_received``, a write straight onto the
ring) while nothing unusual is going on; this class tells the core when
that is (``_state_changed``) and handles everything else.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from ..native._fcpath import TransportCore
from ..native.fastchan import FC_READABLE, FC_WRITABLE, FastChannel
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
        channel_id: int = 0,
    ) -> None:
        self._fc = fc
        self._fc_names = (sockname, peername)
        self._channel_id = channel_id
        # The endpoint's limits (pushed by the master), shared by all its
        # channels; while a bucket is empty a timer takes over from polling.
        self._egress = getattr(loop, "_dn_egress", None)
        self._ingress = getattr(loop, "_dn_ingress", None)
        self._drained = False
        self._write_timer: asyncio.TimerHandle | None = None
        self._read_timer: asyncio.TimerHandle | None = None
        self._core = TransportCore(fc.address(), self, poller.state)
        super().__init__(loop, poller, None, -1, protocol, server)  # type: ignore[arg-type]
        self._core.buffer = self._buffer
        # The common write, in C; it hands the rest to _write_slow and
        # _write_rest below.
        self.write = self._core.write  # type: ignore[method-assign]

    @property
    def peer_address(self) -> str:
        return self._fc_names[1][0]

    def _make_socket(self) -> Any:
        return FastChannelSocket(*self._fc_names)

    def _io_register(self) -> None:
        self._poller.add_channel(self)

    def resume_reading(self) -> None:
        super().resume_reading()
        self._poller.kick()

    def _state_changed(self) -> None:
        reading = self._reading and self._read_timer is None and not self._lost_called
        fast = reading and self._started and not self._closing and not self._peer_eof and not self._buffered
        core = self._core
        core.reader = self._protocol.data_received if fast and self._ingress is None else None  # type: ignore[attr-defined]
        core.writable = not (self._eof or self._conn_lost or self._egress is not None)
        # Bytes waiting for a reader that paused (its protocol, or the
        # ingress limit) must not keep the poller awake: the channel stops
        # reporting them until reading resumes.
        if not self._lost_called:
            self._fc.want_read(reading)

    def _set_limits(self, egress: Any, ingress: Any) -> None:
        """The endpoint's buckets (None: no limit), pushed by the master."""
        self._egress, self._ingress = egress, ingress
        self._state_changed()

    _write_slow = DockNetTCPTransport.write

    def _write_rest(self, data: bytes | bytearray, sent: int) -> None:
        """The core put sent bytes of data onto a full ring: the rest waits."""
        self._buffer += memoryview(data)[sent:]
        self._maybe_pause_protocol()

    def _io_recv(self, size: int) -> bytes | None:
        if self._drained:
            # The last read took all there was: the next would only say so
            # (a native call per message saved); the poller looks again.
            self._drained = False
            return None
        lim = self._ingress
        if lim is not None and lim.limited:
            size = lim.allowance(size)
            if size == 0:
                self._hold_reads(lim.delay())
                return None
            data = self._fc.read(size)
            if data:
                lim.spend(len(data))
            return data
        data = self._fc.read(size)
        self._drained = data is not None and 0 < len(data) < size
        return data

    def _io_recv_into(self, buf: Any) -> int | None:
        data = self._io_recv(len(buf))
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def _io_send(self, data: Any) -> int:
        lim = self._egress
        if lim is not None and lim.limited:
            n = lim.allowance(len(data))
            if n < len(data):
                self._hold_writes(lim.delay())
                if n == 0:
                    self._fc.write(b"")  # the timer, not the ring, says when
                    return 0
                data = memoryview(data)[:n]
            n = self._fc.write(data)
            lim.spend(n)
            return n
        return self._fc.write(data)

    def _hold_writes(self, delay: float) -> None:
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(delay, self._limit_write)

    def _limit_write(self) -> None:
        self._write_timer = None
        self._write_ready()

    def _hold_reads(self, delay: float) -> None:
        if self._read_timer is None:
            self._read_timer = self._loop.call_later(delay, self._limit_read)
            self._state_changed()

    def _limit_read(self) -> None:
        self._read_timer = None
        self._state_changed()
        self._read_ready()
        self._poller.kick()

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
        if self._write_timer is not None:
            self._write_timer.cancel()
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._poller.remove_channel(self)
        self._core.detach()
        self._fc.close()
        self._loop._dn_fc_closed(self._channel_id)  # type: ignore[attr-defined]

    def _fc_ready(self, bits: int) -> bool:
        """The poller found bits (DN_FC_*) ready; True if acted on."""
        if bits & FC_READABLE:
            self._read_ready()
        if bits & FC_WRITABLE:
            if self._buffer and not self._lost_called:
                self._write_ready()
            else:
                try:
                    self._fc.write(b"")  # nothing to send after all: stop asking
                except OSError:
                    pass
        return bits != 0

    def _fc_row(self) -> dict[str, Any]:
        """This connection as `docknet ss` lists it."""
        rq, sq = self._fc.queued() if not self._lost_called else (0, 0)
        (la, lp), (pa, pp) = self._fc_names
        return {"id": f"fc{self._channel_id}", "kind": "tcp", "state": "CLOSING" if self._closing else "ESTAB",
                "local": f"{la}:{lp}", "peer": f"{pa}:{pp}", "recv_q": rq, "send_q": sq + len(self._buffer),
                "path": "fast"}

    def _peer_gone(self) -> None:
        self._force_close(ConnectionResetError(errno.ECONNRESET, "the peer's process is gone"))

    def __repr__(self) -> str:
        return f"<FastChannelTransport {self._fc_names[0]} -> {self._fc_names[1]}>"
