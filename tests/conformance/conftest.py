"""The conformance suite: each test runs once under plain uvloop (kernel
loopback) and once under DockNetLoop (through a real master, the far end in
another process). What differs between the two is only where the peer is.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvloop

import aiodocknet
from aiodocknet.endpoint import ProcessEndpoint

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
from dn_harness import Master, Proc, self_signed  # noqa: E402
from conformance_util import Peer, loop_kind  # noqa: E402

BASES = {"uvloop": 19100, "docknet": 9100}


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    if "conformance" not in str(item.path):
        return None
    return {"uvloop": uvloop.new_event_loop, "docknet": _lwip_only, "docknet-fast": _fast}


def _lwip_only() -> asyncio.AbstractEventLoop:
    """A DockNetLoop whose own connections go through lwIP and the switch."""
    loop = aiodocknet.new_event_loop()
    loop._dn_fast_channels = False  # type: ignore[attr-defined]
    return loop


def _fast() -> asyncio.AbstractEventLoop:
    """A DockNetLoop that asks for fast channels to the master's endpoints."""
    loop = aiodocknet.new_event_loop()
    loop._dn_fast_channels = True  # type: ignore[attr-defined]
    return loop


@pytest.fixture(scope="session")
def tls_files() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="dn-tls-") as d:
        yield self_signed(d, "peer.test")


@pytest.fixture(scope="session")
def session_master() -> Iterator[Master]:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with tempfile.TemporaryDirectory(prefix="dn-conf-") as run_dir:
        m = Master(run_dir)
        old = {k: os.environ.get(k) for k in ("DOCKNET_MASTER", "DOCKNET_ENDPOINT")}
        os.environ["DOCKNET_MASTER"] = m.path
        os.environ["DOCKNET_ENDPOINT"] = f"pytest-{os.getpid()}"
        ProcessEndpoint.reset()
        try:
            yield m
        finally:
            ep = ProcessEndpoint._instance
            if ep is not None:
                ep.close()
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            rc = m.stop()
            log = os.environ.get("DOCKNET_TEST_MASTER_LOG")
            if log:
                with open(log, "w") as f:
                    f.write(m.proc.stderr_text)
        # The master lived through the whole suite and stopped cleanly.
        assert rc == 0, f"master exited with {rc}: {m.proc.stderr_tail()}"


@pytest.fixture(scope="session")
def peers(session_master: Master, tls_files: tuple[str, str]) -> Iterator[dict[str, Peer]]:
    out: dict[str, Peer] = {}
    procs = []
    for kind, base in BASES.items():
        env = dict(session_master.env, DOCKNET_ENDPOINT=f"aiopeer-{kind}")
        p = Proc([sys.executable, str(TESTS / "aio_peer.py"), "--kind", kind, "--base", str(base),
                  "--tls-cert", tls_files[0], "--tls-key", tls_files[1]], env, f"aio-peer-{kind}")
        procs.append(p)
        ready = p.expect("ready", timeout=60)
        out[kind] = Peer(kind, ready["host"], base, p)
    try:
        yield out
    finally:
        for p in procs:
            p.stop()


@pytest_asyncio.fixture
async def peer(peers: dict[str, Peer]) -> Peer:
    return peers[loop_kind()]


@pytest_asyncio.fixture
async def local_host(session_master: Master) -> str:
    """Where this test process's own servers listen."""
    if loop_kind() == "docknet":
        ep = asyncio.get_running_loop()._docknet()  # type: ignore[attr-defined]
        assert ep is not None, "DockNet did not attach in the test process"
        return str(ep.address)
    return "127.0.0.1"
