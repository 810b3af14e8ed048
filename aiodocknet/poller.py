"""Runs the slave stack inside the event loop's thread.

While frames flow the poller re-schedules itself with ``call_soon``, so the
loop keeps turning without blocking (busy poll, run to completion: the
thread that runs the callbacks polls the rings). After ``SPIN`` seconds with
nothing, it arms the doorbell and lets the loop block in epoll until the
master rings or lwIP's next timer is due. Writes kick it back into spinning:
an answer is likely on its way. Fast channels are polled in the same pass
and wake the process on the same eventfd. On a host where tasks wait for
a CPU nobody spins: a core is worth more to a busy service than to a
poller waiting for it. Nor does a poller whose last spins all ended in
sleep (its peers answer in milliseconds). That decision is the one the
master's switch thread makes: ``native/runtime/dn_spin.h``. The turn
itself (passes, the decision, the wait, the next turn) is C:
``native/runtime/dn_pollpath.c``; this class keeps what happens once per
sleep and the events the passes do not deliver.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any, Protocol

from .native._fcpath import PollerCore, PollerState, TransportCore
from .native.fastchan import ChannelSet
from .log import get_logger
from .native.stack import EV_ACCEPTED, Event, SlaveStack

__all__ = ["StackPoller", "EventHandler"]

log = get_logger("aiodocknet.poller")

SPIN = float(os.environ.get("DOCKNET_SPIN", "0.0002"))
# While only fast channels are busy, the stack is polled every this many
# passes (its idle poll costs more than a channel's); while it has events
# of its own, every pass.
STACK_EVERY = 4
STACK_HOT = 0.001
# Passes per turn of the loop while nothing turns up (see _poll).
INNER = 4
# After an empty pass the poller waits in C for the next bit of work, at
# most this long before the loop gets a turn (other callbacks and kernel
# descriptors wait that long at worst)...
SPIN_CHUNK_NS = 20_000
# ...giving the core away this often: often while the master's switch
# thread is needed too (traffic through the switch), seldom when only
# fast channels are busy.
YIELD_NS_SWITCH = 2_000
YIELD_NS_CHANNELS = 10_000
# After this many spins in a row that ran out the poller sleeps at once
# (dn_spin.h says why), as the switch thread does.
SPIN_MISSES = int(os.environ.get("DOCKNET_SPIN_MISSES", "3"))
# Runnable tasks beyond the cores before a spinning poller sleeps instead.
# Traffic through the switch needs the master's thread too: it and two
# pollers on two cores is still a fair fight. Fast channels alone need no
# third party: a task waiting for a core is most likely the service this
# poller waits for (a chain: frontend -> search -> geo); the bench report
# has what each slack costs and gains.
CROWD_SLACK_SWITCH = 1
CROWD_SLACK_CHANNELS = 0


class EventHandler(Protocol):
    def _dn_event(self, ev: Event) -> None: ...


class StackPoller:
    def __init__(self, loop: asyncio.AbstractEventLoop, stack: SlaveStack) -> None:
        self._loop = loop
        self._stack = stack
        # The stack's per-message path in C: one call per pass runs the
        # stack and delivers its events (_dispatch takes the unusual ones).
        self._stack_core = stack.core
        self._handlers: dict[int, Any] = {}
        self._channels = ChannelSet()
        # scheduled, sleeping and active live where a fast channel's write
        # (in C) sees them: a write during a pass costs no Python call.
        self.state = PollerState(self.kick)
        self._timer: asyncio.TimerHandle | None = None  # lwIP's next timer
        self._timer_at = 0.0  # when, in loop.time()
        self._closed = False
        # The master closed our control connection: nothing sent on the link
        # will be switched again, so new connections fail at once.
        self.master_lost = False
        # A turn of the poller, in C (native/runtime/dn_pollpath.c): the
        # passes, the spin-or-sleep decision (dn_spin.h's, which also looks
        # at whether the host is crowded), the wait, the next turn.
        self._core = PollerCore(
            stack.core, self.state, self._channels.cores, self._dispatch, self._sleep, loop.call_soon,
            spin_ns=round(SPIN * 1e9), spin_misses=max(SPIN_MISSES, 0), stack_every=STACK_EVERY,
            stack_hot=STACK_HOT, inner=INNER, chunk_ns=SPIN_CHUNK_NS, yield_switch_ns=YIELD_NS_SWITCH,
            yield_channels_ns=YIELD_NS_CHANNELS, slack_switch=CROWD_SLACK_SWITCH,
            slack_channels=CROWD_SLACK_CHANNELS)
        self._fd = stack.fileno()
        self._control_fd = stack.control_fileno()
        loop.add_reader(self._fd, self._core.on_doorbell)
        loop.add_reader(self._control_fd, self._on_control)
        self.kick()

    def register(self, conn: int, handler: Any) -> None:
        self._handlers[conn] = handler
        # A TCP transport's readable events go to its core, in C.
        core = getattr(handler, "_core", None)
        if isinstance(core, TransportCore):
            self._stack_core.register(conn, core)
        else:
            self._stack_core.unregister(conn)

    def unregister(self, conn: int) -> None:
        self._handlers.pop(conn, None)
        self._stack_core.unregister(conn)

    # ---- fast channels: polled in the same pass as the stack ----

    # A channel from the broker wakes this process on the endpoint's own
    # eventfd, the stack's: no reader of its own.

    def add_channel(self, transport: Any) -> None:
        self._channels.add(transport)
        self.kick()

    def remove_channel(self, transport: Any) -> None:
        if transport in self._channels:
            self._channels.remove(transport)

    def channels(self) -> list[Any]:
        return list(self._channels.members)

    def release(self, conn: int) -> None:
        """A transport or server is done with conn: forget it and close it
        in the stack (lwIP sends what is queued, then FIN)."""
        self._handlers.pop(conn, None)
        self._stack_core.unregister(conn)
        try:
            self._stack.close_conn(conn)
        except OSError:
            pass  # already gone (reset): nothing to close
        self.kick()

    def kick(self) -> None:
        """Poll soon and spin for a while (called after sending)."""
        st = self.state
        st.active = time.monotonic()
        if st.sleeping:
            self._wake()
        if not st.scheduled and not self._closed:
            st.scheduled = True
            self._loop.call_soon(self._core.poll)

    def _on_control(self) -> None:
        if not self._stack.read_control():
            # The master is gone, and the switch with it: nothing on this
            # link will move again, so the connections end now.
            self._loop.remove_reader(self._control_fd)
            self.master_lost = True
            ended = self._stack.reset_peer("0.0.0.0")
            # Fast channels would still move bytes, but nobody is left to
            # tell them their peer died: they end too.
            for t in self.channels():
                t._peer_gone()
                ended += 1
            log.error("docknet master connection lost", endpoint=self._stack.info.endpoint,
                      connections_reset=ended)
            self._loop._dn_master_lost()  # type: ignore[attr-defined]
        self.kick()

    def relink(self, control: Any, info: Any, fds: list[int]) -> None:
        """The master is back (``SlaveStack.relink``): watch the new link's
        eventfd and control connection instead of the old."""
        if self.state.sleeping:
            self._wake()
        self._loop.remove_reader(self._fd)
        try:
            self._stack.relink(control, info, fds)
        finally:
            self._fd = self._stack.fileno()
            self._control_fd = self._stack.control_fileno()
            self._loop.add_reader(self._fd, self._core.on_doorbell)
        self._loop.add_reader(self._control_fd, self._on_control)
        self.master_lost = False
        self.kick()

    def close(self) -> None:
        self._closed = True
        self._core.close()
        self._loop.remove_reader(self._fd)
        try:
            self._loop.remove_reader(self._control_fd)
        except (OSError, ValueError):
            pass
        if self._timer is not None:
            self._timer.cancel()
        if self.state.sleeping:
            self._wake()
        for conn in self._handlers:
            self._stack_core.unregister(conn)
        self._handlers.clear()

    def _wake(self) -> None:
        # Also after a late ring (or a channel's reset) while awake.
        self._core.wake()

    def _sleep(self, now: float) -> bool:
        """Arm everything; False if work is already waiting."""
        t = self._stack.sleep(*self._channels.pointers())
        if t is None:
            return False
        self.state.sleeping = True
        self.state.scheduled = False
        if t != math.inf:
            at = self._loop.time() + t
            if self._timer is None or self._timer_at > at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_at = at
                self._timer = self._loop.call_at(at, self._on_timer)
        return True

    def _on_timer(self) -> None:
        self._timer = None
        if self.state.sleeping:
            self._core.on_doorbell()

    def _dispatch(self, kind: int, conn: int, arg: int) -> None:
        """An event the native pass does not deliver itself."""
        h = self._handlers.get(arg if kind == EV_ACCEPTED else conn)
        if h is None:
            return
        ev = Event(kind, conn, arg)
        # The batch is drained from the stack already: an event not
        # delivered now is lost, so one handler that raises must not take
        # the rest of the batch with it.
        try:
            h._dn_event(ev)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._event_failed(h, ev, exc)

    def _event_failed(self, handler: Any, ev: Event, exc: BaseException) -> None:
        """A handler let an exception out (the transports guard the calls
        into protocols themselves: this is the last line). A transport
        takes its one fatal-error path; anything else is reported."""
        fatal = getattr(handler, "_fatal_error", None)
        if fatal is not None:
            try:
                fatal(exc, f"Fatal error handling a DockNet event ({ev!r})")
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as again:
                exc = again
        self._loop.call_exception_handler(
            {"message": f"Exception handling a DockNet event ({ev!r})", "exception": exc, "handler": handler}
        )
