"""``SlaveStack``: this process's DockNet endpoint (lwIP over the link to the master).

A SlaveStack attaches to the host's master, which gives it an address and
a link (shared memory with two frame rings and a doorbell); it then offers
socket-like calls on connection ids and a batched ``poll()``. It belongs to the thread that polls it (the
event loop's, in ``DockNetLoop``). There is one per process: lwIP keeps
global state.

Blocking is the caller's business: ``arm()`` then wait for ``fileno()`` to
become readable (or ``timeout()`` to pass), then ``disarm()``. ``wait()``
does that with ``select`` for code that has no event loop.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import re
import select
import socket
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from .errors import check, raise_errno
from ._lib import ffi, lib
from ._fcpath import StackCore
from ..control import (
    ControlError,
    Dispatcher,
    InvalidMessage,
    MessageKind,
    decode_reply,
    default_master_path,
    field_value,
    kinds,
    recv_message,
    send,
)
from .bucket import TokenBucket
from .eal import init_eal
from ..log import get_logger

__all__ = [
    "EV_ACCEPTED",
    "EV_CONNECTED",
    "EV_ERROR",
    "EV_PEER_CLOSED",
    "EV_PING_REPLY",
    "EV_READABLE",
    "EV_WRITABLE",
    "AttachInfo",
    "Event",
    "SlaveStack",
]

log = get_logger("aiodocknet.native.stack")

EV_ACCEPTED = lib.DN_EV_ACCEPTED
EV_CONNECTED = lib.DN_EV_CONNECTED
EV_READABLE = lib.DN_EV_READABLE
EV_WRITABLE = lib.DN_EV_WRITABLE
EV_PEER_CLOSED = lib.DN_EV_PEER_CLOSED
EV_ERROR = lib.DN_EV_ERROR
EV_PING_REPLY = lib.DN_EV_PING_REPLY

EVENT_NAMES = {
    EV_ACCEPTED: "accepted",
    EV_CONNECTED: "connected",
    EV_READABLE: "readable",
    EV_WRITABLE: "writable",
    EV_PEER_CLOSED: "peer_closed",
    EV_ERROR: "error",
    EV_PING_REPLY: "ping_reply",
}

SLAVE_MEM_MB = 64
# The most bytes one read hands a protocol (data_received), on every path:
# lwIP's connections, UDP, and fast channels read in Python.
READ_MAX = 256 * 1024
_EAGAIN = -errno.EAGAIN
_EAFNOSUPPORT = -errno.EAFNOSUPPORT
# 4095 mbufs of one jumbo frame each (~9.6 KiB): ~39 MiB of the 64.
SLAVE_MBUFS = 4095


class Event(NamedTuple):
    """``kind`` is one of the module constants; for EV_ACCEPTED ``arg`` is the
    listener id, for EV_ERROR the errno, for EV_PING_REPLY ``conn`` is the
    sequence number and ``arg`` the round trip in microseconds."""

    kind: int
    conn: int
    arg: int

    def __repr__(self) -> str:
        return f"Event({EVENT_NAMES.get(self.kind, self.kind)}, conn={self.conn}, arg={self.arg})"


_NO_EVENTS: list[Event] = []  # shared and never modified: callers iterate

# Rows in one answer to the master: a control message holds 64 KiB.
CONNS_REPLY_MAX = 300

# lwIP's enum tcp_state, named as ss names the kernel's.
TCP_STATES = {0: "CLOSED", 1: "LISTEN", 2: "SYN-SENT", 3: "SYN-RECV", 4: "ESTAB", 5: "FIN-WAIT-1",
              6: "FIN-WAIT-2", 7: "CLOSE-WAIT", 8: "CLOSING", 9: "LAST-ACK", 10: "TIME-WAIT"}


class AttachInfo(NamedTuple):
    endpoint: str
    address: str
    prefix: int
    gateway: str
    mac: str
    mtu: int
    # This process's ephemeral ports when its endpoint may have several
    # processes (the attach reply's "ports"); None: any.
    ports: tuple[int, int] | None = None
    # The endpoint's IPv6 address, on-link prefix length and gateway
    # (IPV6.md); None: the endpoint is IPv4 only (a master with IPv6 off,
    # or one from before IPv6).
    address6: str | None = None
    prefix6: int | None = None
    gateway6: str | None = None


def _ip(host: str | None) -> int:
    if host is None or host in ("", "0.0.0.0"):
        return 0
    return int(ipaddress.IPv4Address(host))


def _ip_str(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


_ANY6 = bytes(16)


def _addr(host: str) -> tuple[int, int | bytes]:
    """A destination literal of either family: (4, host-order int) or
    (6, 16 bytes). An IPv4-mapped IPv6 address is the IPv4 one (the
    stack has no IPv4-over-IPv6 sockets to carry it)."""
    a = ipaddress.ip_address(host)
    if a.version == 6:
        mapped = a.ipv4_mapped  # type: ignore[union-attr]
        if mapped is None:
            return 6, a.packed
        a = mapped
    return 4, int(a)


def _local(host: str | None) -> tuple[int, int | bytes]:
    """A local address to bind: None, "" and "0.0.0.0" are any IPv4
    address (as before IPv6), "::" any IPv6 one."""
    if host is None or host in ("", "0.0.0.0"):
        return 4, 0
    if host == "::":
        return 6, _ANY6
    return _addr(host)


def _ip6_str(buf: Any) -> str:
    return str(ipaddress.IPv6Address(bytes(ffi.buffer(buf, 16))))


ATTACH: MessageKind = kinds("to_master")["attach"]

# How long a slave waits before asking again for a peer link the master
# did not give (limits or faults may since have gone).
PEER_ASK_INTERVAL = 30.0
# Destinations remembered for that, at most (a process talking to more
# forgets them all and asks again).
PEER_ASKED_MAX = 4096
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

# A master answers an attach in milliseconds; one that does not answer at
# all (busy, wedged, or refusing without a word) must not hang the
# process's first network call for ever.
ATTACH_TIMEOUT = 10.0


def request_attach(endpoint: str, path: str, timeout: float = ATTACH_TIMEOUT,
                   named: bool = True) -> tuple[socket.socket, AttachInfo, list[int]]:
    """Ask the master at path for endpoint; returns the control connection
    (held for as long as the endpoint lives), what the master assigned, and
    the link's memory, the endpoint's eventfd and the master's. named
    False: endpoint is only a guess, and a namespace registered by a
    container runtime gets the endpoint registered for it (the reply's
    name). TimeoutError (an OSError) when the master does not answer in
    time."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    fds: list[int] = []
    try:
        control.settimeout(timeout)
        try:
            control.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise type(exc)(
                exc.errno,
                f"no DockNet master at {path} (is `docknet master` running? "
                "set DOCKNET_MASTER to its control socket)",
            ) from None
        request = {"op": "attach", "endpoint": endpoint, "named": named, "pid": os.getpid()}
        secret = os.environ.get("DOCKNET_SECRET")
        if secret:
            request["secret"] = secret
        try:
            send(control, request, "to_master")
            reply, fds = recv_message(control)
        except TimeoutError:
            raise TimeoutError(
                errno.ETIMEDOUT, f"DockNet master at {path} did not answer the attach within {timeout:g} s"
            ) from None
        if reply is None:
            raise ConnectionResetError(errno.ECONNRESET, f"DockNet master at {path} closed the connection")
        try:
            ok = decode_reply(ATTACH, reply, len(fds))
        except InvalidMessage as exc:
            raise ControlError(errno.EPROTO, f"master sent a malformed attach reply ({exc})") from None
        if not ok:
            code = getattr(errno, reply["code"], errno.EPROTO)
            raise ControlError(code, f"master refused attach: {reply['error']}")
        try:
            info = AttachInfo(
                endpoint=reply["endpoint"],
                address=reply["address"],
                prefix=int(reply["prefix"]),
                gateway=reply["gateway"],
                mac=reply["mac"],
                mtu=int(reply["mtu"]),
                ports=(int(reply["ports"][0]), int(reply["ports"][1])) if "ports" in reply else None,
                **_attach_ip6(reply),
            )
        except (KeyError, TypeError, ValueError):
            raise ControlError(errno.EPROTO, "master sent a malformed attach reply") from None
        # From here the connection is the endpoint's lifeline, read when
        # the master writes: blocking again, as the stack expects.
        control.settimeout(None)
    except BaseException:
        for fd in fds:
            os.close(fd)
        control.close()
        raise
    return control, info, fds


def _attach_ip6(reply: dict[str, Any]) -> dict[str, Any]:
    """The attach reply's IPv6 fields, checked as the stack will take
    them (ValueError if not): the address comes with its prefix length;
    the gateway is informational (the stack derives its own, by the same
    rule as the master)."""
    if "address6" not in reply:
        return {}
    address6 = ipaddress.IPv6Address(reply["address6"])
    gateway6 = reply.get("gateway6")
    prefix6 = int(reply["prefix6"])
    if not 64 <= prefix6 <= 96:
        raise ValueError(f"IPv6 prefix length {prefix6}")
    return {"address6": str(address6), "prefix6": prefix6,
            "gateway6": None if gateway6 is None else str(ipaddress.IPv6Address(gateway6))}


class SlaveStack:
    """One DockNet endpoint of this process. Use :meth:`attach`.

    Addresses are strings of either family: calls that take one dispatch
    on it (an IPv6 literal to the stack's IPv6 calls), and a connection's
    names are in its own family (:meth:`family`)."""

    def __init__(
        self, stack: Any, fds: tuple[int, int], control: socket.socket, info: AttachInfo
    ) -> None:
        self._st = stack
        self._fds = fds
        self._control = control
        # Connections the stack does not carry (the loop's fast channels),
        # for `docknet ss`.
        self.extra_connections: Callable[[], list[dict[str, Any]]] | None = None
        # What the master sends, one handler per kind; a loop that owns
        # this stack puts its own in for the kinds it handles.
        self.control = self.default_control()
        self.info = info
        self._events = ffi.new("struct dn_event[]", 512)
        self._ip = ffi.new("uint32_t *")
        self._ip6 = ffi.new("uint8_t[16]")
        self._port = ffi.new("uint16_t *")
        self._scratch = ffi.new("char[]", READ_MAX)
        self._closed = False
        # The transports' per-message path (the poller's pass, reads and
        # writes of TCP connections) calls the stack from C through this.
        self.core = StackCore(int(ffi.cast("uintptr_t", stack)), int(ffi.cast("uintptr_t", lib.dn_stack_calls())))
        # Peer links (native/stack/dn_link.h): destinations asked about
        # (host-order address -> when to ask again; inf: a link is up) and
        # the links up (id -> address).
        self._peer_asking = os.environ.get("DOCKNET_PEER_LINKS", "1") != "0"
        self._peer_asked: dict[int, float] = {}
        self.peer_links: dict[int, str] = {}
        # The endpoint's egress limit on peer links (set_peer_egress).
        self._peer_egress: TokenBucket | None = None
        self._set_subnet(info)

    def _set_subnet(self, info: AttachInfo) -> None:
        net = ipaddress.IPv4Network(f"{info.address}/{info.prefix}", strict=False)
        self._net = (int(net.network_address), int(net.netmask))
        self._own = (int(ipaddress.IPv4Address(info.address)), int(ipaddress.IPv4Address(info.gateway)))
        # The IPv6 prefix, as (network, host mask), when the endpoint has one:
        # every endpoint's IPv6 address is its IPv4 host part there
        # (master/addresses.py), so each family's address gives the other's.
        self._net6: tuple[int, int] | None = None
        if info.address6 is not None and info.prefix6 is not None:
            net6 = ipaddress.IPv6Network(f"{info.address6}/{info.prefix6}", strict=False)
            self._net6 = (int(net6.network_address), int(net6.hostmask))

    def _twin4(self, ip6: bytes) -> int | None:
        """The IPv4 address (host order) whose twin ip6 is, if any."""
        if self._net6 is None:
            return None
        value = int.from_bytes(ip6, "big")
        net6, hostmask6 = self._net6
        host = value & hostmask6
        net, mask = self._net
        if value - host != net6 or host >> 32 or host & mask:
            return None
        return net | host

    def _twin6(self, ip4: int) -> bytes | None:
        if self._net6 is None:
            return None
        return (self._net6[0] | (ip4 & ~self._net[1] & 0xFFFFFFFF)).to_bytes(16, "big")

    # ---- attaching ----

    @classmethod
    def attach(
        cls,
        endpoint: str,
        master: str | None = None,
        *,
        max_conns: int = 16384,
        named: bool = True,
    ) -> SlaveStack:
        """Attach to the master as ``endpoint`` (named False: as the
        endpoint registered for this network namespace, if a container
        runtime registered it) and bring the link up."""
        path = master or default_master_path()
        control, info, fds = request_attach(endpoint, path, named=named)
        try:
            init_eal("slave", SLAVE_MEM_MB)
        except BaseException:
            for fd in fds:
                os.close(fd)
            control.close()
            raise
        try:
            stack, own_fds = cls._open(info, fds, max_conns)  # closes fds on failure
        except BaseException:
            control.close()
            raise
        log.info(
            "attached",
            endpoint=info.endpoint,
            address=info.address,
            address6=info.address6,
            mac=info.mac,
            mtu=info.mtu,
            master=path,
        )
        return cls(stack, own_fds, control, info)

    @staticmethod
    def _config(info: AttachInfo, fds: list[int], max_conns: int) -> Any:
        link, wake, master_wake = fds
        net = ipaddress.IPv4Network(f"{info.address}/{info.prefix}", strict=False)
        cfg = ffi.new("struct dn_stack_config *")
        cfg.ip = _ip(info.address)
        cfg.netmask = int(net.netmask)
        cfg.gateway = _ip(info.gateway)
        if info.address6 is not None and info.prefix6 is not None:
            # The gateway's IPv6 address the stack derives from the
            # prefix and gateway's host part, as the master does.
            cfg.ip6 = ipaddress.IPv6Address(info.address6).packed
            cfg.prefix6_len = info.prefix6
        cfg.mac = bytes(int(b, 16) for b in info.mac.split(":"))
        cfg.mtu = info.mtu
        cfg.n_mbufs = SLAVE_MBUFS
        cfg.max_conns = max_conns
        cfg.link_fd = link
        cfg.wake_fd = wake
        cfg.master_wake_fd = master_wake
        # Links skip checksums (frames between processes are not damaged)
        # unless the switch is told to damage them (fault injection).
        cfg.checksums = int(os.environ.get("DOCKNET_LINK_CHECKSUMS", "0") == "1")
        return cfg

    @classmethod
    def _open(
        cls, info: AttachInfo, fds: list[int], max_conns: int
    ) -> tuple[Any, tuple[int, int]]:
        link, wake, master_wake = fds
        cfg = cls._config(info, fds, max_conns)
        out = ffi.new("struct dn_stack **")
        rc = lib.dn_stack_open(cfg, out)
        # The link has mapped its memory; the eventfds stay open for the
        # stack's life and are closed in close().
        os.close(link)
        if rc < 0:
            os.close(wake)
            os.close(master_wake)
            raise_errno(rc)
        return out[0], (wake, master_wake)

    def relink(self, control: socket.socket, info: AttachInfo, fds: list[int]) -> None:
        """Move to a master that came back on the same control socket
        (``request_attach``'s result, which this takes over). Listeners and
        UDP sockets stay; the old eventfds close, so the caller stops
        watching fileno() first."""
        link, wake, master_wake = fds
        rc = lib.dn_stack_relink(self._st, self._config(info, fds, 0))
        os.close(link)
        if rc < 0:
            os.close(wake)
            os.close(master_wake)
            control.close()
            raise_errno(rc)
        for fd in self._fds:
            os.close(fd)
        self._control.close()
        self._fds = (wake, master_wake)
        self._control = control
        self.info = info
        # The old master's peer links went with it (dn_link_set_down).
        self.peer_links.clear()
        self._peer_asked.clear()
        self._set_subnet(info)
        log.info("re-attached", endpoint=info.endpoint, address=info.address, address6=info.address6)

    def close(self) -> None:
        """Abort every connection, take the link down and detach."""
        if self._closed:
            return
        self._closed = True
        self.core.detach()
        lib.dn_stack_close(self._st)
        for fd in self._fds:
            os.close(fd)
        self._control.close()
        log.info("detached", endpoint=self.info.endpoint)

    def __enter__(self) -> SlaveStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return self.info.address

    @property
    def address6(self) -> str | None:
        """The endpoint's IPv6 address; None when it is IPv4 only."""
        return self.info.address6

    def family(self, conn: int) -> socket.AddressFamily:
        """socket.AF_INET or socket.AF_INET6: the connection's family,
        fixed when it was made (an accepted one has its listener's)."""
        return socket.AF_INET6 if check(lib.dn_conn_family(self._st, conn)) == 6 else socket.AF_INET

    # ---- polling ----

    def poll(self, max_events: int = 512) -> list[Event]:
        """Run the stack once and return what happened, in order."""
        n = lib.dn_stack_poll(self._st, self._events, min(max_events, 512))
        if not n:
            return _NO_EVENTS
        ev = self._events
        return [Event(ev[i].kind, ev[i].id, ev[i].arg) for i in range(n)]

    def fileno(self) -> int:
        """The doorbell eventfd: readable when the master has sent frames
        while this side was armed."""
        return int(lib.dn_stack_fileno(self._st))

    def arm(self) -> bool:
        """Announce sleep; False means work is already waiting."""
        return lib.dn_stack_arm(self._st) == 0

    def disarm(self) -> None:
        lib.dn_stack_disarm(self._st)

    def sleep(self, channels: Any, n: int) -> float | None:
        """Arm the link and n native fast channels for sleep in one call:
        seconds until lwIP's next timer (inf: none), or None when work is
        already waiting (all disarmed again). The poller's core
        (``_fcpath.PollerCore``) spins and wakes, through the stack's call
        table."""
        ms = lib.dn_stack_sleep(self._st, channels, n)
        if ms == -2:
            return None
        return math.inf if ms < 0 else ms / 1000.0

    def timeout(self) -> float | None:
        """Seconds until lwIP's next timer, None if none is pending."""
        ms = lib.dn_stack_timeout_ms(self._st)
        return None if ms < 0 else ms / 1000.0

    def wait(self, timeout: float | None = None) -> None:
        """Block until there may be work (doorbell, lwIP timer or timeout)."""
        if not self.arm():
            return
        t = self.timeout()
        if timeout is not None:
            t = timeout if t is None else min(t, timeout)
        try:
            select.select([self.fileno()], [], [], t)
        finally:
            self.disarm()

    def stats(self) -> dict[str, int]:
        s = ffi.new("struct dn_stack_stats *")
        lib.dn_stack_stats(self._st, s)
        ls = s.link
        return {
            "rx_frames": ls.rx_frames,
            "tx_frames": ls.tx_frames,
            "tx_dropped": ls.tx_dropped,
            "wakeups_sent": ls.wakeups_sent,
            "sleeps": ls.sleeps,
            "pool_free": ls.pool_free,
            "conns_open": s.conns_open,
            "peer_links": ls.peers,
            "peer_rx_frames": ls.peer_rx_frames,
            "peer_tx_frames": ls.peer_tx_frames,
            "peer_rx_dropped": ls.peer_rx_dropped,
            "peer_tx_detoured": ls.peer_tx_detoured,
            "peer_links_broken": ls.peers_broken,
            "peer_tx_limited": ls.peer_tx_limited,
            "peer_egress_bits": self._peer_egress.rate_bytes * 8 if self._peer_egress is not None else 0,
        }

    # ---- TCP ----

    def listen(self, port: int, host: str | None = None, backlog: int = 128) -> int:
        """A listener on host (None, "" or "0.0.0.0": any IPv4 address;
        "::": any IPv6 address) for one family: listen twice for both."""
        fam, addr = _local(host)
        if fam == 6:
            return check(lib.dn_listen6(self._st, ffi.from_buffer("uint8_t[]", addr), port, backlog))
        return check(lib.dn_listen(self._st, addr, port, backlog))

    def set_port_range(self, lo: int, hi: int) -> None:
        """The ephemeral ports this process's connections and unbound UDP
        endpoints take (the master gives each process of an endpoint its
        own range)."""
        check(lib.dn_stack_set_port_range(self._st, lo, hi))

    def connect(self, host: str, port: int) -> int:
        """Start connecting; EV_CONNECTED or EV_ERROR follows as an event."""
        fam, addr = _addr(host)
        if fam == 6:
            twin = self._twin4(addr)  # type: ignore[arg-type]
            if twin is not None:
                self.want_peer(twin)
            return check(lib.dn_connect6(self._st, ffi.from_buffer("uint8_t[]", addr), port))
        self.want_peer(addr)  # type: ignore[arg-type]
        return check(lib.dn_connect(self._st, addr, port))

    def send(self, conn: int, data: bytes | bytearray | memoryview) -> int:
        """Bytes taken (maybe fewer than given); BlockingIOError when the
        send buffer is full (EV_WRITABLE follows when it drains)."""
        buf = ffi.from_buffer(data)
        return check(lib.dn_send(self._st, conn, buf, len(buf)))

    def recv(self, conn: int, size: int = 65536) -> bytes:
        """Up to size bytes; b"" at end of stream; BlockingIOError if none."""
        data = self.recv_nowait(conn, size)
        if data is None:
            raise BlockingIOError(errno.EAGAIN, "nothing to read")
        return data

    def recv_nowait(self, conn: int, size: int = READ_MAX) -> bytes | None:
        """Like recv() but None when nothing is waiting: the transports'
        fast path, with no exception per empty read and no buffer per call."""
        rc = lib.dn_recv(self._st, conn, self._scratch, min(size, READ_MAX))
        if rc < 0:
            if rc == _EAGAIN:
                return None
            raise_errno(rc)
        return ffi.buffer(self._scratch, rc)[:]

    def recv_into_nowait(self, conn: int, buf: Any) -> int | None:
        cbuf = ffi.from_buffer(buf, require_writable=True)
        rc = lib.dn_recv(self._st, conn, cbuf, len(cbuf))
        if rc < 0:
            if rc == _EAGAIN:
                return None
            raise_errno(rc)
        return int(rc)

    def send_nowait(self, conn: int, data: Any) -> int:
        """Bytes taken, 0 when the send buffer is full."""
        buf = ffi.from_buffer(data)
        rc = lib.dn_send(self._st, conn, buf, len(buf))
        if rc < 0:
            if rc == _EAGAIN:
                return 0
            raise_errno(rc)
        return int(rc)

    def recv_into(self, conn: int, buf: bytearray | memoryview) -> int:
        cbuf = ffi.from_buffer(buf, require_writable=True)
        rc = lib.dn_recv(self._st, conn, cbuf, len(cbuf))
        if rc < 0:
            raise_errno(rc)
        return int(rc)

    def shutdown(self, conn: int, how: int = socket.SHUT_WR) -> None:
        check(lib.dn_shutdown(self._st, conn, how))

    def close_conn(self, conn: int) -> None:
        check(lib.dn_close(self._st, conn))

    def abort(self, conn: int) -> None:
        """Reset the connection (RST); the id stays valid until close_conn."""
        check(lib.dn_abort(self._st, conn))

    def set_nodelay(self, conn: int, on: bool) -> None:
        check(lib.dn_set_nodelay(self._st, conn, int(on)))

    def _names(self, conn: int, peer: bool) -> tuple[str, int]:
        # The IPv4 call first (it refuses an IPv6 connection without
        # touching anything): IPv4 costs what it did before IPv6.
        rc = (lib.dn_peername if peer else lib.dn_sockname)(self._st, conn, self._ip, self._port)
        if rc >= 0:
            return _ip_str(self._ip[0]), int(self._port[0])
        if rc != _EAFNOSUPPORT:
            raise_errno(rc)
        check(lib.dn_names6(self._st, conn, int(peer), self._ip6, self._port))
        return _ip6_str(self._ip6), int(self._port[0])

    def sockname(self, conn: int) -> tuple[str, int]:
        """(host, port) in the connection's family."""
        return self._names(conn, False)

    def peername(self, conn: int) -> tuple[str, int]:
        return self._names(conn, True)

    def set_keepalive(self, conn: int, on: bool) -> None:
        check(lib.dn_set_keepalive(self._st, conn, int(on)))

    def set_keepalive_times(self, conn: int, idle: float = 0, interval: float = 0, count: int = 0) -> None:
        """TCP_KEEPIDLE / TCP_KEEPINTVL (seconds, fractions allowed) and
        TCP_KEEPCNT; 0 leaves one as it is."""
        check(lib.dn_set_keepalive_times(self._st, conn, round(idle * 1000), round(interval * 1000), count))

    def reset_peer(self, address: str) -> int:
        """End every connection to a dead endpoint (its IPv4 or its IPv6
        address) with ECONNRESET; "0.0.0.0" ends them all."""
        fam, addr = _addr(address)
        if fam == 6:
            return check(lib.dn_reset_peer6(self._st, ffi.from_buffer("uint8_t[]", addr)))
        if addr == 0:
            # The master is gone: the link goes down, its peer links too.
            self.peer_links.clear()
        return check(lib.dn_reset_peer(self._st, addr))

    def connections(self) -> list[dict[str, Any]]:
        """This endpoint's connections, as `ss` lists sockets."""
        max_n = 65536
        out = ffi.new("struct dn_conn_info[]", max_n)
        n = lib.dn_stack_conns(self._st, out, max_n)
        kinds = {1: "tcp-listen", 2: "tcp", 3: "udp"}
        peers = {int(ipaddress.IPv4Address(a)) for a in self.peer_links.values()}
        rows = []
        for i in range(n):
            c = out[i]
            remote = self._twin4(bytes(ffi.buffer(c.remote_ip6, 16))) if c.family == 6 else c.remote_ip
            if c.family == 6:
                # As ss writes them: brackets around an IPv6 address.
                local = f"[{_ip6_str(c.local_ip6)}]:{c.local_port}"
                peer = f"[{_ip6_str(c.remote_ip6)}]:{c.remote_port}"
            else:
                local = f"{_ip_str(c.local_ip or 0)}:{c.local_port}"
                peer = f"{_ip_str(c.remote_ip)}:{c.remote_port}"
            rows.append({
                "id": f"lwip{c.id}", "kind": kinds.get(c.kind, "?"), "family": 6 if c.family == 6 else 4,
                "state": TCP_STATES.get(c.state, "CLOSED"),
                "local": local, "peer": peer if c.kind == 2 else "*:*",
                "recv_q": c.recv_queued, "send_q": c.send_queued,
                "path": "peer" if c.kind == 2 and remote in peers else "switch",
            })
        return rows

    def control_fileno(self) -> int:
        """The master connection: readable when the master has news."""
        return self._control.fileno()

    def read_control(self) -> bool:
        """Handle what the master sent (``control``, the slave's one
        dispatcher); False if the master closed the connection (it stopped
        or died)."""
        received = []
        alive = True
        self._control.setblocking(False)
        try:
            while True:
                try:
                    msg, fds = recv_message(self._control)
                except BlockingIOError:
                    break
                except ValueError as exc:
                    log.warning("bad message from the master, ignored", error=str(exc))
                    continue
                except OSError:
                    # A master killed with our messages unread resets the
                    # connection rather than closing it: gone all the same.
                    alive = False
                    break
                if msg is None:
                    alive = False
                    break
                received.append((msg, fds))
        finally:
            # Handlers answer on the connection: blocking again first.
            self._control.setblocking(True)
        for msg, fds in received:
            self.control.dispatch(msg, fds, endpoint=self.info.endpoint)
        return alive

    def send_control(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        """A message to the master, checked against the table first."""
        send(self._control, msg, "to_master", fds)

    # ---- what the master sends, without a loop ----

    def default_control(self) -> Dispatcher:
        """The stack's own handling of the master's messages: dead peers'
        connections end, `ss` is answered; fast channels (a loop's) are
        given back; of the limits, the egress one is kept on peer links
        (a loop enforces all of them on its fast channels too)."""
        return Dispatcher(
            "to_slave",
            {
                "endpoint_gone": self._on_endpoint_gone,
                "connections": self._on_connections,
                "fc_offer": self._on_fc_offer,
                "fc_result": self._on_fc_result,
                "limits": self._on_limits,
                "peer_up": self._on_peer_up,
                "peer_down": self._on_peer_down,
            },
            log,
            refusers={"connections": self._connections_refused, "fc_offer": self._fc_offer_refused},
        )

    # ---- peer links ----

    def want_peer(self, ip: int) -> None:
        """About to send to ip (host order) through the switch: ask the
        master for a peer link to it, once in a while per destination."""
        when = self._peer_asked.get(ip)
        # Most sends find a link up or no peer to have (inf): no clock read.
        if when is not None and (when == math.inf or time.monotonic() < when):
            return
        if not self._peer_asking or self._closed:
            return
        net, mask = self._net
        if ip & mask != net or ip in self._own:
            self._peer_asked[ip] = math.inf  # never a peer
            return
        if len(self._peer_asked) >= PEER_ASKED_MAX:
            self._peer_asked.clear()
        self._peer_asked[ip] = time.monotonic() + PEER_ASK_INTERVAL
        try:
            self.send_control({"event": "peer_want", "address": _ip_str(ip)})
        except OSError:
            pass  # the master is gone; a new one is asked afresh

    def _on_peer_up(self, msg: dict[str, Any], fds: list[int]) -> None:
        link_id, address, mac = msg["id"], msg["address"], msg["mac"]
        try:
            if _MAC.match(mac) is None:
                raise ValueError(f"'mac' must be six hex pairs with colons, not {mac!r}")
            peer_ip = int(ipaddress.IPv4Address(address))
            net, mask = self._net
            if peer_ip & mask != net or peer_ip in self._own:
                raise ValueError(f"{address} is not another endpoint's address of this subnet")
            twin = self._twin6(peer_ip)
            rc = lib.dn_stack_peer_add(self._st, fds[0], fds[1], msg["role"], link_id,
                                       bytes(int(b, 16) for b in mac.split(":")), peer_ip,
                                       ffi.NULL if twin is None else twin)
            check(rc)
        except (ValueError, OSError) as exc:
            # Frames to it go on through the switch; the master's link is
            # dropped when either endpoint goes.
            log.warning("peer link refused", id=link_id, address=address, error=str(exc))
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.peer_links[link_id] = address
        self._peer_asked[peer_ip] = math.inf
        log.info("peer link up", id=link_id, address=address)

    def set_peer_egress(self, bucket: TokenBucket | None) -> None:
        """The endpoint's egress limit, kept on its peer links (dn_link.h).
        The bucket may be shared (a loop's fast channels spend it too); it
        is held here for as long as the stack points at it."""
        lib.dn_stack_set_peer_egress(self._st, bucket.tokens if bucket is not None else ffi.NULL)
        self._peer_egress = bucket

    def _on_limits(self, msg: dict[str, Any], fds: list[int]) -> None:
        bucket = TokenBucket(int(msg.get("egress_bits") or 0), int(msg.get("egress_pkts") or 0),
                             int(msg.get("egress_burst_bits") or 0) // 8)
        self.set_peer_egress(bucket if bucket.limited else None)

    def _on_peer_down(self, msg: dict[str, Any], fds: list[int]) -> None:
        address = self.peer_links.pop(msg["id"], None)
        if address is None:
            return  # refused when it came, or never heard of
        lib.dn_stack_peer_remove(self._st, msg["id"])
        # Asked again at the next connection: what took it down may be gone.
        self._peer_asked.pop(int(ipaddress.IPv4Address(address)), None)
        log.info("peer link down", id=msg["id"], address=address)

    def _on_endpoint_gone(self, msg: dict[str, Any], fds: list[int]) -> None:
        self.reset_peer(msg["address"])
        if msg.get("address6") and self.address6 is not None:
            self.reset_peer(msg["address6"])

    def _on_connections(self, msg: dict[str, Any], fds: list[int]) -> None:
        # The master asks on behalf of `docknet ss`.
        conns = self.connections()
        if self.extra_connections is not None:
            conns += self.extra_connections()
        self._answer_connections(msg["req"], {"total": len(conns), "conns": conns[:CONNS_REPLY_MAX]})

    def _connections_refused(self, exc: InvalidMessage, msg: dict[str, Any]) -> bool:
        if exc.req is not None:
            self._answer_connections(exc.req, {"total": 0, "conns": [], "error": str(exc)})
        return False

    def _answer_connections(self, req: int, answer: dict[str, Any]) -> None:
        try:
            self.send_control({"event": "connections", "req": req, **answer})
        except OSError:
            pass  # the master is gone; nobody waits

    def give_back(self, channel_id: int) -> None:
        """Tell the master a fast channel of id is done with on this side
        (it resets the other side and frees it)."""
        try:
            self.send_control({"event": "fc_closed", "id": channel_id})
        except OSError:
            pass  # the master is gone, and its books with it

    def _on_fc_offer(self, msg: dict[str, Any], fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        self.give_back(msg["id"])

    def _fc_offer_refused(self, exc: InvalidMessage, msg: dict[str, Any]) -> bool:
        channel_id = field_value(exc.kind, msg, "id")
        if channel_id is not None:
            self.give_back(channel_id)
        return False

    def _on_fc_result(self, msg: dict[str, Any], fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)

    def send_queued(self, conn: int) -> int:
        return check(lib.dn_send_queued(self._st, conn))

    # ---- UDP and ICMP ----

    def udp_bind(self, port: int = 0, host: str | None = None) -> int:
        """A UDP endpoint of host's family (as listen() reads host)."""
        fam, addr = _local(host)
        if fam == 6:
            return check(lib.dn_udp_bind6(self._st, ffi.from_buffer("uint8_t[]", addr), port))
        return check(lib.dn_udp_bind(self._st, addr, port))

    def sendto(self, conn: int, data: bytes, addr: tuple[str, int]) -> int:
        """To addr of the endpoint's family (EAFNOSUPPORT if not)."""
        buf = ffi.from_buffer(data)
        fam, ip = _addr(addr[0])
        if fam == 6:
            twin = self._twin4(ip)  # type: ignore[arg-type]
            if twin is not None:
                self.want_peer(twin)
            return check(lib.dn_udp_sendto6(self._st, conn, buf, len(buf), ffi.from_buffer("uint8_t[]", ip), addr[1]))
        self.want_peer(ip)  # type: ignore[arg-type]
        return check(lib.dn_udp_sendto(self._st, conn, buf, len(buf), ip, addr[1]))

    def recvfrom(self, conn: int, size: int = 65535) -> tuple[bytes, tuple[str, int]]:
        got = self.recvfrom_nowait(conn, size)
        if got is None:
            raise BlockingIOError(errno.EAGAIN, "no datagram waiting")
        return got

    def recvfrom_nowait(self, conn: int, size: int = 65535) -> tuple[bytes, tuple[str, int]] | None:
        rc = lib.dn_udp_recvfrom(self._st, conn, self._scratch, min(size, READ_MAX), self._ip, self._port)
        if rc >= 0:
            return ffi.buffer(self._scratch, rc)[:], (_ip_str(self._ip[0]), int(self._port[0]))
        if rc == _EAGAIN:
            return None
        if rc != _EAFNOSUPPORT:
            raise_errno(rc)
        # An IPv6 endpoint (the IPv4 call leaves its datagram queued).
        rc = lib.dn_udp_recvfrom6(self._st, conn, self._scratch, min(size, READ_MAX), self._ip6, self._port)
        if rc < 0:
            raise_errno(rc)
        return ffi.buffer(self._scratch, rc)[:], (_ip6_str(self._ip6), int(self._port[0]))

    def send_frame(self, frame: bytes) -> int:
        """Put a raw Ethernet frame on the link, bypassing lwIP."""
        buf = ffi.from_buffer(frame)
        return check(lib.dn_send_frame(self._st, buf, len(buf)))

    def ping(self, host: str, seq: int, size: int = 56) -> None:
        """Send an ICMP (or ICMPv6) echo request; EV_PING_REPLY follows."""
        fam, addr = _addr(host)
        if fam == 6:
            check(lib.dn_ping6(self._st, ffi.from_buffer("uint8_t[]", addr), seq, size))
        else:
            check(lib.dn_ping(self._st, addr, seq, size))
