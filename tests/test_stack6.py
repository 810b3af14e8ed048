"""The slave stack's IPv6 calls, on real lwIP through a real master's link.

Until the switch forwards IPv6 (and the master's attach reply carries the
address), a stack reaches its own IPv6 address over lwIP's loopback: what
it sends to itself goes down lwIP's whole IPv6 output and back up its input
(TCP, UDP, ICMPv6), the same code a frame from the link takes above the
netif. Frames from the link are the fuzz harness's (fuzz/fuzz_stack.c,
IPv6 seeds). One stack per process (lwIP's globals), so each stack runs in
tests/stack6_peer.py, started once for the module; the tests read what it
saw.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dn_harness import Master, Proc, running_master

PEER = Path(__file__).resolve().parent / "stack6_peer.py"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (DPDK, hugepages)")


@pytest.fixture(scope="module")
def master6() -> Iterator[Master]:
    with running_master() as m:
        yield m


@pytest.fixture(scope="module")
def runs(master6: Master) -> dict[str, dict[str, Any]]:
    # "checked": the dual run again on a link with TCP, UDP and ICMPv6
    # checksums made and checked (the links the switch is told to damage):
    # lwIP's loopback checks them as the link's input would.
    env = {"dual": master6.env, "v4only": master6.env, "checked": {**master6.env, "DOCKNET_LINK_CHECKSUMS": "1"}}
    procs = {run: subprocess.Popen([sys.executable, str(PEER), "dual" if run == "checked" else run,
                                    "--name", f"s6-{run}"], env=env[run],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for run in env}
    out = {}
    for mode, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, f"{mode}: {stderr[-3000:]}"
        out[mode] = json.loads(stdout.strip().splitlines()[-1])
    return out


@pytest.fixture(scope="module")
def dual(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return runs["dual"]


def test_the_address_follows_the_ipv4_host_part(dual: dict[str, Any]) -> None:
    host = dual["address"].split(".")[-1]
    assert dual["address6"] == f"fd77:d0c::{int(host):x}"
    assert dual["info"]["gateway6"] == "fd77:d0c::1"
    assert dual["info"]["prefix6"] == 64


def test_v6_tcp_echo_of_a_mib_has_the_same_sha256(dual: dict[str, Any]) -> None:
    t = dual["tcp6"]
    assert t["errors"] == []
    assert t["srv_n"] == t["cli_n"] == 1 << 20
    assert t["srv_sha256"] == t["sent_sha256"]
    assert t["cli_sha256"] == t["sent_sha256"]
    # Accepted by the IPv6 listener, not by the IPv4 one on the same port.
    assert t["listener"] == dual["listeners"]["l6"]


def test_v6_names_are_ipv6_strings_in_both_directions(dual: dict[str, Any]) -> None:
    a6 = dual["address6"]
    t = dual["tcp6"]
    assert t["family_cli"] == t["family_srv"] == socket.AF_INET6
    assert t["cli_peername"] == [a6, 7000]
    assert t["srv_sockname"] == [a6, 7000]
    assert t["cli_sockname"][0] == a6 and t["srv_peername"] == t["cli_sockname"]
    # The client's port is one of the process's ephemeral range.
    lo, hi = dual["info"]["ports"]
    assert lo <= t["cli_sockname"][1] <= hi
    # A listener on :: names the stack's address.
    assert dual["listeners"]["l6_sockname"] == [a6, 7000]
    # Bound to the address itself rather than ::.
    b = dual["tcp6_bound"]
    assert b["listener"] == b["l6b"] and b["cli_peername"] == [a6, 7001]
    assert b["cli_sha256"] == b["sent_sha256"]


def test_connections_rows_carry_the_family(dual: dict[str, Any]) -> None:
    a6 = dual["address6"]
    listen = {r["family"]: r for r in dual["listen_rows"]}
    assert listen[6]["local"] == "[::]:7000" and listen[4]["local"] == "0.0.0.0:7000"
    rows = dual["tcp6"]["rows"]
    assert {r["family"] for r in rows} == {6}
    port = dual["tcp6"]["cli_sockname"][1]
    assert {(r["local"], r["peer"]) for r in rows} == {(f"[{a6}]:{port}", f"[{a6}]:7000"),
                                                       (f"[{a6}]:7000", f"[{a6}]:{port}")}
    assert {r["family"] for r in dual["tcp4"]["rows"]} == {4}


def test_v4_still_works_on_the_same_stack_and_port(dual: dict[str, Any]) -> None:
    t = dual["tcp4"]
    assert t["errors"] == []
    assert t["cli_sha256"] == t["srv_sha256"] == t["sent_sha256"]
    assert t["listener"] == dual["listeners"]["l4"]
    assert t["family_cli"] == socket.AF_INET
    assert t["cli_peername"] == [dual["address"], 7000]
    assert dual["listeners"]["family_l4"] == socket.AF_INET
    assert dual["listeners"]["family_l6"] == socket.AF_INET6


def test_v6_udp_sendto_and_recvfrom(dual: dict[str, Any]) -> None:
    a6 = dual["address6"]
    u = dual["udp6"]
    assert u["family"] == socket.AF_INET6
    assert u["srv_got"] == ["ping over udp", [a6, u["cli_port"]]]
    assert u["cli_got"] == ["pong", [a6, 5300]]
    assert u["srv_sockname"] == [a6, 5300]
    assert {r["family"] for r in u["rows"]} == {6}
    # IPv4 UDP on the same port number, on the same stack.
    u4 = dual["udp4"]
    assert u4["family"] == socket.AF_INET
    assert u4["srv_got"] == ["ping over udp", [dual["address"], u4["cli_port"]]]


def test_a_family_mismatch_is_refused(dual: dict[str, Any]) -> None:
    m = dual["mismatch"]
    assert m["udp6_to_v4"][0] == "EAFNOSUPPORT" and "IPv6, not IPv4" in m["udp6_to_v4"][1]
    assert m["udp4_to_v6"][0] == "EAFNOSUPPORT" and "IPv4, not IPv6" in m["udp4_to_v6"][1]
    assert m["v4_names_of_v6"] == ["none", str(-errno.EAFNOSUPPORT)]
    assert m["multicast"][0] == "EADDRNOTAVAIL"
    assert m["bad_host"][0] == "ValueError"


def test_a_v6_port_nobody_listens_on_is_refused(dual: dict[str, Any]) -> None:
    assert dual["refused"] == "ECONNREFUSED"


def test_ping6_gets_its_reply(dual: dict[str, Any]) -> None:
    assert dual["ping6_seq"] == 77


def test_reset_peer6_ends_only_the_v6_connections(dual: dict[str, Any]) -> None:
    # The peer is the stack itself: both ends of the IPv6 connection.
    r = dual["reset6"]
    assert r["n"] == 2
    assert r["errors"][str(r["c6"])] == "ECONNRESET"
    assert str(r["c4"]) not in r["errors"]
    assert r["c4_still"] == len(b"still here")


def test_off_prefix_goes_to_the_gateway(dual: dict[str, Any]) -> None:
    off = dual["off_prefix"]
    assert off.get("frames", 0) >= 1, off
    assert off["state"] == ["SYN-SENT"]


def test_loopback_traffic_stays_off_the_link(dual: dict[str, Any]) -> None:
    # A MiB and more went through the stack, a frame or two to the switch.
    assert dual["stats"]["tx_frames"] < 10


def test_a_v4_only_stack_refuses_every_v6_call(runs: dict[str, dict[str, Any]]) -> None:
    v4 = runs["v4only"]
    assert v4["address6"] is None
    for call in ("listen6", "connect6", "udp_bind6", "sendto6", "ping6", "reset_peer6"):
        name, why = v4[call]
        assert name == "EAFNOSUPPORT", (call, v4[call])
        assert "no IPv6 address" in why
    assert v4["ip6"] == ["none", str(-errno.EAFNOSUPPORT)]
    t = v4["tcp4"]
    assert t["cli_sha256"] == t["srv_sha256"] == t["sent_sha256"]


def test_two_stacks_over_the_switch(master6: Master) -> None:
    """Two processes, each a stack with the address the master gave it:
    neighbour discovery through the switch, then a MiB of TCP echo and a
    datagram over IPv6. Needs a master that gives IPv6 addresses (its
    status names a subnet6) and a switch that carries IPv6."""
    m = master6
    if not m.status().get("subnet6"):
        pytest.skip("this master gives no IPv6 addresses (no subnet6 in its status)")
    srv = Proc([sys.executable, str(PEER), "server", "--name", "srv6"], m.env, "srv6")
    m.peers.append(srv)
    ready = srv.expect("ready")
    a6 = ready["address6"]
    assert a6 is not None
    cli = Proc([sys.executable, str(PEER), "client", "--name", "cli6", "--target", a6], m.env, "cli6")
    m.peers.append(cli)
    connected = cli.expect("connected", timeout=30)
    assert connected["peername"] == [a6, 7000]
    accepted = srv.expect("accepted")
    assert accepted["family"] == socket.AF_INET6
    assert accepted["peername"] == connected["sockname"]
    done = cli.expect("done", timeout=60)
    assert done["error"] == ""
    assert done["recv"] == 1 << 20 and done["recv_sha256"] == done["sent_sha256"]
    assert done["udp"] == ["datagram", [a6, 5300]]
    assert srv.expect("udp")["source"] == done["udp_sockname"]
    assert cli.wait() == 0


def test_v6_with_checksums_made_and_checked(runs: dict[str, dict[str, Any]]) -> None:
    checked = runs["checked"]
    t = checked["tcp6"]
    assert t["errors"] == [] and t["cli_sha256"] == t["srv_sha256"] == t["sent_sha256"]
    assert checked["udp6"]["cli_got"] == ["pong", [checked["address6"], 5300]]
    assert checked["ping6_seq"] == 77
    assert checked["tcp4"]["cli_sha256"] == checked["tcp4"]["sent_sha256"]
