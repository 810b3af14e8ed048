"""The master's control socket protocol, shared by master and slaves.

A unix SOCK_SEQPACKET socket: one JSON object per message, file
descriptors (doorbell page, eventfds) passed alongside with SCM_RIGHTS. A
slave keeps its connection open while it is attached; the master treats the
connection closing as the slave's detach or death.

Requests: ``{"op": "attach", "endpoint": NAME}``,
``{"op": "resolve", "name": NAME}``, ``{"op": "ping"}``. Replies carry
``"ok": true`` and the result, or ``"ok": false`` with ``"error"`` (a
sentence) and ``"code"`` (an errno name).
"""

from __future__ import annotations

import array
import json
import os
import socket
from typing import Any

__all__ = [
    "DEFAULT_RUN_DIR",
    "MAX_MESSAGE",
    "ControlError",
    "default_master_path",
    "recv_message",
    "request",
    "send_message",
]

DEFAULT_RUN_DIR = "/run/docknet"
MAX_MESSAGE = 64 * 1024
MAX_FDS = 8


class ControlError(OSError):
    """The master refused a request; ``errno`` says why in brief."""


def default_master_path() -> str:
    return os.environ.get("DOCKNET_MASTER", os.path.join(DEFAULT_RUN_DIR, "master.sock"))


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

    Raises ValueError for a message that is not a JSON object, or nests too
    deeply to decode (the fds that
    came with it are closed, not leaked).
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
            raise ValueError("control message too large")
        try:
            msg = json.loads(data)
        except RecursionError:
            # Nesting deeper than the interpreter's stack: as malformed as
            # any other message the master cannot use.
            raise ValueError("control message nested too deeply") from None
        if not isinstance(msg, dict):
            raise ValueError("control message is not a JSON object")
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
