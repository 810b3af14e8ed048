"""Runs the slave stack inside the event loop's thread.

While frames flow the poller re-schedules itself with ``call_soon``, so the
loop keeps turning without blocking (busy poll, run to completion: the
thread that runs the callbacks polls the rings). After ``SPIN`` seconds with
nothing, it arms the doorbell and lets the loop block in epoll until the
master rings or lwIP's next timer is due. Writes kick it back into spinning:
an answer is likely on its way.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Protocol

from .log import get_logger
from .stack import ACCEPTED, Event, SlaveStack

__all__ = ["StackPoller", "EventHandler"]

log = get_logger("aiodocknet.poller")

SPIN = float(os.environ.get("DOCKNET_SPIN", "0.0002"))


class EventHandler(Protocol):
    def _dn_event(self, ev: Event) -> None: ...


class StackPoller:
    def __init__(self, loop: asyncio.AbstractEventLoop, stack: SlaveStack) -> None:
        self._loop = loop
        self._stack = stack
        self._handlers: dict[int, Any] = {}
        self._channels: set[Any] = set()
        self._scheduled = False
        self._sleeping = False
        self._timer: asyncio.TimerHandle | None = None
        self._active = 0.0
        self._closed = False
        self._fd = stack.fileno()
        self._control_fd = stack.control_fileno()
        loop.add_reader(self._fd, self._on_doorbell)
        loop.add_reader(self._control_fd, self._on_control)
        self.kick()

    def register(self, conn: int, handler: Any) -> None:
        self._handlers[conn] = handler

    def unregister(self, conn: int) -> None:
        self._handlers.pop(conn, None)

    # ---- fast channels: polled in the same pass as the stack ----

    def add_channel(self, transport: Any) -> None:
        self._channels.add(transport)
        self._loop.add_reader(transport._fc.fileno(), self._on_doorbell)
        self.kick()

    def remove_channel(self, transport: Any) -> None:
        if transport in self._channels:
            self._channels.discard(transport)
            self._loop.remove_reader(transport._fc.fileno())

    def channels(self) -> list[Any]:
        return list(self._channels)

    def release(self, conn: int) -> None:
        """A transport or server is done with conn: forget it and close it
        in the stack (lwIP sends what is queued, then FIN)."""
        self._handlers.pop(conn, None)
        try:
            self._stack.close_conn(conn)
        except OSError:
            pass  # already gone (reset): nothing to close
        self.kick()

    def kick(self) -> None:
        """Poll soon and spin for a while (called after sending)."""
        self._active = time.monotonic()
        if self._sleeping:
            self._wake()
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._poll)

    def _on_control(self) -> None:
        notices = self._stack.read_control()
        if notices is not None:
            for msg, fds in notices:
                self._loop._dn_control(msg, fds)  # type: ignore[attr-defined]
        if notices is None:
            # The master is gone, and the switch with it: nothing on this
            # link will move again, so the connections end now.
            self._loop.remove_reader(self._control_fd)
            ended = self._stack.reset_peer("0.0.0.0")
            # Fast channels would still move bytes, but nobody is left to
            # tell them their peer died: they end too.
            for t in self.channels():
                t._peer_gone()
                ended += 1
            log.error("docknet master connection lost", endpoint=self._stack.info.endpoint,
                      connections_reset=ended)
        self.kick()

    def close(self) -> None:
        self._closed = True
        self._loop.remove_reader(self._fd)
        try:
            self._loop.remove_reader(self._control_fd)
        except (OSError, ValueError):
            pass
        if self._timer is not None:
            self._timer.cancel()
        if self._sleeping:
            self._stack.disarm()
            self._sleeping = False
        self._handlers.clear()

    def _wake(self) -> None:
        self._sleeping = False
        self._stack.disarm()
        for t in self._channels:
            t._fc.disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_channels(self) -> bool:
        """Announce sleep on every channel; False (all disarmed again) if
        one already has something."""
        armed = []
        for t in self._channels:
            if t._fc_arm():
                for a in armed:
                    a._fc.disarm()
                self._stack.disarm()
                return False
            armed.append(t)
        return True

    def _on_doorbell(self) -> None:
        if self._sleeping:
            self._wake()
        else:
            # A late ring (or a channel's reset): drain them all, or the
            # readers would fire again at once.
            self._stack.disarm()
            for t in self._channels:
                t._fc.disarm()
        if not self._scheduled:
            self._scheduled = True
            self._poll()

    def _on_timer(self) -> None:
        self._timer = None
        self._on_doorbell()

    def _poll(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        events = self._stack.poll()
        if self._channels:
            busy = False
            for t in list(self._channels):
                busy |= t._fc_poll()
            if busy:
                self._active = time.monotonic()
        if events:
            handlers = self._handlers
            for ev in events:
                h = handlers.get(ev.arg if ev.kind == ACCEPTED else ev.conn)
                if h is not None:
                    h._dn_event(ev)
            self._active = time.monotonic()
        elif time.monotonic() - self._active > SPIN:
            if self._stack.arm() and self._arm_channels():
                self._sleeping = True
                t = self._stack.timeout()
                if t is not None:
                    self._timer = self._loop.call_later(t, self._on_timer)
                return
        else:
            # Spinning with nothing to do: let another poller on this core
            # run (it may be the one we wait for).
            os.sched_yield()
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self._loop.call_soon(self._poll)
