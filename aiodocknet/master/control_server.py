"""The master's control socket: attach, detach, resolve, status.

Each slave holds one connection for as long as it is attached; when that
connection closes (detach, exit, SIGKILL) its link is freed, and with the
endpoint's last process its endpoint, port and address. An endpoint of its
own namespace (registered, or a container's) may be attached by several
processes of that namespace (pre-fork workers, a sidecar): each is a
member with its own link in the endpoint's switch slot, sharing the
address. Every message goes through one ``Dispatcher`` over
``aiodocknet.control``'s table, one handler per kind: a malformed request
gets one error reply and the connection stays usable, a malformed event is
logged, and a connection that sends bytes that are not a JSON object is
logged and closed. Nothing a peer sends can raise into the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..control import (
    LIMIT_FIELDS,
    Dispatcher,
    InvalidMessage,
    MessageKind,
    kinds,
    recv_message,
    refusal,
    send,
    send_reply,
)
from ..log import get_logger
from ..validate import ValidationError, endpoint_name
from .addresses import AddressPool
from .broker import FastChannelBroker, Refusal
from .faults import Faults
from .peer_links import MAX_PER_ENDPOINT, PeerLink, PeerLinks
from .registry import DEFAULT_TENANT, Registration, Registry, RegistryError
from .state import MasterState
from .switch import PeerWatch, Switch, mac_of

__all__ = ["ControlServer", "Endpoint"]

log = get_logger("aiodocknet.master")

LIMIT_ATTRS = LIMIT_FIELDS
INGRESS_LIMITS = tuple(k for k in LIMIT_FIELDS if k.startswith("ingress_"))
# What an op's handler gives back: the reply's fields and its descriptors.
OpResult = tuple[dict[str, Any], list[int]]
# How long a restarted master holds an endpoint's old address for it: its
# service re-attaches within a second or two of the master being back.
REATTACH_GRACE = 30.0


@dataclass
class Member:
    """One process attached to an endpoint: its control connection and its
    link in the endpoint's switch slot."""

    id: int  # unique for the master's life: the broker's key
    endpoint: str
    conn: socket.socket
    pid: int | None
    link: int  # 0: the link the slot was made with
    link_fd: int
    wake_fd: int
    # The link's own ephemeral ports (connections it opens through the
    # switch; dn_switch_link_ports).
    ports: tuple[int, int] | None = None
    # Ports its servers listen on, a count per port (wildcard and
    # address-bound servers may share one).
    listening: dict[int, int] = field(default_factory=dict)
    attached_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        return {"pid": self.pid, "link": self.link, "ports": list(self.ports) if self.ports else None,
                "listening": sorted(self.listening), "attached_at": self.attached_at}


@dataclass
class Endpoint:
    name: str
    address: str
    mac: str
    slot: int
    tenant: str = "default"
    registration: Registration | None = None
    # In force now, on the switch and pushed to the process (fast channels).
    limits: dict[str, int] = field(default_factory=dict)
    attached_at: float = field(default_factory=time.time)
    # Fault injection on its link (tests), None when off.
    faults: Faults | None = None
    # Its processes, in attach order; the endpoint exists while it has one.
    members: list[Member] = field(default_factory=list)
    # Its IPv6 address (the IPv4 one's twin); None: the master has no
    # IPv6 prefix.
    address6: str | None = None

    @property
    def pid(self) -> int | None:
        """The first member's process (the one an ad-hoc endpoint has)."""
        return self.members[0].pid if self.members else None


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a control connection (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


class RequestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlServer:
    def __init__(
        self,
        path: str,
        switch: Switch,
        addresses: AddressPool,
        mtu: int,
        registry: Registry | None = None,
        default_limits: dict[str, int] | None = None,
        state: MasterState | None = None,
    ) -> None:
        self.path = path
        self.default_limits = default_limits or {}
        self.registry = registry or Registry()
        self.switch = switch
        self.addresses = addresses
        self.mtu = mtu
        self.endpoints: dict[str, Endpoint] = {}
        # Each connection's member (None while nothing is attached on it;
        # the member names its endpoint), and endpoints by address:
        # fast-channel requests and pushes look them up, never scan.
        self._conns: dict[socket.socket, Member | None] = {}
        self._by_address: dict[str, Endpoint] = {}
        self._members = 0
        self._by_member: dict[int, Member] = {}
        self._peers: dict[socket.socket, Peer | None] = {}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counter = 0
        # `ss` requests waiting for an answer: the connection asked, and
        # the answer's future.
        self._pending: dict[int, tuple[socket.socket, asyncio.Future[dict[str, Any]]]] = {}
        self.broker = FastChannelBroker()
        self.peer_links = PeerLinks()
        self.state = state
        # Addresses held for endpoints that are away for a moment (their
        # process restarting, or this master), until they re-attach or
        # REATTACH_GRACE passes: they come back to the same address, and
        # their names go on resolving to it meanwhile.
        self._reserved: dict[str, str] = {}
        self._reserve_timers: dict[str, asyncio.TimerHandle] = {}
        self._state_loaded = False
        self.registry.on_change = self._save_state
        self._dispatcher = Dispatcher(
            "to_master",
            {
                "attach": self._op(self._attach, after=self._attached),
                "resolve": self._op(self._resolve),
                "status": self._op(self._status),
                "ping": self._op(lambda conn, msg: ({"pong": True}, [])),
                "fc_connect": self._fc_connect,
                "fc_closed": self._fc_closed,
                "listen": self._listen,
                "connections": self._connections_answer,
                "peer_want": self._peer_want,
            },
            log,
            refusers={name: self._refuse_invalid for name in kinds("to_master")},
            on_unknown=self._refuse_invalid,
            on_failure=self._failed,
        )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._restore_state()
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)  # left by a master that died
            else:
                probe.close()
                raise OSError(errno.EADDRINUSE, f"another master is running on {self.path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.bind(self.path)
        os.chmod(self.path, 0o660)
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._accept)
        log.info("control socket ready", path=self.path)

    # ---- across a restart ----

    def _restore_state(self) -> None:
        if self.state is None:
            return
        saved = self.state.load()
        for source, dest, port in self.registry.restore(saved):
            try:
                self.set_policy(source, dest, port, True)
            except (RegistryError, OSError) as exc:
                log.warning("saved policy skipped", source=source, dest=dest, port=port, reason=str(exc))
        attached = saved.get("attached")
        for name, address in (attached.items() if isinstance(attached, dict) else ()):
            try:
                self._reserve(name, self.addresses.allocate(address))
            except (ValueError, TypeError) as exc:
                log.warning("saved address not held", endpoint=name, address=address, reason=str(exc))
        if self._reserved:
            log.info("holding addresses for endpoints of the previous master", endpoints=len(self._reserved),
                     seconds=REATTACH_GRACE)
        self._state_loaded = True
        self._save_state()

    def _reserve(self, name: str, address: str) -> None:
        """Holds address (already taken from the pool) for name."""
        assert self._loop is not None
        self._reserved[name] = address
        old = self._reserve_timers.pop(name, None)
        if old is not None:
            old.cancel()
        self._reserve_timers[name] = self._loop.call_later(REATTACH_GRACE, self._release_reserved, name)

    def _take_reserved(self, name: str) -> str | None:
        """name's held address, no longer held (the caller owns it now)."""
        timer = self._reserve_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        return self._reserved.pop(name, None)

    def _release_reserved(self, name: str) -> None:
        self._reserve_timers.pop(name, None)
        address = self._reserved.pop(name, None)
        if address is not None:
            log.info("endpoint did not come back, address released", endpoint=name, address=address)
            self.addresses.release(address)
            self._save_state()

    def _save_state(self) -> None:
        # Nothing is saved before the last state is loaded: it would be
        # overwritten by a partial one (policies from the configuration).
        if self.state is None or not self._state_loaded:
            return
        attached = {name: ep.address for name, ep in self.endpoints.items()}
        attached.update(self._reserved)
        self.state.save({**self.registry.saved(), "attached": attached})

    def close(self) -> None:
        assert self._loop is not None
        # What was attached stays in the saved state: after a restart,
        # its services come back to their addresses.
        self.state, state = None, self.state
        for conn in list(self._conns):
            self._drop(conn, "master stopping")
        self.state = state
        # After the drops: the endpoints they detach are held like any
        # other, and nothing held may outlive the master.
        for timer in self._reserve_timers.values():
            timer.cancel()
        self._reserve_timers.clear()
        self.peer_links.close()  # the drops took every link down already
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    # ---- connections ----

    def _accept(self) -> None:
        assert self._sock is not None and self._loop is not None
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        self._conns[conn] = None
        self._peers[conn] = self._read_peer(conn)
        self._loop.add_reader(conn.fileno(), self._readable, conn)

    def _peer(self, conn: socket.socket) -> Peer | None:
        # Credentials are those of connect(): read once, at accept.
        return self._peers[conn] if conn in self._peers else self._read_peer(conn)

    @staticmethod
    def _read_peer(conn: socket.socket) -> Peer | None:
        try:
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        except OSError:
            return None
        pid, uid, gid = (int.from_bytes(cred[i:i + 4], "little") for i in (0, 4, 8))
        return Peer(pid, uid, gid) if pid > 0 else None

    def _peer_pid(self, conn: socket.socket) -> int | None:
        peer = self._peer(conn)
        return peer.pid if peer is not None else None

    def _peer_netns(self, peer: Peer | None) -> int | None:
        """The inode of the peer's network namespace; None if it cannot be
        read (the process is gone)."""
        if peer is None:
            return None
        try:
            return os.stat(f"/proc/{peer.pid}/ns/net").st_ino
        except OSError:
            return None

    def _readable(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except Exception as exc:
            # A bug of ours, not the peer's: it must not reach the event
            # loop (which would log it and leave the peer waiting), and
            # after it the connection's state is unknown, so it ends.
            log.error("control message handling failed", error=repr(exc), pid=self._peer_pid(conn),
                      exc_info=True)
            if conn in self._conns:
                self._drop(conn, "internal error")

    def _serve(self, conn: socket.socket) -> None:
        try:
            msg, fds = recv_message(conn)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, ValueError) as exc:
            log.warning("bad control message, connection dropped", error=str(exc), pid=self._peer_pid(conn))
            self._drop(conn, "bad message")
            return
        if msg is None:
            self._drop(conn, "closed")
            return
        self._dispatcher.dispatch(msg, fds, conn, pid=self._peer_pid(conn))

    def _refuse_invalid(self, conn: socket.socket, exc: InvalidMessage, msg: dict[str, Any]) -> bool:
        """The one answer to a message decode refused: a request's error."""
        if exc.expects_reply:
            self._refuse(conn, exc.kind, exc.req, errno.EINVAL, str(exc))
        return False

    def _failed(self, conn: socket.socket, kind: MessageKind, msg: dict[str, Any]) -> None:
        """A handler raised (a bug of ours, not the peer's; logged by the
        dispatcher): the peer stays, its request gets the one answer it
        waits for, and its endpoint (if any) is untouched."""
        if kind.key == "op" and conn in self._conns:
            self._refuse(conn, kind, msg.get("req"), errno.EIO, f"{kind.name} failed inside the master")

    def _refuse(self, conn: socket.socket, kind: MessageKind | None, req: Any, code: int, why: str) -> None:
        """The one error answer to a request: a reply, or for a request
        answered by an event (fc_connect), that event."""
        try:
            if kind is not None and kind.reply_event is not None and req is not None:
                send(conn, {"event": kind.reply_event, "req": req, "reason": why, **refusal(code, why)}, "to_slave")
            else:
                send_reply(conn, kind, refusal(code, why))
        except OSError as exc:
            log.warning("cannot reply", error=str(exc))
            self._drop(conn, "reply failed")

    def _op(self, fn: Callable[[socket.socket, dict[str, Any]], OpResult],
            after: Callable[[socket.socket], None] | None = None) -> Callable[..., None]:
        """The handler of an op answered by a reply: fn's result, or the
        refusal it raises (RequestError), goes back checked against the
        kind's reply; after runs once a yes is out."""

        def handle(conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
            kind = self._dispatcher.kinds[msg["op"]]
            reply_fds: list[int] = []
            try:
                result, reply_fds = fn(conn, msg)
                reply: dict[str, Any] = {"ok": True, **result}
            except RequestError as exc:
                reply = refusal(exc.code, str(exc))
                log.warning("request refused", op=kind.name, error=str(exc), pid=self._peer_pid(conn))
            try:
                send_reply(conn, kind, reply, reply_fds)
            except OSError as exc:
                log.warning("cannot reply", error=str(exc))
                self._drop(conn, "reply failed")
                return
            if reply["ok"] and after is not None:
                try:
                    after(conn)
                except Exception as exc:  # the reply is out: no second answer
                    log.error("after the reply", op=kind.name, error=repr(exc), exc_info=True)

        return handle

    # ---- events ----

    def _fc_closed(self, conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
        member = self._conns.get(conn)
        if member is not None:
            self._ring(self.broker.closed(member.id, msg["id"]))

    def _listen(self, conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
        """A server of the member's opened or closed: the switch spreads
        new connections to the port among the links listening on it, and
        the broker offers fast channels to those that take them (a process
        with fast channels off says so)."""
        member = self._conns.get(conn)
        if member is None:
            return
        port, on = msg["port"], msg["on"]
        if msg.get("fast", True):
            self.broker.listen(member.id, port, on)
        count = member.listening.get(port, 0)
        if not on and count == 0:
            return  # it never said it listened there
        member.listening[port] = count + (1 if on else -1)
        if member.listening[port] == 0:
            del member.listening[port]
        # The switch hears of the first server on the port and of the last.
        if count == (0 if on else 1):
            self._switch_listen(member, port, on)

    def _switch_listen(self, member: Member, port: int, on: bool) -> None:
        ep = self.endpoints.get(member.endpoint)
        if ep is None:
            return
        try:
            self.switch.listen(ep.slot, member.link, port, on)
        except OSError as exc:
            log.warning("switch did not take a listener", endpoint=ep.name, pid=member.pid, link=member.link,
                        port=port, on=on, error=str(exc))

    def _connections_answer(self, conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
        # Only the connection asked answers its request.
        asked, fut = self._pending.get(msg["req"], (None, None))
        if asked is conn and fut is not None and not fut.done():
            fut.set_result(msg)

    def _drop(self, conn: socket.socket, why: str) -> None:
        assert self._loop is not None
        member = self._conns.pop(conn, None)
        self._peers.pop(conn, None)
        self._loop.remove_reader(conn.fileno())
        conn.close()
        if member is not None:
            self._leave(member, why)

    # ---- requests ----

    def _attach(self, conn: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        try:
            name = endpoint_name(msg.get("endpoint"))
        except ValidationError as exc:
            raise RequestError(errno.EINVAL, str(exc)) from None
        # Who asks is settled before anything is said about the name: a
        # process that may not have it must not learn it is in use.
        pid = self._peer_pid(conn)
        if msg.get("named") is False:
            owned = self.registry.owned_in(self._peer_netns(self._peer(conn)) or -1)
            if owned is not None:
                name = owned.name
        try:
            reg = self.registry.check_attach(name, pid, msg.get("secret"))
        except RegistryError as exc:
            log.warning("attach refused", endpoint=name, pid=pid, reason=str(exc))
            raise RequestError(errno.EACCES, str(exc)) from None
        if self._conns.get(conn) is not None:
            raise RequestError(errno.EISCONN, "this connection is already attached")
        joined = self.endpoints.get(name)
        if joined is not None:
            # An ad-hoc host endpoint has no namespace of its own (any host
            # process could claim to be another process of it): one process.
            if reg is None:
                raise RequestError(errno.EADDRINUSE, f"endpoint {name!r} is already attached")
            return self._join(conn, joined, pid)
        tenant = reg.tenant if reg is not None else "default"
        # Whatever fails below, the asker gets a reply and everything taken
        # so far is given back: an exception out of here would leave the
        # slave waiting and the descriptors, address and port held.
        address: str | None = None
        link = wake = slot = None
        stage = "cannot take an address"
        try:
            tenant_id = self.registry.tenant_id(tenant)
            reserved = self._take_reserved(name)
            if reserved is not None and (reg is None or reg.ip in (None, reserved)):
                address = reserved  # its address before it went away
            else:
                if reserved is not None:
                    self.addresses.release(reserved)
                address = self.addresses.allocate(reg.ip if reg is not None else None)
            # The switch sizes and lays out the link's memory; the process
            # maps the same memfd.
            stage = "cannot create the endpoint's port"
            link = os.memfd_create(f"docknet-link-{name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            slot = self.switch.add(ip=address, link_fd=link, slave_wake_fd=wake, tenant=tenant_id)
            stage = "cannot set the endpoint's limits"
            limits = dict(self.default_limits)
            if reg is not None and any(getattr(reg, k) for k in LIMIT_ATTRS):
                limits = {k: int(getattr(reg, k)) for k in LIMIT_ATTRS}
            self._apply_limits(slot, limits)
            stage = "cannot attach"
            ep = Endpoint(
                name=name,
                address=address,
                mac=mac_of(address),
                slot=slot,
                tenant=tenant,
                registration=reg,
                limits=limits,
                address6=self.addresses.address6(address),
            )
            member = self._new_member(conn, ep, pid, 0, link, wake)
        except Exception as exc:
            self._undo_attach(name, address, link, wake, slot)
            if isinstance(exc, (ValueError, RegistryError)) and slot is None:
                code, why = errno.ENOSPC, str(exc)
            elif isinstance(exc, OSError):
                code, why = exc.errno or errno.EIO, exc.strerror or str(exc)
            else:
                log.exception("attach failed", endpoint=name, pid=pid, stage=stage)
                code, why = errno.EIO, f"internal error ({type(exc).__name__})"
            raise RequestError(code, f"{stage}: {why}") from None
        self.endpoints[name] = ep
        self._by_address[address] = ep
        ep.members.append(member)
        self._conns[conn] = member
        self._by_member[member.id] = member
        self._save_state()
        log.info("endpoint attached", endpoint=name, address=address, slot=slot, pid=pid, tenant=tenant)
        return self._attach_reply(ep, member)

    def _new_member(self, conn: socket.socket, ep: Endpoint, pid: int | None, link: int, link_fd: int,
                    wake_fd: int) -> Member:
        ports = self.switch.link_ports(ep.slot, link)
        self._members += 1
        return Member(self._members, ep.name, conn, pid, link, link_fd, wake_fd, ports)

    def _attach_reply(self, ep: Endpoint, member: Member) -> OpResult:
        reply: dict[str, Any] = {
            "endpoint": ep.name,
            "address": ep.address,
            "prefix": self.addresses.subnet.prefixlen,
            "gateway": self.addresses.gateway,
            "mac": ep.mac,
            "mtu": self.mtu,
            "link": member.link,
        }
        if member.ports is not None:
            reply["ports"] = list(member.ports)
        if ep.address6 is not None and self.addresses.prefix6 is not None:
            # Without these the slave is IPv4 only, as with an older master.
            reply.update(address6=ep.address6, prefix6=self.addresses.prefix6.prefixlen,
                         gateway6=self.addresses.gateway6)
        return reply, [member.link_fd, member.wake_fd, self.switch.wake_fd]

    def _join(self, conn: socket.socket, ep: Endpoint, pid: int | None) -> OpResult:
        """Another process of an attached endpoint's namespace (it passed the
        same check as the first): a link of its own in the endpoint's slot,
        the same address."""
        link_fd = wake = link = None
        try:
            link_fd = os.memfd_create(f"docknet-link-{ep.name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            link = self.switch.join(ep.slot, link_fd, wake)
            member = self._new_member(conn, ep, pid, link, link_fd, wake)
        except Exception as exc:
            if link is not None:
                try:
                    self.switch.leave(ep.slot, link)
                except OSError as err:
                    log.error("cannot take a link back", endpoint=ep.name, link=link, error=str(err))
            for fd in (wake, link_fd):
                if fd is not None:
                    os.close(fd)
            if isinstance(exc, OSError):
                code, why = exc.errno or errno.EIO, exc.strerror or str(exc)
            else:
                log.exception("join failed", endpoint=ep.name, pid=pid)
                code, why = errno.EIO, f"internal error ({type(exc).__name__})"
            raise RequestError(code, f"cannot join endpoint {ep.name!r}: {why}") from None
        # The switch steers between the processes now: frames must go
        # through it. Told before the new member is one (it waits for its
        # attach reply, not for this).
        self._peer_links_drop(ep.name, "a second process joined")
        ep.members.append(member)
        self._conns[conn] = member
        self._by_member[member.id] = member
        log.info("endpoint joined", endpoint=ep.name, address=ep.address, slot=ep.slot, link=link, pid=pid,
                 members=len(ep.members), ports=member.ports)
        return self._attach_reply(ep, member)

    def _attached(self, conn: socket.socket) -> None:
        member = self._conns.get(conn)
        if member is not None:
            self._push_limits(member.endpoint)  # every member's share moved

    def _undo_attach(self, name: str, address: str | None, link: int | None, wake: int | None,
                     slot: int | None) -> None:
        """Gives back what a failed attach took, in the reverse order."""
        if slot is not None:
            try:
                self.switch.remove(slot)
            except OSError as exc:
                log.error("cannot remove port", endpoint=name, slot=slot, error=str(exc))
        for fd in (wake, link):
            if fd is not None:
                os.close(fd)
        if address is not None:
            self.addresses.release(address)

    def _apply_limits(self, slot: int, lim: dict[str, int]) -> None:
        for d in ("egress", "ingress"):
            self.switch.set_limit(slot, d, lim.get(f"{d}_bits", 0), lim.get(f"{d}_pkts", 0),
                                  lim.get(f"{d}_burst_bits", 0) // 8)

    # ---- for the management API ----

    def set_limits(self, name: str, limits: dict[str, int]) -> dict[str, int]:
        """New limits for an endpoint, applied to live traffic. A
        registered endpoint keeps them across re-attaches; an ad-hoc one
        until it detaches."""
        reg = self.registry.endpoints.get(name)
        ep = self.endpoints.get(name)
        if reg is None and ep is None:
            raise RegistryError(404, f"no endpoint {name!r}")
        if reg is not None:
            wanted = {k: int(getattr(reg, k)) for k in LIMIT_ATTRS}
        else:
            wanted = {k: ep.limits.get(k, 0) for k in LIMIT_ATTRS}  # type: ignore[union-attr]
        wanted.update(limits)
        # The switch first: limits it refuses are stored nowhere.
        if ep is not None:
            try:
                self._apply_limits(ep.slot, wanted)
            except OSError:
                try:
                    self._apply_limits(ep.slot, ep.limits)
                except OSError:
                    pass  # the port is going; its detach cleans up
                raise
            ep.limits = wanted
            self._push_limits(name)
            self._peer_links_check()
        if reg is not None:
            for key, value in wanted.items():
                setattr(reg, key, value)
        self._save_state()
        log.info("limits set", endpoint=name, **limits)
        return dict(wanted)

    def set_faults(self, name: str, faults: Faults | None) -> dict[str, Any]:
        """Fault injection on the link towards an attached endpoint (for
        tests); None turns it off. It lasts while the endpoint stays
        attached: a new attach starts with a clean link."""
        ep = self.endpoints.get(name)
        if ep is None:
            if name in self.registry.endpoints:
                raise RegistryError(409, f"endpoint {name!r} is not attached: faults apply to a live link")
            raise RegistryError(404, f"no endpoint {name!r}")
        self.switch.set_faults(ep.slot, faults)
        ep.faults = None if faults is None or faults.off else faults
        self._peer_links_check()
        log.info("faults set" if ep.faults else "faults cleared", endpoint=name,
                 **(ep.faults.public() if ep.faults else {}))
        return {"name": name, "faults": ep.faults.public() if ep.faults else None}

    def set_policy(self, source: str, dest: str, port: int, allow: bool) -> None:
        a, b = self.registry.tenant_id(source), self.registry.tenant_id(dest)
        self.switch.set_policy(a, b, port, allow)
        if allow:
            self.registry.policies.add((source, dest, port))
        else:
            self.registry.policies.discard((source, dest, port))
        self._peer_links_check()
        self._save_state()
        log.info("policy", allow=allow, source=source, dest=dest, port=port or "any")

    # ---- fast-channel broker ----

    def _fc_connect(self, conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
        """A slave is about to connect to address:port: a fast channel if
        the broker agrees (both channel ends go out at once, no round trip
        to the listener), else the reason, and the slave takes the network
        path or, for policy, reports the connection refused."""
        req, dialled, port = msg["req"], ipaddress.ip_address(msg["address"]), msg["port"]
        # An IPv6 destination is its IPv4 twin's endpoint; the channel's
        # ends are named in the family the client dialled (its peername).
        v6 = dialled.version == 6
        address = self.addresses.address4(str(dialled)) if v6 else str(dialled)
        if address is None:
            why = (f"{dialled} is not an endpoint address of this master's prefix {self.addresses.prefix6}"
                   if self.addresses.prefix6 is not None else "this master has no IPv6 prefix")
            self._fc_reply(conn, {"event": "fc_result", "req": req, "ok": False, "reason": why})
            return
        asker = self._conns.get(conn)
        src = self.endpoints.get(asker.endpoint) if asker is not None else None
        dst = self._by_address.get(address)
        allowed = (src is not None and dst is not None
                   and self.registry.allows(src.tenant, dst.tenant, port))
        # The member of the endpoint whose turn it is, of those listening.
        server = None
        if allowed and dst is not None and isinstance(port, int):
            chosen = self.broker.pick(dst.name, [m.id for m in dst.members], port)
            server = next((m for m in dst.members if m.id == chosen), None)
        try:
            self.broker.check(True, src and src.name, dst and dst.name, port, allowed, server is not None)
            assert asker is not None and src is not None and dst is not None and server is not None
            src_address, dst_address = (src.address6, dst.address6) if v6 else (src.address, dst.address)
            assert src_address is not None and dst_address is not None
            ch, memfd = self.broker.open(src.name, src_address, dst.name, dst_address, port,
                                         client_member=asker.id, server_member=server.id)
        except Refusal as why:
            if why.refuse:
                log.info("connection refused by policy", source=src and src.name, dest=dst and dst.name,
                         port=port)
            self._fc_reply(conn, {"event": "fc_result", "req": req, "ok": False, "reason": why.reason,
                                  "refuse": why.refuse})
            return
        except OSError as exc:
            log.warning("cannot make a fast channel", error=str(exc))
            self._fc_reply(conn, {"event": "fc_result", "req": req, "ok": False, "reason": str(exc)})
            return
        # Each side sleeps on its link's own eventfd (the one the switch
        # rings): one descriptor wakes a process for its stack and every
        # channel it has.
        try:
            try:
                send(server.conn, {"op": "fc_offer", "id": ch.id, "port": port, "peer": list(ch.client_addr),
                                   "peer_member": asker.id},
                     "to_slave", [memfd, server.wake_fd, asker.wake_fd])
            except OSError as exc:
                self.broker.abandon(ch)
                self._fc_reply(conn, {"event": "fc_result", "req": req, "ok": False, "reason": str(exc)})
                return
            self._fc_reply(conn, {"event": "fc_result", "req": req, "ok": True, "id": ch.id,
                                  "local_port": ch.client_addr[1], "peer_member": server.id},
                           [memfd, asker.wake_fd, server.wake_fd])
        finally:
            os.close(memfd)

    # ---- peer links ----

    def _peer_link_problem(self, a: Endpoint | None, b: Endpoint | None) -> str | None:
        """Why the switch must stay between a and b, or None: a peer link
        skips everything it does but forwarding, so only where that is all
        it would do."""
        if not self.peer_links.enabled:
            return "peer links are off on this master"
        if a is None or b is None:
            return "not an attached endpoint"
        if a is b:
            return "an endpoint's own address"
        if a.tenant != b.tenant:
            return "endpoints of different tenants"
        for ep in (a, b):
            if len(ep.members) != 1:
                return f"endpoint {ep.name!r} has {len(ep.members)} processes (the switch steers between them)"
            # An egress limit the sender keeps on its peer links too
            # (dn_link.h); an ingress one only the switch can hold to.
            if any(ep.limits.get(k, 0) for k in INGRESS_LIMITS):
                return f"endpoint {ep.name!r} has an ingress limit (the switch enforces it)"
            if ep.faults is not None:
                return f"endpoint {ep.name!r} has faults injected on its link"
        return None

    def _peer_want(self, conn: socket.socket, msg: dict[str, Any], fds: list[int]) -> None:
        """A slave sends to address through the switch: a peer link to it
        if nothing but forwarding happens between them, else nothing (the
        frames go on through the switch; the slave asks again later)."""
        asker = self._conns.get(conn)
        src = self.endpoints.get(asker.endpoint) if asker is not None else None
        dst = self._by_address.get(msg["address"])
        why = self._peer_link_problem(src, dst)
        if why is None and src is not None and dst is not None:
            if self.peer_links.find(src.name, dst.name) is not None:
                return  # up already (the slave's ask crossed our peer_up)
            if max(self.peer_links.count(src.name), self.peer_links.count(dst.name)) >= MAX_PER_ENDPOINT:
                why = f"an endpoint already has {MAX_PER_ENDPOINT} peer links"
        if why is not None or src is None or dst is None:
            log.debug("no peer link", source=src and src.name, address=msg["address"], reason=why)
            return
        a, b = src.members[0], dst.members[0]
        memfd: int | None = None
        link: PeerLink | None = None
        try:
            # Out of descriptors or memory is the master's trouble, not the
            # asker's: no link, a warning, frames go on through the switch.
            memfd = os.memfd_create(f"docknet-peer-{src.name}-{dst.name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            self.switch.peer_memory(memfd)
            link = self.peer_links.add(src.name, dst.name, PeerWatch(memfd))
            send(a.conn, {"event": "peer_up", "id": link.id, "address": dst.address, "mac": dst.mac, "role": 0},
                 "to_slave", [memfd, b.wake_fd])
            send(b.conn, {"event": "peer_up", "id": link.id, "address": src.address, "mac": src.mac, "role": 1},
                 "to_slave", [memfd, a.wake_fd])
        except OSError as exc:
            log.warning("cannot make a peer link", source=src.name, dest=dst.name, error=str(exc))
            if link is not None:
                self._peer_link_down(link, "it could not be made")
            return
        finally:
            if memfd is not None:
                os.close(memfd)
        log.info("peer link up", id=link.id, endpoints=[src.name, dst.name])

    def _peer_link_down(self, link: PeerLink, why: str) -> None:
        """Takes a link off the books and tells both slaves (whoever of
        them is still there): their frames go through the switch again."""
        self.peer_links.remove(link.id)
        for name in (link.a, link.b):
            ep = self.endpoints.get(name)
            for m in ep.members if ep is not None else ():
                try:
                    send(m.conn, {"event": "peer_down", "id": link.id}, "to_slave")
                except OSError:
                    pass  # that slave is going; its EOF will tell
        log.info("peer link down", id=link.id, endpoints=[link.a, link.b], reason=why)

    def _peer_links_drop(self, name: str, why: str) -> None:
        for link in self.peer_links.of(name):
            self._peer_link_down(link, f"{name}: {why}")

    def _peer_links_check(self) -> None:
        """After limits, faults or policy changed: every link whose
        endpoints the switch must now stand between goes."""
        for link in list(self.peer_links.links.values()):
            why = self._peer_link_problem(self.endpoints.get(link.a), self.endpoints.get(link.b))
            if why is not None:
                self._peer_link_down(link, why)

    def _ring(self, member_id: int | None) -> None:
        """Wake a member's process (a channel of its was reset)."""
        member = self._by_member.get(member_id) if member_id else None
        if member is not None:
            try:
                os.eventfd_write(member.wake_fd, 1)
            except BlockingIOError:
                pass  # saturated: it is being woken anyway

    def _fc_reply(self, conn: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        try:
            send(conn, msg, "to_slave", fds)
        except OSError:
            pass  # the asker is gone; its EOF will detach it

    def _push_limits(self, name: str) -> None:
        """Fast channels bypass the switch: the sending process enforces its
        endpoint's limits on them, so it is told what they are. Of several
        processes, each gets an equal share (the switch's bucket, one for
        the endpoint, holds them together on the network path; shares are
        what keeps N processes from sending N times the limit over fast
        channels), told again whenever one comes or goes."""
        ep = self.endpoints.get(name)
        if ep is None or not ep.members:
            return
        n = len(ep.members)
        # A share of a limit is never 0, which would mean none.
        notice = {"event": "limits", **{k: -(-ep.limits.get(k, 0) // n) for k in LIMIT_ATTRS}}
        for member in ep.members:
            try:
                send(member.conn, notice, "to_slave")
            except OSError:
                pass

    async def connections(self, name: str, timeout: float = 2.0) -> dict[str, Any]:
        """Ask an endpoint's processes for their connections (`docknet
        ss`); with several, each row says whose it is (pid)."""
        ep = self.endpoints.get(name)
        if ep is None or not ep.members:
            raise RegistryError(404, f"no endpoint {name!r} is attached")
        if len(ep.members) == 1:
            return await self._member_connections(name, ep.members[0], timeout)
        answers = await asyncio.gather(*(self._member_connections(name, m, timeout) for m in ep.members))
        out: dict[str, Any] = {"total": 0, "conns": []}
        for member, answer in zip(ep.members, answers):
            out["total"] += answer.get("total", 0)
            out["conns"].extend({**row, "pid": member.pid} if isinstance(row, dict) else row
                                for row in answer.get("conns", []))
        return out

    async def _member_connections(self, name: str, member: Member, timeout: float) -> dict[str, Any]:
        assert self._loop is not None
        conn = member.conn
        self._counter += 1
        req = self._counter
        fut = self._loop.create_future()
        self._pending[req] = (conn, fut)
        try:
            send(conn, {"op": "connections", "req": req}, "to_slave")
            answer = await asyncio.wait_for(fut, timeout)
        except (OSError, asyncio.TimeoutError):
            raise RegistryError(
                504, f"endpoint {name!r} did not answer (only processes running a DockNetLoop do)"
            ) from None
        finally:
            self._pending.pop(req, None)
        if "error" in answer:
            raise RegistryError(502, f"endpoint {name!r} could not answer: {answer['error']}")
        return answer

    def register(self, name: str, tenant: str, netns: str, ip: str | None = None,
                 limits: dict[str, int] | None = None) -> Registration:
        """Register name (the management API's POST /v1/endpoints). A
        process holding the name ad hoc (it attached before anyone
        registered it, so it showed no secret) loses it now: the name is the
        registrant's, and the process it starts in the registered
        namespace must be able to attach under it."""
        reg = self.registry.register(name, tenant, netns, ip, limits)
        ep = self.endpoints.get(name)
        if ep is not None and ep.registration is None:
            log.warning("ad-hoc endpoint evicted: its name was registered", endpoint=name, pid=ep.pid,
                        address=ep.address, netns=netns)
            for member in list(ep.members):
                self._drop(member.conn, "name registered")
        return reg

    def drop_endpoint(self, name: str) -> None:
        """Unregister, and cut the attached process off if there is one."""
        self.registry.unregister(name)
        held = self._take_reserved(name)
        if held is not None:
            self.addresses.release(held)
            self._save_state()
        ep = self.endpoints.get(name)
        for member in list(ep.members if ep is not None else ()):
            self._drop(member.conn, "unregistered")
        self.release_tenants()

    def release_tenants(self) -> None:
        """Tenants no endpoint holds any more go, their rules with them."""

        def clear(source: int, dest: int, port: int) -> None:
            try:
                self.switch.set_policy(source, dest, port, False)
            except OSError as exc:
                log.error("cannot clear a policy rule", source=source, dest=dest, port=port, error=str(exc))

        gone = self.registry.release_tenants([ep.tenant for ep in self.endpoints.values()], clear)
        for tenant in gone:
            log.info("tenant released", tenant=tenant)
        if gone:
            self._save_state()

    def _leave(self, member: Member, why: str) -> None:
        """A member's process went (its connection closed): only its link
        and channels go, unless it was the endpoint's last."""
        self._by_member.pop(member.id, None)
        ep = self.endpoints.get(member.endpoint)
        if ep is not None and member in ep.members:
            ep.members.remove(member)
        self._peer_links_drop(member.endpoint, "its process left")
        for peer in self.broker.member_gone(member.id):
            self._ring(peer)
        if ep is None or not ep.members:
            os.close(member.link_fd)
            os.close(member.wake_fd)
            self._detach(member.endpoint, why)
            return
        try:
            self.switch.leave(ep.slot, member.link)
        except OSError as exc:
            log.error("cannot remove a link", endpoint=ep.name, link=member.link, error=str(exc))
        os.close(member.link_fd)
        os.close(member.wake_fd)
        # The switch has reset its connections' peers; the address stays,
        # so no endpoint_gone. The others' shares of the limits grow.
        self._push_limits(ep.name)
        log.info("endpoint member left", endpoint=ep.name, pid=member.pid, link=member.link,
                 members=len(ep.members), reason=why)

    def _detach(self, name: str, why: str) -> None:
        ep = self.endpoints.pop(name, None)
        if ep is None:
            return
        if self._by_address.get(ep.address) is ep:
            del self._by_address[ep.address]
        try:
            self.switch.remove(ep.slot)
        except OSError as exc:
            log.error("cannot remove port", endpoint=name, error=str(exc))
        if name in self.registry.endpoints and self._loop is not None and not self._loop.is_closed():
            # A registered endpoint's process that stopped is likely to
            # start again: same name, same address, and callers that
            # resolve the name meanwhile get its address (connections
            # refused until it is back) rather than no such name.
            self._reserve(name, ep.address)
        else:
            self.addresses.release(ep.address)
        self.broker.endpoint_gone(name)
        self.peer_links.endpoint_gone(name)
        self._save_state()
        log.info("endpoint detached", endpoint=name, address=ep.address, reason=why)
        self.release_tenants()
        # The endpoint's peers learn now, not at their next send: their
        # stacks end every connection to it, as the kernel would on a close.
        notice = {"event": "endpoint_gone", "name": name, "address": ep.address}
        if ep.address6 is not None:
            notice["address6"] = ep.address6
        for conn in [m.conn for other in self.endpoints.values() for m in other.members]:
            try:
                send(conn, notice, "to_slave")
            except OSError:
                pass  # that slave is going too; its own EOF will tell

    def _caller_tenants(self, conn: socket.socket) -> set[str]:
        """The tenants a control connection speaks for: its process's
        endpoint's, else those registered for its network namespace, else
        the default tenant for a process on the host; none for a process
        of a namespace the master knows nothing about."""
        peer = self._peer(conn)
        if peer is None:
            return set()
        own = {ep.tenant for ep in self.endpoints.values() if any(m.pid == peer.pid for m in ep.members)}
        if own:
            return own
        ino = self._peer_netns(peer)
        if ino is None:
            return set()
        registered = {r.tenant for r in self.registry.endpoints.values() if r.netns_ino == ino}
        if registered:
            return registered
        return {DEFAULT_TENANT} if ino == self.registry.master_netns else set()

    def _resolve(self, conn: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        name = msg["name"]
        ep = self.endpoints.get(name)
        if ep is not None:
            tenant, address = ep.tenant, ep.address
        else:
            # Away for a moment (restarting), or registered at an address
            # of its own: the name still stands for that address.
            reg = self.registry.endpoints.get(name)
            tenant = reg.tenant if reg is not None else DEFAULT_TENANT
            address = self._reserved.get(name) or (reg.ip if reg is not None else None)
        # A name the caller's tenant may not reach is answered as one that
        # does not exist: the answer must not tell the two apart.
        if address is None or not any(self.registry.may_reach(t, tenant) for t in self._caller_tenants(conn)):
            raise RequestError(errno.ENOENT, f"no endpoint named {name!r}")
        address6 = self.addresses.address6(address)
        return ({"address": address} if address6 is None else {"address": address, "address6": address6}), []

    def _status(self, conn: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        # Every name, address and pid: for the host's administrators only
        # (a process in the master's network namespace, as root or as the
        # master's user), never for a process inside an endpoint's
        # namespace, whatever its uid there.
        peer = self._peer(conn)
        if (peer is None or peer.uid not in (0, os.geteuid())
                or self._peer_netns(peer) != self.registry.master_netns):
            raise RequestError(errno.EACCES, "status is only answered to root on the master's host "
                                             "(use the management API)")
        return self.status(per_endpoint=True), []

    def status(self, *, per_endpoint: bool = False) -> dict[str, Any]:
        """The master's status, as the control socket's status op and the
        management API's /v1/status both give it; per_endpoint adds each
        attached endpoint's name, address, pid and counters."""
        sw = self.switch.counters()
        loops = sw.get("loops", 0)
        util = sw.get("busy_loops", 0) / loops if loops else 0.0
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "subnet": str(self.addresses.subnet),
            "gateway": self.addresses.gateway,
            "range": str(self.addresses.range),
            **({} if self.addresses.prefix6 is None else {
                "subnet6": str(self.addresses.prefix6), "gateway6": self.addresses.gateway6}),
            "mtu": self.mtu,
            "control": self.path,
            "endpoints_attached": len(self.endpoints),
            "endpoints_registered": len(self.registry.endpoints),
            "tenants": sorted(self.registry.tenants),
            "addresses_in_use": self.addresses.in_use(),
            "switch": {**sw, "utilisation": round(util, 4)},
            "fast_channels": self.broker.stats(),
            "peer_links": self.peer_links.stats(),
            "uplink": self.switch.uplink(),
        }
        if per_endpoint:
            endpoints = []
            for ep in self.endpoints.values():
                try:
                    counters = self.switch.port_counters(ep.slot)
                except OSError:
                    counters = {}
                row = {"name": ep.name, "address": ep.address, "mac": ep.mac, "pid": ep.pid,
                       "attached_at": ep.attached_at, "counters": counters,
                       "members": [m.public() for m in ep.members]}
                if ep.address6 is not None:
                    row["address6"] = ep.address6
                endpoints.append(row)
            out["endpoints"] = endpoints
        return out
