"""The master's control socket: attach, detach, resolve, status.

Each slave holds one connection for as long as it is attached; when that
connection closes (detach, exit, SIGKILL) its endpoint, port and address are
freed. Requests that make no sense get an error reply and the connection
stays usable; a connection that sends garbage is logged and closed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..control import recv_message, send_message
from ..log import get_logger
from .addresses import AddressPool
from .broker import FastChannelBroker, Refusal
from .faults import Faults
from .registry import Registration, Registry, RegistryError
from .switch import Switch, mac_of

__all__ = ["ControlServer", "Endpoint"]

log = get_logger("aiodocknet.master")

LIMIT_ATTRS = ("egress_bits", "ingress_bits", "egress_pkts", "ingress_pkts")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class Endpoint:
    name: str
    address: str
    mac: str
    slot: int
    pid: int | None
    link_fd: int
    wake_fd: int
    tenant: str = "default"
    registration: Registration | None = None
    # In force now, on the switch and pushed to the process (fast channels).
    limits: dict[str, int] = field(default_factory=dict)
    attached_at: float = field(default_factory=time.time)
    # Fault injection on its link (tests), None when off.
    faults: Faults | None = None


class RequestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlServer:
    def __init__(
        self,
        path: str,
        run_dir: str,
        switch: Switch,
        addresses: AddressPool,
        mtu: int,
        registry: Registry | None = None,
        default_limits: dict[str, int] | None = None,
    ) -> None:
        self.path = path
        self.default_limits = default_limits or {}
        self.registry = registry or Registry()
        self.run_dir = run_dir
        self.switch = switch
        self.addresses = addresses
        self.mtu = mtu
        self.endpoints: dict[str, Endpoint] = {}
        self._conn_endpoint: dict[socket.socket, str] = {}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counter = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.broker = FastChannelBroker()
        self._handlers: dict[str, Callable[[socket.socket, dict[str, Any]], tuple[dict[str, Any], list[int]]]] = {
            "attach": self._attach,
            "resolve": self._resolve,
            "status": self._status,
            "ping": lambda conn, msg: ({"pong": True}, []),
        }

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
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

    def close(self) -> None:
        assert self._loop is not None
        for conn in list(self._conn_endpoint):
            self._drop(conn, "master stopping")
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
        self._conn_endpoint[conn] = ""
        self._loop.add_reader(conn.fileno(), self._readable, conn)

    def _peer_pid(self, conn: socket.socket) -> int | None:
        try:
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        except OSError:
            return None
        return int.from_bytes(cred[:4], "little")

    def _readable(self, conn: socket.socket) -> None:
        try:
            msg, fds = recv_message(conn)
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, ValueError) as exc:
            log.warning("bad control message", error=str(exc), pid=self._peer_pid(conn))
            self._drop(conn, "bad message")
            return
        for fd in fds:  # nothing a slave sends carries descriptors
            os.close(fd)
        if msg is None:
            self._drop(conn, "closed")
            return
        if msg.get("op") == "fc_connect":
            self._fc_connect(conn, msg)
            return
        event = msg.get("event")
        if event == "fc_closed":
            self.broker.closed(self._conn_endpoint.get(conn, ""), msg.get("id"))
            return
        if event == "listen":
            name, port = self._conn_endpoint.get(conn, ""), msg.get("port")
            if name and isinstance(port, int):
                self.broker.listen(name, port, bool(msg.get("on")))
            return
        if msg.get("event") == "connections":
            fut = self._pending.pop(msg.get("req"), None)  # type: ignore[arg-type]
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        op = msg.get("op")
        handler = self._handlers.get(op) if isinstance(op, str) else None
        reply_fds: list[int] = []
        try:
            if handler is None:
                raise RequestError(errno.EINVAL, f"unknown operation {op!r}")
            result, reply_fds = handler(conn, msg)
            reply: dict[str, Any] = {"ok": True, **result}
        except RequestError as exc:
            reply = {"ok": False, "code": errno.errorcode.get(exc.code, "EIO"), "error": str(exc)}
            log.warning("request refused", op=op, error=str(exc), pid=self._peer_pid(conn))
        try:
            send_message(conn, reply, reply_fds)
        except OSError as exc:
            log.warning("cannot reply", error=str(exc))
            self._drop(conn, "reply failed")
            return
        if op == "attach" and reply["ok"]:
            self._push_limits(self._conn_endpoint[conn])

    def _drop(self, conn: socket.socket, why: str) -> None:
        assert self._loop is not None
        name = self._conn_endpoint.pop(conn, "")
        self._loop.remove_reader(conn.fileno())
        conn.close()
        if name:
            self._detach(name, why)

    # ---- requests ----

    def _attach(self, conn: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        name = msg.get("endpoint")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RequestError(
                errno.EINVAL,
                "endpoint name must be 1-63 letters, digits, '.', '_' or '-' "
                "and start with a letter or digit",
            )
        if self._conn_endpoint.get(conn):
            raise RequestError(errno.EISCONN, "this connection is already attached")
        if name in self.endpoints:
            raise RequestError(errno.EADDRINUSE, f"endpoint {name!r} is already attached")
        pid = self._peer_pid(conn)
        try:
            reg = self.registry.check_attach(name, pid, msg.get("secret"))
        except RegistryError as exc:
            log.warning("attach refused", endpoint=name, pid=pid, reason=str(exc))
            raise RequestError(errno.EACCES, str(exc)) from None
        tenant = reg.tenant if reg is not None else "default"
        try:
            tenant_id = self.registry.tenant_id(tenant)
            address = self.addresses.allocate(reg.ip if reg is not None else None)
        except (ValueError, RegistryError) as exc:
            raise RequestError(errno.ENOSPC, str(exc)) from None
        # The switch sizes and lays out the link's memory; the process maps
        # the same memfd.
        link = os.memfd_create(f"docknet-link-{name}", os.MFD_CLOEXEC)
        wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            slot = self.switch.add(ip=address, link_fd=link, slave_wake_fd=wake, tenant=tenant_id)
        except OSError as exc:
            os.close(link)
            os.close(wake)
            self.addresses.release(address)
            raise RequestError(exc.errno or errno.EIO, f"cannot create the endpoint's port: {exc.strerror}") from None
        limits = dict(self.default_limits)
        if reg is not None and any(getattr(reg, k) for k in LIMIT_ATTRS):
            limits = {k: int(getattr(reg, k)) for k in LIMIT_ATTRS}
        try:
            self._apply_limits(slot, limits)
        except OSError as exc:
            self.switch.remove(slot)
            os.close(link)
            os.close(wake)
            self.addresses.release(address)
            raise RequestError(exc.errno or errno.EIO, f"cannot set the endpoint's limits: {exc.strerror}") from None
        ep = Endpoint(
            name=name,
            address=address,
            mac=mac_of(address),
            slot=slot,
            pid=pid,
            link_fd=link,
            wake_fd=wake,
            tenant=tenant,
            registration=reg,
            limits=limits,
        )
        self.endpoints[name] = ep
        self._conn_endpoint[conn] = name
        log.info("endpoint attached", endpoint=name, address=address, slot=slot, pid=ep.pid, tenant=tenant)
        reply = {
            "address": address,
            "prefix": self.addresses.subnet.prefixlen,
            "gateway": self.addresses.gateway,
            "mac": ep.mac,
            "mtu": self.mtu,
        }
        return reply, [link, wake, self.switch.wake_fd]

    def _apply_limits(self, slot: int, lim: dict[str, int]) -> None:
        self.switch.set_limit(slot, "egress", lim.get("egress_bits", 0), lim.get("egress_pkts", 0))
        self.switch.set_limit(slot, "ingress", lim.get("ingress_bits", 0), lim.get("ingress_pkts", 0))

    # ---- for the management API ----

    def set_limits(self, name: str, limits: dict[str, int]) -> dict[str, int]:
        """New limits for an endpoint, applied to live traffic. A
        registered endpoint keeps them across re-attaches; an ad-hoc one
        until it detaches."""
        reg = self.registry.endpoints.get(name)
        ep = self.endpoints.get(name)
        if reg is None and ep is None:
            raise RegistryError(404, f"no endpoint {name!r}")
        target = reg if reg is not None else ep.limits  # type: ignore[union-attr]
        for key, value in limits.items():
            if isinstance(target, dict):
                target[key] = value
            else:
                setattr(target, key, value)
        if ep is not None:
            if reg is not None:
                ep.limits = {k: int(getattr(reg, k)) for k in LIMIT_ATTRS}
            self._apply_limits(ep.slot, ep.limits)
            self._push_limits(name)
        log.info("limits set", endpoint=name, **limits)
        return {k: (getattr(reg, k) if reg is not None else ep.limits.get(k, 0))  # type: ignore[union-attr]
                for k in ("egress_bits", "ingress_bits", "egress_pkts", "ingress_pkts")}

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
        log.info("policy", allow=allow, source=source, dest=dest, port=port or "any")

    # ---- fast-channel broker ----

    def _fc_connect(self, conn: socket.socket, msg: dict[str, Any]) -> None:
        """A slave is about to connect to address:port: a fast channel if
        the broker agrees (both channel ends go out at once, no round trip
        to the listener), else the reason, and the slave takes the network
        path or, for policy, reports the connection refused."""
        req, address, port = msg.get("req"), msg.get("address"), msg.get("port")
        src = self.endpoints.get(self._conn_endpoint.get(conn, ""))
        dst = next((e for e in self.endpoints.values() if e.address == address), None)
        allowed = (src is not None and dst is not None and isinstance(port, int)
                   and self.registry.allows(src.tenant, dst.tenant, port))
        dst_conn = next((c for c, n in self._conn_endpoint.items() if dst is not None and n == dst.name), None)
        try:
            self.broker.check(True, src and src.name, dst and dst.name, port, allowed)
            if dst_conn is None:
                raise Refusal("the endpoint is leaving")
            assert src is not None and dst is not None and isinstance(port, int)
            ch, memfd = self.broker.open(src.name, src.address, dst.name, dst.address, port)
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
        # Each side sleeps on its endpoint's own eventfd (the one the switch
        # rings): one descriptor wakes a process for its stack and every
        # channel it has.
        try:
            try:
                send_message(dst_conn, {"op": "fc_offer", "id": ch.id, "port": port, "peer": list(ch.client_addr)},
                             [memfd, dst.wake_fd, src.wake_fd])
            except OSError as exc:
                self.broker.abandon(ch)
                self._fc_reply(conn, {"event": "fc_result", "req": req, "ok": False, "reason": str(exc)})
                return
            self._fc_reply(conn, {"event": "fc_result", "req": req, "ok": True, "id": ch.id,
                                  "local_port": ch.client_addr[1]}, [memfd, src.wake_fd, dst.wake_fd])
        finally:
            os.close(memfd)

    def _fc_reply(self, conn: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        try:
            send_message(conn, msg, fds)
        except OSError:
            pass  # the asker is gone; its EOF will detach it

    def _push_limits(self, name: str) -> None:
        """Fast channels bypass the switch: the sending process enforces its
        endpoint's limits on them, so it is told what they are."""
        ep = self.endpoints.get(name)
        conn = next((c for c, n in self._conn_endpoint.items() if n == name), None)
        if ep is None or conn is None:
            return
        try:
            send_message(conn, {"event": "limits", **{k: ep.limits.get(k, 0) for k in LIMIT_ATTRS}})
        except OSError:
            pass

    async def connections(self, name: str, timeout: float = 2.0) -> dict[str, Any]:
        """Ask an endpoint's process for its connections (`docknet ss`)."""
        assert self._loop is not None
        conn = next((c for c, n in self._conn_endpoint.items() if n == name), None)
        if conn is None:
            raise RegistryError(404, f"no endpoint {name!r} is attached")
        self._counter += 1
        req = self._counter
        fut = self._loop.create_future()
        self._pending[req] = fut
        try:
            send_message(conn, {"op": "connections", "req": req})
            return await asyncio.wait_for(fut, timeout)
        except (OSError, asyncio.TimeoutError):
            raise RegistryError(
                504, f"endpoint {name!r} did not answer (only processes running a DockNetLoop do)"
            ) from None
        finally:
            self._pending.pop(req, None)

    def drop_endpoint(self, name: str) -> None:
        """Unregister, and cut the attached process off if there is one."""
        self.registry.unregister(name)
        for conn, other in list(self._conn_endpoint.items()):
            if other == name:
                self._drop(conn, "unregistered")

    def _detach(self, name: str, why: str) -> None:
        ep = self.endpoints.pop(name, None)
        if ep is None:
            return
        try:
            self.switch.remove(ep.slot)
        except OSError as exc:
            log.error("cannot remove port", endpoint=name, error=str(exc))
        os.close(ep.link_fd)
        os.close(ep.wake_fd)
        self.addresses.release(ep.address)
        self.broker.endpoint_gone(name)
        log.info("endpoint detached", endpoint=name, address=ep.address, reason=why)
        # The endpoint's peers learn now, not at their next send: their
        # stacks end every connection to it, as the kernel would on a close.
        notice = {"event": "endpoint_gone", "name": name, "address": ep.address}
        for conn, other in list(self._conn_endpoint.items()):
            if other:
                try:
                    send_message(conn, notice)
                except OSError:
                    pass  # that slave is going too; its own EOF will tell

    def _resolve(self, conn: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        name = msg.get("name")
        ep = self.endpoints.get(name) if isinstance(name, str) else None
        if ep is None:
            raise RequestError(errno.ENOENT, f"no endpoint named {name!r}")
        return {"address": ep.address}, []

    def _status(self, conn: socket.socket, msg: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        endpoints = []
        for ep in self.endpoints.values():
            try:
                counters = self.switch.port_counters(ep.slot)
            except OSError:
                counters = {}
            endpoints.append(
                {
                    "name": ep.name,
                    "address": ep.address,
                    "mac": ep.mac,
                    "pid": ep.pid,
                    "attached_at": ep.attached_at,
                    "counters": counters,
                }
            )
        return {
            "pid": os.getpid(),
            "subnet": str(self.addresses.subnet),
            "endpoints": endpoints,
            "addresses_in_use": self.addresses.in_use(),
            "switch": self.switch.counters(),
            "fast_channels": self.broker.stats(),
        }, []
