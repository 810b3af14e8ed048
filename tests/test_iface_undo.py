"""The record of what the uplink's port changed on its interface
(aiodocknet/master/iface_undo.py), read as the hostile input it may be: a
record that does not parse, has the wrong types, names a bad or another
interface, or nests without end is ignored with a log line and replaced;
one for the interface gives back its flag. In-process, on `lo` of the
test's own namespace (never promiscuous, so nothing is changed on it)."""

from __future__ import annotations

import json
import os

import pytest

from aiodocknet.master.iface_undo import RECORD_FILE, InterfaceUndo, promiscuous


def record(tmp_path) -> dict | None:
    path = tmp_path / RECORD_FILE
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("text", [
    "not json",
    "[1, 2]",
    '{"iface": "lo"}',
    '{"iface": "lo", "promisc_was": "yes"}',
    '{"iface": "lo", "promisc_was": 1}',
    '{"iface": "lo,xdp_prog=/x", "promisc_was": true}',
    '{"iface": "../../etc", "promisc_was": true}',
    '{"iface": 7, "promisc_was": true}',
    "[" * 100000 + "]" * 100000,
])
def test_a_bad_record_is_ignored_and_replaced(tmp_path, text: str) -> None:
    assert promiscuous("lo") is False
    (tmp_path / RECORD_FILE).write_text(text)
    undo = InterfaceUndo(str(tmp_path))
    assert undo.begin("lo") == 0  # as lo is now, not as the record said
    assert record(tmp_path) == {"iface": "lo", "promisc_was": False}
    undo.done()
    assert record(tmp_path) is None


def test_a_predecessors_record_gives_its_flag_back(tmp_path) -> None:
    (tmp_path / RECORD_FILE).write_text(json.dumps({"iface": "lo", "promisc_was": True}))
    undo = InterfaceUndo(str(tmp_path))
    assert undo.begin("lo") == 1  # what lo was before the master that died
    assert record(tmp_path) == {"iface": "lo", "promisc_was": True}


def test_another_interfaces_record_is_left_alone(tmp_path) -> None:
    (tmp_path / RECORD_FILE).write_text(json.dumps({"iface": "eth-gone", "promisc_was": False}))
    undo = InterfaceUndo(str(tmp_path))
    assert undo.begin("lo") == 0
    assert record(tmp_path) == {"iface": "lo", "promisc_was": False}
    # A record begin() did not make is never acted on or removed.
    other = InterfaceUndo(str(tmp_path))
    other.done()
    assert record(tmp_path) is not None
    undo.done()
    assert record(tmp_path) is None
    assert not os.listdir(tmp_path)  # no temporary file left behind
