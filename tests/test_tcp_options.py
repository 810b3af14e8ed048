"""TCP options a hostile peer malforms are dropped before lwIP reads them:
lwIP 2.1.3's tcp_parseopt() reads an option's length byte even when the
kind is the options' last byte, one byte past the TCP header (past the
frame when the segment carries no data). The input hook
(lwip/dn_hooks.c) walks the options first and drops a segment whose
options run out (a kind without its length, a length under 2 or past
the end); well-formed options, NOPs and EOL are answered as before. The
fuzz harness holds the same frames (fuzz/corpus/stack/
crash-tcp-option-overread) with no slack past a frame, so AddressSanitizer
sees the read if the hook misses it."""

from __future__ import annotations

import pytest

from dn_harness import Master

GOOD = ["mss_wscale", "nops_then_eol"]
MALFORMED = ["mss_kind_last", "unknown_kind_last", "length_zero", "length_one", "length_past_end",
             "mss_length_past_end"]


@pytest.fixture
def master(switch_master: Master) -> Master:
    return switch_master


def test_a_syn_with_malformed_options_gets_no_syn_ack(master: Master) -> None:
    """Tried: raw SYNs through the switch to a listening echo server, one
    per option list: well-formed first, each malformed kind, then
    well-formed again (the listener still answers). A SYN-ACK is one
    frame back to the sender within 0.5 s."""
    srv = master.peer("echo-server", "srv", "--port", "7600")
    addr = srv.expect("ready")["address"]
    cases = [*GOOD, *MALFORMED, *GOOD]
    raw = master.peer("raw-syns", "raw", "--target", addr, "--port", "7600", "--cases", ",".join(cases))
    answers = raw.expect("done", timeout=60)["answers"]
    assert answers == {**{c: 1 for c in GOOD}, **{c: 0 for c in MALFORMED}}, answers
    # The server is no worse for them: a real client is served.
    cli = master.peer("echo-client", "cli", "--target", addr, "--port", "7600", "--bytes", "65536")
    assert cli.expect("done", timeout=60)["ok"]
