"""The conformance suite: each test runs under asyncio's default loop (the
reference: what asyncio itself does), under plain uvloop (both on kernel
loopback) and under DockNetLoop (through a real master, the far end in
another process). What differs between them is only where the peer is.

As in uvloop's own test base, a test fails when anything reaches the loop's
exception handler that the test did not ask for: a callback that raised, a
transport that reported an error nobody saw, a task destroyed while pending.
A test that expects a report installs its own handler.
"""

from __future__ import annotations

import asyncio
import gc
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

# The kinds of far end; the DockNet peer listens on fixed ports of its own
# endpoint address, the kernel ones on ports the system picks.
BASES = {"asyncio": 0, "uvloop": 0, "docknet": 9100}

# What reached a loop's exception handler during the current test.
UNEXPECTED: list[dict[str, Any]] = []


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "ipv6: run the test on IPv6 addresses too (family 6)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ipv6 runs against its peer's IPv4 and IPv6 addresses
    (the kernel's loops on ::1, DockNet on the endpoint's IPv6 address)."""
    if "family" in metafunc.fixturenames and metafunc.definition.get_closest_marker("ipv6"):
        metafunc.parametrize("family", [4, 6], ids=["v4", "v6"])


@pytest.fixture
def family() -> int:
    return 4


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    if "conformance" not in str(item.path):
        return None
    return {"asyncio": _watched(asyncio.SelectorEventLoop), "uvloop": _watched(uvloop.new_event_loop),
            "docknet": _watched(_lwip_only), "docknet-fast": _watched(_fast)}


def _watched(factory: Callable[[], asyncio.AbstractEventLoop]) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop ``factory`` makes, with an exception handler that logs each
    call as usual and keeps it for the end-of-test check."""

    def make() -> asyncio.AbstractEventLoop:
        loop = factory()

        def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            UNEXPECTED.append(context)
            loop.default_exception_handler(context)

        loop.set_exception_handler(record)
        return loop

    make.__name__ = getattr(factory, "__name__", "loop")
    return make


def _unexpected_report() -> str:
    lines = [f"{len(UNEXPECTED)} unexpected call(s) to loop.call_exception_handler():"]
    lines += [f"  {c.get('message')!r} exception={c.get('exception')!r}" for c in UNEXPECTED]
    UNEXPECTED.clear()
    return "\n".join(lines)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A report made while the test ran fails the test itself."""
    UNEXPECTED.clear()
    result = yield
    if UNEXPECTED and "conformance" in str(item.path):
        pytest.fail(_unexpected_report(), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """One made while the loop shut down (a task still pending, an error
    raised on cancellation) fails the teardown."""
    result = yield
    gc.collect()
    if UNEXPECTED and "conformance" in str(item.path):
        pytest.fail(_unexpected_report(), pytrace=False)
    return result


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
def peer_ready(session_master: Master, tls_files: tuple[str, str]) -> Iterator[dict[str, tuple[dict[str, Any], Proc]]]:
    """One peer process of each kind, serving on IPv4 and IPv6: what each
    said when ready."""
    out: dict[str, tuple[dict[str, Any], Proc]] = {}
    procs = []
    try:
        for kind, base in BASES.items():
            env = dict(session_master.env, DOCKNET_ENDPOINT=f"aiopeer-{kind}")
            p = Proc([sys.executable, str(TESTS / "aio_peer.py"), "--kind", kind, "--base", str(base),
                      "--tls-cert", tls_files[0], "--tls-key", tls_files[1]], env, f"aio-peer-{kind}")
            procs.append(p)
            out[kind] = (p.expect("ready", timeout=60), p)
        yield out
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="session")
def peers(peer_ready: dict[str, tuple[dict[str, Any], Proc]]) -> dict[str, Peer]:
    return {kind: Peer.from_ready(kind, ready, p) for kind, (ready, p) in peer_ready.items()}


@pytest_asyncio.fixture
async def peer(peer_ready: dict[str, tuple[dict[str, Any], Proc]], family: int) -> Peer:
    kind = loop_kind()
    ready, p = peer_ready[kind]
    return Peer.from_ready(kind, ready, p, family)


@pytest_asyncio.fixture
async def local_host(session_master: Master, family: int) -> str:
    """Where this test process's own servers listen."""
    if loop_kind() == "docknet":
        ep = asyncio.get_running_loop()._docknet()  # type: ignore[attr-defined]
        assert ep is not None, "DockNet did not attach in the test process"
        host = ep.address if family == 4 else ep.address6
        assert host is not None, "the test process's endpoint has no IPv6 address"
        return str(host)
    return "127.0.0.1" if family == 4 else "::1"
