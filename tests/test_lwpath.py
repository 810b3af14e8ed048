"""The TCP transports' native path (``_fcpath.StackCore``, dn_lwpath.c):
what it refuses, and that nothing reaches a stack once it is closed.

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
