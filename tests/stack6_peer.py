"""One slave stack with IPv6, through a real master, for tests/test_stack6.py.

Run as ``python tests/stack6_peer.py dual|v4only --name ENDPOINT``; it
attaches to the master named by DOCKNET_MASTER and prints one JSON object
with what it saw. With ``dual`` the stack has the endpoint's IPv6 address
(the attach reply's, or, from a master that does not send one yet, the one
IPV6.md derives from the IPv4 address) and talks to itself over lwIP's
loopback: TCP and UDP over IPv6 and IPv4 on the same stack, ICMPv6 echo,
and the IPv6 reset of a dead peer. With ``v4only`` it has no IPv6 address
and tries every IPv6 call. ``server`` and ``client --target ADDRESS6``
attach as a service does (IPv6 only if the master gives it) and talk
through the switch: JSON lines with an "event" each.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import ipaddress
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiodocknet.control import default_master_path  # noqa: E402
from aiodocknet.native._lib import lib  # noqa: E402
from aiodocknet.native.eal import init_eal  # noqa: E402
from aiodocknet.native.stack import (  # noqa: E402
    EV_ACCEPTED,
    EV_CONNECTED,
    EV_ERROR,
    EV_PEER_CLOSED,
    EV_PING_REPLY,
    EV_READABLE,
    EV_WRITABLE,
    SLAVE_MEM_MB,
    AttachInfo,
    Event,
    SlaveStack,
    request_attach,
)

PREFIX6 = ipaddress.IPv6Network("fd77:d0c::/64")
MIB = 1 << 20


def derived6(info: AttachInfo) -> AttachInfo:
    """IPV6.md's rule: the IPv4 host part in the low 32 bits of the prefix."""
    net = ipaddress.IPv4Network(f"{info.address}/{info.prefix}", strict=False)
    host = int(ipaddress.IPv4Address(info.address)) & int(net.hostmask)
    gw = int(ipaddress.IPv4Address(info.gateway)) & int(net.hostmask)
    base = int(PREFIX6.network_address)
    return info._replace(address6=str(ipaddress.IPv6Address(base | host)), prefix6=PREFIX6.prefixlen,
                         gateway6=str(ipaddress.IPv6Address(base | gw)))


def open_stack(name: str, want6: bool) -> SlaveStack:
    control, info, fds = request_attach(name, default_master_path())
    if want6 and info.address6 is None:
        info = derived6(info)
    if not want6:
        info = info._replace(address6=None, prefix6=None, gateway6=None)
    init_eal("slave", SLAVE_MEM_MB)
    stack, own_fds = SlaveStack._open(info, fds, 256)
    return SlaveStack(stack, own_fds, control, info)


class Run:
    """Polls the stack until a condition holds, sleeping on its doorbell
    (and lwIP's timers) between polls, never spinning."""

    def __init__(self, st: SlaveStack) -> None:
        self.st = st
        self.events: list[Event] = []

    def until(self, cond: Callable[[], bool], timeout: float = 20.0,
              on: Callable[[Event], None] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out; events so far {self.events[-20:]}")
            evs = self.st.poll()
            for ev in evs:
                self.events.append(ev)
                if on is not None:
                    on(ev)
            if not evs and not cond():
                self.st.wait(min(left, 0.5))


def errno_of(call: Callable[[], Any]) -> list[Any]:
    """[errno name, message] of the OSError call raises, or ["none", result]."""
    try:
        res = call()
    except OSError as exc:
        return [errno.errorcode.get(exc.errno or 0, str(exc.errno)), str(exc)]
    except ValueError as exc:
        return ["ValueError", str(exc)]
    return ["none", repr(res)]


def tcp_echo(st: SlaveStack, run: Run, host: str, port: int, nbytes: int) -> dict[str, Any]:
    """Connect to host:port on this stack, send nbytes of random data; the
    accepted side echoes them; digests of what each side got."""
    payload = os.urandom(nbytes)
    cli = st.connect(host, port)
    state: dict[str, Any] = {"srv": None, "listener": None, "connected": False, "sent": 0, "echo_out": bytearray(),
                             "srv_rx": hashlib.sha256(), "srv_n": 0, "cli_rx": hashlib.sha256(), "cli_n": 0,
                             "srv_eof": False, "cli_eof": False, "errors": []}

    def pump() -> None:
        if state["connected"] and state["sent"] < nbytes:
            try:
                state["sent"] += st.send(cli, memoryview(payload)[state["sent"]:])
            except BlockingIOError:
                pass
            if state["sent"] == nbytes:
                st.shutdown(cli, socket.SHUT_WR)
        srv = state["srv"]
        if srv is not None and state["echo_out"]:
            try:
                n = st.send(srv, state["echo_out"])
                del state["echo_out"][:n]
            except BlockingIOError:
                pass
        if srv is not None and state["srv_eof"] and not state["echo_out"] and not state.get("srv_shut"):
            st.shutdown(srv, socket.SHUT_WR)
            state["srv_shut"] = True

    def on(ev: Event) -> None:
        if ev.kind == EV_ACCEPTED:
            state["srv"], state["listener"] = ev.conn, ev.arg
        elif ev.kind == EV_CONNECTED and ev.conn == cli:
            state["connected"] = True
        elif ev.kind in (EV_READABLE, EV_PEER_CLOSED):
            while True:
                data = st.recv_nowait(ev.conn)
                if data is None:
                    break
                if data == b"":
                    state["srv_eof" if ev.conn == state["srv"] else "cli_eof"] = True
                    break
                if ev.conn == state["srv"]:
                    state["srv_rx"].update(data)
                    state["srv_n"] += len(data)
                    state["echo_out"] += data
                else:
                    state["cli_rx"].update(data)
                    state["cli_n"] += len(data)
        elif ev.kind == EV_ERROR:
            state["errors"].append([ev.conn, ev.arg])
        pump()

    run.until(lambda: state["connected"] and state["srv"] is not None, on=on)
    names = {"family_cli": int(st.family(cli)), "family_srv": int(st.family(state["srv"])),
             "cli_sockname": list(st.sockname(cli)), "cli_peername": list(st.peername(cli)),
             "srv_sockname": list(st.sockname(state["srv"])), "srv_peername": list(st.peername(state["srv"])),
             "rows": [r for r in st.connections() if r["kind"] == "tcp"]}
    pump()
    run.until(lambda: state["cli_eof"] or bool(state["errors"]), timeout=60, on=on)
    res = {"sent_sha256": hashlib.sha256(payload).hexdigest(), "srv_sha256": state["srv_rx"].hexdigest(),
           "cli_sha256": state["cli_rx"].hexdigest(), "srv_n": state["srv_n"], "cli_n": state["cli_n"],
           "listener": state["listener"], "errors": state["errors"], **names}
    st.close_conn(cli)
    st.close_conn(state["srv"])
    return res


def udp_pair(st: SlaveStack, run: Run, host: str, bind_any: str, port: int) -> dict[str, Any]:
    srv = st.udp_bind(port, bind_any)
    cli = st.udp_bind(0, bind_any)
    cli_port = st.sockname(cli)[1]
    st.sendto(cli, b"ping over udp", (host, port))
    got: dict[str, Any] = {}

    def on(ev: Event) -> None:
        if ev.kind == EV_READABLE:
            msg = st.recvfrom_nowait(ev.conn)
            if msg is not None:
                got["srv" if ev.conn == srv else "cli"] = [msg[0].decode(), list(msg[1])]
                if ev.conn == srv:
                    st.sendto(srv, b"pong", msg[1])

    run.until(lambda: "cli" in got, on=on)
    res = {"srv_got": got["srv"], "cli_got": got["cli"], "cli_port": cli_port, "srv_sockname": list(st.sockname(srv)),
           "family": int(st.family(srv)), "rows": [r for r in st.connections() if r["kind"] == "udp"]}
    res["srv"], res["cli"] = srv, cli
    return res


def guarded(out: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """out[name] = fn(), or what it raised: one part failing leaves the
    others to be checked (the tests read the parts they need)."""
    t0 = time.monotonic()
    try:
        out[name] = fn()
    except Exception as exc:  # noqa: BLE001 - reported to the test as it is
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    out.setdefault("seconds", {})[name] = round(time.monotonic() - t0, 3)


def dual(st: SlaveStack) -> dict[str, Any]:
    run = Run(st)
    a4, a6 = st.address, st.address6
    assert a6 is not None
    out: dict[str, Any] = {"address": a4, "address6": a6, "info": st.info._asdict()}

    def listeners() -> dict[str, Any]:
        # One port, a listener per family (IPV6_V6ONLY, as asyncio sets it).
        l6 = st.listen(7000, "::")
        l4 = st.listen(7000)
        out["listen_rows"] = [r for r in st.connections() if r["kind"] == "tcp-listen"]
        return {"l6": l6, "l4": l4, "family_l6": int(st.family(l6)), "family_l4": int(st.family(l4)),
                "l6_sockname": list(st.sockname(l6))}

    guarded(out, "listeners", listeners)
    guarded(out, "tcp6", lambda: tcp_echo(st, run, a6, 7000, MIB))
    guarded(out, "tcp4", lambda: tcp_echo(st, run, a4, 7000, 64 << 10))

    def bound() -> dict[str, Any]:
        # A listener on the stack's own IPv6 address rather than ::.
        l6b = st.listen(7001, a6)
        return {**tcp_echo(st, run, a6, 7001, 4096), "l6b": l6b}

    guarded(out, "tcp6_bound", bound)
    guarded(out, "udp6", lambda: udp_pair(st, run, a6, "::", 5300))
    guarded(out, "udp4", lambda: udp_pair(st, run, a4, "0.0.0.0", 5300))

    def mismatch() -> dict[str, Any]:
        # Across families: refused, nothing sent.
        u6, u4 = st.udp_bind(0, "::"), st.udp_bind(0)
        l6 = st.listen(7003, "::")
        return {"udp6_to_v4": errno_of(lambda: st.sendto(u6, b"x", (a4, 5300))),
                "udp4_to_v6": errno_of(lambda: st.sendto(u4, b"x", (a6, 5300))),
                "v4_names_of_v6": errno_of(lambda: lib.dn_sockname(st._st, l6, st._ip, st._port)),
                "multicast": errno_of(lambda: st.connect("ff02::1", 80)),
                "bad_host": errno_of(lambda: st.connect("fd77:d0c::zz", 80))}

    guarded(out, "mismatch", mismatch)

    def refused() -> str:
        # Nothing listens on 7002 for IPv6: the stack's own reset.
        c = st.connect(a6, 7002)
        errs: list[int] = []
        run.until(lambda: bool(errs), on=lambda ev: errs.append(ev.arg) if ev.kind == EV_ERROR and ev.conn == c
                  else None)
        st.close_conn(c)
        return errno.errorcode.get(errs[0], str(errs[0]))

    guarded(out, "refused", refused)

    def ping6() -> int:
        pings: list[int] = []
        st.ping(a6, 77, 100)
        run.until(lambda: bool(pings), on=lambda ev: pings.append(ev.conn) if ev.kind == EV_PING_REPLY else None)
        return pings[0]

    guarded(out, "ping6_seq", ping6)

    def reset() -> dict[str, Any]:
        # The IPv6 peer dies: its connections end, the IPv4 one stays.
        c6 = st.connect(a6, 7000)
        c4 = st.connect(a4, 7000)
        accepted: list[int] = []
        connected: set[int] = set()

        def on(ev: Event) -> None:
            if ev.kind == EV_ACCEPTED:
                accepted.append(ev.conn)
            elif ev.kind == EV_CONNECTED:
                connected.add(ev.conn)

        run.until(lambda: len(accepted) == 2 and {c6, c4} <= connected, on=on)
        n = st.reset_peer(a6)
        errors: dict[int, int] = {}
        run.until(lambda: c6 in errors,
                  on=lambda ev: errors.__setitem__(ev.conn, ev.arg) if ev.kind == EV_ERROR else None)
        return {"n": n, "errors": {str(k): errno.errorcode.get(v, str(v)) for k, v in errors.items()},
                "c6": c6, "c4": c4, "c4_still": st.send(c4, b"still here")}

    guarded(out, "reset6", reset)

    def off_prefix() -> dict[str, Any]:
        # Off the prefix the first hop is the gateway: the stack asks the
        # link for the gateway's MAC (a neighbour solicitation, the only
        # frame this makes). With no route it would send nothing.
        before = st.stats()["tx_frames"]
        c = st.connect("2001:db8::7", 80)
        run.until(lambda: st.stats()["tx_frames"] > before, timeout=5)
        state = [r["state"] for r in st.connections() if r["id"] == f"lwip{c}"]
        st.abort(c)
        st.close_conn(c)
        return {"frames": st.stats()["tx_frames"] - before, "state": state}

    guarded(out, "off_prefix", off_prefix)
    out["stats"] = st.stats()
    return out


def v4only(st: SlaveStack) -> dict[str, Any]:
    run = Run(st)
    a6 = "fd77:d0c::99"
    u4 = st.udp_bind(0)
    out: dict[str, Any] = {
        "address6": st.address6,
        "listen6": errno_of(lambda: st.listen(7000, "::")),
        "connect6": errno_of(lambda: st.connect(a6, 80)),
        "udp_bind6": errno_of(lambda: st.udp_bind(0, "::")),
        "sendto6": errno_of(lambda: st.sendto(u4, b"x", (a6, 53))),
        "ping6": errno_of(lambda: st.ping(a6, 1)),
        "reset_peer6": errno_of(lambda: st.reset_peer(a6)),
        "ip6": errno_of(lambda: lib.dn_stack_ip6(st._st, st._ip6)),
    }
    # IPv4 as before.
    st.listen(7000)
    out["tcp4"] = tcp_echo(st, run, st.address, 7000, 64 << 10)
    return out


def say(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


def server(st: SlaveStack) -> None:
    """Echoes TCP on [::]:7000 and UDP on [::]:5300 until SIGTERM."""
    say(event="ready", address=st.address, address6=st.address6)
    if st.address6 is None:
        return
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    st.listen(7000, "::")
    udp = st.udp_bind(5300, "::")
    pending: dict[int, bytearray] = {}
    eof: set[int] = set()
    shut: set[int] = set()

    def flush(c: int) -> None:
        out = pending.get(c)
        if out:
            n = st.send_nowait(c, out)
            del out[:n]
        # Once: an end of stream is read again on every later event.
        if c in eof and not out and c not in shut:
            st.shutdown(c, socket.SHUT_WR)
            shut.add(c)

    def on(ev: Event) -> None:
        if ev.kind == EV_ACCEPTED:
            pending[ev.conn] = bytearray()
            say(event="accepted", peername=list(st.peername(ev.conn)), sockname=list(st.sockname(ev.conn)),
                family=int(st.family(ev.conn)))
        elif ev.kind == EV_READABLE and ev.conn == udp:
            while (msg := st.recvfrom_nowait(udp)) is not None:
                st.sendto(udp, msg[0], msg[1])
                say(event="udp", source=list(msg[1]))
        elif ev.kind in (EV_READABLE, EV_PEER_CLOSED) and ev.conn in pending:
            while (data := st.recv_nowait(ev.conn)) is not None:
                if data == b"":
                    eof.add(ev.conn)
                    break
                pending[ev.conn] += data
            flush(ev.conn)
        elif ev.kind == EV_WRITABLE and ev.conn in pending:
            flush(ev.conn)
        elif ev.kind == EV_ERROR and ev.conn in pending:
            del pending[ev.conn]
            st.close_conn(ev.conn)

    try:
        Run(st).until(lambda: bool(stop), timeout=600, on=on)
    except TimeoutError:
        pass


def client(st: SlaveStack, target: str) -> None:
    """1 MiB to target's echo server over IPv6 and back, and a datagram."""
    run = Run(st)
    payload = os.urandom(MIB)
    c = st.connect(target, 7000)
    state: dict[str, Any] = {"connected": False, "sent": 0, "rx": hashlib.sha256(), "n": 0, "eof": False,
                             "error": 0}

    def pump() -> None:
        if state["connected"] and state["sent"] < MIB:
            state["sent"] += st.send_nowait(c, memoryview(payload)[state["sent"]:])
            if state["sent"] == MIB:
                st.shutdown(c, socket.SHUT_WR)

    def on(ev: Event) -> None:
        if ev.conn != c:
            return
        if ev.kind == EV_CONNECTED:
            state["connected"] = True
            say(event="connected", sockname=list(st.sockname(c)), peername=list(st.peername(c)))
        elif ev.kind in (EV_READABLE, EV_PEER_CLOSED):
            while (data := st.recv_nowait(c)) is not None:
                if data == b"":
                    state["eof"] = True
                    break
                state["rx"].update(data)
                state["n"] += len(data)
        elif ev.kind == EV_ERROR:
            state["error"] = ev.arg
        pump()

    run.until(lambda: state["eof"] or bool(state["error"]), timeout=60, on=on)
    u = st.udp_bind(0, "::")
    st.sendto(u, b"datagram", (target, 5300))
    got: list[Any] = []
    run.until(lambda: bool(got), on=lambda ev: got.append(st.recvfrom_nowait(u)) if ev.kind == EV_READABLE
              and ev.conn == u else None)
    say(event="done", sent_sha256=hashlib.sha256(payload).hexdigest(), recv_sha256=state["rx"].hexdigest(),
        recv=state["n"], error=errno.errorcode.get(state["error"], "") if state["error"] else "",
        udp=[got[0][0].decode(), list(got[0][1])] if got[0] else None, udp_sockname=list(st.sockname(u)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["dual", "v4only", "server", "client"])
    ap.add_argument("--name", required=True)
    ap.add_argument("--target")
    args = ap.parse_args()
    if args.mode in ("server", "client"):
        # As a service attaches: the master's own IPv6 address, if any.
        st = SlaveStack.attach(args.name, max_conns=256)
        try:
            server(st) if args.mode == "server" else client(st, args.target)
        finally:
            st.close()
        return
    st = open_stack(args.name, args.mode == "dual")
    try:
        out = dual(st) if args.mode == "dual" else v4only(st)
    finally:
        st.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
