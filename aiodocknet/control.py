"""The master's control socket protocol, shared by master and slaves.

A unix SOCK_SEQPACKET socket: one JSON object per message, file
descriptors (doorbell page, eventfds) passed alongside with SCM_RIGHTS. A
slave keeps its connection open while it is attached; the master treats the
connection closing as the slave's detach or death.

Every message is an ``op`` (a request, or a command to a slave) or an
``event`` (a notice nobody answers); ``MESSAGES`` lists each kind, which
way it goes and its fields, and ``decode`` checks a received message
against it. Replies carry ``"ok": true`` and the result, or ``"ok": false``
with ``"error"`` (a sentence) and ``"code"`` (an errno name).
"""

from __future__ import annotations

import array
import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_RUN_DIR",
    "DEFAULT_SUBNET",
    "MAX_MESSAGE",
    "MESSAGES",
    "ControlError",
    "Field",
    "InvalidMessage",
    "MessageKind",
    "UndecodableMessage",
    "decode",
    "default_master_path",
    "parse",
    "recv_message",
    "request",
    "send_message",
]

DEFAULT_RUN_DIR = "/run/docknet"
# The master's subnet unless configured otherwise; a process that cannot
# reach a master still knows these addresses are DockNet's (DOCKNET_SUBNET
# names another).
DEFAULT_SUBNET = "10.77.0.0/16"
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
    answer it with, when they could be read."""

    def __init__(self, reason: str, *, kind: MessageKind | None = None, expects_reply: bool = True,
                 req: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.expects_reply = expects_reply
        self.req = req


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
        if isinstance(value, str) and "\x00" in value:
            return f"{self.name!r} contains a NUL character"
        return None


_TYPE_NAMES = {str: "string", bool: "boolean (true or false)", list: "list", dict: "object"}


@dataclass(frozen=True)
class MessageKind:
    """A kind of message: ``{"op": name, ...}`` or ``{"event": name, ...}``,
    the way it travels, its fields, and for an op answered by an event
    rather than a reply (``fc_connect``), that event."""

    name: str
    key: Literal["op", "event"]
    direction: Direction
    fields: tuple[Field, ...] = ()
    reply_event: str | None = None


def _port(name: str = "port") -> Field:
    return Field(name, int, lo=1, hi=65535)


def _req() -> Field:
    return Field("req", int, lo=0, hi=INT64_MAX)


# Name-like strings: a DNS name is at most 253 characters; endpoint names
# are held to their pattern by whoever uses them.
NAME_MAX = 253

MESSAGES: tuple[MessageKind, ...] = (
    # From slaves and tools to the master.
    MessageKind("attach", "op", "to_master", (
        Field("endpoint", str, max_len=NAME_MAX),
        Field("secret", str, required=False, max_len=256),
        Field("pid", int, required=False, lo=1, hi=2**31 - 1),
    )),
    MessageKind("resolve", "op", "to_master", (Field("name", str, max_len=NAME_MAX),)),
    MessageKind("status", "op", "to_master"),
    MessageKind("ping", "op", "to_master"),
    MessageKind("fc_connect", "op", "to_master", (
        _req(), Field("address", str, max_len=len("255.255.255.255")), _port(),
    ), reply_event="fc_result"),
    MessageKind("fc_closed", "event", "to_master", (Field("id", int, lo=1, hi=INT64_MAX),)),
    MessageKind("listen", "event", "to_master", (_port(), Field("on", bool))),
    MessageKind("connections", "event", "to_master", (
        _req(), Field("total", int, lo=0, hi=INT64_MAX), Field("conns", list),
    )),
    # From the master to a slave.
    MessageKind("fc_offer", "op", "to_slave", (
        Field("id", int, lo=1, hi=INT64_MAX), _port(), Field("peer", list, max_len=2),
    )),
    MessageKind("connections", "op", "to_slave", (_req(),)),
    MessageKind("fc_result", "event", "to_slave", (
        _req(), Field("ok", bool), Field("id", int, required=False, lo=1, hi=INT64_MAX),
        Field("local_port", int, required=False, lo=1, hi=65535),
        Field("reason", str, required=False), Field("refuse", bool, required=False),
    )),
    MessageKind("limits", "event", "to_slave", tuple(
        Field(k, int, lo=0, hi=UINT64_MAX) for k in ("egress_bits", "ingress_bits", "egress_pkts", "ingress_pkts")
    )),
    MessageKind("endpoint_gone", "event", "to_slave", (
        Field("name", str, max_len=NAME_MAX), Field("address", str, max_len=len("255.255.255.255")),
    )),
)

_KINDS: dict[tuple[Direction, str, str], MessageKind] = {(k.direction, k.key, k.name): k for k in MESSAGES}


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


def decode(msg: dict[str, Any], direction: Direction) -> MessageKind:
    """The kind of a parsed message travelling in direction, once every
    field it needs is there with a value it may take; InvalidMessage
    saying what is wrong otherwise. Fields no kind names are ignored."""
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
    for f in kind.fields:
        if f.name not in msg:
            if f.required:
                raise InvalidMessage(f"{kind.name}: {f.name!r} is required", kind=kind,
                                     expects_reply=expects_reply, req=req)
            continue
        why = f.problem(msg[f.name])
        if why is not None:
            raise InvalidMessage(f"{kind.name}: {why}", kind=kind, expects_reply=expects_reply, req=req)
    return kind


def default_master_path() -> str:
    """DOCKNET_MASTER, else master.sock in DOCKNET_RUN_DIR (as the CLI
    reads them), else in /run/docknet."""
    run_dir = os.environ.get("DOCKNET_RUN_DIR") or DEFAULT_RUN_DIR
    return os.environ.get("DOCKNET_MASTER") or os.path.join(run_dir, "master.sock")


def send_message(sock: socket.socket, msg: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(msg, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError("control message too large")
    anc = []
    if fds:
        anc.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds)))
    sock.sendmsg([data], anc)


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
    """One request on a fresh connection (for tools; slaves keep theirs)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as s:
        s.settimeout(timeout)
        s.connect(path)
        send_message(s, msg)
        reply, fds = recv_message(s)
    for fd in fds:
        os.close(fd)
    if reply is None:
        raise ConnectionResetError(f"master at {path} closed the connection")
    return reply
