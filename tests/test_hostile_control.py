"""The control socket against a hostile peer (issue 13, defects 8, 9, 13).

Everything is sent as an attacker would: raw SOCK_SEQPACKET messages to a
real master, from the host and from inside network namespaces the tests
make. Bytes that are not a JSON object must close the connection, and
afterwards the master must still serve a normal peer; what each side does
with every kind malformed is tests/test_control_protocol.py's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from aiodocknet.cli.api_client import ApiClient
from aiodocknet.control import recv_message, send_message
from aiodocknet.cli.netns import create_netns, delete_netns
from dn_harness import PEER, ROOT, Master, Proc

# Notices the master may push to an attached connection at any time.
NOTICES = ("limits", "endpoint_gone")


def api(master: Master) -> ApiClient:
    return ApiClient(os.path.join(master.run_dir, "api.sock"))


class Conn:
    """A raw control connection that skips the master's pushed notices."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(5)
        self.sock.connect(path)

    def send(self, msg: dict[str, Any]) -> None:
        send_message(self.sock, msg)

    def recv(self) -> dict[str, Any] | None:
        while True:
            msg, fds = recv_message(self.sock)
            for fd in fds:
                os.close(fd)
            if msg is None or msg.get("event") not in NOTICES:
                return msg

    def ask(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        self.send(msg)
        return self.recv()

    def close(self) -> None:
        self.sock.close()


def twin(address: str) -> str:
    """address's IPv6 twin under the master's default prefix."""
    import ipaddress

    from aiodocknet.control import DEFAULT_SUBNET, DEFAULT_SUBNET6
    from aiodocknet.master.addresses import address6_of

    return address6_of(address, ipaddress.IPv4Network(DEFAULT_SUBNET), DEFAULT_SUBNET6)


def warnings(master: Master, text: str) -> int:
    master.proc.stderr_tail()  # reads the whole log into stderr_text
    return master.proc.stderr_text.count(text)


# Each is not one JSON object, so the connection is closed.
UNDECODABLE: list[tuple[str, bytes]] = [
    ("nested 100k deep", b"[" * 100_000 + b"]" * 100_000),
    ("nested 30k deep (fits a message)", b"[" * 30_000 + b"]" * 30_000),
    ("objects nested 10k deep", b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
    ("deep inside a valid op", b'{"op":"ping","x":' + b"[" * 30_000 + b"]" * 30_000 + b"}"),
    ("array", b"[1]"),
    ("string", b'"ping"'),
    ("number", b"1"),
    ("null", b"null"),
    ("invalid UTF-8", b"\xff\xfe not json"),
    ("invalid UTF-8 in a string", b'{"op":"\xff\xfe"}'),
    ("NaN", b'{"op":"ping","x":NaN}'),
    ("integer of 5000 digits", b'{"op":"ping","x":' + b"7" * 5000 + b"}"),
    ("truncated", b'{"op":"pi'),
    ("oversized", json.dumps({"op": "ping", "pad": "x" * 70_000}).encode()),
]


@pytest.mark.parametrize("label,data", UNDECODABLE, ids=[u[0] for u in UNDECODABLE])
def test_undecodable_bytes_close_the_connection(shared_master: Master, label: str, data: bytes) -> None:
    """Bytes that are not one JSON object end the connection (with a log
    line), never an exception in the master; a normal peer attaches and
    answers afterwards. One master takes them all, one after another."""
    master = shared_master
    before = warnings(master, "bad control message")
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.settimeout(5)
        s.connect(master.path)
        s.send(data)
        assert s.recv(100) == b""
    assert warnings(master, "bad control message") == before + 1
    assert "Traceback" not in master.proc.stderr_text
    c = Conn(master.path)
    try:
        assert c.ask({"op": "ping"}) == {"ok": True, "pong": True}
    finally:
        c.close()
    try:
        assert master.peer("idle", "normal").expect("ready")["address"]
    finally:
        master.stop_peers()


@pytest.fixture
def netns() -> Iterator[Any]:
    made: list[str] = []

    def make(name: str) -> str:
        full = f"{name}-{os.getpid()}"
        made.append(full)
        return create_netns(full)

    yield make
    for ns in made:
        delete_netns(ns)


def ask_from(ns_path: str, master: Master, msg: dict[str, Any]) -> dict[str, Any]:
    """One control request from a process inside ns_path."""
    code = ("import json, sys; from aiodocknet.control import request; "
            f"print(json.dumps(request({master.path!r}, json.loads(sys.argv[1]))))")
    res = subprocess.run(["ip", "netns", "exec", os.path.basename(ns_path), sys.executable, "-c", code,
                          json.dumps(msg)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def idle_in(master: Master, ns_path: str, name: str, secret: str) -> Proc:
    env = dict(master.env, DOCKNET_SECRET=secret)
    p = Proc(["ip", "netns", "exec", os.path.basename(ns_path), sys.executable, str(PEER), "idle",
              "--name", name], env, name)
    master.peers.append(p)
    return p


def test_status_is_not_for_endpoint_namespaces(master: Master, netns) -> None:
    """A process inside an endpoint's namespace (root there) asks for the
    master's status: refused, and the refusal names nobody. Root on the
    host still gets it."""
    master.peer("idle", "secret-service").expect("ready")
    ns = netns("dnt-st")
    reg = api(master).call("POST", "/v1/endpoints", {"name": "inside", "netns": ns})
    idle_in(master, ns, "inside", reg["secret"]).expect("ready")
    reply = ask_from(ns, master, {"op": "status"})
    assert reply["ok"] is False and reply["code"] == "EACCES", reply
    assert "secret-service" not in json.dumps(reply) and "10.77." not in json.dumps(reply)
    assert {e["name"] for e in master.status()["endpoints"]} == {"secret-service", "inside"}


def test_attach_checks_identity_before_naming(master: Master, netns) -> None:
    """Attach says nothing about a name (in use or not) to a process that
    may not have it: from a foreign namespace, or with a wrong secret."""
    master.peer("idle", "taken").expect("ready")
    ns, other = netns("dnt-id"), netns("dnt-id-other")
    reg = api(master).call("POST", "/v1/endpoints", {"name": "svc", "netns": ns})
    idle_in(master, ns, "svc", reg["secret"]).expect("ready")
    for ns_path, msg in [(other, {"op": "attach", "endpoint": "taken"}),
                         (ns, {"op": "attach", "endpoint": "svc", "secret": "0" * 32}),
                         (ns, {"op": "attach", "endpoint": "svc"}),
                         (other, {"op": "attach", "endpoint": "svc", "secret": reg["secret"]})]:
        reply = ask_from(ns_path, master, msg)
        assert reply["ok"] is False and reply["code"] == "EACCES", (msg, reply)
        assert "already attached" not in reply["error"], (msg, reply)


def test_resolve_answers_only_reachable_names(master: Master, netns) -> None:
    """Tenant b's namespace cannot resolve tenant a's names (answered as a
    name that does not exist) until policy lets b reach a; the rule is one
    way."""
    ns_a, ns_b = netns("dnt-ra"), netns("dnt-rb")
    reg_a = api(master).call("POST", "/v1/endpoints", {"name": "svc-a", "netns": ns_a, "tenant": "a"})
    reg_b = api(master).call("POST", "/v1/endpoints", {"name": "svc-b", "netns": ns_b, "tenant": "b"})
    addr_a = idle_in(master, ns_a, "svc-a", reg_a["secret"]).expect("ready")["address"]
    addr_b = idle_in(master, ns_b, "svc-b", reg_b["secret"]).expect("ready")["address"]
    hidden = ask_from(ns_b, master, {"op": "resolve", "name": "svc-a"})
    missing = ask_from(ns_b, master, {"op": "resolve", "name": "no-such"})
    assert hidden["code"] == missing["code"] == "ENOENT"
    assert hidden["error"].replace("svc-a", "X") == missing["error"].replace("no-such", "X")
    # Each name with its IPv6 twin (the master's default prefix).
    assert ask_from(ns_b, master, {"op": "resolve", "name": "svc-b"}) == {"ok": True, "address": addr_b,
                                                                          "address6": twin(addr_b)}
    api(master).call("POST", "/v1/policy", {"from": "b", "to": "a", "port": 80})
    assert ask_from(ns_b, master, {"op": "resolve", "name": "svc-a"}) == {"ok": True, "address": addr_a,
                                                                          "address6": twin(addr_a)}
    assert ask_from(ns_a, master, {"op": "resolve", "name": "svc-b"})["code"] == "ENOENT"


def test_registering_a_squatted_name_evicts_the_squatter(master: Master, netns) -> None:
    """An attacker on the host takes a name nobody registered yet; the
    operator then registers that name for a service's namespace. The
    squatter is cut off, cannot take the name back, and the service in
    the registered namespace attaches under it."""
    squat = Conn(master.path)
    try:
        reply = squat.ask({"op": "attach", "endpoint": "web"})
        assert reply is not None and reply["ok"], reply
        ns = netns("dnt-squat")
        reg = api(master).call("POST", "/v1/endpoints", {"name": "web", "netns": ns})
        assert squat.recv() is None  # the master closed the squatter's connection
    finally:
        squat.close()
    assert warnings(master, "ad-hoc endpoint evicted") == 1
    again = Conn(master.path)
    try:
        reply = again.ask({"op": "attach", "endpoint": "web"})
        assert reply is not None and reply["ok"] is False and reply["code"] == "EACCES", reply
    finally:
        again.close()
    ready = idle_in(master, ns, "web", reg["secret"]).expect("ready")
    eps = {e["name"]: e for e in master.status()["endpoints"]}
    assert eps["web"]["address"] == ready["address"]
