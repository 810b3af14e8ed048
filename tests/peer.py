"""A DockNet slave process for the tests: one SlaveStack, one role.

Run as ``python tests/peer.py ROLE --name ENDPOINT [options]``; it attaches
to the master named by DOCKNET_MASTER, prints one JSON line per thing the
test needs to know (``ready`` with its address first), and exits 0 when its
job is done. Servers run until killed (SIGTERM exits cleanly).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiodocknet.native.stack import (  # noqa: E402
    EV_ACCEPTED,
    EV_CONNECTED,
    EV_ERROR,
    EV_PEER_CLOSED,
    EV_PING_REPLY,
    EV_READABLE,
    EV_WRITABLE,
    Event,
    SlaveStack,
)

CHUNK = 256 * 1024


def say(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


class Conn:
    """Per-connection state of the reactor below."""

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.out = bytearray()
        self.out_done = False  # shut down writing once out drains
        self.eof = False
        self.error = 0
        self.rx = hashlib.sha256()
        self.rx_bytes = 0
        self.connected = False
        self.closed = False
        self.expect: bytes | None = None
        self.received = bytearray()
        self.keep = False


class Reactor:
    """Polls the stack, spinning briefly before sleeping on the doorbell."""

    def __init__(self, st: SlaveStack) -> None:
        self.st = st
        self.conns: dict[int, Conn] = {}
        self.buf = bytearray(CHUNK)
        self.on_accept: Callable[[Conn], None] = lambda c: None
        self.on_data: Callable[[Conn, memoryview], None] = lambda c, d: None
        self.on_eof: Callable[[Conn], None] = lambda c: None
        self.on_error: Callable[[Conn], None] = lambda c: None
        self.on_connected: Callable[[Conn], None] = lambda c: None
        self.on_ping: Callable[[Event], None] = lambda e: None
        self.stop = False

    def flush(self, c: Conn) -> None:
        while c.out and not c.closed and not c.error:
            try:
                n = self.st.send(c.cid, c.out[:CHUNK])
            except BlockingIOError:
                return
            del c.out[:n]
        if not c.out and c.out_done and not c.closed and not c.error:
            self.st.shutdown(c.cid)
            c.out_done = False

    def write(self, c: Conn, data: bytes) -> None:
        c.out += data
        self.flush(c)

    def close(self, c: Conn) -> None:
        if not c.closed:
            c.closed = True
            self.st.close_conn(c.cid)

    def _read(self, c: Conn) -> None:
        while not c.closed:
            try:
                n = self.st.recv_into(c.cid, self.buf)
            except BlockingIOError:
                return
            except OSError as exc:
                c.error = exc.errno or errno.EIO
                self.on_error(c)
                return
            if n == 0:
                if not c.eof:
                    c.eof = True
                    self.on_eof(c)
                return
            view = memoryview(self.buf)[:n]
            if c.keep:
                c.received += view
            c.rx.update(view)
            c.rx_bytes += n
            self.on_data(c, view)

    def handle(self, ev: Event) -> None:
        if ev.kind == EV_PING_REPLY:
            self.on_ping(ev)
            return
        if ev.kind == EV_ACCEPTED:
            c = self.conns[ev.conn] = Conn(ev.conn)
            c.connected = True
            self.on_accept(c)
            return
        c = self.conns.get(ev.conn)
        if c is None or c.closed:
            return
        if ev.kind == EV_CONNECTED:
            c.connected = True
            self.on_connected(c)
        elif ev.kind in (EV_READABLE, EV_PEER_CLOSED):
            self._read(c)
        elif ev.kind == EV_WRITABLE:
            self.flush(c)
        elif ev.kind == EV_ERROR:
            c.error = ev.arg
            self.on_error(c)

    def run(self, until: Callable[[], bool] = lambda: False, timeout: float = 1e9) -> None:
        deadline = time.monotonic() + timeout
        idle = 0
        while not self.stop and not until():
            events = self.st.poll()
            for ev in events:
                self.handle(ev)
            if events:
                idle = 0
                continue
            idle += 1
            if time.monotonic() > deadline:
                raise TimeoutError("peer did not finish in time")
            if idle > 50:
                self.st.wait(1.0)


def serve_echo(st: SlaveStack, args: argparse.Namespace) -> None:
    r = Reactor(st)
    st.listen(args.port)
    if args.ipv6:
        st.listen(args.port, "::")

    def on_accept(c: Conn) -> None:
        if args.abort_on_accept:
            st.abort(c.cid)
            r.close(c)
            say(event="aborted")
        elif args.shut_first:
            # The server half-closes first: a greeting, then its FIN; it
            # keeps reading what the client sends after that.
            c.out_done = True
            r.write(c, b"hello")

    def on_data(c: Conn, data: memoryview) -> None:
        if not args.sink and not args.shut_first:
            r.write(c, bytes(data))

    def on_eof(c: Conn) -> None:
        # Half-close: the peer stopped writing; answer with what we saw,
        # then finish our side once everything queued has gone.
        say(event="eof", conn=c.cid, bytes=c.rx_bytes, sha256=c.rx.hexdigest())
        if args.shut_first:
            r.close(c)
            return
        if args.close_on_eof:
            # Everything was echoed as it came: answer the FIN and let the
            # connection's place go, as a server that closes does.
            r.flush(c)
            r.close(c)
            return
        if args.sink:
            r.write(c, json.dumps({"bytes": c.rx_bytes, "sha256": c.rx.hexdigest()}).encode())
        c.out_done = True
        r.flush(c)

    def on_error(c: Conn) -> None:
        if not args.quiet:
            say(event="error", conn=c.cid, errno=errno.errorcode.get(c.error, str(c.error)))
        r.close(c)

    r.on_accept, r.on_data, r.on_eof, r.on_error = on_accept, on_data, on_eof, on_error
    udp = st.udp_bind(args.port)
    say(event="ready", address=st.address, address6=st.address6, port=args.port)

    sunk = 0

    def udp_echo() -> None:
        nonlocal sunk
        while True:
            try:
                data, addr = st.recvfrom(udp)
            except BlockingIOError:
                return
            if not args.sink:
                st.sendto(udp, data, addr)
            elif data == b"end":
                say(event="udp-sunk", datagrams=sunk)
            else:
                sunk += 1

    orig = r.handle

    # --hold-reads: read nothing until a line on stdin, so the receive
    # window fills and closes; then read on as usual.
    holding = args.hold_reads

    def handle(ev: Event) -> None:
        if ev.conn == udp and ev.kind == EV_READABLE:
            udp_echo()
        elif holding and ev.kind in (EV_READABLE, EV_PEER_CLOSED):
            pass  # read once released
        else:
            orig(ev)

    r.handle = handle  # type: ignore[method-assign]
    # Stdin rings no doorbell: while held, the stack is polled and stdin
    # looked at every 50 ms.
    while holding:
        for ev in st.poll():
            handle(ev)
        if stdin_ready():
            sys.stdin.readline()
            holding = False
            say(event="reading")
            for c in list(r.conns.values()):
                r._read(c)
        else:
            st.wait(0.05)
    r.run()


def connect(r: Reactor, target: str, port: int, timeout: float = 10) -> Conn:
    c = Conn(r.st.connect(target, port))
    r.conns[c.cid] = c
    r.run(lambda: c.connected or bool(c.error), timeout)
    return c


def client_echo(st: SlaveStack, args: argparse.Namespace) -> None:
    """Send args.bytes of random data on each of args.conns connections,
    read the echo back, compare digests."""
    r = Reactor(st)
    conns: list[Conn] = []
    for i in range(args.conns):
        c = Conn(st.connect(args.target, args.port))
        r.conns[c.cid] = c
        conns.append(c)
    r.on_error = lambda c: None
    r.run(lambda: all(c.connected or c.error for c in conns), 30)
    failed = [c for c in conns if c.error]
    if failed:
        say(event="connect_failed", count=len(failed), errno=errno.errorcode.get(failed[0].error))
        sys.exit(1)
    say(event="connected", count=len(conns), sockname=st.sockname(conns[0].cid),
        peername=st.peername(conns[0].cid))
    if args.cue:
        sys.stdin.readline()
    sent = {}
    start = time.monotonic()
    for c in conns:
        data = os.urandom(args.bytes) if args.bytes <= 1 << 20 else None
        h = hashlib.sha256()
        if data is None:
            # Large transfers: stream pseudo-random blocks, hash as we go.
            block = os.urandom(1 << 20)
            for i, off in enumerate(range(0, args.bytes, 1 << 20)):
                piece = hashlib.sha256(i.to_bytes(8, "little")).digest() + block[32:]
                piece = piece[: args.bytes - off]
                h.update(piece)
                c.out += piece
                if len(c.out) > 8 << 20:
                    r.flush(c)
                    r.run(lambda: len(c.out) < 4 << 20 or bool(c.error), 60)
        else:
            h.update(data)
            c.out += data
        sent[c.cid] = h.hexdigest()
        if args.half_close:
            c.out_done = True
        r.flush(c)
    r.run(lambda: all(c.rx_bytes >= args.bytes or c.error for c in conns), args.timeout)
    elapsed = time.monotonic() - start
    bad = [c.cid for c in conns if c.error or c.rx.hexdigest() != sent[c.cid]]
    say(event="done", conns=len(conns), bytes=args.bytes, ok=not bad, bad=len(bad),
        sent_sha256=sent[conns[0].cid], recv_sha256=conns[0].rx.hexdigest(),
        seconds=round(elapsed, 3),
        errors=sorted({errno.errorcode.get(c.error, "") for c in conns if c.error}))
    if args.half_close:
        # Our side is shut for writing; the peer's FIN must still arrive.
        r.run(lambda: all(c.eof or c.error for c in conns), 30)
        say(event="eof", all=all(c.eof for c in conns))
    if args.linger:
        r.run(stdin_ready, args.timeout)  # the test reads our counters first
    for c in conns:
        r.close(c)
    sys.exit(0 if not bad else 1)


def client_half_close(st: SlaveStack, args: argparse.Namespace) -> None:
    """Send args.bytes, shut down writing, then keep reading: the sink's
    answer (its byte count and digest) arrives after our FIN."""
    r = Reactor(st)
    c = connect(r, args.target, args.port)
    c.keep = True
    data = os.urandom(args.bytes)
    c.out += data
    c.out_done = True
    r.flush(c)
    r.run(lambda: c.eof or bool(c.error), args.timeout)
    say(event="done", error=errno.errorcode.get(c.error, ""), eof=c.eof,
        sent_sha256=hashlib.sha256(data).hexdigest(), answer=json.loads(bytes(c.received) or b"null"))
    r.close(c)


def client_stream(st: SlaveStack, args: argparse.Namespace) -> None:
    """Stream args.bytes to a sink (--sink echo server), shut down writing,
    read its answer (byte count and digest) and its FIN: one direction of
    data, so the receiver's ACKs are pure and count as duplicate ACKs."""
    r = Reactor(st)
    c = connect(r, args.target, args.port)
    if c.error:
        say(event="error", errno=errno.errorcode.get(c.error, str(c.error)))
        sys.exit(1)
    c.keep = True
    say(event="connected")
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    start = time.monotonic()
    for i, off in enumerate(range(0, args.bytes, 1 << 20)):
        # Every MiB differs (its index leads it), so a misplaced block
        # changes the digest.
        piece = (hashlib.sha256(i.to_bytes(8, "little")).digest() + block[32:])[: args.bytes - off]
        h.update(piece)
        c.out += piece
        if len(c.out) > 8 << 20:
            r.flush(c)
            r.run(lambda: len(c.out) < 4 << 20 or bool(c.error), args.timeout)
    c.out_done = True
    r.flush(c)
    r.run(lambda: c.eof or bool(c.error), args.timeout)
    say(event="done", error=errno.errorcode.get(c.error, ""), eof=c.eof, sent_sha256=h.hexdigest(),
        seconds=round(time.monotonic() - start, 3), answer=json.loads(bytes(c.received) or b"null"))
    if args.linger:
        r.run(stdin_ready, args.timeout)  # the test reads our counters first
    r.close(c)


def stdin_ready() -> bool:
    return bool(select.select([sys.stdin], [], [], 0)[0])


def client_close_on_cue(st: SlaveStack, args: argparse.Namespace) -> None:
    """Exchange args.bytes with an echo server, report "idle" once the echo
    is back (nothing in flight), wait for a line on stdin (the test sets up
    its faults meanwhile), then shut down writing and wait for the server's
    FIN, which the echo server sends once it has seen ours."""
    r = Reactor(st)
    c = connect(r, args.target, args.port)
    if c.error:
        say(event="error", errno=errno.errorcode.get(c.error, str(c.error)))
        sys.exit(1)
    data = os.urandom(args.bytes)
    r.write(c, data)
    r.run(lambda: c.rx_bytes >= len(data) or bool(c.error), args.timeout)
    say(event="idle", echoed=c.rx_bytes, intact=c.rx.hexdigest() == hashlib.sha256(data).hexdigest())
    # Keep polling meanwhile: delayed ACKs leave now, not after the cue.
    r.run(stdin_ready, args.timeout)
    sys.stdin.readline()
    start = time.monotonic()
    c.out_done = True
    r.flush(c)
    r.run(lambda: c.eof or bool(c.error), args.timeout)
    say(event="done", eof=c.eof, error=errno.errorcode.get(c.error, ""),
        seconds=round(time.monotonic() - start, 3))
    r.run(stdin_ready, args.timeout)  # the test reads our counters first
    r.close(c)


def client_after_server_fin(st: SlaveStack, args: argparse.Namespace) -> None:
    """Against a --shut-first server: read its greeting and its FIN, then
    send args.bytes on our still-open half and shut it down; the server
    reports what it received."""
    r = Reactor(st)
    c = connect(r, args.target, args.port)
    if c.error:
        say(event="error", errno=errno.errorcode.get(c.error, str(c.error)))
        sys.exit(1)
    c.keep = True
    r.run(lambda: c.eof or bool(c.error), args.timeout)
    say(event="server_fin", greeting=bytes(c.received).decode(errors="replace"),
        error=errno.errorcode.get(c.error, ""))
    data = os.urandom(args.bytes)
    c.out_done = True
    r.write(c, data)
    r.run(lambda: (not c.out and not c.out_done) or bool(c.error), args.timeout)
    say(event="sent", error=errno.errorcode.get(c.error, ""), sent_sha256=hashlib.sha256(data).hexdigest())
    # Stay until the test has seen the server get it all: an endpoint that
    # goes away has its peers' connections to it reset.
    r.run(stdin_ready, args.timeout)
    r.close(c)


def client_keepalive(st: SlaveStack, args: argparse.Namespace) -> None:
    """Connect with keepalive on (1 s idle, then 3 probes 0.5 s apart) and
    sit idle until the connection fails; report how and after how long."""
    r = Reactor(st)
    c = connect(r, args.target, args.port)
    if c.error:
        say(event="error", errno=errno.errorcode.get(c.error, str(c.error)))
        sys.exit(1)
    st.set_keepalive(c.cid, True)
    st.set_keepalive_times(c.cid, idle=1.0, interval=0.5, count=3)
    say(event="connected")
    start = time.monotonic()
    r.on_error = lambda c: None
    r.run(lambda: bool(c.error) or c.eof, args.timeout)
    say(event="error" if c.error else "eof", errno=errno.errorcode.get(c.error, ""),
        seconds=round(time.monotonic() - start, 3))


def client_stream_until_error(st: SlaveStack, args: argparse.Namespace) -> None:
    """Stream to the target until the connection fails; report how."""
    r = Reactor(st)
    c = connect(r, args.target, args.port)
    say(event="connected", error=c.error)
    block = os.urandom(64 * 1024)
    deadline = time.monotonic() + args.timeout
    while not c.error and time.monotonic() < deadline:
        if len(c.out) < 1 << 20:
            c.out += block
        r.flush(c)
        for ev in st.poll():
            r.handle(ev)
    say(event="failed" if c.error else "timeout", errno=errno.errorcode.get(c.error, ""),
        received=c.rx_bytes)


def client_connect(st: SlaveStack, args: argparse.Namespace) -> None:
    r = Reactor(st)
    start = time.monotonic()
    c = connect(r, args.target, args.port, min(args.timeout, 60))
    if c.error:
        say(event="error", errno=errno.errorcode.get(c.error, str(c.error)),
            seconds=round(time.monotonic() - start, 3))
        return
    say(event="connected")
    r.on_error = lambda c: None
    # Wait for whatever the server does (reset, data, close).
    r.run(lambda: bool(c.error) or c.eof, args.timeout)
    say(event="error" if c.error else "eof", errno=errno.errorcode.get(c.error, ""))


def client_send_on_cue(st: SlaveStack, args: argparse.Namespace) -> None:
    """Connect, then on a line on stdin send args.bytes and wait until the
    connection fails (or the peer closes); report how, and how long after
    the send."""
    r = Reactor(st)
    c = connect(r, args.target, args.port)
    if c.error:
        say(event="error", errno=errno.errorcode.get(c.error, str(c.error)), seconds=0)
        sys.exit(1)
    say(event="connected")
    r.run(stdin_ready, args.timeout)
    sys.stdin.readline()
    start = time.monotonic()
    r.on_error = lambda c: None
    r.write(c, os.urandom(args.bytes))
    r.run(lambda: bool(c.error) or c.eof, args.timeout)
    say(event="error" if c.error else "eof", errno=errno.errorcode.get(c.error, ""),
        seconds=round(time.monotonic() - start, 3), unsent=len(c.out))


def client_on_cue(st: SlaveStack, args: argparse.Namespace) -> None:
    """Connections opened, used and closed as lines on stdin say, one
    answer a line: ``open N`` (each attempt's outcome and the slowest),
    ``echo`` (a message on each open connection, all answered?),
    ``close`` (the oldest open one, gracefully), ``exit``."""
    r = Reactor(st)
    r.on_error = lambda c: None
    open_conns: list[Conn] = []
    while True:
        r.run(stdin_ready, args.timeout)
        cmd = sys.stdin.readline().split()
        if not cmd or cmd[0] == "exit":
            return
        if cmd[0] == "open":
            start = time.monotonic()
            fresh: list[Conn] = []
            outcomes: dict[str, int] = {}
            for _ in range(int(cmd[1])):
                c = Conn(st.connect(args.target, args.port))
                r.conns[c.cid] = c
                fresh.append(c)
            r.run(lambda: all(c.connected or c.error for c in fresh), args.timeout)
            seconds = time.monotonic() - start
            for c in fresh:
                key = "connected" if c.connected and not c.error else errno.errorcode.get(c.error, "pending")
                outcomes[key] = outcomes.get(key, 0) + 1
                if key == "connected":
                    open_conns.append(c)
                else:
                    r.close(c)
            say(event="opened", outcomes=outcomes, seconds=round(seconds, 3))
        elif cmd[0] == "echo":
            for i, c in enumerate(open_conns):
                c.keep, c.received = True, bytearray()
                r.write(c, b"ping %d" % i)
            want = {c.cid: b"ping %d" % i for i, c in enumerate(open_conns)}
            r.run(lambda: all(c.received == want[c.cid] or c.error or c.eof for c in open_conns), 10)
            say(event="echoed", ok=sum(c.received == want[c.cid] for c in open_conns), of=len(open_conns),
                errors=sorted({errno.errorcode.get(c.error, "") for c in open_conns if c.error}))
        elif cmd[0] == "close":
            c = open_conns.pop(0)
            r.close(c)
            say(event="closed", open=len(open_conns))


def client_hold(st: SlaveStack, args: argparse.Namespace) -> None:
    """Open args.conns connections at once, report how each attempt ended
    and how long that took, then hold the ones that opened."""
    r = Reactor(st)
    conns: list[Conn] = []
    outcomes: dict[str, int] = {}
    start = time.monotonic()
    for _ in range(args.conns):
        try:
            c = Conn(st.connect(args.target, args.port))
        except OSError as exc:
            key = errno.errorcode.get(exc.errno or 0, str(exc))
            outcomes[key] = outcomes.get(key, 0) + 1
            continue
        r.conns[c.cid] = c
        conns.append(c)
    r.on_error = lambda c: None
    r.run(lambda: all(c.connected or c.error for c in conns), args.timeout)
    for c in conns:
        key = "connected" if c.connected and not c.error else errno.errorcode.get(c.error, "pending")
        outcomes[key] = outcomes.get(key, 0) + 1
    say(event="held", outcomes=outcomes, seconds=round(time.monotonic() - start, 3))
    r.run()


def client_port_range(st: SlaveStack, args: argparse.Namespace) -> None:
    """With args.count ephemeral ports (from 33000): that many connections
    to --target, closed from this side (TIME-WAIT here); then as many to
    --target2, which may reuse those ports (another peer, another 4-tuple);
    then one more to each, which must fail at once. Then UDP from the
    range."""
    lo, hi = 33000, 33000 + args.count - 1
    st.set_port_range(lo, hi)
    r = Reactor(st)
    r.on_error = lambda c: None

    def open_all(target: str) -> list[Conn]:
        conns = []
        for _ in range(args.count):
            try:
                c = Conn(st.connect(target, args.port))
            except OSError as exc:
                say(event="error", errno=errno.errorcode.get(exc.errno or 0, str(exc)))
                return conns
            r.conns[c.cid] = c
            conns.append(c)
        r.run(lambda: all(c.connected or c.error for c in conns), args.timeout)
        return conns

    def one_more(target: str) -> str:
        try:
            st.abort(st.connect(target, args.port))
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))
        return ""

    first = open_all(args.target)
    first_ports = sorted(st.sockname(c.cid)[1] for c in first if c.connected)
    for c in first:
        st.close_conn(c.cid)
    # The servers' FINs (echo servers close when we do): TIME-WAIT here.
    until = time.monotonic() + 0.5
    r.run(lambda: time.monotonic() > until, 5)
    second = open_all(args.target2)
    second_ports = sorted(st.sockname(c.cid)[1] for c in second if c.connected)
    u = st.udp_bind()
    say(event="done", lo=lo, hi=hi, first=first_ports, second=second_ports,
        refused_again=one_more(args.target), refused_full=one_more(args.target2), udp_port=st.sockname(u)[1])
    r.run()


def client_udp(st: SlaveStack, args: argparse.Namespace) -> None:
    """Datagrams of 1 B to 8000 B (jumbo frames), numbered, echoed back."""
    r = Reactor(st)
    u = st.udp_bind(0)
    sizes = [1, 64, 512, 1400, 4000, 8000]
    msgs = {i: i.to_bytes(4, "little") + os.urandom(max(sizes[i % 6] - 4, 0)) for i in range(args.count)}
    got: dict[int, bytes] = {}

    def drain(ev: Event) -> None:
        if ev.conn == u and ev.kind == EV_READABLE:
            while True:
                try:
                    data, _ = st.recvfrom(u)
                except BlockingIOError:
                    return
                got[int.from_bytes(data[:4], "little")] = data

    r.handle = drain  # type: ignore[method-assign]
    for i, payload in msgs.items():
        st.sendto(u, payload, (args.target, args.port))
        if i % 16 == 15:
            # Pace in batches: the echo server's queue is bounded, as a
            # socket buffer is, and UDP may drop past it.
            r.run(lambda: len(got) > i - 8, 5)  # type: ignore[misc]
    try:
        r.run(lambda: len(got) >= len(msgs), 10)
    except TimeoutError:
        pass
    intact = sum(1 for i, p in msgs.items() if got.get(i) == p)
    say(event="done", sent=len(msgs), received=len(got), intact=intact)


def client_ping(st: SlaveStack, args: argparse.Namespace) -> None:
    r = Reactor(st)
    replies: list[Event] = []
    r.on_ping = replies.append
    lost = 0
    for seq in range(1, args.count + 1):
        st.ping(args.target, seq)
        try:
            r.run(lambda: len(replies) + lost >= seq, min(5.0, args.timeout))  # type: ignore[misc]
        except TimeoutError:
            lost += 1  # the test counts replies; a lost one is not a crash
    say(event="done", replies=len(replies), seqs=[e.conn for e in replies],
        rtt_us=[e.arg for e in replies])


def udp_trickle(st: SlaveStack, args: argparse.Namespace) -> None:
    """64-byte datagrams at least --interval seconds apart, nothing expected
    back (metrics to a collector), then b"end". A late sender does not catch
    up: a burst is not a trickle."""
    u = st.udp_bind(0)
    payload = b"m" * 64
    say(event="sending")
    for _ in range(args.count):
        st.sendto(u, payload, (args.target, args.port))
        st.poll()
        time.sleep(args.interval)
    st.sendto(u, b"end", (args.target, args.port))
    st.poll()
    say(event="done", sent=args.count)


def bad_frames(st: SlaveStack, args: argparse.Namespace) -> None:
    """Frames the switch must refuse, then a ping that must still work."""
    import ipaddress
    import struct

    me = ipaddress.IPv4Address(st.address).packed
    dst_ip = ipaddress.IPv4Address(args.target).packed
    mac_dst = b"\x02\x00" + dst_ip
    mac_src = b"\x02\x00" + me

    def ip_frame(src: bytes, ihl_len: int = 0x45, total: int = 28, proto: int = 17, l4: int = 8) -> bytes:
        hdr = struct.pack("!BBHHHBBH4s4s", ihl_len, 0, total, 0, 0, 64, proto, 0, src, dst_ip)
        return mac_dst + mac_src + b"\x08\x00" + hdr + b"\0" * l4

    def tcp_frame(src: bytes, ihl_len: int = 0x45, total: int = 40) -> bytes:
        # Whole TCP headers: long enough for the switch's ring-to-ring path.
        return ip_frame(src, ihl_len, total, proto=6, l4=20)

    frames = {
        "runt": b"\x01\x02\x03",
        "no_ip_header": mac_dst + mac_src + b"\x08\x00" + b"\x45\x00",
        "bad_ihl": ip_frame(me, ihl_len=0x42),
        "bad_version": ip_frame(me, ihl_len=0x65),
        "length_beyond_frame": ip_frame(me, total=1400),
        "unknown_ethertype": mac_dst + mac_src + b"\x88\xb5" + b"\0" * 46,
        "spoofed_source": ip_frame(bytes([10, 77, 200, 200])),
        "tcp_bad_version": tcp_frame(me, ihl_len=0x65),
        "tcp_length_beyond_frame": tcp_frame(me, total=1400),
        "tcp_length_below_header": tcp_frame(me, total=12),
        "tcp_spoofed_source": tcp_frame(bytes([10, 77, 200, 201])),
    }
    for frame in frames.values():
        st.send_frame(frame)
    r = Reactor(st)
    replies: list[Event] = []
    r.on_ping = replies.append
    st.ping(args.target, 1)
    r.run(lambda: bool(replies), 10)
    say(event="done", sent=sorted(frames), ping_ok=bool(replies))
    r.run()  # stay attached: the test reads this endpoint's counters


# Options of the SYNs raw-syns sends, by name (tests/test_tcp_options.py).
SYN_OPTIONS = {
    "mss_wscale": b"\x02\x04\x05\xb4\x01\x03\x03\x07",
    "nops_then_eol": b"\x01\x01\x01\x00",
    "mss_kind_last": b"\x01\x01\x01\x02",
    "unknown_kind_last": b"\x02\x04\x05\xb4\x01\x01\x01\x22",
    "length_zero": b"\x22\x00\x01\x01",
    "length_one": b"\x01\x01\x22\x01",
    "length_past_end": b"\x02\x04\x05\xb4\x22\x08\x00\x00",
    "mss_length_past_end": b"\x01\x01\x02\x04\x05\xb4\x01\x02",
}


def raw_syns(st: SlaveStack, args: argparse.Namespace) -> None:
    """One SYN to args.target:args.port per named option list (args.cases,
    comma-separated, from SYN_OPTIONS), written as a raw frame past this
    process's lwIP; counts the frames that come back in the next 0.5 s
    (the SYN-ACK, which this stack then resets: it holds no connection)."""
    import frames

    results: dict[str, int] = {}
    for i, name in enumerate(args.cases.split(",")):
        packet = frames.tcp(st.address, args.target, 41000 + i, args.port, frames.SYN, seq=1000 * (i + 1),
                            options=SYN_OPTIONS[name], ident=i)
        before = st.stats()["rx_frames"]
        st.send_frame(frames.ethernet(st.address, args.target, packet))
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            st.poll()
            st.wait(max(deadline - time.monotonic(), 0.0))
        results[name] = st.stats()["rx_frames"] - before
    say(event="done", answers=results)


def idle(st: SlaveStack, args: argparse.Namespace) -> None:
    r = Reactor(st)
    say(event="ready", address=st.address)
    r.run()


ROLES = {
    "echo-server": serve_echo,
    "echo-client": client_echo,
    "stream-until-error": client_stream_until_error,
    "stream": client_stream,
    "keepalive": client_keepalive,
    "close-on-cue": client_close_on_cue,
    "after-server-fin": client_after_server_fin,
    "connect": client_connect,
    "hold": client_hold,
    "send-on-cue": client_send_on_cue,
    "on-cue": client_on_cue,
    "half-close-client": client_half_close,
    "udp-client": client_udp,
    "port-range": client_port_range,
    "udp-trickle": udp_trickle,
    "ping": client_ping,
    "idle": idle,
    "bad-frames": bad_frames,
    "raw-syns": raw_syns,
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=sorted(ROLES))
    p.add_argument("--name", required=True)
    p.add_argument("--target")
    p.add_argument("--target2")
    p.add_argument("--port", type=int, default=7000)
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--half-close", action="store_true")
    p.add_argument("--sink", action="store_true")
    p.add_argument("--abort-on-accept", action="store_true")
    p.add_argument("--ipv6", action="store_true", help="echo-server: listen on the endpoint's IPv6 address too")
    p.add_argument("--hold-reads", action="store_true", help="echo-server: read nothing until a line on stdin")
    # No line per failed connection: thousands would fill a pipe nobody reads.
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--shut-first", action="store_true")
    p.add_argument("--linger", action="store_true", help="stay attached until a line on stdin")
    p.add_argument("--cases", default="", help="raw-syns: names from SYN_OPTIONS, comma-separated")
    p.add_argument("--max-conns", type=int, default=16384, help="the stack's connection table")
    p.add_argument("--close-on-eof", action="store_true", help="echo-server: close once the peer has")
    p.add_argument("--cue", action="store_true", help="echo-client: send only after a line on stdin")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    with SlaveStack.attach(args.name, max_conns=args.max_conns) as st:
        ROLES[args.role](st, args)


if __name__ == "__main__":
    main()
