"""Throwaway network namespaces: the kernel baselines of the demo, the
benchmarks and the tests (needs root and iproute2).

Everything is created *inside* namespaces that this module owns: veth pairs
are born in their namespace (``ip -n NS link add ... peer ... netns OTHER``)
and the bridge lives in a dedicated switch namespace, so nothing ever appears
in the host's namespace and deleting the namespaces removes every link.

    with NetnsTopology(2, mode="veth") as topo:
        subprocess.run(topo.exec_argv(1, ["ping", "-c1", topo.addr(0)]), check=True)
"""

from __future__ import annotations

import atexit
import ipaddress
import itertools
import os
import re
import subprocess
from types import TracebackType
from typing import Literal, Sequence

__all__ = ["NetnsTopology", "cleanup_stale", "list_namespaces"]

Mode = Literal["veth", "bridge"]

DEFAULT_SUBNET = "10.201.0.0/24"
IFNAME = "veth0"          # name of the interface inside each endpoint namespace
BRIDGE = "br0"            # name of the bridge inside the switch namespace

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError("ip %s failed (exit %d): %s"
                           % (" ".join(args), proc.returncode, proc.stderr.strip()))
    return proc


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = _ip("netns", "list").stdout
    # Lines look like "name" or "name (id: 3)".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def cleanup_stale(prefix: str) -> list[str]:
    """Delete namespaces (and any root-namespace links) whose name starts with prefix.

    Returns the names removed. Deleting a namespace destroys the veths and
    bridge inside it, and a veth's peer dies with it.
    """
    if not _PREFIX_RE.match(prefix):
        raise ValueError("invalid prefix %r" % prefix)
    removed: list[str] = []
    for ns in list_namespaces():
        if ns.startswith(prefix):
            _ip("netns", "delete", ns, check=False)
            removed.append(ns)
    # This module never creates links in the root namespace; this only catches
    # leftovers of other tools that used the same prefix.
    out = _ip("-o", "link", "show", check=False).stdout
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@", 1)[0]
        if name.startswith(prefix):
            _ip("link", "delete", name, check=False)
            removed.append(name)
    return removed


class NetnsTopology:
    """N namespaces joined by one veth pair (mode="veth", N == 2) or by a
    Linux bridge in a separate switch namespace (mode="bridge", N >= 1).

    Namespace i has interface ``veth0`` with address ``addr(i)`` (a /24 from
    ``subnet``, default 10.201.0.0/24, host i + 1) and ``lo`` up.
    """

    def __init__(self, n: int = 2, mode: Mode = "veth", *,
                 prefix: str | None = None, subnet: str = DEFAULT_SUBNET,
                 mtu: int | None = None) -> None:
        if mode not in ("veth", "bridge"):
            raise ValueError("mode must be 'veth' or 'bridge', not %r" % (mode,))
        if mode == "veth" and n != 2:
            raise ValueError("mode='veth' joins exactly 2 namespaces, got %d" % n)
        if n < 1:
            raise ValueError("need at least one namespace")
        if prefix is None:
            prefix = "dnb%d-%d-" % (os.getpid(), next(_counter))
        if not _PREFIX_RE.match(prefix):
            raise ValueError("invalid prefix %r" % prefix)
        net = ipaddress.ip_network(subnet)
        hosts = list(itertools.islice(net.hosts(), n))
        if len(hosts) < n:
            raise ValueError("subnet %s too small for %d namespaces" % (subnet, n))

        self.mode: Mode = mode
        self.prefix = prefix
        self.prefixlen = net.prefixlen
        self.mtu = mtu
        self.namespaces: list[str] = ["%sn%d" % (prefix, i) for i in range(n)]
        self.switch: str | None = prefix + "sw" if mode == "bridge" else None
        self._addrs = [str(h) for h in hosts]
        self._created: list[str] = []   # namespaces that exist and must be deleted
        self._atexit_registered = False

    # -- public API -----------------------------------------------------------

    def addr(self, i: int) -> str:
        return self._addrs[i]

    def clear_addresses(self, i: int) -> None:
        """Namespace i's veth without kernel addresses: an interface of
        DockNet's own, as an af_xdp uplink needs (it would take the
        kernel's traffic there)."""
        _ip("-n", self.namespaces[i], "addr", "flush", "dev", IFNAME)

    def exec_argv(self, i: int, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[i], *argv]

    def setup(self) -> None:
        """Create everything; on any failure, remove what was made and re-raise."""
        atexit.register(self.cleanup)
        self._atexit_registered = True
        try:
            for ns in self.namespaces + ([self.switch] if self.switch else []):
                _ip("netns", "add", ns)
                self._created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            if self.mode == "veth":
                self._setup_veth()
            else:
                self._setup_bridge()
            for i, ns in enumerate(self.namespaces):
                self._configure_ns(i, ns)
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        """Idempotent; safe after a partial setup."""
        while self._created:
            _ip("netns", "delete", self._created.pop(), check=False)
        if self._atexit_registered:
            atexit.unregister(self.cleanup)
            self._atexit_registered = False

    def __enter__(self) -> NetnsTopology:
        self.setup()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.cleanup()

    # -- internals ------------------------------------------------------------

    def _setup_veth(self) -> None:
        a, b = self.namespaces
        _ip("-n", a, "link", "add", IFNAME, "type", "veth",
            "peer", "name", IFNAME, "netns", b)

    def _setup_bridge(self) -> None:
        sw = self.switch
        assert sw is not None
        # STP stays off (the default), so ports forward as soon as they are up.
        _ip("-n", sw, "link", "add", BRIDGE, "type", "bridge")
        if self.mtu is not None:
            _ip("-n", sw, "link", "set", BRIDGE, "mtu", str(self.mtu))
        _ip("-n", sw, "link", "set", BRIDGE, "up")
        for i, ns in enumerate(self.namespaces):
            port = "p%d" % i
            _ip("-n", sw, "link", "add", port, "type", "veth",
                "peer", "name", IFNAME, "netns", ns)
            if self.mtu is not None:
                _ip("-n", sw, "link", "set", port, "mtu", str(self.mtu))
            _ip("-n", sw, "link", "set", port, "master", BRIDGE)
            _ip("-n", sw, "link", "set", port, "up")

    def _configure_ns(self, i: int, ns: str) -> None:
        if self.mtu is not None:
            _ip("-n", ns, "link", "set", IFNAME, "mtu", str(self.mtu))
        _ip("-n", ns, "addr", "add", "%s/%d" % (self._addrs[i], self.prefixlen),
            "dev", IFNAME)
        _ip("-n", ns, "link", "set", IFNAME, "up")
