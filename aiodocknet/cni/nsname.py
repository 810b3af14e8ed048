"""The endpoint's name, written into its network namespace.

A process in a container's namespace is its endpoint without being told
(no environment, no secret: a runtime cannot hand either to the container's
first process). The plugin writes the name as the alias of the namespace's
loopback, which a process reads from inside with one netlink request; the
master still decides: it attaches a process under that name only if the
process is in the namespace the name was registered for (SO_PEERCRED), so
an alias set by anyone else gains nothing.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess

__all__ = ["ALIAS_PREFIX", "read_own", "write", "read"]

ALIAS_PREFIX = "docknet-endpoint:"
_RTM_NEWLINK, _RTM_GETLINK, _NLMSG_ERROR = 16, 18, 2
_NLM_F_REQUEST = 1
_IFLA_IFALIAS = 20
_LOOPBACK_INDEX = 1  # a new network namespace's first device


def _parse_alias(data: bytes) -> str | None:
    if len(data) < 16:
        return None
    length, kind = struct.unpack_from("=IH", data, 0)
    if kind != _RTM_NEWLINK or length > len(data):
        return None
    pos = 16 + 16  # nlmsghdr, ifinfomsg
    while pos + 4 <= length:
        rta_len, rta_type = struct.unpack_from("=HH", data, pos)
        if rta_len < 4 or pos + rta_len > length:
            return None
        if rta_type == _IFLA_IFALIAS:
            value = data[pos + 4:pos + rta_len].split(b"\0", 1)[0].decode("utf-8", "replace")
            return value[len(ALIAS_PREFIX):] if value.startswith(ALIAS_PREFIX) else None
        pos += (rta_len + 3) & ~3
    return None


def read_own() -> str | None:
    """The name written into this process's network namespace, or None."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    except OSError:
        return None
    try:
        sock.settimeout(1.0)
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, _LOOPBACK_INDEX, 0, 0)
        sock.send(struct.pack("=IHHII", 16 + len(body), _RTM_GETLINK, _NLM_F_REQUEST, 1, 0) + body)
        return _parse_alias(sock.recv(65536))
    except OSError:
        return None
    finally:
        sock.close()


def _in_netns(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns}", *argv], capture_output=True, text=True, timeout=10)


def write(netns: str, name: str | None) -> None:
    """Writes (or, with None, clears) the name in the namespace at netns.
    OSError when that cannot be done."""
    res = _in_netns(netns, "ip", "link", "set", "dev", "lo", "alias", ALIAS_PREFIX + name if name else "")
    if res.returncode != 0:
        raise OSError(f"cannot set the loopback alias in {netns}: {res.stderr.strip() or 'failed'}")


def read(netns: str) -> str | None:
    """The name written in the namespace at netns (CHECK), or None."""
    if not os.path.exists(netns):
        return None
    # nsenter does not remount /sys: ask the namespace's own netlink.
    res = _in_netns(netns, "ip", "-o", "link", "show", "dev", "lo")
    if res.returncode != 0:
        return None
    marker = "alias " + ALIAS_PREFIX
    at = res.stdout.find(marker)
    return res.stdout[at + len(marker):].split()[0] if at >= 0 else None
