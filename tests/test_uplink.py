"""Hosts joined by an uplink: two masters in two network namespaces (two
"hosts") and a plain kernel client in a third, on one Linux bridge; each
master's uplink is on its namespace's veth, net_af_packet (jumbo MTU) or
net_af_xdp (MTU 1500), each test on both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.control import request
from dn_harness import PEER, Proc
from bench.topology import NetnsTopology

HERE = os.path.dirname(os.path.abspath(__file__))
RANGES = ("10.77.1.0/24", "10.77.2.0/24")
CLIENT_ADDR = "10.77.200.1/16"
# The kernel client's IPv6 twin: its IPv4 host part in the default prefix.
CLIENT_ADDR6 = "fd77:d0c::c801/64"


class Hosts:
    """A master in each of the topology's first len(ranges) namespaces,
    each with its uplink on that namespace's veth0 (the --uplink given)."""

    def __init__(self, topo: NetnsTopology, uplink: str = "net_af_packet0,iface=veth0",
                 ranges: tuple[str, ...] = RANGES, dirs: list[str] | None = None) -> None:
        """dirs: the masters' run directories (a restart), new ones if None."""
        self.topo = topo
        self.procs: list[Proc] = []
        self.dirs = dirs or [tempfile.mkdtemp(prefix="dn-host-") for _ in ranges]
        for i, rng in enumerate(ranges):
            argv = [sys.executable, "-m", "aiodocknet.cli", "master", "--run-dir", self.dirs[i],
                    "--range", rng, "--uplink", uplink]
            self.procs.append(Proc(topo.exec_argv(i, argv), self.env(i), f"master{i}"))
        self.masters = list(self.procs)
        try:
            for d, m in zip(self.dirs, self.masters):
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if request(os.path.join(d, "master.sock"), {"op": "ping"}).get("ok"):
                            break
                    except OSError:
                        pass
                    if m.popen.poll() is not None:
                        raise AssertionError(f"{m.name} exited ({m.popen.returncode}): {m.stderr_tail()}")
                    assert time.monotonic() < deadline, f"{m.name} did not start: {m.stderr_tail()}"
                    time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def env(self, i: int) -> dict[str, str]:
        return dict(os.environ, DOCKNET_MASTER=os.path.join(self.dirs[i], "master.sock"))

    def run(self, host: int, argv: list[str], name: str) -> Proc:
        p = Proc(self.topo.exec_argv(host, argv), dict(self.env(host), DOCKNET_ENDPOINT=name), name)
        self.procs.append(p)
        return p

    def status(self, host: int) -> dict:
        return ApiClient(os.path.join(self.dirs[host], "api.sock")).call("GET", "/v1/status")

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()


# Each test on either uplink: af_packet given as DPDK device arguments on
# jumbo veths, and iface: (af_xdp) at the veths' own MTU.
UPLINKS = {"af_packet": ("net_af_packet0,iface=veth0", 9000), "af_xdp": ("iface:veth0", None)}


@pytest.fixture(params=list(UPLINKS))
def hosts(request: pytest.FixtureRequest) -> Iterator[Hosts]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    uplink, mtu = UPLINKS[request.param]
    with NetnsTopology(3, mode="bridge", mtu=mtu) as topo:
        subprocess.run(["ip", "-n", topo.namespaces[2], "addr", "add", CLIENT_ADDR, "dev", "veth0"], check=True)
        # No duplicate address detection: the address is usable at once.
        subprocess.run(["ip", "-n", topo.namespaces[2], "addr", "add", CLIENT_ADDR6, "dev", "veth0", "nodad"],
                       check=True)
        if request.param == "af_xdp":
            for i in (0, 1):  # the masters' interfaces are DockNet's own
                topo.clear_addresses(i)
        h = Hosts(topo, uplink=uplink)
        try:
            assert h.status(0)["uplink"]["pmd"] == request.param
            yield h
        finally:
            h.close()


def test_tcp_between_endpoints_on_two_hosts(hosts: Hosts) -> None:
    srv = hosts.run(0, [sys.executable, str(PEER), "echo-server", "--name", "a-srv", "--ipv6"], "a-srv")
    ready = srv.expect("ready", timeout=60)
    addr = ready["address"]
    assert addr.startswith("10.77.1.")
    cli = hosts.run(1, [sys.executable, str(PEER), "echo-client", "--name", "b-cli", "--target", addr,
                        "--bytes", str(32 << 20), "--half-close", "--timeout", "60"], "b-cli")
    assert cli.expect("connected", timeout=30)["sockname"][0].startswith("10.77.2.")
    done = cli.expect("done", timeout=90)
    assert done["ok"] and done["recv_sha256"] == done["sent_sha256"], done
    assert srv.expect("eof")["sha256"] == done["sent_sha256"]
    # The same over IPv6: the uplinks find each other's endpoints by
    # neighbour discovery, and the bytes come back intact.
    addr6 = ready["address6"]
    assert addr6 and addr6.startswith("fd77:d0c::"), ready
    cli6 = hosts.run(1, [sys.executable, str(PEER), "echo-client", "--name", "b-cli6", "--target", addr6,
                         "--bytes", str(8 << 20), "--half-close", "--timeout", "60"], "b-cli6")
    assert cli6.expect("connected", timeout=30)["sockname"][0].startswith("fd77:d0c::"), cli6.lines
    done6 = cli6.expect("done", timeout=90)
    assert done6["ok"] and done6["recv_sha256"] == done6["sent_sha256"], done6
    assert srv.expect("eof")["sha256"] == done6["sent_sha256"]
    for i in (0, 1):
        up = hosts.status(i)["uplink"]
        assert up["tx_frames"] > 1000 and up["rx_frames"] > 1000
        assert up["hw_classification"] == 0  # af_packet and af_xdp: software classification


def test_kernel_client_reaches_docknet_service(hosts: Hosts) -> None:
    """ping and curl from a kernel namespace to an aiohttp service on
    DockNet, through the uplink."""
    srv = hosts.run(0, [sys.executable, os.path.join(HERE, "aiohttp_peer.py"), "server", "--style", "runner"],
                    "web")
    ready = srv.expect("ready", timeout=60)
    addr, port = ready["address"], ready["port"]
    ping = subprocess.run(hosts.topo.exec_argv(2, ["ping", "-c", "3", "-W", "2", addr]),
                          capture_output=True, text=True, timeout=30)
    assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, ping.stdout
    curl = subprocess.run(hosts.topo.exec_argv(2, ["curl", "-sS", "--max-time", "10", f"http://{addr}:{port}/info"]),
                          capture_output=True, text=True, timeout=30)
    assert curl.returncode == 0, curl.stderr
    info = json.loads(curl.stdout)
    assert info["transport"] == "DockNetTCPTransport"
    assert info["peer"][0] == CLIENT_ADDR.split("/")[0]
    # And over IPv6 (the runner serves its IPv6 address too).
    addr6 = ready["address6"]
    ping6 = subprocess.run(hosts.topo.exec_argv(2, ["ping", "-6", "-c", "3", "-W", "2", addr6]),
                           capture_output=True, text=True, timeout=30)
    assert ping6.returncode == 0 and " 0% packet loss" in ping6.stdout, ping6.stdout + ping6.stderr
    curl6 = subprocess.run(hosts.topo.exec_argv(2, ["curl", "-6", "-sS", "--max-time", "10",
                                                    f"http://[{addr6}]:{port}/info"]),
                           capture_output=True, text=True, timeout=30)
    assert curl6.returncode == 0, curl6.stderr
    info6 = json.loads(curl6.stdout)
    assert info6["transport"] == "DockNetTCPTransport"
    assert info6["peer"][0] == CLIENT_ADDR6.split("/")[0] and info6["sockname"] == [addr6, port, 0, 0], info6


KERNEL6 = ("fd99::1", "fd99::2")  # the kernel's own IPv6, outside DockNet's prefix


def _blast(topo: NetnsTopology, src: int, dst: str, count: int, gap: float = 0.0) -> None:
    """count UDP datagrams from namespace src's kernel to dst (discard
    port), gap seconds apart."""
    code = ("import socket, sys, time\n"
            "fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
            "s = socket.socket(fam, socket.SOCK_DGRAM)\n"
            "gap = float(sys.argv[3])\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    s.sendto(b'x' * 64, (sys.argv[1], 9))\n"
            "    if gap: time.sleep(gap)\n")
    subprocess.run(topo.exec_argv(src, [sys.executable, "-c", code, dst, str(count), repr(gap)]), check=True,
                   timeout=60)


def test_af_packet_uplink_takes_no_copy_of_the_hosts_own_traffic() -> None:
    """The uplink's interface also carries the host kernel's traffic (its
    own addresses, IPv4 and IPv6): the master's packet sockets (the PMD's
    and the one the switch sleeps on) must not be handed a copy of it, nor
    be woken by it; frames for DockNet's subnet still arrive."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with NetnsTopology(2, mode="veth", mtu=9000) as topo:
        for i in (0, 1):
            subprocess.run(["ip", "-n", topo.namespaces[i], "addr", "add", f"{KERNEL6[i]}/64", "dev", "veth0",
                            "nodad"], check=True)
        hosts = Hosts(topo)
        try:
            up = hosts.status(0)["uplink"]
            assert up["pmd"] == "af_packet" and up["filtered_sockets"] >= 2, up
            shown = subprocess.run([sys.executable, "-m", "aiodocknet.cli", "master", "status"], env=hosts.env(0),
                                   capture_output=True, text=True, timeout=30)
            assert "packet sockets take only DockNet's frames" in shown.stdout, shown.stdout + shown.stderr
            srv = hosts.run(0, [sys.executable, str(PEER), "echo-server", "--name", "f-srv"], "f-srv")
            addr = srv.expect("ready", timeout=60)["address"]
            before = hosts.status(0)
            # 30000 datagrams of the kernel's, both ways, to the other
            # namespace's own addresses over the same veth.
            for dst in (topo.addr(0), KERNEL6[0]):
                _blast(topo, 1, dst, 10000)
            _blast(topo, 0, topo.addr(1), 10000)
            after = hosts.status(0)
            got = after["uplink"]["rx_frames"] - before["uplink"]["rx_frames"]
            assert got < 50, f"the master was handed {got} of the kernel's 30000 frames"
            # Spaced out, each would wake a sleeping switch.
            _blast(topo, 1, topo.addr(0), 1000, gap=0.001)
            woke = hosts.status(0)["switch"]["sleeps"] - after["switch"]["sleeps"]
            assert woke < 200, f"1000 of the kernel's frames woke the switch {woke} times"
            # DockNet's own frames on the same interface still get through.
            cli = hosts.run(1, [sys.executable, str(PEER), "echo-client", "--name", "f-cli", "--target", addr,
                                "--bytes", str(1 << 20), "--half-close", "--timeout", "60"], "f-cli")
            done = cli.expect("done", timeout=90)
            assert done["ok"] and done["recv_sha256"] == done["sent_sha256"], done
        finally:
            hosts.close()
