"""atheris harness: control messages into the master's parser.

Each input is a sequence of messages (u16 LE length, then the bytes; a
flag bit in the length sends two descriptors along, as SCM_RIGHTS), written
to one end of a real SOCK_SEQPACKET socketpair; the other end is a
connection of a ControlServer, whose _readable() runs once per message: the
public decode (aiodocknet.control.recv_message) and the dispatch as they
stand. The harness stays thin (it knows the message framing and nothing of
the message kinds) so that it outlives a rewrite of the decode.

The switch is a stand-in (the real one needs DPDK's EAL): what is checked is
the parser and the dispatch. A finding is any exception that escapes
_readable() into the event loop, and any descriptor left open.

    .venv/bin/python fuzz/fuzz_control.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from aiodocknet import control
    from aiodocknet.master import control_server as master_control
    from aiodocknet.master.addresses import AddressPool

FDS_FLAG = 0x8000
MAX_MESSAGES = 16


class FakeSwitch:
    """What ControlServer calls on its switch, with no DPDK behind it."""

    def __init__(self) -> None:
        self.slots = 0
        self.links = 0
        self.wake_fd = os.eventfd(0, os.EFD_CLOEXEC)

    def add(self, *, ip: str, link_fd: int, slave_wake_fd: int, tenant: int = 0) -> int:
        self.slots += 1
        return self.slots

    def set_limit(self, slot: int, direction: str, bits: int, pkts: int = 0, burst_bytes: int = 0) -> None:
        if min(bits, pkts, burst_bytes) < 0 or max(bits, pkts, burst_bytes) >= 2**64:
            raise OverflowError("limit does not fit the switch's uint64")

    def set_policy(self, source: int, dest: int, port: int, allow: bool) -> None:
        pass

    def remove(self, slot: int) -> None:
        pass

    def join(self, slot: int, link_fd: int, slave_wake_fd: int) -> int:
        self.links += 1
        return self.links

    def leave(self, slot: int, link: int) -> None:
        pass

    def listen(self, slot: int, link: int, port: int, on: bool) -> None:
        if not 0 < port < 65536:
            raise ValueError("the switch takes a port number")

    def link_ports(self, slot: int, link: int) -> tuple[int, int]:
        return (49152, 65535) if link == 0 else (32768 + 1024 * (link - 1), 32768 + 1024 * link - 1)

    def port_counters(self, slot: int) -> dict[str, int]:
        return {}

    def counters(self) -> dict[str, int]:
        return {}

    def uplink(self) -> dict[str, int] | None:
        return None


class FakeLoop:
    """The two loop calls ControlServer makes for a connection."""

    def add_reader(self, fd: int, cb: object, *args: object) -> None:
        pass

    def remove_reader(self, fd: int) -> bool:
        return True


_run_dir = tempfile.mkdtemp(prefix="dn-fuzz-control-")
_switch = FakeSwitch()
# The harness's own descriptors, to tell a leak from what it keeps.
_spare_r, _spare_w = os.pipe()
os.close(_spare_w)


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _server() -> master_control.ControlServer:
    srv = master_control.ControlServer(
        path=os.path.join(_run_dir, "master.sock"),
        switch=_switch,  # type: ignore[arg-type]
        # With the default IPv6 prefix: fc_connect's IPv6 lookups and the
        # replies' IPv6 fields are on the paths the inputs reach.
        addresses=AddressPool(ipaddress.ip_network("10.77.0.0/16"), prefix6=control.DEFAULT_SUBNET6),
        mtu=1500,
    )
    srv._loop = FakeLoop()  # type: ignore[assignment]
    return srv


def _messages(data: bytes) -> list[tuple[bytes, bool]]:
    out = []
    off = 0
    while off + 2 <= len(data) and len(out) < MAX_MESSAGES:
        (n,) = struct.unpack_from("<H", data, off)
        off += 2
        with_fds = bool(n & FDS_FLAG)
        n &= ~FDS_FLAG
        out.append((data[off:off + n], with_fds))
        off += n
    return out


def test_one_input(data: bytes) -> None:
    before = _open_fds()
    srv = _server()
    peer, conn = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.setblocking(False)
    peer.setblocking(False)
    srv._conns[conn] = None
    try:
        for msg, with_fds in _messages(data):
            if conn.fileno() < 0:
                break  # the server dropped the connection
            anc = []
            if with_fds:
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("ii", _spare_r, _spare_r))]
            try:
                peer.sendmsg([msg], anc)
            except OSError:
                break  # longer than the socket takes: not the parser's
            srv._readable(conn)  # anything it raises is a finding
            try:
                while True:  # replies and their descriptors
                    reply, anc_in, _, _ = peer.recvmsg(1 << 17, socket.CMSG_SPACE(64))
                    for level, kind, payload in anc_in:
                        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                            for fd in struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]):
                                os.close(fd)
                    if not reply:
                        break  # the server closed the connection
            except (BlockingIOError, InterruptedError):
                pass
    finally:
        for c in list(srv._conns):
            srv._drop(c, "fuzz input done")
        if conn.fileno() >= 0:
            conn.close()
        peer.close()
    leaked = _open_fds() - before
    # listdir's own descriptor is gone by now; anything else is a leak.
    if leaked:
        raise AssertionError(f"descriptors left open: {sorted(leaked)}")


def main() -> None:
    # The master logs every refusal; the fuzzer's output is enough.
    from aiodocknet import log

    log.configure(level="critical")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
