"""Shared memory under attack: an endpoint resizes and rewrites the memory
the master shares with it (its link, a fast channel's region). Neither the
master nor the peer service may crash; the attacker loses only its own
traffic. tests/hostile_peer.py is the attacker, a real process attached to
a real master."""

from __future__ import annotations

import fcntl
import mmap
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aiodocknet.control import recv_message, send_message
from aiodocknet.native.fastchan import FastChannel, make_channel
from dn_harness import Master, Proc, control_request

HOSTILE = Path(__file__).resolve().parent / "hostile_peer.py"
FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"
# dn_fastchan.c's header: ring[s]'s head, its tail one cache line on.
RING_HEAD = (64, 320)
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


def hostile(master: Master, *args: str) -> Proc:
    p = Proc([sys.executable, str(HOSTILE), *args], master.env, "hostile")
    master.peers.append(p)
    return p


def fc_proc(master: Master, name: str, *args: str) -> Proc:
    env = dict(master.env, DOCKNET_ENDPOINT=name, DOCKNET_FAST_CHANNELS="1")
    p = Proc([sys.executable, str(FC_PEER), *args], env, name)
    master.peers.append(p)
    return p


def alive(master: Master) -> None:
    assert master.proc.popen.poll() is None, f"master died: {master.proc.stderr_tail()}"
    assert control_request(master.path, {"op": "ping"})["ok"]


def echo_pair_works(master: Master, tag: str) -> None:
    srv = master.peer("echo-server", f"srv-{tag}").expect("ready")
    cli = master.peer("echo-client", f"cli-{tag}", "--target", srv["address"], "--bytes", str(1 << 20))
    assert cli.expect("done", timeout=60)["ok"]


def test_link_memory_cannot_be_resized_and_garbage_costs_only_the_attacker(master: Master) -> None:
    """Tried: attach under an unregistered name from the master's
    namespace, mark the link up, ftruncate the link's memfd to 0 and to
    twice its size (before sealing, the shrink killed the master with
    SIGBUS at its next look), punch every page out, then 2 s of random ring
    positions and bytes with the master's eventfd rung after each round,
    while another pair of endpoints streams through the switch."""
    bad = hostile(master, "link", "--name", "mallory", "--seconds", "2")
    bad.expect("attached")
    echo_pair_works(master, "during")
    done = bad.expect("done", timeout=30)
    assert bad.wait(10) == 0
    alive(master)
    assert done["shrink"] == "EPERM" and done["grow"] == "EPERM", done
    assert done["punch"] == "allowed" and done["rounds"] > 100, done
    echo_pair_works(master, "after")


def test_fast_channel_region_cannot_be_resized_or_relaid_by_the_peer(master: Master) -> None:
    """Tried: ask the master for a fast channel to a real DockNetLoop
    server, start a proper echo stream on it, ftruncate the channel's
    memfd to 0 and to twice its size (before sealing: SIGBUS in the server
    and the master), then 2 s of random magic, ring size, positions, flags
    and header bytes (the layout used to be read from there: a rewritten
    data offset made the server SIGSEGV), ringing the server each round.
    The server and the master must live on, and the server must still
    serve a well-behaved client over a fast channel."""
    srv = fc_proc(master, "victim", "server", "--port", "7100").expect("ready", timeout=60)
    bad = hostile(master, "fastchan", "--name", "mallory-fc", "--target", srv["address"], "--port", "7100")
    bad.expect("connected", timeout=30)
    done = bad.expect("done", timeout=30)
    assert bad.wait(10) == 0
    victim = next(p for p in master.peers if p.name == "victim")
    assert victim.popen.poll() is None, f"server died: {victim.stderr_tail()}"
    alive(master)
    assert done["shrink"] == "EPERM" and done["grow"] == "EPERM", done
    assert done["rounds"] > 100, done
    good = fc_proc(master, "good", "client", "--host", srv["address"], "--port", "7100", "connect")
    res = good.expect("result", timeout=30)
    assert res["outcome"] == "connected" and res["transport"] == "FastChannelTransport", res
    assert res["echoed"] == "hello\n"
    assert victim.popen.poll() is None


def _region(size: int, seals: int) -> int:
    """A memfd laid out as a fast channel by hand, with the given seals."""
    good, _, _ = make_channel(4096)
    fd = os.memfd_create("forged", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    os.pwrite(fd, os.pread(good, 4096, 0), 0)
    os.close(good)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


@pytest.mark.parametrize("size,seals,why", [
    (4096 + 2 * 4096, fcntl.F_SEAL_SHRINK, "not sealed"),
    (4096 + 2 * 4096, 0, "not sealed"),
    (4096 + 3 * 4096, SEALS, "no valid layout"),
    (4096 + 2 * 6000, SEALS, "no valid layout"),
    (4096, SEALS, "too small"),
])
def test_a_region_without_seals_or_layout_is_refused(size: int, seals: int, why: str) -> None:
    """Tried: hand a side a region that could still be resized, or whose
    size fits no ring layout (the size is the only layout a side trusts)."""
    fd = _region(size, seals)
    efds = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
    with pytest.raises(OSError) as info:
        FastChannel(fd, 0, *efds)
    assert why in str(info.value)


def test_impossible_positions_reset_the_channel_not_the_reader() -> None:
    """Tried: the peer publishes a head far past what the ring holds, and
    a tail ahead of what was written: the other side's read and write
    answer ECONNRESET instead of copying beyond the mapping, and the
    peer sees the reset too."""
    fd, e0, e1 = make_channel(4096)
    mem = mmap.mmap(fd, 4096 + 2 * 4096)  # the peer's view, to forge with
    a = FastChannel(os.dup(fd), 0, os.dup(e0), os.dup(e1))
    b = FastChannel(fd, 1, e1, e0)
    try:
        assert a.write(b"x" * 100) == 100 and b.read() == b"x" * 100
        struct.pack_into("<Q", mem, RING_HEAD[0], 1 << 40)
        assert b.queued()[0] <= 4096
        with pytest.raises(ConnectionResetError, match="impossible ring position"):
            b.read()
        with pytest.raises(ConnectionResetError):
            a.write(b"y")
    finally:
        a.close()
        b.close()

    fd, e0, e1 = make_channel(4096)
    mem = mmap.mmap(fd, 4096 + 2 * 4096)
    a = FastChannel(os.dup(fd), 0, os.dup(e0), os.dup(e1))
    b = FastChannel(fd, 1, e1, e0)
    try:
        assert a.write(b"x" * 10) == 10
        # ring 0's tail (b's to publish) ahead of a's head: room would wrap.
        struct.pack_into("<Q", mem, RING_HEAD[0] + 64, 1 << 20)
        with pytest.raises(ConnectionResetError, match="impossible ring position"):
            a.write(b"y" * 8192)
        assert a.queued()[1] <= 4096
    finally:
        a.close()
        b.close()


def test_a_slave_refuses_link_memory_that_is_not_sealed(tmp_path: Path) -> None:
    """Tried: a "master" (a control socket served here) answers attach
    with link memory of the right size and magic but without seals. The
    slave must refuse it: the memory could shrink under it."""
    path = str(tmp_path / "master.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(1)
    link = os.memfd_create("unsealed", os.MFD_ALLOW_SEALING)
    os.ftruncate(link, 2 * 4096 + 2 * (1 << 20))
    os.pwrite(link, struct.pack("<II", 0x646E6462, 2), 0)  # dn_doorbell.h magic, version
    efds = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            recv_message(conn)
            send_message(conn, {"ok": True, "endpoint": "s", "address": "10.77.0.9", "prefix": 16,
                                "gateway": "10.77.0.1",
                                "mac": "02:00:0a:4d:00:09", "mtu": 1500}, [link, *efds])
            conn.recv(1)  # until the slave lets go

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    code = ("import sys; from aiodocknet.native.stack import SlaveStack\n"
            "try:\n    SlaveStack.attach('s', sys.argv[1])\n"
            "except OSError as e:\n    print(e); sys.exit(3)\n")
    res = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60)
    t.join(10)
    listener.close()
    for fd in (link, *efds):
        os.close(fd)
    assert res.returncode == 3, res.stderr
    assert "not sealed" in res.stdout
