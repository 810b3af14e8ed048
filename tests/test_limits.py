"""Limits end in clear errors: an endpoint out of TCP control blocks
refuses new connections at once, as the kernel does, instead of dropping
their SYNs for the clients to time out."""

from __future__ import annotations

import itertools
import time

from dn_harness import Master

# lwipopts.h's MEMP_NUM_TCP_PCB: control blocks of one endpoint's stack.
TCP_PCBS = 8192


def test_connections_past_the_control_blocks_are_refused_promptly(master: Master) -> None:
    """Tried: one echo server; client a holds 6,000 connections to it,
    client b then opens 3,000 more (a client's own stack cannot open more
    than its 8,192 either). The server has room for about 2,190 of b's:
    every other attempt of b's must end refused (ECONNREFUSED, from the
    server's reset) within the client's wait, none left pending or timed
    out, and the server must still serve a small client after b lets go."""
    srv = master.peer("echo-server", "crowded", "--port", "7400", "--quiet").expect("ready")
    a = master.peer("hold", "hold-a", "--target", srv["address"], "--port", "7400", "--conns", "6000",
                    "--timeout", "60")
    held_a = a.expect("held", timeout=90)
    assert held_a["outcomes"] == {"connected": 6000}, held_a
    b = master.peer("hold", "hold-b", "--target", srv["address"], "--port", "7400", "--conns", "3000",
                    "--timeout", "20")
    held_b = b.expect("held", timeout=60)["outcomes"]
    assert set(held_b) == {"connected", "ECONNREFUSED"}, held_b
    assert held_b["connected"] + held_b["ECONNREFUSED"] == 3000
    assert 6000 + held_b["connected"] <= TCP_PCBS
    assert held_b["ECONNREFUSED"] >= 3000 - (TCP_PCBS - 6000), held_b
    b.stop()
    # b's resets, or the master's notice that b is gone, free the server's
    # blocks as they arrive: a new client is served once they have.
    deadline = time.monotonic() + 30
    for attempt in itertools.count():
        small = master.peer("echo-client", f"small-{attempt}", "--target", srv["address"], "--port", "7400",
                            "--conns", "4", "--bytes", "65536")
        rc = small.wait(60)
        if rc == 0:
            break
        assert time.monotonic() < deadline, f"the server never served again: {small.popen.stdout.read()}"
        time.sleep(0.5)
    assert small.expect("done")["ok"]
