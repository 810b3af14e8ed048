"""``DockNetLoop``: uvloop, with DockNet addresses routed through the slave
stack.

An address of the DockNet subnet or IPv6 prefix, or a service name the
master knows, goes through DockNet; everything else (other addresses, unix sockets, pipes,
subprocesses, signals, DNS) is uvloop's. A wildcard bind listens on the
DockNet endpoint and on the kernel. The endpoint is attached on the first
call that could use it; with no master, the loop is plain uvloop, except
that an address of the DockNet subnet still never goes through the
kernel's routes (its connects and sends fail at once with EHOSTUNREACH). A
connection to another endpoint of the same master is carried by a fast
channel when the master brokers one (see ``transports/fastchannel.py``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import os
import socket
import ssl as ssl_mod
from collections.abc import Callable
from typing import Any

import uvloop

from .native.bucket import TokenBucket
from .endpoint import NOT_CACHED, ProcessEndpoint, pick
from .native.fastchan import WakeFds
from .poller import StackPoller
from .transports.server import DockNetServer
from .log import get_logger
from .control import InvalidMessage, field_value
from .native.stack import EV_CONNECTED, EV_ERROR, Event, request_attach
from .transports.base import DockNetStreamTransport
from .transports.tcp import DockNetTCPTransport, _exc
from .transports.tls import app_transport, tls_protocol
from .transports.udp import DockNetDatagramTransport

# Connections to endpoints of our own master go over fast channels unless
# DOCKNET_FAST_CHANNELS=0 (for comparison) or the master has them off.
FAST_CHANNELS = os.environ.get("DOCKNET_FAST_CHANNELS", "1") != "0"
# How long a connect waits for the master's answer about a fast channel
# before taking the network path (the master answers at once; this is for
# a master too busy to).
FC_BROKER_TIMEOUT = 3.0
# After the master went: first try to re-attach this soon, then back off
# to one try every REATTACH_MAX seconds until it is back.
REATTACH_FIRST = 0.1
REATTACH_MAX = 1.0

__all__ = ["DockNetLoop"]

log = get_logger("aiodocknet.loop")

WILDCARDS = (None, "", "0.0.0.0", "::")


class _Connecting:
    """Waits for EV_CONNECTED or EV_ERROR on a connection being opened."""

    def __init__(self, fut: asyncio.Future[None]) -> None:
        self.fut = fut

    def _dn_event(self, ev: Event) -> None:
        if self.fut.done():
            return
        if ev.kind == EV_CONNECTED:
            self.fut.set_result(None)
        elif ev.kind == EV_ERROR:
            self.fut.set_exception(_exc(ev.arg))


class _GuardedDatagramTransport(asyncio.DatagramTransport):
    """A kernel datagram transport that refuses DockNet addresses: the
    application's protocol holds this one, never the kernel's."""

    def __init__(self, loop: DockNetLoop, inner: asyncio.DatagramTransport, guard: _GuardProtocol) -> None:
        super().__init__()
        self._loop = loop
        self._inner = inner
        self._guard = guard

    def sendto(self, data: Any, addr: Any = None) -> None:
        if isinstance(addr, tuple) and addr and isinstance(addr[0], str):
            try:
                self._loop._dn_never_kernel(addr[0])
            except OSError as exc:
                # As the kernel's own refusal would reach it: datagram
                # errors go to the protocol, never to sendto's caller.
                self._guard.app.error_received(exc)
                return
        self._inner.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def abort(self) -> None:
        self._inner.abort()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._guard.app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._guard.app


class _GuardProtocol(asyncio.DatagramProtocol):
    """Between a kernel datagram transport and the application's protocol,
    so that the application is handed the guarded transport."""

    def __init__(self, loop: DockNetLoop, app: asyncio.BaseProtocol) -> None:
        self.loop = loop
        self.app: Any = app
        self.transport: _GuardedDatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _GuardedDatagramTransport(self.loop, transport, self)  # type: ignore[arg-type]
        self.app.connection_made(self.transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.app.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.app.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()


def _wake_key(address: str, msg: dict[str, Any]) -> str:
    """What a channel's peer eventfd is kept under: the peer process (an
    endpoint may have several, each with its own eventfd) when the master
    names it, else its endpoint's address."""
    member = msg.get("peer_member")
    return f"{address}#{member}" if isinstance(member, int) else address


class DockNetLoop(uvloop.Loop):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._dn_endpoint: ProcessEndpoint | None = None
        self._dn_poller: StackPoller | None = None
        self._dn_tried = False
        self._dn_servers: dict[int, DockNetServer] = {}
        self._dn_fc_pending: dict[int, asyncio.Future[tuple[dict[str, Any], list[int]]]] = {}
        self._dn_fc_ids = itertools.count(1)
        # Connections to endpoints of our own master may go over fast
        # channels (see FAST_CHANNELS).
        self._dn_fast_channels = FAST_CHANNELS
        # The endpoint's limits, enforced here on fast channels.
        self._dn_egress: TokenBucket | None = None
        self._dn_ingress: TokenBucket | None = None
        self._dn_reattach: asyncio.TimerHandle | None = None
        self._dn_reattach_tries = 0
        # Eventfds shared by the fast channels (a set per master).
        self._dn_wakes = WakeFds()
        self._dn_fc_failures = 0

    # ---- the endpoint ----

    def _docknet(self) -> ProcessEndpoint | None:
        """The process's endpoint if this loop may use it, attaching once."""
        if self._dn_poller is not None:
            return self._dn_endpoint
        if self._dn_tried:
            return None
        self._dn_tried = True
        ep = ProcessEndpoint.get()
        if ep is None:
            return None
        if ep.owner is not None and ep.owner is not self:
            # Another loop in this process polls the stack (lwIP is single
            # threaded): this one stays on the kernel path.
            return None
        ep.owner = self
        self._dn_endpoint = ep
        self._dn_poller = StackPoller(self, ep.stack)
        ep.stack.extra_connections = self._dn_fc_rows
        ep.stack.control.update(
            {
                "endpoint_gone": self._dn_endpoint_gone,
                "fc_result": self._dn_fc_result,
                "fc_offer": self._dn_fc_offer,
                "limits": lambda msg, fds: self._dn_set_limits(msg),
            },
            refusers={"fc_result": self._dn_fc_result_refused, "fc_offer": self._dn_fc_offer_refused},
        )
        if ep.limits is not None:
            self._dn_set_limits(ep.limits)
        return ep

    async def _docknet_address(self, host: Any, family: int = 0) -> str | None:
        """The DockNet address host stands for, if any (for a name, the one
        of the family asked for; family 0 prefers IPv4). A name is the
        master's to resolve; a cached answer costs no await."""
        addresses = await self._docknet_addresses(host, family)
        return None if addresses is None else pick(addresses, family)

    async def _docknet_addresses(self, host: Any, family: int = 0) -> tuple[str | None, str | None] | None:
        """The DockNet addresses (IPv4, IPv6) host stands for, None if it is
        no DockNet address or name. A literal comes back in its canonical
        form: the master and the stack compare IPv6 addresses as strings."""
        if not isinstance(host, str) or host in WILDCARDS:
            return None
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            if family not in (0, socket.AF_INET if ip.version == 4 else socket.AF_INET6):
                return None
            # A scoped IPv6 address is a link's, never an endpoint's.
            if ip.version == 6 and ip.scope_id:  # type: ignore[union-attr]
                return None
            ep = self._docknet()
            if ep is None or not ep.is_docknet_ip(host):
                return None
            return (host, None) if ip.version == 4 else (None, str(ip))
        if host == "localhost" or "." in host and host.endswith((".local", ".localhost")):
            return None
        ep = self._docknet()
        if ep is None:
            return None
        hit = ep.cached(host)
        if hit is NOT_CACHED:
            hit = await ep.resolve(host)
        return None if pick(hit, family) is None else hit

    async def _dn_dns_address(self, host: Any, port: Any, family: int) -> str | None:
        """A DockNet address the name has in DNS, for a name the master does
        not know: in Kubernetes a headless Service over DockNet pods is
        such a name (the cluster's DNS has it, not this master). Asked only
        where DockNet is in use; a name with no DockNet address is looked up
        once more by the kernel path that then takes it."""
        if not isinstance(host, str) or host in WILDCARDS or host == "localhost":
            return None
        ep = self._docknet()
        if ep is None:
            return None
        try:
            ipaddress.ip_address(host)
            return None  # a literal: _docknet_address has decided
        except ValueError:
            pass
        try:
            infos = await super().getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        except OSError:
            return None  # the kernel path reports it, as it would have
        for _family, _type, _proto, _name, sockaddr in infos:
            if ep.is_docknet_ip(sockaddr[0]):
                return str(ipaddress.ip_address(sockaddr[0]))
        return None

    # ---- the master restarting ----

    def _dn_master_lost(self) -> None:
        """The master is gone (the poller has ended the connections):
        nothing waits for its answers, and the endpoint re-attaches when a
        master is back on the same control socket."""
        for fut in self._dn_fc_pending.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError(errno.ECONNRESET, "the DockNet master is gone"))
        self._dn_reattach_tries = 0
        self._dn_schedule_reattach(REATTACH_FIRST)

    def _dn_schedule_reattach(self, delay: float) -> None:
        if self._dn_reattach is None and self._dn_poller is not None:
            self._dn_reattach = self.call_later(delay, self._dn_try_reattach)

    def _dn_try_reattach(self) -> None:
        self._dn_reattach = None
        ep = self._dn_endpoint
        if ep is None or self._dn_poller is None:
            return
        # The attach is a round trip to another process: off the loop.
        fut = self.run_in_executor(None, request_attach, ep.stack.info.endpoint, ep.master)
        fut.add_done_callback(self._dn_reattached)

    def _dn_reattached(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        ep, poller = self._dn_endpoint, self._dn_poller
        exc = fut.exception()
        if exc is not None:
            if ep is None or poller is None:
                return
            self._dn_reattach_tries += 1
            if self._dn_reattach_tries in (1, 10) or self._dn_reattach_tries % 60 == 0:
                log.warning("docknet master not back yet", endpoint=ep.stack.info.endpoint,
                            tries=self._dn_reattach_tries, reason=str(exc))
            self._dn_schedule_reattach(min(REATTACH_FIRST * 2 ** self._dn_reattach_tries, REATTACH_MAX))
            return
        control, info, fds = fut.result()
        if ep is None or poller is None:
            for fd in fds:
                os.close(fd)
            control.close()
            return
        try:
            poller.relink(control, info, fds)
        except OSError as exc:
            log.error("cannot move to the master that came back", endpoint=info.endpoint, error=str(exc))
            self._dn_schedule_reattach(REATTACH_MAX)
            return
        ep.relinked()
        self._dn_wakes = WakeFds()
        for port, server in list(self._dn_servers.items()):
            server._relinked()
            self._dn_listen(port, True)

    def _dn_no_route(self, host: Any) -> None:
        """Refuse an address of the DockNet subnet that this loop cannot
        carry through DockNet (no master reached, the master gone, another
        loop owns the endpoint). The kernel would send it by its own routes,
        typically the default route, out of the host: a service's traffic
        for its peers on a network that was never meant to see it."""
        if not isinstance(host, str):
            return
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return  # a name: DockNet's names are resolved by the master only
        if self._dn_poller is not None and not self._dn_poller.master_lost:
            return
        self._dn_never_kernel(host, ip)

    def _dn_never_kernel(self, host: str, ip: Any = None) -> None:
        """EHOSTUNREACH for an address of the DockNet subnet, whatever the
        state of the endpoint: for paths that only the kernel can take."""
        if ip is None:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return
        if any(ip in net for net in ProcessEndpoint.networks()):
            raise OSError(errno.EHOSTUNREACH,
                          f"{host} is a DockNet address and no DockNet master carries it "
                          "(it is never sent by the kernel's routes)")

    def close(self) -> None:
        if self._dn_reattach is not None:
            self._dn_reattach.cancel()
            self._dn_reattach = None
        if self._dn_poller is not None:
            for port in list(self._dn_servers):
                self._dn_listen(port, False)
            self._dn_servers.clear()
            self._dn_poller.close()
            self._dn_poller = None
            if self._dn_endpoint is not None and self._dn_endpoint.owner is self:
                self._dn_endpoint.owner = None
                self._dn_endpoint.stack.control = self._dn_endpoint.stack.default_control()
        super().close()

    # ---- name resolution ----

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> list[Any]:
        found = None
        if family in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
            found = await self._docknet_addresses(host.decode() if isinstance(host, bytes) else host, family)
        if found is not None:
            p = int(port) if port not in (None, "") else 0
            types = [type] if type else [socket.SOCK_STREAM, socket.SOCK_DGRAM]
            v4, v6 = found
            sockaddrs: list[tuple[int, tuple[Any, ...]]] = []
            # IPv4 first, as RFC 6724 orders it before a unique local
            # IPv6 address (and as glibc answers for such a name).
            if v4 is not None and family != socket.AF_INET6:
                sockaddrs.append((socket.AF_INET, (v4, p)))
            if v6 is not None and family != socket.AF_INET:
                sockaddrs.append((socket.AF_INET6, (v6, p, 0, 0)))
            return [
                (fam, t, proto or (socket.IPPROTO_TCP if t == socket.SOCK_STREAM else socket.IPPROTO_UDP),
                 "", sockaddr)
                for fam, sockaddr in sockaddrs
                for t in types
            ]
        return await super().getaddrinfo(host, port, family=family, type=type, proto=proto, flags=flags)

    # ---- TCP ----

    async def create_connection(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                                host: Any = None, port: Any = None, *, ssl: Any = None,
                                sock: Any = None, server_hostname: str | None = None,
                                ssl_handshake_timeout: float | None = None,
                                ssl_shutdown_timeout: float | None = None, **kw: Any) -> Any:
        addr = None if sock is not None else await self._docknet_address(host, kw.get("family") or 0)
        if addr is None and sock is None:
            addr = await self._dn_dns_address(host, port, kw.get("family") or 0)
        if addr is None:
            if sock is None:
                self._dn_no_route(host)
            return await super().create_connection(
                protocol_factory, host, port, ssl=ssl, sock=sock, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
                **{k: v for k, v in kw.items() if v is not None},
            )
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        ep = self._dn_endpoint
        poller = self._dn_poller
        assert ep is not None and poller is not None
        self._dn_no_route(addr)
        if self._dn_fast_channels and addr not in (ep.address, ep.address6):
            made = await self._dn_fc_connect(addr, int(port))
            if made is not None:
                from .transports.fastchannel import FastChannelTransport

                fc, local, peer, cid = made
                return await self._dn_finish_connect(
                    lambda protocol: FastChannelTransport(self, poller, fc, local, peer, protocol, channel_id=cid),
                    protocol_factory, ssl, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout,
                )
        conn = ep.stack.connect(addr, int(port))
        fut: asyncio.Future[None] = self.create_future()
        poller.register(conn, _Connecting(fut))
        poller.kick()
        try:
            await fut
        except BaseException:
            poller.unregister(conn)
            try:
                ep.stack.abort(conn)
                ep.stack.close_conn(conn)
            except OSError:
                pass
            raise
        return await self._dn_finish_connect(
            lambda protocol: DockNetTCPTransport(self, poller, ep.stack, conn, protocol),
            protocol_factory, ssl, host, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout,
        )

    async def _dn_finish_connect(self, make_transport: Callable[[asyncio.BaseProtocol], asyncio.Transport],
                                 protocol_factory: Callable[[], asyncio.BaseProtocol], ssl: Any, host: Any,
                                 server_hostname: str | None, ssl_handshake_timeout: float | None,
                                 ssl_shutdown_timeout: float | None) -> Any:
        """The protocol on a connected transport (lwIP or fast channel),
        with TLS in between when asked."""
        protocol = protocol_factory()
        if not ssl:
            transport = make_transport(protocol)
            # connection_made runs from the transport's first callback.
            await asyncio.sleep(0)
            return transport, protocol
        ctx = ssl if isinstance(ssl, ssl_mod.SSLContext) else ssl_mod.create_default_context()
        if server_hostname is None:
            server_hostname = host if isinstance(host, str) else ""
        tls, waiter = tls_protocol(self, protocol, ctx, server_side=False, server_hostname=server_hostname or None,
                                   handshake_timeout=ssl_handshake_timeout, shutdown_timeout=ssl_shutdown_timeout)
        # Taken now (the handshake hands this same one to connection_made):
        # a connection lost right after the handshake leaves none to take.
        app = app_transport(tls)
        try:
            transport = make_transport(tls)
        except BaseException:
            app.close()  # it never had a connection (no unclosed-transport warning)
            raise
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return app, protocol

    async def create_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                            host: Any = None, port: Any = None, *, sock: Any = None,
                            backlog: int = 100, ssl: Any = None,
                            ssl_handshake_timeout: float | None = None,
                            ssl_shutdown_timeout: float | None = None,
                            start_serving: bool = True, **kw: Any) -> Any:
        hosts = list(host) if isinstance(host, (list, tuple)) else [host]
        wildcard = sock is None and any(h in WILDCARDS for h in hosts)
        # Each host of a list is DockNet's or the kernel's (aiohttp's
        # run_app binds a list); the DockNet ones are listened on by the
        # slave stack, the rest by uvloop, under one server.
        dn_hosts: list[str] = []
        kernel_hosts = hosts
        if sock is None and not wildcard:
            found = [await self._docknet_address(h, kw.get("family") or 0) for h in hosts]
            dn_hosts = list(dict.fromkeys(a for a in found if a is not None))
            kernel_hosts = [h for h, a in zip(hosts, found) if a is None]
        ep = self._docknet() if (wildcard or dn_hosts) else None
        kernel = None
        if ep is None or wildcard or kernel_hosts:
            kernel = await super().create_server(
                protocol_factory, host if ep is None or wildcard else kernel_hosts, port, sock=sock,
                backlog=backlog, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout, start_serving=start_serving, **kw,
            )
            if ep is None:
                return kernel
        assert ep is not None
        port = int(port or 0)
        if port == 0 and kernel is not None:
            port = kernel.sockets[0].getsockname()[1]  # the same number on both
        server = DockNetServer(self, ep, protocol_factory, dn_hosts or None, port, backlog, ssl,
                               ssl_handshake_timeout, ssl_shutdown_timeout, kernel, wildcard=hosts)
        server._listen()
        if start_serving:
            await server.start_serving()
        return server

    async def start_tls(self, transport: Any, protocol: Any, sslcontext: ssl_mod.SSLContext, *,
                        server_side: bool = False, server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None) -> Any:
        if not isinstance(transport, DockNetStreamTransport):
            return await super().start_tls(
                transport, protocol, sslcontext, server_side=server_side, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout,
            )
        # As asyncio's BaseEventLoop.start_tls: the TLS protocol slides in
        # between the transport and the application's protocol.
        tls, waiter = tls_protocol(self, protocol, sslcontext, server_side=server_side, server_hostname=server_hostname,
                                   handshake_timeout=ssl_handshake_timeout, shutdown_timeout=ssl_shutdown_timeout,
                                   call_connection_made=False)
        transport.pause_reading()
        transport.set_protocol(tls)
        made = self.call_soon(tls.connection_made, transport)
        resumed = self.call_soon(transport.resume_reading)
        app = app_transport(tls)
        try:
            await waiter
        except BaseException:
            app.close()  # marks it closed (no unclosed-transport warning)
            transport.close()  # before connection_made ran, app.close() cannot
            made.cancel()
            resumed.cancel()
            raise
        return app

    # ---- UDP ----

    async def create_datagram_endpoint(self, protocol_factory: Callable[[], asyncio.BaseProtocol],
                                       local_addr: Any = None, remote_addr: Any = None, *,
                                       sock: Any = None, **kw: Any) -> Any:
        local = remote = None
        family = kw.get("family") or 0
        if sock is None:
            if local_addr is not None and not isinstance(local_addr, str):
                local = await self._docknet_address(local_addr[0], family)
            if remote_addr is not None:
                remote = await self._docknet_address(remote_addr[0], family)
        wildcard_local = local_addr is None or local_addr[0] in WILDCARDS
        if remote_addr is not None and sock is None:
            self._dn_no_route(remote if remote is not None else remote_addr[0])
        if local is None and (remote is None or not wildcard_local):
            if remote_addr is not None or not ProcessEndpoint.networks():
                return await super().create_datagram_endpoint(
                    protocol_factory, local_addr=local_addr, remote_addr=remote_addr, sock=sock,
                    **{k: v for k, v in kw.items() if v is not None},
                )
            # An unconnected kernel socket may be handed any address by
            # sendto: each is checked (_GuardedDatagramTransport), as a
            # connect is.
            guard = _GuardProtocol(self, protocol_factory())
            await super().create_datagram_endpoint(
                lambda: guard, local_addr=local_addr, sock=sock, **{k: v for k, v in kw.items() if v is not None},
            )
            assert guard.transport is not None
            return guard.transport, guard.app
        ep, poller = self._dn_endpoint, self._dn_poller
        assert ep is not None and poller is not None
        port = int(local_addr[1]) if local_addr is not None else 0
        # A wildcard bind takes the family of the peer it is connected to.
        conn = ep.stack.udp_bind(port, local if local is not None else "::" if remote and ":" in remote else None)
        protocol = protocol_factory()
        peer = (remote, int(remote_addr[1])) if remote is not None else None
        transport = DockNetDatagramTransport(self, poller, ep.stack, conn, protocol, peer)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        return transport, protocol

    # ---- sockets the application made ----

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
            self._dn_no_route(address[0])
        return await super().sock_connect(sock, address)

    # ---- fast channels (brokered by the master) ----

    async def _dn_fc_connect(self, addr: str, port: int) -> tuple[Any, tuple[str, int], tuple[str, int], int] | None:
        """Ask the master for a fast channel to addr:port; None means take
        the network path (not a local endpoint, no DockNetLoop listening
        there, fast channels off at the master). A pair that policy keeps
        apart is refused here, at once, as a firewall's reject would be."""
        ep = self._dn_endpoint
        assert ep is not None
        req = next(self._dn_fc_ids)
        fut: asyncio.Future[tuple[dict[str, Any], list[int]]] = self.create_future()
        self._dn_fc_pending[req] = fut
        try:
            ep.stack.send_control({"op": "fc_connect", "req": req, "address": addr, "port": port})
            msg, fds = await asyncio.wait_for(fut, FC_BROKER_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            return None
        finally:
            self._dn_fc_pending.pop(req, None)
        if not msg.get("ok") or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            if msg.get("ok"):
                # Made, and offered to the server, but this process could
                # not take its descriptors (at its limit): the master
                # resets the server's side, and this connection takes the
                # network path, which needs none.
                self._dn_fc_lost(msg.get("id"), "its descriptors did not arrive (descriptor limit?)")
            if msg.get("refuse"):
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"connection to {addr}:{port} refused: "
                                             f"{msg.get('reason', 'not allowed')}")
            return None
        try:
            fc = self._dn_wakes.channel(fds[0], 0, fds[1], fds[2], _wake_key(addr, msg))
        except OSError as exc:
            self._dn_fc_lost(msg.get("id"), str(exc))
            return None
        local = (ep.local_address(addr), int(msg["local_port"]))
        return fc, local, (addr, port), int(msg["id"])

    def _dn_fc_lost(self, channel_id: Any, why: str) -> None:
        """A channel the master made that this side cannot use: said once
        in a while, and given back so that the master resets the other
        side at once and frees it."""
        self._dn_fc_failures += 1
        if self._dn_fc_failures in (1, 10) or self._dn_fc_failures % 100 == 0:
            log.warning("fast channel not usable, given back", reason=why, times=self._dn_fc_failures)
        if isinstance(channel_id, int) and not isinstance(channel_id, bool):
            self._dn_fc_closed(channel_id)

    def _dn_fc_closed(self, channel_id: int) -> None:
        """A fast-channel transport let go of its channel: the master may
        free it once the other side has too."""
        ep = self._dn_endpoint
        if ep is None or not channel_id:
            return
        ep.stack.give_back(channel_id)

    def _dn_listen(self, port: int, on: bool) -> None:
        """Tell the master which ports our servers serve: only those get
        fast channels (others, e.g. a native listener, the network path),
        and, when the endpoint has several processes, the switch spreads
        new connections to a port over the processes listening on it, so
        it is told also with fast channels off."""
        ep = self._dn_endpoint
        if ep is None:
            return
        try:
            ep.stack.send_control({"event": "listen", "port": port, "on": on, "fast": self._dn_fast_channels})
        except OSError:
            pass

    def _dn_fc_rows(self) -> list[dict[str, Any]]:
        return [t._fc_row() for t in self._dn_poller.channels()] if self._dn_poller is not None else []

    # ---- what the master sends (the stack's dispatcher calls these) ----

    def _dn_endpoint_gone(self, msg: dict[str, Any], fds: list[int]) -> None:
        """An endpoint detached: every connection to it ends, over the
        stack and over fast channels."""
        addresses = {msg["address"]}
        if isinstance(msg.get("address6"), str):
            addresses.add(msg["address6"])
        for address in addresses:
            if self._dn_endpoint is not None and (":" not in address or self._dn_endpoint.address6):
                self._dn_endpoint.stack.reset_peer(address)
            self._dn_wakes.forget(address)
        if self._dn_poller is not None:
            for t in self._dn_poller.channels():
                if t.peer_address in addresses:
                    t._peer_gone()

    def _dn_fc_result(self, msg: dict[str, Any], fds: list[int]) -> None:
        fut = self._dn_fc_pending.get(msg["req"])
        if fut is not None and not fut.done():
            fut.set_result((msg, fds))
            return
        for fd in fds:
            os.close(fd)
        if msg["ok"] and "id" in msg:  # too late: the connect took the network path
            self._dn_fc_lost(msg["id"], "the master's answer came too late")

    def _dn_fc_result_refused(self, exc: InvalidMessage, msg: dict[str, Any]) -> bool:
        """An answer to fc_connect decode refused (its descriptors already
        closed). Fewer descriptors than a channel's, all else right, is the
        kernel dropping them at our descriptor limit: the connect is told
        (it gives the channel back and says so). Anything else fails the
        connect over to the network path, and a channel it names is given
        back."""
        if exc.descriptors_missing:
            self._dn_fc_result(msg, [])
            return True
        fut = self._dn_fc_pending.get(exc.req) if exc.req is not None else None
        if fut is not None and not fut.done():
            fut.set_result(({"ok": False}, []))
        channel_id = field_value(exc.kind, msg, "id")
        if channel_id is not None and msg.get("ok") is True:
            self._dn_fc_closed(channel_id)
        return False

    def _dn_fc_offer_refused(self, exc: InvalidMessage, msg: dict[str, Any]) -> bool:
        """An offer decode refused: a channel it names is given back (the
        master resets the connector's side); with too few descriptors, all
        else right, that is our descriptor limit, and said so."""
        channel_id = field_value(exc.kind, msg, "id") or 0
        if exc.descriptors_missing:
            self._dn_fc_lost(channel_id, "an offer came without its descriptors (descriptor limit?)")
            return True
        self._dn_fc_closed(channel_id)
        return False

    def _dn_set_limits(self, msg: dict[str, Any]) -> None:
        def bucket(bits: Any, pkts: Any, burst_bits: Any) -> TokenBucket | None:
            b = TokenBucket(int(bits or 0), int(pkts or 0), int(burst_bits or 0) // 8)
            return b if b.limited else None

        if self._dn_endpoint is not None:
            self._dn_endpoint.limits = msg  # for the next loop to own the endpoint
        self._dn_egress = bucket(msg.get("egress_bits"), msg.get("egress_pkts"), msg.get("egress_burst_bits"))
        self._dn_ingress = bucket(msg.get("ingress_bits"), msg.get("ingress_pkts"), msg.get("ingress_burst_bits"))
        if self._dn_endpoint is not None:
            # Peer links spend the same egress tokens as fast channels.
            self._dn_endpoint.stack.set_peer_egress(self._dn_egress)
        if self._dn_poller is not None:
            for t in self._dn_poller.channels():
                t._set_limits(self._dn_egress, self._dn_ingress)

    def _dn_fc_offer(self, msg: dict[str, Any], fds: list[int]) -> None:
        """A connection to one of our ports over a fast channel. If no
        server of ours serves the port any more (it closed as the offer
        came), the channel is reset: the connector sees a reset, as a TCP
        connection to a listener that closed its backlog would."""
        ep = self._dn_endpoint
        server = self._dn_servers.get(msg["port"])
        cid = msg["id"]
        if ep is None:
            for fd in fds:
                os.close(fd)
            return
        try:
            fc = self._dn_wakes.channel(fds[0], 1, fds[1], fds[2], _wake_key(str(msg["peer"][0]), msg))
        except OSError as exc:
            self._dn_fc_lost(cid, str(exc))
            return
        if server is None or not server.is_serving():
            fc.reset()
            fc.close()
            self._dn_fc_closed(cid)
            return
        peer = (str(msg["peer"][0]), int(msg["peer"][1]))
        server._accept_channel(fc, (ep.local_address(peer[0]), int(msg["port"])), peer, cid)
