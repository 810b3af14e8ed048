"""The control protocol's one table (aiodocknet.control.MESSAGES) against
both of its sides (issue 14).

Every kind in the table is sent malformed (each field missing, of the
wrong type, out of range; descriptors it does not carry; kinds it does not
know; kinds of the other direction) to each side:

- to a real master's control socket;
- to a real DockNetLoop process's control connection, through a fake
  master: a unix socket server in the test that the process attaches to,
  which relays to a real master (so the process has a real link and real
  fast channels) and injects the malformed messages on the connection.

Each must get one error answer where its kind has one, one log line, and
change nothing: the process stays up, still answers, an open connection
through it still carries bytes, and no descriptor is left behind.
"""

from __future__ import annotations

import ast
import os
import queue
import select
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiodocknet import control
from aiodocknet.control import MESSAGES, Field, MessageKind, kinds, recv_message, send_message
from dn_harness import ROOT, Master, Proc, wait_for
from test_hostile_control import Conn, warnings

FC_PEER = Path(__file__).resolve().parent / "fc_peer.py"

# Channel ids and request numbers no real master hands out in these tests:
# what the slave answers to them is the test's, and never reaches the
# real master (which would otherwise act on a give-back).
FAKE_ID = 10**12
FAKE_REQ = 10**12
TO_SLAVE_FDS = 3


# ---- the table ----

def valid_to_master() -> dict[str, dict[str, Any]]:
    return {
        "attach": {"op": "attach", "endpoint": "ok-name", "pid": 1, "secret": "s"},
        "resolve": {"op": "resolve", "name": "someone"},
        "status": {"op": "status"},
        "ping": {"op": "ping"},
        "fc_connect": {"op": "fc_connect", "req": 1, "address": "10.77.0.9", "port": 80},
        "fc_closed": {"event": "fc_closed", "id": FAKE_ID},
        "listen": {"event": "listen", "port": 80, "on": True},
        "connections": {"event": "connections", "req": FAKE_REQ, "total": 0, "conns": []},
        # No endpoint's address: the master makes no link.
        "peer_want": {"event": "peer_want", "address": "10.77.0.250"},
    }


def valid_to_slave(victim_address: str) -> dict[str, dict[str, Any]]:
    return {
        "fc_offer": {"op": "fc_offer", "id": FAKE_ID, "port": 7000, "peer": ["10.77.0.250", 40000]},
        "connections": {"op": "connections", "req": FAKE_REQ},
        "fc_result": {"event": "fc_result", "req": FAKE_REQ, "ok": True, "id": FAKE_ID, "local_port": 40000},
        "limits": {"event": "limits", "egress_bits": 0, "ingress_bits": 0, "egress_pkts": 0, "ingress_pkts": 0},
        # A real peer's address: a valid notice would end its connection.
        "endpoint_gone": {"event": "endpoint_gone", "name": "x", "address": victim_address},
        "peer_up": {"event": "peer_up", "id": FAKE_ID, "address": "10.77.0.250", "mac": "02:00:0a:4d:00:fa",
                    "role": 0},
        "peer_down": {"event": "peer_down", "id": FAKE_ID},
    }


def bad_values(f: Field) -> Iterator[tuple[str, Any]]:
    """Values field f must refuse, each with a label for the report."""
    common: list[tuple[str, Any]] = [("null", None), ("object", {"a": 1}), ("nested list", [[[]]])]
    if f.type is int:
        yield from [("string", "1"), ("true", True), ("false", False), ("float", 1.5),
                    ("2**70", 2**70), ("-2**70", -(2**70)), ("10**300", 10**300)]
        if f.lo is not None:
            yield "below range", f.lo - 1
        if f.hi is not None:
            yield "above range", f.hi + 1
    elif f.type is str:
        yield from [("int", 1), ("true", True), ("NUL inside", "a\x00b")]
        if f.max_len is not None:
            yield "too long", "x" * (f.max_len + 1)
        if f.literal is not None:
            # Address fields take literals only: never a name, a prefix, a
            # scope (ipaddress itself takes "fe80::1%eth0"), or the
            # other family where one is named.
            yield from [("a name", "example.com"), ("a prefix", "fd77:d0c::/64"),
                        ("a scope (zone id)", "fe80::1%eth0"), ("a scoped IPv4", "10.77.0.5%lo"),
                        ("an IPv6 literal padded to the limit", " " * ((f.max_len or 45) - 3) + "::1")]
            if f.literal == "ipv6":
                yield "IPv4 in an IPv6 field", "10.77.0.5"
            if f.literal == "ipv4":
                yield "IPv6 in an IPv4 field", "fd77:d0c::5"
    elif f.type is bool:
        yield from [("1", 1), ("0", 0), ("string", "true")]
    elif f.type is list:
        yield from [("string", "x"), ("int", 1)]
        if f.items is not None:
            yield "one item short", ["10.77.0.1"]
            yield "an item of the wrong type", ["10.77.0.1", "port"]
            yield "an item out of range", ["10.77.0.1", 0]
            if any(i.literal for i in f.items):
                yield "a scoped address", ["fe80::1%eth0", 40000]
                yield "a name for an address", ["example.com", 40000]
    yield from (c for c in common if not isinstance(c[1], f.type))


def malformed(kind: MessageKind, base: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], int]]:
    """Each broken variant of base (a valid message of kind), with the
    descriptors to send along: the kind's own, so only the field is wrong,
    then one descriptor too many."""
    nfds = kind.descriptors(base)
    for f in kind.fields:
        if f.required or f.name in kind.required_if:
            yield f"{kind.name}: {f.name} missing", {k: v for k, v in base.items() if k != f.name}, nfds
        for label, value in bad_values(f):
            yield f"{kind.name}: {f.name} {label}", {**base, f.name: value}, nfds
    yield f"{kind.name}: {nfds + 1} descriptors", base, nfds + 1


def foreign(direction: str) -> list[tuple[str, dict[str, Any]]]:
    """Messages no kind travelling in direction is: unknown names, names of
    the other direction, neither key."""
    other = "to_slave" if direction == "to_master" else "to_master"
    out = [
        ("unknown op", {"op": "frobnicate"}),
        ("op not a string", {"op": ["ping"]}),
        ("unknown event", {"event": "frobnicated"}),
        ("event not a string", {"event": 7}),
        ("neither op nor event", {"endpoint": "x"}),
    ]
    mine = {(k.key, k.name) for k in MESSAGES if k.direction == direction}
    for k in MESSAGES:
        if k.direction == other and (k.key, k.name) not in mine:
            out.append((f"{k.key} {k.name} ({other})", {k.key: k.name}))
    return out


def test_every_handler_is_a_table_kind_and_back() -> None:
    """Each side's dispatcher has exactly the kinds the table sends its way,
    and the loop's handlers are kinds too; a dispatcher lacking one cannot
    be built."""
    from aiodocknet.master.control_server import ControlServer
    from aiodocknet.master.addresses import AddressPool
    import ipaddress

    srv = ControlServer("/nonexistent", None, AddressPool(ipaddress.ip_network("10.77.0.0/16")), 1500)  # type: ignore[arg-type]
    assert set(srv._dispatcher.handlers) == set(kinds("to_master"))
    from aiodocknet.native.stack import SlaveStack

    stack = SlaveStack.__new__(SlaveStack)
    assert set(stack.default_control().handlers) == set(kinds("to_slave"))
    with pytest.raises(ValueError, match="no handler"):
        control.Dispatcher("to_slave", {"limits": lambda m, f: None}, None)
    with pytest.raises(ValueError, match="not a kind"):
        stack.default_control().update({"attach": lambda m, f: None})
    # The test's valid messages are one of each kind, each side.
    for direction, valid in (("to_master", valid_to_master()), ("to_slave", valid_to_slave("10.77.0.2"))):
        assert set(valid) == set(kinds(direction)), direction
        for name, msg in valid.items():
            assert control.decode(msg, direction, kinds(direction)[name].descriptors(msg)).name == name


def literal_messages() -> Iterator[tuple[str, str, str]]:
    """(file, key, name) of every dict literal with a constant "op" or
    "event" in the library's source."""
    for path in (ROOT / "aiodocknet").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value in ("op", "event") and isinstance(v, ast.Constant):
                    yield str(path.relative_to(ROOT)), k.value, v.value


def test_every_message_the_library_writes_is_in_the_table() -> None:
    found = list(literal_messages())
    assert len(found) >= 10, found
    names = {(k.key, k.name) for k in MESSAGES}
    assert [f for f in found if (f[1], f[2]) not in names] == []


def test_a_sender_cannot_emit_what_its_table_rejects() -> None:
    """send() checks before it sends: every malformed variant of every
    kind is refused with nothing on the wire; the valid ones go."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        b.setblocking(False)
        bases = {("to_master", n): m for n, m in valid_to_master().items()}
        bases.update({("to_slave", n): m for n, m in valid_to_slave("10.77.0.2").items()})
        for kind in MESSAGES:
            base = bases[(kind.direction, kind.name)]
            control.send(a, base, kind.direction, [r] * kind.descriptors(base))
            got, fds = recv_message(b)
            assert got == base and len(fds) == kind.descriptors(base)
            for fd in fds:
                os.close(fd)
            for label, msg, nfds in malformed(kind, base):
                with pytest.raises(control.InvalidMessage):
                    control.send(a, msg, kind.direction, [r] * nfds)
                with pytest.raises(BlockingIOError):
                    b.recv(1)
            for label, msg in foreign(kind.direction):
                with pytest.raises(control.InvalidMessage):
                    control.send(a, msg, kind.direction)
        attach = kinds("to_master")["attach"]
        with pytest.raises(control.InvalidMessage):
            control.send_reply(a, attach, {"ok": True, "address": "10.77.0.2"}, [r, r, r])
        with pytest.raises(control.InvalidMessage):
            control.send_reply(a, attach, {"ok": True, "address": "10.77.0.2", "prefix": 16, "gateway": "10.77.0.1",
                                           "mac": "02:00:00:00:00:01", "mtu": 1500})  # no descriptors
    finally:
        a.close()
        b.close()
        os.close(r)
        os.close(w)


# ---- the master's side ----

def logged(proc: Proc, text: str) -> int:
    proc.stderr_tail()  # reads the whole log into stderr_text
    return proc.stderr_text.count(text)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def master_books(master: Master) -> dict[str, Any]:
    st = master.status()
    return {"endpoints": sorted((e["name"], e["address"]) for e in st["endpoints"]),
            "addresses_in_use": st["addresses_in_use"], "tenants": st["tenants"],
            "fast_channels": {k: st["fast_channels"][k] for k in ("made", "open", "memory")}}


def test_master_every_kind_malformed(master: Master) -> None:
    """To a real master, on an attached connection: every to_master kind
    broken each way, with descriptors it does not carry, and every kind it
    does not take. A request gets exactly one EINVAL answer (as its reply,
    or as the event it waits for), an event none; one log line each; the
    master's books and descriptors are as before, and it still attaches a
    real process afterwards."""
    c = Conn(master.path)
    r, w = os.pipe()
    try:
        attached = c.ask({"op": "attach", "endpoint": "victim"})
        assert attached is not None and attached["ok"], attached
        fds_before = open_fds(master.pid)
        books = master_books(master)
        logged = warnings(master, "invalid control message")
        cases = []
        for name, base in valid_to_master().items():
            kind = kinds("to_master")[name]
            cases += [(label, kind, msg, nfds) for label, msg, nfds in malformed(kind, base)]
        cases += [(label, None, msg, 0) for label, msg in foreign("to_master")]
        for label, kind, msg, nfds in cases:
            send_message(c.sock, msg, [r] * nfds)
            if "op" in msg or "event" not in msg:
                reply = c.recv()
                assert reply is not None, f"{label}: connection closed"
                assert reply["ok"] is False and reply["code"] == "EINVAL", (label, reply)
                if kind is not None and kind.reply_event and "event" in reply:
                    assert reply["event"] == kind.reply_event and reply["req"] == msg["req"], (label, reply)
            # The next answer is the ping's: no second reply, none to events.
            assert c.ask({"op": "ping"}) == {"ok": True, "pong": True}, label
            logged += 1
            assert warnings(master, "invalid control message") == logged, label
        assert master_books(master) == books
        # (status asks on connections of its own, which the master drops
        # as it sees them close: none may be left over)
        assert wait_for(lambda: open_fds(master.pid) <= fds_before), (open_fds(master.pid), fds_before)
        assert "Traceback" not in master.proc.stderr_text
    finally:
        c.close()
        os.close(r)
        os.close(w)
    assert master.peer("idle", "after-all-kinds").expect("ready")["address"]


# ---- the slave's side ----

class FakeMaster:
    """A control socket a DockNetLoop process attaches to as to its
    master. It relays every connection to the real master (the attach
    reply's link, fast-channel offers and their descriptors), keeps what
    the process says on its attached connection, and lets the test send it
    anything."""

    def __init__(self, upstream: str, path: str) -> None:
        self.upstream, self.path = upstream, path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        self.listener.listen(16)
        self.other: dict[socket.socket, socket.socket] = {}
        self.downstream: set[socket.socket] = set()
        self.attaching: socket.socket | None = None
        self.slave: socket.socket | None = None
        self.heard: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lock = threading.Lock()
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def ours(msg: dict[str, Any]) -> bool:
        """An answer to what the test sent (not for the real master)."""
        return ((msg.get("event") == "fc_closed" and msg.get("id", 0) >= FAKE_ID)
                or (msg.get("event") == "connections" and msg.get("req", 0) >= FAKE_REQ))

    def _close(self, s: socket.socket) -> None:
        o = self.other.pop(s, None)
        self.downstream.discard(s)
        s.close()
        if o is not None:
            self._close(o)

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.listener, self._stop_r, *self.other], [], [])
            for s in ready:
                if s == self._stop_r:
                    return
                if s is self.listener:
                    down, _ = self.listener.accept()
                    up = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                    up.connect(self.upstream)
                    self.other[down], self.other[up] = up, down
                    self.downstream.add(down)
                    continue
                if s not in self.other:
                    continue  # closed with its pair in this round
                try:
                    msg, fds = recv_message(s)
                except OSError:
                    msg, fds = None, []
                if msg is None:
                    self._close(s)
                    continue
                to = self.other[s]
                if s in self.downstream:
                    if msg.get("op") == "attach":
                        self.attaching = s
                    if s is self.slave:
                        self.heard.put(msg)
                        if self.ours(msg):
                            continue
                elif to is self.attaching and msg.get("ok") is True:
                    self.slave = to
                try:
                    with self.lock:
                        send_message(to, msg, fds)
                except OSError:
                    pass
                finally:
                    for fd in fds:
                        os.close(fd)

    def inject(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        assert self.slave is not None
        with self.lock:
            send_message(self.slave, msg, fds)

    def inject_bytes(self, data: bytes) -> None:
        assert self.slave is not None
        with self.lock:
            self.slave.send(data)

    def barrier(self, req: int) -> list[dict[str, Any]]:
        """Ask for the process's connections; what it said before answering
        (its answers to what came before, in order), and the answer."""
        self.inject({"op": "connections", "req": req})
        said = []
        while True:
            msg = self.heard.get(timeout=10)
            if msg.get("event") == "connections" and msg.get("req") == req and "error" not in msg:
                return [*said, msg]
            said.append(msg)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(10)
        for s in list(self.other):
            s.close()
        self.listener.close()
        os.close(self._stop_r)
        os.close(self._stop_w)


def expected_answers(kind: MessageKind | None, msg: dict[str, Any]) -> list[tuple[str, Any]]:
    """What the slave answers to a malformed msg: the kind's one answer,
    when the fields it needs can be read; nothing to what it knows no kind
    of (its master takes no replies)."""
    if kind is None:
        return []
    good = lambda name: control.field_value(kind, msg, name) is not None  # noqa: E731
    if kind.name == "connections" and good("req"):
        return [("connections error", msg["req"])]
    if kind.name == "fc_offer" and good("id"):
        return [("fc_closed", msg["id"])]
    if kind.name == "fc_result" and good("id") and msg.get("ok") is True:
        return [("fc_closed", msg["id"])]
    return []


def answers(said: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for m in said[:-1]:
        if m.get("event") == "fc_closed":
            out.append(("fc_closed", m["id"]))
        elif m.get("event") == "connections" and "error" in m:
            assert m["total"] == 0 and m["conns"] == [], m
            out.append(("connections error", m["req"]))
        else:
            out.append((str(m.get("event") or m.get("op")), m))
    return out


@pytest.fixture
def fake_master(master: Master) -> Iterator[FakeMaster]:
    with tempfile.TemporaryDirectory(prefix="dn-fake-master-") as d:
        fm = FakeMaster(master.path, os.path.join(d, "master.sock"))
        try:
            yield fm
        finally:
            fm.close()


def fc_proc(env: dict[str, str], name: str, *args: str) -> Proc:
    return Proc([sys.executable, str(FC_PEER), *args], dict(env, DOCKNET_ENDPOINT=name, DOCKNET_FAST_CHANNELS="1"),
                name)


def test_slave_every_kind_malformed(master: Master, fake_master: FakeMaster) -> None:
    """A real DockNetLoop server attached through the fake master, a real
    client streaming to it over a fast channel. Every to_slave kind broken
    each way, with a descriptor too many, every kind it does not take, and
    bytes that are no message: each gets its kind's one answer (an `ss`
    error, a channel given back) or none, one log line, and changes
    nothing: the process answers throughout, holds no extra descriptor,
    lists the same connections, and the open stream (whose peer the
    malformed endpoint_gone notices name) still carries bytes; a new
    connection to it works."""
    env = dict(master.env, DOCKNET_MASTER=fake_master.path)
    server = fc_proc(env, "proto-server", "server", "--port", "7000")
    master.peers.append(server)
    srv = server.expect("ready", timeout=60)
    assert fake_master.slave is not None
    client = fc_proc(master.env, "proto-client", "client", "--host", srv["address"], "--port", "7000", "stream")
    master.peers.append(client)
    assert client.expect("connected", timeout=60)["transport"] == "FastChannelTransport"
    client_address = next(e["address"] for e in master.status()["endpoints"] if e["name"] == "proto-client")

    req = iter(range(FAKE_REQ + 1, FAKE_REQ + 10**6))
    first = fake_master.barrier(next(req))
    conns_before = sorted(str(c["id"]) for c in first[-1]["conns"])
    assert any(c["path"] == "fast" for c in first[-1]["conns"]), first
    fds_before = open_fds(server.pid)

    cases: list[tuple[str, MessageKind | None, dict[str, Any], int]] = []
    for name, base in valid_to_slave(client_address).items():
        kind = kinds("to_slave")[name]
        cases += [(label, kind, msg, nfds) for label, msg, nfds in malformed(kind, base)]
    cases += [(label, None, msg, 0) for label, msg in foreign("to_slave")]
    lines = logged(server, "invalid control message")
    spare = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        for label, kind, msg, nfds in cases:
            fake_master.inject(msg, [spare] * nfds)
            said = fake_master.barrier(next(req))
            assert answers(said) == expected_answers(kind, msg), label
            lines += 1
            assert logged(server, "invalid control message") == lines, label
        # An offer whose descriptors did not all arrive (what the kernel
        # does at the process's descriptor limit): given back at once, and
        # said so as such.
        offer = valid_to_slave(client_address)["fc_offer"]
        fake_master.inject(offer, [spare])
        assert answers(fake_master.barrier(next(req))) == [("fc_closed", FAKE_ID)]
        assert logged(server, "fast channel not usable") == 1
        assert logged(server, "invalid control message") == lines
        # Bytes that are not a message: logged, the connection kept.
        fake_master.inject_bytes(b"{not json")
        assert answers(fake_master.barrier(next(req))) == []
        assert logged(server, "bad message from the master") == 1
    finally:
        os.close(spare)

    last = fake_master.barrier(next(req))[-1]
    assert sorted(str(c["id"]) for c in last["conns"]) == conns_before
    assert wait_for(lambda: open_fds(server.pid) == fds_before), (open_fds(server.pid), fds_before)
    assert server.popen.poll() is None and "Traceback" not in server.stderr_tail()
    # The open connection still moves bytes, end to end.
    client.send("go")
    client.expect("streaming")
    client.send("stop")
    assert "seconds" in client.expect("result", timeout=60)
    sink = server.expect("sink", timeout=60)
    assert sink["bytes"] > 0 and sink["transport"] == "FastChannelTransport"
    # And a new one is made (a fast channel offered through the fake master).
    again = fc_proc(master.env, "proto-again", "client", "--host", srv["address"], "--port", "7000", "connect")
    master.peers.append(again)
    res = again.expect("result", timeout=60)
    assert res["outcome"] == "connected" and res["echoed"] == "hello\n", res
    server.stderr_tail()
    assert "Traceback" not in server.stderr_text, server.stderr_text


def test_a_reply_not_in_the_table_is_refused_by_the_slave() -> None:
    """An attach answered with a reply the table rejects (no descriptors,
    a field missing) is a protocol error at the slave, not a half-made
    endpoint."""
    from aiodocknet.control import ControlError
    from aiodocknet.native.stack import request_attach

    with tempfile.TemporaryDirectory(prefix="dn-bad-reply-") as d:
        path = os.path.join(d, "master.sock")
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lst.bind(path)
        lst.listen(1)
        good = {"ok": True, "endpoint": "e", "address": "10.77.0.2", "prefix": 16, "gateway": "10.77.0.1",
                "mac": "02:00:00:00:00:01", "mtu": 1500}
        for reply, nfds in [(good, 0), ({k: v for k, v in good.items() if k != "mtu"}, 3),
                            ({**good, "prefix": 33}, 3), ({"ok": "yes"}, 0), ({"ok": False}, 0)]:
            r, w = os.pipe()

            def answer() -> None:
                conn, _ = lst.accept()
                with conn:
                    recv_message(conn)
                    send_message(conn, reply, [r] * nfds)
                    conn.recv(1)

            t = threading.Thread(target=answer)
            t.start()
            try:
                with pytest.raises(ControlError, match="malformed attach reply"):
                    request_attach("someone", path, timeout=5)
            finally:
                t.join(10)
                os.close(r)
                os.close(w)
        lst.close()

