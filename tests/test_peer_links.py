"""Peer links (native/stack/dn_link.h): frame links the master sets up
between two endpoints' stacks where the switch would only forward. Real
master, real DockNetLoop processes (tests/pl_peer.py, fast channels off so
TCP takes lwIP), a hostile endpoint that attaches like a slave
(tests/hostile_peer.py peerlink).

What is checked: frames between two such endpoints stop going through the
switch (its port counters stay still) and arrive intact, TCP and UDP over
IPv4 and IPv6; the link goes as soon as the switch must stand between them
again (an ingress limit, faults, a second process) and traffic goes on
through the switch on the same connection; an egress limit is kept by the
sender on the link; no link with --no-peer-links; and a peer
can neither speak for another address nor keep its peer from sleeping,
whatever it writes on the link."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.cli.netns import create_netns, delete_netns
from dn_harness import Master, Proc, running_master, wait_for

PL_PEER = Path(__file__).resolve().parent / "pl_peer.py"
HOSTILE = Path(__file__).resolve().parent / "hostile_peer.py"
PORT = 7100


def start(master: Master, name: str, *args: str) -> Proc:
    env = dict(master.env, DOCKNET_ENDPOINT=name, DOCKNET_FAST_CHANNELS="0")
    p = Proc([sys.executable, str(PL_PEER), *args], env, name)
    master.peers.append(p)
    return p


def pair(master: Master) -> tuple[Proc, Proc, str]:
    srv = start(master, "srv", "server", "--port", str(PORT))
    address = srv.expect("ready")["address"]
    cli = start(master, "cli", "client", "--host", address, "--port", str(PORT))
    cli.expect("connected")
    return srv, cli, address


def stats(p: Proc) -> dict[str, Any]:
    p.send("stats")
    return p.expect("stats")


def pingpong(p: Proc, n: int) -> None:
    p.send(f"pingpong {n}")
    assert p.expect("pingpong")["ok"]


def switch_frames(master: Master, name: str) -> int:
    row = next(e for e in master.status()["endpoints"] if e["name"] == name)
    return int(row["counters"]["rx_frames"] + row["counters"]["tx_frames"])


def links_up(master: Master) -> int:
    return int(master.status()["peer_links"]["up"])


def test_peer_link_carries_tcp_and_udp_past_the_switch(master: Master) -> None:
    srv, cli, _ = pair(master)
    pingpong(cli, 10)
    wait_for(lambda: stats(cli)["peer_links"] == 1 and stats(srv)["peer_links"] == 1)
    before = switch_frames(master, "srv") + switch_frames(master, "cli")
    pingpong(cli, 2000)
    cli.send("udp 500")
    assert cli.expect("udp")["ok"]
    c, s = stats(cli), stats(srv)
    # 2000 round trips and 500 datagrams each way, none through the switch.
    assert c["peer_tx_frames"] >= 2500 and s["peer_tx_frames"] >= 2500, (c, s)
    assert c["peer_rx_frames"] >= 2500 and s["peer_rx_frames"] >= 2500, (c, s)
    assert switch_frames(master, "srv") + switch_frames(master, "cli") - before < 20
    assert c["peer_rx_dropped"] == 0 and s["peer_rx_dropped"] == 0
    st = master.status()["peer_links"]
    # 2500 frames of 64 bytes and more each way, read from the link.
    assert st.pop("bytes") >= 2 * 2500 * (64 + 54), st
    assert st == {"enabled": True, "up": 1, "made": 1, "removed": 0}
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    # Each endpoint's share, in /v1/stats and /metrics: what one sent the
    # other received.
    eps = api.call("GET", "/v1/stats")["endpoints"]
    assert eps["cli"]["peer_tx_bytes"] >= 2500 * (64 + 54), eps["cli"]
    assert (eps["cli"]["peer_tx_bytes"], eps["cli"]["peer_rx_bytes"]) == (
        eps["srv"]["peer_rx_bytes"], eps["srv"]["peer_tx_bytes"]), eps
    peer_bytes = {(m.labels["endpoint"], m.labels["direction"]): m.value
                  for fam in text_string_to_metric_families(api.call("GET", "/metrics"))
                  for m in fam.samples if m.name == "docknet_endpoint_bytes_total" and m.labels["path"] == "peer"}
    assert peer_bytes[("cli", "transmit")] >= eps["cli"]["peer_tx_bytes"] > 0, peer_bytes
    assert peer_bytes[("srv", "receive")] >= eps["srv"]["peer_rx_bytes"], peer_bytes
    # `docknet ss` says which connections take the link.
    rows = api.call("GET", "/v1/endpoints/cli/connections")["connections"]
    assert [r["path"] for r in rows if r["kind"] == "tcp"] == ["peer"], rows


def test_peer_link_keeps_to_an_egress_limit(master: Master) -> None:
    """An egress limit is the sender's to keep on its peer links, as on fast
    channels: the link stays up, and frames beyond the limit go through the
    switch, whose bucket holds them back, so both paths together keep to
    it. Tried: 16 MiB from a client limited to 64 Mbit/s, echoed by an
    unlimited server (without the sender's bucket the link carries it at
    several Gbit/s); then round trips well under the limit, which the link
    carries; the limit lifted, the 16 MiB at full speed."""
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    srv, cli, _ = pair(master)
    pingpong(cli, 10)
    wait_for(lambda: links_up(master) == 1 and stats(cli)["peer_links"] == 1)
    limit = 64_000_000
    api.call("PUT", "/v1/endpoints/cli/limit", {"egress": limit})
    assert links_up(master) == 1
    wait_for(lambda: stats(cli)["peer_egress_bits"] == limit)
    before = stats(cli)
    cli.send(f"bulk {16 << 20}")
    got = cli.expect("bulk", timeout=60)
    assert got["ok"], got
    rate = (16 << 20) * 8 / got["seconds"]
    after = stats(cli)
    print(f"16 MiB at an egress limit of {limit / 1e6:.0f} Mbit/s: {rate / 1e6:.1f} Mbit/s, "
          f"{after['peer_tx_frames'] - before['peer_tx_frames']} frames over the link, "
          f"{after['peer_tx_limited'] - before['peer_tx_limited']} through the switch for want of tokens")
    assert rate < 1.3 * limit, f"{rate / 1e6:.1f} Mbit/s past a limit of {limit / 1e6:.0f}"
    assert after["peer_tx_limited"] > before["peer_tx_limited"], (before, after)
    # Under the limit, the link carries it: 500 round trips of 64 bytes,
    # once what the switch still held of the stream has been paid for (it
    # was charged to the client's bucket too: a few hundred ms at most).
    assert links_up(master) == 1
    time.sleep(1.0)
    after = stats(cli)
    frames = switch_frames(master, "cli")
    pingpong(cli, 500)
    again = stats(cli)
    assert again["peer_tx_frames"] - after["peer_tx_frames"] >= 500, (after, again)
    assert switch_frames(master, "cli") - frames < 50
    api.call("PUT", "/v1/endpoints/cli/limit", {"egress": 0})
    wait_for(lambda: stats(cli)["peer_egress_bits"] == 0)
    cli.send(f"bulk {16 << 20}")
    got = cli.expect("bulk", timeout=60)
    assert got["ok"] and (16 << 20) * 8 / got["seconds"] > 2 * limit, got


def test_peer_link_carries_ipv6_too(master: Master) -> None:
    """The endpoints dialled by their IPv6 addresses: the frames take the
    link as well (neighbour discovery, multicast, goes through the
    switch)."""
    srv = start(master, "srv", "server", "--port", str(PORT))
    address6 = srv.expect("ready")["address6"]
    assert address6 is not None
    cli = start(master, "cli", "client", "--host", address6, "--port", str(PORT))
    cli.expect("connected")
    pingpong(cli, 10)
    wait_for(lambda: stats(cli)["peer_links"] == 1)
    before = switch_frames(master, "srv") + switch_frames(master, "cli")
    pingpong(cli, 1000)
    cli.send("udp 200")
    assert cli.expect("udp")["ok"]
    c = stats(cli)
    assert c["peer_tx_frames"] >= 1200 and c["peer_rx_frames"] >= 1200, c
    assert switch_frames(master, "srv") + switch_frames(master, "cli") - before < 20


def test_peer_link_goes_when_the_switch_must_stand_between(master: Master) -> None:
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    srv, cli, _ = pair(master)
    pingpong(cli, 10)
    wait_for(lambda: links_up(master) == 1 and stats(cli)["peer_links"] == 1)

    # An ingress limit is the switch's to enforce: the link goes, on both
    # sides, and the open connection goes on through the switch.
    api.call("PUT", "/v1/endpoints/srv/limit", {"ingress": 10**9})
    assert links_up(master) == 0
    wait_for(lambda: stats(cli)["peer_links"] == 0 and stats(srv)["peer_links"] == 0)
    before = switch_frames(master, "srv")
    pingpong(cli, 1000)
    assert switch_frames(master, "srv") - before >= 2000

    # Limits lifted: the next connection asks again and gets one.
    api.call("PUT", "/v1/endpoints/srv/limit", {"ingress": 0})
    cli.send("reconnect")
    cli.expect("connected")
    wait_for(lambda: links_up(master) == 1 and stats(cli)["peer_links"] == 1)
    pingpong(cli, 100)

    # Faults are injected by the switch: the same.
    api.call("PUT", "/v1/endpoints/cli/faults", {"drop_ppm": 1})
    assert links_up(master) == 0
    wait_for(lambda: stats(cli)["peer_links"] == 0 and stats(srv)["peer_links"] == 0)
    pingpong(cli, 100)
    st = master.status()["peer_links"]
    assert st.pop("bytes") > 0 and st == {"enabled": True, "up": 0, "made": 2, "removed": 2}, st
    # Links taken down: each endpoint's peer bytes stay counted.
    eps = api.call("GET", "/v1/stats")["endpoints"]
    assert eps["cli"]["peer_tx_bytes"] >= 110 * 64 and eps["srv"]["peer_rx_bytes"] == eps["cli"]["peer_tx_bytes"]

    # An endpoint that leaves takes its links with it.
    api.call("DELETE", "/v1/endpoints/cli/faults")
    cli.send("reconnect")
    cli.expect("connected")
    wait_for(lambda: links_up(master) == 1)
    cli.stop()
    wait_for(lambda: links_up(master) == 0 and stats(srv)["peer_links"] == 0)


def test_a_second_process_of_an_endpoint_takes_its_links_down(master: Master) -> None:
    """An endpoint registered for a namespace, its first process linked to
    a client: when a second process joins, the switch steers between the
    two, so the link goes and the client's connection goes on through the
    switch to the first."""
    api = ApiClient(os.path.join(master.run_dir, "api.sock"))
    ns_name = f"dn-pl-{uuid.uuid4().hex[:8]}"
    ns = create_netns(ns_name)
    try:
        secret = api.call("POST", "/v1/endpoints", {"name": "srv", "netns": ns})["secret"]

        def in_ns(*args: str) -> Proc:
            env = dict(master.env, DOCKNET_ENDPOINT="srv", DOCKNET_SECRET=secret, DOCKNET_REQUIRE="1",
                       DOCKNET_FAST_CHANNELS="0")
            p = Proc(["ip", "netns", "exec", ns_name, sys.executable, str(PL_PEER), *args], env, "srv")
            master.peers.append(p)
            return p

        first = in_ns("server", "--port", str(PORT))
        address = first.expect("ready", timeout=60)["address"]
        cli = start(master, "cli", "client", "--host", address, "--port", str(PORT))
        cli.expect("connected")
        pingpong(cli, 10)
        wait_for(lambda: links_up(master) == 1 and stats(cli)["peer_links"] == 1)
        second = in_ns("server", "--port", str(PORT + 1))
        second.expect("ready", timeout=60)
        assert wait_for(lambda: links_up(master) == 0)
        wait_for(lambda: stats(cli)["peer_links"] == 0 and stats(first)["peer_links"] == 0)
        before = switch_frames(master, "srv")
        pingpong(cli, 500)
        assert switch_frames(master, "srv") - before >= 1000
        # With two processes no new link is made, however often it is asked.
        cli.send("reconnect")
        cli.expect("connected")
        pingpong(cli, 100)
        assert links_up(master) == 0 and stats(cli)["peer_links"] == 0
        master.stop_peers()
    finally:
        delete_netns(ns_name)


def test_no_peer_links_when_the_master_is_told_so() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (DPDK, hugepages)")
    with running_master(extra=["--no-peer-links"]) as master:
        srv, cli, _ = pair(master)
        pingpong(cli, 10)
        before = switch_frames(master, "srv")
        pingpong(cli, 500)
        assert switch_frames(master, "srv") - before >= 1000
        assert stats(cli)["peer_links"] == 0
        assert master.status()["peer_links"] == {"enabled": False, "up": 0, "made": 0, "removed": 0, "bytes": 0}


def test_a_hostile_peer_cannot_speak_for_others_or_keep_its_peer_awake(master: Master) -> None:
    """The hostile endpoint gets a link to srv and puts on it: legitimate
    datagrams over IPv4 and IPv6 (srv takes them), then frames with another
    endpoint's source address (either family) or hardware address, for
    another address or hardware address, ARP, an IPv6 header of another
    version and runts (srv drops every one); then it tries to resize the
    memory, publishes a ring position that cannot be true and scribbles
    over the link's doorbell and positions. srv stops reading that link,
    sleeps, and serves an honest client over its own peer link."""
    srv = start(master, "srv", "server", "--port", str(PORT))
    address = srv.expect("ready")["address"]
    evil = Proc([sys.executable, str(HOSTILE), "peerlink", "--name", "evil", "--target", address,
                 "--port", str(PORT), "--count", "50", "--seconds", "1"], master.env, "evil")
    master.peers.append(evil)
    evil.expect("linked")
    wait_for(lambda: stats(srv)["peer_links"] == 1)
    evil.send("frames")
    sent = evil.expect("frames")
    s = wait_for(lambda: (lambda s: s if s["peer_rx_frames"] + s["peer_rx_dropped"] >= sent["legit"] + sent["bad"]
                          else None)(stats(srv)))
    assert s["peer_rx_frames"] == sent["legit"], s
    assert s["peer_rx_dropped"] == sent["bad"], s
    assert s["peer_links_broken"] == 0

    evil.send("break")
    done = evil.expect("done")
    assert done["shrink"] == "EPERM" and done["grow"] == "EPERM", done
    s = wait_for(lambda: (lambda s: s if s["peer_links_broken"] == 1 else None)(stats(srv)))
    # Idle with a broken link beside it: it sleeps.
    cpu = s["cpu"]
    time.sleep(2)
    assert stats(srv)["cpu"] - cpu < 0.3

    cli = start(master, "cli", "client", "--host", address, "--port", str(PORT))
    cli.expect("connected")
    pingpong(cli, 500)
    wait_for(lambda: stats(cli)["peer_links"] == 1)
    pingpong(cli, 500)
    assert stats(cli)["peer_rx_frames"] >= 500
    assert master.proc.popen.poll() is None
    evil.send("end")
