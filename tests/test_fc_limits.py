"""Fast channels at a process's descriptor limit: they cost no descriptor
a connection (the eventfds are kept once per endpoint), and an offer that
arrives without its descriptors ends in a prompt reset that the master
frees at once, not in a connection nobody serves."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path
from typing import Any

import pytest

from dn_harness import Master, Proc, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (DPDK, hugepages)")

FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"


def fc_proc(master: Master, name: str, *args: str) -> Proc:
    env = dict(master.env, DOCKNET_ENDPOINT=name, DOCKNET_FAST_CHANNELS="1")
    p = Proc([sys.executable, str(FC_PEER), *args], env, name)
    master.peers.append(p)
    return p


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))




def test_many_fast_connections_under_a_small_descriptor_limit(master: Master) -> None:
    """Tried: a server whose descriptor limit is 256 (as `ulimit -n 256`)
    takes 600 concurrent fast connections from one client. Before, each
    cost it two descriptors: 117 of 300 echoed and the rest timed out
    after 30 s with nothing logged; the master kept 183 channels open
    after the client was gone."""
    srv = fc_proc(master, "fds-server", "server", "--port", "7500")
    ready = srv.expect("ready", timeout=60)
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (256, resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)[1]))
    before = fds_of(srv.pid)
    c = fc_proc(master, "fds-client", "client", "--host", ready["address"], "--port", "7500", "many", "600")
    res = c.expect("result", timeout=120)
    assert res["echoed"] == 600 and res["transports"] == ["FastChannelTransport"], res
    assert res["open_channels"] == 600
    assert c.wait(30) == 0
    assert wait_for(lambda: master.status()["fast_channels"]["open"] == 0, 10), master.status()["fast_channels"]
    assert fds_of(srv.pid) <= before + 2  # the eventfds for the client's endpoint, if still held


def test_an_offer_without_its_descriptors_resets_at_once(master: Master) -> None:
    """Tried: the server's descriptor limit set to what it has open, so an
    offer's descriptors cannot reach it (the kernel truncates them). The
    client's connection must end at once with a reset, the master must
    not keep the channel, and once the limit is raised a new connection
    is carried by a fast channel again."""
    srv = fc_proc(master, "full-server", "server", "--port", "7501")
    ready = srv.expect("ready", timeout=60)
    n = fds_of(srv.pid)
    soft, hard = resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (n, resource.prlimit(srv.pid,
                                  resource.RLIMIT_NOFILE)[1]))
    c = fc_proc(master, "full-client", "client", "--host", ready["address"], "--port", "7501", "connect")
    res = c.expect("result", timeout=60)
    assert res["outcome"] == "lost" and res["error"] == "ConnectionResetError", res
    assert res["seconds"] < 5, res
    assert wait_for(lambda: master.status()["fast_channels"]["open"] == 0, 10), master.status()["fast_channels"]
    assert "fast channel not usable" in wait_for(lambda: "fast channel not usable" in srv.stderr_tail()
                                                 and srv.stderr_tail(), 10)
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (soft, hard))
    c = fc_proc(master, "later-client", "client", "--host", ready["address"], "--port", "7501", "connect")
    res = c.expect("result", timeout=60)
    assert res["outcome"] == "connected" and res["transport"] == "FastChannelTransport", res


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_idle_fast_connections_cost_little_memory(master: Master) -> None:
    """2,000 idle fast connections between two processes: each side's
    memory grows by at most 32 KiB a connection (a connection's own pages
    of the shared region, its transport and the application's streams).
    Before, every channel held a 256 KiB read buffer of its own: about
    150 KiB a connection in each process, 1.5 GB for 10,000."""
    srv = fc_proc(master, "mem-server", "server", "--port", "7502")
    ready = srv.expect("ready", timeout=60)
    base = rss_kb(srv.pid)
    n = 2000
    c = fc_proc(master, "mem-client", "client", "--host", ready["address"], "--port", "7502", "many", str(n), "hold")
    held = c.expect("held", timeout=120)
    assert held["echoed"] == n
    grown = rss_kb(srv.pid) - base
    assert grown <= 32 * n, f"server grew by {grown / n:.1f} KiB a connection"
    # The client attached and opened its connections in one go: its whole
    # memory, less what an idle DockNetLoop process has (the server's base).
    assert held["rss_kb"] - base <= 32 * n, f"client: {(held['rss_kb'] - base) / n:.1f} KiB a connection"
    c.send("go")
    assert c.expect("result", timeout=120)["echoed"] == n


def test_a_client_at_its_descriptor_limit_takes_the_switch(master: Master) -> None:
    """Tried: a client sets its own descriptor limit to what it has open
    (setrlimit, after a first fast connection) and opens 20 connections
    one after another. No channel's descriptors can reach it: each
    connection must take the switch path (lwIP needs no descriptor) and
    echo, none may hang or fail; the master must free every channel it
    made for them, and the client say why, not once a connection."""
    srv = fc_proc(master, "lim-server", "server", "--port", "7502")
    ready = srv.expect("ready", timeout=60)
    c = fc_proc(master, "lim-client", "client", "--host", ready["address"], "--port", "7502", "limited", "20")
    res = c.expect("result", timeout=120)
    assert res["first"] == "first\n" and res["first_transport"] == "FastChannelTransport", res
    assert res["outcomes"] == {"DockNetTCPTransport:echoed": 20}, res
    assert res["seconds"] < 10, res
    # Freed while the client is still there: given back, not left to its exit.
    assert wait_for(lambda: master.status()["fast_channels"]["open"] == 0, 10), master.status()["fast_channels"]
    c.send("go")
    assert c.wait(30) == 0
    warnings = c.stderr_tail().count("fast channel not usable")
    assert 1 <= warnings <= 2, c.stderr_tail()


def test_many_offers_at_a_full_server_end_promptly(master: Master) -> None:
    """Tried: the server's descriptor limit set to what it has open, then
    10 connections from a client, one after another. Each connect returns
    at once; each connection then ends with a reset within seconds (the
    offer's descriptors never reached the server), none hangs; the master
    frees all 10 channels; the server says why a few times, not 10."""
    srv = fc_proc(master, "full-server2", "server", "--port", "7503")
    ready = srv.expect("ready", timeout=60)
    n = fds_of(srv.pid)
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (n, resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)[1]))
    for i in range(10):
        c = fc_proc(master, f"full-client-{i}", "client", "--host", ready["address"], "--port", "7503", "connect")
        res = c.expect("result", timeout=60)
        assert res["outcome"] == "lost" and res["error"] == "ConnectionResetError", res
        assert res["seconds"] < 5, res
        assert c.wait(30) == 0
    assert wait_for(lambda: master.status()["fast_channels"]["open"] == 0, 10), master.status()["fast_channels"]
    warnings = srv.stderr_tail().count("fast channel not usable")
    assert 1 <= warnings <= 3, srv.stderr_tail()
