"""Several links in one endpoint's switch port (several processes per
endpoint): where the switch sends each frame. A real switch and real link
rings, mapped by a probe process as the endpoints' slaves would map them
(tests/switch_links_probe.py), so that each frame's arrival can be seen.

What was tried as a hostile process of the endpoint (``hostile``): join,
leave and listen with slots and links out of range or not in use, a 17th
link, leaving the last link, 1,500 garbage frames and 1,500 SYNs from ports
outside its range written into its ring, resets for another process's
connections (``reset_and_leave``); and as a hostile peer, more new
connections than the flow table holds (``full_table``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("switch_links_probe.py")


def run(scenario: str) -> dict:
    p = subprocess.run([sys.executable, str(PROBE), scenario], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_new_connections_spread_over_the_listening_links_and_stay_there() -> None:
    out = run("spread")
    assert min(out["syns"].values()) >= 40  # of 400, over 4 links


def test_only_links_listening_on_a_port_get_its_connections() -> None:
    run("listeners")


def test_replies_reach_the_link_that_opened_the_connection() -> None:
    out = run("own_ports")
    # Disjoint ranges, link 0's as lwIP's own.
    ranges = sorted(tuple(r) for r in out["ranges"].values())
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))


def test_resets_and_departures_move_only_their_own_connections() -> None:
    run("reset_and_leave")


def test_arp_replies_go_to_the_asker() -> None:
    run("arp")


def test_bad_indexes_and_a_garbage_writing_link_change_nothing() -> None:
    out = run("hostile")
    assert len(out["tried"]) == 12


def test_a_full_flow_table_drops_and_counts_new_connections() -> None:
    out = run("full_table")
    assert out["dropped"] > 0 and out["delivered"] >= 30000


def test_one_link_gets_everything_as_before() -> None:
    run("single")
