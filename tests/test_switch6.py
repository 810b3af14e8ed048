"""IPv6 through the switch (IPV6.md "C: switch"): a real switch and real
link rings, mapped by one probe process as the endpoints' slaves would map
them (tests/switch6_probe.py), raw frames written in and what comes out
read back with a parser of its own.

What was tried as a hostile endpoint: sources other than its own derived
address (another endpoint's, forms of the prefix with no IPv4 twin,
link-local, unspecified, IPv4-mapped, off the prefix); twelve next headers
that are not TCP/UDP/ICMPv6 (hop-by-hop, routing, fragment, ESP, AH, no
next header, destination options among them); payload lengths longer and
shorter than the frame, TCP data offsets below 5 and past the payload, cut
UDP and ICMPv6 headers, a version 4 header behind the IPv6 ethertype; 2,000
random or mutated frames; neighbour solicitations with a forwarded hop
limit, a target off the prefix, the wrong solicited-node group, a cut
message, a non-zero code; advertisements and router solicitations of its
own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROBE = Path(__file__).with_name("switch6_probe.py")
CHECKS = ["config", "forwarding", "spoofed", "next_header", "lying_lengths", "neighbour_solicitation",
          "reset_for_absent", "policy", "rate_limit", "faults", "steering", "lwip_neighbour"]


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    p = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True, timeout=120,
                       cwd=PROBE.parent)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("check", CHECKS)
def test_switch_ipv6(results: dict[str, Any], check: str) -> None:
    r = results[check]
    assert r["ok"], r.get("trace", r)


def test_every_check_ran(results: dict[str, Any]) -> None:
    assert sorted(results) == sorted(CHECKS)
