"""A stack whose own connection table (SlaveStack's max_conns) is full
refuses a new connection at its SYN with a reset, as a kernel listener
that cannot take it does: the client gets ECONNREFUSED at once, not a
connection that is reset after it opened, nor a SYN dropped to time out.
The connections it holds go on working, and one that closes makes room."""

from __future__ import annotations

import pytest

from dn_harness import Master

# The server's table: its listener, its UDP socket (echo-server binds one
# on the same port) and this many connections.
PLACES = 4


@pytest.fixture
def master(switch_master: Master) -> Master:
    return switch_master


def test_a_full_connection_table_refuses_at_the_syn(master: Master) -> None:
    """Tried: a client fills the server's table, then opens 6 more at once
    (more than one at a time, so that handshakes under way must be
    counted), then closes one and opens 2: exactly one place is free."""
    srv = master.peer("echo-server", "small", "--max-conns", str(PLACES + 2), "--close-on-eof", "--quiet")
    addr = srv.expect("ready")["address"]
    cli = master.peer("on-cue", "cli", "--target", addr, "--timeout", "30")

    cli.send(f"open {PLACES}")
    assert cli.expect("opened")["outcomes"] == {"connected": PLACES}

    cli.send("open 6")
    over = cli.expect("opened")
    # Refused by the server's reset to the SYN: ECONNREFUSED, and at once
    # (a dropped SYN would wait seconds for a retransmission).
    assert over["outcomes"] == {"ECONNREFUSED": 6}, over
    assert over["seconds"] < 1.0, over

    cli.send("echo")
    assert cli.expect("echoed") == {"event": "echoed", "ok": PLACES, "of": PLACES, "errors": []}

    cli.send("close")
    cli.expect("closed")
    # The server frees the place when it sees the FIN and closes; a
    # retry covers the time until then. Two SYNs at once for the one
    # place: the second must be refused although the first has not yet
    # completed its handshake (and so holds no place yet).
    for _ in range(20):
        cli.send("open 2")
        got = cli.expect("opened")["outcomes"]
        if "ECONNREFUSED" not in got or got["ECONNREFUSED"] < 2:
            assert got == {"connected": 1, "ECONNREFUSED": 1}, got
            break
    else:
        pytest.fail("the closed connection's place never came free")
    cli.send("open 2")
    assert cli.expect("opened")["outcomes"] == {"ECONNREFUSED": 2}
    cli.send("echo")
    assert cli.expect("echoed") == {"event": "echoed", "ok": PLACES, "of": PLACES, "errors": []}
    cli.send("exit")
    assert cli.wait(30) == 0
