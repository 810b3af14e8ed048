"""The master's control socket protocol, shared by master and slaves.

A unix SOCK_SEQPACKET socket: one JSON object per message, file
descriptors (doorbell page, eventfds) passed alongside with SCM_RIGHTS. A
slave keeps its connection open while it is attached; the master treats the
connection closing as the slave's detach or death.

Every message is an ``op`` (a request, or a command to a slave) or an
``event`` (a notice nobody answers); ``MESSAGES`` lists each kind, which
way it goes, its fields, the descriptors it carries and what answers it.
It is the one definition: ``send`` and ``send_reply`` refuse to emit what
it rejects, ``decode`` checks what arrives, and each side's ``Dispatcher``
has exactly one handler per kind it receives. Replies carry ``"ok": true``
and the result, or ``"ok": false`` with ``"error"`` (a sentence) and
``"code"`` (an errno name).
"""

from __future__ import annotations

import array
import errno
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ATTACH_FDS",
    "CHANNEL_FDS",
    "PEER_FDS",
    "DEFAULT_RUN_DIR",
    "DEFAULT_SUBNET",
    "DEFAULT_SUBNET6",
    "ERROR_REPLY",
    "LIMIT_FIELDS",
    "MAX_MESSAGE",
    "MESSAGES",
    "ControlError",
    "Dispatcher",
    "Field",
    "InvalidMessage",
    "MessageKind",
    "UndecodableMessage",
    "decode",
    "decode_reply",
    "default_master_path",
    "encode",
    "field_value",
    "kinds",
    "parse",
    "recv_message",
    "refusal",
    "request",
    "request_reply",
    "send",
    "send_message",
    "send_reply",
]

DEFAULT_RUN_DIR = "/run/docknet"
# The master's subnet unless configured otherwise; a process that cannot
# reach a master still knows these addresses are DockNet's (DOCKNET_SUBNET
# names another).
DEFAULT_SUBNET = "10.77.0.0/16"
# Its IPv6 prefix: an endpoint's IPv6 address is its IPv4 host part in the
# prefix's low 32 bits (master/addresses.py).
DEFAULT_SUBNET6 = ipaddress.IPv6Network("fd77:d0c::/64")
# The longest IPv6 literal (an IPv4-embedded form written out in full).
IPV6_MAX = 45
MAX_MESSAGE = 64 * 1024
MAX_FDS = 8


class ControlError(OSError):
    """The master refused a request; ``errno`` says why in brief."""


class UndecodableMessage(ValueError):
    """Bytes that are not one JSON object: the sender is not speaking the
    protocol, and its connection is dropped."""


class InvalidMessage(ValueError):
    """A JSON object that is not a valid message of a kind the receiver
    takes. ``expects_reply`` says whether the sender waits for an answer
    (it sent an ``op``, or neither key); ``kind`` and ``req`` say what to
    answer it with, when they could be read. A sender that builds such a
    message gets it too (``encode``), and sends nothing."""

    def __init__(self, reason: str, *, kind: MessageKind | None = None, expects_reply: bool = True,
                 req: int | None = None, descriptors: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.expects_reply = expects_reply
        self.req = req
        # Set when the fields are right and only the descriptors are not:
        # how many came. Fewer than the kind carries is what the kernel
        # delivers to a receiver at its descriptor limit.
        self.descriptors = descriptors
        self.descriptors_missing = False


Direction = Literal["to_master", "to_slave"]

# JSON numbers are unbounded; these bounds are those of the C types the
# values end up in (request ids and channel ids are int64 at most).
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Field:
    """One field of a message: its JSON type and the values it may take.
    ``int`` never admits a bool (JSON true is not a number)."""

    name: str
    type: type
    required: bool = True
    lo: int | None = None
    hi: int | None = None
    max_len: int | None = None
    # A list of exactly these, in this order (an address and a port).
    items: tuple[Field, ...] | None = None
    # An address literal of that family ("ipv4", "ipv6", or "ip": either):
    # never a name, a scope (zone id) or a prefix.
    literal: Literal["ipv4", "ipv6", "ip"] | None = None

    def problem(self, value: Any) -> str | None:
        """Why value cannot be this field, or None if it can."""
        if self.type is int:
            if not isinstance(value, int) or isinstance(value, bool):
                return f"{self.name!r} must be an integer"
            if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
                return f"{self.name!r} must be between {self.lo} and {self.hi}"
            return None
        if not isinstance(value, self.type):
            return f"{self.name!r} must be a {_TYPE_NAMES.get(self.type, self.type.__name__)}"
        if self.max_len is not None and len(value) > self.max_len:
            return f"{self.name!r} is longer than {self.max_len}"
        if self.items is not None:
            if len(value) != len(self.items):
                return f"{self.name!r} must be a list of {len(self.items)}"
            for item, v in zip(self.items, value):
                why = item.problem(v)
                if why is not None:
                    return f"{self.name!r}: {why}"
        if isinstance(value, str) and "\x00" in value:
            return f"{self.name!r} contains a NUL character"
        if self.literal is not None:
            return _literal_problem(self.name, self.literal, value)
        return None


def _literal_problem(name: str, family: str, value: str) -> str | None:
    # ipaddress takes "fe80::1%eth0" as an IPv6Address: a scope means an
    # interface of the sender's, which no DockNet address has.
    want = {"ipv4": "an IPv4 address", "ipv6": "an IPv6 address"}.get(family, "an IPv4 or IPv6 address")
    if "%" in value:
        return f"{name!r} must be {want} without a scope (zone id)"
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return f"{name!r} must be {want}"
    if family in ("ipv4", "ipv6") and family != f"ipv{ip.version}":
        return f"{name!r} must be {want}, not IPv{ip.version}"
    return None


_TYPE_NAMES = {str: "string", bool: "boolean (true or false)", list: "list", dict: "object"}


@dataclass(frozen=True)
class MessageKind:
    """A kind of message: ``{"op": name, ...}`` or ``{"event": name, ...}``,
    the way it travels, its fields and the descriptors it carries.

    ``fds`` descriptors come with it; when ``fds_if`` names a boolean
    field, only when that field is true (a failed ``fc_result`` carries
    none), and then the fields ``required_if`` names must be there too. An op is answered by a reply (``{"ok": true, ...reply}``,
    ``reply_fds`` descriptors with it; ``reply`` None: not by a reply), or
    by the event ``reply_event`` names, carrying the op's ``req``."""

    name: str
    key: Literal["op", "event"]
    direction: Direction
    fields: tuple[Field, ...] = ()
    fds: int = 0
    fds_if: str | None = None
    # Fields that are required when the fds_if field is true.
    required_if: tuple[str, ...] = ()
    reply: tuple[Field, ...] | None = None
    reply_fds: int = 0
    reply_event: str | None = None

    def descriptors(self, msg: dict[str, Any]) -> int:
        """How many descriptors msg (a valid message of this kind) carries."""
        if self.fds_if is not None and msg.get(self.fds_if) is not True:
            return 0
        return self.fds


def _port(name: str = "port") -> Field:
    return Field(name, int, lo=1, hi=65535)


def _req() -> Field:
    return Field("req", int, lo=0, hi=INT64_MAX)


def _channel_id() -> Field:
    return Field("id", int, lo=1, hi=INT64_MAX)


def _ipv4(name: str) -> Field:
    return Field(name, str, max_len=len("255.255.255.255"))


def _ipv6(name: str, required: bool = True) -> Field:
    return Field(name, str, required=required, max_len=IPV6_MAX, literal="ipv6")


def _ip(name: str) -> Field:
    """An address of either family (as a client dialled it)."""
    return Field(name, str, max_len=IPV6_MAX, literal="ip")


# Name-like strings: a DNS name is at most 253 characters; endpoint names
# are held to their pattern by whoever uses them.
NAME_MAX = 253
# The descriptors an attach reply carries: the link's memory, the
# endpoint's eventfd and the master's (the switch's).
ATTACH_FDS = 3
# A fast channel's: its memory, then the eventfds of the side it goes to
# and of the other side.
CHANNEL_FDS = 3
# A peer link's: its memory, then the peer's eventfd.
PEER_FDS = 2

LIMIT_FIELDS = ("egress_bits", "ingress_bits", "egress_pkts", "ingress_pkts", "egress_burst_bits",
                "ingress_burst_bits")

MESSAGES: tuple[MessageKind, ...] = (
    # From slaves and tools to the master.
    # named false: the endpoint is a guess (the process was given no
    # name); a namespace a container runtime registered attaches as the
    # endpoint registered for it, whatever the guess.
    MessageKind("attach", "op", "to_master", (
        Field("endpoint", str, max_len=NAME_MAX),
        Field("named", bool, required=False),
        Field("secret", str, required=False, max_len=256),
        Field("pid", int, required=False, lo=1, hi=2**31 - 1),
    # An endpoint may have several processes, each with its own link in
    # the endpoint's switch slot: link is this one's (0: the first), ports
    # the ephemeral ports its connections must use (the switch carries
    # what comes back for them to this link); no ports: any.
    ), reply=(
        Field("endpoint", str, max_len=NAME_MAX), _ipv4("address"), Field("prefix", int, lo=0, hi=32), _ipv4("gateway"),
        Field("mac", str, max_len=len("ff:ff:ff:ff:ff:ff")), Field("mtu", int, lo=68, hi=65535),
        Field("link", int, required=False, lo=0, hi=65535),
        Field("ports", list, required=False, items=(_port("lo"), _port("hi"))),
        # The endpoint's IPv6 address, its prefix and gateway: absent, the
        # endpoint is IPv4 only (subnet6 none, or an older master).
        _ipv6("address6", required=False), Field("prefix6", int, required=False, lo=64, hi=96),
        _ipv6("gateway6", required=False),
    ), reply_fds=ATTACH_FDS),
    MessageKind("resolve", "op", "to_master", (Field("name", str, max_len=NAME_MAX),),
                reply=(_ipv4("address"), _ipv6("address6", required=False))),
    MessageKind("status", "op", "to_master", reply=(
        Field("pid", int, lo=1, hi=2**31 - 1), Field("subnet", str), Field("endpoints", list),
        Field("subnet6", str, required=False, max_len=IPV6_MAX + 4),
    )),
    MessageKind("ping", "op", "to_master", reply=(Field("pong", bool),)),
    # address: the destination as the client dialled it, either family.
    MessageKind("fc_connect", "op", "to_master", (_req(), _ip("address"), _port()),
                reply_event="fc_result"),
    MessageKind("fc_closed", "event", "to_master", (_channel_id(),)),
    # fast false: the process takes no fast channels (the switch still
    # spreads connections to the port over the processes listening).
    MessageKind("listen", "event", "to_master", (_port(), Field("on", bool), Field("fast", bool, required=False))),
    MessageKind("connections", "event", "to_master", (
        _req(), Field("total", int, lo=0, hi=INT64_MAX), Field("conns", list),
        Field("error", str, required=False),
    )),
    # The slave is sending to this endpoint through the switch: a peer
    # link, if the master offers one (peer_up to both), else nothing.
    MessageKind("peer_want", "event", "to_master", (Field("address", str, max_len=len("255.255.255.255"),
                                                           literal="ipv4"),)),
    # From the master to a slave. peer_member: which process of the peer
    # endpoint holds the other side (an endpoint may have several, each
    # with its own eventfd): the key a process keeps that eventfd under.
    MessageKind("fc_offer", "op", "to_slave", (
        _channel_id(), _port(), Field("peer", list, items=(_ip("address"), _port())),
        Field("peer_member", int, required=False, lo=1, hi=INT64_MAX),
    ), fds=CHANNEL_FDS),
    MessageKind("connections", "op", "to_slave", (_req(),), reply_event="connections"),
    MessageKind("fc_result", "event", "to_slave", (
        _req(), Field("ok", bool), Field("id", int, required=False, lo=1, hi=INT64_MAX),
        Field("local_port", int, required=False, lo=1, hi=65535),
        Field("reason", str, required=False), Field("refuse", bool, required=False),
        Field("peer_member", int, required=False, lo=1, hi=INT64_MAX),
    ), fds=CHANNEL_FDS, fds_if="ok", required_if=("id", "local_port")),
    # Bursts came later: a master that sends none means the default.
    MessageKind("limits", "event", "to_slave", tuple(Field(k, int, required="burst" not in k, lo=0, hi=UINT64_MAX)
                                                     for k in LIMIT_FIELDS)),
    MessageKind("endpoint_gone", "event", "to_slave", (Field("name", str, max_len=NAME_MAX), _ipv4("address"),
                                                       _ipv6("address6", required=False))),
    # A peer link (dn_link.h) to the endpoint at address, whose hardware
    # address is mac; role: which side of the link's memory is this
    # slave's. peer_down: it is to be dropped (the master's books say so
    # already: frames go through the switch again).
    MessageKind("peer_up", "event", "to_slave", (
        Field("id", int, lo=1, hi=INT64_MAX), Field("address", str, max_len=len("255.255.255.255"), literal="ipv4"),
        Field("mac", str, max_len=len("ff:ff:ff:ff:ff:ff")), Field("role", int, lo=0, hi=1),
    ), fds=PEER_FDS),
    MessageKind("peer_down", "event", "to_slave", (Field("id", int, lo=1, hi=INT64_MAX),)),
)

# What every refusal says: an errno name and a sentence.
ERROR_REPLY: tuple[Field, ...] = (Field("code", str, max_len=32), Field("error", str))

_KINDS: dict[tuple[Direction, str, str], MessageKind] = {(k.direction, k.key, k.name): k for k in MESSAGES}


def kinds(direction: Direction) -> dict[str, MessageKind]:
    """The kinds that travel in direction, by name (unique per direction:
    what a dispatcher's handlers are keyed by)."""
    out = {k.name: k for k in MESSAGES if k.direction == direction}
    assert len(out) == sum(k.direction == direction for k in MESSAGES), "a name twice in one direction"
    return out


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python would accept them.
    raise UndecodableMessage(f"{name} is not JSON")


def parse(data: bytes) -> dict[str, Any]:
    """The JSON object in data; UndecodableMessage for anything else
    (invalid UTF-8 or JSON, another JSON type, nesting deeper than the
    interpreter's recursion limit, integers too long to convert)."""
    try:
        msg = json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise UndecodableMessage("control message nested too deeply") from None
    except UndecodableMessage:
        raise
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UndecodableMessage(f"control message is not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise UndecodableMessage("control message is not a JSON object")
    return msg


def _check_fields(what: str, fields: tuple[Field, ...], msg: dict[str, Any]) -> str | None:
    for f in fields:
        if f.name not in msg:
            if f.required:
                return f"{what}: {f.name!r} is required"
            continue
        why = f.problem(msg[f.name])
        if why is not None:
            return f"{what}: {why}"
    return None


def _fds_problem(what: str, want: int, got: int) -> str | None:
    if got == want:
        return None
    return f"{what} carries {want} descriptor{'s' if want != 1 else ''}, not {got}"


def decode(msg: dict[str, Any], direction: Direction, nfds: int = 0) -> MessageKind:
    """The kind of a parsed message travelling in direction with nfds
    descriptors, once every field it needs is there with a value it may
    take and the descriptors are those it carries; InvalidMessage saying
    what is wrong otherwise. Fields no kind names are ignored."""
    if "op" in msg:
        key: Literal["op", "event"] = "op"
    elif "event" in msg:
        key = "event"
    else:
        raise InvalidMessage("a message needs an 'op' or an 'event'")
    name = msg[key]
    expects_reply = key == "op"
    kind = _KINDS.get((direction, key, name)) if isinstance(name, str) else None
    if kind is None:
        shown = name if isinstance(name, str) and len(name) <= 64 else "..."
        raise InvalidMessage(f"unknown {'operation' if key == 'op' else 'event'} {shown!r}",
                             expects_reply=expects_reply)
    req = msg.get("req")
    req = req if isinstance(req, int) and not isinstance(req, bool) and 0 <= req <= INT64_MAX else None
    why = _check_fields(kind.name, kind.fields, msg)
    if why is None and kind.fds_if is not None and msg.get(kind.fds_if) is True:
        absent = [name for name in kind.required_if if name not in msg]
        if absent:
            why = f"{kind.name}: {absent[0]!r} is required when {kind.fds_if!r} is true"
    if why is not None:
        raise InvalidMessage(why, kind=kind, expects_reply=expects_reply, req=req)
    why = _fds_problem(kind.name, kind.descriptors(msg), nfds)
    if why is not None:
        exc = InvalidMessage(why, kind=kind, expects_reply=expects_reply, req=req, descriptors=nfds)
        exc.descriptors_missing = nfds < kind.descriptors(msg)
        raise exc
    return kind


def field_value(kind: MessageKind | None, msg: dict[str, Any], name: str) -> Any:
    """msg's field name if it is there with a value kind's field takes,
    else None: what a refusal may still use of a message decode refused."""
    f = next((f for f in kind.fields if f.name == name), None) if kind is not None else None
    if f is None or name not in msg or f.problem(msg[name]) is not None:
        return None
    return msg[name]


def decode_reply(kind: MessageKind | None, reply: dict[str, Any], nfds: int = 0) -> bool:
    """Whether reply (to an op of kind; None: to a message of no kind)
    says yes; InvalidMessage if it is neither a reply of that kind's
    (fields, descriptors) nor a refusal."""
    what = kind.name if kind is not None else "message"
    ok = reply.get("ok")
    if ok is True:
        if kind is None or kind.reply is None:
            raise InvalidMessage(f"{what} is not answered by a reply", kind=kind, expects_reply=False)
        why = _check_fields(f"{what} reply", kind.reply, reply) or \
            _fds_problem(f"{what} reply", kind.reply_fds, nfds)
    elif ok is False:
        why = _check_fields(f"{what} refusal", ERROR_REPLY, reply) or _fds_problem(f"{what} refusal", 0, nfds)
    else:
        why = f"{what} reply: 'ok' must be true or false"
    if why is not None:
        raise InvalidMessage(why, kind=kind, expects_reply=False)
    return ok is True


def default_master_path() -> str:
    """DOCKNET_MASTER, else master.sock in DOCKNET_RUN_DIR (as the CLI
    reads them), else in /run/docknet."""
    run_dir = os.environ.get("DOCKNET_RUN_DIR") or DEFAULT_RUN_DIR
    return os.environ.get("DOCKNET_MASTER") or os.path.join(run_dir, "master.sock")


def _frame(msg: dict[str, Any]) -> bytes:
    data = json.dumps(msg, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError("control message too large")
    return data


def _sendmsg(sock: socket.socket, data: bytes, fds: list[int] | None) -> None:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], anc)


def send_message(sock: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    """msg as it is, unchecked: for tools and tests that must be able to
    send what the table rejects. The library sends with ``send`` and
    ``send_reply``."""
    _sendmsg(sock, _frame(msg), fds)


def encode(msg: dict[str, Any], direction: Direction, fds: list[int] | None = None) -> bytes:
    """msg's bytes, once it is a valid message travelling in direction
    with fds: what the receiver's decode would refuse is not sent
    (InvalidMessage, a ValueError, says why)."""
    decode(msg, direction, len(fds or ()))
    return _frame(msg)


def send(sock: socket.socket, msg: dict[str, Any], direction: Direction, fds: list[int] | None = None) -> None:
    """One message, checked against the table (``encode``) before it goes."""
    _sendmsg(sock, encode(msg, direction, fds), fds)


def refusal(code: int, why: str) -> dict[str, Any]:
    """The body of every refusal: ``ok`` false, an errno name, a sentence."""
    return {"ok": False, "code": errno.errorcode.get(code, "EIO"), "error": why}


def send_reply(sock: socket.socket, kind: MessageKind | None, reply: dict[str, Any],
               fds: list[int] | None = None) -> None:
    """The reply to an op of kind, checked against its reply (or, with
    ``ok`` false, a refusal's) fields and descriptors before it goes."""
    decode_reply(kind, reply, len(fds or ()))
    _sendmsg(sock, _frame(reply), fds)


Handler = Callable[..., None]
# Told of a message decode refused (after its descriptors are closed): the
# one answer, for a kind that has one. True if it logged the message
# itself (the dispatcher then does not).
Refuser = Callable[..., bool]


class Dispatcher:
    """One side's handling of what arrives: each message is decoded
    against the table, then given to the handler of its kind (with its
    descriptors, which the handler then owns). A message decode refuses
    gets one log line, its descriptors closed, and the refuser of its kind
    (if any) gives the one answer; nothing else acts on it. A handler that
    raises is logged, and ``on_failure`` answers; nothing a peer sends
    reaches the caller as an exception.

    Every kind travelling in direction has a handler, and nothing else
    does: a kind added to the table without one, or a handler for a kind
    the table lacks, fails here, at construction."""

    def __init__(self, direction: Direction, handlers: dict[str, Handler], log: Any,
                 refusers: dict[str, Refuser] | None = None, on_unknown: Refuser | None = None,
                 on_failure: Callable[..., None] | None = None) -> None:
        self.direction = direction
        self.kinds = kinds(direction)
        self.handlers: dict[str, Handler] = {}
        self.refusers: dict[str, Refuser] = {}
        self._log = log
        self._on_unknown = on_unknown
        self._on_failure = on_failure
        self.update(handlers, refusers or {})
        missing = set(self.kinds) - set(self.handlers)
        if missing:
            raise ValueError(f"no handler for {sorted(missing)} ({direction})")

    def update(self, handlers: dict[str, Handler], refusers: dict[str, Refuser] | None = None) -> None:
        """Other handlers (and refusers) for some kinds."""
        for name in [*handlers, *(refusers or {})]:
            if name not in self.kinds:
                raise ValueError(f"{name!r} is not a kind travelling {self.direction}")
        self.handlers.update(handlers)
        self.refusers.update(refusers or {})

    def dispatch(self, msg: dict[str, Any], fds: list[int], *args: Any, **context: Any) -> None:
        """Handle msg and its fds. args (the master passes the connection)
        come first in the call to the handler or refuser; context goes
        into the log lines."""
        try:
            kind = decode(msg, self.direction, len(fds))
        except InvalidMessage as exc:
            for fd in fds:
                os.close(fd)
            refuser = self.refusers.get(exc.kind.name) if exc.kind is not None else self._on_unknown
            logged = False
            if refuser is not None:
                try:
                    logged = refuser(*args, exc, msg)
                except Exception as err:
                    self._log.error("control refusal failed", error=repr(err), exc_info=True, **context)
            if not logged:
                self._log.warning("invalid control message", error=str(exc), **context)
            return
        try:
            self.handlers[kind.name](*args, msg, fds)
        except Exception as exc:
            self._log.error("control message handling failed", kind=kind.name, error=repr(exc), exc_info=True,
                            **context)
            if self._on_failure is not None:
                self._on_failure(*args, kind, msg)


def recv_message(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and its fds; (None, []) when the peer has closed.

    Raises UndecodableMessage (a ValueError) for a message that is not a
    JSON object (the fds that came with it are closed, not leaked).
    """
    fds = array.array("i")
    data, anc, flags, _ = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize)
    )
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    received = list(fds)
    if not data:
        for fd in received:
            os.close(fd)
        return None, []
    try:
        if flags & socket.MSG_TRUNC:
            raise UndecodableMessage("control message too large")
        msg = parse(data)
    except ValueError:
        for fd in received:
            os.close(fd)
        raise
    return msg, received


def request(path: str, msg: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One request on a fresh connection (for tools; slaves keep theirs).
    Sent unchecked, as a tool may probe the master with anything; the
    master's decode is what holds."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        s.connect(path)
        send_message(s, msg)
        return request_reply(*recv_message(s), path)


def request_reply(reply: dict[str, Any] | None, fds: list[int], path: str) -> dict[str, Any]:
    """The answer to a one-off request: no descriptors kept (a request's
    answer carries none the asker wants), and a closed connection is an
    error."""
    for fd in fds:
        os.close(fd)
    if reply is None:
        raise ConnectionResetError(f"master at {path} closed the connection")
    return reply
