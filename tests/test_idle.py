"""Idle costs nothing: pollers sleep on their doorbells."""

from __future__ import annotations

import os
import time

import pytest

from dn_harness import Master

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of stat (12 and 13 after the name).
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_share(pid: int, seconds: float) -> float:
    """Share of one CPU that pid uses over the next seconds (from /proc)."""
    before = cpu_seconds(pid)
    t0 = time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - t0)


def test_idle_master_and_two_slaves_use_under_2_percent_cpu(master: Master) -> None:
    """A master and two attached slaves holding an open TCP connection,
    after some traffic, then nothing: together under 2% of one CPU over
    5 s (from /proc, not timed; 2% is 10 of its 10 ms ticks there)."""
    srv = master.peer("echo-server", "srv")
    addr = srv.expect("ready")["address"]
    cli = master.peer("connect", "cli", "--target", addr, "--timeout", "100")
    cli.expect("connected")
    ping = master.peer("ping", "warmup", "--target", addr, "--count", "20")
    ping.expect("done")
    ping.wait()
    time.sleep(1.0)  # let the spin phases end
    pids = [master.pid, srv.pid, cli.pid]
    before = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(5)
    elapsed = time.monotonic() - t0
    used = [cpu_seconds(p) - b for p, b in zip(pids, before)]
    share = sum(used) / elapsed
    print(f"idle CPU over {elapsed:.1f}s: {share:.2%} (master, server, client: {used})")
    assert share < 0.02, f"idle CPU {share:.1%} (master, server, client seconds: {used})"


def test_master_stops_spinning_for_a_trickle(master: Master) -> None:
    """An endpoint sends a 64-byte datagram every millisecond to one that
    never answers (metrics to a collector): after each frame the switch
    thread would spin 200 us for nothing, 0.4 s over the 2,000 frames and
    20% of a CPU. After a few spins that caught nothing it sleeps as soon
    as it is idle and each frame's doorbell wakes it: its own spin counter
    shows under a tenth of that, the master under 15% of a CPU (from /proc,
    not timed; wake-ups alone cost 2-9% on hosts of this kind), and every
    datagram arrives."""
    srv = master.peer("echo-server", "sink", "--sink", "--port", "7300")
    addr = srv.expect("ready")["address"]
    cli = master.peer("udp-trickle", "metrics", "--target", addr, "--port", "7300", "--count", "2000",
                      "--interval", "0.001")
    # From the first datagram: the client's attach is the master's work
    # too, but not what is measured here.
    cli.expect("sending")
    spun_before = master.status()["switch"]["spin_ns"]
    before = cpu_seconds(master.pid)
    t0 = time.monotonic()
    cli.expect("done", timeout=60)
    share = (cpu_seconds(master.pid) - before) / (time.monotonic() - t0)
    spun = (master.status()["switch"]["spin_ns"] - spun_before) / 1e9
    assert srv.expect("udp-sunk")["datagrams"] == 2000
    print(f"master CPU during the trickle: {share:.1%}, switch thread spinning {spun * 1e3:.1f} ms")
    assert spun < 0.04, f"the switch thread spun {spun * 1e3:.0f} ms for 2,000 datagrams 1 ms apart"
    assert share < 0.15, f"the master used {share:.1%} of a CPU forwarding 1,000 datagrams/s"


def test_idle_docknet_loop_service_sleeps(master: Master) -> None:
    """An asyncio service on DockNetLoop with its servers listening and a
    connection open, then nothing: its loop sleeps on the doorbell (under
    1% of a CPU over 5 s)."""
    import sys

    from dn_harness import Proc

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(master.env, DOCKNET_ENDPOINT="idle-aio")
    svc = Proc([sys.executable, os.path.join(here, "aio_peer.py"), "--kind", "docknet", "--base", "9500"],
               env, "idle-aio")
    master.peers.append(svc)
    addr = svc.expect("ready", timeout=60)["host"]
    cli = master.peer("connect", "cli", "--target", addr, "--port", "9500", "--timeout", "100")
    cli.expect("connected")
    time.sleep(1.0)
    share = cpu_share(svc.pid, 5)
    print(f"idle DockNetLoop service: {share:.2%}")
    assert share < 0.01, f"idle DockNetLoop service used {share:.1%} of a CPU"


CLIENT = """
import asyncio, json, os, sys, time
import aiodocknet

class P(asyncio.Protocol):
    def __init__(self, lost): self.lost = lost
    def connection_lost(self, exc): self.lost.set_result(repr(exc))

async def main():
    loop = asyncio.get_running_loop()
    lost = loop.create_future()
    await loop.create_connection(lambda: P(lost), sys.argv[1], int(sys.argv[2]))
    print(json.dumps({"event": "connected"}), flush=True)
    print(json.dumps({"event": "lost", "exc": await lost}), flush=True)
    await asyncio.sleep(30)

aiodocknet.run(main())
"""


def test_master_death_ends_connections_and_slaves_go_quiet(tmp_path) -> None:
    """The master is killed with SIGKILL: a DockNetLoop client with an open
    connection gets ConnectionResetError at once, and afterwards sleeps
    (no poller spinning on a link that will never move again)."""
    import signal
    import sys

    from dn_harness import Proc

    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root")
    m = Master(str(tmp_path))
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        svc = Proc([sys.executable, os.path.join(here, "aio_peer.py"), "--kind", "docknet", "--base", "9600"],
                   dict(m.env, DOCKNET_ENDPOINT="svc"), "svc")
        m.peers.append(svc)
        addr = svc.expect("ready", timeout=60)["host"]
        cli = Proc([sys.executable, "-c", CLIENT, addr, "9600"], dict(m.env, DOCKNET_ENDPOINT="cli"), "cli")
        m.peers.append(cli)
        cli.expect("connected", timeout=30)
        m.proc.kill(signal.SIGKILL)
        m.proc.wait()
        assert "ConnectionResetError" in cli.expect("lost", timeout=5)["exc"]
        time.sleep(1.0)
        before = cpu_seconds(cli.pid) + cpu_seconds(svc.pid)
        time.sleep(3)
        share = (cpu_seconds(cli.pid) + cpu_seconds(svc.pid) - before) / 3
        assert share < 0.02, f"slaves used {share:.1%} of a CPU after the master died"
    finally:
        for p in m.peers:
            p.stop()
        m.proc.stop()


PAUSED_SERVER = """
import asyncio, json, sys
import aiodocknet

class Paused(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.n = t, 0
        t.pause_reading()
        CONNS.append(self)
    def data_received(self, d):
        self.n += len(d)
        if self.n == int(sys.argv[1]):
            print(json.dumps({"event": "got", "bytes": self.n}), flush=True)

CONNS = []

async def main():
    loop = asyncio.get_running_loop()
    ep = loop._docknet()
    await loop.create_server(Paused, ep.address, 9600)
    print(json.dumps({"event": "ready", "host": ep.address}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for c in CONNS:
        c.t.resume_reading()
    await asyncio.sleep(30)

aiodocknet.run(main())
"""

SENDER = """
import asyncio, json, sys
import aiodocknet

async def main():
    r, w = await asyncio.open_connection(sys.argv[1], 9600)
    w.write(b"x" * int(sys.argv[2]))
    await w.drain()
    print(json.dumps({"event": "sent"}), flush=True)
    await asyncio.sleep(30)

aiodocknet.run(main())
"""


@pytest.mark.parametrize("fast", ["1", "0"], ids=["fast-channel", "switch"])
def test_paused_reader_with_bytes_waiting_sleeps(master: Master, fast: str) -> None:
    """A server protocol pauses reading before 64 KiB arrive over a fast
    channel (or through the switch): the bytes wait, and its loop sleeps
    (under 2% of a CPU over 3 s) instead of spinning on "readable"; on
    resume_reading() every byte is delivered."""
    import sys

    from dn_harness import Proc

    size = 64 * 1024
    env = dict(master.env, DOCKNET_FAST_CHANNELS=fast)
    srv = Proc([sys.executable, "-c", PAUSED_SERVER, str(size)], dict(env, DOCKNET_ENDPOINT="paused"), "paused")
    master.peers.append(srv)
    host = srv.expect("ready", timeout=60)["host"]
    cli = Proc([sys.executable, "-c", SENDER, host, str(size)], dict(env, DOCKNET_ENDPOINT="sender"), "sender")
    master.peers.append(cli)
    cli.expect("sent", timeout=30)
    time.sleep(1.0)
    share = cpu_share(srv.pid, 3)
    print(f"paused reader: {share:.2%}")
    assert share < 0.02, f"a paused reader's loop used {share:.1%} of a CPU"
    srv.send("resume")
    assert srv.expect("got", timeout=30)["bytes"] == size
