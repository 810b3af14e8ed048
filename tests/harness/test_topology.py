"""Tests for bench/topology.py. They create real namespaces, so they need root."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Iterator

import pytest

from bench import topology as netns_util
from bench.topology import NetnsTopology, cleanup_stale, list_namespaces

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs `ip` from iproute2"),
]

needs_ping = pytest.mark.skipif(shutil.which("ping") is None,
                                reason="needs `ping` (Debian package iputils-ping)")


@pytest.fixture
def prefix() -> Iterator[str]:
    p = "dnbt%d-%d-" % (os.getpid(), time.monotonic_ns() % 100000)
    yield p
    cleanup_stale(p)


def _ping(topo: NetnsTopology, src: int, dst: int) -> None:
    # A freshly raised veth may need a moment before its carrier is up.
    argv = topo.exec_argv(src, ["ping", "-c1", "-W1", topo.addr(dst)])
    for _ in range(5):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode == 0:
            return
    pytest.fail("ping ns%d -> ns%d (%s) failed: %s%s"
                % (src, dst, topo.addr(dst), proc.stdout, proc.stderr))


def _leftovers(prefix: str) -> list[str]:
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                           text=True, check=True).stdout
    names = [line.split(":", 2)[1].strip().split("@")[0]
             for line in links.splitlines() if line.count(":") >= 2]
    return ([ns for ns in list_namespaces() if ns.startswith(prefix)]
            + [n for n in names if n.startswith(prefix)])


def _link_exists(ns: str, name: str) -> bool:
    return subprocess.run(["ip", "-n", ns, "link", "show", name],
                          capture_output=True).returncode == 0


@needs_ping
def test_veth_pair(prefix: str) -> None:
    with NetnsTopology(2, mode="veth", prefix=prefix) as topo:
        assert len(topo.namespaces) == 2
        assert set(topo.namespaces) <= set(list_namespaces())
        assert all(ns.startswith(prefix) for ns in topo.namespaces)
        assert topo.addr(0) != topo.addr(1)
        assert topo.addr(0).startswith("10.201.0.")
        # The veth ends live in the namespaces, not in the host namespace.
        for ns in topo.namespaces:
            assert _link_exists(ns, netns_util.IFNAME)
        assert topo.exec_argv(1, ["true"]) == ["ip", "netns", "exec", topo.namespaces[1], "true"]
        _ping(topo, 1, 0)
        _ping(topo, 0, 1)
        _ping(topo, 0, 0)  # lo is up
    assert _leftovers(prefix) == []


@needs_ping
def test_bridge(prefix: str) -> None:
    with NetnsTopology(3, mode="bridge", prefix=prefix) as topo:
        assert topo.switch is not None
        assert set(topo.namespaces + [topo.switch]) <= set(list_namespaces())
        assert _link_exists(topo.switch, netns_util.BRIDGE)
        for i, j in ((0, 1), (1, 2), (2, 0)):
            _ping(topo, i, j)
    assert _leftovers(prefix) == []


def test_partial_failure_cleans_up(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: NetnsTopology, i: int, ns: str) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(NetnsTopology, "_configure_ns", boom)
    with pytest.raises(RuntimeError, match="injected"):
        with NetnsTopology(2, mode="bridge", prefix=prefix):
            pass
    assert _leftovers(prefix) == []


def test_cleanup_after_exception_in_body(prefix: str) -> None:
    with pytest.raises(KeyError):
        with NetnsTopology(2, mode="veth", prefix=prefix):
            raise KeyError("body failed")
    assert _leftovers(prefix) == []


def test_cleanup_stale(prefix: str) -> None:
    for suffix in ("a", "b"):
        subprocess.run(["ip", "netns", "add", prefix + suffix], check=True)
    assert len(_leftovers(prefix)) == 2
    removed = cleanup_stale(prefix)
    assert sorted(removed) == [prefix + "a", prefix + "b"]
    assert _leftovers(prefix) == []


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        NetnsTopology(3, mode="veth")
    with pytest.raises(ValueError):
        NetnsTopology(2, mode="ovs")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NetnsTopology(2, prefix="bad name")
    with pytest.raises(ValueError):
        NetnsTopology(4, mode="bridge", subnet="10.201.0.0/30")
