"""With no master, DockNet addresses never leave by the kernel's routes
(issue 13, defect 15).

The client runs in a network namespace the test makes, whose default route
points over a veth pair at a second namespace the test also makes; the
peer end's packet counter shows whether anything left. Nothing is sent
anywhere but between these two namespaces.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.cli.netns import create_netns, delete_netns
from dn_harness import ROOT, Proc, running_master

CLIENT = Path(__file__).resolve().parent / "noroute_client.py"
# Documentation addresses (TEST-NET-1): the routed link exists only here.
PEER_IP, CLIENT_IP = "192.0.2.1", "192.0.2.2"
MARKER_PORT = 9999
MARKER_SINK = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{PEER_IP}", {MARKER_PORT}))
s.settimeout(10)
print("ready", flush=True)
assert s.recv(64) == b"marker"
"""


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class RoutedNamespace:
    """A client namespace whose default route leads into a peer namespace."""

    client: str
    peer: str
    peer_dev: str

    @property
    def client_path(self) -> str:
        return f"/run/netns/{self.client}"

    def received(self) -> int:
        """Packets the peer end of the veth has received."""
        [link] = json.loads(ip("-n", self.peer, "-s", "-j", "link", "show", self.peer_dev))
        return int(link["stats64"]["rx"]["packets"])

    def received_before_marker(self) -> int:
        """Send one datagram from the client namespace to a socket in the
        peer namespace and wait until that socket has it: whatever left
        before it over the same veth has been counted by then. Returns the
        count without the marker (no sleeping and hoping the count has
        settled)."""
        sink = subprocess.Popen(
            ["ip", "netns", "exec", self.peer, sys.executable, "-c", MARKER_SINK],
            stdout=subprocess.PIPE, text=True)
        try:
            assert sink.stdout is not None and sink.stdout.readline() == "ready\n"
            res = self.run(sys.executable, "-c", f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                           f".sendto(b'marker', ('{PEER_IP}', {MARKER_PORT}))")
            assert res.returncode == 0, res.stderr
            assert sink.wait(10) == 0
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait()
        return self.received() - 1

    def run(self, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.client, *argv], capture_output=True, text=True,
                              timeout=60, cwd=ROOT, **kw)  # type: ignore[call-overload]


@pytest.fixture
def routed() -> Iterator[RoutedNamespace]:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces)")
    tag = str(os.getpid() % 100000)
    ns = RoutedNamespace(f"dn-nr-c-{tag}", f"dn-nr-p-{tag}", f"dnnrp{tag}")
    made: list[str] = []
    try:
        for name in (ns.client, ns.peer):
            create_netns(name)
            made.append(name)
            # No IPv6: its router solicitations would move the counter.
            for key in ("all", "default"):
                ip("netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        ip("link", "add", f"dnnrc{tag}", "netns", ns.client, "type", "veth", "peer", "name", ns.peer_dev,
           "netns", ns.peer)
        ip("-n", ns.peer, "addr", "add", f"{PEER_IP}/24", "dev", ns.peer_dev)
        ip("-n", ns.peer, "link", "set", ns.peer_dev, "up")
        ip("-n", ns.client, "addr", "add", f"{CLIENT_IP}/24", "dev", f"dnnrc{tag}")
        ip("-n", ns.client, "link", "set", f"dnnrc{tag}", "up")
        ip("-n", ns.client, "route", "add", "default", "via", PEER_IP)
        # Both ends' addresses resolved for good: each datagram that leaves
        # is one packet on the counter, with no ARP beside it (not even the
        # peer's, resolving the client to tell it the address is unreachable).
        [peer_link] = json.loads(ip("-n", ns.peer, "-j", "link", "show", ns.peer_dev))
        [client_link] = json.loads(ip("-n", ns.client, "-j", "link", "show", f"dnnrc{tag}"))
        ip("-n", ns.client, "neigh", "replace", PEER_IP, "lladdr", peer_link["address"], "dev", f"dnnrc{tag}",
           "nud", "permanent")
        ip("-n", ns.peer, "neigh", "replace", CLIENT_IP, "lladdr", client_link["address"], "dev", ns.peer_dev,
           "nud", "permanent")
        yield ns
    finally:
        for name in made:  # deleting a namespace deletes its veth end, and the pair with it
            delete_netns(name)


def test_the_trap_would_see_a_leak(routed: RoutedNamespace) -> None:
    """The counter moves when the kernel does route a DockNet address out
    (a plain socket, no DockNetLoop): what the tests below check against."""
    before = routed.received()
    res = routed.run(sys.executable, "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
                     ".sendto(b'x', ('10.77.0.9', 9))")
    assert res.returncode == 0, res.stderr
    assert routed.received_before_marker() == before + 1


def check_attempts(lines: list[dict[str, object]], addresses: list[str]) -> None:
    attempts = [line for line in lines if line.get("event") == "attempt"]
    assert len(attempts) == 5 * len(addresses), lines
    for a in attempts:
        assert a["errno"] == errno.EHOSTUNREACH, a
        assert float(a["seconds"]) < 1.0, a  # type: ignore[arg-type]


def test_no_master_fails_fast_and_sends_nothing(routed: RoutedNamespace, tmp_path: Path) -> None:
    """No master at DOCKNET_MASTER: every connect and send to an address of
    the default subnet and IPv6 prefix, and of the ones DOCKNET_SUBNET and
    DOCKNET_SUBNET6 name, fails at once with EHOSTUNREACH (the kernel's own
    refusal in this namespace without IPv6 would be another errno), and the
    peer namespace receives nothing."""
    env = dict(os.environ, DOCKNET_MASTER=str(tmp_path / "no-master.sock"))
    for name in ("DOCKNET_DISABLE", "DOCKNET_SUBNET", "DOCKNET_SUBNET6"):
        env.pop(name, None)
    before = routed.received()
    for subnet, addresses in [(None, ["10.77.0.9", "10.77.255.254", "fd77:d0c::9"]),
                              (("10.99.0.0/16", "fd99::/64"), ["10.99.3.4", "fd99::3:4"])]:
        if subnet is not None:
            env["DOCKNET_SUBNET"], env["DOCKNET_SUBNET6"] = subnet
        res = routed.run(sys.executable, str(CLIENT), *addresses, env=env)
        assert res.returncode == 0, res.stderr
        lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
        check_attempts(lines, addresses)
    assert routed.received_before_marker() == before


def test_master_gone_fails_fast_and_sends_nothing(routed: RoutedNamespace) -> None:
    """An endpoint registered for the client namespace attaches; its master
    stops; the same process's connects and sends to DockNet addresses then
    fail at once, and nothing leaves by the namespace's default route."""
    with running_master() as m:
        reg = ApiClient(os.path.join(m.run_dir, "api.sock")).call(
            "POST", "/v1/endpoints", {"name": "stranded", "netns": routed.client_path})
        env = dict(m.env, DOCKNET_ENDPOINT="stranded", DOCKNET_SECRET=reg["secret"])
        env.pop("DOCKNET_SUBNET", None)
        client = Proc(["ip", "netns", "exec", routed.client, sys.executable, str(CLIENT), "--attach",
                       "10.77.0.9", "10.77.0.200", "fd77:d0c::9"], env, "stranded")
        m.peers.append(client)
        client.expect("attached", timeout=60)
        m.proc.kill()
        assert m.proc.wait(20) == 0
        before = routed.received()
        client.send("go")
        client.expect("done", timeout=60)
        check_attempts(client.lines, ["10.77.0.9", "10.77.0.200", "fd77:d0c::9"])
        assert routed.received_before_marker() == before


def test_disable_means_kernel_only(routed: RoutedNamespace, tmp_path: Path) -> None:
    """DOCKNET_DISABLE=1 is the operator asking for the kernel's network:
    such a loop keeps no DockNet subnet, and its datagram does go out."""
    env = dict(os.environ, DOCKNET_DISABLE="1", DOCKNET_MASTER=str(tmp_path / "none.sock"))
    before = routed.received()
    code = ("import asyncio; from aiodocknet.loop import DockNetLoop; loop = DockNetLoop(); "
            "t, p = loop.run_until_complete(loop.create_datagram_endpoint(asyncio.DatagramProtocol, "
            "local_addr=('0.0.0.0', 0))); t.sendto(b'x', ('10.77.0.9', 9)); "
            "loop.run_until_complete(asyncio.sleep(0.2))")
    res = routed.run(sys.executable, "-c", code, env=env)
    assert res.returncode == 0, res.stderr
    assert routed.received_before_marker() > before
