"""The TCP transports' native path (``_fcpath.StackCore``, dn_lwpath.c)
and the poller's turn (``_fcpath.PollerCore``, dn_pollpath.c): what they
refuse, and that nothing reaches a stack once it is closed.

Only DockNet's own Python calls these objects, but a wrong call must be an
exception, never a read of another connection's bytes or of freed memory.
The traffic itself is the conformance suite's: every DockNet TCP test runs
on this path."""

from __future__ import annotations

import json
import sys

from dn_harness import Master, Proc

MISUSE = r"""
import json
from aiodocknet.native._fcpath import PollerState, StackCore, TransportCore
from aiodocknet.native._lib import ffi, lib
from aiodocknet.native.stack import SlaveStack

st = SlaveStack.attach("lwpath-misuse", max_conns=64)
out = {}
def tried(name, fn):
    try:
        fn()
        out[name] = "accepted"
    except Exception as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)

ps = PollerState(lambda: None)
class T:
    def _write_slow(self, data):
        out.setdefault("slow_writes", 0)
        out["slow_writes"] += 1
t = T()
core = st.core
tried("core_conn_negative", lambda: TransportCore(core, t, ps, -1))
tried("core_conn_too_big", lambda: TransportCore(core, t, ps, 64))
tried("core_conn_missing", lambda: TransportCore(core, t, ps))
mine = TransportCore(core, t, ps, 3)
tried("register_other_conn", lambda: core.register(4, mine))
tried("register_out_of_range", lambda: core.register(1 << 40, mine))
tried("register_not_a_core", lambda: core.register(3, object()))
other = StackCore(int(ffi.cast("uintptr_t", st._st)), int(ffi.cast("uintptr_t", lib.dn_stack_calls())))
tried("register_other_stack", lambda: other.register(3, mine))
tried("stack_core_null", lambda: StackCore(0, 0))
tried("stack_core_twice", lambda: other.__init__(1, 1))
tried("unregister_out_of_range", lambda: core.unregister(-1))
tried("register_own", lambda: core.register(3, mine))
other.detach()
st.close()
# After close: the cores must not call into the freed stack.
tried("pump_after_close", lambda: core.pump(lambda *a: None))
tried("write_after_close", lambda: mine.write(b"x" * 64))
tried("core_after_close", lambda: TransportCore(core, t, ps, 3))
print(json.dumps({"event": "done", **out}), flush=True)
"""


def test_stack_core_refuses_misuse(master: Master) -> None:
    """Tried: cores for ids out of range or for no id, a core registered
    under another connection's id or another stack's, a non-core, a second
    set-up, and after the stack closed: a pass, a write and a new core."""
    proc = Proc([sys.executable, "-c", MISUSE], master.env, "lwpath-misuse")
    master.peers.append(proc)
    out = proc.expect("done", timeout=60)
    assert proc.wait() == 0
    refused = {
        "core_conn_negative": "ValueError: no connection -1",
        "core_conn_too_big": "ValueError: no connection 64",
        "core_conn_missing": "ValueError: no connection -1",
        "register_other_conn": "ValueError: that core is not connection 4's",
        "register_out_of_range": "ValueError: no connection 1099511627776",
        "register_not_a_core": "TypeError: core must be a TransportCore",
        "register_other_stack": "ValueError: that core is not connection 3's",
        "stack_core_null": "ValueError: no stack",
        "stack_core_twice": "RuntimeError: StackCore is set up once",
        "unregister_out_of_range": "ValueError: no connection -1",
        "pump_after_close": "RuntimeError: the stack is closed",
        "core_after_close": "ValueError: the stack is closed",
    }
    for name, start in refused.items():
        assert out[name].startswith(start), (name, out[name])
    assert out["register_own"] == "accepted"
    # A write once the stack is gone takes the Python path, which knows.
    assert out["write_after_close"] == "accepted" and out["slow_writes"] == 1, json.dumps(out)


POLLER_MISUSE = r"""
import json, math
from aiodocknet.native._fcpath import PollerCore, PollerState
from aiodocknet.native.stack import SlaveStack

st = SlaveStack.attach("pollpath-misuse", max_conns=64)
out = {}
def tried(name, fn):
    try:
        r = fn()
        out[name] = "accepted" if r is None else repr(r)
    except Exception as exc:
        out[name] = type(exc).__name__ + ": " + str(exc)

ps = PollerState(lambda: None)
soon = []
slept = []
sleep_answer = [False]
def sleep(now):
    slept.append(now)
    if sleep_answer[0] == "raise":
        raise OSError("sleep failed")
    return sleep_answer[0]
tuning = dict(spin_ns=0, spin_misses=3, stack_every=4, stack_hot=0.001, inner=4, chunk_ns=1000,
              yield_switch_ns=0, yield_channels_ns=0, slack_switch=1, slack_channels=0)
def make(**kw):
    args = dict(stack=st.core, state=ps, channels=[], dispatch=lambda *a: None, sleep=sleep,
                call_soon=soon.append)
    args.update(kw)
    t = dict(tuning)
    for k in list(args):
        if k in t:
            t[k] = args.pop(k)
    return PollerCore(**args, **t)

bare = PollerCore.__new__(PollerCore)
tried("poll_not_set_up", bare.poll)
tried("doorbell_not_set_up", bare.on_doorbell)
tried("stack_not_a_core", lambda: make(stack=object()))
tried("state_not_a_state", lambda: make(state=object()))
tried("channels_not_a_list", lambda: make(channels=()))
tried("dispatch_not_callable", lambda: make(dispatch=3))
tried("stack_every_zero", lambda: make(stack_every=0))
tried("inner_zero", lambda: make(inner=0))
tried("stack_hot_negative", lambda: make(stack_hot=-1.0))
tried("stack_hot_nan", lambda: make(stack_hot=math.nan))
tried("spin_ns_negative", lambda: make(spin_ns=-1))
tried("chunk_ns_negative", lambda: make(chunk_ns=-1))
pc = make()
tried("set_up_twice", lambda: pc.__init__(stack=st.core, state=ps, channels=[], dispatch=print, sleep=sleep,
                                          call_soon=soon.append, **tuning))
# A turn with nothing to do and a spin of 0: it asks to sleep; told that
# work is waiting, it schedules the next turn itself.
ps.scheduled = True
tried("turn_not_slept", pc.poll)
out["not_slept"] = [len(slept), len(soon), soon[-1] == pc.poll if soon else None, ps.scheduled]
sleep_answer[0] = True
tried("turn_slept", pc.poll)
out["slept"] = [len(slept), len(soon)]
sleep_answer[0] = "raise"
tried("turn_sleep_raises", pc.poll)
out["after_raise"] = len(soon)
# A channel list with something else in it: refused, the next turn still due.
sleep_answer[0] = False
bad = make(channels=[object()])
tried("channels_not_cores", bad.poll)
out["after_bad_channels"] = len(soon)
pc.close()
tried("turn_after_close", pc.poll)
out["after_close"] = [len(soon), ps.scheduled]
live = make()
st.close()
tried("turn_after_stack_close", live.poll)
tried("doorbell_after_stack_close", live.on_doorbell)
print(json.dumps({"event": "done", **out}), flush=True)
"""


def test_poller_core_refuses_misuse(master: Master) -> None:
    """Tried on the poller's turn in C: a turn of an object never set up;
    a stack, state, channel list or callback of the wrong kind; tuning of
    zero, negative or NaN; a second set-up; a sleep that raises and a
    channel list holding a non-core (refused, and the next turn is still
    scheduled); after close(), and after the stack closed: turns and
    doorbells."""
    proc = Proc([sys.executable, "-c", POLLER_MISUSE], master.env, "pollpath-misuse")
    master.peers.append(proc)
    out = proc.expect("done", timeout=60)
    assert proc.wait() == 0
    refused = {
        "poll_not_set_up": "RuntimeError: PollerCore is not set up",
        "doorbell_not_set_up": "RuntimeError: PollerCore is not set up",
        "stack_not_a_core": "TypeError:",
        "state_not_a_state": "TypeError:",
        "channels_not_a_list": "TypeError:",
        "dispatch_not_callable": "TypeError: dispatch, sleep and call_soon must be callable",
        "stack_every_zero": "ValueError: stack_every and inner must be at least 1",
        "inner_zero": "ValueError: stack_every and inner must be at least 1",
        "stack_hot_negative": "ValueError: the poller's tuning is never negative",
        "stack_hot_nan": "ValueError: the poller's tuning is never negative",
        "spin_ns_negative": "ValueError: the poller's tuning is never negative",
        "chunk_ns_negative": "ValueError: the poller's tuning is never negative",
        "set_up_twice": "RuntimeError: PollerCore is set up once",
        "turn_sleep_raises": "OSError: sleep failed",
        "channels_not_cores": "TypeError: pump() takes TransportCore objects",
        "turn_after_stack_close": "RuntimeError: the stack is closed",
        "doorbell_after_stack_close": "RuntimeError: the stack is closed",
    }
    for name, start in refused.items():
        assert out[name].startswith(start), (name, out[name])
    # Not slept: the next turn is the core's own poll, and still due.
    assert out["turn_not_slept"] == "accepted" and out["not_slept"] == [1, 1, True, True], json.dumps(out)
    # Slept: no next turn until the doorbell.
    assert out["turn_slept"] == "accepted" and out["slept"] == [2, 1], json.dumps(out)
    # A failing callback or channel list: the next turn is scheduled all the same.
    assert out["after_raise"] == 2 and out["after_bad_channels"] == 3, json.dumps(out)
    # Closed: no turn, nothing scheduled.
    assert out["turn_after_close"] == "accepted" and out["after_close"] == [3, False], json.dumps(out)
