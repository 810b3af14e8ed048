"""Network namespaces for endpoints (iproute2)."""

from __future__ import annotations

import os
import subprocess

__all__ = ["create_netns", "delete_netns", "netns_path", "NetnsError"]


class NetnsError(OSError):
    pass


def netns_path(name: str) -> str:
    return os.path.join("/run/netns", name)


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {res.stderr.strip() or 'failed'}")


def create_netns(name: str) -> str:
    """A fresh namespace with its loopback up; returns its path."""
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
    except NetnsError:
        delete_netns(name)
        raise
    return netns_path(name)


def delete_netns(name: str) -> None:
    if os.path.exists(netns_path(name)):
        _ip("netns", "del", name)
