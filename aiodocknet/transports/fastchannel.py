"""TCP-like transports over fast channels (shared-memory rings).

A connection whose two ends are endpoints of one master is carried by a
fast channel when both loops agree (the master brokers it); the protocol
sees the same transport contract as over lwIP: names, half-close, reset,
flow control. Only the bytes' path differs.

Each message takes the native path of ``_fcpath.TransportCore`` (bytes
straight from the ring to ``data_received``, a write straight onto the
ring) while nothing unusual is going on (``NativeStreamTransport``).
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any

from ..native._fcpath import TransportCore
from ..native.fastchan import FC_READABLE, FC_WRITABLE, FastChannel
from .base import CLOSED, CLOSING, EGRESS_LIMIT, INGRESS_LIMIT, READ_HELD, NativeStreamTransport
from .sockets import DockNetSocket

__all__ = ["FastChannelTransport"]


class FastChannelTransport(NativeStreamTransport):
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
        super().__init__(loop, poller, protocol, DockNetSocket.channel(sockname, peername), server)
        self._set_limits(self._egress, self._ingress)

    @property
    def peer_address(self) -> str:
        return self._fc_names[1][0]

    def _io_register(self) -> None:
        self._poller.add_channel(self)

    def resume_reading(self) -> None:
        super().resume_reading()
        self._poller.kick()

    # The state is the core's (NativeStreamTransport): the channel's own
    # reading flag follows it in C, so that bytes waiting for a reader that
    # paused do not keep the poller awake.

    def _set_limits(self, egress: Any, ingress: Any) -> None:
        """The endpoint's buckets (None: no limit), pushed by the master."""
        self._egress, self._ingress = egress, ingress
        st = self._state & ~(EGRESS_LIMIT | INGRESS_LIMIT)
        if egress is not None:
            st |= EGRESS_LIMIT
        if ingress is not None:
            st |= INGRESS_LIMIT
        self._state = st

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
            self._state |= READ_HELD

    def _limit_read(self) -> None:
        self._read_timer = None
        self._state &= ~READ_HELD
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
            if self._buffer and not self._state & CLOSED:
                self._write_ready()
            else:
                try:
                    self._fc.write(b"")  # nothing to send after all: stop asking
                except OSError:
                    pass
        return bits != 0

    def _fc_row(self) -> dict[str, Any]:
        """This connection as `docknet ss` lists it."""
        rq, sq = self._fc.queued() if not self._state & CLOSED else (0, 0)
        (la, lp), (pa, pp) = self._fc_names
        v6 = ":" in la
        return {"id": f"fc{self._channel_id}", "kind": "tcp", "state": "CLOSING" if self._state & CLOSING else "ESTAB",
                "family": 6 if v6 else 4, "local": f"[{la}]:{lp}" if v6 else f"{la}:{lp}",
                "peer": f"[{pa}]:{pp}" if v6 else f"{pa}:{pp}", "recv_q": rq, "send_q": sq + len(self._buffer),
                "path": "fast"}

    def _peer_gone(self) -> None:
        self._force_close(ConnectionResetError(errno.ECONNRESET, "the peer's process is gone"))

    def __repr__(self) -> str:
        return f"<FastChannelTransport {self._fc_names[0]} -> {self._fc_names[1]}>"
