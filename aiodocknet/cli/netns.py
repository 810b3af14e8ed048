"""Network namespaces for endpoints that ``docknet run`` makes, through
netlink (pyroute2). The command itself still starts under ``ip netns
exec``, which also gives it the namespace's own /sys and /etc/netns files,
as users of named namespaces expect."""

from __future__ import annotations

import os

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

__all__ = ["create_netns", "delete_netns", "netns_path", "NetnsError"]


class NetnsError(OSError):
    pass


def netns_path(name: str) -> str:
    return os.path.join("/run/netns", name)


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
    try:
        netns.create(name)
    except OSError as exc:
        raise NetnsError(f"cannot create network namespace {name}: {exc.strerror or exc}") from None
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    except (OSError, NetlinkError, IndexError) as exc:
        delete_netns(name)
        raise NetnsError(f"cannot bring up loopback in {name}: {exc}") from None
    return path


def delete_netns(name: str) -> None:
    if os.path.exists(netns_path(name)):
        try:
            netns.remove(name)
        except OSError as exc:
            raise NetnsError(f"cannot remove network namespace {name}: {exc.strerror or exc}") from None
