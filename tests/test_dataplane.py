"""TCP, UDP and ICMP between slave processes through a real master."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from dn_harness import Master, Proc


def start_server(master: Master, name: str = "srv", *args: str) -> str:
    srv = master.peer("echo-server", name, *args)
    return str(srv.expect("ready")["address"])


def test_echo_64mib_sha256_both_directions(master: Master) -> None:
    """64 MiB of random data to an echo server and back: the server's
    digest of what it received and the client's digest of the echo both
    match what was sent."""
    addr = start_server(master)
    cli = master.peer("echo-client", "cli", "--target", addr, "--bytes", str(64 << 20), "--half-close")
    connected = cli.expect("connected")
    assert connected["peername"] == [addr, 7000]
    done = cli.expect("done", timeout=240)
    assert done["ok"], done
    assert done["recv_sha256"] == done["sent_sha256"]
    srv = master.peers[0]
    eof = srv.expect("eof")
    assert eof["bytes"] == 64 << 20
    assert eof["sha256"] == done["sent_sha256"]
    assert cli.expect("eof")["all"]
    assert cli.wait() == 0


def test_500_concurrent_connections(master: Master) -> None:
    addr = start_server(master)
    cli = master.peer("echo-client", "cli", "--target", addr, "--conns", "500", "--bytes", "4096")
    assert cli.expect("connected", timeout=60)["count"] == 500
    done = cli.expect("done", timeout=120)
    assert done["ok"] and done["bad"] == 0, done
    assert cli.wait() == 0
    # The master saw both endpoints and no frame was refused as malformed.
    eps = {e["name"]: e for e in master.status()["endpoints"]}
    assert eps["srv"]["counters"]["drop_malformed"] == 0


def test_half_close_keeps_receiving(master: Master) -> None:
    """The client sends 1 MiB and shuts down writing; the sink server sees
    EOF, then answers with its byte count and digest, which the client,
    whose write side is closed, still receives before the server's FIN."""
    addr = start_server(master, "srv", "--sink")
    cli = master.peer("half-close-client", "cli", "--target", addr, "--bytes", str(1 << 20))
    done = cli.expect("done", timeout=60)
    assert done["error"] == "" and done["eof"], done
    assert done["answer"] == {"bytes": 1 << 20, "sha256": done["sent_sha256"]}
    assert master.peers[0].expect("eof")["bytes"] == 1 << 20


def test_abort_gives_peer_reset(master: Master) -> None:
    """The server accepts and aborts at once: the client's connect succeeds
    (it says "connected", which it never does when the connect fails), and
    the connection then ends with a reset, not a FIN."""
    addr = start_server(master, "srv", "--abort-on-accept")
    cli = master.peer("connect", "cli", "--target", addr)
    cli.expect("connected")
    master.peers[0].expect("aborted")
    res = cli.expect("error", timeout=20)
    assert res["errno"] == "ECONNRESET", res


def test_connect_to_closed_port_is_refused(master: Master) -> None:
    addr = start_server(master)
    cli = master.peer("connect", "cli", "--target", addr, "--port", "7999")
    res = cli.expect("error", timeout=20)
    assert res["errno"] == "ECONNREFUSED"


def test_connect_to_absent_address_is_refused(master: Master) -> None:
    """No endpoint has 10.77.3.3: the switch answers for it with a reset."""
    master.peer("idle", "idle").expect("ready")
    cli = master.peer("connect", "cli", "--target", "10.77.3.3", "--port", "80")
    assert cli.expect("error", timeout=20)["errno"] == "ECONNREFUSED"


def test_udp_datagrams_arrive_intact(master: Master) -> None:
    addr = start_server(master)
    cli = master.peer("udp-client", "cli", "--target", addr, "--count", "120")
    done = cli.expect("done", timeout=60)
    assert done["sent"] == 120
    assert done["intact"] == done["received"]
    # The link rings do not lose frames between two live processes at this rate.
    assert done["received"] == 120


def test_icmp_echo_between_endpoints(master: Master) -> None:
    addr = start_server(master)
    cli = master.peer("ping", "cli", "--target", addr, "--count", "5")
    done = cli.expect("done", timeout=30)
    assert done["replies"] == 5
    assert done["seqs"] == [1, 2, 3, 4, 5]


def test_sigkill_mid_stream_resets_peer_and_frees_address(master: Master) -> None:
    """The echo server is killed with SIGKILL while the client streams to
    it: the client gets ECONNRESET, the master frees the server's endpoint
    and address, and a new slave can attach under the same name."""
    addr = start_server(master, "victim")
    cli = master.peer("stream-until-error", "cli", "--target", addr, "--timeout", "60")
    cli.expect("connected")
    time.sleep(0.5)
    victim = master.peers[0]
    victim.kill(signal.SIGKILL)
    victim.wait()
    res = cli.expect("failed", timeout=30)
    assert res["errno"] == "ECONNRESET"
    assert res["received"] > 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        names = {e["name"] for e in master.status()["endpoints"]}
        if "victim" not in names:
            break
        time.sleep(0.05)
    status = master.status()
    assert "victim" not in {e["name"] for e in status["endpoints"]}
    assert addr not in {e["address"] for e in status["endpoints"]}
    assert status["addresses_in_use"] == len(status["endpoints"])
    again = master.peer("idle", "victim")
    new_addr = again.expect("ready")["address"]
    assert {e["name"]: e["address"] for e in master.status()["endpoints"]}["victim"] == new_addr


def test_64_endpoints_on_one_master(master: Master) -> None:
    """64 endpoints attach to one master (more than DPDK's 32 ethdev ports:
    the links are the project's own rings), every one is up in the master's
    books, and frames sent around the ring of endpoints reach every one."""
    blast = Proc([sys.executable, "-m", "bench.native_loops", "blast", "--name", "many",
                  "--endpoints", "64", "--seconds", "3"], master.env, "blast")
    master.peers.append(blast)
    deadline = time.monotonic() + 60
    while True:
        eps = [e for e in master.status()["endpoints"] if e["name"].startswith("many-")]
        if len(eps) == 64 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(eps) == 64
    assert all(e["counters"]["link_up"] for e in eps), [e["name"] for e in eps if not e["counters"]["link_up"]]
    res = blast.expect("result", timeout=60)
    assert res["links_reached"] == 64, res
    assert res["frames"] > 0
    assert blast.wait() == 0
    deadline = time.monotonic() + 10
    while any(e["name"].startswith("many-") for e in master.status()["endpoints"]):
        assert time.monotonic() < deadline, "endpoints left behind after their process exited"
        time.sleep(0.1)


CHURN = """
import sys
from aiodocknet.native.stack import SlaveStack
for i in range(int(sys.argv[1])):
    SlaveStack.attach("churn").close()
print('{"event": "churned"}', flush=True)
"""


def test_endpoints_come_and_go_under_traffic(master: Master) -> None:
    """While 64 MiB stream between two endpoints, a third process attaches
    and closes its endpoint 30 times in a row (a link torn down at every
    moment of the switch's loop; memif ports crashed the master here). The
    stream arrives intact and the master lives on."""
    addr = start_server(master)
    cli = master.peer("echo-client", "cli", "--target", addr, "--bytes", str(64 << 20))
    churn = Proc([sys.executable, "-c", CHURN, "30"], master.env, "churn")
    master.peers.append(churn)
    churn.expect("churned", timeout=120)
    assert churn.wait() == 0
    done = cli.expect("done", timeout=240)
    assert done["ok"] and done["recv_sha256"] == done["sent_sha256"], done
    assert master.proc.popen.poll() is None
    assert "churn" not in {e["name"] for e in master.status()["endpoints"]}


def test_garbage_in_a_link_ring_costs_only_its_own_frames(master: Master) -> None:
    """A process attaches and, instead of frames, writes nonsense into its
    ring to the master: a record longer than any frame, then a published
    position 1 GiB past the ring. The master counts both as malformed,
    reads nothing outside the ring, and keeps forwarding for everyone else
    (64 MiB echoed intact afterwards)."""
    import mmap
    import os
    import struct

    from aiodocknet.native.stack import request_attach

    control, _info, fds = request_attach("garbage", master.path)
    link, _wake, master_wake = fds
    try:
        mem = mmap.mmap(link, 8192 + 2 * (1 << 20))
        page, data = 4096, 8192  # ring positions page; slave->master ring bytes
        head_at = page + 0
        struct.pack_into("<I", mem, data, 0xFFFF0000)  # "a 4 GiB frame"
        struct.pack_into("<Q", mem, head_at, 16)
        os.eventfd_write(master_wake, 1)

        def malformed() -> int:
            eps = {e["name"]: e for e in master.status()["endpoints"]}
            return int(eps["garbage"]["counters"]["drop_malformed"])

        deadline = time.monotonic() + 10
        while malformed() < 1:
            assert time.monotonic() < deadline, "the master never looked at the bad record"
            time.sleep(0.05)
        struct.pack_into("<Q", mem, head_at, 16 + (1 << 30))
        os.eventfd_write(master_wake, 1)
        while malformed() < 2:
            assert time.monotonic() < deadline, "the master never looked at the bad position"
            time.sleep(0.05)
        mem.close()
    finally:
        for fd in fds:
            os.close(fd)
        control.close()
    addr = start_server(master)
    cli = master.peer("echo-client", "cli", "--target", addr, "--bytes", str(64 << 20))
    done = cli.expect("done", timeout=240)
    assert done["ok"] and done["recv_sha256"] == done["sent_sha256"], done
    assert master.proc.popen.poll() is None


def test_attach_without_master_names_the_socket(tmp_path) -> None:
    from aiodocknet.native.stack import SlaveStack

    path = str(tmp_path / "nothing-here.sock")
    with pytest.raises(FileNotFoundError) as info:
        SlaveStack.attach("x", path)
    assert path in str(info.value)
    assert "docknet master" in str(info.value)


def test_runs_without_hugepages(tmp_path, monkeypatch) -> None:
    """With DOCKNET_NO_HUGE=1 (as when unprivileged or none are free) the
    master and slaves run DPDK with --no-huge, say so
    once each in their logs, and TCP works."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (the run directory, namespaces)")
    monkeypatch.setenv("DOCKNET_NO_HUGE", "1")
    m = Master(str(tmp_path))
    try:
        addr = start_server(m)
        cli = m.peer("echo-client", "cli", "--target", addr, "--bytes", str(4 << 20))
        assert cli.expect("done", timeout=60)["ok"]
        assert cli.wait() == 0
    finally:
        assert m.stop() == 0
    for p in (m.proc, *m.peers):
        text = p.stderr_text
        assert text.count("running DPDK with --no-huge") == 1, (p.name, text[-500:])


def test_ephemeral_ports_come_from_the_process_range_and_are_shared(master: Master) -> None:
    """A process given 8 ephemeral ports (each process of an endpoint with
    several gets its own range) opens 8 connections to one server and
    closes them (TIME-WAIT on its side); 8 to another server then reuse
    those same ports, as on the kernel (another peer, another 4-tuple).
    One more to either fails at once instead of hanging: to the first,
    every 4-tuple is in TIME-WAIT; to the second, in use. UDP takes its
    port from the range too."""
    a = start_server(master, "srv-a")
    b = start_server(master, "srv-b")
    cli = master.peer("port-range", "cli", "--target", a, "--target2", b, "--count", "8")
    done = cli.expect("done")
    span = list(range(done["lo"], done["hi"] + 1))
    assert done["first"] == span and done["second"] == span, done
    assert done["refused_again"] in ("EADDRINUSE", "EADDRNOTAVAIL"), done
    assert done["refused_full"] in ("EADDRINUSE", "EADDRNOTAVAIL"), done
    assert done["lo"] <= done["udp_port"] <= done["hi"], done
