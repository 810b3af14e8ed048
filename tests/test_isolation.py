"""What the master does with bad input: control requests and frames."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from aiodocknet.control import ControlError, request, send_message
from dn_harness import Master


def test_bad_control_requests_get_clear_errors(master: Master) -> None:
    """Unknown operations, bad names and unknown services are refused with
    an errno name and a sentence; the master keeps serving."""
    r = request(master.path, {"op": "frobnicate"})
    assert r == {"ok": False, "code": "EINVAL", "error": "unknown operation 'frobnicate'"}
    r = request(master.path, {"op": "attach", "endpoint": "../etc"})
    assert not r["ok"] and r["code"] == "EINVAL" and "endpoint name" in r["error"]
    r = request(master.path, {"op": "attach"})
    assert not r["ok"] and r["code"] == "EINVAL"
    r = request(master.path, {"op": "resolve", "name": "nobody"})
    assert not r["ok"] and r["code"] == "ENOENT" and "nobody" in r["error"]
    assert request(master.path, {"no-op": 1})["code"] == "EINVAL"
    assert request(master.path, {"op": "ping"})["ok"]


def test_garbage_and_stray_fds_are_dropped_without_leaks(master: Master) -> None:
    """A connection that sends non-JSON is closed; a request that carries
    descriptors its kind does not (none does) is refused, and they are
    closed by the master, not kept."""
    fd_dir = f"/proc/{master.pid}/fd"
    before = len(os.listdir(fd_dir))
    for _ in range(20):
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.connect(master.path)
            s.send(b"\xff\xfe not json")
            assert s.recv(100) == b""  # closed on us
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.connect(master.path)
            r, w = os.pipe()
            send_message(s, {"op": "ping"}, [r, w])
            os.close(r)
            os.close(w)
            assert b'"ok":false,"code":"EINVAL"' in s.recv(1000)
    assert request(master.path, {"op": "ping"})["ok"]
    assert len(os.listdir(fd_dir)) <= before + 2


def test_endpoint_name_in_use_is_refused(master: Master) -> None:
    from aiodocknet.native.stack import SlaveStack

    master.peer("idle", "taken").expect("ready")
    os.environ["DOCKNET_MASTER"] = master.path
    with pytest.raises(ControlError) as info:
        SlaveStack.attach("taken", master.path)
    assert info.value.errno == errno.EADDRINUSE
    assert "'taken' is already attached" in str(info.value)


def test_malformed_and_spoofed_frames_are_dropped_and_counted(master: Master) -> None:
    """A slave puts runt frames, truncated and inconsistent IPv4 headers, an
    unknown ethertype and frames with another endpoint's source address on
    its link, short ones and whole TCP headers to a live endpoint (which
    the switch copies ring to ring when they pass): the switch drops each,
    counts it, and forwards normal traffic (a ping) from the
    same slave afterwards."""
    target = master.peer("idle", "target").expect("ready")["address"]
    bad = master.peer("bad-frames", "bad", "--target", target)
    done = bad.expect("done")
    assert done["ping_ok"]
    eps = {e["name"]: e["counters"] for e in master.status()["endpoints"]}
    assert eps["bad"]["drop_malformed"] == 9
    assert eps["bad"]["drop_spoofed"] == 2
    assert eps["target"]["rx_frames"] >= 1  # its ping reply
