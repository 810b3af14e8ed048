"""Fast channels: shared-memory byte streams between two processes.

``FastChannel`` wraps one side of a region made by :func:`make_channel`
(native/dn_fastchan.h). The master brokers them for connections between
endpoints on one host (``master/broker.py``) and watches them with
``ChannelWatch``; the loop carries them as transports (``transports/fastchannel.py``).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import Any

from .errors import check, raise_errno
from ._lib import ffi, lib
from .stack import READ_MAX

__all__ = ["ChannelSet", "ChannelWatch", "FastChannel", "WakeFds", "make_channel", "make_region", "FC_READABLE",
           "FC_WRITABLE"]

FC_READABLE = lib.DN_FC_READABLE
FC_WRITABLE = lib.DN_FC_WRITABLE
DEFAULT_RING = 1 << 20
_EAGAIN = -errno.EAGAIN


def make_region(ring_size: int = DEFAULT_RING) -> int:
    """A fresh channel region (a memfd). The broker pairs it with each
    side's endpoint eventfd, so that a process wakes on one descriptor for
    its stack and all its channels."""
    # Sealed by dn_fc_init once sized: neither side can resize it after.
    memfd = os.memfd_create("docknet-fastchan", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        check(lib.dn_fc_init(memfd, ring_size))
    except BaseException:
        os.close(memfd)
        raise
    return memfd


def make_channel(ring_size: int = DEFAULT_RING) -> tuple[int, int, int]:
    """A fresh region and one eventfd per side: (memfd, efd0, efd1)."""
    memfd = make_region(ring_size)
    try:
        efds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(2)]
    except BaseException:
        os.close(memfd)
        raise
    return memfd, efds[0], efds[1]


_scratch = threading.local()


def _read_buffer() -> Any:
    """Where read() copies to before making bytes: one per thread, not one
    per channel (a channel's own was most of its memory: thousands of
    idle connections held hundreds of MB of buffers)."""
    buf = getattr(_scratch, "buf", None)
    if buf is None:
        buf = _scratch.buf = ffi.new("char[]", READ_MAX)
    return buf


class _HeldFd:
    __slots__ = ("fd", "users")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0


class WakeFds:
    """The eventfds a process's fast channels ring and sleep on, kept once
    per endpoint rather than once per channel: every channel to one peer
    endpoint rings the same eventfd, and every channel sleeps on this
    endpoint's own, so two descriptors a connection would put a busy server
    at its descriptor limit long before its memory. Each offer still
    brings its own copies (the master cannot know which this process
    kept): the ones already held are closed at once. Keys are "self" and
    the peer endpoint's address; one set serves one master's lifetime."""

    def __init__(self) -> None:
        self._held: dict[str, _HeldFd] = {}

    def take(self, key: str, fd: int) -> _HeldFd:
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _HeldFd(fd)
        else:
            os.close(fd)
        held.users += 1
        return held

    def drop(self, key: str, held: _HeldFd) -> None:
        """A channel is done with ``held``: the last one closes it, and
        takes it out of the set, so that the next offer's copy is kept
        instead of a descriptor number that is closed (and may by then be
        another connection's)."""
        held.users -= 1
        if held.users == 0:
            os.close(held.fd)
            if self._held.get(key) is held:
                del self._held[key]

    def forget(self, key: str) -> None:
        """That endpoint is gone: a later one at its address has another
        eventfd. Channels that still hold the old one keep it until they
        close."""
        self._held.pop(key, None)

    def __len__(self) -> int:
        return len(self._held)

    def channel(self, memfd: int, side: int, self_efd: int, peer_efd: int, peer: str) -> FastChannel:
        """A FastChannel on the eventfds held here for this endpoint and
        for the peer endpoint (peer: its address)."""
        mine, theirs = self.take("self", self_efd), self.take(peer, peer_efd)

        def release() -> None:
            self.drop("self", mine)
            self.drop(peer, theirs)

        return FastChannel(memfd, side, mine.fd, theirs.fd, release=release)


class FastChannel:
    """One side of a fast channel. Owns the descriptors it is given, or,
    with release, borrows the eventfds and calls release() when done with
    them (WakeFds.channel)."""

    def __init__(self, memfd: int, side: int, self_efd: int, peer_efd: int,
                 release: Callable[[], None] | None = None) -> None:
        out = ffi.new("struct dn_fc **")
        rc = lib.dn_fc_open(memfd, side, self_efd, peer_efd, out)
        os.close(memfd)  # mapped now
        self._fds = (self_efd, peer_efd)
        self._release = release
        if rc < 0:
            self._let_go()
            raise_errno(rc)
        self._fc: Any = out[0]

    def _let_go(self) -> None:
        if self._release is not None:
            self._release()
        else:
            for fd in self._fds:
                os.close(fd)

    def address(self) -> int:
        """The native channel's address, for ``_fcpath.TransportCore``."""
        return int(ffi.cast("uintptr_t", self._fc))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Bytes taken; 0 when the ring is full (FC_WRITABLE follows)."""
        buf = ffi.from_buffer(data)
        return check(lib.dn_fc_write(self._fc, buf, len(buf)))

    def read(self, size: int = READ_MAX) -> bytes | None:
        """Up to size bytes; b"" at end of stream; None when empty."""
        buf = _read_buffer()
        rc = lib.dn_fc_read(self._fc, buf, min(size, READ_MAX))
        if rc < 0:
            if rc == _EAGAIN:
                return None
            raise_errno(rc)
        return ffi.buffer(buf, rc)[:]

    def shutdown(self) -> None:
        check(lib.dn_fc_shutdown(self._fc))

    def reset(self) -> None:
        lib.dn_fc_reset(self._fc)

    def want_read(self, on: bool) -> None:
        """Whether bytes waiting count as FC_READABLE (and ring this side)."""
        if self._fc is not None:
            lib.dn_fc_want_read(self._fc, int(on))

    def ready(self) -> int:
        return int(lib.dn_fc_ready(self._fc))

    def arm(self) -> int:
        """0 if the caller may sleep on fileno(); else what is ready."""
        return int(lib.dn_fc_arm(self._fc))

    def disarm(self) -> None:
        lib.dn_fc_disarm(self._fc)

    def fileno(self) -> int:
        return self._fds[0]

    def queued(self) -> tuple[int, int]:
        """(bytes waiting to be read, bytes written and not yet read)."""
        return int(lib.dn_fc_rx_queued(self._fc)), int(lib.dn_fc_tx_queued(self._fc))

    def close(self) -> None:
        if self._fc is not None:
            lib.dn_fc_close(self._fc)
            self._fc = None
            self._let_go()


class ChannelWatch:
    """The master's read-only view of a channel: bytes each way, which
    sides have closed. Holding it keeps the channel's memory alive."""

    def __init__(self, memfd: int) -> None:
        out = ffi.new("struct dn_fc_watch **")
        check(lib.dn_fc_watch_open(memfd, out))
        self._w: Any = out[0]
        self._stats = ffi.new("struct dn_fc_stats *")

    def read(self) -> dict[str, Any]:
        if self._w is None:
            raise ValueError("the watch is closed")
        lib.dn_fc_watch_read(self._w, self._stats)
        st = self._stats
        return {"bytes": (int(st.bytes[0]), int(st.bytes[1])),
                "writes": (int(st.writes[0]), int(st.writes[1])),
                "closed": (bool(st.closed[0]), bool(st.closed[1])),
                "eof": (bool(st.eof[0]), bool(st.eof[1])),
                "reset": bool(st.reset), "ring_size": int(st.ring_size)}

    def reset(self) -> None:
        """Both sides see a reset (dn_fc_watch_reset); ring the one that
        is still there."""
        if self._w is not None:
            lib.dn_fc_watch_reset(self._w)

    def close(self) -> None:
        if self._w is not None:
            lib.dn_fc_watch_close(self._w)
            self._w = None


class ChannelSet:
    """A poller's channels, as the native calls over all of them want them:
    their ``_fcpath`` cores for a pass (``_fcpath.pump``), their native
    channels for arming, waking and waiting (``SlaveStack.sleep``, ``wake``,
    ``spin``). Adding and removing cost the same with ten channels or ten
    thousand: the pointer array grows by doubling, and a removed member's
    place takes the last one (the order means nothing)."""

    def __init__(self) -> None:
        self.members: list[Any] = []  # objects with a ._fc FastChannel
        self.cores: list[Any] = []  # and their ._core, for _fcpath.pump
        self._index: dict[Any, int] = {}
        self._ptrs: Any = ffi.new("struct dn_fc *[]", 16)

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, member: Any) -> bool:
        return member in self._index

    def add(self, member: Any) -> None:
        n = len(self.members)
        if n == len(self._ptrs):
            grown = ffi.new("struct dn_fc *[]", 2 * n)
            ffi.memmove(grown, self._ptrs, n * ffi.sizeof("struct dn_fc *"))
            self._ptrs = grown
        self._ptrs[n] = member._fc._fc
        self._index[member] = n
        self.members.append(member)
        self.cores.append(member._core)

    def remove(self, member: Any) -> None:
        i = self._index.pop(member)
        last = len(self.members) - 1
        if i != last:
            moved = self.members[last]
            self.members[i], self.cores[i] = moved, self.cores[last]
            self._ptrs[i] = self._ptrs[last]
            self._index[moved] = i
        self.members.pop()
        self.cores.pop()

    def pointers(self) -> tuple[Any, int]:
        """The members' native channels, for a native call over the set."""
        return self._ptrs, len(self.members)
