"""This process's DockNet endpoint, shared by the event loops run in it.

lwIP allows one stack per process, so the endpoint is attached once (on the
first network call that could use DockNet) and lent to one loop at a time.
When DockNet cannot be used (no master reachable, the master refused) the
reason and its fix are logged once, as a warning, and loops stay plain
uvloop; with ``DOCKNET_REQUIRE=1`` (or ``aiodocknet.run(..., require=True)``)
that is an error instead (:class:`DockNetUnavailable`). ``DOCKNET_DISABLE=1``
asks for plain uvloop.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import ipaddress
import os
import socket
import threading
import time
from typing import Any

from .control import DEFAULT_SUBNET, DEFAULT_SUBNET6, default_master_path, recv_message, request_reply, send_message
from .log import get_logger
from .native.stack import SlaveStack

__all__ = ["DockNetUnavailable", "ProcessEndpoint", "required"]

log = get_logger("aiodocknet.endpoint")

# A name found stays good for a second (services move when they restart); a
# name not found is asked again only after five, so names that are not
# DockNet's (ordinary DNS names) cost a master round trip rarely.
RESOLVE_TTL = 1.0
RESOLVE_MISS_TTL = 5.0
# A master that does not answer a resolve in this long is taken as not
# knowing the name (this time: the answer is not cached).
RESOLVE_TIMEOUT = 2.0


class _NotCached:
    def __repr__(self) -> str:
        return "NOT_CACHED"


NOT_CACHED: Any = _NotCached()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# What the master says a name is: its IPv4 address and its IPv6 one (None
# for a master or endpoint without IPv6); both None: not a DockNet name.
Addresses = tuple[str | None, str | None]

_configured: dict[str, tuple[str | None, Network | None]] = {}


class DockNetUnavailable(OSError):
    """DockNet was required (DOCKNET_REQUIRE=1, ``run(require=True)``) and
    the endpoint could not attach; the message says why and what to do."""


def required() -> bool:
    return os.environ.get("DOCKNET_REQUIRE") == "1" or ProcessEndpoint.require


def _fix(exc: OSError, master: str) -> str:
    """What the operator can do about an attach that failed with exc."""
    chosen = "DOCKNET_MASTER" in os.environ or "DOCKNET_RUN_DIR" in os.environ
    if exc.errno == errno.ENOENT:
        if chosen:
            return f"no master socket at {master}: check DOCKNET_MASTER/DOCKNET_RUN_DIR"
        return (f"start `docknet master` on this host; in a container, mount the master's run directory "
                f"({os.path.dirname(master)}) at the same path")
    if exc.errno == errno.ECONNREFUSED:
        return f"{master} is left from a master that stopped: start `docknet master` again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"this process may not use {master}: run it as the master's user, or as root"
    if exc.errno == errno.ETIMEDOUT:
        return "the master is overloaded or stuck: see its log"
    return "see the master's log and `docknet ps`"


def pick(addresses: Addresses, family: int = 0) -> str | None:
    """The address of a name to dial for a family (0: IPv4 if it has one,
    as RFC 6724 orders IPv4 before a unique local IPv6 address)."""
    v4, v6 = addresses
    if family == socket.AF_INET:
        return v4
    if family == socket.AF_INET6:
        return v6
    return v4 or v6


def _configured_net(variable: str, default: Any, kind: type[Network]) -> Network | None:
    """A DockNet network as configured for this process (the variable, else
    the master's default), parsed once per value: datagram sends ask for
    every datagram. "none" (IPv6 only): this process takes no IPv6 prefix
    as DockNet's."""
    value = os.environ.get(variable)
    hit = _configured.get(variable)
    if hit is not None and hit[0] == value:
        return hit[1]
    net: Network | None = kind(default)
    if value == "none" and kind is ipaddress.IPv6Network:
        net = None
    elif value:
        try:
            net = kind(value, strict=False)
        except ValueError:
            log.warning("not a network of its family, using the default", variable=variable, value=value,
                        default=str(default))
    _configured[variable] = (value, net)
    return net


def configured_network() -> ipaddress.IPv4Network:
    """The DockNet subnet as configured for this process (DOCKNET_SUBNET,
    else the master's default), for when no master says which it is."""
    net = _configured_net("DOCKNET_SUBNET", DEFAULT_SUBNET, ipaddress.IPv4Network)
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def configured_network6() -> ipaddress.IPv6Network | None:
    """The DockNet IPv6 prefix as configured for this process
    (DOCKNET_SUBNET6, else the master's default; "none": none)."""
    net = _configured_net("DOCKNET_SUBNET6", DEFAULT_SUBNET6, ipaddress.IPv6Network)
    assert net is None or isinstance(net, ipaddress.IPv6Network)
    return net


class ProcessEndpoint:
    _lock = threading.Lock()
    _instance: ProcessEndpoint | None = None
    _disabled: str | None = None
    # Set by aiodocknet.run(require=True), as DOCKNET_REQUIRE=1 does.
    require = False
    # The networks the last master this process attached to gave it: still
    # DockNet's after that master is gone.
    _last_networks: list[Network] = []

    def __init__(self, stack: SlaveStack, master: str) -> None:
        self.stack = stack
        self.master = master
        self.owner: object | None = None
        # The last limits the master pushed (for fast channels), kept here
        # because loops come and go while the endpoint stays.
        self.limits: dict[str, Any] | None = None
        self._names: dict[str, tuple[float, Addresses]] = {}
        # Names being asked for: callers of one name share one question.
        self._asking: dict[str, asyncio.Task[Addresses]] = {}
        self._take_addresses()

    def _take_addresses(self) -> None:
        """The addresses and networks the master gave the stack."""
        self.apply_port_range()
        info = self.stack.info
        self.address = self.stack.address
        self.network = ipaddress.IPv4Network(f"{self.address}/{info.prefix}", strict=False)
        # None: the master gives this endpoint no IPv6 (an older master, or
        # subnet6 = none); IPv6 addresses then take the kernel's path.
        self.address6: str | None = getattr(info, "address6", None)
        prefix6 = getattr(info, "prefix6", None)
        self.network6 = (ipaddress.IPv6Network(f"{self.address6}/{prefix6}", strict=False)
                         if self.address6 and prefix6 else None)
        nets: list[Network] = [self.network]
        if self.network6 is not None:
            nets.append(self.network6)
        ProcessEndpoint._last_networks = nets

    def local_address(self, peer: str) -> str:
        """This endpoint's address in the family of a peer's."""
        return self.address6 if ":" in peer and self.address6 else self.address

    @classmethod
    def get(cls) -> ProcessEndpoint | None:
        """The endpoint, attaching on first use; None when DockNet is off."""
        with cls._lock:
            if cls._instance is not None or cls._disabled is not None:
                return cls._instance
            if os.environ.get("DOCKNET_DISABLE") == "1":
                if required():
                    raise DockNetUnavailable(errno.EINVAL, "DOCKNET_DISABLE=1 and DockNet required: choose one")
                cls._disable("DOCKNET_DISABLE=1", asked=True)
                return None
            master = default_master_path()
            # With no name given, the master decides: the endpoint a
            # container runtime registered for this namespace, else an
            # ad-hoc one under this guess.
            given = os.environ.get("DOCKNET_ENDPOINT")
            name = given or f"{socket.gethostname()}-{os.getpid()}"
            try:
                stack = SlaveStack.attach(name, master, named=bool(given))
            except OSError as exc:
                reason, fix = exc.strerror or str(exc), _fix(exc, master)
                if required():
                    raise DockNetUnavailable(exc.errno or errno.EHOSTUNREACH,
                                             f"cannot attach to DockNet: {reason} ({fix})") from None
                cls._disable(reason, fix)
                return None
            cls._instance = cls(stack, master)
            atexit.register(cls._instance.close)
            return cls._instance

    @classmethod
    def networks(cls) -> list[Network]:
        """The networks whose addresses are DockNet's: the attached
        endpoint's (its IPv4 subnet and IPv6 prefix); with no endpoint, the
        last ones a master gave and the configured ones. Empty when DockNet
        is switched off (DOCKNET_DISABLE=1): the operator asked for the
        kernel's network only."""
        if os.environ.get("DOCKNET_DISABLE") == "1":
            return []
        ep = cls._instance
        if ep is not None:
            return [ep.network] if ep.network6 is None else [ep.network, ep.network6]
        known: list[Network] = [configured_network()]
        net6 = configured_network6()
        if net6 is not None:
            known.append(net6)
        known.extend(n for n in cls._last_networks if n not in known)
        return known

    @classmethod
    def _disable(cls, reason: str, fix: str | None = None, asked: bool = False) -> None:
        cls._disabled = reason
        if asked:
            log.info("docknet off, the loop is plain uvloop", reason=reason)
        else:
            # A service its operator meant for DockNet now runs on the
            # kernel's network, and its callers may not find it by name.
            log.warning("docknet off, the loop is plain uvloop", reason=reason, fix=fix)

    @classmethod
    def reset(cls) -> None:
        """Forget a disabled state (tests start masters after loops)."""
        with cls._lock:
            cls._disabled = None

    def close(self) -> None:
        with ProcessEndpoint._lock:
            if ProcessEndpoint._instance is self:
                ProcessEndpoint._instance = None
                self.stack.close()

    def apply_port_range(self) -> None:
        """The ephemeral ports this process's connections and datagrams
        must come from. An endpoint may have several processes, one link
        each: the switch carries what comes back for a port to the link
        whose range holds it, so this is set before any connect. No range
        in the attach reply: the endpoint's only process, any port."""
        ports = getattr(self.stack.info, "ports", None)
        if ports:
            self.stack.set_port_range(*ports)

    def relinked(self) -> None:
        """The stack moved to a master that came back: its address may be
        new (in either family, or it may have gained or lost IPv6), names
        found before may have moved, and it may be one process of several
        now, with another port range."""
        self._take_addresses()
        self._names.clear()

    def is_docknet_ip(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if ip.version == 4:
            return ip in self.network
        return self.network6 is not None and ip in self.network6

    def cached(self, name: str) -> Addresses:
        """What the master last said about name (its addresses; both None
        for not one of its services) while that is fresh; else NOT_CACHED."""
        hit = self._names.get(name)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return NOT_CACHED  # type: ignore[no-any-return]

    async def resolve(self, name: str) -> Addresses:
        """The addresses of a service registered with the master (both None
        if it is not one). Asked on the running loop, never blocking it: a
        master slow to answer delays only the callers of this name."""
        hit = self.cached(name)
        if hit is not NOT_CACHED:
            return hit
        loop = asyncio.get_running_loop()
        task = self._asking.get(name)
        if task is None or task.get_loop() is not loop:
            task = self._asking[name] = loop.create_task(self._ask(name))
            task.add_done_callback(self._asked)
        # Shielded: a caller that gives up does not cancel the others' question.
        return await asyncio.shield(task)

    def _asked(self, task: asyncio.Task[Addresses]) -> None:
        for name, t in list(self._asking.items()):
            if t is task:
                del self._asking[name]

    async def _ask(self, name: str) -> Addresses:
        loop = asyncio.get_running_loop()
        asked = time.monotonic()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                reply = await self._request(loop, {"op": "resolve", "name": name})
        except (OSError, ValueError, TimeoutError):
            return None, None  # not cached: the next caller asks again
        addr = reply.get("address") if reply.get("ok") else None
        addr6 = reply.get("address6") if reply.get("ok") else None
        # The reply was validated by the protocol; an IPv6 address is used
        # only where this endpoint has IPv6 to reach it with.
        found = (addr if isinstance(addr, str) else None,
                 addr6 if isinstance(addr6, str) and self.network6 is not None else None)
        self._names[name] = (asked + (RESOLVE_TTL if found != (None, None) else RESOLVE_MISS_TTL), found)
        return found

    async def _request(self, loop: asyncio.AbstractEventLoop, msg: dict[str, Any]) -> dict[str, Any]:
        """One request to the master on a fresh non-blocking connection."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)
            await loop.sock_connect(s, self.master)
            # One small message on a fresh connection: the socket's buffer
            # is empty, so the send does not have to wait.
            send_message(s, msg)
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(s.fileno(), lambda: readable.done() or readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(s.fileno())
            return request_reply(*recv_message(s), self.master)
