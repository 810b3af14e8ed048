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


def _holders(path: str) -> list[int]:
    """The processes whose network namespace is the one bound at path."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ns = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue  # gone, or not ours to look at
            if (ns.st_dev, ns.st_ino) == (st.st_dev, st.st_ino):
                pids.append(int(entry))
    return pids


def create_netns(name: str) -> str:
    """A fresh namespace with its loopback up; returns its path. One of
    that name left by a run that crashed is replaced when no process is in
    it; one in use is an error naming a process in it."""
    path = netns_path(name)
    if os.path.exists(path):
        holders = _holders(path)
        if holders:
            raise NetnsError(f"{path} exists and is in use (pid {holders[0]}): is this endpoint already running?")
        delete_netns(name)
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
