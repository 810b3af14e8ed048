"""IPv6 through the uplink (IPV6.md "C: switch"): a switch with a
net_af_packet uplink on a veth into a namespace where the kernel is the
neighbour. The probe (tests/switch6_probe.py uplink) runs in the first
namespace and maps its endpoint's link itself; the kernel in the second
answers what it found valid and pings the endpoint (`ping -6`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.topology import NetnsTopology

PROBE = Path(__file__).with_name("switch6_probe.py")
KERNEL6 = "fd77:d0c::c801/64"  # 10.77.200.1's twin (IPV6.md "Addressing")


def test_kernel_neighbour_over_ipv6() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with NetnsTopology(2, mode="veth") as topo:
        up, kernel = topo.namespaces
        # The uplink's side speaks for itself: no kernel IPv6 of its own there.
        subprocess.run(["ip", "netns", "exec", up, "sysctl", "-qw", "net.ipv6.conf.veth0.disable_ipv6=1"],
                       check=True)
        subprocess.run(["ip", "-n", kernel, "-6", "addr", "add", KERNEL6, "dev", "veth0", "nodad"], check=True)
        # The kernel's segments whole on the wire: with offload a packet
        # socket sees their checksums half done, and the probe checks them.
        subprocess.run(topo.exec_argv(1, ["ethtool", "-K", "veth0", "tx", "off"]), check=True,
                       capture_output=True)
        p = subprocess.run(topo.exec_argv(0, [sys.executable, str(PROBE), "uplink", kernel]), capture_output=True,
                           text=True, timeout=60, cwd=PROBE.parent)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["from_endpoint"] == {"echo": True, "tcp_reset": True, "udp_unreachable": True}
    assert out["ping_answered"] >= 3
    assert out["uplink_faults"] == {"tx_dropped": 1, "rx_dropped": 1}
    assert out["uplink"]["nd_solicits_sent"] >= 1 and out["uplink"]["nd_adverts_sent"] >= 1
