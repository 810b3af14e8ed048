"""Fast channels between services of one master, end to end: real
processes (tests/fc_peer.py), each its own endpoint with a DockNetLoop, a
real master brokering, its API checked for what it says it did."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiodocknet.cli.api_client import ApiClient
from dn_harness import Master, Proc, running_master, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (DPDK, hugepages)")

FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"
MiB = 1 << 20


def api(master: Master) -> ApiClient:
    return ApiClient(os.path.join(master.run_dir, "api.sock"))


def fc_proc(master: Master, name: str, *args: str, fast: bool = True, argv: list[str] | None = None) -> Proc:
    """A tests/fc_peer.py process; fast False: its connections go through
    the switch (no fast channels, no peer links)."""
    env = dict(master.env, DOCKNET_ENDPOINT=name, DOCKNET_FAST_CHANNELS="1" if fast else "0",
               DOCKNET_PEER_LINKS="1" if fast else "0")
    p = Proc([*(argv or []), sys.executable, str(FC_PEER), *args], env, name)
    master.peers.append(p)
    return p


def start_server(master: Master, name: str, port: int = 7000) -> dict[str, Any]:
    return fc_proc(master, name, "server", "--port", str(port)).expect("ready", timeout=60)


def client(master: Master, name: str, srv: dict[str, Any], *mode: str, fast: bool = True) -> Proc:
    return fc_proc(master, name, "client", "--host", srv["address"], "--port", str(srv["port"]), *mode, fast=fast)




@pytest.fixture(scope="module")
def master() -> Iterator[Master]:
    with running_master("dn-fc-") as m:
        yield m


@pytest.fixture(scope="module")
def server(master: Master) -> dict[str, Any]:
    return start_server(master, "fc-server")


def test_256_mib_each_way_intact(master: Master, server: dict[str, Any]) -> None:
    """256 MiB in each direction at once over one fast channel; both
    digests match the sender's (blocks carry their index, so a lost,
    doubled or reordered block shows)."""
    before = master.status()["fast_channels"]
    c = client(master, "fc-duplex", server, "duplex", str(256 * MiB), "7")
    res = c.expect("result", timeout=240)
    srv = next(p for p in master.peers if p.name == "fc-server").expect("duplex", timeout=30)
    assert res["transport"] == srv["transport"] == "FastChannelTransport"
    assert res["recv_bytes"] == srv["recv_bytes"] == 256 * MiB
    assert res["sent_sha256"] == srv["recv_sha256"]
    assert srv["sent_sha256"] == res["recv_sha256"]
    assert c.wait(30) == 0
    after = wait_for(lambda: (s := master.status()["fast_channels"])["open"] == 0 and s)
    assert after["made"] == before["made"] + 1
    # The master counted the channel's bytes, both ways, and freed it.
    assert after["bytes"] - before["bytes"] >= 2 * 256 * MiB
    assert after["memory"] == 0


def test_200_concurrent_channels(master: Master, server: dict[str, Any]) -> None:
    """200 connections open at once between two services: 200 channels in
    the master's books (each with its own ephemeral port), every one echoes
    its own message, all released afterwards."""
    c = client(master, "fc-many", server, "many", "200")
    res = c.expect("result", timeout=120)
    assert c.wait(30) == 0
    assert res["transports"] == ["FastChannelTransport"]
    assert res["open_channels"] == 200 and res["client_ports"] == 200
    assert res["echoed"] == 200
    assert wait_for(lambda: master.status()["fast_channels"]["open"] == 0)


def test_peer_killed_mid_transfer(master: Master) -> None:
    """The receiving service is SIGKILLed while a client streams to it over
    a fast channel: the client's write fails with ConnectionResetError
    within a second, it keeps no mapping of the channel, and the master
    drops the channel and its memory."""
    victim = start_server(master, "fc-victim", 7100)
    c = client(master, "fc-streamer", victim, "stream")
    assert c.expect("connected")["transport"] == "FastChannelTransport"
    c.send("go")
    c.expect("streaming")
    time.sleep(0.3)
    assert master.status()["fast_channels"]["open"] == 1
    proc = next(p for p in master.peers if p.name == "fc-victim")
    t0 = time.monotonic()
    proc.kill(signal.SIGKILL)
    lost = c.expect("lost", timeout=10)
    took = time.monotonic() - t0
    assert lost["error"] == "ConnectionResetError", lost
    assert took < 1.0, took
    assert c.expect("after")["channel_maps"] == 0
    st = wait_for(lambda: (s := master.status()["fast_channels"])["open"] == 0 and s)
    assert st and st["memory"] == 0, master.status()["fast_channels"]
    assert c.wait(30) == 0


def test_rate_limit_holds_over_fast_channel(master: Master, server: dict[str, Any]) -> None:
    """An endpoint limited to 50 Mbit/s egress (set live through the API,
    pushed by the master to the sending process) streams over a fast
    channel for 5 s: the receiver measures 50 Mbit/s within 10%."""
    c = client(master, "fc-limited", server, "stream")
    assert c.expect("connected")["transport"] == "FastChannelTransport"
    api(master).call("PUT", "/v1/endpoints/fc-limited/limit", {"egress": "50mbit"})
    time.sleep(0.3)
    c.send("go")
    c.expect("streaming")
    time.sleep(5)
    c.send("stop")
    c.expect("result", timeout=30)
    sink = next(p for p in master.peers if p.name == "fc-server").expect("sink", timeout=30)
    mbit = sink["bytes"] * 8 / sink["seconds"] / 1e6
    assert sink["transport"] == "FastChannelTransport"
    assert 45 <= mbit <= 55, sink
    assert c.wait(30) == 0


def test_ss_tells_fast_from_switch(master: Master, server: dict[str, Any]) -> None:
    """`ss` of the server lists one connection over a fast channel and one
    from a client with fast channels off (through the switch), each with
    its peer's DockNet address and port."""
    fast = client(master, "fc-ss-fast", server, "stream")
    slow = client(master, "fc-ss-switch", server, "stream", fast=False)
    assert fast.expect("connected")["transport"] == "FastChannelTransport"
    assert slow.expect("connected")["transport"] == "DockNetTCPTransport"
    rows = api(master).call("GET", "/v1/endpoints/fc-server/connections")["connections"]
    established = {r["path"] for r in rows if r["state"] == "ESTAB"}
    assert established == {"fast", "switch"}, rows
    addresses = {e["name"]: e["address"] for e in master.status()["endpoints"]}
    fast_row = next(r for r in rows if r["path"] == "fast")
    assert fast_row["peer"].split(":")[0] == addresses["fc-ss-fast"], fast_row
    assert fast_row["local"] == f"{server['address']}:{server['port']}"
    for p in (fast, slow):
        p.send("go")
        p.send("stop")
        p.expect("result", timeout=30)
        assert p.wait(30) == 0
    srv = next(p for p in master.peers if p.name == "fc-server")
    got = []
    try:
        got.append(srv.expect("sink", timeout=5))
        got.append(srv.expect("sink", timeout=5))
    except TimeoutError:
        print("DEBUG", got, srv.lines, fast.lines, slow.lines, srv.popen.poll())
        raise
    assert {g["transport"] for g in got} == {"FastChannelTransport", "DockNetTCPTransport"}, got


def test_fast_channels_off_at_the_master() -> None:
    """`docknet master --no-fast-channels`: the same connection goes
    through the switch and the master makes no channel."""
    with running_master("dn-fc-off-", ["--no-fast-channels"]) as m:
        srv = start_server(m, "off-server")
        c = client(m, "off-client", srv, "connect")
        res = c.expect("result", timeout=60)
        assert res["outcome"] == "connected" and res["transport"] == "DockNetTCPTransport", res
        assert res["echoed"] == "hello\n"
        st = m.status()["fast_channels"]
        assert st["made"] == 0 and not st["enabled"]


def test_policy_denied_pair_gets_no_channel_and_no_connection(master: Master) -> None:
    """Services of tenants a and b, each started with `docknet run` in its
    own namespace: b's connection to a is refused at once (no channel is
    made, none is open), and after `policy allow b a` the same connection
    is carried by a fast channel."""
    def run(name: str, tenant: str, *args: str) -> Proc:
        argv = [sys.executable, "-m", "aiodocknet.cli", "--api", os.path.join(master.run_dir, "api.sock"),
                "run", "--name", name, "--tenant", tenant, "--"]
        return fc_proc(master, name, *args, argv=argv)

    srv = run("fc-a", "a", "server", "--port", "7200").expect("ready", timeout=60)
    before = master.status()["fast_channels"]
    c = run("fc-b", "b", "client", "--host", srv["address"], "--port", "7200", "connect")
    res = c.expect("result", timeout=60)
    assert res["outcome"] == "ConnectionRefusedError" and "policy" in res["message"], res
    assert c.wait(30) == 0
    after = master.status()["fast_channels"]
    assert after["made"] == before["made"] and after["open"] == 0
    assert after["refused_by_policy"] == before["refused_by_policy"] + 1

    # fc-b has gone, and tenant b with it: a registration holds b while the
    # policy is set and fc-b2 starts.
    api(master).call("POST", "/v1/endpoints", {"name": "b-holder", "tenant": "b",
                                               "netns": f"/proc/{os.getpid()}/ns/net"})
    api(master).call("POST", "/v1/policy", {"from": "b", "to": "a"})
    c = run("fc-b2", "b", "client", "--host", srv["address"], "--port", "7200", "connect")
    res = c.expect("result", timeout=60)
    assert res["outcome"] == "connected" and res["transport"] == "FastChannelTransport", res
    assert res["echoed"] == "hello\n"
    assert c.wait(30) == 0
    assert master.status()["fast_channels"]["made"] == before["made"] + 1
