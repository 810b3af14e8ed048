"""What processes leave behind (issue 13, defect 16): a master stopped
cleanly leaves none of its sockets, and no DockNet process leaves its
EAL runtime directory, however it ends."""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile

import pytest

from aiodocknet.native.eal import _runtime_base
from dn_harness import Master, Proc

SLEEPER = ("from aiodocknet.native.stack import SlaveStack; import json, time; "
           "st = SlaveStack.attach('sleeper'); print(json.dumps({'event': 'ready'}), flush=True); time.sleep(120)")


def sockets_in(directory: str) -> list[str]:
    return [n for n in os.listdir(directory) if stat.S_ISSOCK(os.lstat(os.path.join(directory, n)).st_mode)]


@pytest.fixture
def root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")


def test_clean_stop_removes_every_socket_and_runtime_dir(root: None) -> None:
    """SIGTERM to a master serving an endpoint: it exits 0, its run
    directory holds no socket (control and API), and its EAL runtime
    directory is gone."""
    with tempfile.TemporaryDirectory(prefix="dn-test-") as run_dir:
        m = Master(run_dir)
        try:
            m.peer("idle", "someone").expect("ready")
            assert set(sockets_in(run_dir)) == {"master.sock", "api.sock"}
        finally:
            rc = m.stop()
        assert rc == 0, m.proc.stderr_tail()
        assert sockets_in(run_dir) == []
        assert not os.path.exists(os.path.join(_runtime_base(), f"dn-master-{m.pid}"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_slave_killed_leaves_no_runtime_dir(master: Master, sig: int) -> None:
    """A process with SIGTERM's default action (no Python runs at exit, so
    atexit cannot help), or killed outright, leaves no
    /var/run/dpdk/dn-slave-PID."""
    p = Proc([sys.executable, "-c", SLEEPER], master.env, "sleeper")
    master.peers.append(p)
    p.expect("ready")
    runtime = os.path.join(_runtime_base(), f"dn-slave-{p.pid}")
    p.kill(sig)
    assert p.wait(10) == -sig
    assert not os.path.exists(runtime)
